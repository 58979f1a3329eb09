"""The verdict logic that holds no answer: the grader's judge and the notebooks' self-checks.

A *table* (plain JSON, built from the reference by ``toeplitz_course.grader.verdicts``) says what
the right answer to one exercise and each mistake the course knows look like, by *key*: a hash
of the value rounded to ``DECIMALS`` places, never the value itself where the value is an answer.
``judge(table, payload)`` reads a probe payload (:mod:`.probe`) against a table and raises
:class:`CheckFailure` with a message that names the mistake.

The grader's verdict is ``judge`` over the table of every hidden case; a notebook's visible
check is ``judge`` over a table of a few of those cases (``grader.visible``). Same probe, same
judge, same tables: a visible check says ✔ exactly when the grader gives the points, and for a
function, ✔ on its visible cases. Equal keys mean equal values: every expected entry is a whole
multiple of ``10**-DECIMALS`` far below ``1 / (2 * RTOL)`` (the table builder asserts it), so an
entry within the tolerance rounds to it and nothing else does.

``build`` inlines this module, :mod:`.data` and :mod:`.probe` into the self-checks cell of every
student notebook: it may use only the standard library, torch and numpy (Colab has nothing else).
"""

from __future__ import annotations

import hashlib
import math
import struct
import sys
import time
from collections.abc import Sequence
from typing import Any

from . import probe
from .data import (
    Case1D,
    Case2D,
    CaseCall,
    CaseCounts,
    CaseGap,
    CaseKernel,
    CaseLength,
    CaseSame,
    _fmt,
)
from .probe import _fmt_shape, _short_repr, _text

ATOL = 1e-5
RTOL = 1e-5
DECIMALS = 3
EQUIVARIANT_BELOW = 1e-6  # a shift "commutes" when the gap is below this


class CheckFailure(AssertionError):
    """An answer is wrong; the message says why without giving the answer away."""


class Malformed(ValueError):
    """A payload that probe cannot have written (corrupted or forged)."""


# --------------------------------------------------------------------------------------------
# Keys and numbers
# --------------------------------------------------------------------------------------------


_SCALE = 10**DECIMALS
_HUGE = 1e15  # beyond this a number is only "huge" (and never right): int64 holds the rest


def _quantum(v: Any) -> int:
    v = float(v)
    if v != v:
        return -(2**63)
    if abs(v) >= _HUGE:
        return 2**62 if v > 0 else -(2**62)
    return round(v * _SCALE)


def _feed(h: Any, value: Any) -> None:
    if isinstance(value, str):
        h.update(b"s" + value.encode() + b"\0")
    elif isinstance(value, (list, tuple)):
        if all(isinstance(v, (int, float)) for v in value):  # rows of numbers: packed at once
            h.update(b"n%d:" % len(value))
            h.update(struct.pack(f"<{len(value)}q", *(_quantum(v) for v in value)))
        else:
            h.update(b"l%d:" % len(value))
            for v in value:
                _feed(h, v)
    else:
        h.update(b"n1:" + struct.pack("<q", _quantum(value)))


def key(*parts: Any) -> str:
    """A salted hash of ``parts``, numbers rounded to ``DECIMALS`` places: compares, reveals
    nothing. Strings, numbers and nested lists of them."""
    h = hashlib.sha256(b"toeplitz-course")
    for part in parts:
        _feed(h, part)
    return h.hexdigest()[:24]


def _on_grid(v: float) -> bool:
    """``v`` is within the tolerance of its rounding (so of the value a matching key stands for)."""
    return close(v, _quantum(v) / _SCALE)


def decode(v: Any) -> float:
    if isinstance(v, bool):
        raise Malformed("a bool where a number was recorded")
    if isinstance(v, (int, float)):
        return float(v)
    if v in ("nan", "inf", "-inf"):
        return float(v)
    raise Malformed(f"{_short_repr(v)} where a number was recorded")


