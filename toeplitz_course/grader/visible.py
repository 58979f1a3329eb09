"""The self-checks cell of each student notebook, generated from the grader's own verdicts.

A visible check must run on Colab, where this project is not installed, and must say ✔ exactly
when the grader will give the points. So ``build`` writes into each notebook one locked cell
that holds, as source text, :mod:`toeplitz_course.kernel.data`, :mod:`~toeplitz_course.kernel.
probe` and :mod:`~toeplitz_course.kernel.selfcheck` (the judge, which holds no answer) and the
tables of the notebook's exercises (``verdicts.table``), whose answers are hashes. The cell binds
``self_check(exercise)`` and ``answered(exercise)`` in the notebook; each check cell is then one
call. Nothing in it computes the answer to a challenge exercise: the function exercises are
judged on a few of the grader's cases (``VISIBLE_CASES``), by their tables.

The cell is part of ``source/`` (nbgrader must know it as a locked cell, to restore it before
grading); ``build`` regenerates it there and the drift test fails when it is stale.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from ..course import contract
from ..course.variant import DEFAULT_DATA, GivenData
from ..kernel import cases as hidden_cases
from ..kernel.data import Case1D, Case2D, CaseCall, CaseCounts, CaseLength
from . import verdicts
from .config import CELL_TIMEOUT

KERNEL = Path(__file__).resolve().parents[1] / "kernel"

#: The modules the cell inlines, in import order (each may import only the ones before it).
INLINED = ("data", "probe", "selfcheck")

#: The cases each function exercise shows first (indices into ``cases.CASES``): the course's own
#: example, then a few that catch the usual mistakes (other kernel lengths, padding as wide as
#: the kernel, unequal kernel sides). ``VISIBLE_CASES`` adds one case of every other kind.
CHOSEN_CASES = {
    "ex1_1_test": (0, 1, 3),
    "ex2_1_test": (0, 1, 2),
    "ex2_2_test": (0, 1, 2),
    "ex2_3_test": (0, 1, 2, 3, 4),
    "ex4_1_test": (0, 1),
    "ex1_3_test": (0, 1, 14, 16, 5),
    "ex3_1_test": (0, 1, 2, 3, 4),
    "ex4_2_test": (0, 8, 4),
    "ex5_2_test": (0, 1, 2),
    "ex6_1_test": (0, 1, 2),
    "ex6_2_test": (0, 1, 2),
    "ex6_3_test": (0, 1, 2),
    "ex6_4_test": (0, 1),
}


def kinds(case) -> set[str]:
    """The kinds of input ``case`` is: the degenerate shapes an answer that works on the
    course's example can still get wrong (one output row, a one-wide kernel, no shift, ...).

    A visible check shows a case of every kind the grader tries, so that ✔ on the visible cases
    means the answer handles every kind of input the grader will give it.
    """
    if isinstance(case, hidden_cases.Case1D):
        k, rows = len(case.w), case.n + 2 * case.p - len(case.w) + 1
        return {
            name
            for name, present in (
                ("one output row", rows == 1),
                ("a one-weight kernel", k == 1),
                ("padding left at its default", case.padding is None),
                ("padding 0 given", case.padding == 0),
                ("padding of at least the kernel's length", case.p >= k),
                ("padding of less than the kernel's length", 0 < case.p < k),
                ("an input as long as the kernel", case.n == k),
            )
            if present
        }
    if isinstance(case, hidden_cases.CaseLength):
        p = case.padding or 0
        return {
            name
            for name, present in (
                ("a one-weight kernel", case.k == 1),
                ("a kernel as long as the input", case.k == case.n),
                ("a kernel of even length", case.k % 2 == 0),
                ("padding 0", case.padding == 0),
                ("padding of at least the kernel's length", p >= case.k),
                ("a kernel longer than the input", case.k > case.n),
            )
            if present
        }
    if isinstance(case, hidden_cases.CaseSame):
        return {
            name
            for name, present in (
                ("a one-weight kernel", case.k == 1),
                ("an odd kernel length", case.k % 2 == 1),
                ("an even kernel length", case.k % 2 == 0),
            )
            if present
        }
    if isinstance(case, hidden_cases.CaseKernel):
        return set()  # every case is the same kind: another kernel of the same size
    if isinstance(case, hidden_cases.CaseGap):
        return {
            name
            for name, present in (
                ("a shift of 0", case.n == 0),
                ("a negative shift", case.n < 0),
                ("a positive shift", case.n > 0),
                ("no padding", case.padding == 0),
                ("padding", case.padding > 0),
                ("zeros at the ends of the input", case.x[0] == 0 or case.x[-1] == 0),
                ("no zero at the ends of the input", case.x[0] != 0 and case.x[-1] != 0),
            )
            if present
        }
    if isinstance(case, hidden_cases.Case2D):
        r_len, s_len = len(case.kernel), len(case.kernel[0])
        return {
            name
            for name, present in (
                ("a single output", case.H == r_len and case.W == s_len),
                ("one output row", case.H == r_len),
                ("one output column", case.W == s_len),
                ("a kernel of one row", r_len == 1),
                ("a kernel of one column", s_len == 1),
                ("a 1x1 kernel", r_len == s_len == 1),
                ("an image wider than tall", case.W > case.H),
                ("an image taller than wide", case.H > case.W),
            )
            if present
        }
    if isinstance(case, hidden_cases.CaseCounts):
        return {
            name
            for name, present in (
                ("a 1x1 image", case.H == case.W == 1),
                ("a kernel as tall as the image", case.R == case.H),
                ("a kernel as wide as the image", case.S == case.W),
                ("a one-row kernel", case.R == 1),
                ("a one-column kernel", case.S == 1),
            )
            if present
        }
    if isinstance(case, hidden_cases.CaseCall):
        return _part6_kinds(case)
    raise TypeError(f"no kinds for {type(case).__name__}")


def _part6_kinds(case) -> set[str]:
    if case.name == "cnn_param_count":
        channels, k_len = case.arg("channels"), case.arg("K")
        present = (
            ("one layer", len(channels) == 2),
            ("several layers", len(channels) > 2),
            ("one input channel", channels[0] == 1),
            ("a one-weight kernel", k_len == 1),
        )
        return {name for name, p in present if p}
    stride = case.arg("stride")
    k_len = len(case.arg("w")) if "w" in case.params else case.arg("K")
    if case.name == "transposed_matrix":
        present = (
            ("stride 1", stride == 1),
            ("a stride above 1", stride > 1),
            ("a stride longer than the kernel", stride > k_len),
            ("one input", case.arg("L") == 1),
            ("a one-weight kernel", k_len == 1),
        )
        return {name for name, p in present if p}
    n, padding, dilation = case.arg("N"), case.arg("padding"), case.arg("dilation")
    span = n + 2 * padding - dilation * (k_len - 1) - 1
    present = (
        ("stride 1", stride == 1),
        ("a stride above 1", stride > 1),
        ("dilation 1", dilation == 1),
        ("a dilation above 1", dilation > 1),
        ("stride and dilation both above 1", stride > 1 and dilation > 1),
        ("padding", padding > 0),
        ("no padding", padding == 0),
        ("one output", span // stride == 0),
        ("a stride that does not divide the span (the floor matters)", span % stride != 0),
        # round() is not the floor either: Python rounds 9.5 to 10 (and 4.5 to 4).
        (
            "a span that rounds up over the stride",
            stride > 1 and round(span / stride) != span // stride,
        ),
        # rows = positions // stride is right only when the stride divides the positions.
        ("a stride that does not divide the window positions", (span + 1) % stride != 0),
        # A dilated kernel spans dilation * (K - 1) + 1; K + dilation, K * dilation - 1 and the
        # like agree with it at K = 3, dilation = 2 only, and a stride can hide the difference.
        ("a dilation of 3 or more, stride 1", dilation >= 3 and k_len > 1 and stride == 1),
        (
            "a dilated kernel not 3 weights long, stride 1",
            dilation > 1 and k_len not in (1, 3) and stride == 1,
        ),
        ("a one-weight kernel", k_len == 1),
    )
    return {name for name, p in present if p}


def _visible_cases(test_id: str) -> tuple[int, ...]:
    """``CHOSEN_CASES``, then greedily the case that adds most kinds, until every kind the
    grader tries is shown."""
    every = hidden_cases.CASES[test_id]
    picked = list(CHOSEN_CASES[test_id])
    shown = set().union(*(kinds(every[i]) for i in picked))
    wanted = set().union(*(kinds(c) for c in every))
    while shown != wanted:
        best = max(range(len(every)), key=lambda i: (len(kinds(every[i]) - shown), -i))
        picked.append(best)
        shown |= kinds(every[best])
    return tuple(picked)


#: Which of the grader's cases each function exercise shows (indices into ``cases.CASES``).
VISIBLE_CASES = {test_id: _visible_cases(test_id) for test_id in CHOSEN_CASES}

_MORE = {
    "ex1_1_test": "other N and K of the same kinds",
    "ex2_1_test": "other N, K and P of the same kinds",
    "ex2_2_test": "other kernels of 3 weights",
    "ex2_3_test": "other kernel lengths, odd and even",
    "ex4_1_test": "other 3x3 kernels",
    "ex1_3_test": "other kernels, lengths and paddings of the same kinds",
    "ex3_1_test": "other kernels, inputs, paddings and shifts of the same kinds",
    "ex4_2_test": "other kernels and image sizes of the same kinds",
    "ex5_2_test": "other image and kernel sizes of the same kinds",
    "ex6_1_test": "other lengths, kernels, paddings, strides and dilations of the same kinds",
    "ex6_2_test": "other kernels, lengths, paddings, strides and dilations of the same kinds",
    "ex6_3_test": "other kernels, lengths and strides of the same kinds",
    "ex6_4_test": "other channel counts and kernel sizes of the same kinds",
}

CELL_ID = "self-checks"


def grade_id(notebook: str) -> str:
    return f"nb{notebook[:2]}_self_checks"


def _exercise_key(test_id: str) -> str:
    return test_id.removesuffix("_test")


def _ok(exercise: contract.Exercise, n_cases: int | None) -> str:
    if n_cases is None:
        return f"{exercise.name} is right."
    return (
        f"{exercise.name} is right on the {n_cases} cases shown here; the grader tries more "
        f"({_MORE[exercise.test_id]}), so make it right in general."
    )


def _in_variant(case: Any, given: GivenData) -> Any:
    """``case`` with the default variant's data replaced by ``given``'s: the visible checks try
    the notebook's own example. (The grader's hidden cases stay as they are: the grading kernel
    computes them without knowing the variant, and the default's data are one generic case.)"""
    if given.is_default:
        return case
    base = DEFAULT_DATA
    swap = {
        tuple(float(v) for v in base.w_1d): tuple(float(v) for v in given.w_1d),
        tuple(float(v) for v in base.x_1d): tuple(float(v) for v in given.x_1d),
        tuple(tuple(float(v) for v in r) for r in base.kernel_2d): tuple(
            tuple(float(v) for v in r) for r in given.kernel_2d
        ),
    }
    changed = {}
    course_kernel = tuple(tuple(float(v) for v in r) for r in base.kernel_2d)
    shape = (len(base.kernel_2d), len(base.kernel_2d[0]))
    if (isinstance(case, Case2D) and case.kernel == course_kernel) or (
        isinstance(case, CaseCounts) and (case.R, case.S) == shape
    ):
        if (case.H, case.W) == (base.height, base.width):  # the notebook's image, its own size
            changed.update(H=given.height, W=given.width)
    for field in dataclasses.fields(case):
        value = getattr(case, field.name)
        if field.name == "args":
            changed["args"] = tuple(swap.get(a, a) if isinstance(a, tuple) else a for a in value)
        elif isinstance(value, tuple) and value in swap:
            changed[field.name] = swap[value]
    # The course's own length with the course's kernel (or its length K = 3): x_1d's length.
    n, k = base.length, len(base.w_1d)
    course_w = tuple(float(v) for v in base.w_1d)
    if (isinstance(case, Case1D) and (case.w, case.n) == (course_w, n)) or (
        isinstance(case, CaseLength) and (case.n, case.k) == (n, k)
    ):
        changed["n"] = given.length
    if isinstance(case, CaseCall) and case.params[:2] in (("N", "K"), ("w", "N")):
        first = (n, k) if case.params[0] == "N" else (course_w, n)
        if tuple(case.args[:2]) == first:
            at = case.params.index("N")
            args = list(changed.get("args", case.args))
            changed["args"] = tuple(args[:at] + [given.length] + args[at + 1 :])
    return dataclasses.replace(case, **changed)


