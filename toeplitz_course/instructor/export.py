"""Grades CSV for the LMS, a terminal summary and a one-page HTML grade report for the instructor.

Scores, submission times, due dates (with extensions) and late penalties come from nbgrader's
gradebook through its ORM API only, so a PostgreSQL ``db_url`` works as well as the course's
SQLite file; the penalty is the one nbgrader's ``AssignLatePenalties`` stored when ``grade``
autograded, and the score after it is nbgrader's own export rule, ``max(0, total - penalty)``.
Diagnoses, integrity flags and notebooks that could not be graded come from the grading records
``grading/{student}.json`` written by ``grade``; students whose every file ``collect`` rejected,
and the LMS's own lateness markers, from the collect ledger
(``downloaded/{assignment}/collected.json``).

Per-exercise numbers count only notebooks that were handed in and graded: a notebook never
handed in, or one that could not be graded, says nothing about an exercise (both are listed on
their own). Partial credit counts as what it is: the mean score, and full/partial/zero counts.

The HTML page is one file that needs nothing else: figures are embedded PNGs, styles inline,
and the one script (sorting the students x exercises table) is inline too, allowed by its hash in
the page's Content-Security-Policy, which lets nothing else run or load.

Everything a student can influence (ids, messages, flag details, file names, grade ids) is
untrusted (``course/untrusted``): in the page it is HTML-escaped with every control character and
bidi override shown as an escape; on a terminal it goes through ``for_terminal``; in the CSV
every text cell goes through ``csv_cell``, so no spreadsheet reads one as a formula.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import html
import io
import json
import os
import re
import stat
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..course import contract
from ..course.lateness import duration
from ..course.untrusted import csv_cell, for_terminal, is_student_id
from ..grader.coursedir import Course, CourseProblem
from .lms import Graded, Identity, LmsExport, PageInput, settings, write_feedback, write_lms_files
from .similarity import summary as similarity_summary

GRADES_CSV = "grades.csv"
SUMMARY_HTML = "summary.html"
UNGRADED_STATUSES = ("missing", "invalid", "failed")
TOP_MISTAKES_TERMINAL = 5
TOP_MISTAKES_HTML = 25
TOP_MISTAKES_PER_EXERCISE = 3
MESSAGE_MAX_CHARS = 240
#: The ``submitted`` column of a student whose every file collect rejected.
NOTHING_GRADABLE = "nothing gradable"
#: The ``submitted`` column of a student collect placed files of and grade has not seen.
NOT_GRADED = "not graded"
#: What the CSV's note says when a submission time is only the download's.
UNKNOWN_NOTE = "lateness unknown: the only time known is the LMS download's"
#: The identity columns grades.csv carries after student_id (from the collect ledger).
CSV_IDENTITY = ("lms_system", "lms_user_id", "name", "email")
#: Integrity flags the page and the report leave out: a missing notebook is listed as not
#: handed in, and an unconfined run is said once, not once per student.
ROUTINE_FLAGS = ("missing", "not_sandboxed")
#: The ledger's time source that is only the time of the LMS download (issue 22): lateness unknown.
UNKNOWN_TIME_SOURCE = "download"
UNKNOWN = "unknown"
# Scores are sums of floats; a tolerance keeps 0.1 + 0.2 + 0.7 at full marks.
_EPS = 1e-9


class ExportError(RuntimeError):
    """No export is possible: no gradebook, or one that does not match the contract."""


@dataclass(frozen=True)
class StudentRow:
    student_id: str
    submitted: bool
    scores: dict[str, float | None]  # grade id -> score; None while it needs manual grading
    total: float
    max_total: float
    needs_manual_grading: tuple[str, ...]
    timestamp: datetime | None = None  # the gradebook's submission time (naive UTC)
    duedate: datetime | None = None  # the assignment's, with this student's extension
    seconds_late: float = 0.0  # nbgrader's total_seconds_late
    late_penalty: float = 0.0  # nbgrader's, summed over notebooks (AssignLatePenalties)
    lms_late: bool = False  # the LMS marked a file late (collect ledger)
    rejected: tuple[tuple[str, str], ...] = ()  # (file, reason): collect rejected every file
    #: Every file collect rejected of this student (also when others were placed).
    rejected_files: tuple[tuple[str, str], ...] = ()
    identity: Identity = Identity()  # the LMS's own id, name and e-mail (collect ledger)
    time_source: str = ""  # where collect took the submission time from (collect ledger)
    collected_not_graded: bool = False  # collect placed notebooks; grade has not seen them
    ungraded: tuple[str, ...] = ()  # "notebook: status" of notebooks that could not be graded

    @property
    def lateness_unknown(self) -> bool:
        """Only the download's time is known: nothing says whether the student was late."""
        return self.time_source == UNKNOWN_TIME_SOURCE and not self.lms_late

    @property
    def score(self) -> float:
        """The grade after the late penalty, as ``nbgrader export`` computes it."""
        return max(0.0, self.total - self.late_penalty)

    @property
    def nothing_gradable(self) -> bool:
        return bool(self.rejected)

    @property
    def late(self) -> bool:
        # A time that is only the download's says nothing: never "late" on its word.
        return self.lms_late or (self.seconds_late > 0 and not self.lateness_unknown)


@dataclass(frozen=True)
class ExerciseStats:
    """One exercise over the notebooks handed in and graded (not over the class)."""

    grade_id: str
    label: str  # the exercise's answer id: shorter than the grade id, and what students see
    max_score: float
    scores: tuple[float, ...]  # of graded notebooks whose grade is known (not pending)
    not_handed_in: int  # students who submitted, but not this notebook or not gradably
    pending: int  # graded notebooks whose cell still needs manual grading
    mistakes: tuple[tuple[str, int], ...] = ()  # most common diagnoses: (message, count)

    @property
    def graded(self) -> int:
        return len(self.scores)

    @property
    def full(self) -> int:
        return sum(1 for score in self.scores if _full(score, self.max_score))

    @property
    def zero(self) -> int:
        return sum(1 for score in self.scores if abs(score) <= _EPS)

    @property
    def partial(self) -> int:
        return self.graded - self.full - self.zero

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.scores) if self.scores else None

    @property
    def rate(self) -> float | None:
        """Mean score as a fraction of the maximum (partial credit counts as partial)."""
        if self.mean is None or self.max_score <= 0:
            return None
        return self.mean / self.max_score


