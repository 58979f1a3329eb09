"""The command line loads the course once: every step executes ``nbgrader_config.py`` exactly once,
in the instructor's process, however many workers it starts (they are handed the loaded course)."""

from __future__ import annotations

import csv
import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import lms_downloads as lms
from conftest import ROOT
from nbgrader.api import Gradebook

CANVAS_COLUMN = "Toeplitz (12345)"

#: Prepended to the course's config: one line per execution of the file, naming the process.
COUNTER = """\
import os as _os
with open(_os.path.join(_os.path.dirname(__file__), "config-runs.txt"), "a") as _f:
    _f.write(f"{_os.getpid()}\\n")
"""


def cli(course: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "toeplitz_course", *args],
        cwd=course,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


def runs_of(course: Path, *args: str, expect: int = 0) -> list[str]:
    """Run one step on the command line; the processes that executed nbgrader_config.py."""
    counter = course / "config-runs.txt"
    counter.unlink(missing_ok=True)
    done = cli(course, *args)
    assert done.returncode == expect, (args, done.stdout[-2000:], done.stderr[-2000:])
    return counter.read_text().split() if counter.exists() else []


def test_each_step_reads_the_config_once(course: Path, tmp_path: Path) -> None:
    exchange = tmp_path / "exchange"
    (exchange / "toeplitz-convolution" / "inbound").mkdir(parents=True)
    config = course / "nbgrader_config.py"
    config.write_text(
        COUNTER
        + config.read_text()
        + f"\nc.Exchange.root = {str(exchange)!r}\n"
        + f"c.LmsExport.canvas_assignment = {CANVAS_COLUMN!r}\n",
        encoding="utf-8",
    )
    blank = (course / "release" / "toeplitz" / "01_conv1d_toeplitz.ipynb").read_bytes()
    due = dt.datetime(2026, 12, 2, 23, 59)
    students = [
        lms.Student("Alice", "Anderson", 101, "aanderson"),
        lms.Student("Bob", "Brown", 102, "bbrown"),
    ]
    for s in students:
        s.attempts.append(lms.Attempt(due, {"01_conv1d_toeplitz.ipynb": blank}))
    download = lms.canvas(tmp_path / "submissions.zip", students)

    steps: list[tuple[str, ...]] = [
        ("collect", str(download)),
        # Two workers, so that a worker re-reading the config would show as a second process.
        ("grade", "--quiet", "--jobs", "2", "--no-sandbox"),
        ("feedback", "--jobs", "2"),
        ("export",),
        ("report",),
        ("similarity",),
        ("collect-exchange",),
    ]
    runs = {step[0]: len(runs_of(course, *step)) for step in steps}
    placed = sorted(p.name for p in (course / "submitted").iterdir())
    assert len(placed) == 2
    assert all((course / "feedback" / s).is_dir() for s in placed)

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        gb.update_or_create_assignment("toeplitz", duedate=due)
    runs["extend"] = len(runs_of(course, "extend", placed[0], "--days", "1"))
    assert runs == dict.fromkeys(runs, 1)

    # The round trip, graded for real: Canvas's import matches each row on the user id of the
    # download's file names, in the one column named (Canvas creates a column for any other).
    with (course / "exports" / "canvas_grades.csv").open(encoding="utf-8", newline="") as f:
        header, *rows = list(csv.reader(f))
    assert header[:2] == ["Student", "ID"] and header[5:] == [CANVAS_COLUMN]
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        graded = {s.student_id: s.score for s in gb.assignment_submissions("toeplitz")}
    assert {row[1]: float(row[5]) for row in rows} == {
        str(s.user_id): graded[p] for s, p in zip(students, placed, strict=True)
    }


def test_a_broken_config_is_one_line_naming_file_and_line(tmp_path: Path) -> None:
    from toeplitz_course.grader.coursedir import Course, CourseProblem

    config = tmp_path / "nbgrader_config.py"
    config.write_text("c = get_config()\nx = 1\nc.Foo.bar = 1 / 0\n")
    try:
        Course.load(tmp_path)
    except CourseProblem as exc:
        message = str(exc)
    else:
        raise AssertionError("a config that raises loaded")
    assert message.startswith(f"{config}, line 3: ZeroDivisionError") and "\n" not in message
