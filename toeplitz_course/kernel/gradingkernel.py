"""The kernel graded notebooks run in: ipykernel's IPythonKernel, minus two per-cell costs.

A graded notebook runs once, unattended. Two things stock ipykernel does on every cell serve
only an interactive user:

* its ``XCachingCompiler`` names each cell's code object after a murmur2 hash of the source,
  computed in pure Python (about 4 ms a cell here), so that a debugger's breakpoints can find the
  cell again. Nobody attaches a debugger to a grading kernel. IPython's own ``CachingCompiler``
  names cells by a counter and registers their source the same way, so tracebacks read the same
  ("Cell In[3], line 2").
* ``IPythonKernel.do_execute`` transforms the cell (IPython's tokenizer-based input
  transformations, pure Python, a few ms a cell) to decide how to run it, then
  ``InteractiveShell.run_cell`` transforms the same source again. ``GradingShell`` hands the
  second call the first call's result: nothing runs between the two.
* IPython decides whether a cell needs a coroutine runner (top-level ``await``) by compiling the
  whole cell once more. Every such cell contains the keyword ``await`` or ``async``, and keywords
  are ASCII: ``GradingShell`` answers "no" without compiling when an ASCII cell has neither.

Enabled with ``--IPKernelApp.kernel_class=toeplitz_course.kernel.gradingkernel.GradingKernel``
among the grading kernels' arguments (``config.KERNEL_ARGUMENTS``). Everything else is ipykernel's.
"""

from __future__ import annotations

from ipykernel.ipkernel import IPythonKernel
from ipykernel.zmqshell import ZMQInteractiveShell
from IPython.core.compilerop import CachingCompiler
from traitlets import Type


class GradingShell(ZMQInteractiveShell):
    """``ZMQInteractiveShell`` that transforms one execute request's source once, not twice, and
    compiles it once less to see that it has no top-level ``await``."""

    _last_transform: tuple[str, str] | None = None

    def transform_cell(self, raw_cell: str) -> str:
        last, self._last_transform = self._last_transform, None
        if last is not None and last[0] == raw_cell:
            # The immediate repeat of the same request (do_execute, then run_cell). Used once:
            # a later request with the same source is transformed afresh, since single-line
            # transformations depend on the namespace, which the cell in between may change.
            return last[1]
        cell = super().transform_cell(raw_cell)
        self._last_transform = (raw_cell, cell)
        return cell

    def should_run_async(
        self, raw_cell: str, *, transformed_cell=None, preprocessing_exc_tuple=None
    ) -> bool:
        cell = transformed_cell
        if cell is not None and cell.isascii() and "await" not in cell and "async" not in cell:
            return False
        return super().should_run_async(
            raw_cell,
            transformed_cell=transformed_cell,
            preprocessing_exc_tuple=preprocessing_exc_tuple,
        )


class GradingKernel(IPythonKernel):
    """``IPythonKernel`` with ``GradingShell`` and IPython's ``CachingCompiler``."""

    shell_class = Type(GradingShell)
    compiler_class = Type(CachingCompiler)