def tables(notebook: str, given: GivenData = DEFAULT_DATA) -> dict[str, dict]:
    """The tables of ``notebook``'s autograded exercises, by exercise id ("ex1_2"), for the
    course's data ``given``."""
    out = {}
    for exercise in contract.exercises_in(notebook):
        if not exercise.autograded:
            continue
        picks = VISIBLE_CASES.get(exercise.test_id)
        cases = None
        if picks is not None:
            cases = [_in_variant(hidden_cases.CASES[exercise.test_id][i], given) for i in picks]
        table = verdicts.table(exercise.test_id, cases, given)
        table.update(
            test_id=exercise.test_id,
            ok=_ok(exercise, None if cases is None else len(cases)),
        )
        if cases is not None:  # what the graded cell asks of a function (selfcheck._too_slow)
            table.update(
                graded_cases=len(hidden_cases.CASES[exercise.test_id]), cell_limit=CELL_TIMEOUT
            )
        out[_exercise_key(exercise.test_id)] = table
    return out


def _literal(text: str, what: str) -> str:
    if "'''" in text or text.endswith("\\"):
        raise ValueError(f"{what} cannot be inlined as a raw ''' string")
    return "r'''" + text + "'''"


HEADER = """\
# @title Self-checks: run this cell once, don't edit it { display-mode: "form" }
# Generated by `make build` from the grader's own checks (toeplitz_course/grader/visible.py):
# self_check("ex1_2") says ✔ exactly when the grader will give the points, and otherwise names
# the mistake. It holds the answers only as salted hashes: no matrix or function answer can be
# read from it. A small answer (a count, a set of shifts) could be searched for with it; the
# grader flags answer cells that use it (and checks every answer itself).
"""