@dataclass(frozen=True)
class Mistake:
    exercise: str
    message: str
    count: int


@dataclass(frozen=True)
class Flag:
    student: str
    notebook: str
    kind: str
    detail: str


@dataclass(frozen=True)
class Ungraded:
    student: str
    notebook: str
    status: str
    detail: str


@dataclass(frozen=True)
class ExportResult:
    csv_path: Path
    html_path: Path
    summary: str
    columns: tuple[str, ...]
    max_scores: dict[str, float]
    rows: tuple[StudentRow, ...]
    exercises: tuple[ExerciseStats, ...]
    mistakes: tuple[Mistake, ...]  # most common first
    flags: tuple[Flag, ...]
    ungraded: tuple[Ungraded, ...]
    skipped: tuple[str, ...]  # "grading/x.json: why", records (or parts) left out
    warnings: tuple[str, ...]
    duedate: datetime | None = None  # the assignment's, without extensions
    similarity: dict | None = None  # the last ``similarity`` run's pairs to look at (or None)


def export(
    course_root: Course | str | os.PathLike[str] = ".",
    *,
    db_url: str | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    assignment: str = contract.ASSIGNMENT,
    canvas_assignment: str | None = None,
    blackboard_column: str | None = None,
    brightspace_item: str | None = None,
) -> ExportResult:
    """Write ``grades.csv``, ``summary.html``, one grade file per LMS the students handed in
    through (``lms``), and the feedback pages into ``out_dir``; print and return a summary.

    ``db_url`` defaults to ``c.CourseDirectory.db_url`` of ``nbgrader_config.py`` when that sets
    one, else to ``<course_root>/gradebook.db``; ``out_dir`` defaults to ``<course_root>/exports``.
    ``canvas_assignment``, ``blackboard_column``, ``brightspace_item`` override ``c.LmsExport``.
    Raises :class:`ExportError` when the gradebook is missing, holds no grades or lacks a
    contract grade cell.
    """
    warnings: list[str] = []
    course = _course(course_root, warnings)
    root = course.root
    out = Path(out_dir) if out_dir is not None else root / "exports"
    result = gather(course, db_url=db_url, assignment=assignment, out_dir=out, warned=warnings)
    out.mkdir(parents=True, exist_ok=True)
    _write_atomically(result.csv_path, _csv_text(result))
    _write_atomically(result.html_path, _html_page(result, assignment))
    lms = settings(
        course,
        canvas_assignment=canvas_assignment,
        blackboard_column=blackboard_column,
        brightspace_item=brightspace_item,
    )
    lines = _lms_out(root, out, result, lms)
    result = replace(result, summary="\n".join([result.summary, *lines]))
    print(result.summary)
    return result


def _lms_out(root: Path, out: Path, result: ExportResult, lms: LmsExport) -> list[str]:
    """The LMS grade files and the feedback pages; the lines the summary says about them."""
    graded = [
        Graded(row.student_id, row.identity, row.score, row.max_total, _hold(row))
        for row in result.rows
    ]
    lines = [f.line for f in write_lms_files(graded, out, lms)]
    status = {(u.student, u.notebook): u.status for u in result.ungraded}
    pages = []
    for row in result.rows:
        notebooks: dict[str, tuple[float, float, str]] = {}
        for gid in result.columns:
            notebook = _cell_key(gid)[0]
            score, best, _ = notebooks.get(notebook, (0.0, 0.0, ""))
            state = status.get((row.student_id, notebook), "graded" if row.submitted else "missing")
            notebooks[notebook] = (
                score + (row.scores[gid] or 0.0),
                best + result.max_scores[gid],
                state,
            )
        pages.append(
            PageInput(
                row.student_id,
                row.identity,
                row.total,
                row.late_penalty,
                row.score,
                row.max_total,
                _page_lateness(row),
                notebooks,
                tuple(_label(gid) for gid in row.needs_manual_grading),
            )
        )
    written, moodle_zip = write_feedback(root, out, pages)
    lines.append(
        f"feedback pages: {out / 'feedback'}/STUDENT/feedback.html ({len(written)}), each with "
        "its notebooks' feedback pages beside it (run feedback first to include them)"
    )
    if moodle_zip is not None:
        lines.append(f'{moodle_zip.name}: Moodle\'s "Upload multiple feedback files in a zip"')
    return lines


def _hold(row: StudentRow) -> str:
    """Why no LMS file may carry this student's score yet ("" when it may)."""
    if row.needs_manual_grading:
        return "hand grade pending"
    if row.collected_not_graded:
        return "collected, not graded yet"
    return ""


def _page_lateness(row: StudentRow) -> str:
    """A student's lateness as their page says it."""
    if row.lateness_unknown and row.timestamp is not None:
        return f"handed in; lateness {UNKNOWN}"
    if row.timestamp is None:
        return "handed in" if row.submitted else "nothing graded"
    when = f"handed in {format_time(row.timestamp)}"
    if row.late:
        late = f", {duration(row.seconds_late)} late" if row.seconds_late > 0 else ", late"
        return when + late
    return when + ", on time" if row.duedate is not None else when


def _has_notebooks(root: Path, student: str, assignment: str) -> bool:
    """Whether ``submitted/{student}/{assignment}/`` holds a notebook: real folders and regular
    files only, as staging reads them (a link there is no hand-in)."""
    if not is_student_id(student):
        return False
    folder = root / "submitted"
    for name in (student, assignment):
        folder = folder / name
        try:
            if not stat.S_ISDIR(os.lstat(folder).st_mode):
                return False
        except OSError:
            return False
    with os.scandir(folder) as entries:
        return any(e.name.endswith(".ipynb") and e.is_file(follow_symlinks=False) for e in entries)


