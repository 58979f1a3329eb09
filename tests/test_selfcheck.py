"""The notebooks' visible checks agree with the grader, answer for answer.

Each student notebook's generated self-checks cell (``grader.visible``) is run as a student runs
it, from the Colab edition in ``notebooks/``, without the project: it must say ✔ exactly when the
grader (probe + ``verdicts.verify`` over every hidden case) gives the points, for every right and
wrong form of ``test_checks.py`` and of ``test_grading.py``'s form students, and name the same
mistake. For a function exercise the visible check sees only a few cases, so there the rule is
one way: every answer the grader accepts passes, and every wrong form the course knows fails.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
import test_checks as tc
import test_part6
import torch
import torch.nn.functional as F
from torch import nn

from toeplitz_course.course import contract
from toeplitz_course.grader import verdicts, visible
from toeplitz_course.instructor import examples
from toeplitz_course.kernel import probe

ROOT = Path(__file__).resolve().parent.parent
BY_ID = {e.test_id: e for e in contract.AUTOGRADED}
FUNCTIONS = set(visible.VISIBLE_CASES)


def _cell_source(notebook: str) -> str:
    nb = nbformat.read(ROOT / "notebooks" / f"{notebook}.ipynb", as_version=4)
    wanted = visible.grade_id(notebook)
    (cell,) = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == wanted]
    return cell.source


_CHECKS: dict[str, dict] = {}


def _checks(notebook: str) -> dict:
    """The namespace of a fresh run of the notebook's self-checks cell (as a student runs it)."""
    if notebook not in _CHECKS:
        namespace: dict = {}
        exec(compile(_cell_source(notebook), f"<{notebook} self-checks>", "exec"), namespace)
        _CHECKS[notebook] = namespace
    return _CHECKS[notebook]


def visible_verdict(grade_id: str, answer) -> str | None:
    """None when the notebook's visible check says ✔, else its message."""
    exercise = BY_ID[grade_id]
    namespace = _checks(exercise.notebook)
    try:
        namespace["self_check"](grade_id.removesuffix("_test"), {exercise.name: answer})
    except AssertionError as e:
        return str(e)
    return None


def grader_verdict(grade_id: str, answer) -> str | None:
    try:
        verdicts.verify(grade_id, probe.probe(grade_id, answer))
    except verdicts.CheckFailure as e:
        return str(e)
    return None


# -- the forms -------------------------------------------------------------------------------


def _right_forms():
    for grade_id in sorted(tc.MATRICES):
        for form, make in sorted(tc.MATRIX_FORMS.items()):
            if grade_id in tc.BUILT and form in tc.WHOLE_FORMS:
                continue
            yield grade_id, f"{form}", lambda g=grade_id, make=make: tc.as_answer(g, make)
    for grade_id, length in sorted(tc.LENGTHS.items()):
        for form in (int, np.int64, float, torch.tensor):
            yield grade_id, form.__name__, lambda f=form, n=length: lambda *a: f(n(*a))
    yield "ex2_3_test", "int_or_none", lambda: tc.torch_same_padding
    for grade_id, padding in sorted(tc.SHIFT_IDS.items()):
        for form in tc._set_forms(tc.expected_shifts(padding)):
            # Built afresh for each use: a generator form is used up by one check.
            yield grade_id, form, lambda p=padding, f=form: tc._set_forms(tc.expected_shifts(p))[f]
    for grade_id, value in sorted(tc.COUNTS.items()):
        for i, form in enumerate(tc._count_forms(value)):
            yield grade_id, f"count{i}", lambda form=form: form
    yield "ex1_3_test", "loops", lambda: tc.loops_toeplitz_1d
    yield "ex1_3_test", "identity", lambda: tc.identity_toeplitz_1d
    yield "ex4_2_test", "loops", lambda: tc.loops_block_toeplitz_2d
    yield "ex4_2_test", "identity", lambda: tc.identity_block_toeplitz_2d
    for name in ("gap_item", "gap_tensor", "gap_numpy"):
        yield "ex3_1_test", name, lambda name=name: getattr(tc, name)
    yield "ex5_2_test", "tuple", lambda: tc.counts_tuple
    for grade_id, fns in sorted(test_part6.RIGHT.items()):
        for i, fn in enumerate(fns):
            yield grade_id, f"fn{i}", lambda fn=fn: fn


