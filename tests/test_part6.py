"""Part 6 (optional): stride and dilation, the transpose, channels and bias.

Expected values come from torch itself: lengths of ``F.conv1d``'s outputs, matrices of
``F.conv1d`` / ``F.conv_transpose1d`` applied to the identity basis, gradients from autograd, and
``sum(p.numel())`` of real layers. The answers go the real way: probe, JSON, verify, and the
notebook's generated self-check (test_selfcheck holds both to the same verdict on these forms).
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import matplotlib
import nbformat
import numpy as np
import pytest
import test_checks as tc
import torch
import torch.nn.functional as F
from torch import nn

from toeplitz_course.kernel import cases, probe

ROOT = Path(__file__).resolve().parent.parent

# -- expected values from torch ---------------------------------------------------------------


def torch_length(N, K, padding=0, stride=1, dilation=1) -> int:
    x = torch.zeros(1, 1, N)
    return F.conv1d(
        x, torch.ones(1, 1, K), padding=padding, stride=stride, dilation=dilation
    ).shape[-1]


def torch_general(w, N, padding=0, stride=1, dilation=1) -> torch.Tensor:
    w = torch.as_tensor(w, dtype=torch.float64)
    basis = torch.eye(N, dtype=torch.float64).unsqueeze(1)
    out = F.conv1d(basis, w.view(1, 1, -1), padding=padding, stride=stride, dilation=dilation)
    return out[:, 0, :].T.contiguous()


def torch_transposed(w, L, stride=1) -> torch.Tensor:
    w = torch.as_tensor(w, dtype=torch.float64)
    basis = torch.eye(L, dtype=torch.float64).unsqueeze(1)
    return F.conv_transpose1d(basis, w.view(1, 1, -1), stride=stride)[:, 0, :].T.contiguous()


def torch_cnn_count(channels, K) -> int:
    layers = [
        nn.Conv1d(i, o, K, device="meta") for i, o in zip(channels[:-1], channels[1:], strict=True)
    ]
    return sum(p.numel() for p in nn.Sequential(*layers).parameters())


# -- right answers, written as students write them (no convolution inside) ----------------------


def length_formula(N, K, padding=0, stride=1, dilation=1):
    return (N + 2 * padding - dilation * (K - 1) - 1) // stride + 1


def length_by_counting(N, K, padding=0, stride=1, dilation=1):
    span = dilation * (K - 1) + 1
    return len(range(0, N + 2 * padding - span + 1, stride))


def general_loops(w, N, padding=0, stride=1, dilation=1):
    K = len(w)
    rows = (N + 2 * padding - dilation * (K - 1) - 1) // stride + 1
    T = torch.zeros(rows, N)
    for i in range(rows):
        for k in range(K):
            j = i * stride + k * dilation - padding
            if 0 <= j < N:
                T[i, j] = w[k]
    return T


def general_by_rows(w, N, padding=0, stride=1, dilation=1):
    """The stride-1 matrix of the dilated kernel, every stride-th row kept (numpy)."""
    K = len(w)
    dilated = np.zeros(dilation * (K - 1) + 1)
    dilated[::dilation] = np.asarray(w)
    rows = N + 2 * padding - len(dilated) + 1
    full = np.zeros((rows, N + 2 * padding))
    for i in range(rows):
        full[i, i : i + len(dilated)] = dilated
    return full[::stride, padding : padding + N]


def transposed_loops(w, L, stride=1):
    return general_loops(w, (L - 1) * stride + len(w), 0, stride).T


def transposed_scatter(w, L, stride=1):
    K = len(w)
    M = [[0.0] * L for _ in range((L - 1) * stride + K)]
    for i in range(L):
        for k in range(K):
            M[i * stride + k][i] += float(w[k])
    return M


def cnn_loop(channels, K):
    return sum(o * i * K + o for i, o in zip(channels[:-1], channels[1:], strict=True))


RIGHT = {
    "ex6_1_test": [length_formula, length_by_counting, lambda *a: np.int64(length_formula(*a))],
    "ex6_2_test": [general_loops, general_by_rows],
    "ex6_3_test": [transposed_loops, transposed_scatter],
    "ex6_4_test": [
        cnn_loop,
        lambda ch, K: torch.tensor(cnn_loop(ch, K)),
        lambda ch, K: float(cnn_loop(ch, K)),
    ],
}

# -- wrong answers, each with the words its diagnosis must use ----------------------------------

WRONG = {
    "ex6_1_test": [
        (
            lambda N, K, padding=0, stride=1, dilation=1: (N + 2 * padding - K) // stride + 1,
            "ignores the dilation",
        ),
        (
            lambda N, K, padding=0, stride=1, dilation=1: N + 2 * padding - dilation * (K - 1),
            "ignores the stride",
        ),
        (
            lambda N, K, padding=0, stride=1, dilation=1: (
                length_formula(N, K, padding, stride, dilation) - 1
            ),
            "forgets the first output",
        ),
        (
            lambda N, K, padding=0, stride=1, dilation=1: (
                (N + 2 * padding - dilation * (K - 1)) // stride
            ),
            "divides the number of window positions",
        ),
        (
            lambda N, K, padding=0, stride=1, dilation=1: (
                -(-(N + 2 * padding - dilation * (K - 1) - 1) // stride) + 1
            ),
            "rounds up",
        ),
        (
            lambda N, K, padding=0, stride=1, dilation=1: (
                (N + padding - dilation * (K - 1) - 1) // stride + 1
            ),
            "pads only one end",
        ),
        (
            lambda N, K, padding=0, stride=1, dilation=1: (
                (N + 2 * padding - dilation * (K - 1) - 1) / stride + 1
            ),
            "is a whole number",
        ),
        (
            lambda N, K, padding=0, stride=1, dilation=1: torch_length(
                N, K, padding, stride, dilation
            ),
            "is not available inside this function",
        ),
    ],
    "ex6_2_test": [
        (
            lambda w, N, padding=0, stride=1, dilation=1: general_loops(w, N, padding, 1, dilation),
            "keeps every output of the stride-1 convolution",
        ),
        (
            lambda w, N, padding=0, stride=1, dilation=1: general_loops(w, N, padding, stride, 1),
            "ignores the dilation",
        ),
        (
            lambda w, N, padding=0, stride=1, dilation=1: general_loops(
                w.flip(0), N, padding, stride, dilation
            ),
            "flipped kernel",
        ),
        (
            lambda w, N, padding=0, stride=1, dilation=1: general_loops(w, N, padding, 1, dilation)[
                stride - 1 :: stride
            ],
            "keeps rows",
        ),
        (
            lambda w, N, padding=0, stride=1, dilation=1: (
                general_loops(w, N, padding, stride, dilation).T
            ),
            "transposed",
        ),
        (
            lambda w, N, padding=0, stride=1, dilation=1: torch_general(
                w, N, padding, stride, dilation
            ),
            "is not available inside this function",
        ),
    ],
    "ex6_3_test": [
        (lambda w, L, stride=1: transposed_loops(w, L, stride).T, "that is T"),
        (lambda w, L, stride=1: transposed_loops(w.flip(0), L, stride), "flipped kernel"),
        (lambda w, L, stride=1: transposed_loops(w, L, 1), "ignores the stride"),
        (
            lambda w, L, stride=1: general_loops(w, L * stride + len(w) - 1, 0, stride).T,
            "returned shape",
        ),
        (
            lambda w, L, stride=1: torch_transposed(w, L, stride),
            "is not available inside this function",
        ),
    ],
    "ex6_4_test": [
        (
            lambda ch, K: sum(o * i * K for i, o in zip(ch[:-1], ch[1:], strict=True)),
            "forgets the biases",
        ),
        (
            lambda ch, K: sum(o * i * K + i for i, o in zip(ch[:-1], ch[1:], strict=True)),
            "a bias per input channel",
        ),
        (
            lambda ch, K: sum(o * K + o for i, o in zip(ch[:-1], ch[1:], strict=True)),
            "grid of kernels",
        ),
        (
            lambda ch, K: sum(o * i * K + 1 for i, o in zip(ch[:-1], ch[1:], strict=True)),
            "a single bias",
        ),
        (lambda ch, K: ch[1] * ch[0] * K + ch[1], "counts only the first layer"),
        (lambda ch, K: torch_cnn_count(list(ch), K), "is not available inside this function"),
        (lambda ch, K: -1, "cannot be negative"),
    ],
}

NAMES = {
    "ex6_1_test": "conv_output_length",
    "ex6_2_test": "toeplitz_general",
    "ex6_3_test": "transposed_matrix",
    "ex6_4_test": "cnn_param_count",
}

# -- the cases are what torch does ----------------------------------------------------------------


def test_the_references_are_torch_on_every_case():
    from toeplitz_course.course import reference

    for c in cases.CASES_LENGTH:
        assert reference.conv_output_length(*c.args) == torch_length(*c.args), c.call()
    for c in cases.CASES_GENERAL:
        w, *rest = c.args
        assert torch.equal(reference.toeplitz_general(list(w), *rest), torch_general(w, *rest))
    for c in cases.CASES_TRANSPOSED:
        w, L, s = c.args
        assert torch.equal(reference.transposed_matrix(list(w), L, s), torch_transposed(w, L, s))
    for c in cases.CASES_CNN:
        assert reference.cnn_param_count(*c.args) == torch_cnn_count(*c.args), c.call()


def test_the_transpose_is_the_gradient():
    """The notebook's claim, on every transposed case: d(g . conv(x))/dx = T^T g."""
    for c in cases.CASES_TRANSPOSED:
        w, L, s = c.args
        w = torch.tensor(w, dtype=torch.float64)
        n = (L - 1) * s + len(w)
        x = torch.rand(1, 1, n, dtype=torch.float64, requires_grad=True)
        g = torch.rand(1, 1, L, dtype=torch.float64)
        with torch.enable_grad():
            (F.conv1d(x, w.view(1, 1, -1), stride=s) * g).sum().backward()
        torch.testing.assert_close(x.grad.flatten(), torch_transposed(w, L, s) @ g.flatten())