def gather(
    course_root: Course | str | os.PathLike[str] = ".",
    *,
    db_url: str | None = None,
    assignment: str = contract.ASSIGNMENT,
    out_dir: str | os.PathLike[str] | None = None,
    warned: Sequence[str] = (),
) -> ExportResult:
    """Everything ``export`` writes, read and computed, without writing anything.
    ``warned``: warnings the caller already has (its loading of the course)."""
    warnings: list[str] = list(warned)
    course = _course(course_root, warnings)
    root = course.root
    out = Path(out_dir) if out_dir is not None else root / "exports"

    url, course_id = _database(course, db_url)
    columns, max_scores, rows, duedate = _read_gradebook(url, course_id, assignment, warnings)
    if not any(row.submitted for row in rows):
        # An export of nobody's grades is a step run out of order, not a file to upload.
        raise ExportError("no grades in the gradebook yet: run grade first")
    records = _read_records(root / "grading")
    rows = _with_ledger(course, assignment, rows, columns, warnings)
    not_graded: dict[str, list[str]] = {}
    for u in records.ungraded:
        not_graded.setdefault(u.student, []).append(f"{u.notebook}: {u.status}")
    rows = [replace(row, ungraded=tuple(not_graded.get(row.student_id, ()))) for row in rows]

    result = ExportResult(
        csv_path=out / GRADES_CSV,
        html_path=out / SUMMARY_HTML,
        summary="",
        columns=tuple(columns),
        max_scores=max_scores,
        rows=tuple(rows),
        exercises=_exercise_stats(columns, max_scores, rows, records),
        mistakes=tuple(
            Mistake(exercise, message, count)
            for (exercise, message), count in sorted(
                records.mistakes.items(), key=lambda item: (-item[1], item[0])
            )
        ),
        flags=tuple(records.flags),
        ungraded=tuple(records.ungraded),
        skipped=tuple(records.skipped),
        warnings=tuple(warnings),
        duedate=duedate,
        similarity=similarity_summary(root, out),
    )
    return replace(result, summary=_summary_text(result))


# --- the gradebook ----------------------------------------------------------------------------


def _course(where: Course | str | os.PathLike[str], warnings: list[str]) -> Course:
    """The course (loaded once, unless the caller hands it over); a broken configuration must
    not hide the grades: nbgrader's defaults then, and a warning that says so."""
    try:
        return Course.of(where)
    except CourseProblem as exc:
        warnings.append(f"could not read nbgrader_config.py ({exc})")
        return Course.defaults(where)  # type: ignore[arg-type] - a Course never fails to load


def _database(course: Course, db_url: str | None) -> tuple[str, str]:
    # The course's gradebook URL (nbgrader's, so the export reads what grading wrote to).
    url = db_url or course.db_url
    _require_existing_sqlite(url)
    return url, course.course_id or "default_course"


def _require_existing_sqlite(url: str) -> None:
    # nbgrader's Gradebook silently creates an empty database for a missing file: an export of
    # nobody from a mistyped path is worse than an error.
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return
    database = parsed.database
    if database and database != ":memory:" and not Path(database).is_file():
        raise ExportError(f"no gradebook at {database}: run grade first, or pass db_url")


def _cell_key(grade_id: str) -> tuple[str, str]:
    for exercise in contract.EXERCISES:
        if grade_id in (exercise.test_id, exercise.answer_id):
            return exercise.notebook, grade_id
    raise KeyError(grade_id)


def _read_gradebook(
    url: str, course_id: str, assignment: str, warnings: list[str]
) -> tuple[list[str], dict[str, float], list[StudentRow], datetime | None]:
    from nbgrader.api import Gradebook, MissingEntry

    columns = contract.grade_ids()
    keys = {gid: _cell_key(gid) for gid in columns}
    points = {e.test_id or e.answer_id: float(e.points) for e in contract.EXERCISES}

    with Gradebook(url, course_id=course_id) as gb:
        try:
            master = gb.find_assignment(assignment)
        except MissingEntry:
            raise ExportError(
                f"assignment {assignment!r} is not in the gradebook: run grade first"
            ) from None

        cell_max: dict[tuple[str, str], float] = {}
        for notebook in master.notebooks:
            for cell in [*notebook.grade_cells, *notebook.task_cells]:
                cell_max[(notebook.name, cell.name)] = float(cell.max_score or 0.0)
        absent = [f"{nb}/{gid}" for gid, (nb, _) in keys.items() if (nb, gid) not in cell_max]
        if absent:
            raise ExportError(
                "the gradebook does not match the contract; grade cells missing: "
                + ", ".join(absent)
            )
        max_scores = {gid: cell_max[keys[gid]] for gid in columns}
        for gid in columns:
            if abs(max_scores[gid] - points[gid]) > _EPS:
                warnings.append(
                    f"{gid} is worth {_num(max_scores[gid])} in the gradebook but "
                    f"{_num(points[gid])} in the contract; the gradebook's value is exported"
                )
        extra = sorted(f"{nb}/{name}" for nb, name in cell_max if (nb, name) not in keys.values())
        if extra:
            warnings.append("grade cells not in the contract, not exported: " + ", ".join(extra))
        max_total = sum(max_scores.values())

        submissions = {sub.student_id: sub for sub in gb.assignment_submissions(assignment)}
        rows = []
        for student_id in sorted(student.id for student in gb.students):
            submission = submissions.get(student_id)
            if submission is None:
                rows.append(
                    StudentRow(
                        student_id,
                        False,
                        dict.fromkeys(columns, 0.0),
                        0.0,
                        max_total,
                        (),
                        duedate=master.duedate,
                    )
                )
                continue
            grades = {
                (notebook.name, grade.name): grade
                for notebook in submission.notebooks
                for grade in notebook.grades
            }
            scores: dict[str, float | None] = {}
            for gid in columns:
                grade = grades.get(keys[gid])
                if grade is None:
                    warnings.append(f"{student_id} has no grade for {gid}; exported as 0")
                    scores[gid] = 0.0
                elif grade.needs_manual_grade:
                    scores[gid] = None
                else:
                    # Grade.score is nbgrader's rule: manual score if set, else auto score.
                    scores[gid] = float(grade.score or 0.0)
            pending = tuple(gid for gid in columns if scores[gid] is None)
            total = sum(score for score in scores.values() if score is not None)
            rows.append(
                StudentRow(
                    student_id,
                    True,
                    scores,
                    total,
                    max_total,
                    pending,
                    timestamp=submission.timestamp,
                    duedate=submission.duedate,
                    seconds_late=float(submission.total_seconds_late or 0.0),
                    late_penalty=float(submission.late_submission_penalty or 0.0),
                )
            )
    return columns, max_scores, rows, master.duedate


