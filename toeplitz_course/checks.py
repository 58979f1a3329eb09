"""Every autograded exercise as a *probe* and a *verify*, in one registry keyed by test grade_id.

``probe(grade_id, answer)`` runs in the student's kernel. It turns the answer into plain JSON data
and never raises for a bad answer: whatever it cannot read becomes ``{"error": message}`` for
``verify`` to report. For a function it calls the answer on the fixed case list of that exercise
(``CASES``), each call on fresh tensors, and records every return value or exception.

``verify(grade_id, payload)`` is pure: it looks at nothing but the payload, computes the expected
values with :mod:`toeplitz_course.reference`, and raises :class:`CheckFailure` with a teaching
message on the first problem. It runs both in the student's kernel and, on the payload taken from
the answer channel, in the grader's own process.

Payloads (JSON; a non-finite float is written as the string ``"nan"``, ``"inf"`` or ``"-inf"``):

* no answer (``None`` or ``...``): ``{"missing": true}``; unreadable answer: ``{"error": str}``
* matrix: ``{"shape": [rows, cols], "values": [[float, ...], ...]}``; ``values`` is left out when
  the answer is not 2-D or has more than ``MAX_ENTRIES`` entries (the shape alone is wrong then)
* count: ``{"value": int | float}``
* set of shifts: ``{"ints": [int, ...], "others": [str, ...]}`` (``others`` describes the items
  that are not ints), in the answer's iteration order so that duplicates show
* function: ``{"results": [result, ...]}``, one per case of ``CASES[grade_id]``, in order; a result
  is ``{"raised": type name, "message": str}`` or the returned value probed as above (a matrix, a
  ``{"value": ...}`` number, or ``{"counts": [...]}`` for ``param_counts``)
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from . import contract, reference

try:
    import numpy as np
except ImportError:  # pragma: no cover - numpy ships with torch's usual installs
    np = None

ATOL = 1e-5
RTOL = 1e-5
SHIFTS = range(-5, 6)
EQUIVARIANT_BELOW = 1e-6  # a shift "commutes" when the gap is below this
MAX_ENTRIES = 10_000  # far above any expected matrix (49 x 49); bigger answers keep only a shape
MAX_ITEMS = 1_000
MAX_TEXT = 300


class CheckFailure(AssertionError):
    """An answer is wrong; the message says why without giving the answer away."""


class UnknownExercise(KeyError):
    """No check is registered under this grade_id (a programming error, not a student's)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown exercise"


class _Malformed(ValueError):
    """A payload that probe cannot have written (corrupted or forged)."""


# --------------------------------------------------------------------------------------------
# Plain-data helpers shared by probe and verify
# --------------------------------------------------------------------------------------------


def _text(value: Any, limit: int = MAX_TEXT) -> str:
    try:
        s = str(value)
    except Exception:  # a hostile __str__ must not break probe
        s = f"<unprintable {type(value).__name__}>"
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _short_repr(value: Any) -> str:
    try:
        s = repr(value)
    except Exception:
        s = f"<{type(value).__name__}>"
    return s if len(s) <= 40 else s[:37] + "..."


def _describe_exception(e: BaseException) -> str:
    message = _text(e)
    return f"{type(e).__name__}: {message}" if message else type(e).__name__


def _a(noun: str) -> str:
    return ("an " if noun[:1].lower() in "aeiou" else "a ") + noun


def _encode(v: float) -> float | str:
    if math.isfinite(v):
        return v
    return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")


def _decode(v: Any) -> float:
    if isinstance(v, bool):
        raise _Malformed("a bool where a number was recorded")
    if isinstance(v, (int, float)):
        return float(v)
    if v in ("nan", "inf", "-inf"):
        return float(v)
    raise _Malformed(f"{_short_repr(v)} where a number was recorded")


def _is_np_bool(x: Any) -> bool:
    return np is not None and isinstance(x, np.bool_)


def _number(x: Any) -> int | float | str:
    """A Python number from a scalar-like answer; ``TypeError`` (student-readable) otherwise."""
    if isinstance(x, bool) or _is_np_bool(x):
        raise TypeError(f"got a bool ({x})")
    if isinstance(x, int):
        return int(x)
    if isinstance(x, float):
        return _encode(float(x))
    if np is not None and isinstance(x, np.generic):
        if isinstance(x, np.integer):
            return int(x)
        if isinstance(x, np.floating):
            return _encode(float(x))
        raise TypeError(f"got a numpy {type(x).__name__}")
    if isinstance(x, torch.Tensor):
        if x.dim() != 0:
            raise TypeError(f"got a tensor of shape {_fmt_shape(tuple(x.shape))}, not one number")
        if x.dtype == torch.bool or x.is_complex():
            raise TypeError(f"got a tensor of dtype {x.dtype}")
        return _number(x.item())
    if np is not None and isinstance(x, np.ndarray):
        if x.ndim != 0:
            raise TypeError(f"got an array of shape {_fmt_shape(x.shape)}, not one number")
        return _number(x[()])
    raise TypeError(f"got {_a(type(x).__name__)} ({_short_repr(x)})")


def _fmt(v: float) -> str:
    return f"{v + 0.0:g}"  # + 0.0 turns -0.0 into 0.0


def _fmt_list(values: Sequence[Any]) -> str:
    return (
        "[" + ", ".join(_fmt_list(v) if isinstance(v, Sequence) else _fmt(v) for v in values) + "]"
    )


def _fmt_shape(shape: Sequence[int]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


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
# Probing: answer -> plain data. Nothing here may raise for a bad answer.
# --------------------------------------------------------------------------------------------


def _is_missing(answer: Any) -> bool:
    return answer is None or answer is Ellipsis


def _read(obj: Any, reader, what: str) -> dict:
    """``reader(obj)`` as payload data; a missing answer or one that can't be read, recorded."""
    if _is_missing(obj):
        return {"missing": True}
    try:
        return reader(obj)
    except Exception as e:
        return {"error": f"could not read it as {what} ({_describe_exception(e)})"}


def _probe_matrix(obj: Any) -> dict:
    return _read(obj, _matrix_data, "a matrix")


def _matrix_data(obj: Any) -> dict:
    if isinstance(obj, torch.nn.Module):
        weight = getattr(obj, "weight", None)
        if not isinstance(weight, torch.Tensor):
            return {"error": f"{_a(type(obj).__name__)} has no weight matrix"}
        obj = weight
    if isinstance(obj, torch.Tensor):
        return _tensor_data(obj.detach())
    if np is not None and isinstance(obj, np.ndarray):
        if obj.dtype.kind in "iuf":
            return _tensor_data(torch.from_numpy(np.array(obj, dtype=np.float64)))
        if obj.dtype.kind != "O":
            return {"error": f"a numpy array of dtype {obj.dtype}: expected real numbers"}
        obj = obj.tolist()
    if isinstance(obj, (list, tuple)):
        return _nested_data(obj)
    return {
        "error": "expected a matrix (a torch tensor, a numpy array, a list of rows or an "
        f"nn.Linear), got {_a(type(obj).__name__)}"
    }


def _tensor_data(t: torch.Tensor) -> dict:
    if t.layout != torch.strided:
        t = t.to_dense()
    if t.dtype == torch.bool or t.is_complex():
        return {"error": f"a tensor of dtype {t.dtype}: expected real numbers"}
    shape = list(t.shape)
    if t.dim() != 2 or t.numel() > MAX_ENTRIES:
        return {"shape": shape}
    t = t.to(device="cpu", dtype=torch.float64)
    values = t.tolist()
    if not bool(torch.isfinite(t).all()):
        values = [[_encode(v) for v in row] for row in values]
    return {"shape": shape, "values": values}


def _is_row(r: Any) -> bool:
    if isinstance(r, (list, tuple)):
        return True
    if isinstance(r, torch.Tensor) or (np is not None and isinstance(r, np.ndarray)):
        return r.ndim >= 1
    return False


def _nested_data(rows: list | tuple) -> dict:
    if len(rows) > MAX_ENTRIES:
        return {"shape": [len(rows)]}
    if rows and not any(_is_row(r) for r in rows):
        return {"shape": [len(rows)]}  # a flat list: a vector, not a matrix
    values: list[list[float | str]] = []
    total = 0
    for index, row in enumerate(rows):
        if isinstance(row, torch.Tensor) or (np is not None and isinstance(row, np.ndarray)):
            if row.ndim != 1:
                return {"error": f"row {index} has shape {_fmt_shape(tuple(row.shape))}"}
            row = row.tolist()
        if not isinstance(row, (list, tuple)):
            return {"error": f"row {index} is {_a(type(row).__name__)}, not a list of numbers"}
        total += len(row)
        if total > MAX_ENTRIES:
            return {"shape": [len(rows), len(row)]}
        try:
            numbers = [_number(v) for v in row]
        except TypeError as e:
            return {"error": f"row {index} holds something that is not a number ({e})"}
        values.append([float(v) if isinstance(v, int) else v for v in numbers])
    lengths = sorted({len(v) for v in values})
    if len(lengths) > 1:
        return {"error": f"its rows have different lengths ({lengths[0]} and {lengths[-1]})"}
    return {"shape": [len(values), lengths[0] if lengths else 0], "values": values}


def _count_data(obj: Any) -> dict:
    try:
        return {"value": _number(obj)}
    except TypeError as e:  # _number's own explanation of what it got
        return {"error": f"expected a whole number, {e}"}


def _probe_count(obj: Any) -> dict:
    return _read(obj, _count_data, "a number")


def _probe_shifts(obj: Any) -> dict:
    return _read(obj, _shift_data, "a set of shifts")


def _shift_data(obj: Any) -> dict:
    not_a_collection = {
        "error": f"expected a collection of ints such as a set, got {_a(type(obj).__name__)}"
    }
    if isinstance(obj, (str, bytes, dict)):
        return not_a_collection
    if isinstance(obj, torch.Tensor) or (np is not None and isinstance(obj, np.ndarray)):
        if obj.ndim != 1:
            return {
                "error": "expected a collection of ints such as a set, got an array of shape "
                + _fmt_shape(tuple(obj.shape))
            }
        items = list(obj)
    else:
        try:
            iterator = iter(obj)
        except TypeError:
            return not_a_collection
        items = list(itertools.islice(iterator, MAX_ITEMS + 1))
    if len(items) > MAX_ITEMS:
        return {"error": f"more than {MAX_ITEMS} items: expected a few shifts"}
    ints: list[int] = []
    others: list[str] = []
    for item in items:
        value = _int_item(item)
        if value is None:
            others.append(f"{_short_repr(item)} ({type(item).__name__})")
        else:
            ints.append(value)
    return {"ints": ints, "others": others}


def _int_item(item: Any) -> int | None:
    if isinstance(item, bool) or _is_np_bool(item):
        return None
    if isinstance(item, int):
        return int(item)
    if np is not None and isinstance(item, np.integer):
        return int(item)
    if isinstance(item, torch.Tensor) and item.dim() == 0:
        if item.dtype in (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64):
            return int(item.item())
    return None


def _call(fn: Callable[..., Any], *args: Any) -> tuple[bool, Any]:
    try:
        return True, fn(*args)
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # SystemExit too: a student's function must not end the probe
        return False, {"raised": type(e).__name__, "message": _text(e)}


def _probe_function(answer: Any, name: str, calls: Callable[[Callable], list[dict]]) -> dict:
    if _is_missing(answer):
        return {"missing": True}
    if not callable(answer):
        return {"error": f"should be a function, got {_a(type(answer).__name__)}"}
    return {"results": calls(answer)}


def _probe_number_result(value: Any) -> dict:
    if value is None:
        return {"missing": True}
    try:
        return {"value": _number(value)}
    except TypeError as e:
        return {"error": f"returned something that is not a number: {e}"}
    except Exception as e:
        return {"error": f"returned something unreadable ({_describe_exception(e)})"}


def _probe_counts_result(value: Any) -> dict:
    if value is None:
        return {"missing": True}
    try:
        if isinstance(value, torch.Tensor) or (np is not None and isinstance(value, np.ndarray)):
            if value.ndim != 1:
                return {"error": f"returned an array of shape {_fmt_shape(tuple(value.shape))}"}
            value = list(value)
        if not isinstance(value, (tuple, list)):
            return {"error": f"returned {_a(type(value).__name__)}, not a tuple of 3 counts"}
        if len(value) > 10:
            return {"error": f"returned {len(value)} values, not a tuple of 3 counts"}
        return {"counts": [_number(v) for v in value]}
    except TypeError as e:
        return {"error": f"returned a tuple holding something that is not a number: {e}"}
    except Exception as e:
        return {"error": f"returned something unreadable ({_describe_exception(e)})"}


# --------------------------------------------------------------------------------------------
# The fixed cases of the function exercises. Seeded, so probe and verify (in another process)
# build the same list. Values are nonzero multiples of 1/4: exact in float32, so a student's
# float32 result and the float64 reference agree to the last bit.
# --------------------------------------------------------------------------------------------

_QUARTERS = [q / 4 for q in range(-8, 9) if q != 0]
_INPUT_VALUES = [q / 4 for q in range(-12, 13) if q != 0]


@dataclass(frozen=True)
class Case1D:
    w: tuple[float, ...]
    n: int
    padding: int | None  # None: called as toeplitz_1d(w, n), relying on padding's default of 0

    @property
    def p(self) -> int:
        return self.padding or 0

    def call(self) -> str:
        pad = "" if self.padding is None else f", padding={self.padding}"
        return f"toeplitz_1d(w={_fmt_list(self.w)}, n={self.n}{pad})"


@dataclass(frozen=True)
class CaseGap:
    kernel: tuple[float, ...]
    padding: int
    x: tuple[float, ...]
    n: int

    def call(self) -> str:
        return (
            f"equivariance_gap(f=Conv1d(kernel={_fmt_list(self.kernel)}, padding={self.padding}), "
            f"x=[{_fmt_list(self.x)}], n={self.n})"
        )


@dataclass(frozen=True)
class Case2D:
    kernel: tuple[tuple[float, ...], ...]
    H: int
    W: int

    def call(self) -> str:
        return f"block_toeplitz_2d(kernel={_fmt_list(self.kernel)}, H={self.H}, W={self.W})"


@dataclass(frozen=True)
class CaseCounts:
    H: int
    W: int
    R: int
    S: int

    def call(self) -> str:
        return f"param_counts(H={self.H}, W={self.W}, R={self.R}, S={self.S})"


def _cases_1d() -> tuple[Case1D, ...]:
    rng = random.Random(1301)
    course = tuple(float(v) for v in reference.W_1D)
    n_course = len(reference.X_1D)
    cases = [Case1D(course, n_course, None), Case1D(course, n_course, 1)]
    for k_len in range(1, 6):
        for padding in range(4):
            w = tuple(rng.choice(_QUARTERS) for _ in range(k_len))
            cases.append(Case1D(w, rng.randint(k_len, 12), padding))
    for k_len in (2, 3, 4):
        w = tuple(rng.choice(_QUARTERS) for _ in range(k_len))
        cases.append(Case1D(w, rng.randint(k_len, 12), None))
    return tuple(cases)


def _cases_gap() -> tuple[CaseGap, ...]:
    rng = random.Random(3101)
    w = tuple(float(v) for v in reference.W_1D)
    x = tuple(float(v) for v in reference.X_1D)
    cases = [CaseGap(w, 0, x, 2), CaseGap(w, 1, x, -1), CaseGap(w, 1, x, 3)]
    for index in range(18):
        k_len = rng.randint(2, 4)
        length = rng.randint(8, 14)
        # Zeros at the ends decide which shifts commute, so half the inputs have some.
        lead = rng.randint(1, 3) if index % 2 == 0 else 0
        trail = rng.randint(1, 3) if index % 2 == 0 else 0
        body = [rng.choice(_INPUT_VALUES) for _ in range(length - lead - trail)]
        cases.append(
            CaseGap(
                kernel=tuple(rng.choice(_QUARTERS) for _ in range(k_len)),
                padding=rng.randint(0, 1),
                x=tuple([0.0] * lead + body + [0.0] * trail),
                n=0 if index == 5 else rng.randint(-5, 5),
            )
        )
    return tuple(cases)


def _cases_2d() -> tuple[Case2D, ...]:
    rng = random.Random(4201)
    course = tuple(tuple(float(v) for v in row) for row in reference.KERNEL_2D)
    cases = [Case2D(course, len(reference.IMG_2D), len(reference.IMG_2D[0]))]
    shapes = [(1, 1), (1, 2), (2, 1), (2, 2), (1, 3), (3, 1), (2, 3), (3, 2), (3, 3)]
    shapes += [(2, 4), (4, 2), (3, 4), (4, 3), (4, 4), (1, 4), (4, 1), (2, 3), (3, 3)]
    for index, (r_len, s_len) in enumerate(shapes):
        kernel = tuple(tuple(rng.choice(_QUARTERS) for _ in range(s_len)) for _ in range(r_len))
        if index == len(shapes) - 2:
            height, width = r_len, s_len  # a single output
        else:
            height, width = rng.randint(r_len, 7), rng.randint(s_len, 7)
            # Unequal sides catch an H/W mix-up, which a square input hides.
            if height == width and index != len(shapes) - 1:
                width = width - 1 if width > s_len else width + 1
        cases.append(Case2D(kernel, height, width))
    return tuple(cases)


def _cases_counts() -> tuple[CaseCounts, ...]:
    rng = random.Random(5201)
    height, width = len(reference.IMG_2D), len(reference.IMG_2D[0])
    r_len, s_len = len(reference.KERNEL_2D), len(reference.KERNEL_2D[0])
    cases = [CaseCounts(height, width, r_len, s_len), CaseCounts(width, height, r_len, s_len - 1)]
    cases.append(CaseCounts(1, 1, 1, 1))
    for _ in range(12):
        height, width = rng.randint(1, 9), rng.randint(1, 9)
        cases.append(CaseCounts(height, width, rng.randint(1, height), rng.randint(1, width)))
    return tuple(cases)


CASES_1D = _cases_1d()
CASES_GAP = _cases_gap()
CASES_2D = _cases_2d()
CASES_COUNTS = _cases_counts()


def _calls_1d(fn: Callable) -> list[dict]:
    results = []
    for case in CASES_1D:
        w = torch.tensor(case.w, dtype=torch.float32)
        args = (w, case.n) if case.padding is None else (w, case.n, case.padding)
        ok, value = _call(fn, *args)
        results.append(_probe_matrix(value) if ok else value)
    return results


def _course_conv(case: CaseGap) -> torch.nn.Conv1d:
    """A fresh ``nn.Conv1d`` like the notebook's, with the case's kernel."""
    conv = torch.nn.Conv1d(1, 1, len(case.kernel), padding=case.padding, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor(case.kernel, dtype=torch.float32).view(1, 1, -1))
    return conv


def _calls_gap(fn: Callable) -> list[dict]:
    # Building the layers draws from the global RNG (their initial weights); the student's own
    # random numbers after this test must not depend on whether the test ran.
    with torch.random.fork_rng(devices=[]):
        convs = [_course_conv(case) for case in CASES_GAP]
    results = []
    for case, conv in zip(CASES_GAP, convs, strict=True):
        x = torch.tensor([case.x], dtype=torch.float32)
        # A gap is a measurement: no autograd graph, which also spares a tensor.numpy() error.
        with torch.no_grad():
            ok, value = _call(fn, conv, x, case.n)
        results.append(_probe_number_result(value) if ok else value)
    return results


def _calls_2d(fn: Callable) -> list[dict]:
    results = []
    for case in CASES_2D:
        kernel = torch.tensor(case.kernel, dtype=torch.float32)
        ok, value = _call(fn, kernel, case.H, case.W)
        results.append(_probe_matrix(value) if ok else value)
    return results


def _calls_counts(fn: Callable) -> list[dict]:
    results = []
    for case in CASES_COUNTS:
        ok, value = _call(fn, case.H, case.W, case.R, case.S)
        results.append(_probe_counts_result(value) if ok else value)
    return results


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


@dataclass(frozen=True)
class _Check:
    probe: Callable[[Any], dict]
    verify: Callable[[Any], None]


def _function_probe(name: str, calls: Callable[[Callable], list[dict]]) -> Callable[[Any], dict]:
    return lambda answer: _probe_function(answer, name, calls)


_CHECKS: dict[str, _Check] = {
    "ex1_1_test": _Check(_probe_count, _verify_ex1_1),
    "ex1_2_test": _Check(_probe_matrix, _verify_ex1_2),
    "ex1_3_test": _Check(_function_probe("toeplitz_1d", _calls_1d), _verify_ex1_3),
    "ex2_1_test": _Check(_probe_count, _verify_ex2_1),
    "ex2_2_test": _Check(_probe_matrix, _verify_ex2_2),
    "ex3_1_test": _Check(_function_probe("equivariance_gap", _calls_gap), _verify_ex3_1),
    "ex3_2_test": _Check(_probe_shifts, lambda p: _verify_shifts(p, "equivariant_shifts_valid", 0)),
    "ex3_3_test": _Check(
        _probe_shifts, lambda p: _verify_shifts(p, "equivariant_shifts_padded", 1)
    ),
    "ex4_1_test": _Check(_probe_matrix, _verify_ex4_1),
    "ex4_2_test": _Check(_function_probe("block_toeplitz_2d", _calls_2d), _verify_ex4_2),
    "ex5_1a_test": _Check(_probe_count, _verify_ex5_1a),
    "ex5_1b_test": _Check(_probe_count, _verify_ex5_1b),
    "ex5_1c_test": _Check(_probe_count, _verify_ex5_1c),
    "ex5_2_test": _Check(_function_probe("param_counts", _calls_counts), _verify_ex5_2),
}

EXERCISES_CHECKED = set(_CHECKS)

CASES: dict[str, tuple[Any, ...]] = {
    "ex1_3_test": CASES_1D,
    "ex3_1_test": CASES_GAP,
    "ex4_2_test": CASES_2D,
    "ex5_2_test": CASES_COUNTS,
}


def _lookup(grade_id: str) -> _Check:
    try:
        return _CHECKS[grade_id]
    except (KeyError, TypeError):
        raise UnknownExercise(
            f"no check for grade_id {grade_id!r}; known: {', '.join(sorted(_CHECKS))}"
        ) from None


def _name(grade_id: str) -> str:
    exercise = contract.BY_TEST_ID.get(grade_id)
    return exercise.name if exercise else grade_id


def probe(grade_id: str, answer: Any) -> Any:
    """Plain JSON data describing ``answer`` for the exercise ``grade_id``; never raises for it."""
    check = _lookup(grade_id)
    try:
        return check.probe(answer)
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # a hostile answer must still leave a payload behind
        return {"error": f"could not read the answer ({_describe_exception(e)})"}


def verify(grade_id: str, payload: Any) -> None:
    """Raise :class:`CheckFailure` with a teaching message unless ``payload`` is a right answer."""
    check = _lookup(grade_id)
    try:
        check.verify(payload)
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
