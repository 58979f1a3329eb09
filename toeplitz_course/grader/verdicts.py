"""The verdicts: is a probed answer right, and if not, what is the mistake?

``verify(grade_id, payload)`` is pure: it looks at nothing but the payload (plain data written
by :mod:`toeplitz_course.kernel.probe` in the student's kernel and carried out on the answer
channel), computes the expected values with :mod:`toeplitz_course.course.reference`, and raises
:class:`CheckFailure` with a teaching message on the first problem. It runs in the grader's own
process (``VerifyAnswers``), which student code cannot reach; a grading kernel cannot import it.
The payload format is described in :mod:`toeplitz_course.kernel.probe`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..course import contract, reference
from ..kernel.cases import (
    CASES_1D,
    CASES_2D,
    CASES_COUNTS,
    CASES_GAP,
    CaseGap,
    _fmt,
)
from ..kernel.probe import _fmt_shape, _short_repr, _text, lookup

ATOL = 1e-5
RTOL = 1e-5
SHIFTS = range(-5, 6)
EQUIVARIANT_BELOW = 1e-6  # a shift "commutes" when the gap is below this


class CheckFailure(AssertionError):
    """An answer is wrong; the message says why without giving the answer away."""


class _Malformed(ValueError):
    """A payload that probe cannot have written (corrupted or forged)."""


def _decode(v: Any) -> float:
    if isinstance(v, bool):
        raise _Malformed("a bool where a number was recorded")
    if isinstance(v, (int, float)):
        return float(v)
    if v in ("nan", "inf", "-inf"):
        return float(v)
    raise _Malformed(f"{_short_repr(v)} where a number was recorded")


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= ATOL + RTOL * abs(b)


def _same(m: list[list[float]], t: list[list[float]]) -> bool:
    return all(
        _close(a, b)
        for row_m, row_t in zip(m, t, strict=True)
        for a, b in zip(row_m, row_t, strict=True)
    )


def _first_row_differing(m: list[list[float]], t: list[list[float]]) -> int:
    for r, (row_m, row_t) in enumerate(zip(m, t, strict=True)):
        if not all(_close(a, b) for a, b in zip(row_m, row_t, strict=True)):
            return r
    return -1


def _matvec(m: list[list[float]], x: Sequence[float]) -> list[list[float]]:
    # Wrapped as a one-column matrix so that _same can compare it.
    return [[sum(a * b for a, b in zip(row, x, strict=True))] for row in m]


def _transpose(m: list[list[float]]) -> list[list[float]]:
    return [list(col) for col in zip(*m, strict=True)]


def _shift_columns(m: list[list[float]], by: int) -> list[list[float]]:
    """Every row moved ``by`` columns to the right (left if negative), zeros entering."""
    cols = len(m[0]) if m else 0
    return [[row[j - by] if 0 <= j - by < cols else 0.0 for j in range(cols)] for row in m]


# --------------------------------------------------------------------------------------------
# Verifying: payload -> None or CheckFailure
# --------------------------------------------------------------------------------------------


def _no_answer(name: str) -> CheckFailure:
    return CheckFailure(f"no answer yet: {name} has no value (it is None or ...)")


def _common(payload: Any, name: str) -> None:
    """Raise for a payload that is no answer at all (missing, unreadable, or not a dict)."""
    if not isinstance(payload, dict):
        raise _Malformed("not a dict")
    if payload.get("missing"):
        raise _no_answer(name)
    if "error" in payload:
        raise CheckFailure(f"{name}: {_text(payload['error'])}")


def _read_matrix(payload: dict) -> tuple[list[int], list[list[float]] | None]:
    shape = payload["shape"]
    if not isinstance(shape, list) or not all(
        isinstance(s, int) and not isinstance(s, bool) for s in shape
    ):
        raise _Malformed("bad shape")
    values = payload.get("values")
    if values is None:
        return shape, None
    if len(shape) != 2 or not isinstance(values, list) or len(values) != shape[0]:
        raise _Malformed("values do not match the shape")
    matrix = []
    for row in values:
        if not isinstance(row, list) or len(row) != shape[1]:
            raise _Malformed("values do not match the shape")
        matrix.append([_decode(v) for v in row])
    return shape, matrix


def _not_finite_row(m: list[list[float]]) -> int:
    for r, row in enumerate(m):
        if not all(math.isfinite(v) for v in row):
            return r
    return -1


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


def _shape_problem(got: Sequence[int], rows: int, cols: int) -> str:
    parts = []
    if got[0] != rows:
        parts.append("too many rows" if got[0] > rows else "too few rows")
    if got[1] != cols:
        parts.append("too many columns" if got[1] > cols else "too few columns")
    return " and ".join(parts)


def _diagnose_1d(
    shape: list[int],
    m: list[list[float]] | None,
    w: Sequence[float],
    n: int,
    p: int,
    *,
    course_x: Sequence[float] | None = None,
    with_counts: bool = False,
) -> str | None:
    """What is wrong with ``m`` as the matrix of ``conv1d(., w, padding=p)`` on n inputs, if any."""
    t = reference.toeplitz_1d(list(w), n, p).tolist()
    rows, cols = len(t), n
    if len(shape) != 2:
        return (
            f"expected a 2-D matrix (rows = outputs, columns = inputs), got shape "
            f"{_fmt_shape(shape)}"
        )
    if shape != [rows, cols]:
        if shape == [cols, rows]:
            return f"{_TRANSPOSED} (got shape {_fmt_shape(shape)})"
        if p and shape == [rows, n + 2 * p]:
            return (
                f"the matrix has shape {_fmt_shape(shape)}: a column for every position of the "
                "padded input; columns are the real inputs only - the padding zeros multiply "
                "nothing, so they need no column"
            )
        if with_counts:
            return (
                f"returned shape {_fmt_shape(shape)}; the convolution gives {rows} outputs from "
                f"{n} inputs (rows are outputs, columns are inputs)"
            )
        return (
            f"the matrix has shape {_fmt_shape(shape)}, but a convolution matrix has one row per "
            f"output and one column per input: {_shape_problem(shape, rows, cols)}"
        )
    if m is None:
        raise _Malformed("a matrix of the right shape without values")
    bad = _not_finite_row(m)
    if bad >= 0:
        return f"the matrix contains NaN or infinite entries (first in row {bad})"
    if _same(m, t):
        return None
    square = rows == cols
    transposed = square and _same(m, _transpose(t))
    if _same(m, reference.toeplitz_1d(list(w)[::-1], n, p).tolist()):
        note = ""
        if p:
            note = f" (x zero-padded by {p} at each end)"
        if transposed:
            note += "; for this square matrix that is also its transpose: rows are outputs"
        return _FLIPPED_1D + note
    if transposed:
        return _TRANSPOSED
    for by, side in ((1, "right"), (-1, "left")):
        banded = reference.banded_1d(list(w), rows, n, p - by).tolist()
        if _same(m, banded) or _same(m, _shift_columns(t, by)):
            start = "input i" if p == 0 else f"input i - {p} (padding zeros have no column)"
            return (
                f"the kernel pattern sits one column too far to the {side} in every row: "
                f"row i (output i) starts at {start}"
            )
    if course_x is not None and _same(_matvec(m, course_x), _matvec(t, course_x)):
        return (
            "the matrix gives the right output for the notebook's x_1d but is not the "
            "convolution's matrix: x_1d is zero at both ends, so some columns are never "
            "exercised by it - the matrix must be right for every input"
        )
    row = _first_row_differing(m, t)
    return f"row {row} (output y[{row}]) disagrees with the convolution"


def _diagnose_2d(
    shape: list[int],
    m: list[list[float]] | None,
    kernel: Sequence[Sequence[float]],
    H: int,
    W: int,
    *,
    course_x: Sequence[float] | None = None,
    with_counts: bool = False,
) -> str | None:
    """What is wrong with ``m`` as the matrix of the valid conv2d of an H x W input, or None."""
    k = [list(row) for row in kernel]
    t = reference.block_toeplitz_2d(k, H, W).tolist()
    r_len, s_len = len(k), len(k[0])
    h_out, w_out = H - r_len + 1, W - s_len + 1
    rows, cols = h_out * w_out, H * W
    if len(shape) != 2:
        return (
            f"expected a 2-D matrix (rows = outputs, columns = inputs, both flattened), got "
            f"shape {_fmt_shape(shape)}"
        )
    swapped = None
    if H != W and r_len <= W and s_len <= H:
        swapped = reference.block_toeplitz_2d(k, W, H).tolist()
    swapped_text = (
        f"the matrix is built for a {W}x{H} input, H and W swapped: H counts rows, W columns "
        "(index = row*W + col)"
    )
    if shape != [rows, cols]:
        if shape == [cols, rows] and rows != cols:
            return f"{_TRANSPOSED} (got shape {_fmt_shape(shape)})"
        if swapped is not None and shape == [len(swapped), W * H]:
            return swapped_text
        if with_counts:
            return (
                f"returned shape {_fmt_shape(shape)}; the convolution of a {H}x{W} input with a "
                f"{r_len}x{s_len} kernel gives {h_out}x{w_out} = {rows} outputs from {cols} "
                "inputs (rows are outputs, columns are inputs)"
            )
        return (
            f"the matrix has shape {_fmt_shape(shape)}, but a convolution matrix has one row per "
            "output and one column per input pixel, each flattened: "
            + _shape_problem(shape, rows, cols)
        )
    if m is None:
        raise _Malformed("a matrix of the right shape without values")
    bad = _not_finite_row(m)
    if bad >= 0:
        return f"the matrix contains NaN or infinite entries (first in row {bad})"
    if _same(m, t):
        return None
    for inputs, outputs, where in (
        (True, True, " of input and output"),
        (True, False, " of the input (columns)"),
        (False, True, " of the output (rows)"),
    ):
        variant = reference.block_toeplitz_2d_column_major(
            k, H, W, inputs=inputs, outputs=outputs
        ).tolist()
        if _same(m, variant):
            return _COLUMN_MAJOR.format(where=where)
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
        if _same(m, reference.block_toeplitz_2d(variant_kernel, H, W).tolist()):
            return text + _FLIPPED_2D
    if rows == cols and _same(m, _transpose(t)):
        return _TRANSPOSED
    if swapped is not None and len(swapped) == rows and _same(m, swapped):
        return swapped_text
    if course_x is not None and _same(_matvec(m, course_x), _matvec(t, course_x)):
        return (
            "the matrix gives the right output for the notebook's image but is not the "
            "convolution's matrix: the image has zeros, so some entries are never exercised "
            "by it - the matrix must be right for every input"
        )
    row = _first_row_differing(m, t)
    return f"row {row} (output y[{row // w_out}, {row % w_out}]) disagrees with the convolution"


def _verify_matrix(
    payload: Any, name: str, diagnose: Callable[[list[int], list[list[float]] | None], str | None]
) -> None:
    _common(payload, name)
    shape, m = _read_matrix(payload)
    problem = diagnose(shape, m)
    if problem:
        raise CheckFailure(f"{name}: {problem}")


def _verify_ex1_2(payload: Any) -> None:
    _verify_matrix(
        payload,
        "linear_layer",
        lambda shape, m: _diagnose_1d(
            shape, m, reference.W_1D, len(reference.X_1D), 0, course_x=reference.X_1D
        ),
    )


def _verify_ex2_2(payload: Any) -> None:
    _verify_matrix(
        payload,
        "linear_layer_pad",
        lambda shape, m: _diagnose_1d(
            shape, m, reference.W_1D, len(reference.X_1D), 1, course_x=reference.X_1D
        ),
    )


def _course_image_flat() -> list[float]:
    return [float(v) for row in reference.IMG_2D for v in row]


def _verify_ex4_1(payload: Any) -> None:
    height, width = len(reference.IMG_2D), len(reference.IMG_2D[0])
    _verify_matrix(
        payload,
        "fc2d",
        lambda shape, m: _diagnose_2d(
            shape, m, reference.KERNEL_2D, height, width, course_x=_course_image_flat()
        ),
    )


# -- counts -----------------------------------------------------------------------------------


def _course_1d_rows(padding: int) -> int:
    return reference.toeplitz_1d(reference.W_1D, len(reference.X_1D), padding).shape[0]


def _course_2d() -> tuple[int, int, int]:
    """(entries, nonzero entries) of the course's block-Toeplitz matrix and its kernel size."""
    t = reference.block_toeplitz_2d(
        reference.KERNEL_2D, len(reference.IMG_2D), len(reference.IMG_2D[0])
    )
    kernel_size = len(reference.KERNEL_2D) * len(reference.KERNEL_2D[0])
    return t.numel(), int((t != 0).sum()), kernel_size


