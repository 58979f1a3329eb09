"""Feedback's workers are forks of the process that warmed up on the first student.

What the pages hold, byte for byte against stock nbgrader, is ``test_feedback.py``'s (its class
gets feedback with two workers, so through ``_feedback_forked``); here, what the forking itself
promises: the workers inherit what this process warmed, and no log file of the student it wrote.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import threading
from functools import partial
from pathlib import Path

from toeplitz_course.grader import grade as grading
from toeplitz_course.instructor import feedback

WARMED = Path("/nonexistent/toeplitz-warmed-course")


def _probe(root, student):
    """Run in a worker: its parent, and whether this process's converter cache is the warm one."""
    return os.getppid(), feedback._CONVERTERS.get(WARMED) == "warm"


def _run(fork_here: bool) -> dict:
    results: dict = {}
    errors: dict = {}
    grading.run_in_pool(
        _probe,
        WARMED,
        ["s1", "s2", "s3"],
        (),
        2,
        results,
        errors,
        lambda student: None,
        initializer=partial(grading._worker_init, kernels=False, forked_here=fork_here),
        preload=("toeplitz_course.instructor.feedback",),
        fork_here=fork_here,
    )
    assert errors == {}
    return results


def _in_a_fresh_process(target, *args):
    """``target(*args)`` in a spawned process, which has no thread (pytest's may: a fixture's
    server), so that ``run_in_pool`` can fork from it; its result or its exception."""
    context = multiprocessing.get_context("spawn")
    mine, theirs = context.Pipe()
    child = context.Process(target=_child, args=(theirs, target, args))  # not daemonic: it forks
    child.start()
    theirs.close()
    try:
        ok, value = mine.recv()
    finally:
        child.join(60)
    if not ok:
        raise AssertionError(value)
    return value


def _child(conn, target, args) -> None:
    try:
        conn.send((True, target(*args)))
    except BaseException as exc:  # noqa: BLE001 - reported to the test
        conn.send((False, f"{type(exc).__name__}: {exc}"))


def _inherit() -> tuple[dict, dict]:
    assert threading.active_count() == 1  # else run_in_pool falls back to its server
    feedback._CONVERTERS[WARMED] = "warm"
    try:
        return _run(fork_here=True), _run(fork_here=False)
    finally:
        del feedback._CONVERTERS[WARMED]


def test_workers_forked_here_inherit_what_this_process_warmed():
    (here, served), parent = _in_a_fresh_process(_with_pid, _inherit)
    assert set(here.values()) == {(parent, True)}
    # The control: workers forked from the server have their own, cold, process.
    assert all(ppid != parent and not warm for ppid, warm in served.values())


def _with_pid(target, *args):
    return target(*args), os.getpid()


def _pages(course: Path) -> dict[str, bytes]:
    folder = course / "feedback"
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*.html")}


def _forked_feedback(course: Path) -> dict[str, bytes]:
    assert threading.active_count() == 1  # so the workers are forks of this process
    run = feedback.feedback(course, jobs=2, progress=False)
    assert run.written
    return _pages(course)


def test_pages_from_workers_forked_here_are_the_servers(graded_class, tmp_path):
    """The class's pages (``conftest``: written by workers from the server, since pytest's
    process has a thread; ``test_feedback`` holds them to stock nbgrader's) written again by
    workers forked from a process warmed on the first student: the same bytes."""
    course = tmp_path / "course"
    course.mkdir()
    # What feedback reads (submitted/ holds the hostile hand-ins' special files).
    for name in ("autograded", "source", "release"):
        shutil.copytree(graded_class.course / name, course / name, symlinks=True)
    for name in ("nbgrader_config.py", "gradebook.db"):
        shutil.copy(graded_class.course / name, course / name)
    pages = _in_a_fresh_process(_forked_feedback, course)
    assert len(pages) >= 5
    assert pages == _pages(graded_class.course)


def test_no_worker_inherits_the_first_students_log_open(tmp_path):
    log = grading._logger(tmp_path, "s01", feedback.FEEDBACK_LOGS, step="feedback")
    feedback._current_log().handlers[:] = log.handlers
    (handler,) = log.handlers
    feedback._close_student_logs(["s01"])
    assert handler.stream is None  # closed: FileHandler.close drops its stream
    assert not log.handlers and not feedback._current_log().handlers
