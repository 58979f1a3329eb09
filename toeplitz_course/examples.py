"""Example submissions, generated from ``release/`` so they never drift from the course.

Each example is a function of the release notebooks: it fills answer cells with the instructor's
solutions (taken from ``source/``) or with a typical wrong answer, and may then tamper with the
notebook the way real submissions do. ``write_class`` lays a class of them out as
``submitted/{student}/toeplitz/*.ipynb``; ``EXPECTED`` says which autograded cells each one
should lose, which the pipeline tests assert cell by cell.
"""

from __future__ import annotations

import copy
import json
import zipfile
from collections.abc import Callable
from pathlib import Path

import nbformat
import torch
import torch.nn.functional as F

from .contract import ASSIGNMENT, AUTOGRADED, NOTEBOOKS

Notebooks = dict[str, nbformat.NotebookNode]


def _strip_markers(source: str) -> str:
    return "\n".join(
        line for line in source.splitlines() if line.strip() not in {"### BEGIN SOLUTION", "### END SOLUTION"}
    )


def solutions(root: Path) -> dict[str, str]:
    """answer grade_id -> the instructor's answer cell source, markers removed."""
    found = {}
    for name in NOTEBOOKS:
        nb = nbformat.read(root / "source" / ASSIGNMENT / f"{name}.ipynb", as_version=4)
        for cell in nb.cells:
            meta = cell.metadata.get("nbgrader", {})
            if meta.get("solution"):
                found[meta["grade_id"]] = _strip_markers(cell.source)
    return found


def release(root: Path) -> Notebooks:
    return {
        name: nbformat.read(root / "release" / ASSIGNMENT / f"{name}.ipynb", as_version=4)
        for name in NOTEBOOKS
    }


def _cells(nbs: Notebooks, grade_id: str):
    for nb in nbs.values():
        for i, cell in enumerate(nb.cells):
            if cell.metadata.get("nbgrader", {}).get("grade_id") == grade_id:
                yield nb, i, cell


def answer(nbs: Notebooks, grade_id: str, source: str) -> None:
    for _, _, cell in _cells(nbs, grade_id):
        cell.source = source


def fill(nbs: Notebooks, root: Path, only: set[str] | None = None) -> None:
    for grade_id, source in solutions(root).items():
        if only is None or grade_id in only:
            answer(nbs, grade_id, source)


# --- typical wrong answers, built from torch's own convolution so they are exactly "one mistake"


def _literal(matrix: torch.Tensor) -> str:
    rows = ",\n".join("    [" + ", ".join(f"{v:g}" for v in row) + "]" for row in matrix.tolist())
    return "[\n" + rows + ",\n]"


def _conv1d_matrix(w: list[float], n: int, padding: int) -> torch.Tensor:
    eye = torch.eye(n).unsqueeze(1)  # (n, 1, n): one basis vector per batch item
    cols = F.conv1d(eye, torch.tensor(w).view(1, 1, -1), padding=padding)[:, 0, :]
    return cols.T


def _conv2d_matrix(kernel: list[list[float]], h: int, w: int) -> torch.Tensor:
    eye = torch.eye(h * w).view(h * w, 1, h, w)
    out = F.conv2d(eye, torch.tensor(kernel).view(1, 1, *torch.tensor(kernel).shape))
    return out.reshape(h * w, -1).T


W_1D = [1.0, 1.0, -2.0]
KERNEL_2D = [[2.0, 1.0, -2.0], [-3.0, -1.0, 1.0], [1.0, 1.0, -1.0]]


def _linear(name: str, out_f: int, in_f: int, matrix: torch.Tensor) -> str:
    return (
        f"{name} = nn.Linear(in_features={in_f}, out_features={out_f}, bias=False)\n"
        f"T = {_literal(matrix)}\n"
        f"with torch.no_grad():\n    {name}.weight.copy_(torch.tensor(T))\n"
    )


def _column_major_2d() -> torch.Tensor:
    t = _conv2d_matrix(KERNEL_2D, 4, 5)  # rows: outputs row-major; cols: inputs row-major
    perm = [r * 5 + c for c in range(5) for r in range(4)]  # column-major input order
    return t[:, perm]


MISTAKES: dict[str, str] = {
    "ex1_1": "n_out_valid = 10 - 3\n",
    "ex1_2": _linear("linear_layer", 8, 10, _conv1d_matrix(W_1D[::-1], 10, 0)),
    "ex1_3": (
        "def toeplitz_1d(w, n, padding=0):\n"
        "    k = len(w)\n"
        "    T = torch.zeros(n - k + 1, n)\n"
        "    for i in range(n - k + 1):\n"
        "        T[i, i:i + k] = w\n"
        "    return T\n"
    ),
    "ex2_2": _linear("linear_layer_pad", 10, 10, torch.roll(_conv1d_matrix(W_1D, 10, 1), 1, 1)),
    "ex4_1": _linear("fc2d", 6, 20, _column_major_2d()),
    "ex5_1b": "n_nonzero_toeplitz = 9 * 20\n",
    "ex5_2": (
        "def param_counts(H, W, R, S):\n"
        "    n_out = (H - R + 1) * (W - S + 1)\n"
        "    return (n_out * H * W, n_out * H * W, R * S)\n"
    ),
}


# --- the class


def correct(root: Path) -> Notebooks:
    nbs = release(root)
    fill(nbs, root)
    return nbs


def blank(root: Path) -> Notebooks:
    return release(root)


def mistakes(root: Path) -> Notebooks:
    nbs = correct(root)
    for grade_id, source in MISTAKES.items():
        answer(nbs, grade_id, source)
    return nbs


def mistake_test_ids() -> set[str]:
    return {f"{gid}_test" for gid in MISTAKES}


EXAMPLES: dict[str, Callable[[Path], Notebooks]] = {
    "example_correct": correct,
    "example_blank": blank,
    "example_mistakes": mistakes,
}


def expected_scores(kind: str) -> dict[str, float]:
    """test grade_id -> the score an example should get (the manual ex3_4 is not included)."""
    if kind == "example_blank":
        return {e.test_id: 0.0 for e in AUTOGRADED}
    wrong = mistake_test_ids() if kind == "example_mistakes" else set()
    return {e.test_id: 0.0 if e.test_id in wrong else float(e.points) for e in AUTOGRADED}


def write(nbs: Notebooks, course_root: Path, student: str) -> Path:
    dest = course_root / "submitted" / student / ASSIGNMENT
    dest.mkdir(parents=True, exist_ok=True)
    for name, nb in nbs.items():
        nbformat.write(nb, dest / f"{name}.ipynb")
    return dest


def write_examples(root: Path, course_root: Path | None = None) -> list[str]:
    """The three bundled examples under ``submitted/`` of ``course_root`` (default: ``root``)."""
    course_root = course_root or root
    for student, make in EXAMPLES.items():
        write(make(root), course_root, student)
    return list(EXAMPLES)


def lms_zip(root: Path, path: Path) -> Path:
    """The bundled examples as an LMS would hand them out: one zip, Canvas-style file names."""
    with zipfile.ZipFile(path, "w") as zf:
        for number, (student, make) in enumerate(EXAMPLES.items(), start=1):
            login = student.replace("_", "")
            for name, nb in make(root).items():
                arcname = f"{login}_{1000 + number}_{2000 + number}_{name}.ipynb"
                zf.writestr(arcname, json.dumps(copy.deepcopy(nb), indent=1))
    return path