def _read_count(payload: Any, name: str) -> int:
    _common(payload, name)
    value = _decode(payload["value"])
    if not math.isfinite(value):
        raise CheckFailure(f"{name}: is NaN or infinite; a count is a whole number")
    if value != int(value):
        raise CheckFailure(f"{name}: {_fmt(value)} is not a whole number; a count is")
    if value < 0:
        raise CheckFailure(f"{name}: a count cannot be negative")
    return int(value)


def _verify_count(payload: Any, name: str, expected: int, hint: str, known: dict[int, str]) -> None:
    value = _read_count(payload, name)
    if value == expected:
        return
    raise CheckFailure(f"{name}: {value} is not right: {known.get(value, hint)}")


def _verify_ex1_1(payload: Any) -> None:
    n, k_len = len(reference.X_1D), len(reference.W_1D)
    known = {
        n: "that is the number of inputs; without padding the kernel must fit entirely inside x",
        n + k_len - 1: "that is the length of a 'full' convolution (numpy.convolve's default); "
        "nn.Conv1d with padding=0 keeps only the positions where the whole kernel fits",
    }
    _verify_count(
        payload,
        "n_out_valid",
        _course_1d_rows(0),
        "count the positions where the whole kernel fits inside x_1d (padding=0 never reads "
        "outside the input)",
        known,
    )


