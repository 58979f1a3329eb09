"""Every exercise through the real path: probe (student side), JSON, verify (grader side).

Expected values here come from torch's own convolutions, never from ``reference``, so a mistake in
the reference and the same mistake in the checks cannot hide each other.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from toeplitz_course.course import contract, reference
from toeplitz_course.grader import verdicts
from toeplitz_course.kernel import cases, hidden, probe

# -- the real path ----------------------------------------------------------------------------


# A student's own names for the convolutions, taken before any check runs.
_CONV1D, _CORRELATE, _CONVOLVE = F.conv1d, np.correlate, np.convolve
_LAYER_2D = torch.nn.Conv2d(1, 1, 3)


def run(grade_id, answer):
    payload = probe.probe(grade_id, answer)
    # What the answer channel carries: strict JSON, so NaN must already be encoded.
    payload = json.loads(json.dumps(payload, allow_nan=False))
    verdicts.verify(grade_id, payload)


def failure(grade_id, answer) -> str:
    with pytest.raises(verdicts.CheckFailure) as info:
        run(grade_id, answer)
    return str(info.value)


# -- expected values from torch ---------------------------------------------------------------

X = torch.tensor(reference.X_1D, dtype=torch.float32)
W = torch.tensor(reference.W_1D, dtype=torch.float32)
IMAGE = torch.tensor(reference.IMG_2D, dtype=torch.float32)
KERNEL = torch.tensor(reference.KERNEL_2D, dtype=torch.float32)


def torch_matrix_1d(w, n, padding=0) -> torch.Tensor:
    w = torch.as_tensor(w, dtype=torch.float64)
    basis = torch.eye(n, dtype=torch.float64).unsqueeze(1)
    return F.conv1d(basis, w.view(1, 1, -1), padding=padding)[:, 0, :].T.contiguous()


def torch_matrix_2d(kernel, H, W) -> torch.Tensor:
    kernel = torch.as_tensor(kernel, dtype=torch.float64)
    basis = torch.eye(H * W, dtype=torch.float64).view(H * W, 1, H, W)
    return F.conv2d(basis, kernel.view(1, 1, *kernel.shape)).flatten(1).T.contiguous()


T_VALID = torch_matrix_1d(W, 10, 0)
T_PAD = torch_matrix_1d(W, 10, 1)
T_2D = torch_matrix_2d(KERNEL, 4, 5)


def shift(n):
    """An implementation of the course's shift independent of reference.make_shift."""

    def tau(x):
        length = x.shape[-1]
        if n >= 0:
            return F.pad(x, (n, 0))[..., :length]
        return F.pad(x, (0, -n))[..., -n:]

    return tau


def course_conv(padding):
    conv = torch.nn.Conv1d(1, 1, 3, padding=padding, bias=False)
    with torch.no_grad():
        conv.weight.copy_(W.view(1, 1, 3))
    return conv


def expected_shifts(padding) -> set[int]:
    conv, x = course_conv(padding), X.view(1, -1)
    with torch.no_grad():
        return {
            n
            for n in range(-5, 6)
            if float((conv(shift(n)(x)) - shift(n)(conv(x))).abs().max()) < 1e-6
        }


def expected_counts() -> dict[str, int]:
    layer = torch.nn.Conv2d(1, 1, tuple(KERNEL.shape), bias=False)
    return {
        "ex5_1a_test": T_2D.numel(),
        "ex5_1b_test": int((T_2D != 0).sum()),
        "ex5_1c_test": sum(p.numel() for p in layer.parameters()),
    }


COUNTS = expected_counts()


# -- student-style solutions ------------------------------------------------------------------


def loops_toeplitz_1d(w, n, padding=0):
    k_len = len(w)
    rows = n + 2 * padding - k_len + 1
    t = torch.zeros(rows, n)
    for i in range(rows):
        for k in range(k_len):
            j = i + k - padding
            if 0 <= j < n:
                t[i, j] = w[k]
    return t


def identity_toeplitz_1d(w, n, padding=0):
    return F.conv1d(torch.eye(n).unsqueeze(1), w.view(1, 1, -1), padding=padding)[:, 0].T


def loops_block_toeplitz_2d(kernel, H, W):
    r_len, s_len = kernel.shape
    h_out, w_out = H - r_len + 1, W - s_len + 1
    t = torch.zeros(h_out * w_out, H * W)
    for i in range(h_out):
        for j in range(w_out):
            for r in range(r_len):
                for s in range(s_len):
                    t[i * w_out + j, (i + r) * W + (j + s)] = kernel[r, s]
    return t


def identity_block_toeplitz_2d(kernel, H, W):
    basis = torch.eye(H * W).view(H * W, 1, H, W)
    return F.conv2d(basis, kernel.view(1, 1, *kernel.shape)).flatten(1).T


def gap_item(f, x, n):
    tau = shift(n)
    return (f(tau(x)) - tau(f(x))).abs().max().item()


def gap_tensor(f, x, n):
    tau = shift(n)
    return torch.max(torch.abs(f(tau(x)) - tau(f(x))))


def gap_numpy(f, x, n):
    tau = shift(n)
    return np.abs((f(tau(x)) - tau(f(x))).detach().numpy()).max()


def counts_tuple(H, W, R, S):
    outputs = (H - R + 1) * (W - S + 1)
    return outputs * H * W, outputs * R * S, R * S


# -- the registry -----------------------------------------------------------------------------


def test_registry_covers_exactly_the_autograded_tests():
    assert verdicts.EXERCISES_CHECKED == {e.test_id for e in contract.AUTOGRADED}
    functions = {"toeplitz_1d", "equivariance_gap", "block_toeplitz_2d", "param_counts"}
    functions |= {"n_out_valid", "n_out_padded", "padded_matrix", "block_matrix", "same_padding"}
    functions |= {"conv_output_length", "toeplitz_general", "transposed_matrix", "cnn_param_count"}
    assert set(cases.CASES) == {e.test_id for e in contract.AUTOGRADED if e.name in functions}


@pytest.mark.parametrize("grade_id", ["ex9_9_test", "ex3_4", "", None])
def test_unknown_grade_id_is_a_key_error(grade_id):
    with pytest.raises(KeyError, match="no check for grade_id"):
        probe.probe(grade_id, 1)
    with pytest.raises(KeyError, match="no check for grade_id"):
        verdicts.verify(grade_id, {"value": 1})


def test_check_failure_is_an_assertion_error():
    assert issubclass(verdicts.CheckFailure, AssertionError)


def test_hidden_check_raises_the_teaching_message():
    hidden.check("ex1_2_test", T_VALID.float())
    with pytest.raises(verdicts.CheckFailure, match="transposed"):
        hidden.check("ex1_2_test", T_VALID.T)


# -- matrices ---------------------------------------------------------------------------------


