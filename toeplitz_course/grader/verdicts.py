"""The verdicts: is a probed answer right, and if not, what is the mistake?

``verify(grade_id, payload)`` judges plain data written by :mod:`toeplitz_course.kernel.probe` in
the student's kernel and carried out on the answer channel. It runs in the grader's own process
(``VerifyAnswers``), which student code cannot reach; a grading kernel cannot import it.

The judging itself is :mod:`toeplitz_course.kernel.selfcheck` (it holds no answer); this module
builds what it judges against, the *tables*, from :mod:`toeplitz_course.course.reference`: the
right answer and every mistake the course recognises -- the flipped kernel, a one-column shift,
the transposed matrix, the wrong end of the kernel in the padded matrix's corners, circular
padding, column-major flattening, H and W swapped, the usual wrong counts -- each with its
message. ``table(grade_id, cases)`` builds the table for any cases; the grader uses every hidden
case, a notebook's self-check a few of them (``grader.visible``), so both judge alike.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..course import contract, reference, variant
from ..course.variant import DEFAULT_DATA, GivenData
from ..kernel import selfcheck
from ..kernel.cases import CASES, CaseCall, CaseGap
from ..kernel.probe import _text, lookup
from ..kernel.selfcheck import EQUIVARIANT_BELOW, CheckFailure, key

__all__ = ["CheckFailure", "EQUIVARIANT_BELOW", "OldAnswer", "table", "verify"]


def _matrix_list(t: Any) -> list[list[float]]:
    values = t.tolist() if isinstance(t, torch.Tensor) else t
    rows = [[float(v) + 0.0 for v in row] for row in values]
    for row in rows:
        for v in row:
            # Keys compare values rounded to DECIMALS places (selfcheck): an expected value must
            # lie on that grid, far from a rounding boundary.
            if round(v, selfcheck.DECIMALS) != v or abs(v) * selfcheck.RTOL > 1e-4:
                raise ValueError(f"expected value {v} is not on the keys' grid")
    return rows


def _transpose(m: list[list[float]]) -> list[list[float]]:
    return [list(col) for col in zip(*m, strict=True)]


def _shift_columns(m: list[list[float]], by: int) -> list[list[float]]:
    """Every row moved ``by`` columns to the right (left if negative), zeros entering."""
    cols = len(m[0]) if m else 0
    return [[row[j - by] if 0 <= j - by < cols else 0.0 for j in range(cols)] for row in m]


_TRANSPOSED = "the matrix looks transposed: rows are outputs, columns are inputs"
_FLIPPED_1D = (
    "your rows hold the flipped kernel: nn.Conv1d computes cross-correlation, "
    "y[i] = sum_k w[k] x[i+k]"
)
_FLIPPED_2D = (
    "nn.Conv2d computes cross-correlation, y[i, j] = sum_(r,s) k[r, s] x[i+r, j+s], "
    "with the kernel as it is"
)
_COLUMN_MAJOR = (
    "the matrix assumes column-major flattening{where}; PyTorch's view/flatten are row-major, "
    "index = row*W + col"
)
_CORNERS = (
    "the partial rows at the top and bottom keep the wrong end of the kernel: where the window "
    "hangs over the left end its first entries fall on padding zeros (the row starts with the "
    "kernel's later entries), and over the right end its last entries do"
)
_CIRCULAR = (
    "the matrix wraps around (circular padding): its corners give weight to inputs from the "
    "other end of x; nn.Conv1d pads with zeros, which multiply nothing, so those entries are 0"
)


def _matrix_table(
    t: list[list[float]],
    variants: Sequence[tuple[Any, str]],
    shapes: Sequence[tuple[list[int], str]],
    shape_text: str,
    not2d: str,
    course_x: Sequence[float] | None,
    x_text: str,
    w_out: int | None,
    same_rows: str,
    collisions: list[str] | None = None,
) -> dict:
    right = key("m", t)
    seen = {right}
    listed = []
    for wrong, text in variants:
        k = key("m", _matrix_list(wrong))
        if k == right and collisions is not None:
            collisions.append(text)
        if k not in seen:  # the first mistake a matrix matches is the one named
            seen.add(k)
            listed.append([k, text])
    rows, cols = len(t), len(t[0]) if t else 0
    table = {
        "shape": [rows, cols],
        "right": right,
        "rows": [key("r", i, row) for i, row in enumerate(t)],
        "variants": listed,
        "shapes": [[list(shape), text] for shape, text in shapes if list(shape) != [rows, cols]],
        "shape_text": shape_text,
        "not2d": not2d,
        "x": None,
        "w_out": w_out,
        "same_rows": same_rows,
    }
    if course_x is not None:
        table.update(
            x=[float(v) for v in course_x],
            xy=key("v", selfcheck.matvec(t, course_x)),
            x_text=x_text,
        )
    return table


def _circular_1d(w: Sequence[float], n: int, p: int) -> list[list[float]]:
    rows = n + 2 * p - len(w) + 1
    m = [[0.0] * n for _ in range(rows)]
    for i in range(rows):
        for r, v in enumerate(w):
            m[i][(i + r - p) % n] += float(v)
    return m


def _corners_swapped_1d(w: Sequence[float], n: int, p: int) -> list[list[float]]:
    """The padded matrix with each partial row holding the kernel's other end."""
    t = reference.toeplitz_1d(list(w), n, p).tolist()
    k_len = len(w)
    for i in range(len(t)):
        cols = [j for j in range(n) if 0 <= j - i + p < k_len]
        if not cols or len(cols) == k_len:
            continue
        kept = len(cols)
        part = list(w[:kept]) if cols[0] == 0 else list(w[k_len - kept :])
        t[i] = [0.0] * n
        for j, v in zip(cols, part, strict=True):
            t[i][j] = float(v)
    return t


