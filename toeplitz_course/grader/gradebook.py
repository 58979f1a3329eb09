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
from datetime import datetime
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

    from .coursedir import course_config

    configured = CourseDirectory(config=course_config(Path(root).resolve())).course_id
    return list(dict.fromkeys([configured or DEFAULT_COURSE, DEFAULT_COURSE]))


def prepare(root: Path | str) -> None:
    """Create the course rows of ``root``'s gradebook now, before workers open it in parallel."""
    from .coursedir import db_url

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
            engine = create(url, *args, **kwargs)
            # Gradebook.close() disposes of its engine, which would close the pooled connections
            # every other Gradebook on it shares and make the next one connect again.
            engine.dispose = _keep_pool
            engines[key] = engine
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
            del engine.dispose
            engine.dispose()
        engines.clear()
        checked.clear()

    return undo


def _keep_pool(close: bool = True) -> None:
    """``Engine.dispose`` of a shared engine, until ``share_engines`` is undone."""


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


class NotebookRows:
    """A ``Gradebook`` as nbgrader's per-cell preprocessors use it, for one notebook at a time.

    ``OverwriteCells`` looks up the source cell and the graded cell of every nbgrader cell, and
    ``SaveAutoGrades`` the grade and the comment of every graded or answer cell, each lookup a
    query joining three to seven tables, and commits after every cell. This wrapper answers
    those four lookups for its own notebook (and student) from one query per kind of row, made on
    first use, and returns the same ORM objects from the same session. A name it does not hold
    goes to nbgrader's own lookup, so a missing entry raises the same ``MissingEntry``; anything
    else is the wrapped ``Gradebook``'s.

    ``one_transaction=True`` makes the per-cell ``db.commit()`` a no-op and commits once, when the
    ``with`` block ends without an error: a notebook's grades are written together or not at all
    (an error rolls them all back, where nbgrader kept the cells before it).
    """

    def __init__(
        self,
        gradebook: Gradebook,
        notebook: str,
        assignment: str,
        student: str | None = None,
        *,
        one_transaction: bool = False,
    ):
        self._gb = gradebook
        self._key = (notebook, assignment)
        self._student = student
        self._rows: dict[str, dict[str, Any]] = {}
        self.db = _DeferredCommits(gradebook.db) if one_transaction else gradebook.db

    def __getattr__(self, name: str) -> Any:
        return getattr(self._gb, name)

    def __enter__(self) -> NotebookRows:
        self._gb.__enter__()
        return self

    def __exit__(self, exc_type, exc, tb) -> Any:
        if exc_type is None and isinstance(self.db, _DeferredCommits):
            self._gb.db.commit()
        return self._gb.__exit__(exc_type, exc, tb)

    # -- the four lookups -------------------------------------------------------------------------

    def find_source_cell(self, name: str, notebook: str, assignment: str):
        return self._find("source", name, (notebook, assignment), self._gb.find_source_cell)

    def find_graded_cell(self, name: str, notebook: str, assignment: str):
        return self._find("graded", name, (notebook, assignment), self._gb.find_graded_cell)

    def find_grade(self, name: str, notebook: str, assignment: str, student: str):
        return self._find("grade", name, (notebook, assignment, student), self._gb.find_grade)

    def find_comment(self, name: str, notebook: str, assignment: str, student: str):
        return self._find("comment", name, (notebook, assignment, student), self._gb.find_comment)

    def _find(self, kind: str, name: str, where: tuple, fallback: Callable) -> Any:
        mine = where == (*self._key, self._student) if len(where) == 3 else where == self._key
        if mine:
            if kind not in self._rows:
                self._rows[kind] = self._load(kind)
            row = self._rows[kind].get(name)
            if row is not None:
                return row
        return fallback(name, *where)

    def _load(self, kind: str) -> dict[str, Any]:
        """Every row of ``kind`` of this notebook by cell name, with nbgrader's precedence."""
        from nbgrader import api

        notebook, assignment = self._key
        db = self._gb.db
        if kind in ("source", "graded"):
            found: dict[str, Any] = {}
            # find_graded_cell tries GradeCell before TaskCell: the later update wins.
            models = (api.SourceCell,) if kind == "source" else (api.TaskCell, api.GradeCell)
            for model in models:
                query = (
                    db.query(model)
                    .join(api.Notebook, api.Notebook.id == model.notebook_id)
                    .join(api.Assignment, api.Assignment.id == api.Notebook.assignment_id)
                    .filter(api.Notebook.name == notebook, api.Assignment.name == assignment)
                )
                found.update((row.name, row) for row in query)
            return found
        # find_grade joins GradeCell then TaskCell; find_comment SolutionCell then TaskCell.
        row_model = api.Grade if kind == "grade" else api.Comment
        cells = (api.TaskCell, api.GradeCell if kind == "grade" else api.SolutionCell)
        found = {}
        for cell in cells:
            query = db.query(cell.name, row_model).join(cell, cell.id == row_model.cell_id)
            query = of_submission(query, row_model, assignment, self._student)
            found.update(query.filter(api.Notebook.name == notebook).all())
        return found