def _wrong_forms():
    for i, (grade_id, answer, diagnosis) in enumerate(tc.WRONG_MATRICES + tc.WRONG_BUILDERS):
        yield grade_id, f"matrix{i}", (lambda a=answer: a), diagnosis
    for i, (grade_id, answer, diagnosis) in enumerate(tc.WRONG_LENGTHS):
        yield grade_id, f"length{i}", (lambda a=answer: a), diagnosis
    for i, (answer, diagnosis) in enumerate(tc.WRONG_SAME):
        yield "ex2_3_test", f"same{i}", (lambda a=answer: a), diagnosis
    for i, (grade_id, answer, diagnosis) in enumerate(tc.WRONG_SETS):
        yield grade_id, f"set{i}", (lambda a=answer: a), diagnosis
    for i, (grade_id, answer, diagnosis) in enumerate(tc.WRONG_COUNTS):
        yield grade_id, f"count{i}", (lambda a=answer: a), diagnosis
    for grade_id, wrong in (
        ("ex1_3_test", tc.WRONG_1D),
        ("ex3_1_test", tc.WRONG_GAP),
        ("ex4_2_test", tc.WRONG_2D),
        ("ex5_2_test", tc.WRONG_COUNTS_FN),
    ):
        for i, (fn, diagnosis) in enumerate(wrong):
            yield grade_id, f"fn{i}", (lambda fn=fn: fn), diagnosis
    for grade_id, wrong in sorted(test_part6.WRONG.items()):
        for i, (fn, diagnosis) in enumerate(wrong):
            yield grade_id, f"fn{i}", (lambda fn=fn: fn), diagnosis


def _form_student_answers():
    """Every answer of test_grading's form students, as the value their answer cell defines."""
    by_answer = {e.answer_id: e for e in contract.AUTOGRADED}
    out = []
    for case in examples.form_cases(ROOT):
        for text in case.files.values():
            nb = nbformat.reads(text, as_version=4)
            for cell in nb.cells:
                answer_id = cell.metadata.get("nbgrader", {}).get("grade_id")
                exercise = by_answer.get(answer_id)
                if exercise is None or "BEGIN SOLUTION" in cell.source:
                    continue  # the instructor's own solution: covered by the right forms
                out.append((exercise.test_id, f"{case.student}-{answer_id}", cell.source))
    return out


def _run_answer_cell(source: str, name: str):
    namespace = {"torch": torch, "nn": nn, "F": F, "np": np}
    exec(compile(source, "<answer cell>", "exec"), namespace)
    return namespace[name]


RIGHT = list(_right_forms())
WRONG = list(_wrong_forms())
FORM_STUDENTS = _form_student_answers()


def test_every_exercise_has_right_and_wrong_forms():
    ids = {e.test_id for e in contract.AUTOGRADED}
    assert {g for g, *_ in RIGHT} == ids
    assert {g for g, *_ in WRONG} == ids
    assert len(FORM_STUDENTS) >= 15


@pytest.mark.parametrize(("grade_id", "form", "make"), RIGHT, ids=[f"{g}-{f}" for g, f, _ in RIGHT])
def test_right_forms_pass_both(grade_id, form, make):
    assert grader_verdict(grade_id, make()) is None
    assert visible_verdict(grade_id, make()) is None


@pytest.mark.parametrize(
    ("grade_id", "form", "make", "diagnosis"), WRONG, ids=[f"{g}-{f}" for g, f, *_ in WRONG]
)
def test_wrong_forms_fail_both_and_name_the_mistake(grade_id, form, make, diagnosis):
    graded = grader_verdict(grade_id, make())
    shown = visible_verdict(grade_id, make())
    assert graded is not None, "the unit tests call this form wrong"
    assert shown is not None, f"✔ shown for an answer the grader zeroes ({graded})"
    assert shown.startswith(f"✘ {grade_id.removesuffix('_test')}: ")
    if grade_id not in FUNCTIONS:
        assert shown.split(": ", 1)[1] == graded  # the very message the grader gives
        assert diagnosis in shown
    elif not _names_a_hidden_case(grade_id, diagnosis):
        # The same diagnosis, found on the first visible case that shows it.
        assert diagnosis in shown, (shown, graded)


