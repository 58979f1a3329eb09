"""The export against a gradebook built with nbgrader's own API and hand-written grading records."""

from __future__ import annotations

import base64
import csv
import json
import os
import shutil
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from nbgrader.api import Gradebook

from toeplitz_course.course import contract
from toeplitz_course.instructor.export import ExportError, export, normalize_message

# nbgrader's add_submission itself triggers these autoflush warnings; they are not ours.
pytestmark = pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning")

A = contract.ASSIGNMENT
IDS = contract.grade_ids()
HOSTILE = "mallory<img src=x onerror=alert(1)>"
INJECTED = "<script>alert('pwned')</script> row 3 & more"


def _full_marks() -> dict[str, float]:
    return {e.test_id or e.answer_id: float(e.points) for e in contract.EXERCISES}


def build_gradebook(db_url: str) -> None:
    """alice: full marks; bob: mistakes, a manual override, ex3_4 not graded by hand yet;
    carol: no submission; HOSTILE: everything wrong, ex3_4 graded by hand as 0."""
    with Gradebook(db_url) as gb:
        gb.add_assignment(A)
        for notebook in contract.NOTEBOOKS:
            gb.add_notebook(notebook, A)
        for e in contract.EXERCISES:
            if e.autograded:
                gb.add_solution_cell(e.answer_id, e.notebook, A)
                gb.add_grade_cell(e.test_id, e.notebook, A, max_score=e.points, cell_type="code")
            else:
                # A written answer: one markdown cell that is both the solution and the grade.
                gb.add_solution_cell(e.answer_id, e.notebook, A)
                gb.add_grade_cell(
                    e.answer_id, e.notebook, A, max_score=e.points, cell_type="markdown"
                )
        for student in ("bob", "alice", "carol", HOSTILE):
            gb.add_student(student)

        def grade(student: str, auto: dict[str, float], manual: dict[str, float]) -> None:
            gb.add_submission(A, student)
            for e in contract.EXERCISES:
                gid = e.test_id or e.answer_id
                g = gb.find_grade(gid, e.notebook, A, student)
                if e.autograded:
                    g.auto_score = auto[gid]
                    g.needs_manual_grade = False
                if gid in manual:
                    g.manual_score = manual[gid]
                    g.needs_manual_grade = False
            gb.db.commit()

        full = _full_marks()
        grade("alice", full, {"ex3_4": 1.0})
        bob = dict(full, ex1_2_test=0.0, ex1_3_test=0.0, ex4_2_test=0.0)
        # The instructor gave 1.25 of 2 points by hand on ex1_3: the manual score wins.
        grade("bob", bob, {"ex1_3_test": 1.25})
        grade(HOSTILE, dict.fromkeys(full, 0.0), {"ex3_4": 0.0})


def write_records(grading: Path) -> None:
    grading.mkdir()

    def record(student: str, notebooks: dict, flags: list | None = None) -> None:
        body = {"student": student, "notebooks": notebooks, "flags": flags or []}
        (grading / f"{student}.json").write_text(json.dumps(body), encoding="utf-8")

    def cell(score: float, max_score: float, message: str) -> dict:
        return {"score": score, "max": max_score, "message": message}

    record(
        "alice",
        {
            "01_conv1d_toeplitz": {
                "status": "graded",
                "detail": "",
                "cells": {
                    "ex1_2_test": cell(1, 1, "correct"),
                },
            }
        },
    )
    record(
        "bob",
        {
            "01_conv1d_toeplitz": {
                "status": "graded",
                "detail": "",
                "cells": {
                    "ex1_2_test": cell(0, 1, "row 3 of W is wrong: the kernel is not flipped."),
                    "ex1_3_test": cell(0, 2, "shape (5, 7) expected, got (7, 5)"),
                },
            },
            "04_conv2d_block_toeplitz": {"status": "failed", "detail": "kernel died", "cells": {}},
        },
        [{"notebook": "04_conv2d_block_toeplitz", "kind": "kernel_died", "detail": "exit -9"}],
    )
    record(
        HOSTILE,
        {
            "01_conv1d_toeplitz": {
                "status": "graded",
                "detail": "",
                "cells": {
                    # Same mistake as bob's, laid out differently: must count together.
                    "ex1_2_test": cell(0, 1, "row 3  of W is wrong:\n the kernel is not flipped"),
                    "ex1_1_test": cell(0, 1, INJECTED),
                },
            },
            "05_parameter_counts": {"status": "missing", "detail": "", "cells": {}},
        },
        [{"notebook": "01_conv1d_toeplitz", "kind": "patching", "detail": INJECTED}],
    )
    (grading / "broken.json").write_text('{"student": "broken", "notebooks": {', encoding="utf-8")
    (grading / "listy.json").write_text("[1, 2]", encoding="utf-8")


