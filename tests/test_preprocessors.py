"""Preprocessors tested on their own, outside a grading run."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import nbgrader.api as api
import pytest
from nbgrader import preprocessors as nbgrader_preprocessors
from nbgrader import utils
from nbgrader.nbgraderformat import SchemaTooOldError, ValidationError
from nbgrader.preprocessors import OverwriteCells
from sqlalchemy import event
from sqlalchemy.engine import Engine

from toeplitz_course.course.contract import ASSIGNMENT, NOTEBOOKS
from toeplitz_course.grader.coursedir import db_url
from toeplitz_course.grader.preprocessors import (
    CheckCellMetadata,
    RestoreCells,
    SaveAutoGrades,
    is_autograder_test,
)

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

    from toeplitz_course.grader.config import KERNEL_ARGUMENTS
    from toeplitz_course.grader.preprocessors import HardenedExecute

    starts = tmp_path / "starts"
    # Runs in the kernel during IPKernelApp.initialize, before it answers kernel_info.
    line = (
        f"import os; f = open({str(starts)!r}, 'a'); f.write('x'); f.close(); "
        f"os._exit(3) if len(open({str(starts)!r}).read()) <= {deaths} else None"
    )
    c = Config()
    c.HardenedExecute.kernel_manager_class = "toeplitz_course.grader.warmkernel.WarmKernelManager"
    c.HardenedExecute.extra_arguments = [*KERNEL_ARGUMENTS, f"--IPKernelApp.exec_lines={[line]!r}"]
    c.HardenedExecute.startup_timeout = 30
    c.Sandbox.enabled = False  # the kernel writes to tmp_path, which a sandboxed kernel cannot
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


# -- nbgrader's per-cell gradebook preprocessors, one notebook's rows read at once ----------------


def _tables(url: str) -> dict[str, list[tuple]]:
    """What SaveAutoGrades writes: every grade's scores and every comment's text, by cell."""
    gb = api.Gradebook(url, "toeplitz-convolution")
    try:
        grades = gb.db.query(api.BaseCell.name, api.Grade.auto_score, api.Grade.needs_manual_grade)
        comments = gb.db.query(api.BaseCell.name, api.Comment.auto_comment)
        return {
            "grades": sorted(grades.join(api.Grade, api.Grade.cell_id == api.BaseCell.id)),
            "comments": sorted(comments.join(api.Comment, api.Comment.cell_id == api.BaseCell.id)),
        }
    finally:
        gb.close()


def _counting(kind: str):
    """Counts COMMITs ('commit') or SELECTs ('select') on every engine while the block runs."""
    seen = {"n": 0}

    def on_commit(conn):
        seen["n"] += 1

    def on_statement(conn, cursor, statement, *args):
        seen["n"] += statement.lstrip().upper().startswith("SELECT")

    target, name, fn = (
        (Engine, "commit", on_commit)
        if kind == "commit"
        else (Engine, "before_cursor_execute", on_statement)
    )

    class Block:
        def __enter__(self):
            event.listen(target, name, fn)
            return seen

        def __exit__(self, *exc):
            event.remove(target, name, fn)

    return Block()


def _answered(name: str):
    """The release notebook as autograded: every other test failed, one answer edited."""
    nb = _release(name)
    tests = [c for c in nb.cells if is_autograder_test(c)]
    for i, cell in enumerate(tests):
        if i % 2:
            cell.outputs = [nbformat.v4.new_output("error", ename="E", evalue="x", traceback=[])]
    answers = [c for c in nb.cells if utils.is_solution(c)]
    answers[0].source += "\n# edited"
    return nb


def _resources(course: Path, name: str, student: str = "s1") -> dict:
    return {
        "nbgrader": {
            "notebook": name,
            "assignment": ASSIGNMENT,
            "student": student,
            "db_url": db_url(course),
        }
    }


def _submitted_copies(course: Path, tmp_path: Path) -> tuple[Path, Path]:
    """Two copies of one course directory whose gradebook has student s1's submission rows."""
    with api.Gradebook(db_url(course), "toeplitz-convolution") as gb:
        gb.update_or_create_student("s1")
        gb.add_submission(ASSIGNMENT, "s1")
    other = tmp_path / "other"
    shutil.copytree(course, other)
    return course, other


