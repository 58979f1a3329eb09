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
the matrices (15 pairs of sets in 200 names drawn; the commonest in 28%).

Also here: the texts the notebooks quote the data in (``phrases``), so that ``build`` can move a
source notebook from one variant to another by replacing each variant's phrase with the other's.
"""

from __future__ import annotations

import functools
import hashlib
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from ..kernel import data
from ..kernel.selfcheck import EQUIVARIANT_BELOW
from . import reference

DEFAULT = "default"

#: The notebook metadata section where a source notebook records its variant (``{"variant":
#: name}``; absent: the default). ``build`` writes it; an unconfined kernel reads it.
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


def _edge_zeros(x: tuple[int, ...]) -> tuple[int, int]:
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
    lead, trail = _edge_zeros(x)
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


# -- how the notebooks write the data ----------------------------------------------------------


def _f(v: float) -> str:
    """A number as the notebooks' code writes it: ``1.``, ``-2.``, ``0.``."""
    return f"{int(v)}."


def _f_wide(v: float) -> str:
    """Right-aligned to 3 characters, as in a matrix literal: `` 1.``, ``-2.``."""
    return f"{_f(v):>3}"


def _set(values: set[int]) -> str:
    return "{" + ", ".join(str(v) for v in sorted(values)) + "}"


def _list_and(values: list[int]) -> str:
    return ", ".join(str(v) for v in values)


def toeplitz_rows(given: GivenData) -> str:
    """Exercise 1.2's model answer, the rows of T as the source notebook writes them."""
    t = reference.toeplitz_1d(list(given.w_1d), len(given.x_1d), 0).tolist()
    lines = ["T = ["]
    for i, row in enumerate(t):
        lines.append("    [" + ", ".join(_f_wide(v) for v in row) + f"],  # row {i}: output {i}")
    lines.append("]")
    return "\n".join(lines)


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


def _vec(symbol: str, rows: int, cols: int) -> str:
    """``(X_{0,0}, ..., X_{rows-1,cols-1})^T``: every entry up to 6, else the first row and the
    last entry, as Part 4 writes a flattened image or output."""
    if rows * cols <= 6:
        entries = [f"{symbol}_{{{r},{c}}}" for r in range(rows) for c in range(cols)]
    else:
        first = [f"{symbol}_{{0,{c}}}" for c in range(cols)]
        if cols > 3:
            first[2:-1] = ["\\dots"]
        entries = first + [f"{symbol}_{{1,0}}", "\\dots", f"{symbol}_{{{rows - 1},{cols - 1}}}"]
    return "(" + ", ".join(entries) + ")^\\top"


