"""Hand-ins of some notebooks only, for the tests that grade a class to observe one behaviour.

Every notebook handed in costs a kernel; a notebook left out is recorded as missing and each of
its cells scores 0 (``grade._zero_ungraded``), so the gradebook still has a row for every cell.
The grading of all six notebooks of every kind of hand-in is checked by test_grading's class.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path

from toeplitz_course.course.contract import AUTOGRADED, NOTEBOOKS
from toeplitz_course.instructor import examples


def write(nbs: examples.Notebooks, course: Path, student: str, parts: Iterable[str]) -> Path:
    """``examples.write`` of the notebooks ``parts`` of ``nbs`` only."""
    return examples.write({name: nbs[name] for name in parts}, course, student)


def expected(kind: str, parts: Iterable[str]) -> dict[str, float]:
    """``examples.expected_scores(kind)`` for a hand-in of ``parts`` only."""
    parts = set(parts)
    full = examples.expected_scores(kind)
    return {e.test_id: full[e.test_id] if e.notebook in parts else 0.0 for e in AUTOGRADED}


def only(case: examples.Case, parts: Iterable[str]) -> examples.Case:
    """``case`` with the files of the notebooks ``parts`` only; the others score 0 whole."""
    parts = list(parts)
    assert set(parts) <= set(NOTEBOOKS), parts
    kept = {f"{name}.ipynb" for name in parts}
    return dataclasses.replace(
        case,
        files={name: text for name, text in case.files.items() if name in kept},
        missing_notebooks=case.missing_notebooks | (set(NOTEBOOKS) - set(parts)),
    )
