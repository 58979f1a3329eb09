"""Autograde submissions: staged, each notebook on its own, students in parallel.

For each student the grader

1. *stages* ``submitted/{student}/toeplitz/``: every notebook is read as JSON and normalised
   (``colab.normalize``) into ``.grading/staging/``; a file that is not a notebook of the assignment
   or not valid JSON is recorded, and the student's other notebooks go on. ``submitted/`` itself
   is never modified;
2. runs nbgrader's own ``Autograde`` converter, configured by ``nbgrader_config.py`` (the hardened
   preprocessors of ``preprocessors``), once per student; a notebook that still fails is recorded
   and takes nothing else down with it (``StudentAutograde``);
3. gives 0 to every autograded cell of a notebook that is missing, invalid or failed, so no grade
   is left "needs manual grade" or holds a stale score from an earlier run;
4. writes ``grading/{student}.json``: per-cell scores and diagnoses, and the integrity flags.

Students are independent, so they are graded in worker processes (``jobs``). Each worker runs
one nbgrader converter per student, shares one database engine among all the gradebooks nbgrader
opens (``gradebook.share_engines``) and writes in short transactions; SQLite is opened with a
long busy timeout so writers queue instead of failing.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from ..course.contract import ASSIGNMENT, EXERCISES, NOTEBOOKS, VERDICT_KEY
from ..course.lateness import duration
from ..course.untrusted import for_terminal, is_student_id
from . import handgrades, integrity
from .assignment import ensure_assignment
from .coursedir import LOGS, RECORDS, Course, course_config, db_url, submitted_students
from .gradebook import of_submission, open_gradebook, prepare
from .sandbox import Sandbox, check_support
from .staging import Staged, stage

# ---------------------------------------------------------------------------------------------
# grading one student


#: Where whatever else a grading process logs or warns goes while ``_capture`` is on: the Python
#: warnings (``logging.captureWarnings``) and any library's warnings through the root logger.
_CAPTURED_LOGGERS = ("py.warnings", "")
_capture = False


def _logger(
    root: Path, student: str, folder: Path | str = LOGS, step: str = "grade"
) -> logging.Logger:
    """The student's log file (in ``folder`` under ``root``); while ``_capture`` is on, also
    everything else this process logs or warns until the next student's, so that nothing of it
    reaches the terminal."""
    (root / folder).mkdir(parents=True, exist_ok=True)
    log = logging.getLogger(f"toeplitz_course.{step}.{student}")
    for old in list(log.handlers):
        log.removeHandler(old)
        old.close()
    handler = logging.FileHandler(root / folder / f"{student}.log", mode="w", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    handler._student_log = True  # type: ignore[attr-defined]
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    if _capture:
        _release_captured()
        for name in _CAPTURED_LOGGERS:
            logging.getLogger(name).addHandler(handler)
    return log


def _release_captured() -> None:
    """Detach the previous student's log from the captured loggers."""
    for name in _CAPTURED_LOGGERS:
        captured = logging.getLogger(name)
        for old in [h for h in captured.handlers if getattr(h, "_student_log", False)]:
            captured.removeHandler(old)


@functools.cache
def _converter_class():
    """nbgrader's Autograde, adapted; built on first use (it imports nbconvert and nbgrader)."""
    import nbformat as nbf
    from nbconvert.exporters import NotebookExporter
    from nbgrader.converters import Autograde
    from traitlets import Type

    class ValidateOnceExporter(NotebookExporter):
        """nbconvert's NotebookExporter, validating the notebook after the last preprocessor only.

        Stock, it validates the whole notebook after each of the fifteen preprocessors of a
        graded notebook, and when it reads the file; the result is the same when the last one
        passes (and the file is validated again when nbgrader writes it). Reading, nbformat only
        logs what its validation finds; here the validation after the preprocessors raises.
        """

        def from_file(self, file_stream, resources=None, **kw):
            nb = nbf.convert(nbf.reader.reads(file_stream.read()), 4)
            return self.from_notebook_node(nb, resources=resources, **kw)

        def _validate_preprocessor(self, nbc, preprocessor):
            pass

        def _preprocess(self, nb, resources):
            nbc, resc = super()._preprocess(nb, resources)
            try:
                nbf.validate(nbc, relax_add_props=True)
            except nbf.ValidationError:
                self.log.error("Notebook is invalid after its preprocessors")
                raise
            return nbc, resc

    class StudentAutograde(Autograde):
        """nbgrader's Autograde over all of one student's notebooks, each failing on its own.

        Stock Autograde stops at the first notebook that raises and removes the student's whole
        autograded folder. Here the error is recorded in ``failures`` and the notebook's own
        output removed; the others are graded. One converter per student (not per notebook)
        loads the configuration and checks the student, assignment and submission once.
        """

        failures: dict[str, str]
        exporter_class = Type(ValidateOnceExporter, klass=NotebookExporter).tag(config=True)

        def convert_single_notebook(self, notebook_filename: str) -> None:
            name = os.path.splitext(os.path.basename(notebook_filename))[0]
            try:
                super().convert_single_notebook(notebook_filename)
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # noqa: BLE001 - one notebook never stops the rest
                self.log.exception("autograding %s failed", name)
                self.failures[name] = f"{type(exc).__name__}: {str(exc)[:300]}"
                self._sanitizing = True
                out = os.path.join(
                    self._format_dest(self.coursedir.assignment_id, self.coursedir.student_id),
                    f"{name}.ipynb",
                )
                if os.path.exists(out):
                    os.remove(out)

    return StudentAutograde


