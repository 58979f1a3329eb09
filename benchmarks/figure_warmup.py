"""What the warm parent's matplotlib warm-up saves a kernel that draws 03's pictures.

    .venv/bin/python benchmarks/figure_warmup.py [-k 10]

Two warm parents, both forks of this process (``prewarm(fork=True)``, as a grading worker makes
its own): one warmed by the figure ``warmkernel._warm_matplotlib`` draws now (bars, markers, a
legend, ``tight_layout``, the inline backend's tight PNG), one by the figure it drew before
(an image with a colorbar, drawn on the canvas only). The same notebook (03's set-up, solutions
and the two demonstrations that draw above ex3_4, figures drawn by the inline backend) runs in
kernels of each, interleaved, and the kernels' CPU is read from each warm parent (it reaps them).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from toeplitz_course.grader import warmkernel  # noqa: E402

os.environ.update(warmkernel._IMPORT_ENV)
os.environ["MPLBACKEND"] = warmkernel.INLINE_BACKEND

import importlib  # noqa: E402

from toeplitz_course.grader.config import KERNEL_ARGUMENTS, KERNEL_PRELOAD  # noqa: E402

for _module in KERNEL_PRELOAD:
    importlib.import_module(_module)


def _old_warm_matplotlib() -> None:
    """The warm-up before issue 25's figures: one image, drawn on the canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.imshow([[0.0, 1.0], [1.0, 0.0]])
    ax.set_title("warm")
    ax.text(0, 0, "1")
    fig.colorbar(ax.images[0], ax=ax)
    fig.canvas.draw()


def _notebook():
    import nbformat

    from toeplitz_course.grader import demos

    nb = nbformat.read(ROOT / "source" / "toeplitz" / "03_equivariance.ipynb", 4)
    figures = demos.figures_graded_by_hand(nb)
    cells = []
    for cell in nb.cells:
        if cell.cell_type != "code" or (cell.metadata.get("nbgrader") or {}).get("grade"):
            continue
        if demos.DEMO_TAG in cell.metadata.get("tags", []):
            if demos.normalized(cell.source) not in figures:
                continue
        cells.append(nbformat.v4.new_code_cell(cell.source))
    return nbformat.v4.new_notebook(cells=cells, metadata=nb.metadata), len(figures)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", "--runs", type=int, default=10, help="notebooks per warm parent")
    args = parser.parse_args()
    from nbclient import NotebookClient
    from traitlets.config import Config

    new_warm = warmkernel._warm_matplotlib
    parents = {"before": (*KERNEL_PRELOAD, "json"), "now": (*KERNEL_PRELOAD, "base64")}
    warmkernel._warm_matplotlib = _old_warm_matplotlib
    warmkernel.prewarm(parents["before"], fork=True)
    warmkernel._warm_matplotlib = new_warm
    warmkernel.prewarm(parents["now"], fork=True)
    load = os.getloadavg()[0]

    def run(name: str) -> float:
        key = parents[name]
        before = warmkernel.zygote_stats(key)["children_cpu"]
        config = Config()
        config.WarmProvisioner.preload = list(key)
        nb, figures = _notebook()
        NotebookClient(
            nb,
            timeout=120,
            kernel_name="python3",
            kernel_manager_class=warmkernel.WarmKernelManager,
            extra_arguments=list(KERNEL_ARGUMENTS),
            config=config,
            resources={"metadata": {"path": str(ROOT)}},
        ).execute()
        pngs = sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.outputs)
        assert pngs == figures, (pngs, figures)
        return warmkernel.zygote_stats(key)["children_cpu"] - before

    run("before"), run("now")  # this process's first notebook pays nbclient's first use
    cpu: dict[str, list[float]] = {"before": [], "now": []}
    for i in range(args.runs):
        for name in ("before", "now") if i % 2 else ("now", "before"):
            cpu[name].append(run(name))
    print(
        f"{args.runs} notebooks each, kernel CPU (load average {load:.2f} before, "
        f"{os.getloadavg()[0]:.2f} after):"
    )
    for name, values in cpu.items():
        print(
            f"  warm-up {name:6s}: mean {statistics.mean(values):.3f} s, "
            f"median {statistics.median(values):.3f} s"
        )
    saved = statistics.mean(cpu["before"]) - statistics.mean(cpu["now"])
    print(f"saved per drawing kernel: {saved * 1000:+.0f} ms")
    warmkernel.shutdown_zygotes()


if __name__ == "__main__":
    main()
