"""Grades and feedback back into each LMS: the files ``export`` writes, read back as the LMS's own
importer reads them (the rules are those of ``toeplitz_course/instructor/lms.py``, cited there from
each LMS's source or documentation); the extension command; the CLI's one-line misuse errors.

The course here is a gradebook built with nbgrader's API and a collect ledger written by hand, as
the collect step writes it (``"lms"`` identities, ``time_source``), so every LMS is covered without
grading anything.
"""

from __future__ import annotations

import csv
import html
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path

import lms_downloads as downloads
import pytest
from nbgrader.api import Gradebook

from toeplitz_course.course import contract
from toeplitz_course.grader.grade import GradeRun
from toeplitz_course.instructor.export import export
from toeplitz_course.instructor.extend import ExtendError, extend
from toeplitz_course.instructor.lms import MOODLE_FEEDBACK_ZIP, moodle_folder

pytestmark = pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning")

A = contract.ASSIGNMENT
ROOT = Path(__file__).resolve().parent.parent
DUE = datetime(2024, 3, 1, 12, 0, 0)
LATE = DUE + timedelta(days=1, hours=2)  # "1 d 2 h" late
CANVAS_COLUMN = "Toeplitz (12345)"
BLACKBOARD_COLUMN = "Toeplitz [Total Pts: 23 Score] |765432"
HOSTILE_NAME = '=HYPERLINK("http://x")<b>'

#: student -> (LMS identity, how many exercises are right, submission time, time source)
CLASS = {
    "canvas1001": (
        {"system": "canvas", "user_id": "1001", "name": HOSTILE_NAME},
        15,
        LATE,
        "lms-marker",
    ),
    "canvasanon": (
        {"system": "canvas", "user_id": "anon_Xy12", "anonymous": True},
        3,
        DUE,
        "file-name",
    ),
    "canvas1002": ({"system": "canvas", "user_id": "1002", "name": "Dee"}, 9, LATE, "download"),
    "leekim1": (
        {"system": "moodle", "user_id": "123456", "name": "Lee_Kim", "email": "a@x"},
        4,
        DUE,
        "worksheet",
    ),
    "leekim2": (
        {"system": "moodle", "user_id": "123457", "name": "Lee_Kim", "email": "b@x"},
        7,
        DUE,
        "worksheet",
    ),
    "blind9": ({"system": "moodle", "user_id": "9", "anonymous": True}, 2, DUE, "worksheet"),
    "pending": ({"system": "moodle", "user_id": "5", "name": "Pen"}, 6, DUE, "worksheet"),
    "jdoe1": ({"system": "blackboard", "user_id": "jdoe1", "name": "J Doe"}, 8, DUE, "receipt"),
    "d2l": (
        {"system": "brightspace", "user_id": "20067930", "name": "Frank"},
        10,
        DUE,
        "folder-name",
    ),
    "classroom": ({"system": "classroom", "user_id": None, "name": "Cl"}, 11, DUE, "file"),
}
#: Collect placed files of this student; grade has not run since.
PLACED_ONLY = "latecomer"
SUBMARKS = """\
from nbgrader.plugins import BasePlugin


class SubMarks(BasePlugin):
    def late_submission_penalty(self, student_id, score, total_seconds_late):
        return round(total_seconds_late / 3600 / 10, 0)
"""


def _penalty_per_notebook(seconds: float) -> float:
    return round(seconds / 3600 / 10, 0)  # SUBMARKS, for the expected values


