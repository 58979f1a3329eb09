"""Grades CSV for the LMS, a terminal summary and a one-page HTML summary for the instructor.

Scores come from nbgrader's gradebook through its ORM API only, so a PostgreSQL ``db_url`` works
as well as the course's SQLite file. Diagnoses, integrity flags and notebooks that could not be
graded come from the grading records ``grading/{student}.json`` written by ``grade``.

Everything a student can influence (ids, messages, flag details, file names) is untrusted: it is
HTML-escaped in the page and stripped of control characters before it reaches a terminal.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import os
import re
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..course import contract

GRADES_CSV = "grades.csv"
SUMMARY_HTML = "summary.html"
UNGRADED_STATUSES = ("missing", "invalid", "failed")
TOP_MISTAKES_TERMINAL = 5
TOP_MISTAKES_HTML = 25
MESSAGE_MAX_CHARS = 240
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


@dataclass(frozen=True)
class PassRate:
    grade_id: str
    label: str  # the exercise's answer id: shorter than the grade id, and what students see
    passed: int
    graded: int  # submissions whose grade is known, i.e. not waiting for manual grading

    @property
    def rate(self) -> float | None:
        return self.passed / self.graded if self.graded else None


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
    pass_rates: tuple[PassRate, ...]
    mistakes: tuple[Mistake, ...]  # most common first
    flags: tuple[Flag, ...]
    ungraded: tuple[Ungraded, ...]
    skipped: tuple[str, ...]  # "grading/x.json: why", records (or parts) left out
    warnings: tuple[str, ...]


def export(
    course_root: str | os.PathLike[str] = ".",
    *,
    db_url: str | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    assignment: str = contract.ASSIGNMENT,
) -> ExportResult:
    """Write ``grades.csv`` and ``summary.html`` into ``out_dir``, print and return a summary.

    ``db_url`` defaults to ``c.CourseDirectory.db_url`` of ``nbgrader_config.py`` when that sets
    one, else to ``<course_root>/gradebook.db``; ``out_dir`` defaults to ``<course_root>/exports``.
    Raises :class:`ExportError` when the gradebook is missing or lacks a contract grade cell.
    """
    root = Path(course_root).resolve()
    out = Path(out_dir) if out_dir is not None else root / "exports"
    warnings: list[str] = []

    url, course_id = _database(root, db_url, warnings)
    columns, max_scores, rows = _read_gradebook(url, course_id, assignment, warnings)
    records = _read_records(root / "grading")

    out.mkdir(parents=True, exist_ok=True)
    result = ExportResult(
        csv_path=out / GRADES_CSV,
        html_path=out / SUMMARY_HTML,
        summary="",
        columns=tuple(columns),
        max_scores=max_scores,
        rows=tuple(rows),
        pass_rates=_pass_rates(columns, max_scores, rows),
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
    )
    result = replace(result, summary=_summary_text(result))
    _write_atomically(result.csv_path, _csv_text(result))
    _write_atomically(result.html_path, _html_page(result, assignment))
    print(result.summary)
    return result


# --- the gradebook ----------------------------------------------------------------------------


def _database(root: Path, db_url: str | None, warnings: list[str]) -> tuple[str, str]:
    course_id = "default_course"
    configured_url = None
    config_file = root / "nbgrader_config.py"
    if config_file.is_file():
        try:
            configured_url, configured_course = _configured(config_file)
        except Exception as exc:  # a broken config must not hide the grades; say so instead
            warnings.append(f"could not read {config_file.name} ({type(exc).__name__}: {exc})")
        else:
            course_id = configured_course or course_id
    url = db_url or configured_url or f"sqlite:///{root / 'gradebook.db'}"
    _require_existing_sqlite(url)
    return url, course_id


def _configured(config_file: Path) -> tuple[str | None, str | None]:
    # nbgrader's own loader, so the export reads the gradebook that grading wrote to.
    from traitlets.config.loader import PyFileConfigLoader

    config = PyFileConfigLoader(config_file.name, path=str(config_file.parent)).load_config()
    course_dir = config.CourseDirectory
    url = course_dir.db_url if "db_url" in course_dir else None
    course_id = course_dir.course_id if "course_id" in course_dir else None
    return (str(url) if url else None, str(course_id) if course_id else None)


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
) -> tuple[list[str], dict[str, float], list[StudentRow]]:
    from nbgrader.api import Gradebook, MissingEntry

    columns = contract.grade_ids()
    keys = {gid: _cell_key(gid) for gid in columns}
    points = {e.test_id or e.answer_id: float(e.points) for e in contract.EXERCISES}

    with Gradebook(url, course_id=course_id) as gb:
        try:
            master = gb.find_assignment(assignment)
        except MissingEntry:
            raise ExportError(f"assignment {assignment!r} is not in the gradebook") from None

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
                    StudentRow(student_id, False, dict.fromkeys(columns, 0.0), 0.0, max_total, ())
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
            rows.append(StudentRow(student_id, True, scores, total, max_total, pending))
    return columns, max_scores, rows


def _label(grade_id: str) -> str:
    exercise = contract.BY_TEST_ID.get(grade_id)
    return exercise.answer_id if exercise else grade_id


def _full(score: float | None, max_score: float) -> bool:
    return score is not None and score >= max_score - _EPS


def _pass_rates(
    columns: Sequence[str], max_scores: dict[str, float], rows: Sequence[StudentRow]
) -> tuple[PassRate, ...]:
    # Submissions only: a student who handed nothing in says nothing about an exercise.
    rates = []
    for gid in columns:
        known = [row.scores[gid] for row in rows if row.submitted and row.scores[gid] is not None]
        passed = sum(1 for score in known if _full(score, max_scores[gid]))
        rates.append(PassRate(gid, _label(gid), passed, len(known)))
    return tuple(rates)


# --- the grading records ----------------------------------------------------------------------

_WHITESPACE = re.compile(r"\s+")
_ADDRESS = re.compile(r"\b0x[0-9a-fA-F]{6,}\b")
# C0/C1 controls (terminal escapes) and bidi overrides (text that reads differently than it is).
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` with control and bidi-override characters replaced, safe for a terminal."""
    return _UNSAFE.sub("\ufffd", text)