def _linear(m: torch.Tensor, how: str) -> torch.nn.Linear:
    layer = torch.nn.Linear(m.shape[1], m.shape[0], bias=False)
    if how == "copy_":
        with torch.no_grad():
            layer.weight.copy_(m)
    elif how == "data":
        layer.weight.data = m.float()
    elif how == "parameter":
        layer.weight = torch.nn.Parameter(m.float())
    elif how == "setitem":
        with torch.no_grad():
            layer.weight[...] = m
    return layer


MATRIX_FORMS = {
    "float32": lambda m: m.float(),
    "float64": lambda m: m,
    "int64": lambda m: m.round().long(),
    "requires_grad": lambda m: m.float().requires_grad_(),
    "non_leaf": lambda m: m.float().requires_grad_() * 1,
    "numpy_float": lambda m: m.numpy(),
    "numpy_float32": lambda m: m.numpy().astype(np.float32),
    "numpy_int": lambda m: m.numpy().astype(np.int64),
    "nested_list": lambda m: m.tolist(),
    "int_nested_list": lambda m: m.round().long().tolist(),
    "list_of_tuples": lambda m: [tuple(r) for r in m.tolist()],
    "list_of_numpy_rows": lambda m: list(m.numpy()),
    "list_of_tensor_rows": lambda m: list(m.float()),
    "linear_copy_": lambda m: _linear(m, "copy_"),
    "linear_data": lambda m: _linear(m, "data"),
    "linear_parameter": lambda m: _linear(m, "parameter"),
    "linear_setitem": lambda m: _linear(m, "setitem"),
}

MATRICES = {"ex1_2_test": T_VALID, "ex2_2_test": T_PAD, "ex4_1_test": T_2D}

#: The builders of a matrix from a kernel alone (ex2_2: padding 1 on 10 inputs; ex4_1: a 4x5
#: image), as torch's convolution makes it.
BUILT = {
    "ex2_2_test": lambda k: torch_matrix_1d(k, 10, 1),
    "ex4_1_test": lambda k: torch_matrix_2d(k, 4, 5),
}


def builder(grade_id, make):
    """A builder answer that returns ``make(kernel)`` for every kernel the grader tries.

    ``make`` may use torch's convolution: it runs here, before the probe switches it off.
    """
    made = {}
    for case in cases.CASES[grade_id]:
        kernel = torch.tensor(case.kernel, dtype=torch.float32)
        made[tuple(kernel.flatten().tolist())] = make(kernel)
    return lambda kernel: made[tuple(torch.as_tensor(kernel).flatten().tolist())]


def as_answer(grade_id, form):
    """The answer to ``grade_id`` in the matrix ``form``: a matrix, or a builder of them."""
    if grade_id in BUILT:
        return builder(grade_id, lambda k: form(BUILT[grade_id](k)))
    return form(MATRICES[grade_id].clone())


#: Forms that round to whole numbers: right for the course's kernels, not the builders' others.
WHOLE_FORMS = {"int64", "numpy_int", "int_nested_list"}


@pytest.mark.parametrize(
    ("grade_id", "form"),
    [
        (g, f)
        for g in sorted(MATRICES)
        for f in sorted(MATRIX_FORMS)
        if g not in BUILT or f not in WHOLE_FORMS
    ],
)
def test_matrix_right_forms_pass(grade_id, form):
    run(grade_id, as_answer(grade_id, MATRIX_FORMS[form]))


def test_matrices_built_by_loops_pass():
    run("ex1_2_test", loops_toeplitz_1d(W, 10))
    run("ex2_2_test", lambda w: loops_toeplitz_1d(w, 10, 1))
    run("ex4_1_test", lambda k: loops_block_toeplitz_2d(k, 4, 5))


@pytest.mark.parametrize(
    ("grade_id", "convolution"),
    [
        ("ex2_2_test", lambda w: identity_toeplitz_1d(w, 10, 1)),
        ("ex2_2_test", lambda w: torch.nn.Conv1d(1, 1, 3, padding=1)(torch.eye(10)[:, None])),
        ("ex2_2_test", lambda w: np.stack([np.correlate(np.eye(10)[j], w.numpy()) for j in [0]])),
        ("ex4_1_test", lambda k: identity_block_toeplitz_2d(k, 4, 5)),
        ("ex4_1_test", lambda k: torch.conv2d(torch.eye(20).view(20, 1, 4, 5), k[None, None])),
        # The same under another name, taken before the call (a student's own import above it).
        ("ex2_2_test", lambda w: _CONV1D(torch.eye(10)[:, None], w.view(1, 1, -1), padding=1)),
        (
            "ex2_2_test",
            lambda w: torch.ops.aten.convolution(
                torch.eye(10)[:, None], w.view(1, 1, -1), None, [1], [1], [1], False, [0], 1
            ),
        ),
        (
            "ex2_2_test",
            lambda w: torch._C._VariableFunctions.conv1d(
                torch.eye(10)[:, None], w.view(1, 1, -1), padding=1
            ),
        ),
        ("ex2_2_test", lambda w: np.stack([_CORRELATE(np.eye(10)[j], w.numpy()) for j in [0]])),
        ("ex2_2_test", lambda w: np.stack([_CONVOLVE(np.eye(10)[j], w.numpy()) for j in [0]])),
        ("ex4_1_test", lambda k: type(_LAYER_2D)(1, 1, 3)(torch.eye(20).view(20, 1, 4, 5))),
    ],
    ids=range(11),
)
def test_a_builder_cannot_run_the_convolution(grade_id, convolution):
    # Reading the matrix off the convolution (Part 5's trick) is not building it: the builder is
    # called with torch's and numpy's convolutions off, and they are back on afterwards.
    assert "the convolution is switched off" in failure(grade_id, convolution)
    assert F.conv1d(torch.ones(1, 1, 4), torch.ones(1, 1, 2)).shape == (1, 1, 3)
    assert np.convolve([1, 2], [1]).tolist() == [1, 2]


@pytest.mark.parametrize("grade_id", sorted(BUILT))
def test_a_builder_that_ignores_its_kernel_fails(grade_id):
    # The matrix typed out for the notebook's kernel: right on the first case only.
    course = MATRICES[grade_id].float()
    assert "matrix of the notebook's kernel" in failure(grade_id, lambda kernel: course)


def test_matrix_within_tolerance_passes():
    run("ex1_2_test", T_VALID + 1e-7)


def _with(m: torch.Tensor, row: int, col: int, delta: float) -> torch.Tensor:
    m = m.clone()
    m[row, col] += delta
    return m


def _shift_cols(m: torch.Tensor, by: int) -> torch.Tensor:
    out = torch.zeros_like(m)
    if by > 0:
        out[:, by:] = m[:, :-by]
    else:
        out[:, :by] = m[:, -by:]
    return out


