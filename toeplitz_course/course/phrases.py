"""The texts a source notebook quotes a variant's data in: its phrases.

``phrases(given, notebook)`` is every text of ``notebook`` that states a number of the variant
``given`` or an answer built from them (the data as code and as prose, the model answers, the
sizes in their context), by what it is. ``build.to_variant`` moves a notebook from variant A to
B by replacing ``phrases(A)[k]`` with ``phrases(B)[k]``, all in one pass per cell. A phrase is
written with enough context to mean one thing in the notebooks it is replaced in ("$6 \\times
20$" is Part 4's matrix, "a list of 10 rows" means Part 2's in 02 and Part 4's in 04, so the
sizes are scoped to the notebooks that state them).
"""

from __future__ import annotations

from ..kernel.selfcheck import EQUIVARIANT_BELOW
from . import reference
from .variant import GivenData, edge_zeros, equivariant_shifts, gaps


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


def _sub(i: int) -> str:
    """A LaTeX subscript as the notebooks write it: ``9``, ``{10}``."""
    return str(i) if 0 <= i <= 9 else f"{{{i}}}"


def _x(i: int) -> str:
    """Entry ``i`` of x: ``x_9``, ``x_{10}``."""
    return "x_" + _sub(i)


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
        "right shift tap": f"\\tau_n(f(x))_{_sub(n - 1)} = f(x)_{{{n - 1}-n}}",
        "last output": f"$f(\\tau_n x)_{_sub(n - 1)}$",
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
    lead, trail = edge_zeros(x)
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