def matrix_table_1d(
    w: Sequence[float],
    n: int,
    p: int,
    *,
    course_x: Sequence[float] | None = None,
    with_counts: bool = False,
    collisions: list[str] | None = None,
) -> dict:
    """The table of the matrix of ``conv1d(., w, padding=p)`` on n inputs (``collisions``, when
    given, collects the known mistakes whose matrix is the right one: they cannot be told)."""
    t = _matrix_list(reference.toeplitz_1d(list(w), n, p))
    rows, cols = len(t), n
    flipped = _matrix_list(reference.toeplitz_1d(list(w)[::-1], n, p))
    note = f" (x zero-padded by {p} at each end)" if p else ""
    if rows == cols and flipped == _transpose(t):
        note += "; for this square matrix that is also its transpose: rows are outputs"
    variants: list[tuple[Any, str]] = [(flipped, _FLIPPED_1D + note)]
    if rows == cols:
        variants.append((_transpose(t), _TRANSPOSED))
    for by, side in ((1, "right"), (-1, "left")):
        start = "input i" if p == 0 else f"input i - {p} (padding zeros have no column)"
        text = (
            f"the kernel pattern sits one column too far to the {side} in every row: "
            f"row i (output i) starts at {start}"
        )
        variants.append((reference.banded_1d(list(w), rows, n, p - by), text))
        variants.append((_shift_columns(t, by), text))
    if p:
        variants.append((_corners_swapped_1d(w, n, p), _CORNERS))
        variants.append((_circular_1d(w, n, p), _CIRCULAR))
    shapes = [([cols, rows], f"{_TRANSPOSED} (got shape {{shape}})")]
    if p:
        shapes.append(
            (
                [rows, n + 2 * p],
                "the matrix has shape {shape}: a column for every position of the padded input; "
                "columns are the real inputs only - the padding zeros multiply nothing, so they "
                "need no column",
            )
        )
    if with_counts:
        shape_text = (
            f"returned shape {{shape}}; the convolution gives {rows} outputs from {n} inputs "
            "(rows are outputs, columns are inputs)"
        )
    else:
        shape_text = (
            "the matrix has shape {shape}, but a convolution matrix has one row per output and "
            "one column per input: {problem}"
        )
    return _matrix_table(
        t,
        variants,
        shapes,
        shape_text,
        "expected a 2-D matrix (rows = outputs, columns = inputs), got shape {shape}",
        course_x,
        "the matrix gives the right output for the notebook's x_1d but is not the convolution's "
        "matrix: x_1d is zero at both ends, so some columns are never exercised by it - the "
        "matrix must be right for every input",
        None,
        "every row is the same: each row is the row above moved one column to the right, "
        "because the window of output i starts one input further on",
        collisions,
    )


def matrix_table_2d(
    kernel: Sequence[Sequence[float]],
    H: int,
    W: int,
    *,
    course_x: Sequence[float] | None = None,
    with_counts: bool = False,
    collisions: list[str] | None = None,
) -> dict:
    """The table of the matrix of the valid conv2d of an H x W input, flattened row-major."""
    k = [list(row) for row in kernel]
    t = _matrix_list(reference.block_toeplitz_2d(k, H, W))
    r_len, s_len = len(k), len(k[0])
    h_out, w_out = H - r_len + 1, W - s_len + 1
    rows, cols = h_out * w_out, H * W
    swapped = None
    if H != W and r_len <= W and s_len <= H:
        swapped = _matrix_list(reference.block_toeplitz_2d(k, W, H))
    swapped_text = (
        f"the matrix is built for a {W}x{H} input, H and W swapped: H counts rows, W columns "
        "(index = row*W + col)"
    )
    shapes: list[tuple[list[int], str]] = []
    if rows != cols:
        shapes.append(([cols, rows], f"{_TRANSPOSED} (got shape {{shape}})"))
    if swapped is not None:
        shapes.append(([len(swapped), W * H], swapped_text))
    variants: list[tuple[Any, str]] = []
    for inputs, outputs, where in (
        (True, True, " of input and output"),
        (True, False, " of the input (columns)"),
        (False, True, " of the output (rows)"),
    ):
        variant = reference.block_toeplitz_2d_column_major(k, H, W, inputs=inputs, outputs=outputs)
        variants.append((variant, _COLUMN_MAJOR.format(where=where)))
    flips = [
        (reference.flip(k), "your rows hold the flipped kernel (turned by 180 degrees): "),
        ([row[::-1] for row in k], "your rows hold the kernel flipped left to right: "),
        (k[::-1], "your rows hold the kernel flipped upside down: "),
    ]
    if r_len == s_len:
        flips.append(
            (_transpose(k), "your rows hold the transposed kernel (k[s, r] for k[r, s]): ")
        )
    for variant_kernel, text in flips:
        variants.append((reference.block_toeplitz_2d(variant_kernel, H, W), text + _FLIPPED_2D))
    if rows == cols:
        variants.append((_transpose(t), _TRANSPOSED))
    if swapped is not None and len(swapped) == rows:
        variants.append((swapped, swapped_text))
    if with_counts:
        shape_text = (
            f"returned shape {{shape}}; the convolution of a {H}x{W} input with a "
            f"{r_len}x{s_len} kernel gives {h_out}x{w_out} = {rows} outputs from {cols} "
            "inputs (rows are outputs, columns are inputs)"
        )
    else:
        shape_text = (
            "the matrix has shape {shape}, but a convolution matrix has one row per output and "
            "one column per input pixel, each flattened: {problem}"
        )
    return _matrix_table(
        t,
        variants,
        shapes,
        shape_text,
        "expected a 2-D matrix (rows = outputs, columns = inputs, both flattened), got shape "
        "{shape}",
        course_x,
        "the matrix gives the right output for the notebook's image but is not the "
        "convolution's matrix: the image has zeros, so some entries are never exercised by it "
        "- the matrix must be right for every input",
        w_out,
        "every row is the same: each output's window sits at its own place in the image, so "
        "each row holds the kernel at other columns",
        collisions,
    )


