"""The answer channel, grader end: the probed answers a test cell sent, read from its outputs.

The format is the kernel end's (:mod:`toeplitz_course.kernel.channel`): one ``display_data``
output per answer, MIME type ``MIME``, data ``{"grade_id": str, "payload": <JSON>}``.
"""

from __future__ import annotations

from ..kernel.channel import MIME


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


def is_answer(output: dict) -> bool:
    """Whether an output is a message on the answer channel."""
    return output.get("output_type") == "display_data" and MIME in output.get("data", {})


def strip(cell: dict) -> None:
    """Remove channel messages from a cell's outputs (they are for the grader, not for people)."""
    cell["outputs"] = [o for o in cell.get("outputs", []) if not is_answer(o)]