def normalize_message(message: str) -> str:
    """The key under which a diagnosed message is counted.

    Light on purpose: the checks run fixed cases, so students making the same mistake get the same
    message up to layout; only whitespace, a trailing full stop and object addresses (which change
    every run) are evened out.
    """
    text = _WHITESPACE.sub(" ", printable(message)).strip()
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


def _num(value: float) -> str:
    # "1" rather than "1.0", and no 0.30000000000000004, for a file people read and LMSs parse.
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def _csv_text(result: ExportResult) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        ["student_id", *result.columns, "total", "max_total", "submitted", "needs_manual_grading"]
    )
    for row in result.rows:
        writer.writerow(
            [
                row.student_id,
                *(
                    "" if row.scores[gid] is None else _num(row.scores[gid])
                    for gid in result.columns
                ),
                _num(row.total),
                _num(row.max_total),
                "yes" if row.submitted else "no",
                " ".join(row.needs_manual_grading),
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
    totals = [row.total for row in rows]
    max_total = rows[0].max_total if rows else 0.0
    return {
        "students": len(rows),
        "submitted": sum(row.submitted for row in rows),
        "mean": statistics.fmean(totals) if totals else 0.0,
        "median": statistics.median(totals) if totals else 0.0,
        "full": sum(
            1 for row in rows if not row.needs_manual_grading and _full(row.total, max_total)
        ),
        "zero": sum(1 for row in rows if abs(row.total) <= _EPS),
        "pending": sum(1 for row in rows if row.needs_manual_grading),
        "max_total": max_total,
    }


def _percent(rate: PassRate) -> str:
    return "n/a" if rate.rate is None else f"{100 * rate.rate:.0f}%"


def _summary_text(result: ExportResult) -> str:
    s = _stats(result.rows)
    lines = [
        f"{s['students']} students ({s['submitted']} submitted); "
        f"total out of {_num(s['max_total'])}: mean {_num(round(s['mean'], 2))}, "
        f"median {_num(s['median'])}; {s['full']} at full marks, {s['zero']} at zero",
    ]
    if s["pending"]:
        lines.append(
            f"students with a grade still to give by hand: {s['pending']} (empty in the CSV)"
        )
    lines.append("pass rate (full marks, of graded submissions):")
    for notebook in contract.NOTEBOOKS:
        parts = [
            f"{rate.label} {_percent(rate)} ({rate.passed}/{rate.graded})"
            for rate in result.pass_rates
            if _cell_key(rate.grade_id)[0] == notebook
        ]
        lines.append(f"  {notebook}: " + ", ".join(parts))
    if result.mistakes:
        lines.append(f"top {TOP_MISTAKES_TERMINAL} diagnosed mistakes:")
        for mistake in result.mistakes[:TOP_MISTAKES_TERMINAL]:
            message = mistake.message
            if len(message) > 100:
                message = message[:99] + "…"
            lines.append(f"  {mistake.count:>3}x {mistake.exercise}: {message}")
    else:
        lines.append("no diagnosed mistakes in the grading records")
    if result.flags:
        flagged = len({flag.student for flag in result.flags})
        lines.append(f"{len(result.flags)} integrity flags for {flagged} students (see HTML)")
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
    top = max([max_total, *(row.total for row in rows)], default=0.0)
    edges = [edge - 0.5 for edge in range(int(top) + 2)]
    axes.hist([row.total for row in rows], bins=edges, color="#4472c4", edgecolor="white")
    axes.set_xlabel(f"total (out of {_num(max_total)})")
    axes.set_ylabel("students")
    axes.xaxis.get_major_locator().set_params(integer=True)
    axes.yaxis.get_major_locator().set_params(integer=True)
    axes.set_title("Score distribution")
    return _png(figure)


def _pass_chart(rates: Sequence[PassRate]) -> str:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.5, 3.0), dpi=100)
    axes = figure.add_subplot()
    labels = [rate.label for rate in rates]
    values = [100 * (rate.rate or 0.0) for rate in rates]
    bars = axes.bar(labels, values, color="#70ad47")
    axes.bar_label(bars, labels=[_percent(rate) for rate in rates], fontsize=7)
    axes.set_ylim(0, 110)
    axes.set_ylabel("% at full marks")
    axes.set_title("Pass rate per exercise (graded submissions)")
    axes.tick_params(axis="x", labelrotation=45, labelsize=8)
    return _png(figure)