def _index_off_by_one(w, n, padding, by):
    """A student's loop with ``j = i + k - padding + by``: the band moves, new entries appear."""
    rows = n + 2 * padding - len(w) + 1
    t = torch.zeros(rows, n)
    for i in range(rows):
        for k in range(len(w)):
            j = i + k - padding + by
            if 0 <= j < n:
                t[i, j] = w[k]
    return t


def _column_major_2d(m: torch.Tensor, H, W, inputs=True, outputs=True) -> torch.Tensor:
    """Renumber rows/columns of a row-major matrix column-major, with torch's own permute."""
    h_out, w_out = H - KERNEL.shape[0] + 1, W - KERNEL.shape[1] + 1
    out = m
    if inputs:
        out = out.view(-1, H, W).permute(0, 2, 1).reshape(out.shape[0], H * W)
    if outputs:
        out = out.view(h_out, w_out, -1).permute(1, 0, 2).reshape(-1, out.shape[1])
    return out.contiguous()


WRONG_MATRICES = [
    # (grade_id, answer, expected substring in the message)
    ("ex1_2_test", torch_matrix_1d(W.flip(0), 10), "your rows hold the flipped kernel"),
    ("ex1_2_test", torch_matrix_1d(W.flip(0), 10), "y[i] = sum_k w[k] x[i+k]"),
    ("ex1_2_test", _shift_cols(T_VALID, 1), "one column too far to the right"),
    ("ex1_2_test", _shift_cols(T_VALID, -1), "one column too far to the left"),
    ("ex1_2_test", _index_off_by_one(W, 10, 0, 1), "one column too far to the right"),
    ("ex1_2_test", _index_off_by_one(W, 10, 0, -1), "one column too far to the left"),
    ("ex1_2_test", T_VALID.T, "looks transposed: rows are outputs, columns are inputs"),
    ("ex1_2_test", T_VALID[:7], "too few rows"),
    ("ex1_2_test", torch.zeros(9, 10), "one row per output and one column per input"),
    ("ex1_2_test", T_PAD, "too many rows"),
    ("ex1_2_test", T_VALID[:, :9], "too few columns"),
    ("ex1_2_test", _with(T_VALID, 0, 0, 5.0), "some columns are never exercised"),
    ("ex1_2_test", _with(T_VALID, 7, 9, 1.0), "some columns are never exercised"),
    ("ex1_2_test", _with(T_VALID, 3, 5, 1.0), "row 3 (output y[3]) disagrees"),
    ("ex1_2_test", _with(T_VALID, 4, 4, 1e-3), "row 4 (output y[4]) disagrees"),
    ("ex1_2_test", _with(T_VALID, 0, 0, float("nan")), "NaN or infinite"),
    ("ex1_2_test", _with(T_VALID, 2, 4, float("inf")), "NaN or infinite entries (first in row 2)"),
    ("ex1_2_test", None, "not answered yet"),
    ("ex1_2_test", ..., "not answered yet"),
    ("ex1_2_test", "T", "expected a matrix"),
    ("ex1_2_test", 3, "expected a matrix"),
    ("ex1_2_test", X, "expected a 2-D matrix"),
    ("ex1_2_test", X.tolist(), "expected a 2-D matrix"),
    ("ex1_2_test", T_VALID[None], "expected a 2-D matrix"),
    ("ex1_2_test", [[1.0, 2.0], [3.0]], "different lengths"),
    ("ex1_2_test", [[1.0, "a"], [3.0, 4.0]], "not a number"),
    ("ex1_2_test", [[True, False], [False, True]], "not a number"),
    ("ex1_2_test", T_VALID.bool(), "real numbers"),
    ("ex1_2_test", T_VALID.to(torch.complex64), "real numbers"),
    ("ex1_2_test", torch.nn.Conv1d(1, 1, 3), "expected a 2-D matrix"),
    ("ex1_2_test", torch.nn.ReLU(), "has no weight matrix"),
    ("ex1_2_test", _with(T_VALID, 0, 0, 2.0), "x_1d is zero at both ends"),
]


def _wrong_builders():
    """(grade_id, builder, diagnosis): each builder makes the mistake for every kernel."""
    made = [
        ("ex2_2_test", lambda w: torch_matrix_1d(w.flip(0), 10, 1), "flipped kernel"),
        ("ex2_2_test", lambda w: torch_matrix_1d(w, 12, 0), "padding zeros multiply nothing"),
        ("ex2_2_test", lambda w: _index_off_by_one(w, 10, 1, 1), "one column too far to the right"),
        ("ex2_2_test", lambda w: _shift_cols(BUILT["ex2_2_test"](w), -1), "too far to the left"),
        ("ex2_2_test", lambda w: torch_matrix_1d(w, 10, 0), "returned shape (8, 10)"),
        ("ex2_2_test", lambda w: _with(BUILT["ex2_2_test"](w), 9, 8, 1.0), "row 9 (output y[9])"),
        ("ex2_2_test", lambda w: BUILT["ex2_2_test"](w).T, "padded_matrix([1, 1, -2]): your rows"),
        ("ex4_1_test", lambda k: _column_major_2d(torch_matrix_2d(k, 4, 5), 4, 5), "of input and"),
        (
            "ex4_1_test",
            lambda k: _column_major_2d(torch_matrix_2d(k, 4, 5), 4, 5, outputs=False),
            "column-major flattening of the input",
        ),
        (
            "ex4_1_test",
            lambda k: _column_major_2d(torch_matrix_2d(k, 4, 5), 4, 5, inputs=False),
            "column-major flattening of the output",
        ),
        ("ex4_1_test", lambda k: torch_matrix_2d(k.flip(0, 1), 4, 5), "hold the flipped kernel"),
        ("ex4_1_test", lambda k: torch_matrix_2d(k.flip(1), 4, 5), "flipped left to right"),
        ("ex4_1_test", lambda k: torch_matrix_2d(k.flip(0), 4, 5), "flipped upside down"),
        ("ex4_1_test", lambda k: torch_matrix_2d(k.T, 4, 5), "transposed kernel"),
        ("ex4_1_test", lambda k: torch_matrix_2d(k, 4, 5).T, "looks transposed"),
        ("ex4_1_test", lambda k: torch_matrix_2d(k, 5, 4), "built for a 5x4 input, H and W"),
        (
            "ex4_1_test",
            lambda k: _with(torch_matrix_2d(k, 4, 5), 4, 7, 1.0),
            "row 4 (output y[1, 1])",
        ),
        ("ex4_1_test", lambda k: torch_matrix_2d(k, 5, 5), "returned shape (9, 25)"),
        ("ex4_1_test", lambda k: torch_matrix_2d(k, 4, 5).view(2, 3, 4, 5), "a 2-D matrix"),
    ]
    return [(g, builder(g, make), d) for g, make, d in made]


WRONG_BUILDERS = _wrong_builders()