def close(a: float, b: float) -> bool:
    return abs(a - b) <= ATOL + RTOL * abs(b)


def _plural(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


# --------------------------------------------------------------------------------------------
# Reading payloads (answer-free: the same rules for every exercise of a kind)
# --------------------------------------------------------------------------------------------


def no_answer(name: str) -> CheckFailure:
    return CheckFailure(
        f"not answered yet: {name} has no value (not defined yet, None or ...): write your "
        "answer in its cell and run that cell"
    )


def common(payload: Any, name: str) -> None:
    """Raise for a payload that is no answer at all (missing, unreadable, or not a dict)."""
    if not isinstance(payload, dict):
        raise Malformed("not a dict")
    if payload.get("missing"):
        raise no_answer(name)
    if "error" in payload:
        raise CheckFailure(f"{name}: {_text(payload['error'])}")


def read_matrix(payload: dict) -> tuple[list[int], list[list[float]] | None]:
    shape = payload["shape"]
    if not isinstance(shape, list) or not all(
        isinstance(s, int) and not isinstance(s, bool) for s in shape
    ):
        raise Malformed("bad shape")
    values = payload.get("values")
    if values is None:
        return shape, None
    if len(shape) != 2 or not isinstance(values, list) or len(values) != shape[0]:
        raise Malformed("values do not match the shape")
    matrix = []
    for row in values:
        if not isinstance(row, list) or len(row) != shape[1]:
            raise Malformed("values do not match the shape")
        matrix.append([decode(v) for v in row])
    return shape, matrix


def read_count(payload: Any, name: str) -> int:
    common(payload, name)
    value = decode(payload["value"])
    if not math.isfinite(value):
        raise CheckFailure(f"{name}: is NaN or infinite; a count is a whole number")
    if value != int(value):
        if abs(value - round(value)) < 1e-6:  # 53.99999999999999 from (1 - 0.55) * 120
            raise CheckFailure(
                f"{name}: {value!r} is not a whole number (a float from arithmetic, which "
                f"prints as {_fmt(value)}); a count is: compute it with whole numbers, or round()"
            )
        raise CheckFailure(f"{name}: {_fmt(value)} is not a whole number; a count is")
    if value < 0:
        raise CheckFailure(f"{name}: a count cannot be negative")
    return int(value)


def read_results(payload: Any, name: str, n_cases: int) -> list[dict]:
    common(payload, name)
    results = payload["results"]
    if not isinstance(results, list) or len(results) != n_cases:
        raise Malformed("wrong number of results")
    if not all(isinstance(r, dict) for r in results):
        raise Malformed("a result is not a dict")
    if results and all(r.get("raised") == "NotImplementedError" for r in results):
        raise CheckFailure(f"not answered yet: {name} still raises NotImplementedError")
    return results


def result_problem(result: dict, call: str) -> str | None:
    """The problem with a result that raised or returned nothing readable, else None."""
    if "raised" in result:
        message = _text(result.get("message", ""))
        return f"{call} raised {_text(result['raised'], 80)}" + (f": {message}" if message else "")
    if result.get("missing"):
        return f"{call} returned None - is the return statement missing?"
    if "error" in result:
        return f"{call}: {_text(result['error'])}"
    return None


def join(call: str, problem: str) -> str:
    return f"{call} {problem}" if problem.startswith("returned") else f"{call}: {problem}"


# --------------------------------------------------------------------------------------------
# Matrices
# --------------------------------------------------------------------------------------------


def shape_problem(got: Sequence[int], rows: int, cols: int) -> str:
    parts = []
    if got[0] != rows:
        parts.append("too many rows" if got[0] > rows else "too few rows")
    if got[1] != cols:
        parts.append("too many columns" if got[1] > cols else "too few columns")
    return " and ".join(parts)


def not_finite_row(m: list[list[float]]) -> int:
    for r, row in enumerate(m):
        if not all(math.isfinite(v) for v in row):
            return r
    return -1


def matvec(m: list[list[float]], x: Sequence[float]) -> list[float]:
    return [sum(a * b for a, b in zip(row, x, strict=True)) for row in m]


def row_text(row: int, w_out: int | None) -> str:
    output = f"y[{row}]" if w_out is None else f"y[{row // w_out}, {row % w_out}]"
    return f"row {row} (output {output}) disagrees with the convolution"


def matrix_problem(table: dict, shape: list[int], m: list[list[float]] | None) -> str | None:
    """What is wrong with the matrix ``m`` of shape ``shape`` by the matrix table, or None.

    Table: ``shape`` [rows, cols]; ``right`` key("m", T); ``rows`` key("r", i, T[i]) per row;
    ``variants`` [[key("m", V), message], ...] for the known wrong matrices, first match wins;
    ``shapes`` [[[r, c], message], ...] for known wrong shapes; ``shape_text`` and ``not2d``
    templates ("{shape}", "{problem}"); ``x`` an input the notebook shows (or null), ``xy``
    key("v", T x) and ``x_text``; ``same_rows`` what to say when every row is the same;
    ``w_out`` the output width of a 2D convolution (or null).
    """
    rows, cols = table["shape"]
    shown = _fmt_shape(shape)
    if len(shape) != 2:
        return table["not2d"].replace("{shape}", shown)
    if shape != [rows, cols]:
        for known, text in table["shapes"]:
            if shape == known:
                return text.replace("{shape}", shown)
        problem = shape_problem(shape, rows, cols)
        return table["shape_text"].replace("{shape}", shown).replace("{problem}", problem)
    if m is None:
        raise Malformed("a matrix of the right shape without values")
    bad = not_finite_row(m)
    if bad >= 0:
        return f"the matrix contains NaN or infinite entries (first in row {bad})"
    k = key("m", m)
    if k == table["right"] and all(_on_grid(v) for row in m for v in row):
        return None
    if k != table["right"]:
        for variant, text in table["variants"]:
            if k == variant:
                return text
        x = table.get("x")
        if x is not None and key("v", matvec(m, x)) == table["xy"]:
            # Right where the example can see, wrong where it cannot: say where, too.
            return f"{table['x_text']}; {_first_wrong_row(table, m)}"
        if len(m) > 1 and all(row == m[0] for row in m):
            return table["same_rows"]
    return _first_wrong_row(table, m)


def _first_wrong_row(table: dict, m: list[list[float]]) -> str:
    for r, row in enumerate(m):
        if key("r", r, row) != table["rows"][r] or not all(_on_grid(v) for v in row):
            return row_text(r, table.get("w_out"))
    raise Malformed("a matrix whose every row is right but not the whole")  # pragma: no cover


def judge_matrix(table: dict, payload: Any) -> None:
    name = table["name"]
    common(payload, name)
    shape, m = read_matrix(payload)
    problem = matrix_problem(table["matrix"], shape, m)
    if problem:
        raise CheckFailure(f"{name}: {problem}")


# --------------------------------------------------------------------------------------------
# Counts and sets of shifts
# --------------------------------------------------------------------------------------------


def judge_count(table: dict, payload: Any) -> None:
    """Table: ``right`` key("c", n); ``known`` [[key("c", v), why], ...]; ``hint``."""
    name = table["name"]
    value = read_count(payload, name)
    k = key("c", value)
    if k == table["right"]:
        return
    why = dict((kk, text) for kk, text in table["known"]).get(k, table["hint"])
    raise CheckFailure(f"{name}: {value} is not right: {why}")


def judge_shifts(table: dict, payload: Any) -> None:
    """Table: ``padding``; ``shifts`` [lowest, highest], the range the exercise asks about;
    ``members`` [key("s", padding, n) for each right shift]; ``count``."""
    name, padding = table["name"], table["padding"]
    low, high = table["shifts"]
    common(payload, name)
    ints, others = payload["ints"], payload["others"]
    if not isinstance(ints, list) or not all(
        isinstance(i, int) and not isinstance(i, bool) for i in ints
    ):
        raise Malformed("ints")
    if not isinstance(others, list):
        raise Malformed("others")
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
    outside = sorted(i for i in seen if not low <= i <= high)
    if outside:
        raise CheckFailure(
            f"{name}: {', '.join(map(str, outside))} {'is' if len(outside) == 1 else 'are'} "
            f"outside the range {low}..{high} the exercise asks about"
        )
    members = set(table["members"])
    extra = sum(1 for i in seen if key("s", padding, i) not in members)
    missing = table["count"] - (len(seen) - extra)
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
            f"{_plural(missing, 'shift', 'shifts')} in {low}..{high} "
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
        f"range({low}, {high + 1}) and keep those with gap < {EQUIVARIANT_BELOW:g}"
    )