# -- the exercises whose answer is one matrix -------------------------------------------------


def _table_ex1_2(given: GivenData, collisions: list[str] | None = None) -> dict:
    matrix = matrix_table_1d(
        given.w_1d, len(given.x_1d), 0, course_x=given.x_1d, collisions=collisions
    )
    return {"kind": "matrix", "name": "linear_layer", "matrix": matrix}


# -- counts -----------------------------------------------------------------------------------


def _course_2d(given: GivenData) -> tuple[int, int, int]:
    """(entries, nonzero entries) of the course's block-Toeplitz matrix and its kernel size."""
    kernel = [list(row) for row in given.kernel_2d]
    t = reference.block_toeplitz_2d(kernel, given.height, given.width)
    kernel_size = len(kernel) * len(kernel[0])
    return t.numel(), int((t != 0).sum()), kernel_size


def _count_table(name: str, expected: int, hint: str, known: dict[int, str]) -> dict:
    return {
        "kind": "count",
        "name": name,
        "right": key("c", expected),
        "known": [[key("c", v), text] for v, text in known.items() if v != expected],
        "hint": hint,
    }


def _table_ex5_1a(given: GivenData) -> dict:
    dense, nonzero, kernel_size = _course_2d(given)
    inputs = given.height * given.width
    outputs = dense // inputs
    known = {
        dense + outputs: "that adds a bias per output; count only the weights (no bias here)",
        inputs * inputs: "that is a square layer; the convolution has fewer outputs than inputs",
        nonzero: "that counts only the nonzero entries; a dense layer trains every entry",
        kernel_size: "that is the kernel's size; a dense layer has its own weight everywhere",
    }
    return _count_table(
        "n_params_dense",
        dense,
        "a dense (fully connected) layer from the image to the output has one weight for every "
        "(output, input) pair: think of the shape of its weight matrix",
        known,
    )


def _table_ex5_1b(given: GivenData) -> dict:
    dense, nonzero, kernel_size = _course_2d(given)
    known = {
        kernel_size: "that is the number of distinct kernel weights; each of them appears in "
        "many rows of the matrix",
        dense: "that counts every entry of the matrix, zero or not",
    }
    return _count_table(
        "n_nonzero_toeplitz",
        nonzero,
        "count the entries of the block-Toeplitz matrix that hold a kernel weight (the kernel "
        "has no zero): how many in each row, and how many rows?",
        known,
    )


def _table_ex5_1c(given: GivenData) -> dict:
    dense, nonzero, kernel_size = _course_2d(given)
    known = {
        kernel_size + 1: "no bias here: count only the kernel's weights",
        nonzero: "that counts the nonzero entries of the matrix; the layer stores each kernel "
        "weight once and reuses it at every position",
        dense: "that is the dense layer's count; a convolution shares its weights",
    }
    return _count_table(
        "n_params_kernel",
        kernel_size,
        "a convolution layer trains only its kernel (no bias here): count the kernel's weights",
        known,
    )


# -- sets of shifts ---------------------------------------------------------------------------


def equivariant_shifts(padding: int, given: GivenData = DEFAULT_DATA) -> set[int]:
    """The shifts in ``given.shifts`` that commute with the course's Conv1d (w_1d) on x_1d."""
    return variant.equivariant_shifts(given, padding)


def _shifts_table(name: str, padding: int, given: GivenData) -> dict:
    members = equivariant_shifts(padding, given)
    return {
        "kind": "shifts",
        "name": name,
        "padding": padding,
        "shifts": [given.shifts[0], given.shifts[-1]],
        "members": sorted(key("s", padding, n) for n in members),
        "count": len(members),
    }


# -- functions --------------------------------------------------------------------------------


def _case_1d(case: Any) -> dict:
    return {
        "args": [list(case.w), case.n, case.padding],
        "call": case.call(),
        "matrix": matrix_table_1d(case.w, case.n, case.p, with_counts=True),
    }


def _case_2d(case: Any) -> dict:
    return {
        "args": [[list(r) for r in case.kernel], case.H, case.W],
        "call": case.call(),
        "matrix": matrix_table_2d(case.kernel, case.H, case.W, with_counts=True),
    }


def _case_counts(case: Any) -> dict:
    expected = list(reference.param_counts(case.H, case.W, case.R, case.S))
    return {
        "args": [case.H, case.W, case.R, case.S],
        "call": case.call(),
        "right": key("t", expected),
        "sorted": key("t", sorted(expected)),
        "each": [key("e", i, v) for i, v in enumerate(expected)],
    }


def conv_length(n: int, k: int, padding: int | None) -> int:
    """The output length torch's own convolution gives (not a formula of ours)."""
    x = torch.zeros(1, 1, n, dtype=torch.float64)
    w = torch.zeros(1, 1, k, dtype=torch.float64)
    return torch.nn.functional.conv1d(x, w, padding=padding or 0).shape[-1]