def _autograde_student(
    root: Path, staged: Staged, log: logging.Logger, sandboxed: bool
) -> dict[str, str]:
    """Autograde the staged notebooks of one student; returns notebook -> error of failed ones."""
    from nbgrader.coursedir import CourseDirectory

    cfg = course_config(
        root,
        **{
            "CourseDirectory.submitted_directory": str(staged.directory),
            "CourseDirectory.db_url": db_url(root),
            "CourseDirectory.assignment_id": ASSIGNMENT,
            "CourseDirectory.student_id": staged.student,
            "Autograde.force": True,
            "Sandbox.enabled": sandboxed,
        },
    )
    coursedir = CourseDirectory(config=cfg, log=log)
    converter = _converter_class()(coursedir=coursedir, config=cfg, log=log)
    converter.failures = {}
    try:
        converter.start()
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - e.g. the student or submission rows
        log.exception("autograding %s failed", staged.student)
        detail = f"{type(exc).__name__}: {str(exc)[:300]}"
        return {name: detail for name, (status, _) in staged.status.items() if status == "staged"}
    return converter.failures


def _zero_ungraded(gb, student: str, notebooks: list[str]) -> None:
    """Score 0 on every cell of notebooks that could not be graded (missing, invalid, failed).

    Their hand grades are reset by ``finish_record`` (``handgrades.settle``), which says so.
    """
    gb.update_or_create_student(student)
    try:
        gb.find_submission(ASSIGNMENT, student)
    except Exception:
        gb.add_submission(ASSIGNMENT, student)
    for name in notebooks:
        sub_nb = gb.find_submission_notebook(name, ASSIGNMENT, student)
        for grade in sub_nb.grades:
            grade.auto_score = 0
            grade.needs_manual_grade = False
    gb.db.commit()


def _remove_autograded(root: Path, student: str, notebook: str) -> None:
    stale = root / "autograded" / student / ASSIGNMENT / f"{notebook}.ipynb"
    if stale.exists():
        stale.unlink()


def _read_autograded(root: Path, student: str, notebook: str) -> dict | None:
    """The autograded notebook's JSON, or None when there is none (it was written by nbgrader,
    which validated it, so it is read as plain JSON)."""
    path = root / "autograded" / student / ASSIGNMENT / f"{notebook}.ipynb"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


def _cell_records(gb, autograded: dict[str, dict | None], student: str) -> dict[str, dict]:
    """Per notebook, per graded cell: score, max and the grader's message.

    Scores come from the gradebook in one query (reading them grade by grade through nbgrader's
    objects costs four queries a cell), messages from the autograded files.
    """
    from nbgrader import api

    records: dict[str, dict[str, dict]] = {name: {} for name in NOTEBOOKS}
    rows = gb.db.query(
        api.Notebook.name,
        api.BaseCell.name,
        api.Grade.score,
        api.Grade.max_score,
        api.Grade.needs_manual_grade,
    ).join(api.BaseCell, api.BaseCell.id == api.Grade.cell_id)
    rows = of_submission(rows, api.Grade, ASSIGNMENT, student)
    for notebook, cell, score, max_score, needs_manual_grade in rows:
        if notebook in records:
            records[notebook][cell] = {
                "score": score,
                "max": max_score,
                "needs_manual_grade": bool(needs_manual_grade),
                "message": "",
            }
    for notebook, cells in records.items():
        for cell in (autograded.get(notebook) or {}).get("cells", []):
            metadata = cell.get("metadata", {})
            verdict = metadata.get(VERDICT_KEY)
            grade_id = metadata.get("nbgrader", {}).get("grade_id")
            if verdict and grade_id in cells:
                cells[grade_id]["message"] = verdict.get("message", "")
    return records


def sandbox_enabled(root: Path, sandbox: bool | None = None) -> bool:
    """Whether kernels are confined: ``sandbox`` if given, else ``c.Sandbox.enabled``."""
    if sandbox is not None:
        return sandbox
    return Sandbox(config=course_config(root)).enabled