@pytest.fixture(scope="module")
def empty_gradebook(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "gradebook.db"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PATH", str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])
        Gradebook(f"sqlite:///{path}").close()
    return path


def _exercises_right(n: int) -> dict[str, float]:
    """The first ``n`` graded cells at full marks, the rest 0."""
    cells = [e.test_id or e.answer_id for e in contract.EXERCISES]
    points = {e.test_id or e.answer_id: float(e.points) for e in contract.EXERCISES}
    return {gid: (points[gid] if i < n else 0.0) for i, gid in enumerate(cells)}


def build(course: Path, empty_gradebook: Path) -> str:
    shutil.copyfile(empty_gradebook, course / "gradebook.db")
    url = f"sqlite:///{course / 'gradebook.db'}"
    with Gradebook(url) as gb:
        gb.add_assignment(A, duedate=DUE)
        for notebook in contract.NOTEBOOKS:
            gb.add_notebook(notebook, A)
        for e in contract.EXERCISES:
            gb.add_solution_cell(e.answer_id, e.notebook, A)
            gid = e.test_id or e.answer_id
            kind = "code" if e.autograded else "markdown"
            gb.add_grade_cell(gid, e.notebook, A, max_score=e.points, cell_type=kind)
        for student, (_, right, when, _) in CLASS.items():
            gb.add_student(student)
            gb.add_submission(A, student, timestamp=when)
            for gid, score in _exercises_right(right).items():
                e = contract.BY_TEST_ID.get(gid) or next(
                    x for x in contract.EXERCISES if x.answer_id == gid
                )
                g = gb.find_grade(gid, e.notebook, A, student)
                g.auto_score = score
                g.manual_score = score if not e.autograded else None
                g.needs_manual_grade = student == "pending" and not e.autograded
            gb.db.commit()
        # nbgrader's penalty as AssignLatePenalties stored it, for the late students
        for student in ("canvas1001", "canvas1002"):
            nb = gb.find_submission_notebook(contract.NOTEBOOKS[0], A, student)
            nb.late_submission_penalty = 3.0
        gb.db.commit()
    ledger = {"assignment": A, "students": {}}
    for student, (lms, _, when, source) in CLASS.items():
        ledger["students"][student] = {
            "lms": {"name": None, "email": None, "anonymous": False, **lms},
            "time_source": source,
            "notebooks": {
                contract.NOTEBOOKS[0]: {"source": "x", "time": str(when), "time_source": source}
            },
            "rejected": [{"source": "notes.pdf", "reason": "not a notebook (.pdf)"}]
            if student == "jdoe1"
            else [],
        }
    ledger["students"][PLACED_ONLY] = {
        "lms": {"system": "canvas", "user_id": "1003", "name": "Late Comer", "anonymous": False},
        "time_source": "lms-marker",
        "notebooks": {contract.NOTEBOOKS[0]: {"source": "y", "time": None}},
    }
    path = course / "downloaded" / A / "collected.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(ledger), encoding="utf-8")
    (course / "nbgrader_config.py").write_text("c = get_config()\n")
    return url


@pytest.fixture
def course(tmp_path: Path, empty_gradebook: Path) -> Path:
    build(tmp_path, empty_gradebook)
    return tmp_path


def scores(url: str) -> dict[str, float]:
    """What the gradebook says each student's grade is: nbgrader's score after the penalty."""
    with Gradebook(url) as gb:
        return {
            s.student_id: max(0.0, s.score - (s.late_submission_penalty or 0.0))
            for s in gb.assignment_submissions(A)
        }


def read_csv(path: Path, **dialect) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.reader(f, **dialect))


def ids_of(system: str, *, anonymous_ok: bool) -> dict[str, str]:
    """LMS user id -> student, of the students an LMS's file must hold (no pending hand grade)."""
    return {
        lms["user_id"]: student
        for student, (lms, *_rest) in CLASS.items()
        if lms["system"] == system
        and student != "pending"
        and (anonymous_ok or not lms.get("anonymous"))
    }