@pytest.mark.parametrize(
    ("grade_id", "answer", "diagnosis"),
    WRONG_MATRICES + WRONG_BUILDERS,
    ids=[f"{g}-{i}" for i, (g, _, _) in enumerate(WRONG_MATRICES + WRONG_BUILDERS)],
)
def test_wrong_matrix_is_diagnosed(grade_id, answer, diagnosis):
    message = failure(grade_id, answer)
    assert diagnosis in message
    name = contract.BY_TEST_ID[grade_id].name
    assert name in message


@pytest.mark.parametrize(
    ("grade_id", "answer"),
    [(g, a) for g, a, _ in WRONG_MATRICES + WRONG_BUILDERS],
    ids=range(len(WRONG_MATRICES + WRONG_BUILDERS)),
)
def test_matrix_messages_do_not_print_the_answer(grade_id, answer):
    message = failure(grade_id, answer)
    expected = MATRICES[grade_id]
    # A builder's message names the kernel it was called on; the answer is the matrix.
    message = re.sub(r"^(padded|block)_matrix\(.*?\]\)", "", message)
    assert "[[" not in message
    for row in expected.tolist():
        assert str(row) not in message
        assert str([int(v) for v in row]) not in message
    assert len(message) < 400


# -- sets of shifts ---------------------------------------------------------------------------

SHIFT_IDS = {"ex3_2_test": 0, "ex3_3_test": 1}


def _set_forms(expected: set[int]):
    ordered = sorted(expected)
    forms = {
        "set": set(expected),
        "frozenset": frozenset(expected),
        "list": ordered,
        "reversed_tuple": tuple(reversed(ordered)),
        "numpy": np.array(ordered),
        "numpy_int32": np.array(ordered, dtype=np.int32),
        "tensor": torch.tensor(ordered),
        "list_of_numpy_ints": [np.int64(v) for v in ordered],
        "list_of_0d_tensors": [torch.tensor(v) for v in ordered],
        "dict_keys": dict.fromkeys(ordered).keys(),
    }
    if ordered == list(range(ordered[0], ordered[-1] + 1)):
        forms["range"] = range(ordered[0], ordered[-1] + 1)
    return forms


@pytest.mark.parametrize("grade_id", sorted(SHIFT_IDS))
def test_shift_sets_right_forms_pass(grade_id):
    expected = expected_shifts(SHIFT_IDS[grade_id])
    assert expected, "the course data should have some equivariant shift"
    forms = _set_forms(expected)
    assert "range" in forms  # both course answers are runs of consecutive shifts
    for name, answer in forms.items():
        try:
            run(grade_id, answer)
        except verdicts.CheckFailure as e:  # pragma: no cover - the failing form is named
            pytest.fail(f"{name}: {e}")


def _not_equivariant(expected: set[int]) -> int:
    return next(n for n in range(-5, 6) if n not in expected)


def _wrong_sets(grade_id):
    expected = expected_shifts(SHIFT_IDS[grade_id])
    extra = _not_equivariant(expected)
    some = sorted(expected)
    return [
        (expected | {extra}, "one shift too many"),
        (expected | {n for n in range(-5, 6) if n not in expected}, "shifts too many"),
        (expected - {some[0]}, "missing a shift"),
        (expected - set(some[:2]), "missing 2 shifts"),
        (set(), "missing"),
        ((expected - {some[0]}) | {extra}, "some shifts are wrong"),
        (expected | {6}, "outside the range -5..5"),
        (expected | {-6}, "outside the range"),
        (some + [some[0]], "more than once"),
        # Read by the hidden test, then empty for the check under it: refused, in both.
        ((v for v in some), "used up once read"),
        (filter(lambda v: v in expected, range(-5, 6)), "used up once read"),
        (map(int, some), "used up once read"),
        ([float(v) for v in some], "shifts are whole numbers"),
        ([*some[:-1], True], "shifts are whole numbers"),
        ([*some, "0"], "shifts are whole numbers"),
        (torch.tensor(some, dtype=torch.float32), "shifts are whole numbers"),
        (torch.tensor([some]), "expected a collection of ints"),
        ("012", "expected a collection of ints"),
        (3, "expected a collection of ints"),
        ({v: True for v in some}, "expected a collection of ints"),
        (None, "not answered yet"),
        (..., "not answered yet"),
    ]


WRONG_SETS = [(g, a, d) for g in sorted(SHIFT_IDS) for a, d in _wrong_sets(g)]


@pytest.mark.parametrize(
    ("grade_id", "answer", "diagnosis"), WRONG_SETS, ids=range(len(WRONG_SETS))
)
def test_wrong_shift_set_is_diagnosed(grade_id, answer, diagnosis):
    message = failure(grade_id, answer)
    assert diagnosis in message
    assert contract.BY_TEST_ID[grade_id].name in message
    expected = expected_shifts(SHIFT_IDS[grade_id])
    for shown in (repr(expected), str(sorted(expected)), str(tuple(sorted(expected)))):
        assert shown not in message


@pytest.mark.parametrize("grade_id", sorted(SHIFT_IDS))
def test_shift_message_counts_but_does_not_name_the_wrong_shifts(grade_id):
    expected = expected_shifts(SHIFT_IDS[grade_id])
    wrong = [n for n in range(-5, 6) if n not in expected]
    assert len(wrong) >= 2
    # The same message whichever shift is wrong: it cannot be naming it.
    assert failure(grade_id, expected | {wrong[0]}) == failure(grade_id, expected | {wrong[-1]})
    kept = sorted(expected)
    assert failure(grade_id, expected - {kept[0]}) == failure(grade_id, expected - {kept[-1]})


# -- counts -----------------------------------------------------------------------------------


def _count_forms(value: int):
    return [
        value,
        np.int64(value),
        np.int32(value),
        float(value),
        np.float32(value),
        np.float64(value),
        torch.tensor(value),
        torch.tensor(float(value)),
        torch.tensor(float(value), requires_grad=True),
        np.array(value),
    ]


@pytest.mark.parametrize("grade_id", sorted(COUNTS))
def test_counts_right_forms_pass(grade_id):
    for answer in _count_forms(COUNTS[grade_id]):
        run(grade_id, answer)


def _wrong_counts(grade_id):
    value = COUNTS[grade_id]
    return [
        (value + 1, "is not right"),
        (value - 1, "is not right"),
        (value + 0.5, "not a whole number"),
        (float("nan"), "NaN or infinite"),
        (float("inf"), "NaN or infinite"),
        (-value, "cannot be negative"),
        (True, "bool"),
        (str(value), "str"),
        (torch.tensor([value]), "shape (1,)"),
        ([value], "list"),
        (None, "not answered yet"),
        (..., "not answered yet"),
    ]


WRONG_COUNTS = [(g, a, d) for g in sorted(COUNTS) for a, d in _wrong_counts(g)]


@pytest.mark.parametrize(
    ("grade_id", "answer", "diagnosis"), WRONG_COUNTS, ids=range(len(WRONG_COUNTS))
)
def test_wrong_count_is_diagnosed(grade_id, answer, diagnosis):
    message = failure(grade_id, answer)
    assert diagnosis in message
    assert contract.BY_TEST_ID[grade_id].name in message