def _names_a_hidden_case(grade_id: str, diagnosis: str) -> bool:
    calls = [c.call() for c in visible_cases(grade_id)]
    return "(" in diagnosis and "=" in diagnosis and not any(diagnosis in c for c in calls)


def visible_cases(grade_id: str):
    return [tc.cases.CASES[grade_id][i] for i in visible.VISIBLE_CASES[grade_id]]


@pytest.mark.parametrize(
    ("grade_id", "label", "source"), FORM_STUDENTS, ids=[label for _, label, _ in FORM_STUDENTS]
)
def test_form_students_get_the_graders_verdict(grade_id, label, source):
    exercise = BY_ID[grade_id]
    graded = grader_verdict(grade_id, _run_answer_cell(source, exercise.name))
    shown = visible_verdict(grade_id, _run_answer_cell(source, exercise.name))
    assert (graded is None) == (shown is None), (graded, shown)
    if graded is not None and grade_id not in FUNCTIONS:
        assert shown.split(": ", 1)[1] == graded


# -- the mistakes the issue lists, each named ------------------------------------------------

X = torch.tensor(tc.reference.X_1D, dtype=torch.float64)


def _unshifted(m: torch.Tensor) -> torch.Tensor:
    out = m.clone()
    out[:] = m[0] if m[0].count_nonzero() == 3 else m[1]
    return out


def _circular(padding: int, w=tc.W) -> torch.Tensor:
    m = torch.zeros(10 + 2 * padding - 2, 10)
    for i in range(m.shape[0]):
        for r, v in enumerate(w.tolist()):
            m[i, (i + r - padding) % 10] += v
    return m


def _wrong_corners(w=tc.W) -> torch.Tensor:
    m = tc.torch_matrix_1d(w, 10, 1).float()
    m[0, :2] = w[:2]  # kept w0, w1 where the window sees w1, w2
    m[-1, -2:] = w[1:]  # and w1, w2 where it sees w0, w1
    return m


def _last_weight_dropped(m: torch.Tensor) -> torch.Tensor:
    out = m.clone()
    out[out == -2] = 0
    return out


def _columns_0_1_wrong(m: torch.Tensor) -> torch.Tensor:
    out = m.clone()
    out[:, 0] += 3
    out[:, 1] -= 1
    return out


ISSUE_MISTAKES = [
    ("ex1_2_test", lambda: _unshifted(tc.T_VALID), "every row is the same"),
    ("ex2_2_test", lambda: tc.builder("ex2_2_test", _wrong_corners), "wrong end of the kernel"),
    ("ex2_2_test", lambda: tc.builder("ex2_2_test", lambda w: _circular(1, w)), "circular padding"),
    ("ex1_2_test", lambda: _last_weight_dropped(tc.T_VALID), "row 0 (output y[0])"),
    ("ex1_2_test", lambda: _columns_0_1_wrong(tc.T_VALID), "right output for the notebook's x_1d"),
    ("ex1_2_test", lambda: tc._shift_cols(tc.T_VALID, 1), "one column too far to the right"),
    ("ex1_2_test", lambda: tc.T_VALID.T, "transposed"),
    ("ex1_2_test", lambda: tc.torch_matrix_1d(tc.W.flip(0), 10), "flipped kernel"),
    (
        "ex4_1_test",
        lambda: tc.builder(
            "ex4_1_test", lambda k: tc._column_major_2d(tc.BUILT["ex4_1_test"](k), 4, 5)
        ),
        "column-major",
    ),
    ("ex2_2_test", lambda: lambda w: tc.T_PAD, "the matrix of the notebook's kernel"),
    ("ex1_1_test", lambda: lambda N, K: 8, "returns 8 whatever its arguments"),
    ("ex2_1_test", lambda: lambda N, K, P: N - K + P + 1, "counts the padding once"),
    ("ex4_2_test", lambda: lambda k, H, W: tc.loops_block_toeplitz_2d(k, W, H), "H and W swapped"),
    ("ex3_2_test", lambda: tc.expected_shifts(0) | {-1}, "one shift too many"),
    ("ex3_3_test", lambda: tc.expected_shifts(1) - {0}, "missing a shift"),
    ("ex5_1c_test", lambda: tc.COUNTS["ex5_1a_test"], "the dense layer's count"),
    ("ex5_2_test", lambda: lambda *a: tuple(reversed(tc.counts_tuple(*a))), "wrong order"),
    ("ex1_2_test", lambda: None, "not answered yet"),
    ("ex1_3_test", lambda: tc._not_implemented, "not answered yet"),
    # issue 21's messages: as precise as the mistake
    ("ex1_2_test", lambda: _columns_0_1_wrong(tc.T_VALID), "; row 0 (output y[0])"),
    ("ex5_1b_test", lambda: (1 - 0.55) * 120, "53.99999999999999 is not a whole number (a float"),
    ("ex5_1a_test", lambda: tc.COUNTS["ex5_1a_test"] + 6, "adds a bias per output"),
]