#: The flag every record of an unconfined run carries.
UNCONFINED = {
    "notebook": "",
    "kind": "not_sandboxed",
    "detail": "graded without the sandbox (--no-sandbox or c.Sandbox.enabled = False): student "
    "code ran with the grader's rights",
}


def grade_student(
    root: Course | Path | str, student: str, sandbox: bool | None = None, hand_in=None
) -> dict:
    """Grade every notebook of one student; never raises for anything the submission contains.

    ``root``: the course (a worker is handed the grader's ``Course`` with each student, so it
    never executes ``nbgrader_config.py`` itself) or its folder.
    ``hand_in``: a ``staging.HandIn`` read elsewhere (a cluster worker grades a copy)."""
    course = Course.of(root)
    with course.in_use():
        return _grade_student(course.root, student, sandbox, hand_in)


def _grade_student(root: Path, student: str, sandbox: bool | None, hand_in) -> dict:
    sandboxed = sandbox_enabled(root, sandbox)
    log = _logger(root, student)
    staged = stage(root, student, hand_in=hand_in)
    record: dict[str, Any] = {"student": student, "notebooks": {}, "flags": list(staged.flags)}
    record["sandboxed"] = sandboxed
    if not sandboxed:
        record["flags"].append(dict(UNCONFINED))
    # What the instructor graded by hand, read before nbgrader replaces the autograded files.
    previous = handgrades.previous_answers(root, student)
    failures = _autograde_student(root, staged, log, sandboxed) if staged.raw else {}
    ungraded = []
    for name in NOTEBOOKS:
        status, detail = staged.status[name]
        autograded = root / "autograded" / student / ASSIGNMENT / f"{name}.ipynb"
        if status == "staged":
            if name in failures:
                status, detail = "failed", failures[name]
            elif not autograded.exists():
                status, detail = "failed", "nbgrader wrote no autograded notebook"
            else:
                status, detail = "graded", ""
            if status == "failed":
                record["flags"].append({"notebook": name, "kind": "grader_error", "detail": detail})
        if status != "graded":
            ungraded.append(name)
            _remove_autograded(root, student, name)
        record["notebooks"][name] = {"status": status, "detail": detail}
    release = root / "release" / ASSIGNMENT
    autograded = {name: _read_autograded(root, student, name) for name in NOTEBOOKS}
    with open_gradebook(db_url(root)) as gb:
        _zero_ungraded(gb, student, ungraded)
    for name in NOTEBOOKS:
        record["flags"].extend(
            integrity.scan(
                name,
                submitted=staged.raw.get(name),
                release=release / f"{name}.ipynb",
                autograded=autograded[name],
            )
        )
    return finish_record(root, record, autograded, previous)


def ungraded_notebooks(record: dict) -> list[str]:
    return [name for name, entry in record["notebooks"].items() if entry["status"] != "graded"]


def finish_record(
    root: Path,
    record: dict,
    autograded: dict[str, dict | None],
    previous: dict[str, handgrades.Answers] | None = None,
    gb=None,
) -> dict:
    """Complete a grading record from the gradebook (scores per cell, totals) and write it.

    First every hand grade is kept or reset (``handgrades.settle``) by comparing the answers
    now (``autograded``) with ``previous``, the answers graded before (default: those the
    student's last record keeps).

    ``gb``: a gradebook open already (the cluster's batch, one transaction for many students);
    default: the course's, opened here.
    """
    student = record["student"]
    if previous is None:
        previous = handgrades.recorded_answers(root, student)
    statuses = {name: entry["status"] for name, entry in record["notebooks"].items()}
    current = {
        name: handgrades.answers(autograded.get(name)) if statuses.get(name) == "graded" else None
        for name in NOTEBOOKS
    }
    record["answers"] = {name: digests for name, digests in current.items() if digests is not None}
    opened = contextlib.nullcontext(gb) if gb is not None else open_gradebook(db_url(root))
    with opened as gb:
        decisions = handgrades.settle(gb, student, previous, current, statuses)
        for name, cells in _cell_records(gb, autograded, student).items():
            record["notebooks"][name]["cells"] = cells
    record["hand_grades"] = decisions
    record["flags"] = [f for f in record["flags"] if f.get("kind") != handgrades.RESET]
    record["flags"].extend(handgrades.reset_flags(decisions))
    record["total"] = sum(
        c["score"] or 0 for nb in record["notebooks"].values() for c in nb["cells"].values()
    )
    record["max_total"] = float(sum(e.points for e in EXERCISES))
    (root / RECORDS).mkdir(exist_ok=True)
    (root / RECORDS / f"{student}.json").write_text(json.dumps(record, indent=1, sort_keys=True))
    return record


# ---------------------------------------------------------------------------------------------
# a class