def _time_source(entry: dict[str, Any]) -> str:
    """The student's ``time_source``; older ledgers keep it per notebook only: then the source
    of the latest notebook's time (the time ``timestamp.txt`` holds)."""
    source = entry.get("time_source")
    if isinstance(source, str):
        return source
    notebooks = entry.get("notebooks")
    if not isinstance(notebooks, dict):
        return ""
    timed = [
        (str(nb.get("time") or ""), str(nb.get("time_source") or ""))
        for nb in notebooks.values()
        if isinstance(nb, dict)
    ]
    return max(timed)[1] if timed else ""


def _with_ledger(
    course: Course,
    assignment: str,
    rows: list[StudentRow],
    columns: Sequence[str],
    warnings: list[str],
) -> list[StudentRow]:
    """``rows`` with the collect ledger's facts: the LMS's late markers, identities, where each
    time came from, every rejected file, and a row for every student collect has seen whom the
    gradebook does not know (every file rejected, or placed and not graded yet): nobody collect
    saw is missing from the export."""
    from .collect import ledger_path, read_ledger

    root = course.root
    path = ledger_path(course, assignment)
    try:
        ledger = read_ledger(path)
    except ValueError as exc:
        warnings.append(f"{exc}; LMS late markers and rejected hand-ins not shown")
        return rows
    students = ledger.get("students", {})
    by_id = {row.student_id: row for row in rows}
    max_total = rows[0].max_total if rows else float(sum(e.points for e in contract.EXERCISES))
    for student, entry in students.items():
        if not isinstance(entry, dict):
            warnings.append(f"{path.name}: malformed entry for {printable(str(student))}")
            continue
        notebooks = entry.get("notebooks") or {}
        lms_late = isinstance(notebooks, dict) and any(
            isinstance(nb, dict) and nb.get("lms_late") is True for nb in notebooks.values()
        )
        row = by_id.get(student)
        handed_in = bool(notebooks) or _has_notebooks(root, str(student), assignment)
        every_rejected = tuple(
            (_text(item.get("source")), _text(item.get("reason")))
            for item in entry.get("rejected") or []
            if isinstance(item, dict)
        )
        rejected: tuple[tuple[str, str], ...] = ()
        if not handed_in and (row is None or not row.submitted):
            rejected = every_rejected
        waiting = False
        if row is None:
            # Seen by collect, unknown to the gradebook: every file rejected, or placed and
            # not graded yet. Either way the student is listed, with why.
            waiting = handed_in
            row = StudentRow(str(student), False, dict.fromkeys(columns, 0.0), 0.0, max_total, ())
        by_id[student] = replace(
            row,
            lms_late=row.lms_late or lms_late,
            rejected=rejected,
            rejected_files=every_rejected,
            identity=Identity.from_ledger(entry),
            time_source=_time_source(entry),
            collected_not_graded=waiting,
        )
    return [by_id[student] for student in sorted(by_id)]


def _label(grade_id: str) -> str:
    exercise = contract.BY_TEST_ID.get(grade_id)
    return exercise.answer_id if exercise else grade_id


def _full(score: float | None, max_score: float) -> bool:
    return score is not None and score >= max_score - _EPS


def _exercise_stats(
    columns: Sequence[str],
    max_scores: dict[str, float],
    rows: Sequence[StudentRow],
    records: _Records,
) -> tuple[ExerciseStats, ...]:
    stats = []
    for gid in columns:
        notebook = _cell_key(gid)[0]
        label = _label(gid)
        scores, pending, absent = [], 0, 0
        for row in rows:
            if not row.submitted:
                continue  # a student who handed nothing in says nothing about an exercise
            status = records.status.get((row.student_id, notebook))
            if status is not None and status != "graded":
                absent += 1
            elif row.scores[gid] is None:
                pending += 1
            else:
                scores.append(row.scores[gid])
        mistakes = sorted(
            ((message, count) for (ex, message), count in records.mistakes.items() if ex == label),
            key=lambda item: (-item[1], item[0]),
        )[:TOP_MISTAKES_PER_EXERCISE]
        stats.append(
            ExerciseStats(
                gid, label, max_scores[gid], tuple(scores), absent, pending, tuple(mistakes)
            )
        )
    return tuple(stats)


# --- the grading records ----------------------------------------------------------------------

_WHITESPACE = re.compile(r"\s+")
_ADDRESS = re.compile(r"\b0x[0-9a-fA-F]{6,}\b")


def printable(text: object) -> str:
    """``text`` as a terminal may show it (``untrusted.for_terminal``)."""
    return for_terminal(text)


def normalize_message(message: str) -> str:
    """The key under which a diagnosed message is counted.

    Light on purpose: the checks run fixed cases, so students making the same mistake get the same
    message up to layout; only whitespace, a trailing full stop and object addresses (which change
    every run) are evened out.
    """
    # Whitespace first: a newline is layout here, not a character to show escaped.
    text = printable(_WHITESPACE.sub(" ", message).strip())
    text = _ADDRESS.sub("0x…", text).rstrip(" .")
    if len(text) > MESSAGE_MAX_CHARS:
        text = text[: MESSAGE_MAX_CHARS - 1] + "…"
    return text


@dataclass
class _Records:
    mistakes: Counter[tuple[str, str]] = field(default_factory=Counter)
    flags: list[Flag] = field(default_factory=list)
    ungraded: list[Ungraded] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    status: dict[tuple[str, str], str] = field(default_factory=dict)  # (student, nb) -> status


def _text(value: Any) -> str:
    return value if isinstance(value, str) else "" if value is None else json.dumps(value)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _read_records(grading: Path) -> _Records:
    records = _Records()
    if not grading.is_dir():
        return records
    for path in sorted(grading.glob("*.json")):
        name = f"{grading.name}/{path.name}"
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            records.skipped.append(f"{name}: unreadable ({type(exc).__name__})")
            continue
        except (ValueError, RecursionError) as exc:
            records.skipped.append(f"{name}: not valid JSON ({type(exc).__name__})")
            continue
        if not isinstance(record, dict):
            records.skipped.append(f"{name}: not a grading record (no JSON object)")
            continue
        malformed = _read_record(path.stem, record, records)
        if malformed:
            records.skipped.append(f"{name}: malformed parts ignored ({', '.join(malformed)})")
    return records


