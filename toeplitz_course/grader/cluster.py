"""Grading on a Dask cluster: one task per student, the course directory never leaves this machine.

``grade --scheduler ADDRESS`` (or ``c.Cluster.scheduler``) sends each student to an existing
``dask.distributed`` cluster. A worker needs the installed project and nothing of the course:

this process                                      a Dask worker (any machine)
---------------------------------------------     -----------------------------------------------
the bundle, once, broadcast to every worker:      a scratch course per task, in a temporary folder:
  the release notebooks, the course's config        release/, nbgrader_config.py (the shipped
  without its gradebook URL, and a gradebook        config), a gradebook holding only the
  holding only the assignment's cells               assignment's cells (no student, no credential)
per student: the files in submitted/{student}/  ->  submitted/{student}/toeplitz/, then
                                                    ``grade_student``: the same staging, nbgrader
                                                    pipeline, sandbox and warm kernels as local
                                                    grading (the warm parent lives in the worker)
writes autograded/, grading/, the log, and the  <-  the autograded notebooks, the grading record,
gradebook rows (``gradebook.apply_autograde``)      the log, the student's autograde rows

So a worker needs no shared file system and no database credentials, and a hostile notebook on a
worker can reach nothing of the course: its kernel is confined as locally, and the worker itself
holds only this one student's hand-in.

Worker loss is the scheduler's to handle: a task whose worker dies is run again elsewhere; the
results are written here only when a task completes, so each student is written exactly once. A
student whose tasks keep killing workers ends, after the scheduler's
``distributed.scheduler.allowed-failures`` retries (3 by default), in ``KilledWorker``, and is
recorded as failed (every notebook scored 0, a ``grader_error`` flag); the batch goes on.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from traitlets import Unicode
from traitlets.config import LoggingConfigurable

from ..course.contract import ASSIGNMENT, NOTEBOOKS
from . import staging
from .coursedir import LOGS, course_config, db_url
from .gradebook import apply_autograde, autograde_rows, copy_assignment, open_gradebook

#: nbgrader config of a worker's scratch course: the course's own, as shipped in the bundle.
WORKER_CONFIG = """\
import pickle
c = get_config()  # noqa: F821
with open({path!r}, "rb") as f:
    c.merge(pickle.load(f))
"""


class Cluster(LoggingConfigurable):
    """Where ``grade`` sends its students (``c.Cluster.*`` in ``nbgrader_config.py``)."""

    scheduler = Unicode(
        "",
        help="Address of a Dask scheduler (tcp://host:8786) to grade on; empty: grade here.",
    ).tag(config=True)


def configured_scheduler(root: Path) -> str:
    return Cluster(config=course_config(root)).scheduler


# ---------------------------------------------------------------------------------------------
# This process: the bundle, the tasks, the results


def bundle(root: Path, sandbox: bool) -> dict[str, Any]:
    """What every worker needs, whoever the student: no student data, no gradebook URL."""
    release = root / "release" / ASSIGNMENT
    config = course_config(root)
    for trait in ("root", "db_url"):  # a path of this machine; credentials
        config.CourseDirectory.pop(trait, None)
    config.pop("Cluster", None)
    with tempfile.TemporaryDirectory(prefix="toeplitz-bundle-") as tmp:
        url = f"sqlite:///{tmp}/gradebook.db"
        course_id = config.CourseDirectory.get("course_id") or "default_course"
        with (
            open_gradebook(db_url(root), course_id) as source,
            open_gradebook(url, course_id) as dest,
        ):
            copy_assignment(source, dest, ASSIGNMENT)
        gradebook = Path(tmp, "gradebook.db").read_bytes()
    return {
        "release": {p.name: p.read_bytes() for p in sorted(release.iterdir()) if p.is_file()},
        "config": pickle.dumps(config),
        "gradebook": gradebook,
        "sandbox": sandbox,
    }


def hand_in(root: Path, student: str) -> staging.HandIn:
    """What grading reads of ``submitted/{student}/toeplitz/``, read here as staging reads it
    (regular files only, never through a link, under the caps): the worker grades this copy,
    and the refusals, file times and collect's recorded time travel with it."""
    return staging.read_hand_in(root, student, staging.settings_of(root))