_LENGTH_HINTS = {
    "ex1_1_test": "count the positions where a window of K entries fits entirely inside N "
    "entries (padding=0 never reads outside the input)",
    "ex2_1_test": "P zeros go at each end, so the window slides over N + 2P entries; count the "
    "positions where K of them fit",
}


def _case_length(case: Any) -> dict:
    """The right output length of ``case`` and the usual wrong formulas, each with its why."""
    n, k, p = case.n, case.k, case.padding
    expected = conv_length(n, k, p)
    if p is None:
        known = [
            (
                n - k,
                "that is N - K, one short: the window's first position counts too (it can "
                "start at 0, 1, ..., N - K)",
            ),
            (n - k + 2, "that is N - K + 2, one too many: the last window starts at N - K"),
            (
                n,
                "that is the number of inputs; without padding the kernel must fit entirely "
                "inside x",
            ),
            (
                n + k - 1,
                "that is the length of a 'full' convolution (numpy.convolve's default); "
                "nn.Conv1d with padding=0 keeps only the positions where the whole kernel fits",
            ),
        ]
    else:
        known = [
            (
                n - k + 1,
                "that is the length without padding: P zeros at each end give the window "
                "2P more positions",
            ),
            (
                n - k + p + 1,
                "that counts the padding once; P zeros go at *each* end of x, so the "
                "window slides over N + 2P entries",
            ),
            (
                n - k + 2 * p,
                "that is one short: on N + 2P entries the window starts at 0, 1, ..., N + 2P - K",
            ),
            (n - k + 2 * p + 2, "that is one too many: the last window starts at N + 2P - K"),
            (n + 2 * p, "that is the length of the padded input, not the number of windows in it"),
            (n - k + 3, "that is the length for padding 1: use the P the function is given"),
            (n, "that is the input's length: padding keeps it only when 2P = K - 1"),
        ]
    # Every formula on every case, even where two agree: the judge names the one formula that
    # explains all the answers, which a single case cannot tell.
    listed = [[key("c", value), text] for value, text in known if value != expected]
    return {
        "args": [n, k, p],
        "call": case.call(),
        "right": key("c", expected),
        "known": listed,
    }


def _case_same(case: Any) -> dict:
    """The padding that keeps N inputs N outputs for a kernel of K (by torch), or "none".

    It does not depend on N; N is longer than every case's kernel, so torch takes every P."""
    n, k = 16, case.k
    keeps = [p for p in range(k + 1) if conv_length(n, k, p) == n]
    expected: Any = keeps[0] if keeps else "none"
    half = k // 2
    known: list[tuple[Any, str]] = [
        (
            "none",
            "a P exists for this K: with P zeros at each end the output has N + 2P - K + 1 "
            "entries; solve N + 2P - K + 1 = N for P",
        ),
        (
            half,
            f"with K = {k}, P = {half} gives N + {2 * half - k + 1} outputs, not N: the output "
            "keeps N entries only when 2P = K - 1",
        ),
        (
            k - 1,
            "that pads K - 1 zeros at each end: the output grows by K - 1 (that is 'full' "
            "padding); the output keeps N entries when 2P = K - 1",
        ),
        (k, "that pads K zeros at each end: the output gets longer than the input"),
        (0, "padding 0 is the unpadded convolution: it shortens the output by K - 1"),
        (half + 1, "that pads too much: the output gets longer than the input"),
    ]
    listed = []
    seen = {key("p", expected)}
    for value, text in known:
        if key("p", value) not in seen:
            seen.add(key("p", value))
            listed.append([key("p", value), text])
    return {"args": [k], "call": case.call(), "right": key("p", expected), "known": listed}


#: The padding of Part 2's kernel builder (its length and Part 4's image are the variant's).
PADDED_P = 1

_OTHER_KERNEL = (
    "it returns the matrix of the notebook's kernel, not of the kernel it is given: build it "
    "from the entries of its argument"
)


def _with_course_variant(matrix: dict, course: list[list[float]]) -> dict:
    course_key = key("m", course)
    if course_key != matrix["right"] and all(k != course_key for k, _ in matrix["variants"]):
        matrix["variants"].insert(0, [course_key, _OTHER_KERNEL])
    return matrix


def _case_padded_matrix(case: Any, given: GivenData = DEFAULT_DATA) -> dict:
    w = [float(v) for v in case.kernel]
    matrix = matrix_table_1d(w, given.length, PADDED_P, with_counts=True)
    course = _matrix_list(reference.toeplitz_1d(list(given.w_1d), given.length, PADDED_P))
    return {
        "args": [w],
        "call": case.call(),
        "matrix": _with_course_variant(matrix, course),
    }


def _case_block_matrix(case: Any, given: GivenData = DEFAULT_DATA) -> dict:
    k = [[float(v) for v in row] for row in case.kernel]
    matrix = matrix_table_2d(k, given.height, given.width, with_counts=True)
    kernel = [list(row) for row in given.kernel_2d]
    course = _matrix_list(reference.block_toeplitz_2d(kernel, given.height, given.width))
    return {
        "args": [k],
        "call": case.call(),
        "matrix": _with_course_variant(matrix, course),
    }


def _reference_conv(case: CaseGap):
    w = torch.tensor(case.kernel, dtype=torch.float64).view(1, 1, -1)
    return lambda v: torch.nn.functional.conv1d(v, w, padding=case.padding)


