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


def _dies_at_start(tmp_path: Path, deaths: int):
    """HardenedExecute whose kernels exit while starting, ``deaths`` times, then start normally."""
    from traitlets.config import Config

    from toeplitz_course.config import KERNEL_ARGUMENTS
    from toeplitz_course.preprocessors import HardenedExecute

    starts = tmp_path / "starts"
    # Runs in the kernel during IPKernelApp.initialize, before it answers kernel_info.
    line = (
        f"import os; f = open({str(starts)!r}, 'a'); f.write('x'); f.close(); "
        f"os._exit(3) if len(open({str(starts)!r}).read()) <= {deaths} else None"
    )
    c = Config()
    c.HardenedExecute.kernel_manager_class = "toeplitz_course.warmkernel.WarmKernelManager"
    c.HardenedExecute.extra_arguments = [*KERNEL_ARGUMENTS, f"--IPKernelApp.exec_lines={[line]!r}"]
    c.HardenedExecute.startup_timeout = 30
    return HardenedExecute(config=c), starts


KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


def _one_cell():
    return nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell("print(6 * 7)")], metadata={"kernelspec": KERNELSPEC}
    )


@pytest.mark.timeout(120)
def test_a_kernel_that_dies_while_starting_is_replaced(tmp_path):
    execute, starts = _dies_at_start(tmp_path, deaths=2)
    nb, _ = execute.preprocess(_one_cell(), {"metadata": {"path": str(tmp_path)}})
    assert starts.read_text() == "xxx"  # two kernels died, the third ran the notebook
    assert nb.cells[0].outputs[0]["text"] == "42\n"


@pytest.mark.timeout(120)
def test_kernels_that_keep_dying_while_starting_fail_the_notebook(tmp_path):
    execute, starts = _dies_at_start(tmp_path, deaths=5)
    with pytest.raises(RuntimeError, match="died"):
        execute.preprocess(_one_cell(), {"metadata": {"path": str(tmp_path)}})
    assert starts.read_text() == "xxx"  # startup_attempts, no more