def _verify_ex2_1(payload: Any) -> None:
    known = {
        _course_1d_rows(0): "that is the output length without padding; padding=1 adds a zero "
        "at both ends of x before the kernel slides over it",
    }
    _verify_count(
        payload,
        "n_out_padded",
        _course_1d_rows(1),
        "padding=1 adds one zero at each end of x; count the positions where the kernel fits "
        "in that longer input",
        known,
    )


def _verify_ex5_1a(payload: Any) -> None:
    dense, nonzero, kernel_size = _course_2d()
    inputs = len(reference.IMG_2D) * len(reference.IMG_2D[0])
    known = {
        inputs * inputs: "that is a square layer; the convolution has fewer outputs than inputs",
        nonzero: "that counts only the nonzero entries; a dense layer trains every entry",
        kernel_size: "that is the kernel's size; a dense layer has its own weight everywhere",
    }
    _verify_count(
        payload,
        "n_params_dense",
        dense,
        "a dense (fully connected) layer from the image to the output has one weight for every "
        "(output, input) pair: think of the shape of fc2d",
        known,
    )


def _verify_ex5_1b(payload: Any) -> None:
    dense, nonzero, kernel_size = _course_2d()
    known = {
        kernel_size: "that is the number of distinct kernel weights; each of them appears in "
        "many rows of the matrix",
        dense: "that counts every entry of the matrix, zero or not",
    }
    _verify_count(
        payload,
        "n_nonzero_toeplitz",
        nonzero,
        "count the entries of the block-Toeplitz matrix that hold a kernel weight (the kernel "
        "has no zero): how many in each row, and how many rows?",
        known,
    )


