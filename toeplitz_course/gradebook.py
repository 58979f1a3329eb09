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

import contextlib
import time
from collections.abc import Callable, Iterator
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


def share_engines() -> Callable[[], None]:
    """Make every ``Gradebook`` this process opens on one URL share one SQLAlchemy engine.

    nbgrader opens a ``Gradebook`` about five times per notebook it autogrades (the converter and
    each of its gradebook preprocessors), and each builds a new engine, so every statement is
    compiled again, and checks the schema again: it lists the tables and runs
    ``metadata.create_all``, about ten catalogue queries. The engine is SQLAlchemy's unit of reuse
    (its compiled-statement cache lives there), so it is shared; and once one ``Gradebook`` has
    created or checked the schema through an engine, the next ones on that engine skip the check
    (the tables a grading run writes to are not dropped under it). Nothing else changes: each
    ``Gradebook`` still has its own session, and ``close()`` still returns its connections.

    Returns a function that undoes this and disposes of the shared engines (their pooled
    connections), for a process that goes on after grading; see ``engines_shared``. Calling it
    again while shared changes nothing and returns a function that does nothing.
    """
    import nbgrader.api as api

    if getattr(api.create_engine, "shared_engines", None) is not None:
        return lambda: None
    create, inspect, metadata = api.create_engine, api.inspect, api.Base.metadata
    engines: dict[tuple, Any] = {}
    checked: set[Any] = set()  # engines whose schema a Gradebook has created or checked

    def create_engine(url, *args, **kwargs):
        key = (str(url), args, tuple(sorted(kwargs.items())))
        if key not in engines:
            engines[key] = create(url, *args, **kwargs)
        return engines[key]

    def inspect_tables(subject, *args, **kwargs):
        # nbgrader asks only whether the database has tables (to stamp alembic's version).
        if subject in checked:
            return _KnownTables(sorted(metadata.tables))
        return inspect(subject, *args, **kwargs)

    def create_all(bind=None, tables=None, checkfirst=True):
        if bind in checked and tables is None and checkfirst:
            return
        metadata.__class__.create_all(metadata, bind=bind, tables=tables, checkfirst=checkfirst)
        if tables is None and bind in engines.values():
            checked.add(bind)

    create_engine.shared_engines = engines
    api.create_engine, api.inspect, metadata.create_all = create_engine, inspect_tables, create_all

    def undo() -> None:
        api.create_engine, api.inspect = create, inspect
        del metadata.create_all
        for engine in engines.values():
            engine.dispose()
        engines.clear()
        checked.clear()

    return undo


@contextlib.contextmanager
def engines_shared() -> Iterator[None]:
    """``share_engines()`` for the duration of a block (grading in this process)."""
    undo = share_engines()
    try:
        yield
    finally:
        undo()


class _KnownTables:
    """What ``inspect(engine)`` tells nbgrader about a schema already checked."""

    def __init__(self, names: list[str]):
        self._names = names

    def get_table_names(self) -> list[str]:
        return list(self._names)