def test_the_cases_cover_the_kinds_the_exercises_name():
    lengths = cases.CASES_LENGTH
    assert any(length_formula(*c.args) == 1 for c in lengths)
    assert any(
        (c.args[0] + 2 * c.args[2] - c.args[4] * (c.args[1] - 1) - 1) % c.args[3] for c in lengths
    )
    assert {c.args[3] for c in lengths} >= {1, 2, 3, 4} and {c.args[4] for c in lengths} >= {
        1,
        2,
        3,
    }
    general = cases.CASES_GENERAL
    assert any(c.args[3] > 1 and c.args[4] > 1 and c.args[2] > 0 for c in general)
    assert any(len(c.args[0]) == 1 for c in general)
    assert {c.args[2] for c in cases.CASES_TRANSPOSED} >= {1, 2, 3, 4}
    assert any(c.args[2] > len(c.args[0]) for c in cases.CASES_TRANSPOSED)
    assert any(len(c.args[0]) == 2 for c in cases.CASES_CNN)
    assert any(len(c.args[0]) > 3 for c in cases.CASES_CNN)


# -- right and wrong, through the real path -------------------------------------------------------


@pytest.mark.parametrize(
    ("grade_id", "fn"),
    [(g, f) for g, fs in RIGHT.items() for f in fs],
    ids=[f"{g}-{i}" for g, fs in RIGHT.items() for i in range(len(fs))],
)
def test_right_functions_pass(grade_id, fn):
    tc.run(grade_id, fn)


