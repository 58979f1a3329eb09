"""Preprocessors tested on their own, outside a grading run."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbgrader.nbgraderformat import SchemaTooOldError, ValidationError

from toeplitz_course.contract import ASSIGNMENT, NOTEBOOKS
from toeplitz_course.preprocessors import CheckCellMetadata

ROOT = Path(__file__).resolve().parent.parent


def _release(name: str = NOTEBOOKS[0]):
    return nbformat.read(ROOT / "release" / ASSIGNMENT / f"{name}.ipynb", as_version=4)


def _graded(nb):
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade"))


@pytest.mark.parametrize(
    "corrupt, error",
    [
        (lambda meta: meta.pop("points"), ValidationError),
        (lambda meta: meta.update(grade_id=""), ValidationError),
        (lambda meta: meta.update(points="many"), ValidationError),
        (lambda meta: meta.update(schema_version=1), SchemaTooOldError),
    ],
)
def test_remembered_metadata_does_not_let_corrupt_metadata_through(corrupt, error):
    check = CheckCellMetadata()
    check.preprocess(_release(), {})  # valid: remembered
    check.preprocess(_release(), {})  # served from memory
    nb = _release()
    corrupt(_graded(nb).metadata["nbgrader"])
    with pytest.raises(error):
        check.preprocess(nb, {})


def test_duplicate_grade_ids_are_still_found():
    nb = _release()
    CheckCellMetadata().preprocess(nb, {})
    cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")]
    cells[1].metadata["nbgrader"]["grade_id"] = cells[0].metadata["nbgrader"]["grade_id"]
    with pytest.raises(ValidationError):
        CheckCellMetadata().preprocess(nb, {})