def test_canvas_gradebook_import(course: Path) -> None:
    result = export(course, canvas_assignment=CANVAS_COLUMN)
    rows = read_csv(course / "exports" / "canvas_grades.csv")
    header, body = rows[0], rows[1:]
    # GradebookImporter#header?: Student, ID, then SIS User ID + SIS Login ID, then Section
    assert "Student" in header[0] and "ID" in header[1]
    assert header[2:5] == ["SIS User ID", "SIS Login ID", "Section"]
    # every column after Section is an assignment: exactly one, matched by its id, none new
    assignments = header[5:]
    assert len(assignments) == 1
    match = re.fullmatch(r"(.*)\s\((\d+)\)", assignments[0])
    assert match and match[2] == "12345"
    # process_student: row[1].to_i is Canvas's user id; every row matched, nobody twice
    expected = ids_of("canvas", anonymous_ok=False)
    assert sorted(row[1] for row in body) == sorted(expected)
    gradebook = scores(f"sqlite:///{course / 'gradebook.db'}")
    for row in body:
        assert float(row[5]) == pytest.approx(gradebook[expected[row[1]]])
    # the name is for people only, and never a formula
    by_id = {row[1]: row for row in body}
    assert by_id["1001"][0] == "'" + HOSTILE_NAME
    line = next(x for x in result.summary.splitlines() if x.startswith("canvas_grades.csv"))
    assert "anonymous id: canvasanon" in line and "classroom" in line


def test_canvas_file_needs_the_assignment_column(course: Path) -> None:
    result = export(course)
    assert not (course / "exports" / "canvas_grades.csv").exists()
    assert "c.LmsExport.canvas_assignment" in result.summary
    (course / "nbgrader_config.py").write_text(
        f"c = get_config()\nc.LmsExport.canvas_assignment = {CANVAS_COLUMN!r}\n"
    )
    export(course)
    assert read_csv(course / "exports" / "canvas_grades.csv")[0][5] == CANVAS_COLUMN


def test_moodle_grading_worksheet(course: Path) -> None:
    before = datetime.now(timezone.utc).replace(microsecond=0)
    export(course)
    rows = read_csv(course / "exports" / "moodle_grading_worksheet.csv")
    header = rows[0]
    # assignfeedback_offline_grade_importer::init: these three, or the import fails
    for required in ("Identifier", "Grade", "Last modified (grade)"):
        assert header.count(required) == 1
    # an empty feedback column would wipe comments written in Moodle
    assert "Feedback comments" not in header
    records = [dict(zip(header, row, strict=True)) for row in rows[1:]]
    expected = ids_of("moodle", anonymous_ok=True)  # blind marking ids are participant ids
    gradebook = scores(f"sqlite:///{course / 'gradebook.db'}")
    got = {}
    for record in records:
        # next(): substr($idstr, strlen('Participant ')), then get_user_id_for_uniqueid
        assert record["Identifier"].startswith("Participant ")
        participant = record["Identifier"][len("Participant ") :]
        got[participant] = float(record["Grade"])
        modified = datetime.strptime(record["Last modified (grade)"], "%Y-%m-%d %H:%M:%S UTC")
        assert modified.replace(tzinfo=timezone.utc) >= before  # not stale: no grade skipped
    assert got == {uid: pytest.approx(gradebook[s]) for uid, s in expected.items()}
    # two students of the same name are two rows, told apart by their participant number
    assert sum(1 for r in records if r["Full name"] == "Lee_Kim") == 2


def test_blackboard_grade_center_upload(course: Path) -> None:
    export(course, blackboard_column=BLACKBOARD_COLUMN)
    path = course / "exports" / "blackboard_grade_center.csv"
    # comma-delimited: every value within quotes
    for line in path.read_text(encoding="utf-8").splitlines():
        assert all(f.startswith('"') and f.endswith('"') for f in line.split(","))
    rows = read_csv(path)
    assert rows[0] == ["Username", BLACKBOARD_COLUMN]
    assert re.search(r"\|\s*765432$", rows[0][1])  # a column id: no new column
    gradebook = scores(f"sqlite:///{course / 'gradebook.db'}")
    expected = ids_of("blackboard", anonymous_ok=False)
    assert {r[0]: float(r[1]) for r in rows[1:]} == {
        u: pytest.approx(gradebook[s]) for u, s in expected.items()
    }


