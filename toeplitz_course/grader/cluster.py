"""Grading on a Dask cluster: one task per student, the course directory never leaves this machine.

``grade --scheduler ADDRESS`` (or ``c.Cluster.scheduler``) sends each student to an existing
``dask.distributed`` cluster. A worker needs the installed project and nothing of the course:

this process                                      a Dask worker (any machine)
---------------------------------------------     -----------------------------------------------
the bundle, once, broadcast to every worker:      a scratch course, made once per worker process
  the release notebooks, the course's config        (per bundle): release/, nbgrader_config.py
  without its gradebook URL, and a gradebook        (the shipped config), a gradebook holding
  holding only the assignment's cells               only the assignment's cells (no student, no
                                                    credential)
per student: the files in submitted/{student}/  ->  submitted/{student}/toeplitz/, then
                                                    ``grade_student``: the same staging, nbgrader
                                                    pipeline, sandbox and warm kernels as local
                                                    grading (the warm parent lives in the worker);
                                                    then the student's files and rows are deleted
writes autograded/, grading/, the log, and the  <-  the autograded notebooks, the grading record,
gradebook rows, a batch of students at a time       the log, the student's autograde rows
(``write_results``: one transaction a batch)

So a worker needs no shared file system and no database credentials, and a hostile notebook on a
worker can reach nothing of the course: its kernel is confined as locally, and between tasks the
worker holds no student's hand-in. The scratch course lives in the worker's own directory, which
Dask deletes when the worker ends. Start workers with ``--preload toeplitz_course.grader.cluster``
so each makes its warm parent (seconds of imports) when it starts, not on its first student.

What a task costs a worker beyond grading the student here: the hand-in written to the scratch
course and read back, its rows read and deleted, the result's transfer. The course is made
once and nbgrader's gradebooks share one engine (``gradebook.share_engines``), as in local
workers. This process writes the results as they arrive, every result that has arrived since
the last batch in one transaction, with a fixed number of statements per batch
(``gradebook.apply_autograde``), so a writer that falls behind catches up in bigger batches.

Worker loss is the scheduler's to handle: a task whose worker dies is run again elsewhere; the
results are written here only when a task completes, so each student is written exactly once. A
student whose tasks keep killing workers ends, after the scheduler's
``distributed.scheduler.allowed-failures`` retries (3 by default), in ``KilledWorker``, and is
recorded as failed (every notebook scored 0, a ``grader_error`` flag); the batch goes on.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import os
import pickle
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from traitlets import Unicode
from traitlets.config import LoggingConfigurable

from ..course.contract import ASSIGNMENT, NOTEBOOKS
from . import staging
from .coursedir import LOGS, RECORDS, STAGING, course_config, db_url
from .gradebook import (
    InTransaction,
    apply_autograde,
    autograde_rows,
    copy_assignment,
    engines_shared,
    forget_student,
    open_gradebook,
    share_engines,
)

#: The most students written in one transaction: a bigger batch saves little and holds the
#: gradebook longer.
BATCH = 50

#: How often a student whose result was lost on the way (not a task that failed) is sent again.
RESEND = 2

#: Seconds to wait for a worker to scatter a lost bundle to again.
RESCATTER_TIMEOUT = 300

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
    shared = {
        "release": {p.name: p.read_bytes() for p in sorted(release.iterdir()) if p.is_file()},
        "config": pickle.dumps(config),
        "gradebook": gradebook,
        "sandbox": sandbox,
    }
    # Names the worker's scratch course: a new assignment or config makes a new one.
    shared["key"] = hashlib.sha256(pickle.dumps(shared)).hexdigest()
    return shared


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
    from distributed.scheduler import KilledWorker

    # nbgrader's add_submission trips an SQLAlchemy 2 warning per student; rows are right.
    warnings.filterwarnings("ignore", message=".*not in session.*")
    records = {} if records is None else records
    errors = {} if errors is None else errors
    with Client(scheduler, timeout="30s") as client, engines_shared():
        common = bundle(root, sandbox)
        # One future for the whole bundle: a dict scattered as it is becomes one key per entry,
        # named by the entry ("release", "config"): the same keys for every course.
        [shared] = client.scatter([common], broadcast=True)
        run = uuid.uuid4().hex[:8]
        futures = {
            client.submit(
                grade_task, student, hand_in(root, student), shared, key=f"grade-{student}-{run}"
            ): student
            for student in students
        }
        # Each batch: every result that arrived while the last one was written (the results
        # are fetched in the background meanwhile).
        done = as_completed(futures, with_results=True, raise_errors=False)
        resent: dict[str, int] = {}
        for arrived in done.batches():
            graded = []
            for future, result in arrived:
                student = futures.pop(future)
                if future.status == "finished":
                    graded.append((student, result))
                    continue
                exc = result[1] if isinstance(result, tuple) else result
                if future.status != "error" and resent.get(student, 0) < RESEND:
                    # Not the task's failure: its result or the bundle was lost on the way (the
                    # workers holding it died; scattered data cannot be recomputed, so its
                    # tasks are cancelled for "lost dependencies"). Sent again.
                    if shared.status != "finished":
                        try:
                            # Every worker may be down at once, their nannies restarting them.
                            client.wait_for_workers(1, timeout=RESCATTER_TIMEOUT)
                            [shared] = client.scatter([common], broadcast=True, hash=False)
                        except Exception as lost:  # noqa: BLE001 - this student's, for now
                            errors[student] = f"{type(lost).__name__}: {lost}"
                            step(student)
                            continue
                    resent[student] = resent.get(student, 0) + 1
                    again = client.submit(
                        grade_task,
                        student,
                        hand_in(root, student),
                        shared,
                        key=f"grade-{student}-{run}-{resent[student]}",
                    )
                    futures[again] = student
                    done.add(again)
                    continue
                if isinstance(exc, KilledWorker):
                    try:
                        records[student] = write_failure(
                            root, student, f"the grading workers died on this student ({exc})"
                        )
                    except Exception as failed:  # noqa: BLE001 - one student's
                        errors[student] = f"{type(failed).__name__}: {failed}"
                else:
                    errors[student] = f"{type(exc).__name__}: {exc}"
                step(student)
            for i in range(0, len(graded), BATCH):
                _write_batch(root, graded[i : i + BATCH], records, errors, step)
    return records, errors


def _write_batch(
    root: Path,
    graded: list[tuple[str, dict[str, Any]]],
    records: dict[str, dict],
    errors: dict[str, str],
    step: Callable[[str], None],
    previous: dict[str, dict] | None = None,
) -> None:
    """Write a batch in one transaction; when that fails, each student on their own, so that a
    student whose result cannot be written costs nobody else theirs."""
    from . import handgrades

    # Read before a failed attempt can have rewritten a student's record.
    if previous is None:
        previous = {s: handgrades.recorded_answers(root, s) for s, _ in graded}
    try:
        records.update(write_results(root, graded, previous))
    except Exception as exc:  # noqa: BLE001
        if len(graded) == 1:
            errors[graded[0][0]] = f"{type(exc).__name__}: {exc}"
        else:
            for one in graded:
                _write_batch(root, [one], records, errors, lambda _: None, previous)
    for student, _ in graded:
        step(student)


def write_results(
    root: Path, graded: list[tuple[str, dict[str, Any]]], previous: dict[str, dict] | None = None
) -> dict[str, dict]:
    """Write workers' results into the course directory and the gradebook, as grading here does:
    the files first, then every student's rows and hand-grade decisions in one transaction.

    ``previous``: by student, the answers graded before (default: those their record keeps)."""
    from .grade import finish_record, ungraded_notebooks

    autograded = {student: _write_files(root, student, result) for student, result in graded}
    with open_gradebook(db_url(root)) as gb:
        try:
            apply_autograde(
                gb,
                ASSIGNMENT,
                [(s, r["rows"], ungraded_notebooks(r["record"])) for s, r in graded],
            )
            batch = InTransaction(gb)
            records = {
                student: finish_record(
                    root,
                    result["record"],
                    autograded[student],
                    (previous or {}).get(student),
                    gb=batch,
                )
                for student, result in graded
            }
            gb.db.commit()
        except BaseException:
            gb.db.rollback()
            raise
    return records


def _write_files(root: Path, student: str, result: dict[str, Any]) -> dict[str, dict | None]:
    """The student's autograded folder and log; returns the autograded notebooks' cells."""
    folder = root / "autograded" / student / ASSIGNMENT
    # As nbgrader's Autograde with force does: the student's autograded folder made anew.
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for filename, data in result["files"].items():
        (folder / filename).write_bytes(data)
    (root / LOGS).mkdir(parents=True, exist_ok=True)
    (root / LOGS / f"{student}.log").write_text(result["log"], encoding="utf-8")
    return result["cells"]


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


_courses: dict[str, Path] = {}
_courses_lock = threading.Lock()


def _course(shared: dict[str, Any]) -> Path:
    """This process's scratch course for ``shared`` (the bundle), made on its first task."""
    from .sandbox import Sandbox, check_support

    with _courses_lock:
        root = _courses.get(shared["key"])
        if root is not None and root.is_dir():
            return root
        for old in _courses.values():  # an earlier batch's assignment
            shutil.rmtree(old, ignore_errors=True)
        _courses.clear()
        scratch = _scratch()
        root = Path(tempfile.mkdtemp(prefix="toeplitz-course-", dir=scratch))
        # Dask deletes the worker's directory when it ends; elsewhere this process does.
        atexit.register(shutil.rmtree, root, True)
        (root / "release" / ASSIGNMENT).mkdir(parents=True)
        for name, data in shared["release"].items():
            (root / "release" / ASSIGNMENT / name).write_bytes(data)
        (root / "config.pickle").write_bytes(shared["config"])
        (root / "nbgrader_config.py").write_text(
            WORKER_CONFIG.format(path=str(root / "config.pickle")), encoding="utf-8"
        )
        (root / "gradebook.db").write_bytes(shared["gradebook"])
        if shared["sandbox"]:
            check_support(Sandbox(config=course_config(root)))
        if scratch is not None:
            # A Dask worker grades nothing else: one engine per gradebook URL for its life, as
            # a local grading worker has (grade._worker_init).
            share_engines()
        _courses[shared["key"]] = root
        return root


