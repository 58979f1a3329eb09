"""Opening nbgrader's gradebook from several grading processes at once.

nbgrader's ``Gradebook(db_url, course_id)`` makes sure its course has a row: it looks the row up
and inserts it when it is missing (``Gradebook.check_course``), in two statements, not one. Two
processes that open a gradebook whose course row does not exist yet both find nothing, both
insert, and the second fails with a unique-key violation, which nbgrader raises as
``InvalidEntry`` from the constructor. Opened at the same moment by two processes, it fails every
time on SQLite and about every other time on PostgreSQL (``tests/test_postgres.py``,
``tests/test_parallel.py``).

In ``grade`` that is what happens when workers first open the gradebook: ``Gradebook(url)`` in
``grade.py`` uses nbgrader's default course id ``"default_course"``, which
``nbgrader generate_assignment`` never creates, so on a new gradebook every worker's first
student would insert it, and a worker that loses the race fails that student. Autograde's own
``Gradebook`` calls use the configured course id; generate_assignment created that row, unless
the gradebook was generated under another id.

``prepare(root)`` creates both rows once, in the parent, before any worker starts;
``open_gradebook`` retries the constructor when another process inserted the row first (then
the row exists and the retry finds it), for callers that cannot be sure ``prepare`` ran.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from nbgrader.api import Gradebook, InvalidEntry

#: The course id of ``Gradebook(url)`` without one.
DEFAULT_COURSE = "default_course"


def open_gradebook(url: str, course_id: str = DEFAULT_COURSE, attempts: int = 5) -> Gradebook:
    """``Gradebook(url, course_id)``, retried when a concurrent process inserted the course row.

    The constructor raises ``InvalidEntry`` only from that insert, so a retry is safe.
    """
    for attempt in range(attempts):
        try:
            return Gradebook(url, course_id)
        except InvalidEntry:
            if attempt == attempts - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


def course_ids(root: Path | str) -> list[str]:
    """Every course id the grading of ``root`` opens the gradebook with."""
    from nbgrader.coursedir import CourseDirectory

    from .grade import course_config

    configured = CourseDirectory(config=course_config(Path(root).resolve())).course_id
    return list(dict.fromkeys([configured or DEFAULT_COURSE, DEFAULT_COURSE]))


def prepare(root: Path | str) -> None:
    """Create the course rows of ``root``'s gradebook now, before workers open it in parallel."""
    from .grade import db_url

    url = db_url(Path(root).resolve())
    for course_id in course_ids(root):
        open_gradebook(url, course_id).close()


def share_engines() -> None:
    """Make every ``Gradebook`` this process opens on one URL share one SQLAlchemy engine.

    nbgrader opens a ``Gradebook`` about ten times per notebook it autogrades (the converter and
    each of its gradebook preprocessors), and each builds a new engine, so every statement is
    compiled again: most of the grading process's time per notebook. The engine is SQLAlchemy's
    unit of reuse (its compiled-statement cache lives there); sharing it changes nothing else:
    each ``Gradebook`` still has its own session and ``close()`` still returns its connections.
    """
    import nbgrader.api as api

    if getattr(api.create_engine, "shared_engines", None) is not None:
        return
    create = api.create_engine
    engines: dict[tuple, Any] = {}

    def create_engine(url, *args, **kwargs):
        key = (str(url), args, tuple(sorted(kwargs.items())))
        if key not in engines:
            engines[key] = create(url, *args, **kwargs)
        return engines[key]

    create_engine.shared_engines = engines
    api.create_engine = create_engine