def _hidden_by_the_image(m: torch.Tensor) -> torch.Tensor:
    """One entry wrong in a column where the notebook's image is zero: its output cannot tell."""
    from toeplitz_course.kernel.data import IMG_2D

    flat = [v for row in IMG_2D for v in row]
    column = flat.index(0)
    wrong = m.clone()
    wrong[0, column] += 1.0
    return wrong


@pytest.mark.parametrize(
    ("grade_id", "make", "diagnosis"), ISSUE_MISTAKES, ids=range(len(ISSUE_MISTAKES))
)
def test_each_listed_mistake_is_named_where_the_student_sees_it(grade_id, make, diagnosis):
    graded = grader_verdict(grade_id, make())
    shown = visible_verdict(grade_id, make())
    assert graded is not None and diagnosis in graded
    assert shown is not None and diagnosis in shown
    if grade_id in ("ex1_2_test", "ex2_2_test"):
        # No row of the answer printed (a builder's message names the kernel it was called on).
        shown = shown.replace("padded_matrix([1, 1, -2])", "")
        assert "1, -2" not in shown and "-2." not in shown


def test_a_wrong_matrix_on_x_alone_is_not_right():
    # The issue's point: x_1d cannot see columns 0, 1 and 9, so it must not decide.
    wrong = _columns_0_1_wrong(tc.T_VALID)
    assert torch.allclose(wrong @ X, tc.T_VALID @ X)
    assert visible_verdict("ex1_2_test", wrong) is not None


def test_an_undefined_answer_reads_not_answered_yet():
    namespace = _checks("01_conv1d_toeplitz")
    with pytest.raises(AssertionError, match="not answered yet: linear_layer is not defined"):
        namespace["self_check"]("ex1_2", {})
    assert namespace["answered"]("ex1_2", {}) is False
    assert namespace["answered"]("ex1_3", {"toeplitz_1d": tc._not_implemented}) is False
    assert namespace["answered"]("ex1_3", {"toeplitz_1d": tc.loops_toeplitz_1d}) is True


# -- what the cell is and is not ---------------------------------------------------------------


@pytest.mark.parametrize("notebook", contract.NOTEBOOKS)
def test_the_cell_runs_without_the_project_or_nbgrader(notebook, tmp_path):
    """In a fresh interpreter where importing toeplitz_course or nbgrader fails."""
    script = tmp_path / "run.py"
    script.write_text(
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('toeplitz_course', 'nbgrader'):\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "namespace = {}\n"
        f"exec(open({str(tmp_path / 'cell.py')!r}).read(), namespace)\n"
        "print(sorted(k for k in namespace if not k.startswith('_')))\n"
        "print(sorted(m for m in sys.modules if m.startswith(('toeplitz', 'nbgrader'))))\n"
    )
    (tmp_path / "cell.py").write_text(_cell_source(notebook))
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    names, modules = proc.stdout.strip().splitlines()
    assert names == "['answered', 'self_check']"
    assert "toeplitz_course" not in modules and "nbgrader" not in modules


@pytest.mark.parametrize("notebook", contract.NOTEBOOKS)
def test_the_cell_holds_no_answer_in_the_clear(notebook):
    text = _cell_source(notebook)
    for exercise in contract.exercises_in(notebook):
        if exercise.autograded and exercise.test_id not in FUNCTIONS:
            table = verdicts.table(exercise.test_id)
            assert table["kind"] in {"count", "shifts", "matrix"}
    # The challenge answers are not in it: no reference builder, no torch convolution.
    for word in ("conv1d(", "conv2d(", "def toeplitz_1d", "def block_toeplitz_2d", "reference."):
        assert word not in text, word
    # The course's matrices are not written out: e.g. the row [1, 1, -2, 0, ...] of T.
    assert "1.0, 1.0, -2.0, 0.0" not in text and "[1, 1, -2, 0" not in text