def _read_record(student: str, record: dict[str, Any], records: _Records) -> list[str]:
    """Add one record's diagnoses, flags and ungraded notebooks; return what was malformed."""
    malformed: list[str] = []
    notebooks = record.get("notebooks", {})
    if not isinstance(notebooks, dict):
        malformed.append("notebooks")
        notebooks = {}
    for notebook, entry in notebooks.items():
        if not isinstance(entry, dict):
            malformed.append(f"notebook {printable(str(notebook))}")
            continue
        status = _text(entry.get("status"))
        records.status[(student, str(notebook))] = status
        if status in UNGRADED_STATUSES:
            records.ungraded.append(
                Ungraded(student, str(notebook), status, _text(entry.get("detail")))
            )
        cells = entry.get("cells", {})
        if not isinstance(cells, dict):
            malformed.append(f"cells of {printable(str(notebook))}")
            continue
        for grade_id, cell in cells.items():
            if not isinstance(cell, dict):
                malformed.append(f"cell {printable(str(grade_id))}")
                continue
            message = cell.get("message")
            score, max_score = _number(cell.get("score")), _number(cell.get("max"))
            if not isinstance(message, str) or not message.strip():
                continue
            # A passing cell may still say something ("correct"); that is no mistake.
            if score is not None and max_score is not None and _full(score, max_score):
                continue
            # Cell ids come from notebook metadata, which students can edit.
            exercise = printable(_label(str(grade_id)))
            records.mistakes[(exercise, normalize_message(message))] += 1
    flags = record.get("flags", [])
    if not isinstance(flags, list):
        malformed.append("flags")
        flags = []
    for flag in flags:
        if not isinstance(flag, dict):
            malformed.append("a flag")
            continue
        records.flags.append(
            Flag(
                student,
                _text(flag.get("notebook")),
                _text(flag.get("kind")),
                _text(flag.get("detail")),
            )
        )
    return malformed


# --- CSV --------------------------------------------------------------------------------------

CSV_TAIL = (
    "total",  # sum of the cells' scores
    "late_penalty",  # nbgrader's late submission penalty (0 when on time or none configured)
    "score",  # max(0, total - late_penalty): what nbgrader export calls the score
    "max_total",
    "submitted",  # yes | no | nothing gradable
    "timestamp",  # the gradebook's submission time, UTC
    "seconds_late",  # nbgrader's total_seconds_late; empty without a due date or time
    "needs_manual_grading",
    "note",
)


def _num(value: float) -> str:
    # "1" rather than "1.0", and no 0.30000000000000004, for a file people read and LMSs parse.
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def format_time(value: datetime | None) -> str:
    """A gradebook time (naive UTC) as the CSV, the page and the report show it."""
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


_when = format_time


def _submitted(row: StudentRow) -> str:
    if row.nothing_gradable:
        return NOTHING_GRADABLE
    if row.collected_not_graded:
        return NOT_GRADED
    return "yes" if row.submitted else "no"


def lateness_cell(row: StudentRow) -> str:
    """``seconds_late`` as the CSV holds it: whole seconds, "unknown", or empty (no due date or
    no submission time)."""
    if row.lateness_unknown and row.timestamp is not None:
        return UNKNOWN
    if row.timestamp is None or row.duedate is None:
        return ""
    return str(round(row.seconds_late))


def _note(row: StudentRow) -> str:
    notes = []
    if row.nothing_gradable:
        files = "; ".join(f"{name} ({reason})" for name, reason in row.rejected)
        notes.append(f"nothing gradable handed in: collect rejected {files}")
    if row.collected_not_graded:
        notes.append("collected, not graded yet: run grade")
    if row.submitted and row.ungraded and len(row.ungraded) == len(contract.NOTEBOOKS):
        notes.append("nothing graded: " + "; ".join(row.ungraded))
    if row.lms_late:
        notes.append("marked late by the LMS")
    if row.submitted and row.timestamp is None:
        notes.append("no submission time (no timestamp.txt)")
    if row.lateness_unknown and row.timestamp is not None:
        notes.append(UNKNOWN_NOTE)
        if row.late_penalty > _EPS:
            notes.append(
                f"late penalty {_num(row.late_penalty)} taken from that download time: check it "
                "(python -m toeplitz_course extend, or the LMS's own submission time)"
            )
    return "; ".join(notes)


def _csv_text(result: ExportResult) -> str:
    # Text cells go through csv_cell (a student id "=HYPERLINK(...)" must stay text in every
    # spreadsheet); numbers are written by _num from floats, never from a student's text.
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        [csv_cell(name) for name in ("student_id", *CSV_IDENTITY, *result.columns, *CSV_TAIL)]
    )
    for row in result.rows:
        identity = row.identity
        writer.writerow(
            [
                csv_cell(row.student_id),
                csv_cell(identity.system),
                csv_cell(identity.user_id),
                csv_cell(identity.name),
                csv_cell(identity.email),
                *(
                    "" if row.scores[gid] is None else _num(row.scores[gid])
                    for gid in result.columns
                ),
                _num(row.total),
                _num(row.late_penalty),
                _num(row.score),
                _num(row.max_total),
                csv_cell(_submitted(row)),
                csv_cell(_when(row.timestamp)),
                lateness_cell(row),
                csv_cell(" ".join(row.needs_manual_grading)),
                csv_cell(_note(row)),
            ]
        )
    return buffer.getvalue()


def _write_atomically(path: Path, text: str) -> None:
    # A half-written grades.csv uploaded to the LMS would be worse than the previous one.
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8", newline="")
    os.replace(partial, path)


# --- the terminal summary ---------------------------------------------------------------------


def _stats(rows: Sequence[StudentRow]) -> dict[str, float | int]:
    totals = [row.score for row in rows]
    max_total = rows[0].max_total if rows else 0.0
    return {
        "students": len(rows),
        "submitted": sum(row.submitted for row in rows),
        "nothing_gradable": sum(row.nothing_gradable for row in rows),
        "late": sum(row.late for row in rows),
        "mean": statistics.fmean(totals) if totals else 0.0,
        "median": statistics.median(totals) if totals else 0.0,
        "full": sum(
            1 for row in rows if not row.needs_manual_grading and _full(row.score, max_total)
        ),
        "zero": sum(1 for row in rows if abs(row.score) <= _EPS),
        "pending": sum(1 for row in rows if row.needs_manual_grading),
        "max_total": max_total,
    }


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f}%"


def _exercise_line(ex: ExerciseStats) -> str:
    if ex.mean is None:
        return f"{ex.label} n/a"
    return (
        f"{ex.label} {_num(round(ex.mean, 2))}/{_num(ex.max_score)} "
        f"({ex.full} full, {ex.partial} partial, {ex.zero} zero)"
    )


