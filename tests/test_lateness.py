"""Lateness end to end: a Canvas download with late markers -> collect -> timestamp.txt -> grade
-> the gradebook's submission time and nbgrader's late penalty -> grades.csv, summary, report.

The expected penalty and score are not computed here: stock ``nbgrader autograde`` and
``nbgrader export`` grade a copy of the same course, with the same due date and the late-penalty
plugin nbgrader's documentation describes (``late.py``, ``SubMarks``: one point per hour late), and
the project's pipeline must agree with them.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
import zipfile
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from nbgrader.api import Gradebook
from nbgrader.utils import parse_utc

from toeplitz_course.course.contract import ASSIGNMENT, NOTEBOOKS
from toeplitz_course.grader.coursedir import db_url
from toeplitz_course.instructor import examples
from toeplitz_course.instructor.bench import STOCK_CONFIG
from toeplitz_course.instructor.collect import collect

pytestmark = pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning")

DUE = "2024-03-01 12:00:00 UTC"
DUE_UTC = datetime(2024, 3, 1, 12, 0, 0)
#: smithjane's last upload: 2 h 24 min 18 s after the due date; doej's an hour before it.
LATE_AT = DUE_UTC + timedelta(hours=2, minutes=24, seconds=18)
HOUR = timedelta(hours=1)
ON_TIME_AT = DUE_UTC - HOUR
DOWNLOADED_AT = DUE_UTC + timedelta(days=2)  # when the instructor downloaded the zip

#: nbgrader's documented example plugin (docs/source/plugins/late-plugin.rst), as late.py.
LATE_PLUGIN = '''\
from nbgrader.plugins import BasePlugin


class SubMarks(BasePlugin):
    def late_submission_penalty(self, student_id, score, total_seconds_late):
        """Penalty of 1 mark per hour late"""
        hours_late = total_seconds_late / 3600
        return round(hours_late, 0)
'''
PENALTY_CONFIG = """
c.AssignLatePenalties.plugin_class = "late.SubMarks"
c.LmsCollectorPlugin.archive_timezone = "UTC"
"""


def _run(course: Path, module: str, *args: str) -> subprocess.CompletedProcess:
    """``python -m module args`` in ``course``, as an instructor runs it (late.py importable)."""
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=course,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done


def nbgrader(course: Path, *args: str) -> subprocess.CompletedProcess:
    return _run(course, "nbgrader", *args)


def ours(course: Path, *args: str) -> str:
    return _run(course, "toeplitz_course", *args).stdout


def canvas_download(course: Path, path: Path) -> Path:
    """Canvas's "Download Submissions" zip for two students who handed in correct notebooks
    (not all: the others are missing, and score 0, for both graders, which keeps this test
    short): smithjane late (Canvas's _LATE_ marker, a resubmission "-1" of one notebook, the
    latest file LATE_AT), doej on time. Canvas names carry no time, and every entry's time is the
    download's (canvas-lms lib/content_zipper.rb): the submission times come from Canvas's own
    record, ``canvas_submissions``."""
    correct = examples.correct(course)
    first, second = NOTEBOOKS[0], NOTEBOOKS[1]
    with zipfile.ZipFile(path, "w") as zf:

        def put(name: str, nb, when: datetime) -> None:
            info = zipfile.ZipInfo(name, date_time=when.timetuple()[:6])
            zf.writestr(info, json.dumps(nb))

        put(f"smithjane_LATE_123456_7891011_{first}.ipynb", correct[first], DOWNLOADED_AT)
        put(f"smithjane_LATE_123456_7891011_{second}.ipynb", correct[second], DOWNLOADED_AT)
        put(f"smithjane_LATE_123456_7891011_{second}-1.ipynb", correct[second], DOWNLOADED_AT)
        put(f"doej_234567_8910112_{first}.ipynb", correct[first], DOWNLOADED_AT)
    return path


def canvas_submissions(path: Path) -> Path:
    """Canvas's submissions API (GET /api/v1/courses/:c/assignments/:a/submissions) as JSON:
    each student's own submission time, which ``collect --times`` takes over the zip's."""
    stamp = "%Y-%m-%dT%H:%M:%SZ"
    path.write_text(
        json.dumps(
            [
                {"user_id": 123456, "submitted_at": LATE_AT.strftime(stamp), "late": True},
                {"user_id": 234567, "submitted_at": ON_TIME_AT.strftime(stamp), "late": False},
            ]
        )
    )
    return path


def stock_rows(course: Path) -> dict[str, dict[str, str]]:
    """``nbgrader export``'s CSV, by student."""
    nbgrader(course, "export", "--to", "stock.csv")
    with (course / "stock.csv").open(newline="") as f:
        return {row["student_id"]: row for row in csv.DictReader(f)}


