"""What a hidden test cell calls: ``hidden.check("ex1_2_test", linear_layer)``.

It probes the answer (plain data), sends it on the answer channel for the grader's own process to
verify, then verifies in-process as well so that a plain ``nbgrader autograde`` grades honest work
right and the student reads the teaching message.
"""

from __future__ import annotations

from typing import Any

from . import channel, checks


def check(grade_id: str, answer: Any) -> None:
    """Probe, emit and verify ``answer`` for the autograded test cell ``grade_id``.

    Raises :class:`toeplitz_course.checks.CheckFailure` (an ``AssertionError``) when it is wrong.
    """
    payload = checks.probe(grade_id, answer)
    channel.emit(grade_id, payload)
    checks.verify(grade_id, payload)