def of_submission(query: Any, row_model: Any, assignment: str, student: str) -> Any:
    """``query`` over ``row_model`` rows (nbgrader's ``Grade`` or ``Comment``), narrowed to one
    student's submission of ``assignment`` and joined to ``Notebook`` (filter on its name)."""
    from nbgrader import api

    return (
        query.join(api.SubmittedNotebook, api.SubmittedNotebook.id == row_model.notebook_id)
        .join(api.Notebook, api.Notebook.id == api.SubmittedNotebook.notebook_id)
        .join(
            api.SubmittedAssignment,
            api.SubmittedAssignment.id == api.SubmittedNotebook.assignment_id,
        )
        .join(api.Assignment, api.Assignment.id == api.SubmittedAssignment.assignment_id)
        .filter(api.Assignment.name == assignment, api.SubmittedAssignment.student_id == student)
    )


class _DeferredCommits:
    """A session whose ``commit()`` waits for the end of the notebook (``NotebookRows``)."""

    def __init__(self, session: Any):
        self._session = session

    def commit(self) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


class InTransaction:
    """``gb`` for code that commits as it goes (``handgrades.settle``) inside a caller's
    transaction: ``db.commit()`` waits for the caller's (nbgrader's own methods, reached through
    this wrapper, still commit: only ``db`` is wrapped)."""

    def __init__(self, gradebook: Gradebook):
        self._gb = gradebook
        self.db = _DeferredCommits(gradebook.db)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._gb, name)


# ---------------------------------------------------------------------------------------------
# Autograde results carried between gradebooks (grading on a cluster, grader/cluster.py): the
# assignment's structure goes out to the workers, each student's results come back, and only the
# instructor's process writes its gradebook.


def copy_assignment(source: Gradebook, dest: Gradebook, assignment: str) -> None:
    """Copy the assignment's notebooks and cells (no student, no submission) into ``dest``.

    What nbgrader's Autograde needs of a gradebook: the graded, solution, task and locked source
    cells ``generate_assignment`` recorded (no solution, which it stored after clearing them).
    """
    found = source.find_assignment(assignment)
    dest.update_or_create_assignment(assignment, duedate=found.duedate)
    for nb in found.notebooks:
        dest.update_or_create_notebook(nb.name, assignment, kernelspec=nb.kernelspec)
        for cell in nb.grade_cells:
            dest.update_or_create_grade_cell(
                cell.name, nb.name, assignment, max_score=cell.max_score, cell_type=cell.cell_type
            )
        for cell in nb.solution_cells:
            dest.update_or_create_solution_cell(cell.name, nb.name, assignment)
        for cell in nb.task_cells:
            dest.update_or_create_task_cell(
                cell.name, nb.name, assignment, max_score=cell.max_score, cell_type=cell.cell_type
            )
        for cell in nb.source_cells:
            dest.update_or_create_source_cell(
                cell.name,
                nb.name,
                assignment,
                source=cell.source,
                cell_type=cell.cell_type,
                locked=cell.locked,
                checksum=cell.checksum,
            )