def penalties(course: Path) -> dict[str, dict]:
    """Per student, from the gradebook: submission time, seconds late, penalty per notebook."""
    with Gradebook(db_url(course)) as gb:
        return {
            sub.student_id: {
                "timestamp": sub.timestamp,
                "seconds_late": sub.total_seconds_late,
                "notebooks": {nb.name: nb.late_submission_penalty for nb in sub.notebooks},
                "penalty": sub.late_submission_penalty,
                "score": sub.score,
            }
            for sub in gb.assignment_submissions(ASSIGNMENT)
        }


def test_late_submission_penalty_as_stock_nbgrader_computes_it(course: Path, tmp_path: Path):
    (course / "late.py").write_text(LATE_PLUGIN)
    with (course / "nbgrader_config.py").open("a") as f:
        f.write(PENALTY_CONFIG)
    nbgrader(course, "db", "assignment", "add", ASSIGNMENT, f"--duedate={DUE}")

    report = collect(
        canvas_download(course, tmp_path / "submissions.zip"),
        course,
        times=canvas_submissions(tmp_path / "submissions.json"),
    )
    assert {p.student for p in report.placed if p.lms_late} == {"smithjane"}
    # timestamp.txt: nbgrader's format, the time of the latest file each student handed in
    for student, when in (("smithjane", LATE_AT), ("doej", ON_TIME_AT)):
        stamp = course / "submitted" / student / ASSIGNMENT / "timestamp.txt"
        assert stamp.read_text() == when.strftime("%Y-%m-%d %H:%M:%S.%f UTC") + "\n"
        assert parse_utc(stamp.read_text().strip()) == when

    # The same course, graded by stock nbgrader (its own preprocessors, the same penalty config)
    stock = tmp_path / "stock"
    shutil.copytree(course, stock)
    (stock / "nbgrader_config.py").write_text(STOCK_CONFIG + PENALTY_CONFIG)
    nbgrader(stock, "autograde", ASSIGNMENT)
    expected = penalties(stock)
    stock_csv = stock_rows(stock)
    assert expected["smithjane"]["seconds_late"] == (LATE_AT - DUE_UTC).total_seconds()
    assert expected["smithjane"]["penalty"] > 0 and expected["doej"]["penalty"] == 0

    graded = ours(course, "grade", "--quiet")
    got = penalties(course)
    for student in ("smithjane", "doej"):
        assert got[student] == expected[student], student
    # grade's summary says that the penalty changed smithjane's score, and by how much
    assert graded.splitlines()[0].startswith("graded 2 students in ")
    lines = {line.split()[0]: line for line in graded.splitlines() if line.startswith("  ")}
    assert f"late 2 h 24 min: penalty -{expected['smithjane']['penalty']:g}" in lines["smithjane"]
    assert "late" not in lines["doej"]

    summary = ours(course, "export")
    with (course / "exports" / "grades.csv").open(newline="") as f:
        csv_rows = {row["student_id"]: row for row in csv.DictReader(f)}
    for student in ("smithjane", "doej"):
        row, reference = csv_rows[student], stock_csv[student]
        assert float(row["late_penalty"]) == float(reference["late_submission_penalty"])
        assert float(row["score"]) == float(reference["score"])
        assert float(row["total"]) == float(reference["raw_score"])
        assert parse_utc(row["timestamp"]) == parse_utc(reference["timestamp"])
    assert float(csv_rows["smithjane"]["seconds_late"]) == (LATE_AT - DUE_UTC).total_seconds()
    assert csv_rows["smithjane"]["note"] == "marked late by the LMS"
    assert float(csv_rows["doej"]["seconds_late"]) == 0 and csv_rows["doej"]["note"] == ""

    penalty = f"{expected['smithjane']['penalty']:g}"
    assert (
        f"due 2024-03-01 12:00:00 UTC; 1 late\n  smithjane: submitted {LATE_AT:%Y-%m-%d %H:%M:%S}"
        f" UTC, 2 h 24 min late, marked late by the LMS, penalty {penalty}"
    ) in summary
    text = ours(course, "report")
    assert f"  smithjane: submitted {LATE_AT:%Y-%m-%d %H:%M:%S} UTC, 2 h 24 min late" in text
    page = (course / "exports" / "summary.html").read_text()
    assert "2 h 24 min" in page and "smithjane" in page
