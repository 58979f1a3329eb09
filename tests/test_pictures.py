"""The picture under a matrix exercise shows a wrong matrix as wrong (issue 23).

The course's inputs have zeros where a mistake hides (``x_1d`` at both ends, ``img_2d`` here and
there), so a wrong corner of Exercise 2.2 gave "mean squared difference: 0.0" with every dot in
its ring. Each picture now also runs the matrix on a random input that is non-zero everywhere and
frames the rows that are not the convolution's. The cells run here as a student runs them: the
notebook's own given cells, then the picture cell, with the answer set to a wrong matrix whose
mistake the course's example cannot see.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import matplotlib
import nbformat
import pytest
import test_checks as tc
import torch
from test_selfcheck import _columns_0_1_wrong, _hidden_by_the_image, _wrong_corners
from torch import nn

ROOT = Path(__file__).resolve().parent.parent

#: exercise -> (notebook, the answer's name, its right matrix, a wrong one the example hides)
PICTURES = {
    "ex1_2": ("01_conv1d_toeplitz", "linear_layer", tc.T_VALID, _columns_0_1_wrong(tc.T_VALID)),
    "ex2_2": ("02_padding", "padded_matrix", tc.T_PAD, _wrong_corners()),
    "ex4_1": ("04_conv2d_block_toeplitz", "block_matrix", tc.T_2D, _hidden_by_the_image(tc.T_2D)),
}


def _grade_id(cell) -> str:
    return cell.metadata.get("nbgrader", {}).get("grade_id", "")


def _run_picture(exercise: str, matrix: torch.Tensor) -> tuple[str, list]:
    """The picture cell's printout and the frames drawn on its matrix, for ``matrix``."""
    import matplotlib.pyplot as plt

    notebook, name, _, _ = PICTURES[exercise]
    nb = nbformat.read(ROOT / "source" / "toeplitz" / f"{notebook}.ipynb", as_version=4)
    answer = next(i for i, c in enumerate(nb.cells) if _grade_id(c) == exercise)
    namespace: dict = {}
    for cell in nb.cells[:answer]:
        # The given set-up cells, as a student runs them (no self-checks, no pictures).
        if cell.cell_type != "code" or "demo" in cell.metadata.get("tags", []):
            continue
        grade_id = _grade_id(cell)
        if grade_id.endswith("_self_checks") or grade_id.startswith("ex"):
            continue
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(cell.source, f"<{notebook} given>", "exec"), namespace)
    if name == "linear_layer":
        layer = nn.Linear(matrix.shape[1], matrix.shape[0], bias=False)
        with torch.no_grad():
            layer.weight.copy_(matrix)
        namespace[name] = layer
    else:  # a builder: the picture calls it on the notebook's kernel
        namespace[name] = lambda kernel: matrix.clone()
    namespace["answered"] = lambda exercise: True
    picture = next(
        c
        for c in nb.cells[answer:]
        if "demo" in c.metadata.get("tags", []) and f'answered("{exercise}")' in c.source
    )
    plt.close("all")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(picture.source, f"<{notebook} picture>", "exec"), namespace)
    frames = [
        round(p.get_y() + 0.5)
        for ax in plt.gcf().axes
        for p in ax.patches
        if isinstance(p, matplotlib.patches.Rectangle) and not p.get_fill()
    ]
    plt.close("all")
    return out.getvalue(), frames


@pytest.fixture(autouse=True)
def _agg():
    backend = matplotlib.get_backend()
    matplotlib.use("Agg")
    yield
    matplotlib.use(backend)


@pytest.mark.parametrize("exercise", sorted(PICTURES))
def test_a_wrong_matrix_the_example_hides_is_framed_in_its_picture(exercise):
    _, _, right, wrong = PICTURES[exercise]
    rows = sorted({int(i) for i in (wrong - right).abs().sum(dim=1).nonzero().flatten()})
    printed, frames = _run_picture(exercise, wrong)
    assert sorted(frames) == rows
    assert f"rows that differ from the convolution on x_check: {rows}" in printed
    if exercise != "ex4_1":
        # The course's own input alone cannot tell: the old picture said 0.0 here.
        assert "mean squared difference on x_1d: 0.0" in printed


@pytest.mark.parametrize("exercise", sorted(PICTURES))
def test_the_right_matrix_frames_nothing(exercise):
    _, _, right, _ = PICTURES[exercise]
    printed, frames = _run_picture(exercise, right)
    assert frames == []
    assert "rows that differ from the convolution on x_check: none" in printed


def test_the_growth_plot_never_runs_the_function_on_a_size_that_cannot_fit():
    """Part 5's picture: a right param_counts that builds the matrix must not be asked for 224."""
    nb = nbformat.read(ROOT / "source" / "toeplitz" / "05_parameter_counts.ipynb", as_version=4)
    picture = next(c for c in nb.cells if 'answered("ex5_2")' in c.source)
    asked = []

    def param_counts(H, W, R, S):  # builds the matrix, as Part 5 shows how
        asked.append(H * W)
        basis = torch.eye(H * W).view(H * W, 1, H, W)
        t = torch.nn.functional.conv2d(basis, torch.ones(1, 1, R, S)).flatten(1).T
        return t.numel(), int((t != 0).sum()), R * S

    namespace = {"answered": lambda e: True, "param_counts": param_counts}
    import matplotlib.pyplot as plt

    namespace["plt"] = plt
    with contextlib.redirect_stdout(io.StringIO()) as out:
        exec(compile(picture.source, "<05 picture>", "exec"), namespace)
    plt.close("all")
    assert asked and max(asked) <= 32 * 32  # a matrix of at most 900 x 1024 floats: 4 MB
    assert "224x224" in out.getvalue()
