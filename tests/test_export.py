"""The export against a gradebook built with nbgrader's own API and hand-written grading records."""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from datetime import datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from nbgrader.api import Gradebook, MissingEntry

from toeplitz_course.course import contract
from toeplitz_course.course.untrusted import for_terminal
from toeplitz_course.instructor.collect import collect
from toeplitz_course.instructor.export import ExportError, export, normalize_message
from toeplitz_course.instructor.report import report

# nbgrader's add_submission itself triggers these autoflush warnings; they are not ours.
pytestmark = pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning")

A = contract.ASSIGNMENT
IDS = contract.grade_ids()
HOSTILE = "mallory<img src=x onerror=alert(1)>"
INJECTED = "<script>alert('pwned')</script> row 3 & more"


def _full_marks() -> dict[str, float]:
    return {e.test_id or e.answer_id: float(e.points) for e in contract.EXERCISES}


DUE = datetime(2024, 3, 1, 12, 0, 0)  # naive UTC, as the gradebook keeps it
ON_TIME = DUE - timedelta(hours=1)
LATE = DUE + timedelta(seconds=18)
PENALTY = 1.0  # what a late-penalty plugin put on bob's first notebook


def build_gradebook(db_url: str) -> None:
    """alice: full marks, on time; bob: mistakes, a manual override, ex3_4 not graded by hand
    yet, 18 s late with a penalty; carol: no submission; HOSTILE: everything wrong, no
    submission time, ex3_4 graded by hand as 0.5 of 1 (partial credit)."""
    with Gradebook(db_url) as gb:
        gb.add_assignment(A, duedate=DUE)
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

        def grade(
            student: str, auto: dict[str, float], manual: dict[str, float], **submission
        ) -> None:
            gb.add_submission(A, student, **submission)
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
        grade("alice", full, {"ex3_4": 1.0}, timestamp=ON_TIME)
        bob = dict(full, ex1_2_test=0.0, ex1_3_test=0.0, ex4_2_test=0.0)
        # The instructor gave 1.25 of 2 points by hand on ex1_3: the manual score wins.
        grade("bob", bob, {"ex1_3_test": 1.25}, timestamp=LATE)
        gb.find_submission_notebook(
            contract.NOTEBOOKS[0], A, "bob"
        ).late_submission_penalty = PENALTY
        grade(HOSTILE, dict.fromkeys(full, 0.0), {"ex3_4": 0.5})
        gb.db.commit()


#: dave handed in a PDF and a renamed notebook, nothing collect could place; bob's notebook
#: came with Canvas's late marker.
DOWNLOAD = {
    "dave_31_41_homework.pdf": b"%PDF-1.4",
    "dave_31_41_answers.ipynb": b'{"cells": [], "metadata": {}}',
    "bob_LATE_27_18_01_conv1d_toeplitz.ipynb": b'{"cells": [], "metadata": {}}',
}


def collect_download(course: Path) -> None:
    """The real collect on a Canvas-named zip: it writes the ledger export reads."""
    z = course / "canvas.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for name, data in DOWNLOAD.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=(2024, 3, 1, 12, 0, 18)), data)
    report = collect(z, course)
    assert report.nothing_gradable == ["dave"]


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
    collect_download(tmp_path)
    return tmp_path


