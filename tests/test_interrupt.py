"""Ctrl-C in the middle of ``grade``: a quick, quiet stop, nothing left running, a consistent
gradebook, and a rerun that finishes the class.

The command an instructor types runs in a process group of its own, and SIGINT goes to the whole
group, as a terminal sends it. Every process the batch started (the forkserver, the workers,
their warm parents, the kernels in their PID namespaces) is found through ``/proc`` before the
signal and must be gone afterwards. Documented behaviour checked here: a rerun grades everyone
again (the students graded before the interrupt once more, the others for the first time).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import handins
import pytest
from nbgrader.api import Gradebook

from toeplitz_course.course.contract import ASSIGNMENT, NOTEBOOKS
from toeplitz_course.grader.coursedir import LOGS, RECORDS, db_url
from toeplitz_course.instructor import examples

pytestmark = pytest.mark.timeout(300)

JOBS = 2
KINDS = list(examples.EXAMPLES)  # correct, blank, mistakes
CLASS = {f"s{i:02d}_{KINDS[i % 3].removeprefix('example_')}": KINDS[i % 3] for i in range(5)}
#: What each student hands in: two notebooks (two kernels a student) keep the batch long enough
#: to be interrupted with a kernel running; the missing four still get every gradebook row.
PARTS = NOTEBOOKS[:2]

INTERRUPTED = re.compile(
    r"interrupted: (\d+) of (\d+) students graded; run grade again to grade the rest"
)


def _command(course: Path) -> list[str]:
    return [sys.executable, "-m", "toeplitz_course", "--root", str(course), "grade"] + [
        "--jobs",
        str(JOBS),
    ]


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, start time) of every process, from /proc."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        found[int(entry)] = (int(fields[1]), fields[19])
    return found


def _descendants(root_pid: int) -> dict[int, tuple[str, int]]:
    """pid -> (start time, depth below ``root_pid``) of every process under it."""
    table = _processes()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = {}, [(root_pid, 0)]
    while todo:
        pid, depth = todo.pop()
        for child in children.get(pid, []):
            found[child] = (table[child][1], depth + 1)
            todo.append((child, depth + 1))
    return found


def _alive(pid: int, started: str) -> bool:
    """The process is still there, the same one (not a reused pid), and not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[19] == started and fields[0] != "Z"


def _records(course: Path) -> dict[str, dict]:
    found = {}
    for path in (course / RECORDS).glob("*.json"):
        try:
            found[path.stem] = json.loads(path.read_text())
        except ValueError:
            pytest.fail(f"half-written record {path.name}")
    return found


def _gradebook(course: Path) -> dict[str, dict[str, dict[str, float | None]]]:
    """student -> notebook -> grade cell -> score, checking every submission has all its rows."""
    with Gradebook(db_url(course)) as gb:
        cells = {
            nb: {c.name for c in gb.find_notebook(nb, ASSIGNMENT).grade_cells} for nb in NOTEBOOKS
        }
        book = {}
        for sub in gb.assignment_submissions(ASSIGNMENT):
            notebooks = {nb.name: {g.name: g.score for g in nb.grades} for nb in sub.notebooks}
            assert set(notebooks) == set(NOTEBOOKS), sub.student.id
            for nb, grades in notebooks.items():
                assert set(grades) == cells[nb], (sub.student.id, nb)
            book[sub.student.id] = notebooks
    return book


def _agrees(record: dict, scores: dict[str, dict[str, float | None]]) -> None:
    for nb, entry in record["notebooks"].items():
        assert {c: v["score"] for c, v in entry["cells"].items()} == scores[nb], (
            record["student"],
            nb,
        )


@pytest.fixture
def big_class(course: Path) -> Path:
    for student, kind in CLASS.items():
        handins.write(examples.EXAMPLES[kind](course), course, student, PARTS)
    return course


def test_ctrl_c_stops_quickly_quietly_and_a_rerun_finishes(big_class: Path, tmp_path: Path):
    course = big_class
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        grading = subprocess.Popen(
            _command(course), stdout=stdout, stderr=stderr, start_new_session=True
        )
    try:
        # Wait for one student graded and a kernel running (the fifth generation: the command,
        # the forkserver, a worker, its warm parent, a kernel).
        deadline = time.monotonic() + 180
        while not any((course / RECORDS).glob("*.json")) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)  # for the batch to have taken the record in
        seen: dict[int, tuple[str, int]] = {}
        while time.monotonic() < deadline and grading.poll() is None:
            seen = _descendants(grading.pid)
            if max((d for _, d in seen.values()), default=0) >= 4:
                break
            time.sleep(0.05)
        assert grading.poll() is None, "the batch ended before it could be interrupted"
        assert max(d for _, d in seen.values()) >= 4, "no kernel was running"
        os.killpg(grading.pid, signal.SIGINT)
        seen.update(_descendants(grading.pid))  # what started between the look and the signal
        sent = time.monotonic()
        returncode = grading.wait(timeout=30)
        took = time.monotonic() - sent
    finally:
        if grading.poll() is None:
            os.killpg(grading.pid, signal.SIGKILL)
            grading.wait()

    assert took < 10, f"took {took:.1f} s to stop"
    assert returncode == 130
    assert err.read_text() == "", err.read_text()
    lines = out.read_text().splitlines()
    assert len(lines) == 1, lines
    match = INTERRUPTED.fullmatch(lines[0].split(" (")[0])
    assert match, lines[0]
    graded, total = int(match[1]), int(match[2])
    assert total == len(CLASS)

    deadline = time.monotonic() + 5
    while (
        left := [p for p, (t, _) in seen.items() if _alive(p, t)]
    ) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert left == [], [Path(f"/proc/{p}/cmdline").read_bytes()[:120] for p in left]

    # The gradebook: every submission has all its rows; every student whose record was written
    # has the scores it says.
    records = _records(course)
    book = _gradebook(course)
    # A worker stopped between writing a record and handing it back leaves one more record
    # than counted (a window of a few milliseconds); never fewer.
    assert 1 <= graded <= len(records) <= graded + JOBS
    assert graded < len(CLASS)
    for student, record in records.items():
        _agrees(record, book[student])

    rerun_start = time.time()
    rerun = subprocess.run(_command(course), capture_output=True, text=True, timeout=240)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert rerun.stderr == ""
    summary = rerun.stdout.splitlines()
    for student in CLASS:  # each student graded once in the rerun, and listed once
        assert sum(line.split()[:1] == [student] for line in summary) == 1, (student, summary)
    records = _records(course)
    assert set(records) == set(CLASS)
    book = _gradebook(course)
    assert set(book) == set(CLASS)
    for student, kind in CLASS.items():
        record = records[student]
        assert os.path.getmtime(course / RECORDS / f"{student}.json") >= rerun_start, student
        assert os.path.getmtime(course / LOGS / f"{student}.log") >= rerun_start, student
        _agrees(record, book[student])
        scores = {c: s for nb in book[student].values() for c, s in nb.items()}
        expected = handins.expected(kind, PARTS)
        assert {c: scores[c] for c in expected} == expected, student
        assert any(expected.values()) is (kind != "example_blank")
