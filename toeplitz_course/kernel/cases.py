"""The fixed, seeded cases on which the grader calls a function answer.

Seeded, so the probe (in a kernel) and the verdict (in the grader's process) build the same list.
Values are nonzero multiples of 1/4: exact in float32, so a student's float32 result and the
float64 reference agree to the last bit. The notebooks' self-checks use a few of these cases
(``grader.visible``), never this module.
"""

from __future__ import annotations

import random
from typing import Any

from .data import (  # noqa: F401 - the course data, re-exported for the grader
    IMG_2D,
    KERNEL_2D,
    W_1D,
    X_1D,
    Case1D,
    Case2D,
    CaseCall,
    CaseCounts,
    CaseGap,
    CaseKernel,
    CaseLength,
    CaseSame,
    _fmt,
    _fmt_list,
)

_QUARTERS = [q / 4 for q in range(-8, 9) if q != 0]
_INPUT_VALUES = [q / 4 for q in range(-12, 13) if q != 0]


def _cases_1d() -> tuple[Case1D, ...]:
    rng = random.Random(1301)
    course = tuple(float(v) for v in W_1D)
    n_course = len(X_1D)
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
    w = tuple(float(v) for v in W_1D)
    x = tuple(float(v) for v in X_1D)
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
    course = tuple(tuple(float(v) for v in row) for row in KERNEL_2D)
    cases = [Case2D(course, len(IMG_2D), len(IMG_2D[0]))]
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
    height, width = len(IMG_2D), len(IMG_2D[0])
    r_len, s_len = len(KERNEL_2D), len(KERNEL_2D[0])
    cases = [CaseCounts(height, width, r_len, s_len), CaseCounts(width, height, r_len, s_len - 1)]
    cases.append(CaseCounts(1, 1, 1, 1))
    for _ in range(12):
        height, width = rng.randint(1, 9), rng.randint(1, 9)
        cases.append(CaseCounts(height, width, rng.randint(1, height), rng.randint(1, width)))
    return tuple(cases)


def _cases_length(padded: bool) -> tuple[CaseLength, ...]:
    """Output lengths to compute from (N, K[, P]): the course's first, then every kind a formula
    can get wrong (a one-weight kernel, a kernel as long as the input, an even kernel, padding
    0, padding wider than the kernel, a kernel longer than the unpadded input)."""
    rng = random.Random(1101 if padded else 1001)
    n_course, k_course = len(X_1D), len(W_1D)
    if not padded:
        cases = [CaseLength(n_course, k_course, None), CaseLength(7, 1, None)]
        cases += [CaseLength(6, 6, None), CaseLength(13, 4, None)]
        for _ in range(12):
            n = rng.randint(2, 40)
            cases.append(CaseLength(n, rng.randint(1, n), None))
        return tuple(cases)
    cases = [CaseLength(n_course, k_course, 1), CaseLength(9, 4, 0), CaseLength(5, 2, 3)]
    cases += [CaseLength(4, 7, 2), CaseLength(12, 5, 2), CaseLength(8, 1, 1)]
    for _ in range(12):
        n, p = rng.randint(1, 30), rng.randint(0, 4)
        cases.append(CaseLength(n, rng.randint(1, n + 2 * p), p))
    return tuple(cases)


def _distinct(rng: random.Random, count: int) -> list[float]:
    """``count`` different kernel values: with equal ones a flipped kernel or a wrong corner could
    look right."""
    return rng.sample(_QUARTERS, count)


def _cases_kernel_1d() -> tuple[CaseKernel, ...]:
    rng = random.Random(2201)
    cases = [CaseKernel("padded_matrix", tuple(float(v) for v in W_1D))]
    for _ in range(7):
        cases.append(CaseKernel("padded_matrix", tuple(_distinct(rng, len(W_1D)))))
    return tuple(cases)


def _cases_kernel_2d() -> tuple[CaseKernel, ...]:
    rng = random.Random(4101)
    course = tuple(tuple(float(v) for v in row) for row in KERNEL_2D)
    cases = [CaseKernel("block_matrix", course)]
    for _ in range(5):
        values = _distinct(rng, 9)
        cases.append(
            CaseKernel("block_matrix", tuple(tuple(values[3 * r : 3 * r + 3]) for r in range(3)))
        )
    return tuple(cases)


_LENGTH_PARAMS = ("N", "K", "padding", "stride", "dilation")
_GENERAL_PARAMS = ("w", "N", "padding", "stride", "dilation")


def _fits(n: int, k_len: int, padding: int, dilation: int) -> bool:
    return n + 2 * padding - dilation * (k_len - 1) - 1 >= 0


