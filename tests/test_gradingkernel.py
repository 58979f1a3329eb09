"""The grading kernel runs cells as ipykernel's own does, transforming each source once."""

from __future__ import annotations

import json
import sys

import nbformat
import pytest
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

from toeplitz_course.grader.config import KERNEL_ARGUMENTS
from toeplitz_course.grader.warmkernel import WarmKernelManager

pytestmark = pytest.mark.timeout(120)

KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}

# Wraps the shell's static input transformer with a counter of the sources it is given.
COUNT = """\
import collections
ip = get_ipython()
seen = collections.Counter()
inner = ip.input_transformer_manager.transform_cell
def counting(source, inner=inner):
    seen[source] += 1
    return inner(source)
ip.input_transformer_manager.transform_cell = counting
"""


def run(*sources: str, manager=WarmKernelManager) -> nbformat.NotebookNode:
    nb = new_notebook(
        cells=[new_code_cell(src) for src in sources], metadata={"kernelspec": KERNELSPEC}
    )
    NotebookClient(
        nb,
        kernel_manager_class=manager,
        extra_arguments=list(KERNEL_ARGUMENTS),
        allow_errors=True,
        timeout=60,
    ).execute()
    return nb


def stdout(cell) -> str:
    return "".join(o["text"] for o in cell.outputs if o.get("name") == "stdout")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="warm kernels: Linux")
def test_each_request_is_transformed_once_and_a_repeat_afresh():
    nb = run(
        COUNT,
        "x = 1",
        "x = 1",  # the same source in a new request: transformed again, not served stale
        "y = !echo shell-escape",  # a transformation that changes the source
        "print(y, x)",
        "import json; print(json.dumps(seen))",
        # Called directly, one after the other: each source gets its own transformation.
        "print(repr(ip.transform_cell('z = !echo 1')), repr(ip.transform_cell('z = 2')))",
    )
    assert stdout(nb.cells[4]).strip() == "['shell-escape'] 1"
    seen = json.loads(stdout(nb.cells[5]))
    assert seen == {
        "x = 1": 2,
        "y = !echo shell-escape": 1,
        "print(y, x)": 1,
        "import json; print(json.dumps(seen))": 1,
    }
    assert stdout(nb.cells[6]).strip() == (
        "\"z = get_ipython().getoutput('echo 1')\\n\" 'z = 2\\n'"
    )


@pytest.mark.parametrize(
    "manager",
    [
        pytest.param(
            WarmKernelManager,
            marks=pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux"),
        ),
        AsyncKernelManager,  # a normal launch (the warm parent's fallback) takes the same arguments
    ],
)
def test_grading_kernel_reports_errors_by_cell_and_line(manager):
    nb = run(
        "ip = get_ipython()\n"
        "print(type(ip.kernel).__name__, type(ip.compile).__name__, ip.history_manager.enabled)",
        "a = 1\nraise ValueError('on line two')",
        manager=manager,
    )
    assert stdout(nb.cells[0]).split() == ["GradingKernel", "CachingCompiler", "False"]
    (error,) = [o for o in nb.cells[1].outputs if o.output_type == "error"]
    assert error.ename == "ValueError"
    text = "".join(error.traceback)
    assert "In[2]" in text and "line 2" in text and "raise ValueError" in text


# Counts the cells IPython compiles to decide whether they need a coroutine runner.
COUNT_ASYNC_CHECKS = """\
import collections, IPython.core.interactiveshell as shell_module
checked = collections.Counter()
inner_check = shell_module._should_be_async
def counting_check(cell, inner=inner_check):
    checked[cell.strip()] += 1
    return inner(cell)
shell_module._should_be_async = counting_check
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="warm kernels: Linux")
def test_only_cells_that_may_await_are_compiled_to_check_and_await_still_works():
    nb = run(
        COUNT_ASYNC_CHECKS,
        "import asyncio\nx = 1",  # 'async' in 'asyncio': checked, the rule is a substring
        "y = x + 1",
        "await asyncio.sleep(0)\nprint('awaited', x)",
        "async def f():\n    return 2\nprint('defined')",
        "print(await f())",
        "ｘ = 3  # not ASCII: IPython decides",
        "print(dict(checked))",
    )
    assert stdout(nb.cells[3]).strip() == "awaited 1"
    assert stdout(nb.cells[5]).strip() == "2"
    checked = eval(stdout(nb.cells[7]))  # noqa: S307 - a dict printed by our own cell
    assert set(checked) == {
        "import asyncio\nx = 1",
        "await asyncio.sleep(0)\nprint('awaited', x)",
        "async def f():\n    return 2\nprint('defined')",
        "print(await f())",
        "ｘ = 3  # not ASCII: IPython decides",
    }