def test_brightspace_grade_import(course: Path) -> None:
    result = export(course)
    assert "c.LmsExport.brightspace_item" in result.summary
    assert not (course / "exports" / "brightspace_grades.csv").exists()
    export(course, brightspace_item="Toeplitz")
    rows = read_csv(course / "exports" / "brightspace_grades.csv")
    assert rows[0] == ["OrgDefinedId", "Toeplitz Points Grade", "End-of-Line Indicator"]
    assert all(row[-1] == "#" and len(row) == 3 for row in rows[1:])
    gradebook = scores(f"sqlite:///{course / 'gradebook.db'}")
    expected = ids_of("brightspace", anonymous_ok=False)
    assert {r[0]: float(r[1]) for r in rows[1:]} == {
        u: pytest.approx(gradebook[s]) for u, s in expected.items()
    }


def test_grades_csv_has_everyone_with_their_lms_identity(course: Path) -> None:
    result = export(course)
    with result.csv_path.open(encoding="utf-8", newline="") as f:
        rows = {r["student_id"]: r for r in csv.DictReader(f)}
    assert set(rows) == {*CLASS, PLACED_ONLY}
    for student, (lms, *_rest) in CLASS.items():
        assert rows[student]["lms_system"] == lms["system"]
        assert rows[student]["lms_user_id"] == (lms["user_id"] or "")
    assert rows["leekim1"]["name"] == rows["leekim2"]["name"] == "Lee_Kim"
    assert rows["leekim1"]["email"] == "a@x"
    late = rows["canvas1001"]
    assert late["seconds_late"] == str(round((LATE - DUE).total_seconds()))
    # only the download's time: unknown, never late (and its penalty is questioned)
    unknown = rows["canvas1002"]
    assert unknown["seconds_late"] == "unknown"
    assert "lateness unknown" in unknown["note"] and "check it" in unknown["note"]
    assert rows[PLACED_ONLY]["submitted"] == "not graded"
    assert "run grade" in rows[PLACED_ONLY]["note"]
    late_lines = result.summary.split("; 1 late\n", 1)[1].splitlines()
    assert late_lines[0].startswith("  canvas1001: submitted") and "1 d 2 h late" in late_lines[0]
    assert "lateness unknown (only the LMS download's time): 1: canvas1002" in result.summary
    # the page: both Lee_Kims, the latecomer, the rejected file, "unknown"
    page = result.html_path.read_text(encoding="utf-8")
    assert page.count(">leekim1<") >= 2 and page.count(">leekim2<") >= 2
    assert ">latecomer<" in page and ">notes.pdf<" in page and ">unknown<" in page


class Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.csp = ""
        self.links: list[str] = []
        self.scripts = 0
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "meta" and a.get("http-equiv") == "Content-Security-Policy":
            self.csp = a["content"]
        if tag == "a":
            self.links.append(a["href"])
        self.scripts += tag == "script"

    def handle_data(self, data):
        self.text.append(data)


def moodle_import_target(path: str, participants: set[int]) -> tuple[int, str] | None:
    """assignfeedback_file_zip_importer::is_valid_filename_for_import, in Python."""
    parts = path.split("/")
    while parts:
        info = parts.pop(0).split("_", 4)
        if len(info) < 4 or not info[1].isdigit() or int(info[1]) not in participants:
            continue
        if (info[2], info[3]) != ("assignsubmission", "file"):
            continue
        rest = info[4] if len(info) == 5 else ""
        return int(info[1]), "/".join([rest, *parts]).lstrip("/")
    return None