def autograde_rows(gb: Gradebook, assignment: str, student: str) -> dict[str, Any]:
    """What autograding one student wrote into ``gb``, as plain data for ``apply_autograde``.

    Three queries: walking nbgrader's objects (a notebook's grades, then its comments) loads
    each relation lazily, about sixty statements a student on a worker.
    """
    from nbgrader import api

    sub = gb.find_submission(assignment, student)
    notebooks: dict[str, dict[str, Any]] = {}
    penalties = (
        gb.db.query(api.Notebook.name, api.SubmittedNotebook.late_submission_penalty)
        .join(api.SubmittedNotebook, api.SubmittedNotebook.notebook_id == api.Notebook.id)
        .filter(api.SubmittedNotebook.assignment_id == sub.id)
    )
    for name, penalty in penalties:
        notebooks[name] = {"late_submission_penalty": penalty, "grades": {}, "comments": {}}
    # Only the automatic score and comment: manual ones are the instructor's gradebook's own.
    for model, field, key in (
        (api.Grade, api.Grade.auto_score, "grades"),
        (api.Comment, api.Comment.auto_comment, "comments"),
    ):
        query = (
            gb.db.query(api.Notebook.name, api.BaseCell.name, field)
            .join(api.BaseCell, api.BaseCell.id == model.cell_id)
            .join(api.SubmittedNotebook, api.SubmittedNotebook.id == model.notebook_id)
            .join(api.Notebook, api.Notebook.id == api.SubmittedNotebook.notebook_id)
            .filter(api.SubmittedNotebook.assignment_id == sub.id)
        )
        for notebook, cell, value in query:
            notebooks[notebook][key][cell] = value
    timestamp = sub.timestamp.isoformat() if sub.timestamp else None
    return {"timestamp": timestamp, "notebooks": notebooks}


def forget_student(gb: Gradebook, student: str) -> None:
    """Delete ``student`` and everything of theirs from ``gb`` (a worker's scratch gradebook,
    which then again holds only the assignment), in five statements and one transaction."""
    from nbgrader import api
    from sqlalchemy import delete, select

    subs = select(api.SubmittedAssignment.id).where(api.SubmittedAssignment.student_id == student)
    nbs = select(api.SubmittedNotebook.id).where(api.SubmittedNotebook.assignment_id.in_(subs))
    db = gb.db
    for table, where in (
        (api.Grade.__table__, api.Grade.__table__.c.notebook_id.in_(nbs)),
        (api.Comment.__table__, api.Comment.__table__.c.notebook_id.in_(nbs)),
        (api.SubmittedNotebook.__table__, api.SubmittedNotebook.__table__.c.id.in_(nbs)),
        (api.SubmittedAssignment.__table__, api.SubmittedAssignment.__table__.c.id.in_(subs)),
        (api.Student.__table__, api.Student.__table__.c.id == student),
    ):
        db.execute(delete(table).where(where))
    db.commit()
    db.expire_all()


