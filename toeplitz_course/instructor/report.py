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

from ..course.untrusted import for_terminal
from ..grader.coursedir import RECORDS


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


def report(root: Path | str = ".") -> str:
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
    lines += _lateness(Path(root))
    return "\n".join(lines)


def _lateness(root: Path) -> list[str]:
    """Who was late and who handed in nothing gradable, from the same sources as ``export``."""
    from .export import ExportError, format_time, gather, lateness_text

    try:
        result = gather(root)
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
    nothing = [row for row in result.rows if row.nothing_gradable]
    if nothing:
        lines.append("Nothing gradable handed in:")
        for row in nothing:
            for name, reason in row.rejected:
                lines.append(
                    f"  {for_terminal(row.student_id)}: {for_terminal(name)}: "
                    f"{for_terminal(reason)}"
                )
    return lines