class Progress:
    """done/total, rate and time left on one terminal line; silent when not a terminal."""

    def __init__(self, total: int, stream=sys.stderr):
        self.total, self.done, self.stream = total, 0, stream
        self.start = time.monotonic()
        self.enabled = total > 0 and hasattr(stream, "isatty") and stream.isatty()

    def show(self, label: str = "") -> None:
        """Draw the line (at the start too: the first student takes a while)."""
        if not self.enabled:
            return
        elapsed = time.monotonic() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        left = f"{(self.total - self.done) / rate:4.0f}s left" if rate else "          "
        width = 30
        bar = "#" * int(width * self.done / self.total)
        self.stream.write(
            f"\r[{bar:<{width}}] {self.done}/{self.total} students"
            f"  {rate * len(NOTEBOOKS):.1f} nb/s  {left}  {for_terminal(label)[:20]:<20}"
        )
        if self.done == self.total:
            self.stream.write("\n")
        self.stream.flush()

    def step(self, label: str = "") -> None:
        self.done += 1
        self.show(label)

    def close(self) -> None:
        """End the line of a batch that stops before its end, so what follows starts afresh."""
        if self.enabled and self.done < self.total:
            self.stream.write("\n")
            self.stream.flush()


#: Flags the summary line leaves to the notebook's status (missing, invalid, failed), says in
#: its own words (a reset hand grade) or says once for the batch (no sandbox).
SUMMARY_QUIET_FLAGS = (
    "missing",
    "invalid_json",
    "grader_error",
    handgrades.RESET,
    "not_sandboxed",
)


@dataclass
class GradeRun:
    records: dict[str, dict]
    errors: dict[str, str]  # student -> grader error that escaped grade_student (should be none)
    seconds: float
    students: int = 0  # how many the batch was to grade
    logs: Path | None = None  # the folder of the students' logs
    interrupted: bool = False  # stopped by Ctrl-C: ``records`` holds who was graded before
    refused: list[str] = field(default_factory=list)  # folders not graded, one printable line each
    #: student -> (seconds late, late penalty, lateness unknown): what the summary says of lateness
    lateness: dict[str, tuple[float, float, bool]] = field(default_factory=dict)

    def format(self) -> str:
        if self.interrupted:
            return (
                f"interrupted: {len(self.records)} of {self.students} students graded; "
                f"run grade again to grade the rest (it grades all {self.students} again)"
            )
        count = len(self.records)
        lines = [
            f"graded {count} student{'' if count == 1 else 's'} in {self.seconds:.1f} s",
            *self.refused,
        ]
        for student, record in sorted(self.records.items()):
            bad = [
                f"{nb}: {entry['status']}"
                for nb, entry in record["notebooks"].items()
                if entry["status"] != "graded"
            ]
            # A regrade says which hand grades it reset (the answer changed): grade them again.
            bad += [
                flag["detail"]
                for flag in record.get("flags", [])
                if flag.get("kind") == handgrades.RESET
            ]
            # What a person should look at (a brute-forced self-check, patching, ...): the
            # kinds here, the details in ``report``.
            kinds = sorted(
                {
                    flag.get("kind", "")
                    for flag in record.get("flags", [])
                    if flag.get("kind") not in SUMMARY_QUIET_FLAGS
                }
            )
            if kinds:
                bad.append(f"flagged {', '.join(kinds)} (see report)")
            late = self.lateness.get(student)
            if late is not None:
                bad += lateness_words(*late)
            total = f"{record['total']:g}/{record['max_total']:g}"
            # Student ids, flag details and errors carry a student's text: shown, never obeyed.
            shown = for_terminal("; ".join(bad))
            lines.append(f"  {for_terminal(student):<24} {total:>7}  {shown}")
        for student, error in sorted(self.errors.items()):
            lines.append(f"  {for_terminal(student):<24} GRADER ERROR: {for_terminal(error)}")
        if self.logs is not None:
            lines.append(f"details: {self.logs / 'STUDENT.log'} (nbgrader's log of each student)")
        return "\n".join(lines)


def lateness_words(seconds_late: float, penalty: float, unknown: bool) -> list[str]:
    """What the summary line says of a student's lateness: that a penalty changed the score
    ("late 1 d 2 h: penalty -3"), that lateness is unknown, or nothing when on time."""
    if unknown:
        words = "lateness unknown (only the download's time)"
        return [words + (f": penalty -{penalty:g}, check it" if penalty > 0 else "")]
    if seconds_late <= 0:
        return []
    return [f"late {duration(seconds_late)}" + (f": penalty -{penalty:g}" if penalty > 0 else "")]


