"""A batch on a terminal shows one progress bar and then its summary, nothing else; the details
are in the students' logs, whose path the summary names.

``grade`` runs as an instructor types it, on a pseudo-terminal (so the progress bar is drawn),
with its standard output and error both on it. The logs must hold nbgrader's "checksum has
changed" warning only for a test cell a student really edited, not for every test cell whose
hidden tests grading puts back.
"""

from __future__ import annotations

import json
import os
import pty
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import handins
import pytest

from toeplitz_course.course.contract import NOTEBOOKS, exercises_in
from toeplitz_course.grader.coursedir import RECORDS
from toeplitz_course.instructor import examples

pytestmark = pytest.mark.timeout(300)

EDITED = "ex1_2_test"  # the test cell the student "edited" rewrites to pass
CLASS = {**examples.EXAMPLES, "s_edited_test": examples.correct}
NEW = "s_new"  # graded alone afterwards: a student the gradebook has never seen
#: What each student hands in (a kernel each): the edited test cell's notebook and one more; the
#: missing notebooks must not be worth a line on the terminal either.
PARTS = NOTEBOOKS[:2]

BAR = re.compile(r"\[[# ]{30}\] \d+/\d+ students  \d+\.\d nb/s  .{10}  .{20}")
HEADER = re.compile(r"graded (\d+) students? in \d+\.\d s")
STUDENT = re.compile(r"  (\S+) +(\d+(?:\.\d+)?)/(\d+) +(.*)")
DETAILS = re.compile(r"details: (\S+) \(nbgrader's log of each student\)")
CHECKSUM = re.compile(r"Attribute 'checksum' for cell (\S+) has changed")


def _on_terminal(argv: list[str]) -> tuple[int, str]:
    """Run ``argv`` with stdout and stderr on a new pseudo-terminal; its exit status and all it
    wrote there (newlines as the terminal has them, \\r\\n)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
    os.close(slave)
    chunks: list[bytes] = []

    def read() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every writer has closed the terminal
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        code = proc.wait(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(10)
        os.close(master)
    return code, b"".join(chunks).decode("utf-8", "replace")


def _lines(text: str) -> tuple[list[str], list[str]]:
    """What was drawn with \\r (the bar) and the lines printed, apart."""
    drawn, printed = [], []
    for line in text.replace("\r\n", "\n").split("\n"):
        parts = line.split("\r")
        drawn += [p for p in parts[:-1] if p]
        if parts[-1]:
            printed.append(parts[-1])
    return drawn, printed


def _check_summary(text: str, course: Path, students: set[str]) -> Path:
    """The terminal shows the bar and the summary only, and the summary agrees with the
    records; returns the log path the summary names."""
    drawn, printed = _lines(text)
    assert drawn, text  # the bar
    for piece in drawn:
        assert BAR.fullmatch(piece), piece
    assert BAR.fullmatch(printed[0]), printed[0]  # the bar's last state, ended by a newline
    header, *rows, details = printed[1:]
    match = DETAILS.fullmatch(details)
    assert match, details
    assert HEADER.fullmatch(header), text
    assert int(HEADER.fullmatch(header)[1]) == len(students)
    records = {s: json.loads((course / RECORDS / f"{s}.json").read_text()) for s in students}
    assert len(rows) == len(students), text
    for row in rows:
        match = STUDENT.fullmatch(row)
        assert match, row
        record = records[match[1]]
        assert float(match[2]) == record["total"] and float(match[3]) == record["max_total"]
    return Path(DETAILS.fullmatch(details)[1])


def _checksum_warnings(log: Path) -> list[str]:
    return CHECKSUM.findall(log.read_text())


@pytest.fixture(scope="module")
def graded(course_template: Path, tmp_path_factory) -> tuple[Path, str]:
    course = tmp_path_factory.mktemp("quiet") / "course"
    shutil.copytree(course_template, course)
    for student, make in CLASS.items():
        handins.write(make(course), course, student, PARTS)
    # The student rewrites a test cell so that it passes whatever the answer.
    folder = course / "submitted" / "s_edited_test" / "toeplitz"
    notebook = next(nb for nb in PARTS if any(e.test_id == EDITED for e in exercises_in(nb)))
    path = folder / f"{notebook}.ipynb"
    nb = json.loads(path.read_text())
    cell = next(
        c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id") == EDITED
    )
    cell["source"] = "assert True  # my answer is right\n"
    path.write_text(json.dumps(nb))
    argv = [sys.executable, "-m", "toeplitz_course", "--root", str(course), "grade"]
    code, text = _on_terminal(argv + ["--jobs", "2"])
    assert code == 0, text
    return course, text


def test_a_batch_prints_the_bar_and_the_summary_only(graded):
    course, text = graded
    assert "Warning" not in text and "Traceback" not in text, text
    logs = _check_summary(text, course, set(CLASS))
    assert logs.name == "STUDENT.log"
    for student in CLASS:
        log = logs.with_name(f"{student}.log")
        assert log.is_file(), log
        details = log.read_text()
        for notebook in PARTS:  # nbgrader's own account of every notebook handed in
            assert f"Autograding {course}/autograded/{student}/toeplitz/{notebook}.ipynb" in (
                details
            ), (student, notebook)


def test_checksum_warning_only_for_an_edited_test_cell(graded):
    course, _ = graded
    logs = course / ".grading" / "logs"
    for student in examples.EXAMPLES:
        assert _checksum_warnings(logs / f"{student}.log") == [], student
    assert _checksum_warnings(logs / "s_edited_test.log") == [EDITED]
    record = json.loads((course / RECORDS / "s_edited_test.json").read_text())
    edited = [f for f in record["flags"] if f["kind"] == "edited_test"]
    assert [EDITED in f["detail"] for f in edited] == [True], record["flags"]
    # nbgrader put the real test back: the cell scores as the correct student's does.
    correct = json.loads((course / RECORDS / "example_correct.json").read_text())
    cells = {c: v for nb in record["notebooks"].values() for c, v in nb["cells"].items()}
    expected = {c: v for nb in correct["notebooks"].values() for c, v in nb["cells"].items()}
    assert cells[EDITED]["score"] == expected[EDITED]["score"]


def test_a_new_student_alone_prints_no_warning(graded):
    course, _ = graded
    handins.write(examples.mistakes(course), course, NEW, PARTS)
    argv = [sys.executable, "-m", "toeplitz_course", "--root", str(course), "grade"]
    code, text = _on_terminal(argv + ["--student", NEW])
    assert code == 0, text
    assert "Warning" not in text and "Traceback" not in text, text
    _check_summary(text, course, {NEW})
    assert _checksum_warnings(course / ".grading" / "logs" / f"{NEW}.log") == []
