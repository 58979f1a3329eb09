"""What the sandbox adds to one notebook: warm kernels with ``c.Sandbox.enabled`` on and off.

    .venv/bin/python benchmarks/sandbox_cost.py [-k 30]

Runs the same small torch notebook K times in a sandboxed warm kernel and K times in an
unconfined one, interleaved (on, off, on, off, ...) so both see the same background load, from
one warm parent, and prints per-notebook wall and CPU time of each, their difference and ratio.
CPU time is that of every process involved: this process (nbclient, the zmq client) and the
warm parent with its reaped children (the kernels, their leaders), as the warm parent reports it.
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
from toeplitz_course.grader import sandbox, warmkernel  # noqa: E402

CELLS = (
    "import torch\nimport numpy as np",
    "x = torch.arange(12.0).view(1, 1, -1)\n"
    "w = torch.tensor([1.0, -2.0, 1.0]).view(1, 1, -1)\n"
    "y = torch.nn.functional.conv1d(x, w)\n"
    "print(y.flatten().tolist())",
    "import os\nprint(os.getpid() == 1)",
)


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    stats = warmkernel.zygote_stats()
    zygote = stats["self_cpu"] + stats["children_cpu"] if stats else 0.0
    return usage.ru_utime + usage.ru_stime + zygote


def run_once(confined: bool, workdir: str) -> tuple[float, float]:
    config = Config()
    config.Sandbox.enabled = confined
    nb = new_notebook(
        cells=[new_code_cell(src) for src in CELLS],
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
    )
    before, started = cpu(), time.perf_counter()
    NotebookClient(
        nb,
        timeout=120,
        config=config,
        kernel_manager_class=warmkernel.WarmKernelManager,
        resources={"metadata": {"path": workdir}},
    ).execute()
    wall = time.perf_counter() - started
    pid_one = nb.cells[-1].outputs[0]["text"].strip()
    assert pid_one == str(confined), f"sandbox {'on' if confined else 'off'}: PID 1 is {pid_one}"
    return wall, cpu() - before


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-k", "--runs", type=int, default=30, help="notebooks each way")
    args = parser.parse_args(argv)
    sandbox.check_support()
    warmkernel.prewarm()
    with tempfile.TemporaryDirectory() as workdir:
        run_once(True, workdir)  # first notebooks pay for nbclient's own imports: not counted
        run_once(False, workdir)
        on, off = [], []
        for _ in range(args.runs):
            on.append(run_once(True, workdir))
            off.append(run_once(False, workdir))
    warmkernel.shutdown_zygotes()
    print(f"{args.runs} notebooks each way, {Path(sys.executable)}")
    means = {}
    for name, samples in (("sandboxed", on), ("unconfined", off)):
        walls, cpus = zip(*samples, strict=True)
        means[name] = statistics.mean(walls), statistics.mean(cpus)
        print(
            f"{name:10s} per notebook: wall {means[name][0] * 1000:6.1f} ms "
            f"(median {statistics.median(walls) * 1000:.1f}), CPU {means[name][1] * 1000:6.1f} ms "
            f"(median {statistics.median(cpus) * 1000:.1f})"
        )
    (w_on, c_on), (w_off, c_off) = means["sandboxed"], means["unconfined"]
    print(
        f"the sandbox adds {(c_on - c_off) * 1000:+.1f} ms CPU and {(w_on - w_off) * 1000:+.1f} ms "
        f"wall per notebook (ratio {c_on / c_off:.3f} CPU, {w_on / w_off:.3f} wall)"
    )


if __name__ == "__main__":
    main()
