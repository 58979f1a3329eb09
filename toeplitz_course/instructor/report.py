"""The integrity report: per student, the flags a person should look at (from ``grading/``), then
who handed in late (the gradebook's submission times, due dates and penalties, and the LMS's own
markers) and whose every file ``collect`` rejected (the collect ledger).

Every record is the student's to shape (ids, notebook names, flag details, grade ids, file
names): each piece goes through ``untrusted.for_terminal`` on its own, so no escape sequence in
one can hide or rewrite another, a student's own flags included.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..course.contract import NOTEBOOKS
from ..course.untrusted import for_terminal
from ..grader.coursedir import RECORDS, Course
from ..grader.integrity import OLD_ANSWER
from .similarity import summary_lines as similarity_lines


def load_records(root: Path | str = ".") -> tuple[dict[str, dict], list[str]]:
    """Grading records by student, and the files that could not be read."""
    records, skipped = {}, []
    for path in sorted((Path(root) / RECORDS).glob("*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            records[record["student"]] = record
        except (ValueError, KeyError, TypeError):
            skipped.append(path.name)
    return records, skipped


def report(course: Course | Path | str = ".") -> str:
    """The report of the course (``Course``) or of its folder (its configuration is loaded
    once, by ``export.gather``, only for the lateness and the ledger)."""
    root = course.root if isinstance(course, Course) else Path(course)
    records, skipped = load_records(root)
    lines = ["Integrity flags (for a person to look at; they do not change scores)"]
    unconfined = sorted(
        for_terminal(s)
        for s, r in records.items()
        if isinstance(r, dict) and r.get("sandboxed") is False
    )
    if unconfined:
        lines.append(
            f"NOT SANDBOXED: {len(unconfined)} of {len(records)} students were graded without "
            "the sandbox (--no-sandbox or c.Sandbox.enabled = False); their code ran with the "
            f"grader's rights: {', '.join(unconfined[:10])}{' ...' if len(unconfined) > 10 else ''}"
        )
    lines += _old_answers(records)
    flagged = 0
    for student, record in records.items():
        flags = record.get("flags", []) if isinstance(record, dict) else []
        flags = [
            f
            for f in (flags if isinstance(flags, list) else [])
            if isinstance(f, dict) and f.get("kind") not in ("missing", "not_sandboxed")
        ]
        if not flags:
            continue
        flagged += 1
        lines.append(f"{for_terminal(student)}:")
        lines += [
            f"  {for_terminal(f.get('kind', '')):<14} {for_terminal(f.get('notebook', ''))}: "
            f"{for_terminal(f.get('detail', ''))}"
            for f in flags
        ]
    lines.append(f"{flagged} of {len(records)} students flagged")
    lines += [f"skipped unreadable record {for_terminal(name)}" for name in skipped]
    lines += _lateness(course)
    lines += ["", *similarity_lines(root)]
    return "\n".join(lines)


def old_answers(record: dict) -> dict[str, list[str]]:
    """The variants a student's answers match other than the course's: {variant: [exercise
    test ids]}, from the record's ``old_answer`` flags."""
    found: dict[str, list[str]] = {}
    flags = record.get("flags", []) if isinstance(record, dict) else []
    for f in flags if isinstance(flags, list) else []:
        if isinstance(f, dict) and f.get("kind") == OLD_ANSWER:
            name = f.get("variant")
            if isinstance(name, str):
                found.setdefault(name, []).append(str(f.get("detail", "")).partition(":")[0])
    return found


def _old_answers(records: dict[str, dict]) -> list[str]:
    """One line per student whose answers are another variant's (they scored 0 there)."""
    lines = []
    for student, record in records.items():
        for name, exercises in old_answers(record).items():
            lines.append(
                f"OLD ANSWERS: {for_terminal(student)}: {len(exercises)} answer"
                f"{'s' if len(exercises) != 1 else ''} match variant {for_terminal(name)!r}, "
                f"not this course's ({', '.join(for_terminal(e) for e in exercises)})"
            )
    return lines


def _lateness(course: Course | Path | str) -> list[str]:
    """Who was late (or whose lateness is unknown), every file collect rejected, and every
    student nothing of whom was graded, with why: from the same sources as ``export``."""
    from .export import UNKNOWN_NOTE, ExportError, format_time, gather, lateness_text

    try:
        result = gather(course)
    except ExportError as exc:
        return [f"lateness not shown: {for_terminal(exc)}"]
    lines = []
    late = [row for row in result.rows if row.late]
    if result.duedate is None:
        if any(row.timestamp is not None for row in result.rows):
            lines.append(
                "No due date in the gradebook: lateness not computed (nbgrader db assignment add "
                "ASSIGNMENT --duedate=...; then grade again)"
            )
    else:
        lines.append(f"Late (due {format_time(result.duedate)}):")
        lines += [f"  {for_terminal(row.student_id)}: {lateness_text(row)}" for row in late]
        if not late:
            lines.append("  nobody")
    unknown = [row for row in result.rows if row.lateness_unknown and row.timestamp is not None]
    if unknown:
        lines.append(f"Lateness unknown ({UNKNOWN_NOTE}):")
        lines += [f"  {for_terminal(row.student_id)}: {lateness_text(row)}" for row in unknown]
    nothing = [
        row
        for row in result.rows
        if not row.submitted or (row.ungraded and len(row.ungraded) == len(NOTEBOOKS))
    ]
    if nothing:
        lines.append("Nothing graded:")
        for row in nothing:
            lines.append(f"  {for_terminal(row.student_id)}: {for_terminal(_why(row))}")
    rejected = [(row, name, why) for row in result.rows for name, why in row.rejected_files]
    if rejected:
        lines.append("Files collect rejected:")
        lines += [
            f"  {for_terminal(row.student_id)}: {for_terminal(name)}: {for_terminal(why)}"
            for row, name, why in rejected
        ]
    return lines


def _why(row) -> str:
    if row.nothing_gradable:
        return f"nothing gradable handed in ({len(row.rejected)} files rejected, below)"
    if row.collected_not_graded:
        return "collected, not graded yet: run grade"
    if row.submitted:
        return "no notebook could be graded: " + "; ".join(row.ungraded)
    return "nothing handed in"
