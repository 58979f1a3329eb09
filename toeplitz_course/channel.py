"""The answer channel: how a hidden test hands a probed answer to the grader's process.

A payload is one ``display_data`` output of the test cell with the MIME type ``MIME``; its data is
``{"grade_id": str, "payload": <JSON>}``. Only the outputs of the test cell itself are read, so
output printed by earlier (student) cells cannot stand in for it.
"""

from __future__ import annotations

from typing import Any

MIME = "application/vnd.toeplitz-course.answer+json"


def emit(grade_id: str, payload: Any) -> None:
    """Write ``payload`` for ``grade_id`` as an output of this cell (no-op outside IPython)."""
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # pragma: no cover - IPython ships with every kernel we run
        return
    if get_ipython() is None:
        return
    display({MIME: {"grade_id": grade_id, "payload": payload}}, raw=True)


def payloads(cell: dict) -> list[dict]:
    """Every channel message found in a cell's outputs, in order."""
    found = []
    for output in cell.get("outputs", []):
        if output.get("output_type") != "display_data":
            continue
        data = output.get("data", {}).get(MIME)
        if isinstance(data, dict) and isinstance(data.get("grade_id"), str):
            found.append(data)
    return found


def strip(cell: dict) -> None:
    """Remove channel messages from a cell's outputs (they are for the grader, not for people)."""
    cell["outputs"] = [
        o
        for o in cell.get("outputs", [])
        if not (o.get("output_type") == "display_data" and MIME in o.get("data", {}))
    ]