_CSS = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 1.5rem auto; color: #222; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.1rem; margin-top: 1.8rem; }
table { border-collapse: collapse; margin: .5rem 0; font-size: .9rem; }
th, td { border: 1px solid #ccc; padding: .25rem .5rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.n { text-align: right; }
td.t { white-space: pre-wrap; word-break: break-word; max-width: 40rem; }
.note { color: #555; font-size: .9rem; } .warn { color: #9c5700; }
img { max-width: 100%; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


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


def _html_page(result: ExportResult, assignment: str) -> str:
    s = _stats(result.rows)
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    overview = [
        ["students", s["students"]],
        ["submitted", s["submitted"]],
        ["max total", _num(s["max_total"])],
        ["mean total", _num(round(s["mean"], 2))],
        ["median total", _num(s["median"])],
        ["at full marks", s["full"]],
        ["at zero", s["zero"]],
        ["still need manual grading", s["pending"]],
    ]
    pending = [
        [row.student_id, " ".join(row.needs_manual_grading)]
        for row in result.rows
        if row.needs_manual_grading
    ]
    notices = "".join(
        f'<li class="warn">{_e(text)}</li>'
        for text in (*(f"skipped {item}" for item in result.skipped), *result.warnings)
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        # Defence in depth behind the escaping: the page may hold no script and load nothing.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "img-src data:; style-src 'unsafe-inline'\">",
        f"<title>{_e(assignment)}: grades summary</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{_e(assignment)}: grades summary</h1>",
        f'<p class="note">Generated {_e(generated)}. Grades: {_e(result.csv_path.name)}.</p>',
        f"<ul>{notices}</ul>" if notices else "",
        _table("overview", ["", "value"], overview),
        "<h2>Score distribution</h2>",
        f'<img alt="histogram of totals" src="{_histogram(result.rows, s["max_total"])}">',
        "<h2>Pass rate per exercise</h2>",
        f'<img alt="pass rate per exercise" src="{_pass_chart(result.pass_rates)}">',
        _table(
            "pass-rates",
            ["exercise", "grade id", "passed", "graded", "rate"],
            [
                [rate.label, rate.grade_id, rate.passed, rate.graded, _percent(rate)]
                for rate in result.pass_rates
            ],
        ),
        "<h2>Most common diagnosed mistakes</h2>",
        _table(
            "mistakes",
            ["exercise", "message", "count"],
            [[m.exercise, m.message, m.count] for m in result.mistakes[:TOP_MISTAKES_HTML]],
        ),
        "<h2>Integrity flags</h2>",
        '<p class="note">Flags are for a person to look at, not score changes.</p>',
        _table(
            "flags",
            ["student", "notebook", "kind", "detail"],
            [[f.student, f.notebook, f.kind, f.detail] for f in result.flags],
        ),
        "<h2>Notebooks that could not be graded</h2>",
        _table(
            "ungraded",
            ["student", "notebook", "status", "detail"],
            [[u.student, u.notebook, u.status, u.detail] for u in result.ungraded],
        ),
        "<h2>Still to grade by hand</h2>",
        _table("pending", ["student", "grade cells"], pending),
        "</body></html>",
    ]
    return "\n".join(part for part in parts if part) + "\n"