# --------------------------------------------------------------------------------------------
# Functions, called on the table's cases
# --------------------------------------------------------------------------------------------


def judge_toeplitz(table: dict, payload: Any) -> None:
    """Table: ``cases`` [{"args", "call", "matrix": matrix table}, ...] (``toeplitz_1d``/``2d``)."""
    results = read_results(payload, table["name"], len(table["cases"]))
    for case, result in zip(table["cases"], results, strict=True):
        call = case["call"]
        problem = result_problem(result, call)
        if problem:
            default_padding = table["kind"] == "toeplitz_1d" and case["args"][2] is None
            if default_padding and result.get("raised") == "TypeError":
                problem += " (padding should default to 0, so that toeplitz_1d(w, N) works)"
            raise CheckFailure(problem)
        shape, m = read_matrix(result)
        problem = matrix_problem(case["matrix"], shape, m)
        if problem:
            raise CheckFailure(join(call, problem))


def whole_numbers(table: dict, payload: Any, what: str, negative: bool = True) -> list[int]:
    """The whole numbers a function returned on ``table``'s cases, in order; the first result
    that is not one (raised, unreadable, fractional, not finite, or negative where ``negative``
    is False) fails naming its call and ``what`` the number is."""
    cases = table["cases"]
    results = read_results(payload, table["name"], len(cases))
    got = []
    for case, result in zip(cases, results, strict=True):
        call = case["call"]
        problem = result_problem(result, call)
        if problem:
            raise CheckFailure(problem)
        v = decode(result["value"])
        if not math.isfinite(v) or v != int(v):
            raise CheckFailure(f"{call} returned {_fmt(v)}: {what} is a whole number")
        if v < 0 and not negative:
            raise CheckFailure(f"{call} returned {_fmt(v)}: {what} cannot be negative")
        got.append(int(v))
    return got