@pytest.mark.parametrize(
    ("grade_id", "fn", "diagnosis"),
    [(g, f, d) for g, ws in WRONG.items() for f, d in ws],
    ids=[f"{g}-{i}" for g, ws in WRONG.items() for i in range(len(ws))],
)
def test_wrong_functions_are_diagnosed(grade_id, fn, diagnosis):
    message = tc.failure(grade_id, fn)
    assert diagnosis in message, message
    assert NAMES[grade_id] in message


@pytest.mark.parametrize("grade_id", sorted(NAMES))
def test_unanswered(grade_id):
    def stub(*args, **kwargs):
        raise NotImplementedError()

    assert "not answered yet" in tc.failure(grade_id, None)
    assert "not answered yet" in tc.failure(grade_id, stub)


def test_convolutions_come_back_after_the_probe_even_when_the_answer_breaks():
    before = (F.conv1d, torch.conv1d, nn.Conv1d, nn.ConvTranspose1d, F.conv_transpose1d)

    def breaks(*args):
        F.conv1d(torch.zeros(1, 1, 3), torch.zeros(1, 1, 1))

    payload = probe.probe("ex6_2_test", breaks)
    assert all(r.get("raised") == "RuntimeError" for r in payload["results"])
    assert (F.conv1d, torch.conv1d, nn.Conv1d, nn.ConvTranspose1d, F.conv_transpose1d) == before
    assert F.conv1d(torch.ones(1, 1, 3), torch.ones(1, 1, 2)).shape[-1] == 2


