"""The assignment's rows in the gradebook, kept as ``source/`` defines them.

nbgrader's Autograde grades against the gradebook's copy of the assignment: its notebooks, grade
cells and the locked cells (hidden tests included) it restores. ``nbgrader generate_assignment``
is what writes them, but it skips an assignment whose ``release/`` folder exists, and
``release/`` is committed: a fresh clone, a new gradebook (a deleted ``gradebook.db``, a new
PostgreSQL database) or a gradebook of another course has no assignment, and every student
fails with ``No such assignment``.

``ensure_assignment(root)`` makes sure the gradebook holds them, from ``source/``, by nbgrader's
own machinery:

* the check: every source notebook goes through ``GenerateAssignment``'s preprocessors up to
  ``SaveCells`` in memory (locks, cleared solutions, checksums; no kernel, no file written), and
  what ``SaveCells`` would record is compared with the gradebook's rows. A few tens of
  milliseconds; equal rows (every run after the first) mean nothing is written;
* the update, when they differ: nbgrader's ``GenerateAssignment`` converter itself, into a
  temporary release folder (``release/`` is never rewritten) with the course's gradebook, so
  ``SaveCells`` writes the rows as ``nbgrader generate_assignment`` would. nbgrader refuses to
  add or remove cells or notebooks of an assignment that has submissions; that, like any other
  failure, is raised as :class:`AssignmentError` with nbgrader's own reason.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from ..course.contract import ASSIGNMENT
from .coursedir import course_config, db_url
from .gradebook import open_gradebook

#: Rows of one notebook as SaveCells writes them: kind -> cell name -> the fields it sets.
Rows = dict[str, dict[str, tuple]]


class AssignmentError(RuntimeError):
    """The gradebook cannot be given the assignment of ``source/``."""


def ensure_assignment(root: Path | str, assignment: str = ASSIGNMENT) -> bool:
    """Make the gradebook of ``root`` hold ``assignment`` as ``source/`` defines it.

    Returns True when it wrote the rows, False when they were already right. Without a
    ``source/`` folder (a grading machine of a cluster) the gradebook's rows are used as they
    are; if there are none, that is an :class:`AssignmentError`.
    """
    from nbgrader.coursedir import CourseDirectory

    from .config import ensure_tools_on_path

    ensure_tools_on_path()  # nbgrader runs `alembic` when it creates a gradebook
    root = Path(root).resolve()
    url = db_url(root)
    course_id = CourseDirectory(config=course_config(root)).course_id
    source = root / "source" / assignment
    with open_gradebook(url, course_id) as gb:
        held = held_rows(gb, assignment)
    if not source.is_dir():
        if held is None:
            raise AssignmentError(
                f"the gradebook has no assignment {assignment!r} and there is no "
                f"{source.relative_to(root)}/ to make it from"
            )
        return False
    wanted = source_rows(root, assignment)
    if held == wanted:
        return False
    _generate(root, url, assignment, _differences(held, wanted))
    with open_gradebook(url, course_id) as gb:
        after = held_rows(gb, assignment)
    if after != wanted:  # would regenerate on every run; nbgrader kept rows it should have set
        raise AssignmentError(
            f"the gradebook's assignment {assignment!r} still differs from source/ after "
            f"nbgrader generate_assignment: {_differences(after, wanted)}"
        )
    return True


def held_rows(gb: Any, assignment: str) -> dict[str, Rows] | None:
    """notebook -> the gradebook's rows of it, or None when it has no such assignment."""
    from nbgrader.api import MissingEntry

    try:
        found = gb.find_assignment(assignment)
    except MissingEntry:
        return None
    return {
        nb.name: {
            "grade": {c.name: (float(c.max_score), c.cell_type) for c in nb.grade_cells},
            "solution": {c.name: () for c in nb.solution_cells},
            "task": {c.name: (float(c.max_score), c.cell_type) for c in nb.task_cells},
            "source": {
                c.name: (c.cell_type, bool(c.locked), c.source, c.checksum) for c in nb.source_cells
            },
        }
        for nb in found.notebooks
    }


