"""What a hidden test cell calls: ``hidden.check("ex1_2_test", globals().get("linear_layer"))``.

(An answer that was never defined arrives as None: "not answered yet", as the visible check says,
not a NameError.)

It probes the answer (plain data) and sends it on the answer channel; the grader's own process
gives the verdict (``VerifyAnswers``), out of reach of student code.

Where this kernel can also import the grader's verdicts -- an unconfined kernel: the instructor's
JupyterLab on ``source/``, stock ``nbgrader autograde``, ``grade --no-sandbox`` -- it verifies in
the kernel as well, so that the cell fails with the teaching message and stock nbgrader scores
honest work right. The verdicts are looked up by name at run time, never imported by this
package: a sandboxed grading kernel cannot import them at all (nothing of the grader is on its
file system or in its memory), and then the test cell only reports.
"""

from __future__ import annotations

import importlib
from typing import Any

from . import channel, probe

#: The grader's module of verdicts, looked up by name where it exists (see above).
VERDICTS = "toeplitz_course.grader.verdicts"


def _verdicts():
    try:
        return importlib.import_module(VERDICTS)
    except ImportError:
        return None


def check(grade_id: str, answer: Any) -> None:
    """Probe and report ``answer`` for the autograded test cell ``grade_id``.

    Unconfined, also raises the grader's ``CheckFailure`` (an ``AssertionError``) when it is wrong.
    """
    payload = probe.probe(grade_id, answer)
    channel.emit(grade_id, payload)
    verdicts = _verdicts()
    if verdicts is not None:
        verdicts.verify(grade_id, payload)