def _common_mistakes():
    h, w = IMAGE.shape
    return [
        ("ex5_1a_test", (h * w) ** 2, "square layer"),
        ("ex5_1a_test", COUNTS["ex5_1b_test"], "only the nonzero entries"),
        ("ex5_1b_test", COUNTS["ex5_1c_test"], "distinct kernel weights"),
        ("ex5_1b_test", COUNTS["ex5_1a_test"], "every entry"),
        ("ex5_1c_test", COUNTS["ex5_1c_test"] + 1, "no bias"),
        ("ex5_1c_test", COUNTS["ex5_1b_test"], "stores each kernel weight once"),
    ]


@pytest.mark.parametrize(("grade_id", "answer", "diagnosis"), _common_mistakes())
def test_common_count_mistakes_get_their_own_hint(grade_id, answer, diagnosis):
    assert answer != COUNTS[grade_id]
    assert diagnosis in failure(grade_id, answer)


# A str or list answer is echoed back, and it may hold the right number in the wrong type.
LEAK_CASES = [
    (g, a) for g, a, _ in WRONG_COUNTS + _common_mistakes() if not isinstance(a, (str, list))
]


@pytest.mark.parametrize(("grade_id", "answer"), LEAK_CASES, ids=range(len(LEAK_CASES)))
def test_count_messages_do_not_give_the_value(grade_id, answer):
    message = failure(grade_id, answer)
    assert not re.search(rf"(?<![\d.]){COUNTS[grade_id]}(?![\d.])", message), message


# -- output lengths ---------------------------------------------------------------------------


def torch_length(n, k, padding=None):
    """The length nn.Conv1d really gives, the answer's only judge."""
    layer = torch.nn.Conv1d(1, 1, k, padding=padding or 0, bias=False)
    with torch.no_grad():
        return layer(torch.zeros(1, n)).shape[-1]


LENGTHS = {
    "ex1_1_test": lambda N, K: torch_length(N, K),
    "ex2_1_test": lambda N, K, P: torch_length(N, K, P),
}


@pytest.mark.parametrize("grade_id", sorted(LENGTHS))
@pytest.mark.parametrize("form", [int, np.int64, float, torch.tensor, np.array])
def test_length_right_forms_pass(grade_id, form):
    run(grade_id, lambda *args: form(LENGTHS[grade_id](*args)))


def test_the_length_cases_have_every_kind():
    valid = cases.CASES["ex1_1_test"]
    padded = cases.CASES["ex2_1_test"]
    assert any(c.k == 1 for c in valid) and any(c.k == c.n for c in valid)
    assert any(c.padding == 0 for c in padded) and any(c.k > c.n for c in padded)
    assert any(c.padding >= c.k for c in padded) and any(c.k % 2 == 0 for c in padded)


WRONG_LENGTHS = [
    ("ex1_1_test", lambda N, K: N - K, "N - K, one short"),
    ("ex1_1_test", lambda N, K: N - K + 2, "one too many"),
    ("ex1_1_test", lambda N, K: N, "number of inputs"),
    ("ex1_1_test", lambda N, K: N + K - 1, "'full' convolution"),
    ("ex1_1_test", lambda N, K: 8, "returns 8 whatever its arguments"),
    ("ex1_1_test", lambda N, K: (N - K) / 1 + 1.5, "a length is a whole number"),
    ("ex1_1_test", lambda N, K: None, "returned None"),
    ("ex1_1_test", lambda N: N, "raised TypeError"),
    ("ex2_1_test", lambda N, K, P: N - K + 1, "the length without padding"),
    ("ex2_1_test", lambda N, K, P: N - K + P + 1, "counts the padding once"),
    ("ex2_1_test", lambda N, K, P: N - K + 2 * P, "one short"),
    ("ex2_1_test", lambda N, K, P: N - K + 2 * P + 2, "one too many"),
    ("ex2_1_test", lambda N, K, P: N + 2 * P, "the length of the padded input"),
    ("ex2_1_test", lambda N, K, P: N - K + 3, "the length for padding 1"),
    ("ex2_1_test", lambda N, K, P: N, "padding keeps it only when 2P = K - 1"),
    ("ex2_1_test", lambda N, K, P: 10, "returns 10 whatever its arguments"),
    ("ex2_1_test", lambda N, K, P: N - K + 2 * P + 1 + (N == 5) * 7, "count the positions"),
]


@pytest.mark.parametrize(
    ("grade_id", "answer", "diagnosis"), WRONG_LENGTHS, ids=range(len(WRONG_LENGTHS))
)
def test_wrong_length_is_diagnosed(grade_id, answer, diagnosis):
    message = failure(grade_id, answer)
    assert diagnosis in message
    assert contract.BY_TEST_ID[grade_id].name in message


# -- same padding -----------------------------------------------------------------------------


def torch_same_padding(K):
    """The P with which nn.Conv1d keeps 16 inputs 16 outputs, or None: asked of torch."""
    keeps = [P for P in range(K + 1) if torch_length(16, K, P) == 16]
    return keeps[0] if keeps else None


@pytest.mark.parametrize("form", [int, np.int64, float, torch.tensor])
def test_same_padding_right_forms_pass(form):
    run(
        "ex2_3_test",
        lambda K: None if torch_same_padding(K) is None else form(torch_same_padding(K)),
    )


def test_the_same_padding_cases_have_odd_and_even_kernels():
    ks = [c.k for c in cases.CASES["ex2_3_test"]]
    assert {k % 2 for k in ks} == {0, 1} and 1 in ks