def judge_length(table: dict, payload: Any) -> None:
    """Table: ``cases`` [{"args": [N, K, P or null], "call", "right": key("c", length),
    "known": [[key("c", v), why], ...]}, ...]; ``hint`` (``n_out_valid``, ``n_out_padded``)."""
    cases = table["cases"]
    got_values = whole_numbers(table, payload, "a length")
    wrong = [
        (case, v) for case, v in zip(cases, got_values, strict=True) if key("c", v) != case["right"]
    ]
    if not wrong:
        return
    case, v = wrong[0]
    if len(cases) > 1 and len(set(got_values)) == 1:
        raise CheckFailure(
            f"{table['name']} returns {v} whatever its arguments (e.g. {case['call']}): compute "
            "the length from N, K" + (", P" if case["args"][2] is not None else "")
        )
    # The formula that explains every answer (right where it agrees with the right one) is the
    # mistake; a single case may not tell two formulas apart.
    matched = [
        {text for k, text in c["known"] if k == key("c", g)}
        for c, g in zip(cases, got_values, strict=True)
    ]
    explains = [
        text
        for text in dict.fromkeys(text for _, text in case["known"])
        if all(
            text in m or key("c", g) == c["right"]
            for m, g, c in zip(matched, got_values, cases, strict=True)
        )
    ]
    first = next((text for k, text in case["known"] if k == key("c", v)), None)
    why = explains[0] if explains else first
    if why is None:
        why = "a length cannot be negative" if v < 0 else table["hint"]
    raise CheckFailure(f"{case['call']} returned {v}, which is not the output length: {why}")