def _image_phrases(given: GivenData) -> dict[str, str]:
    """The sizes Parts 4 and 5 write, for ``given``'s image (H x W) and 3 x 3 kernel: the
    output (H-2) x (W-2), the matrix's shape, the flat positions, the block structure, and
    Part 4's larger example (one pixel more each way)."""
    H, W = given.height, given.width
    R, S = len(given.kernel_2d), len(given.kernel_2d[0])
    ho, wo = H - R + 1, W - S + 1
    n, p = ho * wo, H * W
    blocks = []
    for i in range(ho):
        cells = ["0"] * H
        for a in range(R):
            cells[i + a] = f"T_{a}"
        blocks.append(" & ".join(cells))
    first_patch = [
        ", ".join(str(W * a + b) for b in range(S)) + f"$ (image row {a})" for a in range(R)
    ]
    big_h, big_w = H + 1, W + 1
    big_ho, big_wo = big_h - R + 1, big_w - S + 1
    return {
        "image size": f"${H} \\times {W}$ image",
        "binary image size": f"${H} \\times {W}$ binary image",
        "output shape sum": f"$({H}-{R}+1) \\times ({W}-{S}+1) = {ho} \\times {wo}$",
        "output shape comment": f"tuple(y_2d.shape))  # (1, 1, {ho}, {wo})",
        "HW": f"$H W = {p}$",
        "pixel position": f"${W}r + c$",
        "vec X": f"\\operatorname{{vec}}(X) = {_vec('X', H, W)} \\in \\mathbb{{R}}^{{{p}}}",
        "output size": f"${ho} \\times {wo}$ output",
        "output position": f"${wo}i + j$",
        "vec Y": f"\\operatorname{{vec}}(Y) = {_vec('Y', ho, wo)} \\in \\mathbb{{R}}^{{{n}}}",
        "T size": f"${n} \\times {p}$",
        "kernel column": f"${W}(i+a) + (j+b)$",
        "first patch": "pixels $" + ", $".join(first_patch[:-1]) + " and $" + first_patch[-1],
        "gap": f"$W - S = {W - S}$ zero" + ("s" if W - S != 1 else ""),
        "row starts": f"starts {W} positions later",
        "block size": f"blocks of ${wo} \\times {W}$",
        "block size 2": f"the ${wo} \\times {W}$ 1D Toeplitz matrix",
        "grid blocks": f"the ${wo} \\times {W}$ blocks",
        "block matrix": "T = \\begin{bmatrix} " + " \\\\ ".join(blocks) + " \\end{bmatrix}",
        "list rows": f"a list of {n} rows, by the rule above",
        "fc2d": f"nn.Linear(in_features={p}, out_features={n}, bias=False)",
        "block_matrix doc": f"The {n} x {p} matrix of the valid conv2d of a {H} x {W} image with "
        f"a {R} x {S} kernel.\n\n    kernel : 2-D tensor of shape ({R}, {S}). Row {wo}*i + j "
        f"produces output (i, j); column {W}*r + c",
        "block_matrix solution": f"    T_2d = torch.zeros({n}, {p})\n"
        f"    for i in range({ho}):\n"
        f"        for j in range({wo}):\n"
        f"            for a in range({R}):\n"
        f"                for b in range({S}):\n"
        f"                    T_2d[{wo} * i + j, {W} * (i + a) + (j + b)] = kernel[a, b]\n",
        "larger image": f"The same kernel on a larger ${big_h} \\times {big_w}$ image. There "
        f"are now ${big_ho} \\times {big_wo}$ outputs and ${big_h}$ image rows, so the matrix "
        f"is ${big_ho * big_wo} \\times {big_h * big_w}$, made of ${big_ho} \\times {big_h}$ "
        f"blocks of size ${big_wo} \\times {big_w}$.",
        "larger blocks": f"rows, now of size ${big_wo} \\times {big_w}$.",
        "maps": f"$\\mathbb{{R}}^{{{p}}} \\to \\mathbb{{R}}^{{{n}}}$",
        "from to": f"from $\\mathbb{{R}}^{{{p}}}$ to $\\mathbb{{R}}^{{{n}}}$",
        "Linear 05": f"`nn.Linear({p}, {n}, bias=False)`",
        "flattened": f"the {p} flattened pixels to the {n} flattened",
        "dense comment": f"entries of the dense {n} x {p} matrix",
        "ex5_1a answer": f"n_params_dense = {n * p}  # out_features * in_features = {n} * {p}",
        "ex5_1b answer": f"n_nonzero_toeplitz = {n * R * S}  # {n} outputs * {R * S} pixels per "
        "patch",
    }


#: The notebooks that quote the length of ``x_1d``.
LENGTH_NOTEBOOKS = ("01_conv1d_toeplitz", "02_padding", "03_equivariance", "06_using_the_matrix")


def _x(i: int) -> str:
    """Entry ``i`` of x as the notebooks write it in LaTeX: ``x_9``, ``x_{10}``."""
    return f"x_{i}" if 0 <= i <= 9 else f"x_{{{i}}}"