class Tables(HTMLParser):
    """Text (and data-v, class) of every cell of every table with an id, every img src, every
    script, and every attribute that could load something."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.values: dict[str, list[list[str | None]]] = {}  # data-v of each cell
        self.classes: dict[str, list[list[str]]] = {}
        self.images: list[str] = []
        self.scripts: list[str] = []
        self.script_srcs: list[str] = []
        self.links: list[tuple[str, str, str]] = []  # (tag, attribute, value)
        self.csp: str | None = None
        self._table: str | None = None
        self._cell: list[str] | None = None
        self._script: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attributes = dict(attrs)
        for name, value in attrs:
            if name in ("src", "href", "action", "data", "poster", "srcset") and value:
                self.links.append((tag, name, value))
        if tag == "meta" and attributes.get("http-equiv") == "Content-Security-Policy":
            self.csp = attributes["content"]
        if tag == "table":
            self._table = attributes.get("id")
            self.tables[self._table] = []
            self.values[self._table] = []
            self.classes[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
            self.values[self._table].append([])
            self.classes[self._table].append([])
        elif tag in ("td", "th"):
            self._cell = []
            if self._table:
                self.values[self._table][-1].append(attributes.get("data-v"))
                self.classes[self._table][-1].append(attributes.get("class") or "")
        elif tag == "img":
            self.images.append(attributes["src"])
        elif tag == "script":
            self._script = []
            if "src" in attributes:
                self.script_srcs.append(attributes["src"])

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table:
            self.tables[self._table][-1].append("".join(self._cell))
            self._cell = None
        elif tag == "table":
            self._table = None
        elif tag == "script" and self._script is not None:
            self.scripts.append("".join(self._script))
            self._script = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._script is not None:
            self._script.append(data)


def parse(page: str) -> Tables:
    parser = Tables()
    parser.feed(page)
    return parser


def gradebook_view(db_url: str) -> dict[str, dict[str, Any]]:
    """Per student, what the gradebook itself says: scores by grade id (None while manual
    grading is pending), submission time, seconds late and late penalty."""
    view: dict[str, dict[str, Any]] = {}
    with Gradebook(db_url) as gb:
        for student in gb.students:
            try:
                sub = gb.find_submission(A, student.id)
            except MissingEntry:
                view[student.id] = {"scores": dict.fromkeys(IDS, 0.0), "submitted": False}
                continue
            scores = {
                g.name: None if g.needs_manual_grade else float(g.score)
                for nb in sub.notebooks
                for g in nb.grades
            }
            view[student.id] = {
                "scores": scores,
                "submitted": True,
                "timestamp": sub.timestamp,
                "seconds_late": sub.total_seconds_late,
                "penalty": sub.late_submission_penalty,
            }
    return view


def num(value: float) -> str:
    return f"{value:g}"


def test_csv_is_exactly_the_gradebook(course: Path) -> None:
    result = export(course)
    view = gradebook_view(f"sqlite:///{course / 'gradebook.db'}")

    assert result.csv_path == course / "exports" / "grades.csv"
    raw = result.csv_path.read_bytes()
    assert not raw.startswith(b"\xef\xbb\xbf")  # no BOM: some LMS importers choke on it
    with result.csv_path.open(encoding="utf-8", newline="") as f:
        header = next(csv.reader(f))
    assert header == [
        "student_id",
        "lms_system",
        "lms_user_id",
        "name",
        "email",
        *IDS,
        "total",
        "late_penalty",
        "score",
        "max_total",
        "submitted",
        "timestamp",
        "seconds_late",
        "needs_manual_grading",
        "note",
    ]
    with result.csv_path.open(encoding="utf-8", newline="") as f:
        rows = {r["student_id"]: r for r in csv.DictReader(f)}
    # everyone the gradebook knows, and dave, whose every file collect rejected
    assert list(rows) == sorted([*view, "dave"])
    for student, expected in view.items():
        row = rows[student]
        for gid in IDS:
            score = expected["scores"][gid]
            assert row[gid] == ("" if score is None else num(score)), (student, gid)
        total = sum(v for v in expected["scores"].values() if v is not None)
        penalty = expected.get("penalty") or 0.0
        assert float(row["total"]) == total
        assert float(row["late_penalty"]) == penalty
        assert float(row["score"]) == max(0.0, total - penalty)  # nbgrader export's rule
        assert row["submitted"] == ("yes" if expected["submitted"] else "no")
        stamp = expected.get("timestamp")
        assert row["timestamp"] == (stamp.strftime("%Y-%m-%d %H:%M:%S UTC") if stamp else "")
        # whole seconds: a lateness is not read to the microsecond
        assert row["seconds_late"] == (str(round(expected["seconds_late"])) if stamp else "")
    assert float(rows["bob"]["seconds_late"]) == (LATE - DUE).total_seconds() == 18
    assert float(rows["bob"]["late_penalty"]) == PENALTY
    assert rows["bob"]["needs_manual_grading"] == "ex3_4"
    assert rows["bob"]["note"] == "marked late by the LMS"  # the ledger's Canvas _LATE_
    assert rows[HOSTILE]["note"] == "no submission time (no timestamp.txt)"
    dave = rows["dave"]
    assert dave["submitted"] == "nothing gradable"
    assert [dave[gid] for gid in IDS] == ["0"] * len(IDS) and dave["score"] == "0"
    assert dave["note"] == (
        "nothing gradable handed in: collect rejected "
        "dave_31_41_homework.pdf (not a notebook (.pdf)); "
        "dave_31_41_answers.ipynb (renamed or unknown notebook 'answers.ipynb' for student dave)"
    )


def test_summary_numbers(course: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = export(course)

    assert capsys.readouterr().out.strip() == result.summary
    scores = {row.student_id: row.score for row in result.rows}
    assert scores == {
        "alice": 23.0,
        "bob": 18.25 - PENALTY,
        "carol": 0.0,
        "dave": 0.0,
        HOSTILE: 0.5,
    }
    assert "5 students (3 submitted)" in result.summary
    mean = sum(scores.values()) / 5
    assert f"score out of 23: mean {round(mean, 2):g}, median 0.5" in result.summary
    assert "1 at full marks, 2 at zero" in result.summary
    assert "students with a grade still to give by hand: 1" in result.summary
    assert "nothing gradable handed in (collect rejected every file): dave (2)" in result.summary
    assert (
        "due 2024-03-01 12:00:00 UTC; 1 late\n  bob: submitted 2024-03-01 12:00:18 UTC, 18 s "
        "late, marked late by the LMS, penalty 1"
    ) in result.summary

    stats = {ex.label: ex for ex in result.exercises}
    assert [ex.grade_id for ex in result.exercises] == IDS
    # partial credit is partial: bob's 1.25 of 2 on ex1_3, HOSTILE's 0.5 of 1 on ex3_4
    ex1_3 = stats["ex1_3"]
    assert (ex1_3.graded, ex1_3.full, ex1_3.partial, ex1_3.zero) == (3, 1, 1, 1)
    assert ex1_3.mean == pytest.approx((2 + 1.25 + 0) / 3)
    ex3_4 = stats["ex3_4"]
    assert (ex3_4.graded, ex3_4.full, ex3_4.partial, ex3_4.pending) == (2, 1, 1, 1)
    assert ex3_4.mean == pytest.approx(0.75)  # bob's is still to grade by hand
    # only notebooks handed in and graded: bob's 04 failed, HOSTILE never handed in 05
    assert (stats["ex4_2"].graded, stats["ex4_2"].not_handed_in) == (2, 1)
    assert stats["ex4_2"].scores == (2.0, 0.0)
    assert (stats["ex5_2"].graded, stats["ex5_2"].not_handed_in) == (2, 1)
    assert stats["ex5_2"].mean == 1.0
    assert "ex1_3 1.08/2 (1 full, 1 partial, 1 zero)" in result.summary
    assert stats["ex1_2"].mistakes == (("row 3 of W is wrong: the kernel is not flipped", 2),)

    # top mistakes: the two layouts of the same diagnosis count together
    top = result.summary.split("top 5 diagnosed mistakes:\n", 1)[1].splitlines()
    assert top[0] == "    2x ex1_2: row 3 of W is wrong: the kernel is not flipped"
    assert "skipped grading/broken.json: not valid JSON" in result.summary
    assert "skipped grading/listy.json: not a grading record" in result.summary


def test_html_page(course: Path) -> None:
    result = export(course)
    page = result.html_path.read_text(encoding="utf-8")
    parsed = parse(page)
    view = gradebook_view(f"sqlite:///{course / 'gradebook.db'}")

    # self-contained: nothing loaded from anywhere, images embedded, the script inline
    assert len(parsed.images) == 2
    for src in parsed.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(b"\x89PNG\r\n\x1a\n")
    assert [value for _, _, value in parsed.links if not value.startswith("data:")] == []
    assert "http://" not in page and "https://" not in page
    assert "<link" not in page and "@import" not in page and "url(" not in page
    assert parsed.script_srcs == [] and len(parsed.scripts) == 1
    digest = base64.b64encode(hashlib.sha256(parsed.scripts[0].encode()).digest()).decode()
    assert parsed.csp is not None and "default-src 'none'" in parsed.csp
    assert f"script-src 'sha256-{digest}'" in parsed.csp  # only that script may run

    # the heatmap: one row per student, one column per exercise, the gradebook's values
    heat, values = parsed.tables["heatmap"], parsed.values["heatmap"]
    labels = [contract.BY_TEST_ID[g].answer_id if g in contract.BY_TEST_ID else g for g in IDS]
    assert heat[0] == ["student", *labels, "total", "late penalty", "score", "late by"]
    assert [row[0] for row in heat[1:]] == sorted([*view, "dave"])
    for row, data in zip(heat[1:], values[1:], strict=True):
        student = row[0]
        scores = view.get(student, {"scores": dict.fromkeys(IDS, 0.0)})["scores"]
        for i, gid in enumerate(IDS, start=1):
            score = scores[gid]
            assert row[i] == ("?" if score is None else num(score)), (student, gid)
            assert data[i] == ("" if score is None else num(score))
    bob = dict(zip(heat[0], heat[[r[0] for r in heat].index("bob")], strict=True))
    assert (bob["total"], bob["late penalty"], bob["score"], bob["late by"]) == (
        "18.25",
        "1",
        "17.25",
        "18 s",
    )
    # partial credit is shaded as partial, not as a fail or a pass
    hostile = heat[[r[0] for r in heat].index(HOSTILE)]
    assert hostile[labels.index("ex3_4") + 1] == "0.5"
    # cells of notebooks not handed in or not gradable are marked as such
    classes = parsed.classes["heatmap"][[r[0] for r in heat].index(HOSTILE)]
    assert classes[labels.index("ex5_2") + 1] == "absent"
    assert classes[labels.index("ex1_1") + 1] == ""

    exercises = {row[0]: row for row in parsed.tables["exercises"][1:]}
    assert list(exercises) == labels
    # exercise, points, mean, mean %, graded, full, partial, zero, not handed in, by hand
    assert exercises["ex3_4"][:10] == ["ex3_4", "1", "0.75", "75%", "2", "1", "1", "0", "0", "1"]
    assert exercises["ex4_2"][:10] == ["ex4_2", "2", "1", "50%", "2", "1", "0", "1", "1", "0"]
    assert exercises["ex1_2"][10] == "2x row 3 of W is wrong: the kernel is not flipped"

    assert parsed.tables["lateness"][1:] == [
        ["bob", "2024-03-01 12:00:18 UTC", "2024-03-01 12:00:00 UTC", "18 s", "yes", "1"]
    ]
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
    assert parsed.tables["nothing-gradable"][1:] == [
        ["dave", "dave_31_41_homework.pdf", "not a notebook (.pdf)"],
        [
            "dave",
            "dave_31_41_answers.ipynb",
            "renamed or unknown notebook 'answers.ipynb' for student dave",
        ],
    ]

    # injected markup arrives as text only
    assert "<img src=x" not in page
    assert "&lt;script&gt;alert(&#x27;pwned&#x27;)&lt;/script&gt;" in page
    assert "broken.json" in page


def heatmap_order(page: Path, fragment: str) -> list[str]:
    """The heatmap's student order after a real browser ran the page (headless Chromium,
    the page's own Content-Security-Policy in force)."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no Chromium to run the page's script in")
    dom = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--dump-dom",
            page.as_uri() + fragment,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    return [row[0] for row in parse(dom).tables["heatmap"][1:]]


