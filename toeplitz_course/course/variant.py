"""A variant: the course's given numbers for one term, drawn from the variant's name.

``given(name)`` is the data every notebook shows (the 1D input and kernel, the image, its
size, and its kernel) and the range of shifts Exercises 3.2 and 3.3 ask about. The default
variant (no name, or ``"default"``) is the data of :mod:`toeplitz_course.kernel.data`, which
the committed notebooks are in; any other name seeds a ``random.Random`` with its SHA-256, so
the same name gives the same numbers on every machine.

The numbers, the shift range, the length of ``x_1d`` (``LENGTHS``) and the image's size
(``IMAGE_SIZES``) vary; the kernels' sizes (K = 3, 3 x 3) and so the paddings stay, because
Part 3's padded layer is Part 2's answer (the padding that keeps the length: 1 for K = 3) and
much of the prose and several function exercises are about a kernel of 3. The lengths decide
the shapes of Exercises 1.2's and 2.2's matrices; the image's size Exercise 4.1's matrix and
Exercise 5.1's first two counts. A draw is kept only if every exercise stays meaningful and
every answer that depends on the data differs from the default variant's (``_acceptable``); the
grader adds its own condition (no known mistake shares a key with the right answer,
``verdicts.distinct``) through ``accept``. Exercises 3.2 and 3.3 depend only on how many zeros
``x_1d`` has at each end and on the shift range, so two terms share those sets more often than
the matrices (20 pairs of sets in 200 names drawn; the commonest in 10%).

How the notebooks write these numbers, and so how ``build`` moves a notebook from one variant to
another, is :mod:`toeplitz_course.course.phrases`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from ..kernel import data
from ..kernel.selfcheck import EQUIVARIANT_BELOW
from . import reference

DEFAULT = "default"

#: The notebook metadata section where a source notebook records its variant (``{"variant":
#: name, "data": fingerprint}``; absent: the default). ``build`` writes it; the grader and an
#: unconfined kernel read it.
METADATA = "toeplitz_course"

#: The lengths of ``x_1d`` a variant draws from (N; the default's is 10, whose matrices of Parts
#: 1 and 2 would be the default's shape).
LENGTHS = (9, 11, 12)

#: The image sizes (height, width) a variant draws from. Never square: an H/W mix-up must show.
#: At most 7 a side: Part 4 shows the matrix of an image one pixel larger each way, its columns
#: labelled. None whose counts (Exercise 5.1) are the default's: 5 x 4 has 6 outputs and 20
#: pixels as 4 x 5 has.
IMAGE_SIZES = ((4, 6), (6, 4), (5, 6), (6, 5), (4, 7), (7, 4))

#: Draws tried before a name is given up on (a name whose draws all fail is reported, not hung on).
MAX_DRAWS = 20000


@dataclass(frozen=True)
class GivenData:
    """One variant's given numbers: ``x_1d`` (``length`` values; the default 10), ``w_1d``
    (3), ``img_2d`` (``height`` rows of ``width``; the default 4 x 5), ``kernel_2d`` (3 rows of
    3); whole numbers, as the notebooks write them. ``max_shift``: Part 3 asks about the shifts
    ``-max_shift..max_shift`` (``shifts``)."""

    name: str
    x_1d: tuple[int, ...]
    w_1d: tuple[int, ...]
    img_2d: tuple[tuple[int, ...], ...]
    kernel_2d: tuple[tuple[int, ...], ...]
    max_shift: int

    @property
    def shifts(self) -> range:
        return range(-self.max_shift, self.max_shift + 1)

    @property
    def length(self) -> int:
        return len(self.x_1d)

    @property
    def height(self) -> int:
        return len(self.img_2d)

    @property
    def width(self) -> int:
        return len(self.img_2d[0])

    @property
    def is_default(self) -> bool:
        return self.name == DEFAULT


def _rows(values) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(int(v) for v in row) for row in values)


DEFAULT_DATA = GivenData(
    DEFAULT,
    tuple(int(v) for v in data.X_1D),
    tuple(int(v) for v in data.W_1D),
    _rows(data.IMG_2D),
    _rows(data.KERNEL_2D),
    data.MAX_SHIFT,
)


def canonical(name: str | None) -> str:
    """The variant's name as configured: None and "" are the default."""
    name = (name or "").strip()
    return name or DEFAULT


def equivariant_shifts(given: GivenData, padding: int) -> set[int]:
    """The shifts in ``given.shifts`` that commute with ``Conv1d(w_1d, padding)`` on ``x_1d``."""
    return {n for n, gap in gaps(given, padding).items() if gap < EQUIVARIANT_BELOW}


def edge_zeros(x: tuple[int, ...]) -> tuple[int, int]:
    lead = next(i for i, v in enumerate(x) if v)
    trail = next(i for i, v in enumerate(reversed(x)) if v)
    return lead, trail