def test_feedback_pages_and_moodle_zip(course: Path) -> None:
    for student in ("leekim1", "canvas1001"):
        folder = course / "feedback" / student / A
        folder.mkdir(parents=True)
        (folder / f"{contract.NOTEBOOKS[0]}.html").write_text(f"<p>{student}</p>")
    export(course)
    page_path = course / "exports" / "feedback" / "canvas1001" / "feedback.html"
    page = Page()
    page.feed(page_path.read_text(encoding="utf-8"))
    assert "default-src 'none'" in page.csp and "script" not in page.csp and page.scripts == 0
    text = "".join(page.text)
    raw = page_path.read_text(encoding="utf-8")
    assert HOSTILE_NAME in text  # shown as the text it is ...
    assert HOSTILE_NAME not in raw and html.escape(HOSTILE_NAME, quote=True) in raw  # ... escaped
    gradebook = scores(f"sqlite:///{course / 'gradebook.db'}")
    points = sum(e.points for e in contract.EXERCISES)
    assert f"{gradebook['canvas1001']:g} of {points}" in text
    assert "1 d 2 h late" in text
    assert page.links == [f"{contract.NOTEBOOKS[0]}.html"]
    assert (page_path.parent / page.links[0]).read_text() == "<p>canvas1001</p>"

    expected = {int(u): s for u, s in ids_of("moodle", anonymous_ok=True).items()}
    expected[5] = "pending"  # feedback goes to everyone: a page says what is still to grade
    with zipfile.ZipFile(course / "exports" / MOODLE_FEEDBACK_ZIP) as zf:
        names = zf.namelist()
        targets = [moodle_import_target(n, set(expected)) for n in names]
        assert None not in targets  # every file lands with a participant
        assert {p for p, _ in targets} == set(expected)
        assert (123456, f"{contract.NOTEBOOKS[0]}.html") in targets
        assert all(
            name in ("feedback.html", f"{contract.NOTEBOOKS[0]}.html") for _, name in targets
        )
        # blind marking: Moodle's download names the folder "Participant_N_..."
        assert "Participant_9_assignsubmission_file_/feedback.html" in names


def test_moodle_folder_is_moodles_download_name() -> None:
    from toeplitz_course.instructor.lms import Identity

    # Moodle's download replaces "_" in a name; the importer splits at "_"
    assert moodle_folder(Identity("moodle", "42", "Lee_Kim")) == "Lee Kim_42_assignsubmission_file_"
    assert moodle_folder(Identity("moodle", "9", "Ann", anonymous=True)).startswith(
        "Participant_9_"
    )
    assert moodle_folder(Identity("moodle", "7", "a/b:c")) == "abc_7_assignsubmission_file_"


# --- extend --------------------------------------------------------------------------------


def _late_config(course: Path) -> None:
    # A module name of its own: test_lateness's late.py, imported earlier in the same process,
    # would otherwise be the one sys.modules hands back.
    (course / "late_lms_export.py").write_text(SUBMARKS)
    (course / "nbgrader_config.py").write_text(
        'c = get_config()\nc.AssignLatePenalties.plugin_class = "late_lms_export.SubMarks"\n'
    )


def _notebook_scores(url: str, student: str) -> list[float]:
    with Gradebook(url) as gb:
        return [nb.score for nb in gb.find_submission(A, student).notebooks]


def test_extend_moves_the_due_date_and_the_penalty(course: Path) -> None:
    _late_config(course)
    url = f"sqlite:///{course / 'gradebook.db'}"
    nb_scores = _notebook_scores(url, "canvas1001")

    # --until one hour before the hand-in: 1 h late; the plugin's penalty per notebook, capped
    done = extend(course, "canvas1001", until=str(LATE - timedelta(hours=1)))
    assert done.seconds_late == 3600
    assert done.penalty_after == sum(min(_penalty_per_notebook(3600), s) for s in nb_scores)
    assert done.penalty_before == 3.0

    # an extension past the hand-in: on time, no penalty; nbgrader's own due date agrees
    done = extend(course, "canvas1001", days=2)
    assert (done.seconds_late, done.penalty_after) == (0, 0)
    with Gradebook(url) as gb:
        sub = gb.find_submission(A, "canvas1001")
        assert sub.duedate == DUE + timedelta(days=2) and sub.total_seconds_late == 0

    # removed: late by the whole 26 h again, the plugin's penalty back
    done = extend(course, "canvas1001", days=0)
    late = (LATE - DUE).total_seconds()
    assert done.extension is None and done.seconds_late == late
    assert done.penalty_after == sum(min(_penalty_per_notebook(late), s) for s in nb_scores)
    assert done.penalty_after > 0  # or the removal would prove nothing

    # the command: one line saying the new due date and penalty
    ran = cli(course, "extend", "canvas1001", "--days", "2")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == (
        "canvas1001: extension 2 d; due 2024-03-03 12:00:00 UTC; on time; "
        f"late penalty {done.penalty_after:g} -> 0"
    )
    with pytest.raises(ExtendError, match="no submission"):
        extend(course, "nobody", days=1)
    with pytest.raises(ExtendError, match="not after the due date"):
        extend(course, "canvas1001", until=str(DUE - timedelta(hours=1)))


