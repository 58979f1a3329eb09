"""The answer channel, kernel end: how a hidden test hands a probed answer to the grader's process.

A payload is one ``display_data`` output of the test cell with the MIME type ``MIME``; its data is
``{"grade_id": str, "payload": <JSON>}``. Only the outputs of the test cell itself are read, so
output printed by earlier (student) cells cannot stand in for it. The grader reads them back with
:mod:`toeplitz_course.grader.answers`.
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
