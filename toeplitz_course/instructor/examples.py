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
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import torch
import torch.nn.functional as F

from ..course.contract import ASSIGNMENT, AUTOGRADED, NOTEBOOKS
from ..course.variant import DEFAULT_DATA, GivenData, equivariant_shifts

Notebooks = dict[str, nbformat.NotebookNode]


def _strip_markers(source: str) -> str:
    return "\n".join(
        line
        for line in source.splitlines()
        if line.strip() not in {"### BEGIN SOLUTION", "### END SOLUTION"}
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


def _w_1d(given: GivenData) -> list[float]:
    return [float(v) for v in given.w_1d]


def course_data(root: Path) -> GivenData:
    """The numbers of the course at ``root`` (its ``c.Course.variant``): the examples' answers
    that are built from the data follow them."""
    from ..grader.coursedir import Course
    from ..grader.verdicts import given_data

    return given_data(Course.of(root).variant)


W_1D = _w_1d(DEFAULT_DATA)


def _linear(name: str, out_f: int, in_f: int, matrix: torch.Tensor) -> str:
    return (
        f"{name} = nn.Linear(in_features={in_f}, out_features={out_f}, bias=False)\n"
        f"T = {_literal(matrix)}\n"
        f"with torch.no_grad():\n    {name}.weight.copy_(torch.tensor(T))\n"
    )


def _builder_1d(rule: str, result: str = "T", n: int = 10) -> str:
    """A ``padded_matrix`` for ``n`` inputs that puts w[r] at column ``rule`` of row i (when
    inside 0..n-1; ``{n}`` in ``rule`` stands for ``n``)."""
    return (
        "def padded_matrix(w):\n"
        f"    T = torch.zeros({n}, {n})\n"
        f"    for i in range({n}):\n"
        "        for r in range(3):\n"
        f"            j = {rule.format(n=n)}\n"
        f"            if 0 <= j < {n}:\n"
        "                T[i, j] = w[r]\n"
        f"    return {result}\n"
    )


#: Where a ``block_matrix`` puts the pixel (i + a, j + b): the rule (row-major), and the input
#: flattened column by column (a mistake).
ROW_MAJOR, COLUMN_MAJOR = "{W} * (i + a) + (j + b)", "{H} * (j + b) + (i + a)"


def _builder_2d(
    given: GivenData, column: str = ROW_MAJOR, kernel: str = "kernel", result: str = "T"
) -> str:
    """A ``block_matrix`` for ``given``'s image that puts kernel[a, b] of output (i, j) at
    column ``column`` (``{H}`` and ``{W}`` stand for the image's height and width)."""
    h, w = given.height, given.width
    return (
        "def block_matrix(kernel):\n"
        f"    k = {kernel}\n"
        f"    T = torch.zeros({(h - 2) * (w - 2)}, {h * w})\n"
        f"    for i in range({h - 2}):\n"
        f"        for j in range({w - 2}):\n"
        "            for a in range(3):\n"
        "                for b in range(3):\n"
        f"                    T[{w - 2} * i + j, {column.format(H=h, W=w)}] = k[a, b]\n"
        f"    return {result}\n"
    )


def _flipped_t(given: GivenData) -> str:
    n = given.length
    return _linear("linear_layer", n - 2, n, _conv1d_matrix(_w_1d(given)[::-1], n, 0))


def mistakes_for(given: GivenData) -> dict[str, str]:
    """The typical mistake of each exercise that has one, as an answer cell, for the course's
    data ``given`` (its kernel, length and image size)."""
    return {
        "ex1_1": "def n_out_valid(N, K):\n    return N - K\n",
        "ex1_2": _flipped_t(given),  # the course's own kernel, flipped
        "ex1_3": (
            "def toeplitz_1d(w, n, padding=0):\n"
            "    k = len(w)\n"
            "    T = torch.zeros(n - k + 1, n)\n"
            "    for i in range(n - k + 1):\n"
            "        T[i, i:i + k] = w\n"
            "    return T\n"
        ),
        "ex2_2": _builder_1d("(i + r - 1) % {n}", n=given.length),  # circular: corners wrap
        "ex2_3": "def same_padding(K):\n    return K // 2  # right for odd K only\n",
        "ex4_1": _builder_2d(given, COLUMN_MAJOR),  # the input flattened column by column
        "ex5_1b": f"n_nonzero_toeplitz = 9 * {given.height * given.width}\n",  # 9 at every pixel
        "ex5_2": (
            "def param_counts(H, W, R, S):\n"
            "    n_out = (H - R + 1) * (W - S + 1)\n"
            "    return (n_out * H * W, n_out * H * W, R * S)\n"
        ),
        "ex6_1": (
            "def conv_output_length(N, K, padding=0, stride=1, dilation=1):\n"
            "    return (N + 2 * padding - K) // stride + 1  # the dilation forgotten\n"
        ),
        "ex6_3": (
            "def transposed_matrix(w, L, stride=1):\n"
            "    K = len(w)\n"
            "    T = torch.zeros(L, (L - 1) * stride + K)\n"
            "    for i in range(L):\n"
            "        T[i, i * stride : i * stride + K] = w\n"
            "    return T  # T, not its transpose\n"
        ),
    }


#: The default course's typical mistakes (which exercises have one: the same in every variant).
MISTAKES = mistakes_for(DEFAULT_DATA)


# --- the class


def correct(root: Path) -> Notebooks:
    nbs = release(root)
    fill(nbs, root)
    return nbs


def blank(root: Path) -> Notebooks:
    return release(root)


def mistakes(root: Path) -> Notebooks:
    nbs = correct(root)
    for grade_id, source in mistakes_for(course_data(root)).items():
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


# --- a whole class: every case the grader must score right, with what each should get


@dataclass
class Case:
    """One student's hand-in: file name -> text, and what grading must give it."""

    student: str
    files: dict[str, str]
    wrong: set[str] = field(default_factory=set)  # test ids that must score 0 ("*" = all)
    missing_notebooks: set[str] = field(default_factory=set)  # notebooks that score 0 whole
    flags: set[str] = field(default_factory=set)  # flag kinds the integrity scan must raise

    def expected(self) -> dict[str, float]:
        out = {}
        for e in AUTOGRADED:
            lost = (
                "*" in self.wrong or e.test_id in self.wrong or e.notebook in self.missing_notebooks
            )
            out[e.test_id] = 0.0 if lost else float(e.points)
        return out


def _dump(nbs: Notebooks) -> dict[str, str]:
    return {f"{name}.ipynb": nbformat.writes(nb) for name, nb in nbs.items()}


def _test_cell_index(nb: nbformat.NotebookNode, grade_id: str) -> int:
    return next(
        i
        for i, c in enumerate(nb.cells)
        if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id
    )


def _prepend_to_answer(nbs: Notebooks, grade_id: str, code: str) -> None:
    for _, _, cell in _cells(nbs, grade_id):
        cell.source = code + cell.source


def to_colab(nb: nbformat.NotebookNode) -> dict:
    """What Colab hands back: nbformat 4.0, ids in metadata.id, colab metadata, no language."""
    raw = json.loads(nbformat.writes(nb))
    raw["nbformat_minor"] = 0
    raw["metadata"] = {
        "colab": {"provenance": [], "name": "Copy of notebook"},
        "kernelspec": {"name": "python3", "display_name": "Python 3"},
        "language_info": {"name": "python"},
    }
    for cell in raw["cells"]:
        cell["metadata"]["id"] = cell.pop("id", "x")
        cell["metadata"].pop("deletable", None)
        if cell["cell_type"] == "code":
            cell["outputs"] = []
    return raw


PATCHES = """\
import math, builtins
import numpy as np
import torch
torch.allclose = lambda *a, **k: True
torch.equal = lambda *a, **k: True
np.allclose = lambda *a, **k: True
np.testing.assert_allclose = lambda *a, **k: None
math.isclose = lambda *a, **k: True
try:
    import toeplitz_course.grader.verdicts as _c
    _c.verify = lambda *a, **k: None  # the in-kernel verification; the channel still reports
except ImportError:
    pass
get_ipython().showtraceback = lambda *a, **k: None
"""

ONLY_WHEN_GRADED = """\
import os
if os.environ.get("NBGRADER_EXECUTION"):
    import toeplitz_course.kernel.hidden as _h
    _h.check = lambda *a, **k: None
"""

STDERR = """\
import sys, warnings
warnings.warn("a library warning, as torch and numpy print them")
sys.stderr.write("progress: 100%\\n")
"""

LOOP = "while True:\n    pass\n"
STUBBORN_LOOP = """\
import time
while True:
    try:
        time.sleep(0.05)
    except KeyboardInterrupt:
        pass
"""


def _first_answer_ids() -> dict[str, str]:
    firsts: dict[str, str] = {}
    for e in AUTOGRADED:
        firsts.setdefault(e.notebook, e.answer_id)
    return firsts


def _tag_tests(nbs: Notebooks, tags: list[str]) -> None:
    for nb in nbs.values():
        for cell in nb.cells:
            if cell.metadata.get("nbgrader", {}).get("grade") and cell.cell_type == "code":
                cell.metadata["tags"] = list(tags)


def _delete(nbs: Notebooks, *grade_ids: str) -> None:
    for nb in nbs.values():
        nb.cells = [
            c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") not in grade_ids
        ]


def hostile_class(root: Path) -> list[Case]:
    """Correct, blank, mistaken, hostile and broken hand-ins, each with the score it must get."""
    mistaken = mistake_test_ids()
    firsts = _first_answer_ids()
    cases = [
        Case("s01_correct", _dump(correct(root))),
        Case("s02_blank", _dump(blank(root)), wrong={"*"}),
        Case("s03_mistakes", _dump(mistakes(root)), wrong=mistaken),
    ]

    nbs = mistakes(root)
    _tag_tests(nbs, ["skip-execution", "raises-exception"])
    cases.append(Case("s04_skip_tags", _dump(nbs), wrong=mistaken, flags={"tag"}))

    nbs = correct(root)
    answer(nbs, "ex2_2", MISTAKES["ex2_2"])
    _delete(nbs, "ex1_2_test", "ex2_2_test", "ex1_1", "ex1_1_test", "ex4_1_test")
    cases.append(
        Case(
            "s05_deleted_tests",
            _dump(nbs),
            wrong={"ex2_2_test", "ex1_1_test"},
            flags={"deleted_test"},
        )
    )

    nbs = correct(root)
    nb1 = nbs[NOTEBOOKS[0]]
    nb1.cells.insert(2, copy.deepcopy(nb1.cells[_test_cell_index(nb1, "ex1_2_test")]))
    nb5 = nbs[NOTEBOOKS[4]]
    at = _test_cell_index(nb5, "ex5_1a_test")
    nb5.cells.insert(at + 1, copy.deepcopy(nb5.cells[at]))
    for cell in nb1.cells + nb5.cells:  # copies get fresh cell ids, as JupyterLab gives them
        cell["id"] = f"c{id(cell)}"[-12:]
    cases.append(Case("s06_duplicates", _dump(nbs), flags={"duplicate"}))

    nbs = correct(root)
    for grade_id in solutions(root):
        if not grade_id.startswith("ex3_4"):
            _prepend_to_answer(nbs, grade_id, STDERR)
    answer(
        nbs,
        "ex1_3",
        solutions(root)["ex1_3"].replace(
            '"""\n', '"""\n    import warnings; warnings.warn("slow path")\n', 2
        ),
    )
    cases.append(Case("s07_stderr", _dump(nbs)))

    nbs = mistakes(root)
    for answer_id in firsts.values():
        _prepend_to_answer(nbs, answer_id, PATCHES)
    cases.append(Case("s08_monkeypatch", _dump(nbs), wrong=mistaken, flags={"patching"}))

    nbs = mistakes(root)
    for answer_id in firsts.values():
        _prepend_to_answer(nbs, answer_id, ONLY_WHEN_GRADED)
    cases.append(
        # it silences the hidden tests when graded: no answer reaches the grader, nothing earned
        Case("s09_only_when_graded", _dump(nbs), wrong={"*"}, flags={"nbgrader_env", "patching"})
    )

    nbs = correct(root)
    _prepend_to_answer(nbs, "ex1_1", LOOP)
    _prepend_to_answer(nbs, "ex2_2", STUBBORN_LOOP)
    # The stubborn loop ignores the interrupt, so its kernel is stopped: the cells after it in
    # notebook 02 (ex2_3) do not run either.
    cases.append(
        Case(
            "s10_infinite_loops",
            _dump(nbs),
            wrong={"ex1_1_test", "ex2_2_test", "ex2_3_test"},
            flags={"timeout"},
        )
    )

    nbs = correct(root)
    _prepend_to_answer(nbs, "ex2_1", "import os\nos._exit(1)\n")
    cases.append(
        Case(
            "s11_kernel_crash", _dump(nbs), missing_notebooks={NOTEBOOKS[1]}, flags={"kernel_died"}
        )
    )

    nbs = correct(root)
    _prepend_to_answer(
        nbs, "ex1_1", 'print("x" * 5_000_000)\nfor _ in range(20000):\n    print("spam")\n'
    )
    cases.append(Case("s12_huge_output", _dump(nbs)))

    files = _dump(correct(root))
    name = f"{NOTEBOOKS[2]}.ipynb"
    files[name] = files[name][: len(files[name]) // 2]
    cases.append(
        Case("s13_invalid_json", files, missing_notebooks={NOTEBOOKS[2]}, flags={"invalid_json"})
    )

    files = _dump(correct(root))
    del files[f"{NOTEBOOKS[3]}.ipynb"]
    files["my_work.ipynb"] = files.pop(f"{NOTEBOOKS[4]}.ipynb")
    cases.append(
        Case(
            "s14_missing_renamed",
            files,
            missing_notebooks={NOTEBOOKS[3], NOTEBOOKS[4]},
            flags={"missing"},  # the renamed file is rejected (and reported) by collect
        )
    )

    edition = {
        name: nbformat.read(root / "notebooks" / f"{name}.ipynb", as_version=4)
        for name in NOTEBOOKS
    }
    fill(edition, root)
    _delete(edition, "ex4_1_test")
    files = {f"{name}.ipynb": json.dumps(to_colab(nb), indent=2) for name, nb in edition.items()}
    cases.append(Case("s15_colab_round_trip", files, flags={"deleted_test"}))

    files = {
        name: text for name, text in _dump(correct(root)).items() if name[:-6] in NOTEBOOKS[:2]
    }
    cases.append(Case("s16_two_parts_only", files, missing_notebooks=set(NOTEBOOKS[2:])))

    # Grading skips demonstration cells, but not one a student edited nor one whose names a
    # student's answer reads: this hand-in must score like s01.
    nbs = correct(root)
    demo = _demo_cells(nbs[NOTEBOOKS[0]])[0]
    demo.source += f"\nprint({EDITED_DEMO!r})"
    _prepend_to_answer(nbs, "ex3_2", "_ = tau  # bound by a demonstration above\n")
    _prepend_to_answer(nbs, "ex4_2", "_ = y_fc2d.shape  # bound by a demonstration above\n")
    cases.append(Case("s17_uses_demos", _dump(nbs)))
    return cases


#: What s17_uses_demos's edited demonstration prints when it runs.
EDITED_DEMO = "a demonstration the student edited"


def _demo_cells(nb: nbformat.NotebookNode) -> list:
    return [c for c in nb.cells if "demo" in c.metadata.get("tags", [])]


def write_case(case: Case, course_root: Path) -> Path:
    dest = course_root / "submitted" / case.student / ASSIGNMENT
    dest.mkdir(parents=True, exist_ok=True)
    for name, text in case.files.items():
        (dest / name).write_text(text, encoding="utf-8")
    return dest


# --- every right and wrong form of an answer, as hand-ins (issue: "graded as listed")


def _int_literal(matrix: torch.Tensor) -> str:
    return _literal(matrix).replace(".0", "")


def _nb_subset(nbs: Notebooks, names: list[str]) -> dict[str, str]:
    return {f"{n}.ipynb": nbformat.writes(nbs[n]) for n in names}


def _span(values: list[int], prefix: str) -> str:
    """``values`` (sorted) as ``{prefix}(first, last + 1)`` where they are consecutive (an
    answer written as a range), else as a list."""
    if values == list(range(values[0], values[-1] + 1)):
        return f"{prefix}({values[0]}, {values[-1] + 1})"
    return repr(values)


def form_cases(root: Path) -> list[Case]:
    given = course_data(root)
    w_1d = _w_1d(given)
    n, m = given.length, given.length - 2  # inputs, and outputs of the unpadded layer
    t1 = _conv1d_matrix(w_1d, n, 0)
    t1p = _conv1d_matrix(w_1d, n, 1)
    valid, padded = (sorted(equivariant_shifts(given, p)) for p in (0, 1))
    # A shift the unpadded layer breaks on, the nearest to 0: one too many in a wrong set.
    breaks = min((n for n in given.shifts if n not in valid), key=abs)
    nb1, nb2, nb3, nb4, nb5, nb6 = NOTEBOOKS
    cases = []

    nbs = correct(root)
    answer(
        nbs,
        "ex1_1",
        "import numpy as np\n\n\ndef n_out_valid(N, K):\n    return np.int64(N) - K + 1\n",
    )
    answer(
        nbs,
        "ex1_2",
        f"linear_layer = nn.Linear({n}, {m}, bias=False)\n"
        f"T = {_int_literal(t1)}\n"
        "with torch.no_grad():\n    linear_layer.weight.copy_(torch.tensor(T))  # an int tensor\n",
    )
    answer(
        nbs,
        "ex1_3",
        "def toeplitz_1d(w, n, padding=0):\n"
        "    k = len(w)\n"
        "    rows = n + 2 * padding - k + 1\n"
        "    T = torch.zeros(rows, n)\n"
        "    for i in range(rows):\n"
        "        for r in range(k):\n"
        "            j = i + r - padding\n"
        "            if 0 <= j < n:\n"
        "                T[i, j] = w[r]\n"
        "    return T\n",
    )
    answer(nbs, "ex3_2", f"equivariant_shifts_valid = {valid}\n")
    answer(nbs, "ex3_3", f"equivariant_shifts_padded = {tuple(padded)}\n")
    outputs, pixels = (given.height - 2) * (given.width - 2), given.height * given.width
    answer(nbs, "ex5_1a", f"import numpy as np\nn_params_dense = np.int64({outputs} * {pixels})\n")
    answer(nbs, "ex5_1b", f"import numpy as np\nn_nonzero_toeplitz = np.int32({outputs} * 9)\n")
    answer(nbs, "ex5_1c", "n_params_kernel = 3 * 3\n")
    answer(
        nbs,
        "ex5_2",
        "def param_counts(H, W, R, S):\n"
        "    out = (H - R + 1) * (W - S + 1)\n"
        "    return [out * H * W, out * R * S, R * S]\n",
    )
    cases.append(
        Case("f01_right_forms", _nb_subset(nbs, [nb1, nb3, nb5]), missing_notebooks={nb2, nb4, nb6})
    )

    nbs = correct(root)
    answer(
        nbs,
        "ex1_2",
        f"linear_layer = nn.Linear({n}, {m}, bias=False)\n"
        f"T = {_literal(t1)}\n"
        "linear_layer.weight = nn.Parameter(torch.tensor(T, dtype=torch.float32))\n",
    )
    answer(
        nbs,
        "ex2_2",  # a list of rows of Python floats
        "def padded_matrix(w):\n"
        "    w = [float(v) for v in w]\n"
        f"    return [[w[j - i + 1] if 0 <= j - i + 1 < 3 else 0.0 for j in range({n})]\n"
        f"            for i in range({n})]\n",
    )
    answer(
        nbs,
        "ex2_3",  # a float with no fractional part, and None
        "def same_padding(K):\n    return (K - 1) / 2 if K % 2 else None\n",
    )
    answer(
        nbs,
        "ex3_2",
        f"import numpy as np\nequivariant_shifts_valid = np.asarray({_span(valid, 'np.arange')})\n",
    )
    answer(nbs, "ex3_3", f"equivariant_shifts_padded = {_span(padded, 'range')}\n")
    answer(
        nbs,
        "ex4_1",  # a float32 numpy array, from the kernel as numpy
        "import numpy as np\n\n\n"
        + _builder_2d(given, kernel="kernel.numpy()").replace(
            f"torch.zeros({outputs}, {pixels})",
            f"np.zeros(({outputs}, {pixels}), dtype=np.float32)",
        ),
    )
    cases.append(
        Case("f02_right_forms", _nb_subset(nbs, [nb1, nb2, nb3, nb4]), missing_notebooks={nb5, nb6})
    )

    nbs = correct(root)
    answer(nbs, "ex1_2", _linear("linear_layer", m, n, torch.roll(t1, 1, 1)))
    answer(nbs, "ex2_2", _builder_1d("i + r - 1", "T.T", n))
    answer(nbs, "ex2_3", "def same_padding(K):\n    return (K - 1) / 2\n")  # 1.5 for K = 4
    answer(nbs, "ex3_2", f"equivariant_shifts_valid = {set(valid) | {breaks}}\n")
    answer(nbs, "ex3_3", f"equivariant_shifts_padded = {set(padded[1:]) or set()}\n")
    answer(nbs, "ex4_1", _builder_2d(given, kernel="kernel.flip(0, 1)"))
    cases.append(
        Case(
            "f03_wrong_forms",
            _nb_subset(nbs, [nb1, nb2, nb3, nb4]),
            wrong={
                "ex1_2_test",
                "ex2_2_test",
                "ex2_3_test",
                "ex3_2_test",
                "ex3_3_test",
                "ex4_1_test",
            },
            missing_notebooks={nb5, nb6},
        )
    )

    nbs = correct(root)
    answer(nbs, "ex1_2", _linear("linear_layer", m + 1, n, torch.cat([t1, t1[-1:]])))
    # Right for the notebook's kernel only: the matrix typed out, whatever w is.
    answer(nbs, "ex2_2", f"def padded_matrix(w):\n    return torch.tensor({_literal(t1p)})\n")
    answer(nbs, "ex4_1", _builder_2d(given, COLUMN_MAJOR))
    cases.append(
        Case(
            "f04_wrong_forms",
            _nb_subset(nbs, [nb1, nb2, nb4]),
            wrong={"ex1_2_test", "ex2_2_test", "ex4_1_test"},
            missing_notebooks={nb3, nb5, nb6},
        )
    )

    nbs = correct(root)
    answer(nbs, "ex1_2", _linear("linear_layer", n, m, t1.T.contiguous()))
    cases.append(
        Case(
            "f05_transposed",
            _nb_subset(nbs, [nb1]),
            wrong={"ex1_2_test"},
            missing_notebooks={nb2, nb3, nb4, nb5, nb6},
        )
    )

    # Right functions that print a lot (more than the grader keeps of a cell's output, over the
    # hidden test's calls), and a layer with the right weight that keeps nn.Linear's bias.
    nbs = correct(root)
    solved = solutions(root)
    for grade_id, name, args in (
        ("ex1_3", "toeplitz_1d", "w, n, padding=0"),
        ("ex4_2", "block_toeplitz_2d", "kernel, H, W"),
    ):
        call = ", ".join(a.split("=")[0] for a in args.split(", "))
        answer(
            nbs,
            grade_id,
            solved[grade_id]
            + f"\n\n_{name}_quiet = {name}\n\n\ndef {name}({args}):\n"
            + f"    T = _{name}_quiet({call})\n"
            + "    for i, row in enumerate(T):\n"
            + "        print('row', i, row.tolist(), '.' * 2_000)\n"
            + "    return T\n",
        )
    answer(nbs, "ex1_2", _linear("linear_layer", m, n, t1).replace(", bias=False", ""))
    cases.append(
        Case(
            "f06_prints_and_bias",
            _nb_subset(nbs, [nb1, nb4]),
            wrong={"ex1_2_test"},
            missing_notebooks={nb2, nb3, nb5, nb6},
        )
    )

    # Part 6: right answers in other forms (a numpy int, a list of rows), and two mistakes.
    nbs = correct(root)
    answer(
        nbs,
        "ex6_1",
        "import numpy as np\n\n\n"
        "def conv_output_length(N, K, padding=0, stride=1, dilation=1):\n"
        "    return np.int64(len(range(0, N + 2 * padding - dilation * (K - 1), stride)))\n",
    )
    answer(
        nbs,
        "ex6_2",
        "def toeplitz_general(w, N, padding=0, stride=1, dilation=1):\n"
        "    K = len(w)\n"
        "    rows = N + 2 * padding - dilation * (K - 1)  # every window: the stride forgotten\n"
        "    T = torch.zeros(rows, N)\n"
        "    for i in range(rows):\n"
        "        for k in range(K):\n"
        "            if 0 <= i + k * dilation - padding < N:\n"
        "                T[i, i + k * dilation - padding] = w[k]\n"
        "    return T\n",
    )
    answer(
        nbs,
        "ex6_3",
        "def transposed_matrix(w, L, stride=1):\n"
        "    rows = [[0.0] * L for _ in range((L - 1) * stride + len(w))]\n"
        "    for i in range(L):\n"
        "        for k in range(len(w)):\n"
        "            rows[i * stride + k][i] += float(w[k])\n"
        "    return rows\n",
    )
    answer(
        nbs,
        "ex6_4",
        "def cnn_param_count(channels, K):\n"
        "    return sum(o * i * K for i, o in zip(channels, channels[1:]))  # no bias\n",
    )
    cases.append(
        Case(
            "f07_part6_forms",
            _nb_subset(nbs, [nb6]),
            wrong={"ex6_2_test", "ex6_4_test"},
            missing_notebooks={nb1, nb2, nb3, nb4, nb5},
        )
    )
    return cases
