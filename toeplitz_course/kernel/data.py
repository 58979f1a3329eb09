"""The course's given data and the types of the cases on which function answers are called.

Plain numbers and descriptions, no answer: the probe needs them in the student's kernel, the
grader to compute what each case should give, and the notebooks' self-checks (which inline this
module, see ``selfcheck``) to name a case. The data are the numbers the notebooks show students.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# The course's data, as plain lists (the notebooks build float32 tensors from them).
X_1D = [0, 0, 1, 2, 3, 4, 5, 6, 7, 0]  # x_1d, the 1D input (N = 10)
W_1D = [1, 1, -2]  # the 1D kernel (K = 3)
IMG_2D = [  # img_2d, H x W = 4 x 5
    [1, 1, 0, 1, 0],
    [0, 1, 1, 0, 1],
    [1, 0, 0, 1, 0],
    [1, 1, 1, 0, 0],
]
KERNEL_2D = [  # the 2D kernel, R x S = 3 x 3
    [2, 1, -2],
    [-3, -1, 1],
    [1, 1, -1],
]
MAX_SHIFT = 5  # Exercises 3.2 and 3.3 ask about the shifts -MAX_SHIFT..MAX_SHIFT


def _fmt(v: float) -> str:
    return f"{v + 0.0:g}"  # + 0.0 turns -0.0 into 0.0


def _fmt_list(values: Sequence[Any]) -> str:
    return (
        "[" + ", ".join(_fmt_list(v) if isinstance(v, Sequence) else _fmt(v) for v in values) + "]"
    )


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
        return f"toeplitz_1d(w={_fmt_list(self.w)}, N={self.n}{pad})"


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


@dataclass(frozen=True)
class CaseLength:
    n: int
    k: int
    padding: int | None  # None: the unpadded length, called as n_out_valid(N, K)

    def call(self) -> str:
        if self.padding is None:
            return f"n_out_valid(N={self.n}, K={self.k})"
        return f"n_out_padded(N={self.n}, K={self.k}, P={self.padding})"


@dataclass(frozen=True)
class CaseKernel:
    """A builder called on a kernel alone: the sizes are the exercise's (``name`` says which)."""

    name: str
    kernel: tuple[Any, ...]  # floats (1D) or rows of floats (2D)

    def call(self) -> str:
        return f"{self.name}({_fmt_list(self.kernel)})"


@dataclass(frozen=True)
class CaseSame:
    k: int

    def call(self) -> str:
        return f"same_padding(K={self.k})"


@dataclass(frozen=True)
class CaseCall:
    """A call of a Part 6 function: its name, parameter names and arguments (a kernel ``w`` or a
    list of ``channels`` as a tuple; the probe passes ``w`` as a float32 tensor, ``channels`` as
    a list)."""

    name: str
    params: tuple[str, ...]
    args: tuple[Any, ...]

    def arg(self, param: str) -> Any:
        return self.args[self.params.index(param)]

    def call(self) -> str:
        shown = (
            f"{p}={_fmt_list(a) if isinstance(a, (tuple, list)) else a}"
            for p, a in zip(self.params, self.args, strict=True)
        )
        return f"{self.name}({', '.join(shown)})"