# --- the grade summary ---------------------------------------------------------------------


def test_grade_summary_says_penalties_and_singular() -> None:
    record = {
        "notebooks": {nb: {"status": "graded"} for nb in contract.NOTEBOOKS},
        "flags": [],
        "total": 17.0,
        "max_total": 17.0,
    }
    late = (LATE - DUE).total_seconds() + 0.053242
    run = GradeRun({"s1": record}, {}, 1.0, 1, lateness={"s1": (late, 3.0, False)})
    text = run.format()
    assert text.splitlines()[0] == "graded 1 student in 1.0 s"
    assert "late 1 d 2 h: penalty -3" in text
    run = GradeRun({"s1": record, "s2": record}, {}, 1.0, 2, lateness={"s2": (late, 3.0, True)})
    text = run.format()
    assert text.startswith("graded 2 students")
    s2 = next(line for line in text.splitlines() if line.startswith("  s2"))
    assert "lateness unknown" in s2 and "late 1 d" not in s2
    s1 = next(line for line in text.splitlines() if line.startswith("  s1"))
    assert "late" not in s1


# --- one line, non-zero exit, for misuse ---------------------------------------------------


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "toeplitz_course", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def one_line(done: subprocess.CompletedProcess) -> str:
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_outside_a_course_and_a_broken_config(tmp_path: Path) -> None:
    for step in (["export"], ["grade"], ["report"], ["extend", "s", "--days", "1"]):
        done = cli(tmp_path, *step)
        assert done.returncode == 2, step
        assert "not a course directory (no nbgrader_config.py)" in one_line(done)
    config = tmp_path / "nbgrader_config.py"
    config.write_text("c = get_config()\n\nc.Foo.bar = (\n")
    line = one_line(done := cli(tmp_path, "export"))
    assert done.returncode == 2
    assert f"{config}, line 3:" in line and "syntax error" in line
    config.write_text("c = get_config()\nc.Foo.bar = undefined_name\n")
    line = one_line(done := cli(tmp_path, "grade"))
    assert done.returncode == 2
    assert f"{config}, line 2: NameError" in line


def test_export_before_grade_nothing_to_grade_collect_placing_nothing(
    tmp_path: Path, empty_gradebook: Path
) -> None:
    (tmp_path / "nbgrader_config.py").write_text("c = get_config()\n")
    done = cli(tmp_path, "export")
    assert done.returncode == 1 and "no gradebook" in one_line(done)
    shutil.copyfile(empty_gradebook, tmp_path / "gradebook.db")
    done = cli(tmp_path, "export")
    assert done.returncode == 1 and "run grade first" in one_line(done)

    done = cli(tmp_path, "grade", "--quiet")
    assert done.returncode == 1 and "nothing to grade" in one_line(done)

    download = tmp_path / "submissions.zip"
    with zipfile.ZipFile(download, "w") as zf:
        zf.writestr("smithjane_123_456_homework.pdf", b"%PDF-1.4")
    done = cli(tmp_path, "collect", str(download))
    assert done.returncode == 1
    assert "placed nothing: 1 files rejected" in one_line(done)