def _case_gap(case: CaseGap) -> dict:
    """What a right ``equivariance_gap`` and the typical wrong ones return on ``case``."""
    f = _reference_conv(case)
    x = torch.tensor([case.x], dtype=torch.float64)
    tau = reference.make_shift(case.n)
    d = f(tau(x)) - tau(f(x))
    rolled = f(torch.roll(x, case.n, -1)) - torch.roll(f(x), case.n, -1)
    variants = {
        "sum": float(d.abs().sum()),
        "mean": float(d.abs().mean()),
        "signed": float(d.max()),
        "signed_reversed": float((-d).max()),
        "roll": float(rolled.abs().max()),
        "opposite": reference.equivariance_gap(f, x, -case.n),
        "output_unshifted": float((f(tau(x)) - f(x)).abs().max()),
    }
    return {
        "args": [list(case.kernel), case.padding, list(case.x), case.n],
        "call": case.call(),
        "expected": reference.equivariance_gap(f, x, case.n),
        "variants": variants,
    }


# -- Part 6 -----------------------------------------------------------------------------------


def _part6_case(case: CaseCall) -> dict:
    return {
        "args": [list(a) if isinstance(a, tuple) else a for a in case.args],
        "params": list(case.params),
        "fn": case.name,
        "call": case.call(),
    }


def _matrix_variants(
    t: list[list[float]], candidates: Sequence[tuple[Any, str]]
) -> tuple[list[tuple[Any, str]], list[tuple[list[int], str]]]:
    """Split wrong matrices (builders that may not fit) into same-shape variants and shapes."""
    variants: list[tuple[Any, str]] = []
    shapes: list[tuple[list[int], str]] = []
    for build, text in candidates:
        try:
            m = _matrix_list(build())
        except ValueError:  # that wrong configuration has no output at all
            continue
        if not m or not m[0]:
            continue
        if [len(m), len(m[0])] == [len(t), len(t[0])]:
            variants.append((m, text))
        else:
            shapes.append(([len(m), len(m[0])], text + " (got shape {shape})"))
    return variants, shapes


_PART6_SAME_ROWS = "every row is the same: each output's window starts at its own input"


def _part6_matrix_case(case: CaseCall, t: list, candidates: list, shape_text: str) -> dict:
    """A Part 6 matrix case: the right matrix ``t`` and each candidate mistake's, judged as the
    other matrix exercises are (``shape_text`` says what the shape should be)."""
    variants, shapes = _matrix_variants(t, candidates)
    return _part6_case(case) | {
        "matrix": _matrix_table(
            t,
            variants,
            shapes,
            shape_text,
            "expected a 2-D matrix (rows = outputs, columns = inputs), got shape {shape}",
            None,
            "",
            None,
            _PART6_SAME_ROWS,
        )
    }


def _case_general(case: CaseCall) -> dict:
    w, n, p, s, d = case.args
    w = list(w)
    t = _matrix_list(reference.toeplitz_general(w, n, p, s, d))

    def build(**changed: Any):
        args = {"w": w, "n": n, "padding": p, "stride": s, "dilation": d} | changed
        return lambda: reference.toeplitz_general(**args)

    def every_sth_row_from(first: int):
        return lambda: reference.toeplitz_general(w, n, p, 1, d)[first::s]

    candidates: list[tuple[Any, str]] = [
        (build(w=w[::-1]), _FLIPPED_1D),
        (lambda: torch.tensor(_transpose(t)), _TRANSPOSED),
    ]
    if s > 1:
        candidates += [
            (
                build(stride=1),
                f"keeps every output of the stride-1 convolution: stride {s} "
                f"keeps one row in {s} of it (rows 0, {s}, {2 * s}, ...)",
            ),
            (
                every_sth_row_from(s - 1),
                f"keeps rows {s - 1}, {2 * s - 1}, ... of the stride-1 "
                "matrix; the first output is the window at position 0, so keep rows 0, "
                f"{s}, {2 * s}, ...",
            ),
        ]
    if d > 1:
        candidates.append(
            (
                build(dilation=1),
                f"ignores the dilation: with dilation {d} the kernel's weights "
                f"sit {d} inputs apart, w[k] multiplies x[i*stride + k*{d} - padding]",
            )
        )
    if s != d:
        candidates.append(
            (
                build(stride=d, dilation=s),
                "swaps stride and dilation: the stride moves the "
                "window from one output to the next, the dilation spaces the kernel's weights",
            )
        )
    if p:
        candidates.append(
            (
                build(padding=0),
                f"leaves out the padding: padding={p} adds {p} zeros at each end "
                "of x; they get no column, but they shift every window and add outputs",
            )
        )
    shape_text = (
        "returned shape {shape}: {problem} (one row per output, one column per input; "
        f"this case has {n} inputs)"
    )
    return _part6_matrix_case(case, t, candidates, shape_text)