def test_save_auto_grades_writes_what_nbgrader_writes_in_one_commit(course, tmp_path):
    stock_course, our_course = _submitted_copies(course, tmp_path)
    with _counting("commit") as opening:  # what opening the gradebook commits by itself
        api.Gradebook(db_url(our_course)).close()
    for name in NOTEBOOKS:
        with _counting("commit") as stock_commits:
            nbgrader_preprocessors.SaveAutoGrades().preprocess(
                _answered(name), _resources(stock_course, name)
            )
        with _counting("commit") as our_commits:
            SaveAutoGrades().preprocess(_answered(name), _resources(our_course, name))
        assert our_commits["n"] == opening["n"] + 1, name
        assert stock_commits["n"] > opening["n"] + 2, name
    ours, stock = _tables(db_url(our_course)), _tables(db_url(stock_course))
    assert ours == stock
    # The comparison means something: both outcomes of both kinds of row occur.
    scores = {score for _, score, _ in ours["grades"]}
    assert 0 in scores and any(s and s > 0 for s in scores)
    assert {text for _, text in ours["comments"]} >= {None, "No response."}


def test_save_auto_grades_writes_nothing_of_a_notebook_it_cannot_finish(course):
    with api.Gradebook(db_url(course), "toeplitz-convolution") as gb:
        gb.update_or_create_student("s1")
        gb.add_submission(ASSIGNMENT, "s1")
    before = _tables(db_url(course))
    nb = _answered(NOTEBOOKS[0])
    tests = [c for c in nb.cells if is_autograder_test(c)]
    tests[-1].metadata["nbgrader"]["grade_id"] = "not-in-the-gradebook"
    with pytest.raises(api.MissingEntry):
        SaveAutoGrades().preprocess(nb, _resources(course, NOTEBOOKS[0]))
    assert _tables(db_url(course)) == before


def _tampered(name: str):
    """A submission whose nbgrader cells were edited where OverwriteCells puts them right."""
    nb = _release(name)
    locked = [c for c in nb.cells if utils.is_locked(c) and not utils.is_solution(c)]
    locked[0].source = "# rewritten by the student"
    graded = [c for c in nb.cells if utils.is_grade(c)]
    graded[0].metadata["nbgrader"]["points"] = 100
    unknown = nbformat.v4.new_code_cell("x = 1", id="unknown-cell")
    unknown.metadata["nbgrader"] = {**graded[0].metadata["nbgrader"], "grade_id": "unknown"}
    nb.cells.append(unknown)
    return nb


def test_restore_cells_reads_the_notebook_once_and_restores_like_nbgrader(course):
    with _counting("select") as opening:  # what opening the gradebook selects by itself
        api.Gradebook(db_url(course)).close()
    for name in NOTEBOOKS:
        with _counting("select") as stock_selects:
            stock, _ = OverwriteCells().preprocess(_tampered(name), _resources(course, name))
        with _counting("select") as our_selects:
            ours, _ = RestoreCells().preprocess(_tampered(name), _resources(course, name))
        assert ours == stock, name
        assert ours != _tampered(name), name  # something was put right
        # Source cells, grade cells, task cells, and nbgrader's own lookup of the unknown id
        # (which raises MissingEntry as before).
        assert our_selects["n"] == opening["n"] + 4, name
        assert stock_selects["n"] > opening["n"] + 6, name


def test_the_failure_name_is_the_verdicts_own_without_importing_them():
    import subprocess
    import sys

    from toeplitz_course.grader import preprocessors, verdicts

    assert preprocessors._FAILURE == verdicts.CheckFailure.__name__
    # Feedback imports the preprocessors: neither the verdicts nor torch come with them.
    probe = "import sys, toeplitz_course.grader.preprocessors; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.stdout.strip() == "False", done.stderr[-2000:]


# -- the hidden test's answer stays an output of its cell ----------------------------------------

_ANSWER_THEN = """
from IPython import get_ipython
from IPython.display import clear_output, display
from toeplitz_course.kernel import channel
{before}
channel.emit("ex6_4_test", {{"real": True}})  # the hidden test's answer
print("the check calls the student's function again")
{after}
display({{channel.MIME: {{"grade_id": "ex6_4_test", "payload": {{"forged": True}}}}}}, raw=True)
"""