# -- the pictures show a wrong answer as wrong ----------------------------------------------------


def _grade_id(cell) -> str:
    return cell.metadata.get("nbgrader", {}).get("grade_id", "")


def _run_picture(exercise: str, answers: dict) -> str:
    """The notebook's given cells, then the picture cell after ``exercise``, with ``answers``."""
    import matplotlib.pyplot as plt

    nb = nbformat.read(ROOT / "source" / "toeplitz" / "06_using_the_matrix.ipynb", 4)
    at = next(i for i, c in enumerate(nb.cells) if _grade_id(c) == exercise)
    namespace: dict = {}
    for cell in nb.cells[:at]:
        if cell.cell_type != "code" or "demo" in cell.metadata.get("tags", []):
            continue
        if _grade_id(cell).endswith("_self_checks") or _grade_id(cell).startswith("ex"):
            continue
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(cell.source, "<given>", "exec"), namespace)
    namespace.update(answers, answered=lambda exercise: True)
    picture = next(
        c
        for c in nb.cells[at:]
        if "demo" in c.metadata.get("tags", []) and f'answered("{exercise}")' in c.source
    )
    backend = matplotlib.get_backend()
    matplotlib.use("Agg")
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(picture.source, "<picture>", "exec"), namespace)
    finally:
        plt.close("all")
        matplotlib.use(backend)
    return out.getvalue()


def test_each_picture_says_none_for_a_right_answer_and_shows_a_wrong_one():
    def wrong_rows(w, N, padding=0, stride=1, dilation=1):  # rows 1, 3, ... of stride 1
        return general_loops(w, N, padding, 1, dilation)[1::2]

    assert "rows that differ from the convolution on x_check: none" in _run_picture(
        "ex6_2", {"toeplitz_general": general_loops}
    )
    assert "rows that differ from the convolution on x_check: [0, 1, 2, 3]" in _run_picture(
        "ex6_2", {"toeplitz_general": wrong_rows}
    )
    assert "(N, stride) where yours differs from PyTorch: none" in _run_picture(
        "ex6_1", {"conv_output_length": length_formula}
    )
    assert "where yours differs from PyTorch: [(" in _run_picture(
        "ex6_1", {"conv_output_length": WRONG["ex6_1_test"][0][0]}
    )
    assert "differ from autograd's gradient: none" in _run_picture(
        "ex6_3", {"transposed_matrix": transposed_loops}
    )
    assert "conv_transpose1d maps 4 numbers to 9" in _run_picture(
        "ex6_3", {"transposed_matrix": WRONG["ex6_3_test"][0][0]}
    )
    flipped = _run_picture("ex6_3", {"transposed_matrix": WRONG["ex6_3_test"][1][0]})
    assert "differ from autograd's gradient: [" in flipped
    assert "<- differs" not in _run_picture("ex6_4", {"cnn_param_count": cnn_loop})
    assert "<- differs" in _run_picture("ex6_4", {"cnn_param_count": WRONG["ex6_4_test"][0][0]})