def apply_autograde(
    gb: Gradebook, assignment: str, batch: list[tuple[str, dict, list[str]]]
) -> None:
    """Write the autograde results of a batch of students into ``gb``, as grading here would.

    ``batch``: ``(student, rows, ungraded)`` per student, ``rows`` from ``autograde_rows`` on a
    worker, ``ungraded`` the notebooks that were missing, invalid or failed (they score 0).

    The same fields, with the same rules, as nbgrader's Autograde and SaveAutoGrades and our
    ``grade`` write them: the student, the submission and its timestamp (a new submission with
    every notebook, grade and comment of the assignment, as ``Gradebook.add_submission`` makes
    it), each grade's ``auto_score`` (a grade that has a manual score here, or no automatic one,
    needs manual grading, as SaveAutoGrades decides), each comment's ``auto_comment``, each
    notebook's late penalty. Hand grades are then kept or reset by ``grade.finish_record``, as
    after grading here.

    Nothing is committed: the caller commits the batch as one transaction. The statements are
    a fixed number per batch (a lookup and an ``executemany`` per table), not per row: the ORM
    path (``update_or_create_submission``, then every grade object loaded and flushed) costs
    about 60 statements a student, most of the instructor's time when a cluster grades.
    """
    from nbgrader import api
    from nbgrader.api import new_uuid
    from nbgrader.utils import parse_utc
    from sqlalchemy import bindparam, insert, select, update

    if not batch:
        return
    db = gb.db
    found = gb.find_assignment(assignment)
    structure = _structure(db, found.id)
    students = [student for student, _, _ in batch]
    known = set(db.scalars(select(api.Student.id).where(api.Student.id.in_(students))))
    if missing := [s for s in students if s not in known]:
        db.execute(insert(api.Student.__table__), [{"id": s} for s in missing])
    sa = api.SubmittedAssignment.__table__
    existing = dict(
        db.execute(
            select(sa.c.student_id, sa.c.id).where(
                sa.c.assignment_id == found.id, sa.c.student_id.in_(students)
            )
        ).all()
    )
    new_subs, new_nbs, new_grades, new_comments, stamps = [], [], [], [], []
    nb_updates, grade_updates, comment_updates = [], [], []
    for student, rows, ungraded in batch:
        stamp = rows.get("timestamp")
        stamp = parse_utc(datetime.fromisoformat(stamp)) if stamp else None
        if student not in existing:
            sub_id = new_uuid()
            new_subs.append(
                {"id": sub_id, "assignment_id": found.id, "student_id": student, "timestamp": stamp}
            )
            for name, (notebook_id, grade_cells, comment_cells) in structure.items():
                nb_rows = rows["notebooks"].get(name)
                nb_id = new_uuid()
                penalty = nb_rows["late_submission_penalty"] if nb_rows else None
                new_nbs.append(
                    {
                        "id": nb_id,
                        "assignment_id": sub_id,
                        "notebook_id": notebook_id,
                        "flagged": False,
                        "late_submission_penalty": penalty,
                    }
                )
                for cell_id, cell in grade_cells:
                    auto, needs = _auto_grade(nb_rows, name in ungraded, cell, None)
                    new_grades.append(
                        {
                            "id": new_uuid(),
                            "notebook_id": nb_id,
                            "cell_id": cell_id,
                            "auto_score": auto,
                            "needs_manual_grade": needs,
                        }
                    )
                for cell_id, cell in comment_cells:
                    comment = nb_rows["comments"].get(cell) if nb_rows else None
                    new_comments.append(
                        {
                            "id": new_uuid(),
                            "notebook_id": nb_id,
                            "cell_id": cell_id,
                            "auto_comment": comment,
                        }
                    )
        elif stamp is not None:
            stamps.append({"b_id": existing[student], "b_timestamp": stamp})
    # Students graded before: their rows are updated in place, as nbgrader's Autograde does.
    again = {existing[s]: (s, rows, ungraded) for s, rows, ungraded in batch if s in existing}
    if again:
        sn, grade, comment = (
            api.SubmittedNotebook.__table__,
            api.Grade.__table__,
            api.Comment.__table__,
        )
        nb_of = select(sn.c.id, sn.c.assignment_id, api.Notebook.__table__.c.name).join(
            api.Notebook.__table__, api.Notebook.__table__.c.id == sn.c.notebook_id
        )
        notebooks = {}
        for nb_id, sub_id, name in db.execute(nb_of.where(sn.c.assignment_id.in_(list(again)))):
            _, rows, ungraded = again[sub_id]
            nb_rows = rows["notebooks"].get(name)
            notebooks[nb_id] = (name, nb_rows, name in ungraded)
            if nb_rows is not None:
                penalty = nb_rows["late_submission_penalty"]
                nb_updates.append({"b_id": nb_id, "b_penalty": penalty})
        cell = api.BaseCell.__table__
        grades = select(grade.c.id, grade.c.notebook_id, cell.c.name, grade.c.manual_score).join(
            cell, cell.c.id == grade.c.cell_id
        )
        for grade_id, nb_id, name, manual in db.execute(
            grades.where(grade.c.notebook_id.in_(list(notebooks)))
        ):
            notebook, nb_rows, not_graded = notebooks[nb_id]
            if nb_rows is None:
                continue
            auto, needs = _auto_grade(nb_rows, not_graded, name, manual)
            grade_updates.append({"b_id": grade_id, "b_auto": auto, "b_needs": needs})
        comments = select(comment.c.id, comment.c.notebook_id, cell.c.name).join(
            cell, cell.c.id == comment.c.cell_id
        )
        for comment_id, nb_id, name in db.execute(
            comments.where(comment.c.notebook_id.in_(list(notebooks)))
        ):
            _, nb_rows, _ = notebooks[nb_id]
            if nb_rows is not None:
                text = nb_rows["comments"].get(name)
                comment_updates.append({"b_id": comment_id, "b_text": text})
    for model, rows in (
        (api.SubmittedAssignment, new_subs),
        (api.SubmittedNotebook, new_nbs),
        (api.Grade, new_grades),
        (api.Comment, new_comments),
    ):
        if rows:
            db.execute(insert(model.__table__), rows)
    for table, values, rows in (
        (api.SubmittedAssignment.__table__, {"timestamp": "b_timestamp"}, stamps),
        (api.SubmittedNotebook.__table__, {"late_submission_penalty": "b_penalty"}, nb_updates),
        (
            api.Grade.__table__,
            {"auto_score": "b_auto", "needs_manual_grade": "b_needs"},
            grade_updates,
        ),
        (api.Comment.__table__, {"auto_comment": "b_text"}, comment_updates),
    ):
        if rows:
            stmt = (
                update(table)
                .where(table.c.id == bindparam("b_id"))
                .values({column: bindparam(param) for column, param in values.items()})
            )
            db.execute(stmt, rows)
    # ORM objects this session loaded before now hold the old values.
    db.expire_all()