#: Student code that runs in a test cell (their function, called by the hidden test and the
#: check) and would leave their own answer as the only one: clear the cell's outputs, or open an
#: Output widget that nbclient would capture the cell's later outputs into.
_DIVERSIONS = {
    "clear_output": ("", "clear_output()"),
    "clear_output(wait=True)": ("", "clear_output(wait=True)"),
    "an Output widget": (
        "from comm import create_comm\n"
        "msg_id = get_ipython().kernel.get_parent()['header']['msg_id']\n"
        "create_comm(target_name='jupyter.widget', data={'state': {"
        "'_model_name': 'OutputModel', '_model_module': '@jupyter-widgets/output',"
        " 'msg_id': msg_id}, 'buffer_paths': []})",
        "",
    ),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("diversion", sorted(_DIVERSIONS))
def test_student_code_cannot_clear_or_divert_the_hidden_tests_answer(tmp_path, diversion):
    from traitlets.config import Config

    from toeplitz_course.grader import answers
    from toeplitz_course.grader.config import KERNEL_ARGUMENTS
    from toeplitz_course.grader.preprocessors import HardenedExecute

    before, after = _DIVERSIONS[diversion]
    c = Config()
    c.HardenedExecute.kernel_manager_class = "toeplitz_course.grader.warmkernel.WarmKernelManager"
    c.HardenedExecute.extra_arguments = list(KERNEL_ARGUMENTS)
    c.HardenedExecute.allow_errors = True
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(_ANSWER_THEN.format(before=before, after=after))],
        metadata={"kernelspec": KERNELSPEC},
    )
    nb, _ = HardenedExecute(config=c).preprocess(nb, {"metadata": {"path": str(tmp_path)}})
    cell = nb.cells[0]
    assert not [o for o in cell.outputs if o.output_type == "error"], cell.outputs
    # Both answers are there, the real one first: VerifyAnswers refuses a cell with two.
    assert [p["payload"] for p in answers.payloads(cell)] == [{"real": True}, {"forged": True}]


def _executed(tmp_path, sources: list[str], **traits):
    from traitlets.config import Config

    from toeplitz_course.grader.config import KERNEL_ARGUMENTS
    from toeplitz_course.grader.preprocessors import HardenedExecute

    c = Config()
    c.HardenedExecute.kernel_manager_class = "toeplitz_course.grader.warmkernel.WarmKernelManager"
    c.HardenedExecute.extra_arguments = list(KERNEL_ARGUMENTS)
    c.HardenedExecute.allow_errors = True
    for name, value in traits.items():
        setattr(c.HardenedExecute, name, value)
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(s) for s in sources], metadata={"kernelspec": KERNELSPEC}
    )
    nb, _ = HardenedExecute(config=c).preprocess(nb, {"metadata": {"path": str(tmp_path)}})
    return nb


def _text_size(cell) -> int:
    return sum(len(o.get("text", "")) + len(str(o.get("data", ""))) for o in cell.outputs)


@pytest.mark.timeout(180)
def test_a_notebook_of_many_loud_cells_keeps_a_bounded_output(tmp_path):
    """Each cell's cap alone would let 400 cells keep 400 times it (a reviewer's 185 KB hand-in
    made a 61 MB autograded notebook and a 152 MB feedback page)."""
    nb = _executed(
        tmp_path,
        ["print('<b>x</b>' * 19_000)"] * 12 + ["print('still running')"],
        max_output_bytes=200_000,
        max_notebook_output_bytes=1_000_000,
    )
    per_cell = len("<b>x</b>" * 19_000 + "\n")
    whole = 1_000_000 // per_cell  # cells kept whole before the notebook's budget runs out
    assert [_text_size(c) for c in nb.cells[:whole]] == [per_cell] * whole
    # Every cell after those says once that its output was cut, and keeps nothing else.
    for cell in nb.cells[whole:]:
        assert [o.get("text") for o in cell.outputs] == [
            "\n... output truncated by the grader ...\n"
        ]


@pytest.mark.timeout(180)
def test_a_message_too_large_for_the_grader_is_dropped_before_it_is_read(tmp_path):
    from toeplitz_course.grader.warmkernel import MAX_MESSAGE_BYTES

    nb = _executed(
        tmp_path,
        [f"print('x' * {MAX_MESSAGE_BYTES + 1000})", "import time; time.sleep(1)", "6 * 7"],
        max_output_bytes=10**9,
        max_notebook_output_bytes=10**9,
        iopub_timeout=2,
    )
    assert _text_size(nb.cells[0]) < 10_000
    # With it went the cell's closing status: the cell fails as one that never finished, and the
    # notebook stops there, as after any cell that outlives its limits.
    assert [o.get("ename") for o in nb.cells[0].outputs] == ["CellTimeoutError"]
    assert [c.execution_count for c in nb.cells[1:]] == [None, None]