def _case_transposed(case: CaseCall) -> dict:
    w, L, s = case.args
    w = list(w)
    t = _matrix_list(reference.transposed_matrix(w, L, s))
    n = reference.transposed_length(L, len(w), s)
    candidates: list[tuple[Any, str]] = [
        (
            lambda: reference.toeplitz_general(w, n, 0, s),
            "that is T, the matrix of the convolution (L outputs from its inputs): the transposed "
            "convolution goes back the other way, its matrix is T transposed",
        ),
        (
            lambda: reference.transposed_matrix(w[::-1], L, s),
            "your matrix holds the flipped kernel: ConvTranspose1d uses the same weights as "
            "Conv1d, so its matrix is the transpose of Conv1d's matrix with the kernel as it is",
        ),
    ]
    if s > 1:
        candidates.append(
            (
                lambda: reference.transposed_matrix(w, L, 1),
                f"ignores the stride: with stride {s} the L inputs land {s} outputs apart",
            )
        )
    if L * s != n:  # only its shape is known: a placeholder of that shape
        candidates.append(
            (
                lambda: torch.zeros(L * s, L),
                f"has L*stride rows; the last input still spreads over K outputs: (L - 1)*{s} + K",
            )
        )
    shape_text = (
        "returned shape {shape}: {problem} (one row per output of the transposed convolution, "
        f"one column per each of its {L} inputs)"
    )
    return _part6_matrix_case(case, t, candidates, shape_text)