def _acceptable(given: GivenData) -> bool:
    """Every exercise stays meaningful and every data-dependent answer is new."""
    base = DEFAULT_DATA
    w, k = list(given.w_1d), [list(r) for r in given.kernel_2d]
    if 0 in w or w == w[::-1] or given.w_1d == base.w_1d:
        return False  # a zero weight hides a column; a palindrome hides the flipped kernel
    if any(0 in r for r in k) or given.kernel_2d == base.kernel_2d:
        return False  # Part 5 counts the nonzero entries of a kernel with no zero
    transposed = [list(c) for c in zip(*k, strict=True)]
    turned = [reference.flip(k), [r[::-1] for r in k], k[::-1], transposed]
    if any(t == k for t in turned):
        return False  # each flip and the transpose is a mistake of its own
    flat = [v for row in given.img_2d for v in row]
    if given.img_2d == base.img_2d or not (0.3 <= flat.count(0) / len(flat) <= 0.7):
        return False  # a binary image with zeros (the prose says so) and enough ones
    x = given.x_1d
    if x[0] != 0 or x[-1] != 0 or x == base.x_1d:
        return False  # zero at both ends, as the prose says
    lead, trail = edge_zeros(x)
    if any(v == 0 for v in x[lead : len(x) - trail]):
        return False
    valid, padded = equivariant_shifts(given, 0), equivariant_shifts(given, 1)
    if valid == set(given.shifts) or valid == padded:
        return False  # "neither layer is equivariant for every shift", "for different shifts"
    if min(given.shifts) in padded or max(given.shifts) in padded:
        return False  # Exercise 3.4 asks where the padded layer breaks on each side
    return valid != equivariant_shifts(base, 0) and padded != equivariant_shifts(base, 1)


def candidates(name: str) -> Iterator[GivenData]:
    """The draws of variant ``name``, in order (deterministic: seeded by the name's SHA-256)."""
    seed = int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big")
    rng = random.Random(seed)
    weights_1d = [-2, -1, 1, 2]  # |w| <= 2: the notebooks' colour scales are -2..2
    weights_2d = [-3, -2, -1, 1, 2, 3]  # and -3..3 for the 2D kernel
    for _ in range(MAX_DRAWS):
        n = rng.choice(LENGTHS)
        # At most N - 3: a left shift then still leaves one output of the unpadded layer's
        # N - 2 to compare (Part 3's summary counts them); at most 7, the figures' width.
        max_shift = rng.choice(range(4, min(7, n - 3) + 1))
        lead, trail = rng.randint(1, 4), rng.randint(1, 4)
        body = [rng.randint(1, 9) for _ in range(n - lead - trail)]
        height, width = rng.choice(IMAGE_SIZES)
        yield GivenData(
            name,
            tuple([0] * lead + body + [0] * trail),
            tuple(rng.choice(weights_1d) for _ in range(3)),
            tuple(tuple(rng.randint(0, 1) for _ in range(width)) for _ in range(height)),
            tuple(tuple(rng.choice(weights_2d) for _ in range(3)) for _ in range(3)),
            max_shift,
        )


def fingerprint(given: GivenData) -> str:
    """A digest of the numbers and sizes (not the name). A source notebook records it beside
    its variant's name, so that notebooks built by a version whose draw of that name differed
    are caught (``verdicts.drawn_otherwise``) before they are judged or rewritten by today's."""
    text = json.dumps(
        [given.x_1d, given.w_1d, given.img_2d, given.kernel_2d, given.max_shift],
        separators=(",", ":"),
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class VariantProblem(ValueError):
    pass


def given(name: str | None, accept: Callable[[GivenData], bool] | None = None) -> GivenData:
    """The data of variant ``name``: the default's for the default, else the first draw that is
    acceptable (and passes ``accept``, the grader's condition)."""
    name = canonical(name)
    if name == DEFAULT:
        return DEFAULT_DATA
    for candidate in candidates(name):
        if _acceptable(candidate) and (accept is None or accept(candidate)):
            return candidate
    raise VariantProblem(
        f"variant {name!r}: no acceptable draw in {MAX_DRAWS}; choose another name"
    )


def gaps(given: GivenData, padding: int) -> dict[int, float]:
    """``gap_n`` of ``Conv1d(w_1d, padding)`` on ``x_1d`` for every shift in ``given.shifts``."""
    return dict(_gaps(given, padding))


@functools.cache  # asked by every draw (the default's sets), every phrase and every table
def _gaps(given: GivenData, padding: int) -> tuple[tuple[int, float], ...]:
    w = torch.tensor(given.w_1d, dtype=torch.float64).view(1, 1, -1)
    x = torch.tensor([given.x_1d], dtype=torch.float64)

    def conv(v: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.conv1d(v, w, padding=padding)

    return tuple((n, reference.equivariance_gap(conv, x, n)) for n in given.shifts)