# -- answers right on the course's example but not on a degenerate input (issue 21) -------------

DEGENERATE = {
    # conv1d on unit vectors, squeezed: 1-D when there is one output row (or one input)
    "ex1_3_test": """
def toeplitz_1d(w, N, padding=0):
    w = torch.as_tensor(w, dtype=torch.float32)
    conv = nn.Conv1d(1, 1, len(w), padding=padding, bias=False)
    with torch.no_grad():
        conv.weight.copy_(w.view(1, 1, -1))
        return conv(torch.eye(N).unsqueeze(1)).squeeze().T
""",
    # the kernel squeezed to "get rid of the channel dimensions": breaks for 1 x S and R x 1
    "ex4_2_test": """
def block_toeplitz_2d(kernel, H, W):
    k = torch.as_tensor(kernel, dtype=torch.float32).squeeze()
    R, S = k.shape
    basis = torch.eye(H * W).view(H * W, 1, H, W)
    return F.conv2d(basis, k.view(1, 1, R, S)).flatten(1).T
""",
    # a hand-written shift, empty at n = 0 (v[:, :-0] is v[:, :0])
    "ex3_1_test": """
def equivariance_gap(f, x, n):
    def shift(v):
        if n >= 0:
            return torch.cat([torch.zeros(1, n), v[:, :-n]], dim=1)
        return torch.cat([v[:, -n:], torch.zeros(1, -n)], dim=1)

    return float((f(shift(x)) - shift(f(x))).abs().max())
""",
    # squeezed "to tidy up": 1-D when there is one output row
    "ex6_2_test": """
def toeplitz_general(w, N, padding=0, stride=1, dilation=1):
    K = len(w)
    rows = (N + 2 * padding - dilation * (K - 1) - 1) // stride + 1
    T = torch.zeros(rows, N)
    for i in range(rows):
        for k in range(K):
            if 0 <= i * stride + k * dilation - padding < N:
                T[i, i * stride + k * dilation - padding] = w[k]
    return T.squeeze()
""",
    # rows stacked and squeezed: 1-D when the transposed convolution has one input
    "ex6_3_test": """
def transposed_matrix(w, L, stride=1):
    K = len(w)
    N = (L - 1) * stride + K
    rows = [
        torch.cat([torch.zeros(i * stride), w, torch.zeros(N - i * stride - K)]) for i in range(L)
    ]
    return torch.stack(rows).squeeze().T
""",
}
NAMES = {
    "ex1_3_test": "toeplitz_1d",
    "ex4_2_test": "block_toeplitz_2d",
    "ex3_1_test": "equivariance_gap",
    "ex6_2_test": "toeplitz_general",
    "ex6_3_test": "transposed_matrix",
}


@pytest.mark.parametrize("grade_id", sorted(DEGENERATE))
def test_an_answer_wrong_only_on_a_degenerate_input_fails_both(grade_id):
    answer = _run_answer_cell(DEGENERATE[grade_id], NAMES[grade_id])
    graders = grader_verdict(grade_id, answer)
    assert graders is not None
    # Right on the course's own example: only the degenerate kinds catch it.
    example = visible.VISIBLE_CASES[grade_id][:1]
    assert grader_verdict_on(grade_id, answer, example) is None
    assert visible_verdict(grade_id, answer) is not None