def _lateness(root: Path, students: list[str]) -> dict[str, tuple[float, float, bool]]:
    """Per graded student, from the gradebook: seconds late and nbgrader's late penalty; from the
    collect ledger (when there is one): whether the submission time is only the download's."""
    from nbgrader import api

    unknown: set[str] = set()
    try:
        downloaded = course_config(root).ZipCollectApp.get("downloaded_directory", "downloaded")
        ledger = json.loads(
            (root / downloaded / ASSIGNMENT / "collected.json").read_text(encoding="utf-8")
        )
        for student, entry in (ledger.get("students") or {}).items():
            if not isinstance(entry, dict):
                continue
            source = entry.get("time_source")
            if source is None:  # an older ledger: per notebook; the latest notebook's counts
                timed = [
                    (str(nb.get("time") or ""), nb.get("time_source"))
                    for nb in (entry.get("notebooks") or {}).values()
                    if isinstance(nb, dict)
                ]
                source = max(timed)[1] if timed else None
            if source == "download":
                unknown.add(student)
    except (OSError, ValueError, AttributeError, TypeError):
        pass  # no ledger (exchange, a folder): nothing says a time is the download's
    lateness = {}
    wanted = set(students)
    with open_gradebook(db_url(root)) as gb:
        for sub in (
            gb.db.query(api.SubmittedAssignment)
            .join(api.Assignment)
            .filter(api.Assignment.name == ASSIGNMENT)
        ):
            if sub.student_id in wanted:
                lateness[sub.student_id] = (
                    float(sub.total_seconds_late or 0.0),
                    float(sub.late_submission_penalty or 0.0),
                    sub.student_id in unknown,
                )
    return lateness


class Interrupted(KeyboardInterrupt):
    """Ctrl-C stopped ``grade``; every process it started is stopped, ``run`` says who was
    graded. A KeyboardInterrupt, so that a caller that does not expect it stops too."""

    def __init__(self, run: GradeRun):
        super().__init__(run.format())
        self.run = run


#: What a grading worker imports, imported once by the server the workers are forked from.
WORKER_PRELOAD = (
    # Not the grader's preprocessors: they import the verdicts and references, which must not be
    # in the memory warm parents (and so kernels) are forked from (sandbox.FORBIDDEN_MODULES).
    "toeplitz_course.grader.grade",
    "toeplitz_course.grader.warmkernel",
    "torch",
    "nbgrader.converters",
    "nbgrader.preprocessors",
    "nbclient",
    "IPython",
    "ipykernel.kernelspec",
    "jupyter_client.localinterfaces",
    "psutil",
    "sqlalchemy.dialects.sqlite",
    "sqlite3",
)


def _preload_env() -> dict[str, str]:
    """The environment the server imports under: the warm parent's import environment (numpy
    starts OpenBLAS's thread pool on import unless told not to, and a process with threads must
    not fork). Each worker then takes the caller's environment back."""
    from .warmkernel import _IMPORT_ENV, INLINE_BACKEND

    return {**_IMPORT_ENV, "MPLBACKEND": os.environ.get("MPLBACKEND") or INLINE_BACKEND}


def _ignore_known_warnings() -> None:
    # nbgrader's add_submission trips SQLAlchemy 2's "not in session" warning for every new
    # student (a backref cascade to objects it adds itself); the rows are right.
    from sqlalchemy.exc import SAWarning

    warnings.filterwarnings(
        "ignore", message=r"Object of type <Submitted\w+> not in session", category=SAWarning
    )


def _die_with_server() -> None:
    """End this worker when the server it was forked from ends.

    The server ends with the batch driver (``_worker_context``), even one killed outright; a
    worker outliving them would wait on its task queue forever (it holds the queue's write end
    itself), and its warm parent and kernels with it. Only for forked workers: a spawned one's
    parent is whichever thread of the driver started it.
    """
    import ctypes

    parent = os.getppid()
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the server ended before the request
        os._exit(1)


def _worker_init(
    env_file: str | None = None, *, kernels: bool = True, forked_here: bool = False
) -> None:
    """Set up a grading worker; ``env_file`` holds the caller's environment when the worker is
    forked from the server. ``kernels=False``: a worker that runs no kernel (``feedback``), so
    without a warm parent. ``forked_here``: a fork of the batch driver itself (``run_in_pool``'s
    ``fork_here``), which it dies with."""
    from multiprocessing.util import Finalize

    from .config import KERNEL_PRELOAD
    from .gradebook import share_engines
    from .warmkernel import prewarm, shutdown_zygotes

    global _capture
    # Ctrl-C at the terminal reaches the whole process group: the batch driver stops the
    # workers (``_stop_workers``); one interrupted here would print its traceback and that of
    # every task of its event loop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if env_file is not None or forked_here:
        _die_with_server()
    # This worker's warm parent, started now, while the pool hands out the first students. A
    # worker forked from the server has imported the kernel's modules (KERNEL_PRELOAD) and done
    # nothing else, so its warm parent is a fork of it, without imports of its own. It is forked
    # before the caller's environment is read back: the server was started without the caller's
    # secrets (sandbox.parent_env), and a kernel's memory is a copy of its warm parent's.
    if kernels:
        prewarm(KERNEL_PRELOAD, fork=env_file is not None)
    if env_file is not None:
        with open(env_file, encoding="utf-8") as f:
            env = json.load(f)
        os.environ.clear()
        os.environ.update(env)
    # Kernels are separate processes; the worker itself needs no threads of torch's.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _ignore_known_warnings()
    # Whatever else the worker warns or logs goes to the student's log, not the terminal.
    logging.captureWarnings(True)
    _capture = True
    # A worker forked from the server ends in os._exit, past atexit: stop (and reap) the warm
    # parent on the way out, as every multiprocessing worker runs its finalizers.
    if kernels:
        Finalize(None, shutdown_zygotes, exitpriority=10)
    share_engines()