@pytest.fixture(scope="module")
def empty_gradebook(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A freshly initialised gradebook file to copy: nbgrader runs the `alembic` executable
    (seconds) for every new database, but not for an existing one."""
    path = tmp_path_factory.mktemp("template") / "gradebook.db"
    with pytest.MonkeyPatch.context() as mp:
        # An unactivated venv (.venv/bin/pytest) does not put `alembic` on PATH.
        mp.setenv("PATH", str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])
        Gradebook(f"sqlite:///{path}").close()
    return path


@pytest.fixture
def new_gradebook(empty_gradebook: Path):
    def make(path: Path) -> str:
        shutil.copyfile(empty_gradebook, path)
        return f"sqlite:///{path}"

    return make


@pytest.fixture
def course(tmp_path: Path, new_gradebook) -> Path:
    build_gradebook(new_gradebook(tmp_path / "gradebook.db"))
    write_records(tmp_path / "grading")
    return tmp_path


class Tables(HTMLParser):
    """Text of every cell of every table with an id, and every img src."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.images: list[str] = []
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attributes = dict(attrs)
        if tag == "table":
            self._table = attributes.get("id")
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img":
            self.images.append(attributes["src"])

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table:
            self.tables[self._table][-1].append("".join(self._cell))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def parse(page: str) -> Tables:
    parser = Tables()
    parser.feed(page)
    return parser


def test_csv_is_exactly_the_gradebook(course: Path) -> None:
    result = export(course)

    assert result.csv_path == course / "exports" / "grades.csv"
    raw = result.csv_path.read_bytes()
    assert not raw.startswith(b"\xef\xbb\xbf")  # no BOM: some LMS importers choke on it
    header = ",".join(["student_id", *IDS, "total", "max_total", "submitted"])
    # ids in course order: ex1_1 ex1_2 ex1_3 ex2_1 ex2_2 ex3_1 ex3_2 ex3_3 ex3_4 ex4_1 ex4_2 ex5_*
    assert raw.decode("utf-8").splitlines() == [
        header + ",needs_manual_grading",
        "alice,1,1,2,1,1,1,1,1,1,1,2,1,1,1,1,17,17,yes,",
        "bob,1,0,1.25,1,1,1,1,1,,1,0,1,1,1,1,12.25,17,yes,ex3_4",
        "carol,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,17,no,",
        f"{HOSTILE},0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,17,yes,",
    ]
    with result.csv_path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["student_id"] for r in rows] == ["alice", "bob", "carol", HOSTILE]


