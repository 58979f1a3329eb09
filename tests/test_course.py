"""The instructor notebooks run top to bottom, every check passes, and every answer reaches the
grader through the answer channel and verifies there."""

from __future__ import annotations

import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from toeplitz_course.course.contract import ASSIGNMENT, NOTEBOOKS, exercises_in
from toeplitz_course.grader import answers, verdicts
from toeplitz_course.grader.preprocessors import is_autograder_test
from toeplitz_course.kernel import probe

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_solved_notebook_runs_and_every_answer_verifies_out_of_the_kernel(name, tmp_path):
    nb = nbformat.read(ROOT / "source" / ASSIGNMENT / f"{name}.ipynb", as_version=4)
    start = time.perf_counter()
    NotebookClient(
        nb, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    print(f"{name}: {time.perf_counter() - start:.1f} s with kernel start")
    tested = set()
    for cell in nb.cells:
        if not is_autograder_test(cell):
            continue
        gid = cell.metadata.nbgrader.grade_id
        messages = answers.payloads(cell)
        assert [m["grade_id"] for m in messages] == [gid]
        verdicts.verify(gid, messages[0]["payload"])  # the grader's own process
        text = "".join(o.get("text", "") for o in cell.outputs)
        assert "✔" in text
        tested.add(gid)
    assert tested == {e.test_id for e in exercises_in(name) if e.autograded}


def test_a_wrong_answer_fails_verification_out_of_the_kernel():
    payload = probe.probe("ex5_1c_test", 10)
    with pytest.raises(AssertionError):
        verdicts.verify("ex5_1c_test", payload)