def _lateness_lines(result: ExportResult) -> list[str]:
    late = [row for row in result.rows if row.late]
    stamped = [row for row in result.rows if row.timestamp is not None]
    lines = []
    if result.duedate is None and stamped:
        lines.append(
            "no due date in the gradebook, so no lateness computed (nbgrader db assignment add "
            f"{contract.ASSIGNMENT} --duedate=...; then grade again)"
        )
    elif result.duedate is not None:
        lines.append(f"due {_when(result.duedate)}; {len(late)} late")
    lines += [f"  {printable(row.student_id)}: {lateness_text(row)}" for row in late]
    unknown = [row for row in result.rows if row.lateness_unknown and row.timestamp is not None]
    if unknown:
        lines.append(
            f"lateness unknown (only the LMS download's time): {len(unknown)}: "
            + ", ".join(printable(row.student_id) for row in unknown)
        )
    return lines


def lateness_text(row: StudentRow) -> str:
    """When a late student handed in, how late, by whose account, and the penalty."""
    parts = []
    if row.lateness_unknown:
        parts.append(f"{UNKNOWN}: {UNKNOWN_NOTE}")
        if row.late_penalty > _EPS:
            parts.append(f"penalty {_num(row.late_penalty)} from the download time: check it")
        return ", ".join(parts)
    if row.timestamp is not None:
        parts.append(f"submitted {format_time(row.timestamp)}")
    if row.seconds_late > 0:
        parts.append(f"{duration(row.seconds_late)} late")
    elif row.lms_late and row.duedate is not None and row.timestamp is not None:
        # Worth a look: the LMS's due date, or the time collect found, is not the gradebook's.
        parts.append("on time by the gradebook's due date")
    if row.lms_late:
        parts.append("marked late by the LMS")
    if row.late_penalty > _EPS:
        parts.append(f"penalty {_num(row.late_penalty)}")
    return ", ".join(parts)


def _summary_text(result: ExportResult) -> str:
    s = _stats(result.rows)
    lines = [
        f"{s['students']} students ({s['submitted']} submitted); "
        f"score out of {_num(s['max_total'])}: mean {_num(round(s['mean'], 2))}, "
        f"median {_num(s['median'])}; {s['full']} at full marks, {s['zero']} at zero",
    ]
    if s["pending"]:
        lines.append(
            f"students with a grade still to give by hand: {s['pending']} (empty in the CSV)"
        )
    nothing = [row for row in result.rows if row.nothing_gradable]
    if nothing:
        lines.append(
            "nothing gradable handed in (collect rejected every file): "
            + ", ".join(f"{printable(row.student_id)} ({len(row.rejected)})" for row in nothing)
        )
    lines.extend(_lateness_lines(result))
    lines.append("mean score per exercise (of notebooks handed in and graded):")
    for notebook in contract.NOTEBOOKS:
        parts = [
            _exercise_line(ex) for ex in result.exercises if _cell_key(ex.grade_id)[0] == notebook
        ]
        lines.append(f"  {notebook}: " + ", ".join(parts))
    if result.mistakes:
        lines.append(f"top {TOP_MISTAKES_TERMINAL} diagnosed mistakes:")
        for mistake in result.mistakes[:TOP_MISTAKES_TERMINAL]:
            message = mistake.message
            if len(message) > 100:
                message = message[:99] + "…"
            lines.append(
                f"  {mistake.count:>3}x {printable(mistake.exercise)}: {printable(message)}"
            )
    else:
        lines.append("no diagnosed mistakes in the grading records")
    flags = [flag for flag in result.flags if flag.kind not in ROUTINE_FLAGS]
    if flags:
        flagged = len({flag.student for flag in flags})
        lines.append(f"{len(flags)} integrity flags for {flagged} students (see HTML)")
    if result.ungraded:
        lines.append(f"{len(result.ungraded)} notebooks could not be graded (see HTML)")
    lines.extend(f"skipped {printable(item)}" for item in result.skipped)
    lines.extend(f"warning: {printable(item)}" for item in result.warnings)
    lines.append(f"wrote {result.csv_path} and {result.html_path}")
    return "\n".join(lines)


# --- the HTML page ----------------------------------------------------------------------------


def _png(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _histogram(rows: Sequence[StudentRow], max_total: float) -> str:
    # A bare Figure renders with Agg without touching pyplot's global backend or state.
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 3.0), dpi=100)
    axes = figure.add_subplot()
    scores = [row.score for row in rows if row.submitted]
    top = max([max_total, *scores], default=0.0)
    edges = [edge - 0.5 for edge in range(int(top) + 2)]
    axes.hist(scores, bins=edges, color="#4472c4", edgecolor="white")
    axes.set_xlabel(f"score after late penalties (out of {_num(max_total)})")
    axes.set_ylabel("students")
    axes.xaxis.get_major_locator().set_params(integer=True)
    axes.yaxis.get_major_locator().set_params(integer=True)
    axes.set_title("Score distribution (students who submitted)")
    return _png(figure)


def _exercise_chart(exercises: Sequence[ExerciseStats]) -> str:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.5, 3.0), dpi=100)
    axes = figure.add_subplot()
    labels = [ex.label for ex in exercises]
    values = [100 * (ex.rate or 0.0) for ex in exercises]
    bars = axes.bar(labels, values, color="#70ad47")
    axes.bar_label(bars, labels=[_percent(ex.rate) for ex in exercises], fontsize=7)
    axes.set_ylim(0, 110)
    axes.set_ylabel("mean score, % of points")
    axes.set_title("Mean score per exercise (notebooks handed in and graded)")
    axes.tick_params(axis="x", labelrotation=45, labelsize=8)
    return _png(figure)


_CSS = """
body { font-family: system-ui, sans-serif; max-width: 75rem; margin: 1.5rem auto; color: #222; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.1rem; margin-top: 1.8rem; }
table { border-collapse: collapse; margin: .5rem 0; font-size: .9rem; }
th, td { border: 1px solid #ccc; padding: .25rem .5rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.n { text-align: right; }
td.t { white-space: pre-wrap; word-break: break-word; max-width: 40rem; }
.note { color: #555; font-size: .9rem; } .warn { color: #9c5700; }
img { max-width: 100%; }
#heatmap td, #heatmap th { padding: .15rem .35rem; text-align: center; font-size: .8rem; }
#heatmap td.who { text-align: left; }
#heatmap th[data-col] { cursor: pointer; } #heatmap th[data-col]:hover { background: #dde; }
#heatmap td.pending { background: #ddd; } #heatmap td.absent { background: #eee; color: #999; }
#heatmap td.late { color: #9c0006; font-weight: bold; }
"""