WRONG_SAME = [
    (lambda K: K // 2, "P = 1 gives N + 1 outputs, not N"),
    (lambda K: (K - 1) // 2, "padding 0 is the unpadded convolution"),
    (lambda K: (K - 1) / 2, "returned 0.5: padding is a whole number"),
    (lambda K: None, "same_padding(K=3) returned None: a P exists for this K"),
    (lambda K: K - 1, "'full' padding"),
    (lambda K: 1, "same_padding(K=1) returned 1: that pads K zeros"),
    (lambda K: "1", "not a number"),
    (lambda K: [None], "not a number"),
]


@pytest.mark.parametrize(("answer", "diagnosis"), WRONG_SAME, ids=range(len(WRONG_SAME)))
def test_wrong_same_padding_is_diagnosed(answer, diagnosis):
    assert diagnosis in failure("ex2_3_test", answer)


# -- toeplitz_1d ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fn",
    [
        loops_toeplitz_1d,
        identity_toeplitz_1d,
        lambda w, n, padding=0: loops_toeplitz_1d(w, n, padding).numpy(),
        lambda w, n, padding=0: loops_toeplitz_1d(w, n, padding).tolist(),
        lambda w, n, padding=0: loops_toeplitz_1d(w, n, padding).double(),
    ],
    ids=["loops", "conv_on_identity", "numpy", "list", "float64"],
)
def test_toeplitz_1d_right_functions_pass(fn):
    run("ex1_3_test", fn)


def test_toeplitz_1d_gets_fresh_tensors():
    def mutating(w, n, padding=0):
        t = loops_toeplitz_1d(w.clone(), n, padding)
        w.mul_(-3)  # a careless student; the next case must not see it
        return t

    run("ex1_3_test", mutating)


def test_toeplitz_1d_cases_cover_the_brief():
    case_list = cases.CASES_1D
    assert 20 <= len(case_list) <= 30
    assert {len(c.w) for c in case_list} == {1, 2, 3, 4, 5}
    assert {c.p for c in case_list} == {0, 1, 2, 3}
    assert all(len(c.w) <= c.n <= 12 for c in case_list)
    assert any(c.padding is None for c in case_list) and any(c.padding == 0 for c in case_list)
    assert any(len(c.w) % 2 == 0 and c.p > 0 for c in case_list)
    assert cases._cases_1d() == case_list  # deterministic: the grader rebuilds the same list


def _flipped(w, n, padding=0):
    return loops_toeplitz_1d(w.flip(0), n, padding)


def _padding_off_by_one(w, n, padding=0):
    return loops_toeplitz_1d(w, n, padding + 1)


def _shifted_index(w, n, padding=0):
    return _index_off_by_one(w, n, padding, 1)


def _transposed(w, n, padding=0):
    return loops_toeplitz_1d(w, n, padding).T


def _raises(w, n, padding=0):
    raise ValueError("I give up")


def _square(w, n, padding=0):
    return torch.zeros(n, n)


def _no_default(w, n, padding):
    return loops_toeplitz_1d(w, n, padding)


def _scipy_same_for_even(w, n, padding=0):
    # scipy.signal.correlate(mode="same") centres an even kernel half a step to the right.
    return _index_off_by_one(w, n, padding, 0 if len(w) % 2 else 1)


def _needs_two_weights(w, n, padding=0):
    _ = w[1]
    return loops_toeplitz_1d(w, n, padding)


def _not_implemented(w, n, padding=0):
    raise NotImplementedError()


def _returns_none(w, n, padding=0):
    loops_toeplitz_1d(w, n, padding)


def _returns_vector(w, n, padding=0):
    return loops_toeplitz_1d(w, n, padding).flatten()


def _exits(w, n, padding=0):
    raise SystemExit(1)


WRONG_1D = [
    (_flipped, "your rows hold the flipped kernel"),
    (_flipped, "toeplitz_1d(w=[1, 1, -2], N=10)"),
    (
        _padding_off_by_one,
        f"returned shape ({T_PAD.shape[0]}, 10); the convolution gives {T_VALID.shape[0]} outputs "
        "from 10 inputs",
    ),
    (_shifted_index, "one column too far to the right"),
    (_transposed, "looks transposed"),
    (_raises, "raised ValueError: I give up"),
    (_square, "returned shape (10, 10)"),
    (_no_default, "padding should default to 0"),
    (_needs_two_weights, "raised IndexError"),
    (_not_implemented, "not answered yet: toeplitz_1d still raises NotImplementedError"),
    (_returns_none, "returned None"),
    (_returns_vector, "expected a 2-D matrix"),
    (_exits, "raised SystemExit"),
    (None, "not answered yet"),
    (42, "should be a function"),
]


@pytest.mark.parametrize(("fn", "diagnosis"), WRONG_1D, ids=range(len(WRONG_1D)))
def test_toeplitz_1d_wrong_functions_are_diagnosed(fn, diagnosis):
    assert diagnosis in failure("ex1_3_test", fn)


def test_toeplitz_1d_failures_name_the_case():
    message = failure("ex1_3_test", _needs_two_weights)
    assert re.search(r"toeplitz_1d\(w=\[[^\],]*\], N=\d+, padding=\d\) raised IndexError", message)


def test_toeplitz_1d_scipy_same_fails_on_an_even_kernel():
    message = failure("ex1_3_test", _scipy_same_for_even)
    kernel = re.search(r"toeplitz_1d\(w=\[([^\]]*)\]", message)
    assert kernel, message
    assert len(kernel.group(1).split(",")) % 2 == 0
    assert "one column too far" in message


# -- equivariance_gap -------------------------------------------------------------------------


def _gap_own_shift(f, x, n):
    def tau(v):
        zeros = torch.zeros_like(v)
        if n >= 0:
            return torch.cat([zeros[..., :n], v[..., : v.shape[-1] - n]], dim=-1)
        return torch.cat([v[..., -n:], zeros[..., :-n]], dim=-1)

    return float((f(tau(x)) - tau(f(x))).abs().max())


@pytest.mark.parametrize(
    "fn",
    [gap_item, gap_tensor, gap_numpy, _gap_own_shift, lambda f, x, n: float(gap_tensor(f, x, n))],
    ids=["item", "tensor", "numpy", "own_shift", "float"],
)
def test_equivariance_gap_right_functions_pass(fn):
    run("ex3_1_test", fn)


def test_equivariance_gap_with_the_reference_shift_passes():
    run("ex3_1_test", lambda f, x, n: reference.equivariance_gap(f, x, n))


def test_equivariance_gap_probe_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    probe.probe("ex3_1_test", gap_item)
    assert torch.equal(torch.random.get_rng_state(), before)


def test_equivariance_gap_gets_fresh_layers():
    def mutating(f, x, n):
        gap = gap_item(f, x, n)
        with torch.no_grad():
            f.weight.mul_(2)
        x.zero_()
        return gap

    run("ex3_1_test", mutating)


def test_equivariance_gap_cases_cover_the_brief():
    case_list = cases.CASES_GAP
    assert 15 <= len(case_list) <= 30
    assert {len(c.kernel) for c in case_list} == {2, 3, 4}
    assert {c.padding for c in case_list} == {0, 1}
    assert all(8 <= len(c.x) <= 14 and -5 <= c.n <= 5 for c in case_list)
    assert any(c.x[0] == 0 and c.x[-1] == 0 for c in case_list)
    assert any(c.x[0] != 0 and c.x[-1] != 0 for c in case_list)
    assert any(c.n == 0 for c in case_list)
    gaps = [gap_item(_conv_for(c), torch.tensor([c.x]), c.n) for c in case_list]
    assert any(g == 0 for g in gaps) and any(g > 0 for g in gaps)
    assert cases._cases_gap() == case_list


def _conv_for(case):
    conv = torch.nn.Conv1d(1, 1, len(case.kernel), padding=case.padding, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor(case.kernel).view(1, 1, -1))
    return conv


def _diff(f, x, n):
    tau = shift(n)
    return f(tau(x)) - tau(f(x))


WRONG_GAP = [
    (lambda f, x, n: _diff(f, x, n).abs().sum().item(), "adds up the differences"),
    (lambda f, x, n: _diff(f, x, n).abs().mean().item(), "averages the differences"),
    (lambda f, x, n: _diff(f, x, n).max().item(), "take the absolute value first"),
    (lambda f, x, n: (-_diff(f, x, n)).max().item(), "take the absolute value first"),
    (
        lambda f, x, n: (f(torch.roll(x, n, -1)) - torch.roll(f(x), n, -1)).abs().max().item(),
        "circular shift (torch.roll)",
    ),
    (lambda f, x, n: gap_item(f, x, -n), "opposite shift -n"),
    (lambda f, x, n: (f(shift(n)(x)) - f(x)).abs().max().item(), "shifted output tau_n(f(x))"),
    (lambda f, x, n: 0.0, "do not commute"),
    (lambda f, x, n: gap_item(f, x, n) * 3, "which is not max"),
    (lambda f, x, n: gap_item(f, x, n) + 0.5, "commute exactly (gap 0)"),
    (lambda f, x, n: -gap_item(f, x, n) - 1, "cannot be negative"),
    (lambda f, x, n: float("nan"), "finite"),
    (lambda f, x, n: "small", "not a number"),
    (lambda f, x, n: True, "bool"),
    (lambda f, x, n: _diff(f, x, n).abs().max(dim=-1).values, "shape (1,)"),
    (lambda f, x, n: 1 / 0, "raised ZeroDivisionError"),
    (lambda f, x, n: None, "returned None"),
]


@pytest.mark.parametrize(("fn", "diagnosis"), WRONG_GAP, ids=range(len(WRONG_GAP)))
def test_equivariance_gap_wrong_functions_are_diagnosed(fn, diagnosis):
    message = failure("ex3_1_test", fn)
    assert diagnosis in message
    assert "equivariance_gap" in message


def test_equivariance_gap_unanswered_function():
    def unanswered(f, x, n):
        raise NotImplementedError()

    assert "not answered yet" in failure("ex3_1_test", unanswered)


def test_equivariance_gap_message_names_the_case():
    message = failure("ex3_1_test", lambda f, x, n: gap_item(f, x, n) * 3)
    assert re.search(r"equivariance_gap\(f=Conv1d\(kernel=\[.*\], padding=\d\), x=", message)


# -- block_toeplitz_2d ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fn",
    [
        loops_block_toeplitz_2d,
        identity_block_toeplitz_2d,
        lambda k, H, W: loops_block_toeplitz_2d(k, H, W).numpy(),
        lambda k, H, W: loops_block_toeplitz_2d(k, H, W).tolist(),
    ],
    ids=["loops", "conv_on_identity", "numpy", "list"],
)
def test_block_toeplitz_2d_right_functions_pass(fn):
    run("ex4_2_test", fn)