def judge_same(table: dict, payload: Any) -> None:
    """Table: ``cases`` [{"args": [K], "call", "right": key("p", P or "none"), "known":
    [[key("p", P or "none"), why], ...]}, ...]; ``hint`` (``same_padding``)."""
    cases = table["cases"]
    results = read_results(payload, table["name"], len(cases))
    for case, result in zip(cases, results, strict=True):
        call = case["call"]
        if result.get("none") is True:
            got: Any = "none"
            shown = "None"
        else:
            problem = result_problem(result, call)
            if problem:
                raise CheckFailure(problem)
            v = decode(result["value"])
            if not math.isfinite(v) or v != int(v):
                raise CheckFailure(
                    f"{call} returned {_fmt(v)}: padding is a whole number of zeros at each end"
                )
            got, shown = int(v), str(int(v))
        k = key("p", got)
        if k == case["right"]:
            continue
        why = dict((kk, text) for kk, text in case["known"]).get(k, table["hint"])
        raise CheckFailure(f"{call} returned {shown}: {why}")


COUNT_NAMES = (
    "first count (entries of the dense matrix: every (output, input) pair)",
    "second count (nonzero entries of the block-Toeplitz matrix: one kernel copy per output)",
    "third count (parameters of the convolution: its kernel weights, no bias)",
)


def judge_counts(table: dict, payload: Any) -> None:
    """Table: ``cases`` [{"args", "call", "right": key("t", counts), "sorted": key("t", sorted
    counts), "each": [key("e", i, count_i), ...]}, ...] (``param_counts``)."""
    results = read_results(payload, table["name"], len(table["cases"]))
    for case, result in zip(table["cases"], results, strict=True):
        call = case["call"]
        problem = result_problem(result, call)
        if problem:
            raise CheckFailure(problem)
        counts = [decode(v) for v in result["counts"]]
        if len(counts) != 3:
            raise CheckFailure(
                f"{call} returned {_plural(len(counts), 'value', 'values')}; expected 3 counts: "
                "(dense entries, nonzero entries, kernel parameters)"
            )
        for index, v in enumerate(counts):
            if not math.isfinite(v) or v != int(v):
                raise CheckFailure(
                    f"{call}: the {COUNT_NAMES[index].split(' (')[0]} is {_fmt(v)}, not a whole "
                    "number"
                )
        got = [int(v) for v in counts]
        if key("t", got) == case["right"]:
            continue
        shown = "(" + ", ".join(map(str, got)) + ")"
        if key("t", sorted(got)) == case["sorted"]:
            raise CheckFailure(
                f"{call} returned {shown}: the right numbers in the wrong order; return "
                "(dense entries, nonzero entries, kernel parameters)"
            )
        wrong = next(i for i in range(3) if key("e", i, got[i]) != case["each"][i])
        raise CheckFailure(f"{call} returned {shown}: the {COUNT_NAMES[wrong]} is wrong")