# --- each LMS's download back into that LMS ---------------------------------------------------


def _people() -> list[downloads.Student]:
    """A small term: an on-time student, a resubmission after the due date, a student with an
    "_" in their login, each with the LMS's own ids (Canvas/Moodle numbers, a username)."""
    nb1, nb2 = (f"{n}.ipynb" for n in contract.NOTEBOOKS[:2])
    ann = downloads.Student("Ann", "Abel", 2001, "aabel")
    ann.attempts.append(downloads.Attempt(DUE - timedelta(hours=3), {nb1: b"", nb2: b""}))
    ben = downloads.Student("Ben", "Bose", 2002, "bbose")
    ben.attempts.append(downloads.Attempt(DUE - timedelta(days=1), {nb1: b""}))
    ben.attempts.append(downloads.Attempt(LATE, {nb1: b""}, late=True))
    cy = downloads.Student("Cy", "Cole", 2003, "c_cole")
    cy.attempts.append(downloads.Attempt(DUE - timedelta(minutes=5), {nb2: b""}))
    for person in (ann, ben, cy):  # a real notebook per file, its content naming its owner
        for attempt in person.attempts:
            attempt.files = {f: downloads.nb(f"{person.username} {f}") for f in attempt.files}
    return [ann, ben, cy]


#: LMS -> (download builder, the LMS's record for --times or None, the id its import matches on)
ROUND_TRIPS = {
    "canvas": (downloads.canvas, downloads.canvas_submissions_json, lambda p: str(p.user_id)),
    "moodle": (downloads.moodle, downloads.moodle_worksheet, lambda p: f"Participant {p.user_id}"),
    "blackboard": (downloads.blackboard, None, lambda p: p.username),
    "brightspace": (
        downloads.brightspace,
        downloads.brightspace_grades_export,
        lambda p: str(100000 + p.user_id),
    ),
}


def lms_import(system: str, path: Path) -> dict[str, float]:
    """The LMS's import of its file, as its importer reads it (lms.py cites each): the id each
    row is matched on -> the grade; fails where the LMS would refuse the file or create a
    column or assignment."""
    rows = read_csv(path)
    header, body = rows[0], rows[1:]
    if system == "canvas":
        assert "Student" in header[0] and header[1] == "ID" and header[4] == "Section"
        assert header[5:] == [CANVAS_COLUMN]  # one assignment, matched by its number
        return {row[1]: float(row[5]) for row in body}
    if system == "moodle":
        for required in ("Identifier", "Grade", "Last modified (grade)"):
            assert header.count(required) == 1
        records = [dict(zip(header, row, strict=True)) for row in body]
        return {r["Identifier"]: float(r["Grade"]) for r in records}
    if system == "blackboard":
        assert header == ["Username", BLACKBOARD_COLUMN]  # a column id: no new column
        return {row[0]: float(row[1]) for row in body}
    assert header == ["OrgDefinedId", "Toeplitz Points Grade", "End-of-Line Indicator"]
    assert all(row[2] == "#" for row in body)
    return {row[0]: float(row[1]) for row in body}


