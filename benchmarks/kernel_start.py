"""Per-notebook cost of a fresh kernel: stock ``AsyncKernelManager`` vs ``WarmKernelManager``.

    .venv/bin/python benchmarks/kernel_start.py [-k 20]

Runs the same small torch-importing notebook K times with each manager, interleaved (stock,
warm, stock, warm, ...) so that both see the same background load, and prints per-notebook
wall time and CPU time. CPU time is that of every process involved: this process (nbclient,
the zmq client), the stock kernels (our children, counted in RUSAGE_CHILDREN once reaped), and
for the warm kernels the zygote and its reaped children (reported by the zygote itself). The
zygote's one-time start is reported on its own and as amortised over the K notebooks.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from toeplitz_course.grader import warmkernel  # noqa: E402

CELLS = (
    "import torch\nimport numpy as np",
    "x = torch.arange(12.0).view(1, 1, -1)\n"
    "w = torch.tensor([1.0, -2.0, 1.0]).view(1, 1, -1)\n"
    "y = torch.nn.functional.conv1d(x, w)\n"
    "print(y.flatten().tolist())",
    "T = np.zeros((10, 12))\n"
    "for i in range(10):\n"
    "    T[i, i:i + 3] = [1.0, -2.0, 1.0]\n"
    "print(np.allclose(T @ np.arange(12.0), y.flatten().numpy()))",
)


def notebook():
    return new_notebook(
        cells=[new_code_cell(src) for src in CELLS],
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
    )


def cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def zygote_cpu() -> float:
    stats = warmkernel.zygote_stats()
    return stats["self_cpu"] + stats["children_cpu"] if stats else 0.0


def run_once(manager, workdir: str) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds of all processes, CPU seconds of this process, for one notebook."""
    before = (cpu(resource.RUSAGE_SELF), cpu(resource.RUSAGE_CHILDREN), zygote_cpu())
    started = time.perf_counter()
    nb = NotebookClient(
        notebook(),
        timeout=120,
        kernel_manager_class=manager,
        resources={"metadata": {"path": workdir}},
    ).execute()
    wall = time.perf_counter() - started
    after = (cpu(resource.RUSAGE_SELF), cpu(resource.RUSAGE_CHILDREN), zygote_cpu())
    outputs = [o.get("text", "") for c in nb.cells for o in c.outputs]
    assert outputs[-1].strip() == "True", outputs
    return wall, sum(a - b for a, b in zip(after, before, strict=True)), after[0] - before[0]


def summary(name: str, samples: list[tuple[float, float, float]]) -> tuple[float, float]:
    walls, cpus, ours = zip(*samples, strict=True)
    wall, cpu_ = statistics.mean(walls), statistics.mean(cpus)
    print(
        f"{name:6s} per notebook: wall {wall:6.3f} s (median {statistics.median(walls):.3f}, "
        f"min {min(walls):.3f}, max {max(walls):.3f})   "
        f"CPU {cpu_:6.3f} s (median {statistics.median(cpus):.3f}; "
        f"this process {statistics.mean(ours):.3f}, kernel side {cpu_ - statistics.mean(ours):.3f})"
    )
    return wall, cpu_


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-k", "--runs", type=int, default=20, help="notebooks per manager")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as workdir:
        before = (cpu(resource.RUSAGE_SELF), cpu(resource.RUSAGE_CHILDREN))
        started = time.perf_counter()
        info = warmkernel.prewarm()
        start_wall = time.perf_counter() - started
        # The zygote's imports, as it accounts them, plus our side of starting it.
        start_cpu = zygote_cpu() + sum(
            a - b
            for a, b in zip(
                (cpu(resource.RUSAGE_SELF), cpu(resource.RUSAGE_CHILDREN)), before, strict=True
            )
        )
        print(
            f"zygote pid {info['pid']}: started in {start_wall:.2f} s wall, {start_cpu:.2f} s CPU "
            f"(imports {info['import_seconds']:.2f} s)"
        )
        # One of each first, not counted: the first notebook of a process pays for imports of
        # nbclient's own machinery, whichever manager runs it.
        run_once(AsyncKernelManager, workdir)
        run_once(warmkernel.WarmKernelManager, workdir)

        stock, warm = [], []
        for i in range(args.runs):
            stock.append(run_once(AsyncKernelManager, workdir))
            warm.append(run_once(warmkernel.WarmKernelManager, workdir))
            print(
                f"  run {i + 1:2d}: stock {stock[-1][0]:.3f} s wall {stock[-1][1]:.3f} s CPU | "
                f"warm {warm[-1][0]:.3f} s wall {warm[-1][1]:.3f} s CPU",
                flush=True,
            )
        print(f"\n{args.runs} notebooks each, {Path(sys.executable)}:")
        s_wall, s_cpu = summary("stock", stock)
        w_wall, w_cpu = summary("warm", warm)
        print(f"ratio  stock/warm: wall {s_wall / w_wall:.1f}x, CPU {s_cpu / w_cpu:.1f}x")
        amortised_wall = w_wall + start_wall / args.runs
        amortised_cpu = w_cpu + start_cpu / args.runs
        print(
            f"warm incl. zygote start amortised over {args.runs}: wall {amortised_wall:.3f} s, "
            f"CPU {amortised_cpu:.3f} s (ratio {s_wall / amortised_wall:.1f}x wall, "
            f"{s_cpu / amortised_cpu:.1f}x CPU)"
        )
    warmkernel.shutdown_zygotes()


if __name__ == "__main__":
    main()