# Sorts a table by a column when its header is clicked (again: the other way round); the page's
# address may ask for an order ("summary.html#sort=total"). Cells sort by their data-v.
_SORT_SCRIPT = """
(function () {
  var table = document.getElementById("heatmap");
  if (!table) { return; }
  var heads = table.tHead.rows[0].cells;
  function sortBy(col, down) {
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[col].getAttribute("data-v"), y = b.cells[col].getAttribute("data-v");
      var nx = parseFloat(x), ny = parseFloat(y), order;
      if (isNaN(nx) || isNaN(ny)) { order = x < y ? -1 : x > y ? 1 : 0; } else { order = nx - ny; }
      return down ? -order : order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
    for (var i = 0; i < heads.length; i++) { heads[i].removeAttribute("aria-sort"); }
    heads[col].setAttribute("aria-sort", down ? "descending" : "ascending");
  }
  Array.prototype.forEach.call(heads, function (th, col) {
    if (!th.hasAttribute("data-col")) { return; }
    th.addEventListener("click", function () {
      sortBy(col, th.getAttribute("aria-sort") !== "descending");
    });
  });
  var asked = /[#&]sort=([\\w-]+)/.exec(location.hash);
  if (asked) {
    Array.prototype.forEach.call(heads, function (th, col) {
      if (th.getAttribute("data-col") === asked[1]) { sortBy(col, col > 0); }
    });
  }
})();
"""


def _csp() -> str:
    digest = base64.b64encode(hashlib.sha256(_SORT_SCRIPT.encode("utf-8")).digest()).decode()
    # Defence in depth behind the escaping: only the page's own sorting script may run, and
    # nothing may be loaded.
    return (
        f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
        f"script-src 'sha256-{digest}'"
    )


def _e(value: Any) -> str:
    # Control characters and bidi overrides reorder or hide text in a page as on a terminal.
    return html.escape(for_terminal(value, lines=True), quote=True)


def _similarity_section(found: dict | None) -> str:
    """The pairs ``similarity`` found to look at (its page has the answers side by side)."""
    if found is None:
        return '<p class="note">Not run: python -m toeplitz_course similarity.</p>'
    return (
        f"<p>{len(found['pairs'])} pair(s) to look at: "
        '<a href="similarity.html">similarity.html</a></p>'
        + _table(
            "similarity",
            ["pair", "exercises", "traces"],
            [
                (f"{p['a']} ~ {p['b']}", ", ".join(p["exercises"]), ", ".join(p["traces"]))
                for p in found["pairs"][:20]
            ],
        )
    )