def _clear(root: Path, student: str) -> None:
    """Delete everything of ``student`` from the scratch course: files and gradebook rows."""
    for path in (
        root / "submitted" / student,
        root / "autograded" / student,
        root / STAGING / student,
    ):
        shutil.rmtree(path, ignore_errors=True)
    for path in (root / LOGS / f"{student}.log", root / RECORDS / f"{student}.json"):
        path.unlink(missing_ok=True)
    with open_gradebook(db_url(root)) as gb:
        forget_student(gb, student)
    # grade._logger's handler holds the student's log open: a long-lived worker would keep one
    # open file per student it ever graded.
    log = logging.getLogger(f"toeplitz_course.grade.{student}")
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()


def grade_task(student: str, handed_in: staging.HandIn, shared: dict[str, Any]) -> dict[str, Any]:
    """Grade one student on this worker in its scratch course; nothing of theirs is left."""
    from .grade import grade_student

    root = _course(shared)
    try:
        folder = root / "submitted" / student / ASSIGNMENT
        folder.mkdir(parents=True)
        for name, data in handed_in.files.items():
            (folder / name).write_bytes(data)
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
            "cells": {name: _cells(out_files.get(f"{name}.ipynb")) for name in NOTEBOOKS},
            "rows": rows,
            "log": log.read_text(encoding="utf-8") if log.exists() else "",
            "worker": os.uname().nodename,
        }
    finally:
        _clear(root, student)