@contextlib.contextmanager
def _worker_context(
    preload: tuple[str, ...] | None = None, fork_here: bool = False
) -> Iterator[tuple[Any, tuple]]:
    """The multiprocessing context for grading workers, and the initializer's arguments.

    ``preload``: what the server imports (default: ``WORKER_PRELOAD`` and ``KERNEL_PRELOAD``,
    what a grading worker and its kernels need). ``fork_here``: no server, workers forked from
    this process (``run_in_pool``), where ``fork`` exists and this process has no other thread.

    Each worker would import torch, nbgrader and nbconvert on its own, and its warm parent
    torch, IPython and ipykernel, about five seconds of CPU each. With ``forkserver``, one
    server process imports them all (``WORKER_PRELOAD`` and ``KERNEL_PRELOAD``), every worker
    is a fork of it, and each worker's warm parent a fork of the worker, made before the worker
    does anything else (``prewarm(fork=True)``). The server starts and is stopped (and reaped)
    with each ``grade`` run, so it never serves a stale environment or code; a server someone
    else in this process started is left alone and workers are spawned instead, as on platforms
    without ``forkserver`` or Pythons whose ``multiprocessing.forkserver`` lacks the ``_stop``
    this relies on (CPython 3.8 and later have it).
    """
    from multiprocessing import forkserver

    if fork_here and "fork" in multiprocessing.get_all_start_methods():
        if threading.active_count() == 1:
            yield get_context("fork"), ()
            return
    server = getattr(forkserver, "_forkserver", None)
    if (
        "forkserver" not in multiprocessing.get_all_start_methods()
        or server is None
        or not hasattr(server, "_stop")
        or server._forkserver_pid is not None
    ):
        yield get_context("spawn"), ()
        return
    from .config import KERNEL_PRELOAD
    from .sandbox import parent_env

    context = get_context("forkserver")
    env = dict(os.environ)
    if preload is None:
        preload = WORKER_PRELOAD + KERNEL_PRELOAD
    context.set_forkserver_preload(list(dict.fromkeys(preload)))
    # The server, and so every worker and warm parent forked from it, starts without the
    # caller's secrets; workers read the caller's environment back from a private file.
    os.environ.clear()
    os.environ.update({**parent_env(env), **_preload_env()})
    try:
        server.ensure_running()
    finally:
        os.environ.clear()
        os.environ.update(env)
    private = tempfile.mkdtemp(prefix="toeplitz-workers-")
    env_file = os.path.join(private, "environment.json")
    with open(os.open(env_file, os.O_WRONLY | os.O_CREAT, 0o600), "w", encoding="utf-8") as f:
        json.dump(env, f)
    try:
        yield context, (env_file,)
    finally:
        context.set_forkserver_preload([])
        server._stop()
        shutil.rmtree(private, ignore_errors=True)


def grade(
    root: Course | Path | str = ".",
    students: list[str] | None = None,
    *,
    jobs: int | None = None,
    progress: bool = True,
    sandbox: bool | None = None,
    scheduler: str | None = None,
) -> GradeRun:
    """Grade ``students`` (default: everyone in ``submitted/``) with ``jobs`` worker processes.

    ``root``: the course (``Course``, loaded once and handed to every worker with its students)
    or its folder (loaded here, once).

    ``sandbox``: confine student code (default: ``c.Sandbox.enabled``, on). Raises
    :class:`~toeplitz_course.grader.sandbox.SandboxUnavailable`, before grading anyone, when
    this machine cannot confine it.

    ``scheduler``: the address of a Dask scheduler to grade on (default: ``c.Cluster.scheduler``;
    empty: here), one task per student (``cluster.py``); the workers confine student code.
    """
    course = Course.of(root)
    with course.in_use():
        return _grade(course, students, jobs, progress, sandbox, scheduler)


