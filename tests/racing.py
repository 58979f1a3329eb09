"""Opening the gradebook from several processes at the same moment (used by the tests of
toeplitz_course.grader.gradebook on SQLite and on PostgreSQL)."""

from __future__ import annotations

import multiprocessing

from nbgrader.api import Gradebook

from toeplitz_course.grader.gradebook import open_gradebook


def _open(url: str, course_id: str, barrier, errors, retry: bool) -> None:
    barrier.wait(timeout=60)
    try:
        (open_gradebook if retry else Gradebook)(url, course_id).close()
    except Exception as exc:  # noqa: BLE001 - reported to the test
        errors.put(type(exc).__name__)


def open_at_once(url: str, course_id: str, retry: bool, processes: int = 2) -> list[str]:
    """Open the gradebook with ``course_id`` from ``processes`` processes at the same moment."""
    # fork: the children run nothing but nbgrader.api on connections of their own.
    ctx = multiprocessing.get_context("fork")
    barrier, errors = ctx.Barrier(processes), ctx.SimpleQueue()
    procs = [
        ctx.Process(target=_open, args=(url, course_id, barrier, errors, retry))
        for _ in range(processes)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
    found = []
    while not errors.empty():
        found.append(errors.get())
    return found