def _verify_ex5_1c(payload: Any) -> None:
    dense, nonzero, kernel_size = _course_2d()
    known = {
        kernel_size + 1: "no bias here: count only the kernel's weights",
        nonzero: "that counts the nonzero entries of the matrix; the layer stores each kernel "
        "weight once and reuses it at every position",
        dense: "that is the dense layer's count; a convolution shares its weights",
    }
    _verify_count(
        payload,
        "n_params_kernel",
        kernel_size,
        "a convolution layer trains only its kernel (no bias here): count the kernel's weights",
        known,
    )


# -- sets of shifts ---------------------------------------------------------------------------


def equivariant_shifts(padding: int) -> set[int]:
    """The shifts in ``SHIFTS`` that commute with the course's Conv1d (w = W_1D) on x_1d."""
    w = torch.tensor(reference.W_1D, dtype=torch.float64).view(1, 1, -1)
    x = torch.tensor([reference.X_1D], dtype=torch.float64)

    def conv(v: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.conv1d(v, w, padding=padding)

    return {n for n in SHIFTS if reference.equivariance_gap(conv, x, n) < EQUIVARIANT_BELOW}


def _plural(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def _verify_shifts(payload: Any, name: str, padding: int) -> None:
    _common(payload, name)
    ints, others = payload["ints"], payload["others"]
    if not isinstance(ints, list) or not all(
        isinstance(i, int) and not isinstance(i, bool) for i in ints
    ):
        raise _Malformed("ints")
    if not isinstance(others, list):
        raise _Malformed("others")
    if others:
        listed = ", ".join(_text(o, 60) for o in others[:3])
        verb = "is not an int" if len(others) == 1 else "are not ints"
        raise CheckFailure(f"{name}: {listed} {verb}; shifts are whole numbers, give them as ints")
    seen: set[int] = set()
    for i in ints:
        if i in seen:
            raise CheckFailure(
                f"{name}: lists the shift {i} more than once; give each shift once (a set does "
                "that for you)"
            )
        seen.add(i)
    outside = sorted(i for i in seen if i not in SHIFTS)
    if outside:
        raise CheckFailure(
            f"{name}: {', '.join(map(str, outside))} {'is' if len(outside) == 1 else 'are'} "
            f"outside the range {SHIFTS.start}..{SHIFTS.stop - 1} the exercise asks about"
        )
    expected = equivariant_shifts(padding)
    extra, missing = len(seen - expected), len(expected - seen)
    if not extra and not missing:
        return
    conv = "the convolution" if not padding else f"the convolution with padding={padding}"
    if extra and not missing:
        what = "one shift too many" if extra == 1 else f"{extra} shifts too many"
        detail = (
            f"{_plural(extra, 'of your shifts does', 'of your shifts do')} not commute with {conv}"
        )
    elif missing and not extra:
        what = "missing a shift" if missing == 1 else f"missing {missing} shifts"
        detail = (
            f"{_plural(missing, 'shift', 'shifts')} in {SHIFTS.start}..{SHIFTS.stop - 1} "
            f"{'commutes' if missing == 1 else 'commute'} with {conv} but "
            f"{'is' if missing == 1 else 'are'} not in your set"
        )
    else:
        what = "some shifts are wrong"
        detail = (
            f"{_plural(extra, 'of your shifts does', 'of your shifts do')} not commute with "
            f"{conv}, and {_plural(missing, 'shift that does is', 'shifts that do are')} missing"
        )
    raise CheckFailure(
        f"{name}: {what}: {detail}. Compute equivariance_gap for every n in "
        f"range({SHIFTS.start}, {SHIFTS.stop}) and keep those with gap < {EQUIVARIANT_BELOW:g}"
    )


# -- functions --------------------------------------------------------------------------------


def _read_results(payload: Any, name: str, cases: Sequence[Any]) -> list[dict]:
    _common(payload, name)
    results = payload["results"]
    if not isinstance(results, list) or len(results) != len(cases):
        raise _Malformed("wrong number of results")
    if not all(isinstance(r, dict) for r in results):
        raise _Malformed("a result is not a dict")
    if results and all(r.get("raised") == "NotImplementedError" for r in results):
        raise CheckFailure(f"no answer yet: {name} still raises NotImplementedError")
    return results


def _result_problem(result: dict, call: str) -> str | None:
    """The problem with a result that raised or returned nothing readable, else None."""
    if "raised" in result:
        message = _text(result.get("message", ""))
        return f"{call} raised {_text(result['raised'], 80)}" + (f": {message}" if message else "")
    if result.get("missing"):
        return f"{call} returned None - is the return statement missing?"
    if "error" in result:
        return f"{call}: {_text(result['error'])}"
    return None


def _join(call: str, problem: str) -> str:
    return f"{call} {problem}" if problem.startswith("returned") else f"{call}: {problem}"


def _verify_ex1_3(payload: Any) -> None:
    results = _read_results(payload, "toeplitz_1d", CASES_1D)
    for case, result in zip(CASES_1D, results, strict=True):
        problem = _result_problem(result, case.call())
        if problem:
            if case.padding is None and result.get("raised") == "TypeError":
                problem += " (padding should default to 0, so that toeplitz_1d(w, n) works)"
            raise CheckFailure(problem)
        shape, m = _read_matrix(result)
        problem = _diagnose_1d(shape, m, case.w, case.n, case.p, with_counts=True)
        if problem:
            raise CheckFailure(_join(case.call(), problem))


def _verify_ex4_2(payload: Any) -> None:
    results = _read_results(payload, "block_toeplitz_2d", CASES_2D)
    for case, result in zip(CASES_2D, results, strict=True):
        problem = _result_problem(result, case.call())
        if problem:
            raise CheckFailure(problem)
        shape, m = _read_matrix(result)
        problem = _diagnose_2d(shape, m, case.kernel, case.H, case.W, with_counts=True)
        if problem:
            raise CheckFailure(_join(case.call(), problem))


_COUNT_NAMES = (
    "first count (entries of the dense matrix: every (output, input) pair)",
    "second count (nonzero entries of the block-Toeplitz matrix: one kernel copy per output)",
    "third count (parameters of the convolution: its kernel weights, no bias)",
)


def _verify_ex5_2(payload: Any) -> None:
    results = _read_results(payload, "param_counts", CASES_COUNTS)
    for case, result in zip(CASES_COUNTS, results, strict=True):
        call = case.call()
        problem = _result_problem(result, call)
        if problem:
            raise CheckFailure(problem)
        counts = [_decode(v) for v in result["counts"]]
        if len(counts) != 3:
            raise CheckFailure(
                f"{call} returned {_plural(len(counts), 'value', 'values')}; expected 3 counts: "
                "(dense entries, nonzero entries, kernel parameters)"
            )
        for index, v in enumerate(counts):
            if not math.isfinite(v) or v != int(v):
                raise CheckFailure(
                    f"{call}: the {_COUNT_NAMES[index].split(' (')[0]} is {_fmt(v)}, not a whole "
                    "number"
                )
        got = [int(v) for v in counts]
        expected = list(reference.param_counts(case.H, case.W, case.R, case.S))
        if got == expected:
            continue
        shown = "(" + ", ".join(map(str, got)) + ")"
        if sorted(got) == sorted(expected):
            raise CheckFailure(
                f"{call} returned {shown}: the right numbers in the wrong order; return "
                "(dense entries, nonzero entries, kernel parameters)"
            )
        wrong = next(i for i in range(3) if got[i] != expected[i])
        raise CheckFailure(f"{call} returned {shown}: the {_COUNT_NAMES[wrong]} is wrong")


def _reference_conv(case: CaseGap) -> Callable[[torch.Tensor], torch.Tensor]:
    w = torch.tensor(case.kernel, dtype=torch.float64).view(1, 1, -1)
    return lambda v: torch.nn.functional.conv1d(v, w, padding=case.padding)


def _gap_variants(case: CaseGap) -> dict[str, float]:
    """What typical wrong implementations of equivariance_gap return on ``case``."""
    f = _reference_conv(case)
    x = torch.tensor([case.x], dtype=torch.float64)
    tau = reference.make_shift(case.n)
    d = f(tau(x)) - tau(f(x))
    rolled = f(torch.roll(x, case.n, -1)) - torch.roll(f(x), case.n, -1)
    return {
        "sum": float(d.abs().sum()),
        "mean": float(d.abs().mean()),
        "signed": float(d.max()),
        "signed_reversed": float((-d).max()),
        "roll": float(rolled.abs().max()),
        "opposite": reference.equivariance_gap(f, x, -case.n),
        "output_unshifted": float((f(tau(x)) - f(x)).abs().max()),
    }


_GAP_MISTAKES = {
    "sum": "adds up the differences; the gap is the largest |difference|: use .max(), not .sum()",
    "mean": "averages the differences; the gap is the largest |difference|: use .max()",
    "signed": "takes the max of the signed differences; take the absolute value first: the gap "
    "is max |f(tau_n(x)) - tau_n(f(x))|",
    "roll": "matches a circular shift (torch.roll); the course's shift lets zeros enter and drops "
    "what falls off the end: use make_shift(n)",
    "opposite": "matches the gap for the opposite shift -n; with make_shift, n > 0 moves entries "
    "to the right",
    "output_unshifted": "compares f(tau_n(x)) with f(x); the gap compares it with the shifted "
    "output tau_n(f(x))",
}


def _verify_ex3_1(payload: Any) -> None:
    results = _read_results(payload, "equivariance_gap", CASES_GAP)
    failures = []
    got_values: list[float] = []
    for case, result in zip(CASES_GAP, results, strict=True):
        problem = _result_problem(result, case.call())
        if problem:
            raise CheckFailure(problem)
        got = _decode(result["value"])
        got_values.append(got)
        if not math.isfinite(got):
            raise CheckFailure(f"{case.call()} returned {got}: the gap must be a finite number")
        if got < 0:
            raise CheckFailure(
                f"{case.call()} returned {_fmt(got)}: a gap is a maximum of absolute values, it "
                "cannot be negative"
            )
        expected = reference.equivariance_gap(
            _reference_conv(case), torch.tensor([case.x], dtype=torch.float64), case.n
        )
        if not _close(got, expected):
            failures.append((case, got, expected))
    if not failures:
        return
    case, got, expected = failures[0]
    variants = [_gap_variants(c) for c in CASES_GAP]
    for kind in (
        "sum",
        "mean",
        "signed",
        "signed_reversed",
        "roll",
        "opposite",
        "output_unshifted",
    ):
        if all(_close(g, v[kind]) for g, v in zip(got_values, variants, strict=True)):
            text = _GAP_MISTAKES[kind.replace("_reversed", "")]
            raise CheckFailure(f"equivariance_gap {text} (e.g. {case.call()} returned {_fmt(got)})")
    if expected == 0:
        hint = "but here the shift and the convolution commute exactly (gap 0)"
    elif got == 0:
        hint = "but here the shift and the convolution do not commute"
    else:
        hint = "which is not max |f(tau_n(x)) - tau_n(f(x))| here"
    raise CheckFailure(f"{case.call()} returned {_fmt(got)}, {hint}")


# --------------------------------------------------------------------------------------------
# The registry
# --------------------------------------------------------------------------------------------

_VERDICTS: dict[str, Callable[[Any], None]] = {
    "ex1_1_test": _verify_ex1_1,
    "ex1_2_test": _verify_ex1_2,
    "ex1_3_test": _verify_ex1_3,
    "ex2_1_test": _verify_ex2_1,
    "ex2_2_test": _verify_ex2_2,
    "ex3_1_test": _verify_ex3_1,
    "ex3_2_test": lambda p: _verify_shifts(p, "equivariant_shifts_valid", 0),
    "ex3_3_test": lambda p: _verify_shifts(p, "equivariant_shifts_padded", 1),
    "ex4_1_test": _verify_ex4_1,
    "ex4_2_test": _verify_ex4_2,
    "ex5_1a_test": _verify_ex5_1a,
    "ex5_1b_test": _verify_ex5_1b,
    "ex5_1c_test": _verify_ex5_1c,
    "ex5_2_test": _verify_ex5_2,
}

EXERCISES_CHECKED = frozenset(_VERDICTS)


def _name(grade_id: str) -> str:
    exercise = contract.BY_TEST_ID.get(grade_id)
    return exercise.name if exercise else grade_id


def verify(grade_id: str, payload: Any) -> None:
    """Raise :class:`CheckFailure` with a teaching message unless ``payload`` is a right answer."""
    check = lookup(grade_id, _VERDICTS)
    try:
        check(payload)
    except CheckFailure:
        raise
    except (
        _Malformed,
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