def source_rows(root: Path, assignment: str = ASSIGNMENT) -> dict[str, Rows]:
    """notebook -> the rows ``SaveCells`` records for it, from ``source/`` in memory."""
    import nbformat
    from nbgrader import utils
    from nbgrader.preprocessors import SaveCells

    cfg = course_config(root)
    preprocessors = []
    for pp in _preprocessor_classes(cfg):
        if issubclass(pp, SaveCells):
            break
        instance = pp(config=cfg)
        if instance.enabled:  # as nbconvert's exporter runs them
            preprocessors.append(instance)
    source = root / "source" / assignment
    rows: dict[str, Rows] = {}
    for path in sorted(source.glob("*.ipynb")):
        resources: dict[str, Any] = {
            "metadata": {"path": str(source)},
            "nbgrader": {"notebook": path.stem, "assignment": assignment, "db_url": ""},
        }
        try:
            nb = nbformat.read(path, as_version=4)
            for pp in preprocessors:
                nb, resources = pp.preprocess(nb, resources)
        except Exception as exc:
            raise AssignmentError(
                f"{path.relative_to(root)}: not an nbgrader source notebook "
                f"({type(exc).__name__}: {str(exc)[:300]})"
            ) from exc
        nb_rows: Rows = {"grade": {}, "solution": {}, "task": {}, "source": {}}
        for cell in nb.cells:
            if not (
                utils.is_grade(cell)
                or utils.is_solution(cell)
                or utils.is_locked(cell)
                or utils.is_task(cell)
            ):
                continue
            meta = cell.metadata.nbgrader
            name = meta["grade_id"]
            if utils.is_grade(cell):
                nb_rows["grade"][name] = (float(meta["points"]), cell.cell_type)
            if utils.is_solution(cell):
                nb_rows["solution"][name] = ()
            if utils.is_task(cell):
                nb_rows["task"][name] = (float(meta["points"]), cell.cell_type)
            nb_rows["source"][name] = (
                cell.cell_type,
                bool(utils.is_locked(cell)),
                cell.source,
                meta.get("checksum"),
            )
        rows[path.stem] = nb_rows
    return rows


def _preprocessor_classes(cfg) -> list[type]:
    """``GenerateAssignment.preprocessors`` as configured (classes or import strings)."""
    from nbgrader.converters import GenerateAssignment
    from traitlets.utils.importstring import import_item

    section = cfg.GenerateAssignment
    listed = (
        section.preprocessors
        if "preprocessors" in section
        else GenerateAssignment.class_traits()["preprocessors"].default()
    )
    return [import_item(pp) if isinstance(pp, str) else pp for pp in listed]


def _differences(held: dict[str, Rows] | None, wanted: dict[str, Rows]) -> str:
    """What differs, in a few words (for the log and for errors)."""
    if held is None:
        return "no such assignment in the gradebook"
    found = []
    for name in sorted(set(held) | set(wanted)):
        if name not in wanted:
            found.append(f"{name} is not in source/")
        elif name not in held:
            found.append(f"{name} is not in the gradebook")
        else:
            for kind in ("grade", "solution", "task", "source"):
                a, b = held[name][kind], wanted[name][kind]
                cells = sorted(c for c in set(a) | set(b) if a.get(c) != b.get(c))
                if cells:
                    found.append(f"{name}: {kind} cells {', '.join(cells[:5])}")
    return "; ".join(found)


class _Errors(logging.Handler):
    """The error messages nbgrader logs (its converters raise only "see the error log")."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        # nbgrader logs a traceback as the message; its last line is the error itself.
        lines = [line for line in record.getMessage().splitlines() if line.strip()]
        if lines and not lines[-1].startswith(("There was an error", "Please see")):
            self.messages.append(lines[-1].strip())


def _generate(root: Path, url: str, assignment: str, why: str) -> None:
    """nbgrader's GenerateAssignment of ``source/``, into a scratch release, with the gradebook."""
    from nbgrader.converters import GenerateAssignment
    from nbgrader.coursedir import CourseDirectory

    log = logging.getLogger("toeplitz_course.assignment")
    log.warning("writing assignment %r into the gradebook from source/ (%s)", assignment, why)
    errors = _Errors()
    with tempfile.TemporaryDirectory(prefix="toeplitz-release-") as tmp:
        cfg = course_config(
            root,
            **{
                "CourseDirectory.db_url": url,
                "CourseDirectory.assignment_id": assignment,
                "CourseDirectory.release_directory": tmp,
                "CourseDirectory.notebook_id": "*",
            },
        )
        converter_log = logging.getLogger("toeplitz_course.assignment.nbgrader")
        converter_log.addHandler(errors)
        try:
            coursedir = CourseDirectory(config=cfg, log=converter_log)
            GenerateAssignment(coursedir=coursedir, config=cfg, log=converter_log).start()
        except Exception as exc:
            reason = "; ".join(errors.messages[-3:]) or f"{type(exc).__name__}: {exc}"
            if "submissions" in reason:
                reason += (
                    " (nbgrader never adds or removes cells or notebooks of an assignment that"
                    " has submissions: undo that change in source/, or make it a new assignment)"
                )
            raise AssignmentError(
                f"cannot write assignment {assignment!r} from source/ into the gradebook "
                f"({why}): {reason}"
            ) from exc
        finally:
            converter_log.removeHandler(errors)