def grade_on_cluster(
    root: Path,
    students: list[str],
    scheduler: str,
    sandbox: bool,
    step: Callable[[str], None],
    records: dict[str, dict] | None = None,
    errors: dict[str, str] | None = None,
) -> tuple[dict[str, dict], dict[str, str]]:
    """Grade ``students`` on the cluster at ``scheduler``; records and grader errors by student.

    ``records`` and ``errors``, when given, are filled as students finish, so that a caller
    interrupted (Ctrl-C) knows who was graded: a student is written here only once its task
    is done, and the cluster drops the others' tasks when the client closes.
    """
    import warnings

    from distributed import Client, as_completed
    from distributed.client import FutureCancelledError
    from distributed.scheduler import KilledWorker

    # nbgrader's add_submission trips an SQLAlchemy 2 warning per student; rows are right.
    warnings.filterwarnings("ignore", message=".*not in session.*")
    records = {} if records is None else records
    errors = {} if errors is None else errors
    with Client(scheduler, timeout="30s") as client:
        shared = client.scatter(bundle(root, sandbox), broadcast=True)
        run = uuid.uuid4().hex[:8]
        futures = {
            client.submit(
                grade_task, student, hand_in(root, student), shared, key=f"grade-{student}-{run}"
            ): student
            for student in students
        }
        for future in as_completed(futures):
            student = futures[future]
            try:
                records[student] = write_result(root, student, future.result())
            except KilledWorker as exc:
                records[student] = write_failure(
                    root, student, f"the grading workers died on this student ({exc})"
                )
            except (FutureCancelledError, Exception) as exc:  # noqa: BLE001 - one student's
                errors[student] = f"{type(exc).__name__}: {exc}"
            step(student)
    return records, errors


def write_result(root: Path, student: str, result: dict[str, Any]) -> dict:
    """Write a worker's result into the course directory and the gradebook, as grading here does."""
    from .grade import finish_record, ungraded_notebooks

    record = result["record"]
    folder = root / "autograded" / student / ASSIGNMENT
    # As nbgrader's Autograde with force does: the student's autograded folder made anew.
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for filename, data in result["files"].items():
        (folder / filename).write_bytes(data)
    (root / LOGS).mkdir(parents=True, exist_ok=True)
    (root / LOGS / f"{student}.log").write_text(result["log"], encoding="utf-8")
    with open_gradebook(db_url(root)) as gb:
        apply_autograde(gb, ASSIGNMENT, student, result["rows"], ungraded_notebooks(record))
    autograded = {
        name: json.loads(data) if data is not None else None
        for name, data in ((n, result["autograded"].get(n)) for n in NOTEBOOKS)
    }
    return finish_record(root, record, autograded)


def write_failure(root: Path, student: str, detail: str) -> dict:
    """A student no worker could grade: every notebook failed and scored 0."""
    from .grade import _zero_ungraded, finish_record, sandbox_enabled

    record: dict[str, Any] = {
        "student": student,
        "sandboxed": sandbox_enabled(root),
        "notebooks": {name: {"status": "failed", "detail": detail} for name in NOTEBOOKS},
        "flags": [{"notebook": "", "kind": "grader_error", "detail": detail}],
    }
    with open_gradebook(db_url(root)) as gb:
        _zero_ungraded(gb, student, list(NOTEBOOKS))
    return finish_record(root, record, {name: None for name in NOTEBOOKS})


# ---------------------------------------------------------------------------------------------
# A worker: one student in a scratch course


def _scratch() -> str | None:
    """The worker's own scratch folder (``dask worker --local-directory``), where what a killed
    task leaves behind goes with the worker's other files."""
    try:
        from distributed import get_worker

        return get_worker().local_directory
    except (ImportError, ValueError):
        return None


def grade_task(student: str, handed_in: staging.HandIn, shared: dict[str, Any]) -> dict[str, Any]:
    """Grade one student on this worker, in a scratch course that is deleted afterwards."""
    from .grade import grade_student
    from .sandbox import Sandbox, check_support

    with tempfile.TemporaryDirectory(prefix="toeplitz-task-", dir=_scratch()) as tmp:
        root = Path(tmp)
        (root / "release" / ASSIGNMENT).mkdir(parents=True)
        for name, data in shared["release"].items():
            (root / "release" / ASSIGNMENT / name).write_bytes(data)
        (root / "config.pickle").write_bytes(shared["config"])
        (root / "nbgrader_config.py").write_text(
            WORKER_CONFIG.format(path=str(root / "config.pickle")), encoding="utf-8"
        )
        (root / "gradebook.db").write_bytes(shared["gradebook"])
        folder = root / "submitted" / student / ASSIGNMENT
        folder.mkdir(parents=True)
        for name, data in handed_in.files.items():
            (folder / name).write_bytes(data)
        if shared["sandbox"]:
            check_support(Sandbox(config=course_config(root)))
        record = grade_student(root, student, shared["sandbox"], hand_in=handed_in)
        autograded_dir = root / "autograded" / student / ASSIGNMENT
        out_files = {}
        if autograded_dir.is_dir():
            out_files = {p.name: p.read_bytes() for p in autograded_dir.iterdir() if p.is_file()}
        with open_gradebook(db_url(root)) as gb:
            rows = autograde_rows(gb, ASSIGNMENT, student)
        log = root / LOGS / f"{student}.log"
        return {
            "record": record,
            "files": out_files,
            "autograded": {
                name: out_files[f"{name}.ipynb"].decode("utf-8")
                for name in NOTEBOOKS
                if f"{name}.ipynb" in out_files
            },
            "rows": rows,
            "log": log.read_text(encoding="utf-8") if log.exists() else "",
            "worker": os.uname().nodename,
        }