def _length_mistakes(N: int, K: int, P: int, s: int, d: int) -> dict[str, int]:
    span = N + 2 * P - d * (K - 1) - 1
    return {
        "no_dilation": (N + 2 * P - K) // s + 1,
        "dilation_times_k": (N + 2 * P - d * K) // s + 1,
        "no_stride": span + 1,
        "no_plus_one": span // s,
        "divides_positions": (span + 1) // s,
        "ceil": -(-span // s) + 1,
        "padding_once": (N + P - d * (K - 1) - 1) // s + 1,
    }


_LENGTH_MISTAKES = [
    [
        "no_stride",
        "ignores the stride: with stride s only every s-th window position gives an output",
    ],
    [
        "no_dilation",
        "ignores the dilation: a kernel of K weights dilated by d spans d(K-1)+1 inputs",
    ],
    [
        "dilation_times_k",
        "takes the dilated kernel's span as d*K inputs; its K weights sit d "
        "apart, so it spans d(K-1)+1",
    ],
    ["padding_once", "pads only one end: padding=P adds P zeros at each end, 2P in all"],
    [
        "no_plus_one",
        "forgets the first output: the window at position 0 always gives one, then "
        "one more every s positions (the + 1)",
    ],
    [
        "divides_positions",
        "divides the number of window positions by the stride; the window at "
        "position 0 always counts, the others come every s positions: (positions - 1) // s + 1",
    ],
    [
        "ceil",
        "rounds up; a window that would hang over the end of the padded input gives no "
        "output: round down (//)",
    ],
]


def _case_output_length(case: CaseCall) -> dict:
    N, K, P, s, d = case.args
    mistakes = _length_mistakes(N, K, P, s, d)
    return _part6_case(case) | {
        "right": key("c", reference.conv_output_length(N, K, P, s, d)),
        "known": {m: key("c", v) for m, v in mistakes.items()},
    }


def _cnn_mistakes(channels: Sequence[int], K: int) -> dict[str, int]:
    pairs = list(zip(channels[:-1], channels[1:], strict=True))
    return {
        "no_bias": sum(o * i * K for i, o in pairs),
        "bias_in": sum(o * i * K + i for i, o in pairs),
        "no_grid": sum(o * K + o for i, o in pairs),
        "one_bias": sum(o * i * K + 1 for i, o in pairs),
        "first_layer": pairs[0][1] * pairs[0][0] * K + pairs[0][1],
    }


_CNN_MISTAKES = [
    ["no_bias", "forgets the biases: each layer adds one bias per output channel"],
    ["bias_in", "counts a bias per input channel; a layer has one per output channel"],
    [
        "no_grid",
        "gives each output channel one kernel of K weights; it has one per input "
        "channel: a C_out x C_in grid of kernels",
    ],
    ["one_bias", "gives each layer a single bias; it has one per output channel"],
    [
        "first_layer",
        "counts only the first layer; every pair of consecutive channel counts is a layer",
    ],
]


def _case_cnn(case: CaseCall) -> dict:
    channels, K = list(case.args[0]), case.args[1]
    return _part6_case(case) | {
        "right": key("c", reference.cnn_param_count(channels, K)),
        "known": {m: key("c", v) for m, v in _cnn_mistakes(channels, K).items()},
    }


#: The judge's extra words for Part 6's whole-number functions.
_NUMBER_TABLES = {
    "ex6_1_test": {
        "mistakes": _LENGTH_MISTAKES,
        "what": "a length",
        "hint": "the number of outputs of nn.Conv1d with these settings",
    },
    "ex6_4_test": {
        "mistakes": _CNN_MISTAKES,
        "what": "a count",
        "hint": "the number of parameters (weights and biases) of these Conv1d layers",
    },
}


#: The function exercises: the judge's kind and how one case's table is built.
_FUNCTIONS = {
    "ex1_1_test": ("length", _case_length),
    "ex2_1_test": ("length", _case_length),
    "ex2_2_test": ("kernel_1d", _case_padded_matrix),
    "ex2_3_test": ("same", _case_same),
    "ex4_1_test": ("kernel_2d", _case_block_matrix),
    "ex1_3_test": ("toeplitz_1d", _case_1d),
    "ex3_1_test": ("gap", _case_gap),
    "ex4_2_test": ("toeplitz_2d", _case_2d),
    "ex5_2_test": ("counts", _case_counts),
    "ex6_1_test": ("numbers", _case_output_length),
    "ex6_2_test": ("matrices", _case_general),
    "ex6_3_test": ("matrices", _case_transposed),
    "ex6_4_test": ("numbers", _case_cnn),
}

#: The exercises whose one answer is built from the course's data (``given``).
_VALUES = {
    "ex1_2_test": _table_ex1_2,
    "ex3_2_test": lambda given: _shifts_table("equivariant_shifts_valid", 0, given),
    "ex3_3_test": lambda given: _shifts_table("equivariant_shifts_padded", 1, given),
    "ex5_1a_test": _table_ex5_1a,
    "ex5_1b_test": _table_ex5_1b,
    "ex5_1c_test": _table_ex5_1c,
}

#: Function exercises whose table also names the course's own kernel (as a known mistake).
_GIVEN_CASES = {"ex2_2_test", "ex4_1_test"}

#: The exercises whose right answer differs from one variant to the next: the matrix and the
#: sets built from the data, and what the sizes decide (Exercise 2.2's matrix is N x N, 4.1's is
#: the image's, and so are the first two counts of 5.1). The other function exercises are rules,
#: right in every variant, and the kernel's count (5.1c) is 9 in all.
VARIANT_DEPENDENT = (
    "ex1_2_test",
    "ex2_2_test",
    "ex3_2_test",
    "ex3_3_test",
    "ex4_1_test",
    "ex5_1a_test",
    "ex5_1b_test",
)

EXERCISES_CHECKED = frozenset(_VALUES) | frozenset(_FUNCTIONS)


def table(
    grade_id: str, cases: Sequence[Any] | None = None, given: GivenData = DEFAULT_DATA
) -> dict:
    """The table ``selfcheck.judge`` checks an answer to ``grade_id`` against (plain JSON), for
    the course's data ``given`` (a variant's; by default the default variant's).

    A function exercise's table covers ``cases``, by default every case the grader calls.
    """
    lookup(grade_id, dict.fromkeys(EXERCISES_CHECKED))
    if grade_id in _VALUES:
        return _VALUES[grade_id](given)
    kind, build_case = _FUNCTIONS[grade_id]
    cases = CASES[grade_id] if cases is None else cases
    if grade_id in _GIVEN_CASES:
        built = [build_case(c, given) for c in cases]
    else:
        built = [build_case(c) for c in cases]
    out = {"kind": kind, "name": _name(grade_id), "cases": built}
    if kind == "length":
        out["hint"] = _LENGTH_HINTS[grade_id]
    if kind == "same":
        out["hint"] = (
            "with P zeros at each end the output has N + 2P - K + 1 entries: which whole P makes "
            "that N? (return None when none does)"
        )
    return out | _NUMBER_TABLES.get(grade_id, {})


@functools.cache
def _grader_table(grade_id: str, given: GivenData = DEFAULT_DATA) -> dict:
    return table(grade_id, given=given)


def _name(grade_id: str) -> str:
    exercise = contract.BY_TEST_ID.get(grade_id)
    return exercise.name if exercise else grade_id


# -- variants ---------------------------------------------------------------------------------


def distinct(given: GivenData) -> bool:
    """No known mistake of the exercises built from ``given`` has the right answer's key (the
    grader's condition on a variant's draw: each mistake must be told from the answer)."""
    collisions: list[str] = []
    _table_ex1_2(given, collisions)
    kernel = [list(row) for row in given.kernel_2d]
    matrix_table_2d(kernel, given.height, given.width, with_counts=True, collisions=collisions)
    matrix_table_1d(given.w_1d, given.length, PADDED_P, with_counts=True, collisions=collisions)
    return not collisions


@functools.cache
def given_data(name: str | None) -> GivenData:
    """The data of variant ``name`` as the grader judges it (``variant.given`` with the
    grader's own condition, ``distinct``)."""
    return variant.given(name, accept=distinct)


class OldAnswer(CheckFailure):
    """The answer is right, but for another variant's data (``variant`` names it)."""

    def __init__(self, message: str, variant_name: str):
        super().__init__(message)
        self.variant = variant_name


def _keys(table: Any) -> set[str]:
    """Every key in a table (right answers and known mistakes alike: ``selfcheck.key``'s 24
    hexadecimal digits, as a JSON string of their own)."""
    return set(re.findall(r'"([0-9a-f]{24})"', json.dumps(table)))


def old_answer(
    grade_id: str, payload: Any, others: Sequence[GivenData], given: GivenData | None = None
) -> str | None:
    """The name of the first variant in ``others`` whose right answer ``payload`` is, or None.

    With ``given`` (the notebook's variant), a variant whose right answer is a mistake the
    notebook's own table names is passed over: a block_matrix built for 4x6 where the image is
    6x4 is the H/W mix-up its check explains, though it is also a 4x6 term's answer, and the
    student is told the mistake, not suspected of copying."""
    if grade_id not in VARIANT_DEPENDENT:
        return None
    mistakes: set[str] = set()
    if given is not None:
        here = _grader_table(grade_id, given)
        mistakes = _keys(here) - set(_right_keys(here))
    for other in others:
        theirs = set(_right_keys(_grader_table(grade_id, other)))
        if theirs and theirs <= mistakes:
            continue
        try:
            selfcheck.judge(_grader_table(grade_id, other), payload)
        except Exception:  # wrong for that variant too, or malformed: not its answer
            continue
        return other.name
    return None


def _right_keys(table: Any) -> list[str]:
    """Every key of a table that says what a right answer is (``"right"``, a set's
    ``"members"``), in order, case by case."""
    if isinstance(table, dict):
        own = [table["right"]] if isinstance(table.get("right"), str) else []
        own += sorted(table["members"]) if isinstance(table.get("members"), list) else []
        return own + [
            k for key, v in table.items() if key not in ("right", "members") for k in _right_keys(v)
        ]
    if isinstance(table, list):
        return [k for v in table for k in _right_keys(v)]
    return []


def shared_answers(given: GivenData, other: GivenData) -> list[str]:
    """The variant-dependent exercises (test grade ids) whose right answer is the same in
    ``given`` and ``other``: a copy of the other term's answer is right there, not old."""
    return [
        grade_id
        for grade_id in VARIANT_DEPENDENT
        if _right_keys(_grader_table(grade_id, given))
        == _right_keys(_grader_table(grade_id, other))
    ]


def _course_variants() -> tuple[GivenData, tuple[GivenData, ...]]:
    """The variant of the course this process runs in, found from the working directory up
    (an unconfined kernel's: the instructor's JupyterLab on ``source/``, stock ``nbgrader
    autograde`` in ``autograded/``); the default where no course is found."""
    return _variants_of_root(_course_root(Path(os.getcwd())))


def _course_root(start: Path) -> Path | None:
    from .coursedir import CONFIG_FILE

    for folder in (start, *start.parents):
        if (folder / CONFIG_FILE).is_file():
            return folder
    return None


@functools.cache
def _variants_of_root(root: Path | None) -> tuple[GivenData, tuple[GivenData, ...]]:
    """The variant ``root``'s ``source/`` was built in, as its first notebook records it: what
    the notebooks being run were made from. Not ``nbgrader_config.py``: executing it costs a
    kernel a third of a second (it imports the grader's configuration), and the bench's stock
    run replaces it with nbgrader's defaults. Without the config the previous variants are not
    known; the default still counts, and the grader's ``VerifyAnswers`` knows them all.
    Notebooks another version drew otherwise (``drawn_otherwise``) are refused, not judged."""
    record = built_record(root)
    if record is not None and drawn_otherwise(*record):
        raise RuntimeError(drawn_otherwise_message(root, record[0]))
    return course_variants(record[0] if record is not None else variant.DEFAULT)


def built_variant(root: Path | None) -> str | None:
    """The variant ``root/source/`` records (its first notebook's metadata); None without one."""
    record = built_record(root)
    return None if record is None else record[0]


def built_record(root: Path | None) -> tuple[str, str | None] | None:
    """The variant ``root/source/`` records and the fingerprint of its numbers (its first
    notebook's metadata; the fingerprint None where none is recorded); None without a source."""
    if root is None:
        return None
    path = root / "source" / contract.ASSIGNMENT / f"{contract.NOTEBOOKS[0]}.ipynb"
    try:
        metadata = json.loads(path.read_text(encoding="utf-8")).get("metadata", {})
        section = metadata.get(variant.METADATA, {})
        name, data = section.get("variant"), section.get("data")
    except (OSError, ValueError, AttributeError):
        return None
    name = variant.canonical(name if isinstance(name, str) else None)
    return name, data if isinstance(data, str) else None


def drawn_otherwise(name: str, recorded: str | None) -> bool:
    """Whether notebooks recorded in variant ``name`` with the fingerprint ``recorded`` hold
    other numbers than today's draw of ``name`` (built by a version that drew it otherwise, or
    before fingerprints were recorded). The default's numbers are the committed ones: never."""
    name = variant.canonical(name)
    if name == variant.DEFAULT:
        return False
    return recorded != variant.fingerprint(given_data(name))


def drawn_otherwise_message(where: object, name: str) -> str:
    """What to do about notebooks :func:`drawn_otherwise` found (one line)."""
    return (
        f"{where}: source/ holds variant {name!r} as another version of toeplitz_course drew "
        f"it, not as this one draws {name!r}: grading or rebuilding it now would judge and "
        "rewrite it against other numbers. Grade this term with the version that built it, or "
        "start source/ again from the committed default notebooks and run `make build`"
    )


def course_variants(
    name: str, previous: Sequence[str] = ()
) -> tuple[GivenData, tuple[GivenData, ...]]:
    """The data of variant ``name`` and of every other variant whose answers are old answers
    there: ``previous`` and the default variant, which always counts as one."""
    given = given_data(name)
    names = dict.fromkeys(variant.canonical(n) for n in (variant.DEFAULT, *previous))
    others = tuple(given_data(n) for n in names if n != given.name)
    return given, others


def verify(
    grade_id: str,
    payload: Any,
    given: GivenData | None = None,
    others: Sequence[GivenData] | None = None,
) -> None:
    """Raise :class:`CheckFailure` with a teaching message unless ``payload`` is a right answer
    for the course's data ``given``; :class:`OldAnswer` when it is the right answer of one of
    ``others`` (earlier variants). Without ``given``, the course the working directory is in
    decides both."""
    lookup(grade_id, dict.fromkeys(EXERCISES_CHECKED))
    if given is None:
        given, found = _course_variants()
        others = found if others is None else others
    others = () if others is None else others
    try:
        selfcheck.judge(_grader_table(grade_id, given), payload)
    except CheckFailure as failure:
        matched = old_answer(grade_id, payload, [o for o in others if o != given], given)
        if matched is not None:
            raise OldAnswer(
                f"{_name(grade_id)}: this is the answer for other numbers than this notebook's "
                f"(variant {matched!r}); work it out for the numbers given here",
                matched,
            ) from None
        raise failure from None
    except (
        selfcheck.Malformed,
        KeyError,
        TypeError,
        ValueError,
        IndexError,
        AttributeError,
        ArithmeticError,
    ) as e:
        raise CheckFailure(
            f"{_name(grade_id)}: the recorded answer is malformed ({_text(e, 80)}); run the "
            "answer cell and this test cell again"
        ) from None