def _cells(data: bytes | None) -> dict | None:
    """An autograded notebook as much as ``grade.finish_record`` reads of it (each cell's type,
    source and metadata: the answers' digests, the verdicts' messages), without the outputs,
    which are most of its bytes: parsed here, so the one process that writes every result
    parses none of it. nbgrader validated the file as it wrote it: read as plain JSON."""
    if data is None:
        return None
    cells = json.loads(data).get("cells", [])
    keep = ("cell_type", "source", "metadata")
    return {"cells": [{k: c[k] for k in keep if k in c} for c in cells if isinstance(c, dict)]}


#: Periodic callbacks a worker runs whether it grades or idles, slowed down (milliseconds): the
#: event loop's health check (Dask's default every 20 ms; a grading task keeps the loop waiting
#: for seconds anyway, and Dask warns only past 3 s) and the system monitor that feeds the
#: dashboard (every 500 ms). Idle workers and scheduler cost 7.7% of a core in cluster_bench
#: (benchmarks/README.md), paid per second of a batch. The memory monitor, which pauses or
#: restarts a worker near its memory limit, keeps its pace.
IDLE_CALLBACKS_MS = {"tick": 1000, "monitor": 5000}


def dask_setup(worker: Any) -> None:
    """``dask worker --preload toeplitz_course.grader.cluster``: the worker's warm parent (a new
    interpreter importing torch and IPython, seconds of CPU) made as the worker starts, not in
    its first student's time; and without Dask's statistical profiler, which samples the
    worker's threads every 10 ms, busy or idle (1.4% of a core per worker here, a third of an
    idle worker's CPU), for profiles of grading tasks nobody reads."""
    from .config import KERNEL_PRELOAD
    from .warmkernel import prewarm

    for name in ("profile", "profile-cycle"):
        callback = worker.periodic_callbacks.pop(name, None)
        if callback is not None:
            callback.stop()
    for name, ms in IDLE_CALLBACKS_MS.items():
        callback = worker.periodic_callbacks.get(name)
        if callback is not None:
            callback.callback_time = ms
    prewarm(KERNEL_PRELOAD)
