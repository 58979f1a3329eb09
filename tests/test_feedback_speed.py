"""Feedback's workers are forks of the process that warmed up on the first student.

What the pages hold, byte for byte against stock nbgrader, is ``test_feedback.py``'s (its class
gets feedback with two workers, so through ``_feedback_forked``); here, what the forking itself
promises: the workers inherit what this process warmed, and no log file of the student it wrote.
"""

from __future__ import annotations

import os
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


def test_workers_forked_here_inherit_what_this_process_warmed():
    assert threading.active_count() == 1  # else run_in_pool falls back to its server
    feedback._CONVERTERS[WARMED] = "warm"
    try:
        here = _run(fork_here=True)
        served = _run(fork_here=False)
    finally:
        del feedback._CONVERTERS[WARMED]
    assert set(here.values()) == {(os.getpid(), True)}
    # The control: workers forked from the server have their own, cold, process.
    assert all(ppid != os.getpid() and not warm for ppid, warm in served.values())


def test_no_worker_inherits_the_first_students_log_open(tmp_path):
    log = grading._logger(tmp_path, "s01", feedback.FEEDBACK_LOGS, step="feedback")
    feedback._current_log().handlers[:] = log.handlers
    (handler,) = log.handlers
    feedback._close_student_logs(["s01"])
    assert handler.stream is None  # closed: FileHandler.close drops its stream
    assert not log.handlers and not feedback._current_log().handlers