BODY = """\
import json as _json
import sys as _sys
import types as _types


def _install_self_checks(sources, tables):
    package = _types.ModuleType("toeplitz_self_checks")
    package.__path__ = []
    _sys.modules[package.__name__] = package
    for name, source in sources:
        module = _types.ModuleType(package.__name__ + "." + name)
        module.__package__ = package.__name__
        _sys.modules[module.__name__] = module
        exec(compile(source, "<self-checks: " + name + ".py>", "exec"), module.__dict__)
    return _sys.modules[package.__name__ + ".selfcheck"].SelfChecks(_json.loads(tables))


_self_checks = _install_self_checks(
    [
{sources}
    ],
{tables},
)
self_check, answered = _self_checks.check, _self_checks.answered
"""


def _data_source(given: GivenData) -> str:
    """``kernel/data.py`` as the cell inlines it: with ``given``'s numbers in a variant, so the
    notebook holds no other variant's data."""
    text = (KERNEL / "data.py").read_text()
    if given.is_default:
        return text

    def lines(name: str, rows) -> str:
        return f"{name} = [\n" + "".join(f"    {list(r)},\n" for r in rows) + "]\n"

    base = DEFAULT_DATA
    for old, new in (
        (f"X_1D = {list(base.x_1d)}", f"X_1D = {list(given.x_1d)}"),
        (f"the 1D input (N = {base.length})", f"the 1D input (N = {given.length})"),
        (f"W_1D = {list(base.w_1d)}", f"W_1D = {list(given.w_1d)}"),
        (f"MAX_SHIFT = {base.max_shift}", f"MAX_SHIFT = {given.max_shift}"),
    ):
        text = text.replace(old, new)
    for name, new_rows in (
        ("IMG_2D", given.img_2d),
        ("KERNEL_2D", given.kernel_2d),
    ):
        start = text.index(f"{name} = [")
        end = text.index("\n]\n", start) + 3
        comment = text[start : text.index("\n", start)].partition("#")[2]
        if name == "IMG_2D":
            comment = comment.replace(
                f"{base.height} x {base.width}", f"{given.height} x {given.width}"
            )
        block = lines(name, new_rows).replace(f"{name} = [\n", f"{name} = [  #{comment}\n", 1)
        text = text[:start] + block + text[end:]
    return text


def cell_source(notebook: str, given: GivenData = DEFAULT_DATA) -> str:
    """The self-checks cell of ``notebook`` (its name without ``.ipynb``) for the course's data
    ``given``."""
    sources = []
    for name in INLINED:
        text = _data_source(given) if name == "data" else (KERNEL / f"{name}.py").read_text()
        sources.append(f"        ({name!r}, {_literal(text, f'kernel/{name}.py')}),")
    lines = [
        f"{json.dumps(k)}: {json.dumps(v, ensure_ascii=False, sort_keys=True)}"
        for k, v in tables(notebook, given).items()
    ]
    tables_text = "{\n" + ",\n".join(lines) + "\n}"
    body = BODY.replace("{sources}", "\n".join(sources)).replace(
        "{tables}", "    " + _literal(tables_text, "the tables")
    )
    return HEADER + body