#: Wrong answers on which every visible case agreed with the right one until the kinds that tell
#: them apart were shown (a reviewer's, 2026-12-08): the check said ✔, the grader 0.
_ROWS_LOOP = """
    T = torch.zeros(rows, N)
    for i in range(rows):
        for k in range(K):
            j = i * stride + k * dilation - padding
            if 0 <= j < N:
                T[i, j] = w[k]
    return T
"""
AGREED_ON_THE_VISIBLE_CASES = {
    "rounds instead of the floor": (
        "ex6_1_test",
        "conv_output_length",
        "def conv_output_length(N, K, padding=0, stride=1, dilation=1):\n"
        "    return round((N + 2 * padding - dilation * (K - 1) - 1) / stride) + 1\n",
    ),
    "the dilated span as K + dilation": (
        "ex6_1_test",
        "conv_output_length",
        "def conv_output_length(N, K, padding=0, stride=1, dilation=1):\n"
        "    span = K + dilation if dilation > 1 else K\n"
        "    return (N + 2 * padding - span) // stride + 1\n",
    ),
    "the dilated span as K * dilation - 1": (
        "ex6_1_test",
        "conv_output_length",
        "def conv_output_length(N, K, padding=0, stride=1, dilation=1):\n"
        "    span = K * dilation - 1 if dilation > 1 else K\n"
        "    return (N + 2 * padding - span) // stride + 1\n",
    ),
    "rows as window positions // stride": (
        "ex6_2_test",
        "toeplitz_general",
        "def toeplitz_general(w, N, padding=0, stride=1, dilation=1):\n"
        "    K = len(w)\n"
        "    rows = (N + 2 * padding - dilation * (K - 1)) // stride\n" + _ROWS_LOOP,
    ),
    "rows from the span K * dilation - 1": (
        "ex6_2_test",
        "toeplitz_general",
        "def toeplitz_general(w, N, padding=0, stride=1, dilation=1):\n"
        "    K = len(w)\n"
        "    span = K if dilation == 1 else K * dilation - 1\n"
        "    rows = (N + 2 * padding - span) // stride + 1\n" + _ROWS_LOOP,
    ),
}


@pytest.mark.parametrize("mistake", sorted(AGREED_ON_THE_VISIBLE_CASES))
def test_a_mistake_the_visible_cases_once_missed_fails_both(mistake):
    grade_id, name, source = AGREED_ON_THE_VISIBLE_CASES[mistake]
    answer = _run_answer_cell(source, name)
    assert grader_verdict(grade_id, answer) is not None
    assert visible_verdict(grade_id, answer) is not None


def grader_verdict_on(grade_id: str, answer, picks) -> str | None:
    from toeplitz_course.kernel import cases as hidden_cases

    chosen = [hidden_cases.CASES[grade_id][i] for i in picks]
    table = verdicts.table(grade_id, chosen)
    from toeplitz_course.kernel import selfcheck

    try:
        selfcheck.judge(table, probe.probe(grade_id, answer, chosen))
    except selfcheck.CheckFailure as e:
        return str(e)
    return None


def test_every_kind_of_input_the_grader_tries_is_shown():
    from toeplitz_course.kernel import cases as hidden_cases

    for grade_id, picks in visible.VISIBLE_CASES.items():
        every = hidden_cases.CASES[grade_id]
        tried = set().union(*(visible.kinds(c) for c in every))
        shown = set().union(*(visible.kinds(every[i]) for i in picks))
        assert tried == shown, grade_id
        if isinstance(every[0], hidden_cases.CaseSame):
            assert len(tried) == 3  # one weight, odd, even
            continue
        if isinstance(every[0], hidden_cases.CaseKernel):
            assert tried == set()  # one kind: another kernel of the same size
            continue
        # The kinds really tell the cases apart.
        assert len(tried) >= (3 if isinstance(every[0], hidden_cases.CaseLength) else 4), grade_id


@pytest.mark.parametrize("bias", [True, "forward"])
def test_a_layer_that_is_not_the_matrix_fails_both(bias):
    layer = nn.Linear(10, 8, bias=bias is True)
    if bias == "forward":

        class Doubled(nn.Linear):
            def forward(self, x):
                return 2 * super().forward(x)

        layer = Doubled(10, 8, bias=False)
    with torch.no_grad():
        layer.weight.copy_(tc.T_VALID)
    message = "bias" if bias is True else "does not compute weight @ x"
    assert message in (grader_verdict("ex1_2_test", layer) or "")
    assert message in (visible_verdict("ex1_2_test", layer) or "")
    # The same weight in a layer without a bias is right in both.
    plain = nn.Linear(10, 8, bias=False)
    with torch.no_grad():
        plain.weight.copy_(tc.T_VALID)
    assert grader_verdict("ex1_2_test", plain) is None
    assert visible_verdict("ex1_2_test", plain) is None