def test_heatmap_sorts_by_total_in_a_browser(course: Path) -> None:
    result = export(course)
    totals = {row.student_id: row.total for row in result.rows}
    by_name = sorted(totals)
    by_total = sorted(totals, key=lambda s: -totals[s])
    assert by_total != by_name  # or the check below would prove nothing
    assert heatmap_order(result.html_path, "") == by_name
    assert heatmap_order(result.html_path, "#sort=total") == by_total


def test_report_shows_lateness_and_nothing_gradable(course: Path) -> None:
    text = report(course)
    assert "Late (due 2024-03-01 12:00:00 UTC):" in text
    assert (
        "  bob: submitted 2024-03-01 12:00:18 UTC, 18 s late, marked late by the LMS, "
        "penalty 1" in text
    )
    assert "Nothing graded:" in text
    assert "  dave: nothing gradable handed in (2 files rejected, below)" in text
    assert "  carol: nothing handed in" in text
    assert "Files collect rejected:" in text
    assert "  dave: dave_31_41_homework.pdf: not a notebook (.pdf)" in text
    assert "mallory" in text  # its patching flag


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
    # an escape sequence is shown as text, not obeyed (and not erased: a person should see it)
    assert normalize_message("x\x1b[31my") == "x" + for_terminal("\x1b") + "[31my"
    assert normalize_message("row 3") != normalize_message("row 4")
    assert len(normalize_message("x" * 1000)) == 240