#: The usual wrong ways to compute a gap, in the order they are recognised.
GAP_KINDS = ("sum", "mean", "signed", "signed_reversed", "roll", "opposite", "output_unshifted")
GAP_MISTAKES = {
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


def judge_gap(table: dict, payload: Any) -> None:
    """Table: ``cases`` [{"args", "call", "expected": gap, "variants": {kind: gap}}, ...]."""
    cases = table["cases"]
    results = read_results(payload, table["name"], len(cases))
    failures = []
    got_values: list[float] = []
    for case, result in zip(cases, results, strict=True):
        call = case["call"]
        problem = result_problem(result, call)
        if problem:
            raise CheckFailure(problem)
        got = decode(result["value"])
        got_values.append(got)
        if not math.isfinite(got):
            raise CheckFailure(f"{call} returned {got}: the gap must be a finite number")
        if got < 0:
            raise CheckFailure(
                f"{call} returned {_fmt(got)}: a gap is a maximum of absolute values, it "
                "cannot be negative"
            )
        if not close(got, case["expected"]):
            failures.append((case, got))
    if not failures:
        return
    case, got = failures[0]
    for kind in GAP_KINDS:
        if all(close(g, c["variants"][kind]) for g, c in zip(got_values, cases, strict=True)):
            text = GAP_MISTAKES[kind.replace("_reversed", "")]
            raise CheckFailure(
                f"equivariance_gap {text} (e.g. {case['call']} returned {_fmt(got)})"
            )
    if case["expected"] == 0:
        hint = "but here the shift and the convolution commute exactly (gap 0)"
    elif got == 0:
        hint = "but here the shift and the convolution do not commute"
    else:
        hint = "which is not max |f(tau_n(x)) - tau_n(f(x))| here"
    raise CheckFailure(f"{case['call']} returned {_fmt(got)}, {hint}")


def judge_numbers(table: dict, payload: Any) -> None:
    """Table (a function returning one whole number, Part 6): ``cases`` [{"args", "params",
    "fn", "call", "right": key("c", n), "known": {mistake: key("c", n_mistake)}}, ...];
    ``mistakes`` [[mistake, message], ...] in the order they are recognised; ``what`` (the
    number's noun) and ``hint`` (what it should be, in words)."""
    cases = table["cases"]
    got = whole_numbers(table, payload, table["what"], negative=False)
    keys = [key("c", v) for v in got]
    wrong = [i for i, case in enumerate(cases) if keys[i] != case["right"]]
    if not wrong:
        return
    first = cases[wrong[0]]
    shown = f"{first['call']} returned {got[wrong[0]]}"
    for mistake, text in table["mistakes"]:
        if all(k == case["known"].get(mistake) for k, case in zip(keys, cases, strict=True)):
            raise CheckFailure(f"{table['name']} {text} (e.g. {shown})")
    for mistake, text in table["mistakes"]:
        if keys[wrong[0]] == first["known"].get(mistake):
            raise CheckFailure(f"{shown}: that is what you get if it {text}")
    raise CheckFailure(f"{shown}, which is not {table['hint']}")


JUDGES = {
    "count": judge_count,
    "matrix": judge_matrix,
    "shifts": judge_shifts,
    "toeplitz_1d": judge_toeplitz,
    "toeplitz_2d": judge_toeplitz,
    "kernel_1d": judge_toeplitz,
    "kernel_2d": judge_toeplitz,
    "length": judge_length,
    "same": judge_same,
    "gap": judge_gap,
    "counts": judge_counts,
    "matrices": judge_toeplitz,
    "numbers": judge_numbers,
}


def judge(table: dict, payload: Any) -> None:
    """Raise :class:`CheckFailure` (or :class:`Malformed`) unless ``payload`` is right."""
    JUDGES[table["kind"]](table, payload)


def case_objects(table: dict) -> tuple[Any, ...] | None:
    """The cases a function table describes, as the probe calls them (None: not a function)."""
    kind, cases = table["kind"], table.get("cases")
    if kind == "toeplitz_1d":
        return tuple(Case1D(tuple(c["args"][0]), c["args"][1], c["args"][2]) for c in cases)
    if kind == "toeplitz_2d":
        return tuple(
            Case2D(tuple(tuple(r) for r in c["args"][0]), c["args"][1], c["args"][2]) for c in cases
        )
    if kind == "gap":
        return tuple(
            CaseGap(tuple(c["args"][0]), c["args"][1], tuple(c["args"][2]), c["args"][3])
            for c in cases
        )
    if kind == "counts":
        return tuple(CaseCounts(*c["args"]) for c in cases)
    if kind == "length":
        return tuple(CaseLength(*c["args"]) for c in cases)
    if kind == "same":
        return tuple(CaseSame(*c["args"]) for c in cases)
    if kind == "kernel_1d":
        return tuple(CaseKernel(table["name"], tuple(c["args"][0])) for c in cases)
    if kind == "kernel_2d":
        return tuple(
            CaseKernel(table["name"], tuple(tuple(r) for r in c["args"][0])) for c in cases
        )
    if kind in ("matrices", "numbers"):
        return tuple(
            CaseCall(
                c["fn"],
                tuple(c["params"]),
                tuple(tuple(a) if isinstance(a, list) else a for a in c["args"]),
            )
            for c in cases
        )
    return None


# --------------------------------------------------------------------------------------------
# The notebook's side: check("ex1_2") and answered("ex1_2")
# --------------------------------------------------------------------------------------------


def _too_slow(table: dict, cases: list | None, seconds: float) -> str:
    """A warning when the grader's run of a function, at this speed, would near its time limit.

    The graded cell calls the function on every case (``graded_cases``) and then on the visible
    ones again, within ``cell_limit`` seconds; past half of that, load on the grading machine
    could decide the points.
    """
    if not cases or "cell_limit" not in table:
        return ""
    projected = seconds * (table["graded_cases"] + len(cases)) / len(cases)
    if projected <= table["cell_limit"] / 2:
        return ""
    return (
        f"\n⚠ but slowly: {len(cases)} calls took {seconds:.1f} s here; the grader makes "
        f"{table['graded_cases'] + len(cases)} in this cell, within {table['cell_limit']} s, "
        f"about {projected:.0f} s at this speed. Make it faster (no prints in loops, build the "
        "matrix directly) or it may score 0."
    )


class SelfChecks:
    """The visible checks of one notebook, over its tables (``{exercise: table}``).

    Each table also carries ``test_id`` (the grader's grade_id), ``exercise`` (its title) and
    ``ok`` (what a ✔ says). The answer is looked up by name in the caller's namespace, so that an
    answer cell that stopped before defining it reads "not answered yet".
    """

    def __init__(self, tables: dict[str, dict]):
        self.tables = tables

    def _answer(self, exercise: str, namespace: dict) -> tuple[dict, Any, bool]:
        table = self.tables[exercise]
        name = table["name"]
        return table, namespace.get(name), name in namespace

    def check(self, exercise: str, namespace: dict | None = None) -> None:
        """Print ✔ when the answer to ``exercise`` is right, else fail naming the mistake."""
        namespace = sys._getframe(1).f_globals if namespace is None else namespace
        table, answer, defined = self._answer(exercise, namespace)
        if not defined:
            raise CheckFailure(
                f"✘ {exercise}: not answered yet: {table['name']} is not defined. Write your "
                f"answer in the cell above and run it, then run this check again."
            )
        cases = case_objects(table)
        started = time.perf_counter()
        payload = probe.probe(table["test_id"], answer, cases)
        slow = _too_slow(table, cases, time.perf_counter() - started)
        try:
            judge(table, payload)
        except CheckFailure as e:
            raise CheckFailure(f"✘ {exercise}: {e}{slow}") from None
        print(f"✔ {exercise}: {table['ok']}{slow}")

    def answered(self, exercise: str, namespace: dict | None = None) -> bool:
        """Whether ``exercise`` has an answer yet (a function: one that no longer raises
        NotImplementedError), so that a picture built on it can say it is not there yet."""
        namespace = sys._getframe(1).f_globals if namespace is None else namespace
        table, answer, defined = self._answer(exercise, namespace)
        if not defined or answer is None or answer is Ellipsis:
            return False
        cases = case_objects(table)
        if cases is None:
            return True
        payload = probe.probe(table["test_id"], answer, cases[:1])
        results = payload.get("results") if isinstance(payload, dict) else None
        return not (results and results[0].get("raised") == "NotImplementedError")