@pytest.mark.parametrize("system", sorted(ROUND_TRIPS))
def test_each_lms_download_comes_back_as_its_import(
    system: str, tmp_path: Path, empty_gradebook: Path
) -> None:
    """Download (as the LMS writes it) -> collect -> the gradebook rows grade writes for the
    students collect placed -> export -> the LMS's import: every student matched on the id the
    download carried, with the gradebook's grade, in the one existing column."""
    from toeplitz_course.instructor.collect import collect

    builder, record, lms_id = ROUND_TRIPS[system]
    people = _people()
    course = tmp_path / "course"
    course.mkdir()
    (course / "nbgrader_config.py").write_text(
        "c = get_config()\n"
        'c.LmsCollectorPlugin.archive_timezone = "UTC"\n'
        f"c.LmsExport.canvas_assignment = {CANVAS_COLUMN!r}\n"
        f"c.LmsExport.blackboard_column = {BLACKBOARD_COLUMN!r}\n"
        'c.LmsExport.brightspace_item = "Toeplitz"\n'
    )
    download = builder(tmp_path / f"{system}.zip", people)
    times = None
    if record is not None:
        times = tmp_path / ("times.json" if system == "canvas" else "record.csv")
        times.write_text(record(people), encoding="utf-8")
    report = collect(download, course, times=times)
    assert not report.rejected, report.format()
    placed = sorted({p.student for p in report.placed})
    assert len(placed) == len(people)

    # What grade writes for them (grading itself is covered by test_lateness and test_cli).
    shutil.copyfile(empty_gradebook, course / "gradebook.db")
    url = f"sqlite:///{course / 'gradebook.db'}"
    with Gradebook(url) as gb:
        gb.add_assignment(A, duedate=DUE)
        for notebook in contract.NOTEBOOKS:
            gb.add_notebook(notebook, A)
        for e in contract.EXERCISES:
            gb.add_solution_cell(e.answer_id, e.notebook, A)
            gid = e.test_id or e.answer_id
            kind = "code" if e.autograded else "markdown"
            gb.add_grade_cell(gid, e.notebook, A, max_score=e.points, cell_type=kind)
        for right, student in enumerate(placed, start=5):
            gb.add_student(student)
            gb.add_submission(A, student)
            for gid, score in _exercises_right(right).items():
                e = contract.BY_TEST_ID.get(gid) or next(
                    x for x in contract.EXERCISES if x.answer_id == gid
                )
                grade = gb.find_grade(gid, e.notebook, A, student)
                grade.auto_score = score
                grade.manual_score = None if e.autograded else score
                grade.needs_manual_grade = False  # the written answer graded by hand
        gb.db.commit()

    result = export(course)
    files = {
        "canvas": "canvas_grades.csv",
        "moodle": "moodle_grading_worksheet.csv",
        "blackboard": "blackboard_grade_center.csv",
        "brightspace": "brightspace_grades.csv",
    }
    imported = lms_import(system, course / "exports" / files[system])
    rows = {row.student_id: row for row in result.rows}
    expected = {}
    for p in people:
        [student] = {r.student_id for r in rows.values() if r.identity.user_id in _ids(p)}
        expected[lms_id(p)] = pytest.approx(scores(url)[student])
    assert imported == expected


def _ids(p: downloads.Student) -> set[str]:
    """The ids the ledger may keep for ``p`` (the download's, or the LMS record's)."""
    return {str(p.user_id), p.username, str(100000 + p.user_id)}


@pytest.mark.parametrize("system", ["canvas", "moodle"])
def test_one_lms_account_under_two_student_ids_is_in_no_file(tmp_path: Path, system: str) -> None:
    """A sortable name changed between two Canvas downloads, Moodle's blind marking lifted: one
    account, two student ids, each with part of the work. Two rows for one person would let the
    import take either partial total; neither is written, and the summary line says why."""
    from toeplitz_course.instructor import lms

    def graded(student_id: str, user_id: str, score: float) -> lms.Graded:
        identity = lms.Identity(system=system, user_id=user_id, name=student_id)
        return lms.Graded(student_id, identity, score, 23)

    students = [
        graded("smithann", "1001", 20),
        graded("jonesann", "1001", 3),
        graded("leedana", "1004", 9),
    ]
    settings = lms.LmsExport(canvas_assignment=CANVAS_COLUMN)
    [written] = lms.write_lms_files(students, tmp_path, settings)
    assert written.written == ["leedana"]
    assert "one " + system + " id under two student ids" in written.line
    assert "smithann" in written.line and "jonesann" in written.line
    rows = read_csv(written.path)
    assert sum("1001" in "".join(row) for row in rows) == 0