def test_summary_numbers(course: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = export(course)

    assert capsys.readouterr().out.strip() == result.summary
    totals = [row.total for row in result.rows]
    assert totals == [17.0, 12.25, 0.0, 0.0]
    assert "4 students (3 submitted)" in result.summary
    assert "total out of 17: mean 7.31, median 6.125" in result.summary  # 29.25 / 4 = 7.3125
    assert "1 at full marks, 2 at zero" in result.summary
    assert "students with a grade still to give by hand: 1" in result.summary

    rates = {rate.label: (rate.passed, rate.graded) for rate in result.pass_rates}
    assert [rate.grade_id for rate in result.pass_rates] == IDS
    assert rates["ex1_1"] == (2, 3)
    assert rates["ex1_3"] == (1, 3)  # bob's 1.25 of 2 is not a pass
    assert rates["ex3_4"] == (1, 2)  # bob's is still ungraded
    assert rates["ex4_2"] == (1, 3)
    assert "ex1_3 33% (1/3)" in result.summary
    assert "ex3_4 50% (1/2)" in result.summary

    # top mistakes: the two layouts of the same diagnosis count together
    top = result.summary.split("top 5 diagnosed mistakes:\n", 1)[1].splitlines()
    assert top[0] == "    2x ex1_2: row 3 of W is wrong: the kernel is not flipped"
    assert "skipped grading/broken.json: not valid JSON" in result.summary
    assert "skipped grading/listy.json: not a grading record" in result.summary


def test_html_page(course: Path) -> None:
    result = export(course)
    page = result.html_path.read_text(encoding="utf-8")
    parsed = parse(page)

    assert len(parsed.images) == 2
    for src in parsed.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(b"\x89PNG\r\n\x1a\n")
    assert "http://" not in page and "https://" not in page  # self-contained

    mistakes = parsed.tables["mistakes"]
    assert mistakes[0] == ["exercise", "message", "count"]
    assert mistakes[1:] == [
        ["ex1_2", "row 3 of W is wrong: the kernel is not flipped", "2"],
        ["ex1_1", INJECTED, "1"],
        ["ex1_3", "shape (5, 7) expected, got (7, 5)", "1"],
    ]
    assert parsed.tables["flags"][1:] == [
        ["bob", "04_conv2d_block_toeplitz", "kernel_died", "exit -9"],
        [HOSTILE, "01_conv1d_toeplitz", "patching", INJECTED],
    ]
    assert "not score changes" in page
    assert parsed.tables["ungraded"][1:] == [
        ["bob", "04_conv2d_block_toeplitz", "failed", "kernel died"],
        [HOSTILE, "05_parameter_counts", "missing", ""],
    ]
    assert parsed.tables["pending"][1:] == [["bob", "ex3_4"]]
    rates = [row[0] for row in parsed.tables["pass-rates"][1:]]
    assert rates == [e.answer_id for e in contract.EXERCISES]

    # injected markup arrives as text only
    assert "<script" not in page
    assert "<img src=x" not in page
    assert "&lt;script&gt;alert(&#x27;pwned&#x27;)&lt;/script&gt;" in page
    assert "broken.json" in page


def test_students_without_records_or_grading_dir(tmp_path: Path, new_gradebook) -> None:
    build_gradebook(new_gradebook(tmp_path / "gradebook.db"))
    result = export(tmp_path, out_dir=tmp_path / "elsewhere")

    assert result.csv_path.parent == tmp_path / "elsewhere"
    assert result.mistakes == () and result.flags == () and result.skipped == ()
    assert "no diagnosed mistakes" in result.summary
    assert parse(result.html_path.read_text(encoding="utf-8")).images


def test_db_url_and_nbgrader_config(tmp_path: Path, new_gradebook) -> None:
    elsewhere = tmp_path / "db" / "other.db"
    elsewhere.parent.mkdir()
    build_gradebook(new_gradebook(elsewhere))

    with pytest.raises(ExportError, match="no gradebook"):
        export(tmp_path)
    assert not (tmp_path / "gradebook.db").exists()  # and none was created on the way

    result = export(tmp_path, db_url=f"sqlite:///{elsewhere}")
    assert len(result.rows) == 4

    (tmp_path / "nbgrader_config.py").write_text(
        f"c = get_config()\nc.CourseDirectory.db_url = 'sqlite:///{elsewhere}'\n"
    )
    assert len(export(tmp_path).rows) == 4


def test_gradebook_that_does_not_match_the_contract(tmp_path: Path, new_gradebook) -> None:
    with Gradebook(new_gradebook(tmp_path / "gradebook.db")) as gb:
        gb.add_assignment(A)
        gb.add_notebook(contract.NOTEBOOKS[0], A)
        gb.add_grade_cell("ex1_1_test", contract.NOTEBOOKS[0], A, max_score=1, cell_type="code")
    with pytest.raises(ExportError, match="ex1_2_test"):
        export(tmp_path)
    with pytest.raises(ExportError, match="not in the gradebook"):
        export(tmp_path, assignment="nope")


def test_malformed_parts_of_a_record_are_skipped_not_fatal(course: Path) -> None:
    (course / "grading" / "odd.json").write_text(
        json.dumps({"notebooks": {"02_padding": "?"}, "flags": "none"}), encoding="utf-8"
    )
    (course / "grading" / "latin1.json").write_bytes(b'{"student": "\xe9"}')

    result = export(course)
    assert any(s.startswith("grading/odd.json: malformed parts") for s in result.skipped)
    assert any(s.startswith("grading/latin1.json: unreadable") for s in result.skipped)
    assert result.mistakes[0].count == 2


def test_normalize_message() -> None:
    assert normalize_message("  a\n\tb.  ") == "a b"
    assert normalize_message("<function f at 0x7f3a9c0d1e20>") == "<function f at 0x…>"
    assert normalize_message("x\x1b[31my") == "x\ufffd[31my"
    assert normalize_message("row 3") != normalize_message("row 4")
    assert len(normalize_message("x" * 1000)) == 240
