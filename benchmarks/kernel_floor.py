"""The floor of one graded notebook's kernel: what a kernel costs before any answer is judged.

    .venv/bin/python benchmarks/kernel_floor.py [-k 6]

Runs tiny notebooks in grading kernels (``WarmKernelManager`` with the grading kernel's command
line, ``KERNEL_ARGUMENTS``, forked from a warm parent with ``KERNEL_PRELOAD``), K times each, and
prints the median CPU of the kernel (counted by the warm parent, which reaps it) and of this
process (nbclient, the zmq client), and the wall time. The baseline is a one-cell notebook:
start, one ``1``, immediate shutdown. The other cases add what every graded notebook does: the
imports cell (matplotlib's inline backend is loaded in each kernel), torch's convolutions, more
cells, errors; the figures printed against the baseline are the marginal cost of a cell.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook
from traitlets.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from toeplitz_course.grader import warmkernel  # noqa: E402
from toeplitz_course.grader.config import KERNEL_ARGUMENTS, KERNEL_PRELOAD  # noqa: E402

IMPORTS = (
    "import torch, numpy as np, matplotlib.pyplot as plt\n"
    "import torch.nn as nn\n"
    "import torch.nn.functional as F\n"
    "torch.set_grad_enabled(False)\n"
    "x = torch.arange(10.0).view(1, 1, -1)\n"
    "y = nn.Conv1d(1, 1, 3, bias=False)(x)\n"
    "z = F.conv2d(torch.ones(1, 1, 4, 4), torch.ones(1, 1, 2, 2))\n"
    "T = torch.zeros(8, 10)\n"
    "print((T @ x.flatten()).shape)"
)

CASES = {
    "one cell (baseline)": ["1"],
    "imports, convolutions": [IMPORTS],
    "20 cells": ["1"] * 20,
    "10 errors": ["raise NotImplementedError()"] * 10,
}


def _kernels_cpu() -> float:
    stats = warmkernel.zygote_stats(KERNEL_PRELOAD)
    return stats["children_cpu"] if stats else 0.0


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run(cells: list[str], workdir: str, config: Config) -> tuple[float, float, float]:
    """Kernel CPU, this process's CPU, wall seconds for one notebook of ``cells``."""
    nb = new_notebook(
        cells=[new_code_cell(source) for source in cells],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}},
    )
    kernels, own, wall = _kernels_cpu(), _own_cpu(), time.perf_counter()
    NotebookClient(
        nb,
        timeout=60,
        allow_errors=True,
        kernel_manager_class=warmkernel.WarmKernelManager,
        extra_arguments=list(KERNEL_ARGUMENTS),
        shutdown_kernel="immediate",
        resources={"metadata": {"path": workdir}},
        config=config,
    ).execute()
    return _kernels_cpu() - kernels, _own_cpu() - own, time.perf_counter() - wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", "--runs", type=int, default=6, help="notebooks per case")
    args = parser.parse_args()
    config = Config()
    config.WarmProvisioner.preload = list(KERNEL_PRELOAD)
    warmkernel.prewarm(KERNEL_PRELOAD)
    medians = {}
    with tempfile.TemporaryDirectory() as workdir:
        run(["1"], workdir, config)  # nbclient's and the warm parent's first use, not counted
        for name, cells in CASES.items():
            samples = [run(cells, workdir, config) for _ in range(args.runs)]
            medians[name] = [statistics.median(s[i] for s in samples) for i in range(3)]
    warmkernel.shutdown_zygotes()
    base_kernel, base_own, _ = medians["one cell (baseline)"]
    print(f"median of {args.runs} notebooks each; CPU in seconds")
    for name, (kernel, own, wall) in medians.items():
        extra = len(CASES[name]) - 1
        per_cell = (
            f"   per extra cell: kernel {1000 * (kernel - base_kernel) / extra:4.1f} ms,"
            f" client {1000 * (own - base_own) / extra:4.1f} ms"
            if extra
            else ""
        )
        print(
            f"{name:24s} kernel {kernel:.3f}  client {own:.3f}  wall {wall:.3f}"
            f"  ({kernel / base_kernel:4.2f}x baseline kernel){per_cell}"
        )


if __name__ == "__main__":
    main()