def _auto_grade(
    nb_rows: dict | None, ungraded: bool, cell: str, manual: float | None
) -> tuple[float | None, bool]:
    """A grade's ``auto_score`` and ``needs_manual_grade``: 0 and no for a notebook that could
    not be graded; else SaveAutoGrades' rule (no automatic score, or a manual one, needs a
    person)."""
    if ungraded:
        return 0, False
    auto = nb_rows["grades"].get(cell) if nb_rows else None
    return auto, manual is not None or auto is None


def _structure(db: Any, assignment_id: str) -> dict[str, tuple[str, list, list]]:
    """The assignment's notebooks, in order: name -> (id, the cells a submission has a grade
    for, those it has a comment for), as ``(cell id, cell name)``, as ``add_submission`` makes
    them (grade cells and task cells graded; solution cells and task cells commented)."""
    from nbgrader import api
    from sqlalchemy import select

    notebooks = db.execute(
        select(api.Notebook.id, api.Notebook.name).where(
            api.Notebook.assignment_id == assignment_id
        )
    ).all()
    out = {name: (nb_id, [], []) for nb_id, name in notebooks}
    names = {nb_id: name for nb_id, name in notebooks}
    for model, graded, commented in (
        (api.GradeCell, True, False),
        (api.SolutionCell, False, True),
        (api.TaskCell, True, True),
    ):
        table = model.__table__
        base = api.BaseCell.__table__
        query = select(base.c.id, base.c.name, base.c.notebook_id).join(
            table, table.c.id == base.c.id
        )
        for cell_id, name, nb_id in db.execute(query.where(base.c.notebook_id.in_(list(names)))):
            _, grades, comments = out[names[nb_id]]
            if graded:
                grades.append((cell_id, name))
            if commented:
                comments.append((cell_id, name))
    return out