def test_block_toeplitz_2d_cases_cover_the_brief():
    case_list = cases.CASES_2D
    assert 15 <= len(case_list) <= 30
    shapes = {(len(c.kernel), len(c.kernel[0])) for c in case_list}
    assert {r for r, _ in shapes} == {1, 2, 3, 4} and {s for _, s in shapes} == {1, 2, 3, 4}
    assert any(r != s for r, s in shapes)
    assert all(len(c.kernel) <= c.H <= 7 and len(c.kernel[0]) <= c.W <= 7 for c in case_list)
    assert sum(c.H != c.W for c in case_list) > len(case_list) // 2
    assert cases._cases_2d() == case_list


def _column_major_input(kernel, H, W):
    t = loops_block_toeplitz_2d(kernel, H, W)
    return t.view(-1, H, W).permute(0, 2, 1).reshape(t.shape[0], H * W)


def _hw_swapped(kernel, H, W):
    return (
        loops_block_toeplitz_2d(kernel, W, H)
        if kernel.shape[0] <= W and kernel.shape[1] <= H
        else None
    )


def _wrong_shape_2d(kernel, H, W):
    return torch.zeros(H * W, H * W)


def _nan_for_big_kernels(kernel, H, W):
    t = loops_block_toeplitz_2d(kernel, H, W)
    if kernel.numel() > 3:
        t[0, 0] = float("nan")
    return t


def _flattened_as_1d(kernel, H, W):
    # Treat the flattened image as a 1D signal: correct inside rows, wrong across row ends.
    r_len, s_len = kernel.shape
    h_out, w_out = H - r_len + 1, W - s_len + 1
    t = torch.zeros(h_out * w_out, H * W)
    for o in range(h_out * w_out):
        for r in range(r_len):
            for s in range(s_len):
                if o + r * W + s < H * W:
                    t[o, o + r * W + s] = kernel[r, s]
    return t


WRONG_2D = [
    (_column_major_input, "the matrix assumes column-major flattening"),
    (lambda k, H, W: loops_block_toeplitz_2d(k.flip(0, 1), H, W), "flipped kernel"),
    (_wrong_shape_2d, "returned shape"),
    (_hw_swapped, "H and W swapped"),
    (lambda k, H, W: loops_block_toeplitz_2d(k, H, W).T, "looks transposed"),
    (_flattened_as_1d, "disagrees with the convolution"),
    (_nan_for_big_kernels, "NaN or infinite"),
    (lambda k, H, W: loops_block_toeplitz_2d(k, H, W)[None], "expected a 2-D matrix"),
    (lambda k, H, W: [][0], "raised IndexError"),
    (lambda k, H, W: None, "returned None"),
]


@pytest.mark.parametrize(("fn", "diagnosis"), WRONG_2D, ids=range(len(WRONG_2D)))
def test_block_toeplitz_2d_wrong_functions_are_diagnosed(fn, diagnosis):
    message = failure("ex4_2_test", fn)
    assert diagnosis in message
    assert "block_toeplitz_2d(kernel=" in message


def test_block_toeplitz_2d_shape_message_counts_outputs_and_inputs():
    message = failure("ex4_2_test", _wrong_shape_2d)
    match = re.search(r"H=(\d+), W=(\d+)\) returned shape", message)
    assert match, message
    H, W = int(match.group(1)), int(match.group(2))
    assert f"from {H * W} inputs" in message


def test_block_toeplitz_2d_flattened_1d_names_a_row_and_output():
    message = failure("ex4_2_test", _flattened_as_1d)
    assert re.search(r"row \d+ \(output y\[\d+, \d+\]\) disagrees", message)


# -- param_counts -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fn",
    [
        counts_tuple,
        lambda H, W, R, S: list(counts_tuple(H, W, R, S)),
        lambda H, W, R, S: tuple(np.int64(v) for v in counts_tuple(H, W, R, S)),
        lambda H, W, R, S: tuple(float(v) for v in counts_tuple(H, W, R, S)),
        lambda H, W, R, S: np.array(counts_tuple(H, W, R, S)),
        lambda H, W, R, S: torch.tensor(counts_tuple(H, W, R, S)),
        lambda H, W, R, S: tuple(torch.tensor(v) for v in counts_tuple(H, W, R, S)),
    ],
    ids=["tuple", "list", "numpy_ints", "floats", "numpy_array", "tensor", "tensors"],
)
def test_param_counts_right_functions_pass(fn):
    run("ex5_2_test", fn)