def _table(table_id: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    if not rows:
        return '<p class="note">None.</p>'
    head = "".join(f"<th>{_e(header)}</th>" for header in headers)
    body = []
    for row in rows:
        cells = []
        for value in row:
            css = "n" if isinstance(value, (int, float)) else "t"
            cells.append(f'<td class="{css}">{_e(value)}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f'<table id="{_e(table_id)}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def _shade(fraction: float) -> str:
    # Red (nothing) through yellow to green (full marks); light enough to read the number on.
    fraction = min(1.0, max(0.0, fraction))
    return f"background: hsl({round(120 * fraction)}, 65%, 78%)"


def _heatmap(result: ExportResult, records_status: dict[tuple[str, str], str]) -> str:
    """Students x exercises, each cell the gradebook's score, shaded by its share of the points;
    then total, penalty, score and lateness. Sortable: click a header."""
    head = ['<th data-col="student">student</th>']
    for gid in result.columns:
        head.append(
            f'<th data-col="{_e(_label(gid))}" title="{_e(gid)}: '
            f'{_e(_num(result.max_scores[gid]))} points">{_e(_label(gid))}</th>'
        )
    head += [
        '<th data-col="total">total</th>',
        '<th data-col="penalty">late penalty</th>',
        '<th data-col="score">score</th>',
        '<th data-col="late">late by</th>',
    ]
    body = []
    for row in result.rows:
        cells = [f'<td class="who" data-v="{_e(row.student_id)}">{_e(row.student_id)}</td>']
        for gid in result.columns:
            score = row.scores[gid]
            notebook = _cell_key(gid)[0]
            status = records_status.get((row.student_id, notebook))
            if not row.submitted:
                css, title = "absent", "nothing submitted"
            elif status is not None and status != "graded":
                css, title = "absent", f"{notebook}: {status}"
            elif score is None:
                css, title = "pending", "needs manual grading"
            else:
                css, title = "", ""
            max_score = result.max_scores[gid]
            style = ""
            if not css and score is not None and max_score > 0:
                style = f' style="{_shade(score / max_score)}"'
            text = "?" if score is None else _num(score)
            value = "" if score is None else _num(score)
            cells.append(
                f'<td class="{css}" data-v="{value}"{style} title="{_e(title)}">{text}</td>'
            )
        late = row.seconds_late if row.timestamp is not None else 0.0
        if row.lateness_unknown and row.timestamp is not None:
            late, late_text = 0.0, UNKNOWN
        else:
            late_text = duration(late) if late > 0 else ("LMS: late" if row.lms_late else "")
        cells += [
            f'<td data-v="{_num(row.total)}">{_num(row.total)}</td>',
            f'<td data-v="{_num(row.late_penalty)}">'
            f"{_num(row.late_penalty) if row.late_penalty else ''}</td>",
            f'<td data-v="{_num(row.score)}"><b>{_num(row.score)}</b></td>',
            f'<td class="{"late" if row.late else ""}" data-v="{_num(late)}">{_e(late_text)}</td>',
        ]
        body.append("<tr>" + "".join(cells) + "</tr>")
    if not body:
        return '<p class="note">No students.</p>'
    return (
        f'<table id="heatmap"><thead><tr>{"".join(head)}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def _exercise_rows(result: ExportResult) -> list[list[Any]]:
    rows = []
    for ex in result.exercises:
        mistakes = "\n".join(f"{count}x {message}" for message, count in ex.mistakes)
        rows.append(
            [
                ex.label,
                _num(ex.max_score),
                "n/a" if ex.mean is None else _num(round(ex.mean, 2)),
                _percent(ex.rate),
                ex.graded,
                ex.full,
                ex.partial,
                ex.zero,
                ex.not_handed_in,
                ex.pending,
                mistakes,
            ]
        )
    return rows


def _lateness_rows(result: ExportResult) -> list[list[Any]]:
    return [
        [
            row.student_id,
            _when(row.timestamp),
            _when(row.duedate),
            UNKNOWN
            if row.lateness_unknown
            else duration(row.seconds_late)
            if row.seconds_late > 0
            else "",
            "yes" if row.lms_late else "",
            _num(row.late_penalty),
        ]
        for row in result.rows
        if row.late or (row.lateness_unknown and row.timestamp is not None)
    ]


def _html_page(result: ExportResult, assignment: str) -> str:
    s = _stats(result.rows)
    status = {(u.student, u.notebook): u.status for u in result.ungraded}
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    overview = [
        ["students", s["students"]],
        ["submitted", s["submitted"]],
        ["nothing gradable handed in", s["nothing_gradable"]],
        ["due", _when(result.duedate) or "no due date in the gradebook"],
        ["late", s["late"]],
        ["max score", _num(s["max_total"])],
        ["mean score (after late penalties)", _num(round(s["mean"], 2))],
        ["median score", _num(s["median"])],
        ["at full marks", s["full"]],
        ["at zero", s["zero"]],
        ["still need manual grading", s["pending"]],
    ]
    pending = [
        [row.student_id, " ".join(_label(gid) for gid in row.needs_manual_grading)]
        for row in result.rows
        if row.needs_manual_grading
    ]
    flags = [f for f in result.flags if f.kind not in ROUTINE_FLAGS]
    unconfined = sorted({f.student for f in result.flags if f.kind == "not_sandboxed"})
    notices = [
        *(f"skipped {item}" for item in result.skipped),
        *result.warnings,
    ]
    if unconfined:
        notices.append(
            f"{len(unconfined)} students were graded without the sandbox: " + ", ".join(unconfined)
        )
    notice_html = "".join(f'<li class="warn">{_e(text)}</li>' for text in notices)
    rejected = [
        [row.student_id, name, reason] for row in result.rows for name, reason in row.rejected
    ]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_csp()}">',
        f"<title>{_e(assignment)}: grade report</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{_e(assignment)}: grade report</h1>",
        f'<p class="note">Generated {_e(generated)}. Grades: {_e(result.csv_path.name)}.</p>',
        f"<ul>{notice_html}</ul>" if notice_html else "",
        _table("overview", ["", "value"], overview),
        "<h2>Students × exercises</h2>",
        '<p class="note">Each cell is the gradebook\'s score, shaded from red (0) to green (full '
        "points); grey: not handed in or not gradable; ? : still to grade by hand. Click a "
        "header to sort (again to reverse); <code>summary.html#sort=total</code> opens it "
        "sorted by total.</p>",
        _heatmap(result, status),
        "<h2>Score distribution</h2>",
        f'<img alt="histogram of scores" src="{_histogram(result.rows, s["max_total"])}">',
        "<h2>Exercises</h2>",
        '<p class="note">Over notebooks handed in and graded: a notebook never handed in or not '
        "gradable is counted apart, not as a zero; partial credit is partial.</p>",
        f'<img alt="mean score per exercise" src="{_exercise_chart(result.exercises)}">',
        _table(
            "exercises",
            [
                "exercise",
                "points",
                "mean",
                "mean %",
                "graded",
                "full",
                "partial",
                "zero",
                "not handed in",
                "to grade by hand",
                f"most common diagnosed mistakes (top {TOP_MISTAKES_PER_EXERCISE})",
            ],
            _exercise_rows(result),
        ),
        "<h2>Lateness</h2>",
        _table(
            "lateness",
            ["student", "submitted (UTC)", "due (UTC)", "late by", "LMS marked late", "penalty"],
            _lateness_rows(result),
        ),
        "<h2>Still to grade by hand</h2>",
        _table("pending", ["student", "exercises"], pending),
        "<h2>Similarity</h2>",
        _similarity_section(result.similarity),
        "<h2>Integrity flags</h2>",
        '<p class="note">Flags are for a person to look at, not score changes.</p>',
        _table(
            "flags",
            ["student", "notebook", "kind", "detail"],
            [[f.student, f.notebook, f.kind, f.detail] for f in flags],
        ),
        "<h2>Nothing gradable handed in</h2>",
        '<p class="note">Every file collect saw of these students was rejected.</p>',
        _table("nothing-gradable", ["student", "file", "why collect rejected it"], rejected),
        "<h2>Files collect rejected</h2>",
        '<p class="note">Every file collect could not place, of every student, also when other '
        "files of theirs were placed.</p>",
        _table(
            "rejected",
            ["student", "file", "why collect rejected it"],
            [
                [row.student_id, name, reason]
                for row in result.rows
                for name, reason in row.rejected_files
            ],
        ),
        "<h2>Students</h2>",
        '<p class="note">Everyone the gradebook or collect knows, with the LMS account the files '
        "came from and why nothing was graded where nothing was.</p>",
        _table(
            "students",
            ["student", "LMS", "LMS id", "name", "e-mail", "submitted", "note"],
            [
                [
                    row.student_id,
                    row.identity.system,
                    row.identity.user_id + (" (anonymous)" if row.identity.anonymous else ""),
                    row.identity.name,
                    row.identity.email,
                    _submitted(row),
                    _note(row),
                ]
                for row in result.rows
            ],
        ),
        "<h2>Notebooks that could not be graded</h2>",
        _table(
            "ungraded",
            ["student", "notebook", "status", "detail"],
            [[u.student, u.notebook, u.status, u.detail] for u in result.ungraded],
        ),
        "<h2>Most common diagnosed mistakes</h2>",
        _table(
            "mistakes",
            ["exercise", "message", "count"],
            [[m.exercise, m.message, m.count] for m in result.mistakes[:TOP_MISTAKES_HTML]],
        ),
        f"<script>{_SORT_SCRIPT}</script>",
        "</body></html>",
    ]
    return "\n".join(part for part in parts if part) + "\n"