def _cases_output_length() -> tuple[CaseCall, ...]:
    rng = random.Random(6101)
    n_course, k_course = len(X_1D), len(W_1D)
    # The course's x_1d and kernel first (the notebook prints none of these lengths), then the
    # degenerate kinds: one output, a stride past the input, a one-weight kernel.
    chosen = [
        (n_course, k_course, 1, 2, 1),
        (n_course, k_course, 0, 1, 2),
        (n_course, k_course, 2, 3, 2),
    ]
    chosen += [(5, 3, 0, 1, 2), (4, 2, 0, 5, 1), (7, 1, 0, 3, 1), (9, 4, 1, 1, 1)]
    cases = [CaseCall("conv_output_length", _LENGTH_PARAMS, c) for c in chosen]
    while len(cases) < 30:
        k_len, padding = rng.randint(1, 5), rng.randint(0, 3)
        stride, dilation = rng.randint(1, 4), rng.randint(1, 3)
        n = rng.randint(1, 20)
        if _fits(n, k_len, padding, dilation):
            cases.append(
                CaseCall(
                    "conv_output_length", _LENGTH_PARAMS, (n, k_len, padding, stride, dilation)
                )
            )
    return tuple(cases)


def _cases_general() -> tuple[CaseCall, ...]:
    rng = random.Random(6201)
    course = tuple(float(v) for v in W_1D)
    n_course = len(X_1D)
    chosen = [(course, n_course, 0, 2, 1), (course, n_course, 1, 1, 2), (course, n_course, 1, 2, 2)]
    chosen += [(course, 5, 0, 1, 2), ((0.5,), 6, 0, 3, 1), ((1.25, -0.5), 7, 2, 3, 1)]
    cases = [CaseCall("toeplitz_general", _GENERAL_PARAMS, c) for c in chosen]
    while len(cases) < 24:
        k_len, padding = rng.randint(1, 4), rng.randint(0, 2)
        stride, dilation = rng.randint(1, 3), rng.randint(1, 3)
        n = rng.randint(2, 11)
        if _fits(n, k_len, padding, dilation):
            w = tuple(rng.choice(_QUARTERS) for _ in range(k_len))
            cases.append(
                CaseCall("toeplitz_general", _GENERAL_PARAMS, (w, n, padding, stride, dilation))
            )
    return tuple(cases)


def _cases_transposed() -> tuple[CaseCall, ...]:
    rng = random.Random(6301)
    course = tuple(float(v) for v in W_1D)
    params = ("w", "L", "stride")
    chosen = [(course, 4, 2), (course, 8, 1), (course, 3, 4), ((0.75,), 5, 2), ((1.5, -0.25), 1, 3)]
    cases = [CaseCall("transposed_matrix", params, c) for c in chosen]
    for _ in range(15):
        k_len = rng.randint(1, 4)
        w = tuple(rng.choice(_QUARTERS) for _ in range(k_len))
        cases.append(
            CaseCall("transposed_matrix", params, (w, rng.randint(1, 7), rng.randint(1, 4)))
        )
    return tuple(cases)


#: Kernel lengths for same_padding: the course's first, odd and even ones.
CASES_SAME = tuple(CaseSame(k) for k in (3, 1, 2, 5, 4, 7, 6, 9, 8, 11, 10, 12))
CASES_LENGTH_VALID = _cases_length(padded=False)
CASES_LENGTH_PADDED = _cases_length(padded=True)
CASES_KERNEL_1D = _cases_kernel_1d()
CASES_KERNEL_2D = _cases_kernel_2d()


def _cases_cnn() -> tuple[CaseCall, ...]:
    rng = random.Random(6401)
    params = ("channels", "K")
    chosen = [((1, 4, 8), 3), ((3, 16), 5), ((2, 2, 2, 2), 1), ((1, 1), 1)]
    cases = [CaseCall("cnn_param_count", params, c) for c in chosen]
    for _ in range(14):
        channels = tuple(rng.randint(1, 12) for _ in range(rng.randint(2, 5)))
        cases.append(CaseCall("cnn_param_count", params, (channels, rng.randint(1, 7))))
    return tuple(cases)


CASES_1D = _cases_1d()
CASES_GAP = _cases_gap()
CASES_2D = _cases_2d()
CASES_COUNTS = _cases_counts()
CASES_LENGTH = _cases_output_length()
CASES_GENERAL = _cases_general()
CASES_TRANSPOSED = _cases_transposed()
CASES_CNN = _cases_cnn()

#: The cases of each function exercise, by test grade_id.
CASES: dict[str, tuple[Any, ...]] = {
    "ex1_1_test": CASES_LENGTH_VALID,
    "ex2_1_test": CASES_LENGTH_PADDED,
    "ex2_2_test": CASES_KERNEL_1D,
    "ex2_3_test": CASES_SAME,
    "ex4_1_test": CASES_KERNEL_2D,
    "ex1_3_test": CASES_1D,
    "ex3_1_test": CASES_GAP,
    "ex4_2_test": CASES_2D,
    "ex5_2_test": CASES_COUNTS,
    "ex6_1_test": CASES_LENGTH,
    "ex6_2_test": CASES_GENERAL,
    "ex6_3_test": CASES_TRANSPOSED,
    "ex6_4_test": CASES_CNN,
}