def test_param_counts_matches_torch_on_its_cases():
    for case in cases.CASES_COUNTS:
        kernel = torch.ones(case.R, case.S)
        m = torch_matrix_2d(kernel, case.H, case.W)
        assert counts_tuple(case.H, case.W, case.R, case.S) == (
            m.numel(),
            int((m != 0).sum()),
            case.R * case.S,
        )
    assert 12 <= len(cases.CASES_COUNTS) <= 20
    assert any(c.R != c.S for c in cases.CASES_COUNTS)
    assert any(c.H != c.W for c in cases.CASES_COUNTS)


def _counts_with(index, change):
    def fn(H, W, R, S):
        counts = list(counts_tuple(H, W, R, S))
        counts[index] = change(counts[index], H, W, R, S)
        return tuple(counts)

    return fn


WRONG_COUNTS_FN = [
    (lambda H, W, R, S: tuple(reversed(counts_tuple(H, W, R, S))), "wrong order"),
    (_counts_with(2, lambda v, *_: v + 1), "third count"),
    (_counts_with(0, lambda v, H, W, R, S: (H * W) ** 2), "first count"),
    (_counts_with(1, lambda v, H, W, R, S: R * S), "second count"),
    (lambda H, W, R, S: counts_tuple(H, W, R, S)[:2], "returned 2 values"),
    (lambda H, W, R, S: sum(counts_tuple(H, W, R, S)), "not a tuple of 3 counts"),
    (_counts_with(0, lambda v, *_: v + 0.5), "not a whole number"),
    (_counts_with(1, lambda v, *_: "many"), "not a number"),
    (lambda H, W, R, S: None, "returned None"),
    (lambda H, W, R, S: (_ for _ in ()).throw(TypeError("nope")), "raised TypeError: nope"),
]


@pytest.mark.parametrize(("fn", "diagnosis"), WRONG_COUNTS_FN, ids=range(len(WRONG_COUNTS_FN)))
def test_param_counts_wrong_functions_are_diagnosed(fn, diagnosis):
    message = failure("ex5_2_test", fn)
    assert diagnosis in message
    assert "param_counts(H=" in message


# -- robustness -------------------------------------------------------------------------------


class Hostile:
    def __array__(self, *args, **kwargs):
        raise RuntimeError("no array for you")

    def __iter__(self):
        raise RuntimeError("no iteration either")

    def __len__(self):
        raise RuntimeError("no length")

    def __repr__(self):
        raise RuntimeError("no repr")

    def __str__(self):
        raise RuntimeError("no str")

    def __float__(self):
        raise RuntimeError("no float")


class HostileList(list):
    def __iter__(self):
        raise RuntimeError("iteration refused")


@pytest.mark.parametrize("grade_id", sorted(verdicts.EXERCISES_CHECKED))
@pytest.mark.parametrize(
    "answer",
    [Hostile(), HostileList([1, 2]), [Hostile()], object(), torch.empty(0), {}, b"x"],
    ids=["hostile", "hostile_list", "list_of_hostile", "object", "empty", "dict", "bytes"],
)
def test_probe_never_raises_and_verify_reports(grade_id, answer):
    payload = probe.probe(grade_id, answer)
    json.dumps(payload, allow_nan=False)
    with pytest.raises(verdicts.CheckFailure):
        verdicts.verify(grade_id, payload)


@pytest.mark.parametrize("grade_id", sorted(cases.CASES))
def test_probe_survives_functions_returning_hostile_objects(grade_id):
    payload = probe.probe(grade_id, lambda *args: Hostile())
    json.dumps(payload, allow_nan=False)
    with pytest.raises(verdicts.CheckFailure):
        verdicts.verify(grade_id, payload)


def test_huge_matrix_keeps_only_its_shape():
    payload = probe.probe("ex1_2_test", torch.zeros(200, 200))
    assert payload == {"shape": [200, 200]}
    assert "shape (200, 200)" in failure("ex1_2_test", torch.zeros(200, 200))


@pytest.mark.parametrize("grade_id", sorted(verdicts.EXERCISES_CHECKED))
@pytest.mark.parametrize(
    "payload",
    [
        None,
        [],
        {},
        {"shape": "wide"},
        {"shape": [8, 10], "values": [[1.0]]},
        {"value": True},
        {"value": "lots"},
        {"ints": [1, "2"], "others": []},
        {"results": 3},
        {"results": [{"shape": [1, 1], "values": [[0.0]]}]},
        {"error": 12},
    ],
    ids=range(11),
)
def test_verify_reports_malformed_payloads_as_failures(grade_id, payload):
    with pytest.raises(verdicts.CheckFailure):
        verdicts.verify(grade_id, payload)


def _right_answers():
    return {
        "ex1_1_test": lambda N, K: N - K + 1,
        "ex1_2_test": T_VALID.float(),
        "ex1_3_test": lambda w, n, padding=0: reference.toeplitz_1d(w, n, padding),
        "ex2_1_test": lambda N, K, P: N + 2 * P - K + 1,
        "ex2_2_test": lambda w: reference.toeplitz_1d(w, 10, 1),
        "ex2_3_test": lambda K: (K - 1) // 2 if K % 2 else None,
        "ex3_1_test": gap_item,
        "ex3_2_test": expected_shifts(0),
        "ex3_3_test": expected_shifts(1),
        "ex4_1_test": lambda k: reference.block_toeplitz_2d(k, 4, 5),
        "ex4_2_test": reference.block_toeplitz_2d,
        "ex5_1a_test": COUNTS["ex5_1a_test"],
        "ex5_1b_test": COUNTS["ex5_1b_test"],
        "ex5_1c_test": COUNTS["ex5_1c_test"],
        "ex5_2_test": reference.param_counts,
        "ex6_1_test": reference.conv_output_length,
        "ex6_2_test": reference.toeplitz_general,
        "ex6_3_test": reference.transposed_matrix,
        "ex6_4_test": reference.cnn_param_count,
    }


def test_right_answers_cover_every_exercise():
    assert set(_right_answers()) == verdicts.EXERCISES_CHECKED
    for grade_id, answer in _right_answers().items():
        run(grade_id, answer)


def test_verify_does_not_need_the_answer_objects():
    payload = json.loads(json.dumps(probe.probe("ex4_2_test", loops_block_toeplitz_2d)))
    del payload["results"][0]["values"][0]
    with pytest.raises(verdicts.CheckFailure, match="malformed"):
        verdicts.verify("ex4_2_test", payload)