def _length_phrases(given: GivenData) -> dict[str, str]:
    """The sizes Parts 1-3 and 6 write, for ``given``'s N = len(x_1d) and a kernel of 3: the
    unpadded layer's N - 2 outputs, the padded layer's N, the last entries and positions."""
    n, m = given.length, given.length - 2
    rows = "\n".join(f"#     [..{n} numbers..],  # row {i}: output {i}" for i in (0, 1))
    return {
        "N prose": f"$N = {n}$",
        "N comment": f"Parts 1-3 (N = {n})",
        "x_1d comment": f"(channels=1, length={n})",
        "input shape": f"`(1, {n})`: one channel of length {n}",
        "linear 1d": f"`nn.Linear(in_features={n}, out_features={m}, bias=False)`",
        "weight shape": f"`(out_features, in_features)` = `({m}, {n})`",
        "list 1d": f"a list of {m} rows with {n} numbers each",
        "ex1_2 comment": f"# Write T as {m} rows of {n} numbers; row i produces output i:\n"
        f"# T = [\n{rows}\n#     ...\n#     [..{n} numbers..],  # row {m - 1}: output {m - 1}",
        "general matrix": f"A general ${m} \\times {n}$ matrix has ${m * n}$ entries",
        "fewer outputs": f"turned {n} inputs into only {m} outputs",
        "padding positions": f"at positions $-1$ and ${n}$",
        "padded range": f"\\qquad i = 0, \\dots, {n - 1},$$",
        "padding zeros": f"$x_{{-1}} = {_x(n)} = 0$",
        "padded space": f"\\mathbb{{R}}^{{{n} \\times {n}}}",
        "padded unpadded": f"${n} \\times {n + 2}$ unpadded",
        "padded vector": f"$(x_{{-1}}, x_0, \\dots, {_x(n - 1)}, {_x(n)})$",
        "last entry gone": f"the entry for ${_x(n)}$ is gone",
        "padded indices": f"0 \\le i, j \\le {n - 1}.$$",
        "padded size": f"the ${n} \\times {n}$ matrix of",
        "padded rows": f"a list of {n} rows. Build",
        "padded doc": f"The {n} x {n} matrix of nn.Conv1d(kernel_size=3, padding=1) on {n} inputs, "
        f"kernel w.\n\n    w : 1-D tensor of 3 numbers. Row i holds the weights output i gives to "
        f"inputs 0..{n - 1}.",
        "padded solution": f"    T_pad = torch.zeros({n}, {n})\n"
        f"    for i in range({n}):\n"
        "        for r in range(3):\n"
        "            j = i + r - 1  # the input that w[r] meets for output i\n"
        f"            if 0 <= j < {n}:",
        "same length": f"`padding=1` gave {n} outputs from {n} inputs",
        "x_1d inputs": f"`x_1d` ({n} inputs)",
        "in out": f"length: {n} in, {n} out.",
        "unpadded layer": f"`01_conv1d_toeplitz`): {n} inputs, {m} outputs.",
        "padded layer": f"`02_padding`): {n} inputs, {n} outputs.",
        "shift lengths": f"an input of length {n} and an output of length {m}",
        "last position": f"(position {n - 1})",
        "border positions": f"(position 0 or {n - 1})",
        "shifted out": f"x_{{{n}-n}}",
        "right shift tap": f"\\tau_n(f(x))_{{{n - 1}}} = f(x)_{{{n - 1}-n}}"
        if n > 10
        else f"\\tau_n(f(x))_{n - 1} = f(x)_{{{n - 1}-n}}",
        "last output": f"$f(\\tau_n x)_{{{n - 1}}}$" if n > 10 else f"$f(\\tau_n x)_{n - 1}$",
        "last windows": f"${_x(m)}$ and ${_x(n - 1)}$",
        "left shift window": f"${_x(m)}$, ${_x(n - 1)}$ and a shifted-in zero at position "
        f"${m} - |n|$, worth $w_0 {_x(m)} + w_1 {_x(n - 1)}$",
        "left shift output": f"output ${m} + n$",
        "channels matrix": f"${3 * m} \\times {2 * n}$ matrix",  # Part 6: 2 channels in, 3 out
        "left shift summary": f"over ${_x(m)}$, ${_x(n - 1)}$ and a shifted-in zero: "
        f"$w_0 {_x(m)} + w_1 {_x(n - 1)}$",
    }


#: The notebooks that quote the image's sizes: only there are those phrases replaced (a size as
#: short as "a list of 10 rows" means another matrix in Part 2).
IMAGE_NOTEBOOKS = ("04_conv2d_block_toeplitz", "05_parameter_counts")