#: Workers per core by default. A worker and its kernel take turns (the worker waits while the
#: kernel runs a cell; the kernel waits while the worker converts, writes the gradebook and forks
#: the next kernel), so one worker per core kept 2 cores 1.31-1.36 busy; two per core keep them
#: 1.78-1.81 busy for the same machine time a notebook (benchmarks/oversubscribe.py, 60 students
#: on 2 cores: 115-135 s of wall time with 2 workers, 88 s with 4).
WORKERS_PER_CORE = 2
#: What one more worker may need at worst: its kernel's address space (``Sandbox.memory``, 2 GiB
#: by default), the kernel's tmpfs (256 MiB) and the worker itself.
WORKER_MEMORY = int(2.5 * (1 << 30))


def default_jobs() -> int:
    """``grade``'s workers without ``--jobs``: two per core where the machine's memory covers each
    one's worst case, and never fewer than one per core (the default before)."""
    cores = os.cpu_count() or 1
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return cores
    return max(cores, min(WORKERS_PER_CORE * cores, memory // WORKER_MEMORY))


def _grade(
    course: Course,
    students: list[str] | None,
    jobs: int | None,
    progress: bool,
    sandbox: bool | None,
    scheduler: str | None,
) -> GradeRun:
    from .cluster import configured_scheduler, grade_on_cluster

    root = course.root
    ensure_assignment(root)  # a fresh clone's or a new gradebook has none (release/ is committed)
    sandbox = sandbox_enabled(root, sandbox)
    scheduler = configured_scheduler(root) if scheduler is None else scheduler
    if sandbox and not scheduler:
        check_support(Sandbox(config=course_config(root)))
    # Folder names that are no student id (a formula, escape sequences) are refused, each named
    # in one line of the summary; so is a --student that is not one.
    refused: list[str] = []
    if students:
        refused = [
            f"{for_terminal(s)}: not graded, not a student id"
            for s in students
            if not is_student_id(s)
        ]
        students = sorted(s for s in students if is_student_id(s))
    else:
        students = submitted_students(root, refused)
    jobs = max(1, min(jobs or default_jobs(), len(students) or 1))
    # nbgrader creates course rows check-then-insert; create them before workers race for them.
    prepare(root)
    bar = Progress(len(students) if progress else 0)
    records: dict[str, dict] = {}
    errors: dict[str, str] = {}
    start = time.monotonic()
    on_ctrl_c = signal.getsignal(signal.SIGINT)
    bar.show()
    try:
        if scheduler:
            grade_on_cluster(root, students, scheduler, sandbox, bar.step, records, errors)
        elif jobs == 1:
            _grade_here(course, students, sandbox, records, errors, bar.step)
        else:
            _grade_in_pool(course, students, jobs, sandbox, records, errors, bar.step)
    except KeyboardInterrupt:
        bar.close()
        run = GradeRun(
            records, errors, time.monotonic() - start, len(students), root / LOGS, True, refused
        )
        raise Interrupted(run) from None
    finally:
        if signal.getsignal(signal.SIGINT) is not on_ctrl_c and _main_thread():
            signal.signal(signal.SIGINT, on_ctrl_c)
    run = GradeRun(
        records, errors, time.monotonic() - start, len(students), root / LOGS, refused=refused
    )
    if records:
        try:
            run.lateness = _lateness(root, sorted(records))
        except Exception as exc:  # noqa: BLE001 - the summary must not cost the grades
            run.refused.append(f"lateness not shown: {for_terminal(exc)}")
    return run


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _ignore_ctrl_c() -> None:
    """A second Ctrl-C while the batch stops would only break the stopping; ``grade`` puts the
    handler back when it is done."""
    if _main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _grade_here(
    root: Course | Path,
    students: list[str],
    sandbox: bool,
    records: dict[str, dict],
    errors: dict[str, str],
    step: Callable[[str], None],
) -> None:
    """Grade one student after the other in this process."""
    from .warmkernel import shutdown_zygotes

    # On Ctrl-C the interrupted notebook's kernel is still running: it dies with its warm parent.
    run_here(grade_student, root, students, (sandbox,), records, errors, step, shutdown_zygotes)


def run_here(
    task: Callable[..., Any],
    root: Course | Path,
    students: list[str],
    extra: tuple,
    results: dict[str, Any],
    errors: dict[str, str],
    step: Callable[[str], None],
    on_ctrl_c: Callable[[], None] | None = None,
) -> None:
    """``results[student] = task(root, student, *extra)``, one student after the other in this
    process, as ``run_in_pool`` does in workers: an exception is the student's entry in
    ``errors``, ``step(student)`` after each, warnings and other libraries' log records go to
    the student's log; ``on_ctrl_c`` runs before a Ctrl-C goes on up."""
    global _capture
    from .gradebook import engines_shared

    with engines_shared(), warnings.catch_warnings():
        _ignore_known_warnings()
        logging.captureWarnings(True)
        _capture = True
        try:
            for student in students:
                try:
                    results[student] = task(root, student, *extra)
                except Exception as exc:  # noqa: BLE001
                    errors[student] = f"{type(exc).__name__}: {exc}"
                step(student)
        except KeyboardInterrupt:
            _ignore_ctrl_c()
            if on_ctrl_c is not None:
                on_ctrl_c()
            raise
        finally:
            _capture = False
            _release_captured()
            logging.captureWarnings(False)


def _grade_in_pool(
    root: Course | Path,
    students: list[str],
    jobs: int,
    sandbox: bool,
    records: dict[str, dict],
    errors: dict[str, str],
    step: Callable[[str], None],
) -> None:
    """Grade the students in ``jobs`` worker processes."""
    run_in_pool(grade_student, root, students, (sandbox,), jobs, records, errors, step)


def run_in_pool(
    task: Callable[..., Any],
    root: Course | Path,
    students: list[str],
    extra: tuple,
    jobs: int,
    results: dict[str, Any],
    errors: dict[str, str],
    step: Callable[[str], None],
    *,
    initializer: Callable[..., None] = _worker_init,
    preload: tuple[str, ...] | None = None,
    died: str = "the grading worker died three times on this student",
    fork_here: bool = False,
) -> None:
    """``results[student] = task(root, student, *extra)`` for each student, in ``jobs`` worker
    processes forked from a server that has imported ``preload`` (``_worker_context``);
    an exception is the student's entry in ``errors``; ``step(student)`` after each student.

    ``fork_here``: the workers are forks of this process instead, with everything it has
    imported and warmed (``feedback`` warms up on its first student, then forks). Only for
    tasks that run no student code: a grading worker's warm parent must not be a copy of the
    caller (its environment, what it has read). This process must have no thread then; the pool
    starts its own only after forking every worker (``fork``: processes launched up front).

    A worker that dies (out of memory, a signal) breaks the whole pool: the students it took
    down with it are run again in a new pool, up to three times each (then ``died``). Ctrl-C
    (any exception here) stops every worker and what it started (``_stop_workers``).
    """
    attempts: Counter[str] = Counter()
    pending = list(students)
    while pending:
        retry = []
        with _worker_context(preload, fork_here) as (context, initargs):
            pool = ProcessPoolExecutor(
                jobs, mp_context=context, initializer=initializer, initargs=initargs
            )
            try:
                futures = {pool.submit(task, root, s, *extra): s for s in pending}
                for fut in as_completed(futures):
                    student = futures[fut]
                    try:
                        results[student] = fut.result()
                    except BrokenProcessPool:
                        attempts[student] += 1
                        if attempts[student] < 3:
                            retry.append(student)
                            continue
                        errors[student] = died
                    except Exception as exc:  # noqa: BLE001 - one student's error, not the batch's
                        errors[student] = f"{type(exc).__name__}: {exc}"
                    step(student)
            except BaseException:
                _ignore_ctrl_c()
                _stop_workers(pool)
                raise
            pool.shutdown()
        pending = retry


def _stop_workers(pool: ProcessPoolExecutor, grace: float = 3.0) -> None:
    """Stop a pool's workers now, whatever they are grading, and everything they started.

    ProcessPoolExecutor can only wait for the work in progress (``terminate_workers`` is Python
    3.14's), so its processes are taken from it. SIGTERM ends a worker at once: its gradebook
    transaction in progress rolls back (a notebook's scores land together or not at all), its
    warm parent sees the end of its socket and kills the worker's kernels (``warmkernel``),
    which it would also do were the worker SIGKILLed. What is still there after ``grace``
    seconds is killed.
    """
    import psutil

    workers = list((pool._processes or {}).values())
    manager = pool._executor_manager_thread
    spawned = []
    for worker in workers:
        with contextlib.suppress(psutil.Error, ValueError):
            spawned += psutil.Process(worker.pid).children(recursive=True)
    pool.shutdown(wait=False, cancel_futures=True)
    for worker in workers:
        worker.terminate()
    deadline = time.monotonic() + grace
    for worker in workers:
        worker.join(max(0.1, deadline - time.monotonic()))
        if worker.exitcode is None:
            worker.kill()
            worker.join(1.0)
    left = _wait_gone(spawned, deadline)
    for process in left:
        with contextlib.suppress(psutil.Error):
            process.kill()
    _wait_gone(left, time.monotonic() + 1.0)
    if manager is not None:
        manager.join(grace)


def _wait_gone(processes: list, deadline: float) -> list:
    """``processes`` (psutil) that still run at ``deadline``; a zombie has ended (whoever
    inherited it reaps it)."""
    import psutil

    def running(process) -> bool:
        try:
            return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    left = [p for p in processes if running(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [p for p in left if running(p)]
    return left
