"""The integrity report: per student, the flags a person should look at (from ``grading/``)."""

from __future__ import annotations

import json
from pathlib import Path

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
    unconfined = sorted(s for s, r in records.items() if r.get("sandboxed") is False)
    if unconfined:
        lines.append(
            f"NOT SANDBOXED: {len(unconfined)} of {len(records)} students were graded without "
            "the sandbox (--no-sandbox or c.Sandbox.enabled = False); their code ran with the "
            f"grader's rights: {', '.join(unconfined[:10])}{' ...' if len(unconfined) > 10 else ''}"
        )
    flagged = 0
    for student, record in records.items():
        flags = [
            f for f in record.get("flags", []) if f.get("kind") not in ("missing", "not_sandboxed")
        ]
        if not flags:
            continue
        flagged += 1
        lines.append(f"{student}:")
        lines += [
            f"  {f['kind']:<13} {f.get('notebook', '')}: {f.get('detail', '')}" for f in flags
        ]
    lines.append(f"{flagged} of {len(records)} students flagged")
    lines += [f"skipped unreadable record {name}" for name in skipped]
    return "\n".join(lines)