def phrases(given: GivenData, notebook: str | None = None) -> dict[str, str]:
    """Every text a source notebook quotes the data or an answer derived from them in, by what
    it is; of ``notebook`` (its name without ``.ipynb``) when given, else of any. ``build``
    moves a notebook from variant A to B by replacing ``phrases(A)[k]`` with ``phrases(B)[k]``;
    after that no phrase of A may be left."""
    x, w = given.x_1d, given.w_1d
    img, k2 = given.img_2d, given.kernel_2d
    t2 = reference.block_toeplitz_2d([list(r) for r in k2], len(img), len(img[0])).tolist()
    valid, padded = equivariant_shifts(given, 0), equivariant_shifts(given, 1)
    pad_gaps = gaps(given, 1)
    right = [n for n in given.shifts if n > 0 and pad_gaps[n] >= EQUIVARIANT_BELOW]
    left = [n for n in given.shifts if n < 0 and pad_gaps[n] >= EQUIVARIANT_BELOW]
    lead, trail = _edge_zeros(x)
    m = given.max_shift
    unpadded_breaks = min(n for n in given.shifts if n not in valid)
    # The panels of Part 3 show one broken shift of each kind: the unpadded layer's lowest, the
    # padded layer's nearest to 0 on each side (where it starts to break).
    panels = [
        ("conv1d_layer", unpadded_breaks),
        ("conv1d_pad", max(left)),
        ("conv1d_pad", min(right)),
    ]
    return {
        "x_1d code": "torch.tensor([[" + ", ".join(_f(v) for v in x) + "]])",
        "w_1d code": "torch.tensor([" + ", ".join(_f(v) for v in w) + "])",
        "w_1d prose": "$w = (" + ", ".join(str(v) for v in w) + ")$",
        "img_2d code": "img_2d = torch.tensor([\n"
        + "".join("    [" + ", ".join(str(v) for v in row) + "],\n" for row in img)
        + "], dtype=torch.float)",
        "kernel_2d code": "torch.tensor([\n"
        + "".join("        [" + ", ".join(f"{_f(v):>3}" for v in row) + "],\n" for row in k2)
        + "    ])",
        "T_2d row 0": "    [" + ", ".join(_f_wide(v) for v in t2[0]) + "]",
        "T_1d": toeplitz_rows(given),
        "ex3_2 set": "equivariant_shifts_valid = " + _set(valid),
        "ex3_3 set": "equivariant_shifts_padded = " + _set(padded),
        "padded set prose": "only for the shifts $"
        + _set(padded).replace("{", "\\{").replace("}", "\\}")
        + "$",
        "valid set prose": "the unpadded layer is equivariant for the shifts $"
        + _set(valid).replace("{", "\\{").replace("}", "\\}")
        + "$",
        "padded breaks right": "right shifts $n = " + (_list_and(right) or "\\text{none}") + "$",
        "padded breaks left": "left shifts $n = " + (_list_and(left) or "\\text{none}") + "$",
        "edge zeros": f"`x_1d` starts with ${lead}$ zero{'s' if lead > 1 else ''} and ends "
        f"with ${trail}$",
        "shift range code": f"range(-{m}, {m + 1})",
        "shift range prose": f"$-{m}, \\dots, {m}$",
        "shift set prose": f"$n \\in \\{{-{m}, \\dots, {m}\\}}$",
        "shift range words": f"from $-{m}$ to ${m}$, one per row",
        "shift rows shape": f"# ({2 * m + 1}, {given.length})",
        "lowest shift example": f"$n = -{m}$ that is output {given.length - 2 - m} of "
        f"{given.length - 2}",
        "broken panels": "examples = ["
        + ", ".join(f'("{name}", {name}, {n})' for name, n in panels)
        + "]",
    } | (
        (_image_phrases(given) if notebook in (None, *IMAGE_NOTEBOOKS) else {})
        | (_length_phrases(given) if notebook in (None, *LENGTH_NOTEBOOKS) else {})
    )
