"""``similarity``: copies rank above every pair of independently written right answers.

The class here is written as students would write it: for each function exercise at least six
genuinely different right implementations (loops, identity-basis convolution, unfold, numpy,
index arithmetic, ...), each checked against torch's own convolution, and seven written answers to
ex3_4 in different words. Copiers take one of those and change it as copiers do: rename
variables, reorder independent lines, rewrite or drop comments, paraphrase a few sentences. One
copier hands in a Colab file derived from another student's (same cell ids, Drive file id,
stray output, typo), with its own answers. The tests compute the scores and check the order;
no expected score is written down.
"""

from __future__ import annotations

import json
import random
import shutil
import string
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from toeplitz_course.course.contract import EXERCISES
from toeplitz_course.course.reference import make_shift
from toeplitz_course.instructor import similarity as sim
from toeplitz_course.instructor.examples import answer, release, to_colab

ROOT = Path(__file__).resolve().parent.parent
GIVEN = "    # YOUR CODE HERE\n    raise NotImplementedError()"

# --------------------------------------------------------------------------- ex1_3 toeplitz_1d
EX1_3 = [
    # 0: two loops, output by kernel tap
    """    w = torch.as_tensor(w, dtype=torch.float32)
    k = len(w)
    out_len = N + 2 * padding - k + 1
    M = torch.zeros(out_len, N)
    for row in range(out_len):
        for tap in range(k):
            col = row + tap - padding
            if 0 <= col < N:
                M[row, col] = w[tap]
    return M
""",
    # 1: the padded band, then the columns of the real input
    """    if not torch.is_tensor(w):
        w = torch.tensor(w)
    w = w.float()
    K = w.numel()
    L = N + 2 * padding
    full = torch.zeros(L - K + 1, L)
    for i in range(L - K + 1):
        full[i, i:i + K] = w
    return full[:, padding:padding + N]
""",
    # 2: the convolution of every basis vector is a column
    """    import torch.nn.functional as F
    w = torch.as_tensor(w).float()
    eye = torch.eye(N).unsqueeze(1)
    cols = F.conv1d(eye, w.view(1, 1, -1), padding=padding)
    return cols.squeeze(1).T.contiguous()
""",
    # 3: a sum of shifted identities (numpy's eye has the offset)
    """    import numpy as np
    weights = np.asarray(w, dtype=np.float32)
    rows = N + 2 * padding - len(weights) + 1
    mat = np.zeros((rows, N), dtype=np.float32)
    for r in range(len(weights)):
        mat += weights[r] * np.eye(rows, N, k=r - padding, dtype=np.float32)
    return torch.from_numpy(mat)
""",
    # 4: index arithmetic, no loop
    """    w = torch.as_tensor(w).to(torch.float32)
    K = len(w)
    n_rows = N - K + 1 + 2 * padding
    i = torch.arange(n_rows).unsqueeze(1)
    j = torch.arange(N).unsqueeze(0)
    d = j - i + padding
    ok = (d >= 0) & (d < K)
    return torch.where(ok, w[d.clamp(0, K - 1)], torch.zeros(()))
""",
    # 5: nested comprehension over a helper
    """    taps = [float(v) for v in w]
    size = N + 2 * padding - len(taps) + 1

    def entry(i, j):
        r = j - i + padding
        return taps[r] if 0 <= r < len(taps) else 0.0

    return torch.tensor([[entry(i, j) for j in range(N)] for i in range(size)])
""",
    # 6: roll a first row
    """    w = torch.as_tensor(w, dtype=torch.float)
    K = len(w)
    first = torch.zeros(N + 2 * padding)
    first[:K] = w
    rows = [torch.roll(first, s) for s in range(N + 2 * padding - K + 1)]
    return torch.stack(rows)[:, padding:N + padding]
""",
    # 7: unfold the padded basis
    """    w = torch.as_tensor(w, dtype=torch.float32)
    basis = torch.nn.functional.pad(torch.eye(N), (padding, padding))
    windows = basis.unfold(1, w.numel(), 1)
    return (windows @ w).T
""",
]

# ------------------------------------------------------------------------ ex3_1 equivariance_gap
EX3_1 = [
    """    tau = make_shift(n)
    return (f(tau(x)) - tau(f(x))).abs().max().item()
""",
    """    shift = make_shift(n)
    lhs = f(shift(x))
    rhs = shift(f(x))
    return float(torch.max(torch.abs(lhs - rhs)))
""",
    """    t = make_shift(n)
    diff = f(t(x)) - t(f(x))
    return diff.abs().amax().item()
""",
    """    a = f(make_shift(n)(x)).detach().numpy()
    b = make_shift(n)(f(x)).detach().numpy()
    import numpy as np
    return float(np.max(np.abs(a - b)))
""",
    """    tau_n = make_shift(n)
    shifted_then_f = f(tau_n(x))
    f_then_shifted = tau_n(f(x))
    gap = 0.0
    for u, v in zip(shifted_then_f.flatten().tolist(), f_then_shifted.flatten().tolist()):
        gap = max(gap, abs(u - v))
    return gap
""",
    """    with torch.no_grad():
        d = f(make_shift(n)(x)).sub(make_shift(n)(f(x)))
    return torch.linalg.vector_norm(d, ord=float("inf")).item()
""",
    """    tau = make_shift(n)
    pairs = zip(f(tau(x))[0].tolist(), tau(f(x))[0].tolist())
    return float(max(abs(p - q) for p, q in pairs))
""",
    """    return (f(make_shift(n)(x)) - make_shift(n)(f(x))).norm(p=float('inf')).item()
""",
]

# ---------------------------------------------------------------------- ex4_2 block_toeplitz_2d
EX4_2 = [
    # 0: four loops
    """    k = torch.as_tensor(kernel, dtype=torch.float32)
    R, S = k.shape
    oh, ow = H - R + 1, W - S + 1
    T = torch.zeros(oh * ow, H * W)
    for i in range(oh):
        for j in range(ow):
            for a in range(R):
                for b in range(S):
                    T[i * ow + j, (i + a) * W + j + b] = k[a, b]
    return T
""",
    # 1: the basis images through conv2d
    """    import torch.nn.functional as F
    k = torch.as_tensor(kernel, dtype=torch.float32)
    basis = torch.eye(H * W).reshape(H * W, 1, H, W)
    out = F.conv2d(basis, k.reshape(1, 1, *k.shape))
    return out.reshape(H * W, -1).T
""",
    # 2: a block Toeplitz matrix of 1D bands, one band per kernel row
    """    K = torch.as_tensor(kernel).float()
    R, S = K.shape
    Ho, Wo = H - R + 1, W - S + 1

    def band(row):
        B = torch.zeros(Wo, W)
        for c in range(Wo):
            B[c, c:c + S] = row
        return B

    blocks = [band(K[a]) for a in range(R)]
    T = torch.zeros(Ho * Wo, H * W)
    for i in range(Ho):
        for a in range(R):
            T[i * Wo:(i + 1) * Wo, (i + a) * W:(i + a + 1) * W] = blocks[a]
    return T
""",
    # 3: im2col with unfold, then the weights
    """    import torch.nn.functional as F
    ker = torch.as_tensor(kernel, dtype=torch.float32)
    R, S = ker.shape
    eye = torch.eye(H * W).view(H * W, 1, H, W)
    patches = F.unfold(eye, (R, S))
    return torch.einsum("nkl,k->ln", patches, ker.flatten())
""",
    # 4: numpy, one output at a time through a reshaped view
    """    import numpy as np
    ker = np.asarray(kernel, dtype=np.float32)
    R, S = ker.shape
    rows_out, cols_out = H - R + 1, W - S + 1
    M = np.zeros((rows_out * cols_out, H * W), dtype=np.float32)
    for o in range(rows_out * cols_out):
        y, x = divmod(o, cols_out)
        M[o].reshape(H, W)[y:y + R, x:x + S] = ker
    return torch.from_numpy(M)
""",
    # 5: Kronecker products of selection matrices
    """    kern = torch.as_tensor(kernel).to(torch.float32)
    R, S = kern.shape
    ho, wo = H - R + 1, W - S + 1
    T = torch.zeros(ho * wo, H * W)
    for a in range(R):
        rows = torch.zeros(ho, H)
        rows[torch.arange(ho), torch.arange(ho) + a] = 1
        for b in range(S):
            cols = torch.zeros(wo, W)
            cols[torch.arange(wo), torch.arange(wo) + b] = 1
            T += kern[a, b] * torch.kron(rows, cols)
    return T
""",
    # 6: every entry from its coordinates
    """    kk = [[float(v) for v in row] for row in kernel]
    R, S = len(kk), len(kk[0])
    Hout, Wout = H - R + 1, W - S + 1

    def weight(o, p):
        oi, oj = divmod(o, Wout)
        pi, pj = divmod(p, W)
        a, b = pi - oi, pj - oj
        return kk[a][b] if 0 <= a < R and 0 <= b < S else 0.0

    return torch.tensor([[weight(o, p) for p in range(H * W)] for o in range(Hout * Wout)])
""",
]

# --------------------------------------------------------------------------- ex5_2 param_counts
EX5_2 = [
    """    n_out = (H - R + 1) * (W - S + 1)
    return (n_out * H * W, n_out * R * S, R * S)
""",
    """    out_h = H - R + 1
    out_w = W - S + 1
    dense = out_h * out_w * H * W
    nonzero = out_h * out_w * R * S
    kernel = R * S
    return dense, nonzero, kernel
""",
    """    outputs = 0
    nonzeros = 0
    for i in range(H - R + 1):
        for j in range(W - S + 1):
            outputs += 1
            nonzeros += R * S
    return (outputs * H * W, nonzeros, R * S)
""",
    """    import math
    n_kernel = math.prod((R, S))
    n_outputs = math.prod((H - R + 1, W - S + 1))
    return (n_outputs * math.prod((H, W)), n_outputs * n_kernel, n_kernel)
""",
    """    return tuple(int(v) for v in ((H - R + 1) * (W - S + 1) * H * W,
                                  (H - R + 1) * (W - S + 1) * R * S, R * S))
""",
    """    n_in = H * W
    n_out = (H - R + 1) * (W - S + 1)
    per_output = R * S  # every output sees one full window
    return (n_in * n_out, per_output * n_out, per_output)
""",
    """    sizes = {"in": H * W, "out": (H - R + 1) * (W - S + 1), "k": R * S}
    counts = {
        "dense": sizes["in"] * sizes["out"],
        "nonzero": sizes["k"] * sizes["out"],
        "kernel": sizes["k"],
    }
    return (counts["dense"], counts["nonzero"], counts["kernel"])
""",
    """    import numpy as np
    out_shape = np.array([H, W]) - np.array([R, S]) + 1
    n_out = int(np.prod(out_shape))
    return (n_out * H * W, n_out * R * S, R * S)
""",
]

# ------------------------------------------------------------------------ ex2_2 padded_matrix
EX2_2 = [
    # 0: two loops, the rule
    """    T = torch.zeros(10, 10)
    for i in range(10):
        for r in range(3):
            j = i + r - 1
            if 0 <= j < 10:
                T[i, j] = w[r]
    return T
""",
    # 1: three constant diagonals
    """    w = torch.as_tensor(w, dtype=torch.float32)
    below = torch.diag(w[0].repeat(9), -1)
    middle = torch.diag(w[1].repeat(10))
    above = torch.diag(w[2].repeat(9), 1)
    return below + middle + above
""",
    # 2: the band on the padded input, then the real columns
    """    full = torch.zeros(10, 12)
    for row in range(10):
        full[row, row:row + 3] = torch.as_tensor(w, dtype=torch.float32)
    return full[:, 1:11]
""",
    # 3: numpy's eye with an offset, one per weight
    """    import numpy as np
    k = np.asarray(w, dtype=np.float32)
    m = k[0] * np.eye(10, k=-1) + k[1] * np.eye(10) + k[2] * np.eye(10, k=1)
    return torch.tensor(m, dtype=torch.float32)
""",
    # 4: lists, row by row, the corners by hand
    """    a, b, c = (float(v) for v in w)
    rows = []
    for i in range(10):
        row = [0.0] * 10
        if i > 0:
            row[i - 1] = a
        row[i] = b
        if i < 9:
            row[i + 1] = c
        rows.append(row)
    return rows
""",
    # 5: index arithmetic
    """    w = torch.as_tensor(w).float()
    i = torch.arange(10).view(-1, 1)
    j = torch.arange(10).view(1, -1)
    d = j - i + 1
    inside = (d >= 0) & (d <= 2)
    return torch.where(inside, w[d.clamp(0, 2)], torch.tensor(0.0))
""",
    # 6: a circulant by rolling, its wrapped corners cleared
    """    w = torch.as_tensor(w, dtype=torch.float32)
    first = torch.zeros(10)
    first[0], first[1], first[9] = w[1], w[2], w[0]
    M = torch.stack([torch.roll(first, k) for k in range(10)])
    M[0, 9] = 0.0  # zero padding does not wrap round
    M[9, 0] = 0.0
    return M
""",
    # 7: a comprehension
    """    taps = [float(x) for x in w]
    return torch.tensor(
        [[taps[c - r + 1] if -1 <= c - r <= 1 else 0.0 for c in range(10)] for r in range(10)]
    )
""",
]

# ------------------------------------------------------------------------ ex4_1 block_matrix
EX4_1 = [
    # 0: four loops, the rule
    """    T = torch.zeros(6, 20)
    for i in range(2):
        for j in range(3):
            for a in range(3):
                for b in range(3):
                    T[3 * i + j, 5 * (i + a) + j + b] = kernel[a, b]
    return T
""",
    # 1: the kernel laid on an empty image at each position, flattened
    """    k = torch.as_tensor(kernel, dtype=torch.float32)
    rows = []
    for i in range(2):
        for j in range(3):
            canvas = torch.zeros(4, 5)
            canvas[i:i + 3, j:j + 3] = k
            rows.append(canvas.flatten())
    return torch.stack(rows)
""",
    # 2: 1D Toeplitz bands, one per kernel row, placed as blocks
    """    k = torch.as_tensor(kernel).float()

    def band(row):
        B = torch.zeros(3, 5)
        for c in range(3):
            B[c, c:c + 3] = row
        return B

    T = torch.zeros(6, 20)
    for i in range(2):
        for a in range(3):
            T[3 * i:3 * i + 3, 5 * (i + a):5 * (i + a) + 5] = band(k[a])
    return T
""",
    # 3: numpy, the kernel padded out to the image's shape
    """    import numpy as np
    K = np.asarray(kernel, dtype=np.float32)
    out = np.zeros((6, 20), dtype=np.float32)
    r = 0
    for top in range(2):
        for left in range(3):
            out[r] = np.pad(K, ((top, 1 - top), (left, 2 - left))).reshape(-1)
            r += 1
    return torch.from_numpy(out)
""",
    # 4: index arithmetic over outputs and pixels
    """    kern = torch.as_tensor(kernel, dtype=torch.float32)
    o = torch.arange(6)
    oi, oj = o // 3, o % 3
    p = torch.arange(20)
    pr, pc = p // 5, p % 5
    a = pr.view(1, -1) - oi.view(-1, 1)
    b = pc.view(1, -1) - oj.view(-1, 1)
    ok = (a >= 0) & (a < 3) & (b >= 0) & (b < 3)
    return torch.where(ok, kern[a.clamp(0, 2), b.clamp(0, 2)], torch.zeros(()))
""",
    # 5: divmod in a comprehension
    """    k = [[float(v) for v in row] for row in kernel]

    def weight(out, pixel):
        i, j = divmod(out, 3)
        r, c = divmod(pixel, 5)
        if 0 <= r - i < 3 and 0 <= c - j < 3:
            return k[r - i][c - j]
        return 0.0

    return [[weight(out, pixel) for pixel in range(20)] for out in range(6)]
""",
    # 6: Kronecker products of a row shift and a band
    """    k = torch.as_tensor(kernel, dtype=torch.float32)
    T = torch.zeros(6, 20)
    for a in range(3):
        shift = torch.zeros(2, 4)
        shift[0, a] = shift[1, a + 1] = 1.0
        band = torch.zeros(3, 5)
        for b in range(3):
            band[torch.arange(3), torch.arange(3) + b] = k[a, b]
        T += torch.kron(shift, band)
    return T
""",
    # 7: the patches of every one-pixel image, weighted by the kernel
    """    import torch.nn.functional as F
    weights = torch.as_tensor(kernel, dtype=torch.float32).flatten()
    basis = torch.eye(20).view(20, 1, 4, 5)
    patches = F.unfold(basis, kernel_size=3)  # (pixel, kernel entry, output)
    return torch.einsum("q,pqo->op", weights, patches)
""",
]

# --------------------------------------------------------------------- ex6_2 toeplitz_general
EX6_2 = [
    # 0: two loops, the rule
    """    K = len(w)
    rows = (N + 2 * padding - dilation * (K - 1) - 1) // stride + 1
    T = torch.zeros(rows, N)
    for i in range(rows):
        for k in range(K):
            j = i * stride + k * dilation - padding
            if 0 <= j < N:
                T[i, j] = w[k]
    return T
""",
    # 1: the dilated kernel's stride-1 matrix, every stride-th row kept
    """    w = torch.as_tensor(w, dtype=torch.float32)
    K = w.numel()
    wd = torch.zeros(dilation * (K - 1) + 1)
    wd[::dilation] = w
    L = N + 2 * padding
    n1 = L - wd.numel() + 1
    full = torch.zeros(n1, L)
    for i in range(n1):
        full[i, i:i + wd.numel()] = wd
    return full[::stride, padding:padding + N]
""",
    # 2: index arithmetic
    """    w = torch.as_tensor(w).float()
    K = len(w)
    M = (N + 2 * padding - dilation * (K - 1) - 1) // stride + 1
    i = torch.arange(M).view(-1, 1)
    j = torch.arange(N).view(1, -1)
    offset = j + padding - i * stride
    tap = offset // dilation
    hit = (offset >= 0) & (offset % dilation == 0) & (tap < K)
    return torch.where(hit, w[tap.clamp(0, K - 1)], torch.zeros(()))
""",
    # 3: numpy, rows of the padded width, fancy-indexed
    """    import numpy as np
    taps = np.asarray(w, dtype=np.float32)
    span = dilation * (len(taps) - 1) + 1
    n_out = (N + 2 * padding - span) // stride + 1
    mat = np.zeros((n_out, N + 2 * padding), dtype=np.float32)
    for r in range(n_out):
        mat[r, r * stride + dilation * np.arange(len(taps))] = taps
    return torch.from_numpy(mat[:, padding:padding + N].copy())
""",
    # 4: the convolution written out by hand, applied to every basis vector
    """    taps = [float(v) for v in w]
    K = len(taps)
    outs = (N + 2 * padding - (K - 1) * dilation - 1) // stride + 1

    def conv(x):
        xp = [0.0] * padding + x + [0.0] * padding
        return [sum(taps[k] * xp[i * stride + k * dilation] for k in range(K)) for i in range(outs)]

    cols = [conv([1.0 if t == j else 0.0 for t in range(N)]) for j in range(N)]
    return torch.tensor(cols).T.reshape(outs, N)
""",
    # 5: divmod in a comprehension
    """    ws = torch.as_tensor(w, dtype=torch.float32).tolist()
    n_rows = (N + 2 * padding - dilation * (len(ws) - 1) - 1) // stride + 1

    def entry(i, j):
        q, rem = divmod(j + padding - i * stride, dilation)
        return ws[q] if rem == 0 and 0 <= q < len(ws) else 0.0

    return torch.tensor([[entry(i, j) for j in range(N)] for i in range(n_rows)])
""",
    # 6: a dilated first row rolled by the stride
    """    w = torch.as_tensor(w, dtype=torch.float32)
    width = N + 2 * padding
    span = (len(w) - 1) * dilation + 1
    base = torch.zeros(width)
    base[torch.arange(len(w)) * dilation] = w
    count = (width - span) // stride + 1
    rows = torch.stack([torch.roll(base, i * stride) for i in range(count)])
    return rows[:, padding:width - padding]
""",
    # 7: a sparse matrix from its entries
    """    w = torch.as_tensor(w).float()
    K = w.shape[0]
    n_out = (N + 2 * padding - dilation * (K - 1) - 1) // stride + 1
    idx, vals = [], []
    for out in range(n_out):
        for k in range(K):
            col = out * stride - padding + k * dilation
            if col in range(N):
                idx.append((out, col))
                vals.append(w[k])
    T = torch.sparse_coo_tensor(torch.tensor(idx).T, torch.stack(vals), (n_out, N))
    return T.to_dense()
""",
]

# -------------------------------------------------------------------- ex6_3 transposed_matrix
EX6_3 = [
    # 0: the forward matrix, transposed
    """    K = len(w)
    N = (L - 1) * stride + K
    T = torch.zeros(L, N)
    for i in range(L):
        T[i, i * stride:i * stride + K] = w
    return T.T
""",
    # 1: column by column
    """    w = torch.as_tensor(w, dtype=torch.float32)
    out_len = stride * (L - 1) + len(w)
    M = torch.zeros(out_len, L)
    for col in range(L):
        M[col * stride:col * stride + len(w), col] = w
    return M
""",
    # 2: index arithmetic
    """    w = torch.as_tensor(w).float()
    K = len(w)
    n = (L - 1) * stride + K
    r = torch.arange(n).view(-1, 1)
    c = torch.arange(L).view(1, -1)
    k = r - c * stride
    valid = (k >= 0) & (k < K)
    return torch.where(valid, w[k.clamp(0, K - 1)], torch.zeros(()))
""",
    # 3: numpy, the taps added into each column
    """    import numpy as np
    taps = np.asarray(w, dtype=np.float32)
    length = stride * (L - 1) + taps.size
    A = np.zeros((length, L), dtype=np.float32)
    for j in range(L):
        A[j * stride + np.arange(taps.size), j] += taps
    return torch.tensor(A)
""",
    # 4: the transposed convolution by hand, on every basis vector
    """    taps = [float(t) for t in w]
    size = (L - 1) * stride + len(taps)

    def up(y):
        out = [0.0] * size
        for i, v in enumerate(y):
            for k, t in enumerate(taps):
                out[i * stride + k] += t * v
        return out

    columns = [up([1.0 if m == j else 0.0 for m in range(L)]) for j in range(L)]
    return torch.tensor(columns).T
""",
    # 5: a comprehension
    """    ws = torch.as_tensor(w, dtype=torch.float32).tolist()
    rows = (L - 1) * stride + len(ws)
    return torch.tensor(
        [[ws[r - c * stride] if 0 <= r - c * stride < len(ws) else 0.0 for c in range(L)]
         for r in range(rows)]
    )
""",
    # 6: one scatter per kernel weight
    """    w = torch.as_tensor(w, dtype=torch.float32)
    n = stride * (L - 1) + w.numel()
    out = torch.zeros(n, L)
    cols = torch.arange(L)
    for k, weight in enumerate(w):
        out[cols * stride + k, cols] += weight
    return out
""",
    # 7: rolled rows of the forward matrix, transposed
    """    w = torch.as_tensor(w, dtype=torch.float32)
    K = len(w)
    N = stride * (L - 1) + K
    row = torch.cat([w, torch.zeros(N - K)])
    forward = torch.stack([row.roll(i * stride) for i in range(L)])
    return forward.t().contiguous()
""",
]

# ------------------------------------------------- the one-line answers: alike because right
SHORT = {
    "ex1_1": [
        "    return N - K + 1",
        "    return N - (K - 1)  # starts 0 .. N-K",
        "    return len(range(N - K + 1))",
        "    positions = 0\n    for s in range(N):\n        if s + K <= N:\n"
        "            positions += 1\n    return positions",
        "    return max(0, N - K + 1)",
        "    out = N - K\n    return out + 1",
    ],
    "ex2_1": [
        "    return N + 2 * P - K + 1",
        "    return (N + 2 * P) - K + 1  # the padded length, then as in 1.1",
        "    padded = N + 2 * P\n    return padded - K + 1",
        "    return len(range(N + 2 * P - K + 1))",
        "    n = N + P + P\n    return n - (K - 1)",
        "    count = 0\n    while count + K <= N + 2 * P:\n        count += 1\n    return count",
    ],
    "ex2_3": [
        "    if K % 2 == 0:\n        return None\n    return (K - 1) // 2",
        "    return (K - 1) // 2 if K % 2 else None",
        "    for P in range(K):\n        if 2 * P == K - 1:\n            return P\n    return None",
        "    return None if K % 2 == 0 else K // 2",
        "    p, r = divmod(K - 1, 2)\n    return p if r == 0 else None",
        "    if (K - 1) % 2:\n        return None  # odd K - 1 has no half\n"
        "    return int((K - 1) / 2)",
    ],
    "ex6_1": [
        "    span = dilation * (K - 1) + 1\n    return (N + 2 * padding - span) // stride + 1",
        "    return (N + 2 * padding - dilation * (K - 1) - 1) // stride + 1",
        "    import math\n"
        "    return math.floor((N + 2 * padding - dilation * (K - 1) - 1) / stride + 1)",
        "    length = N + 2 * padding\n    reach = (K - 1) * dilation\n    count, start = 0, 0\n"
        "    while start + reach < length:\n        count += 1\n        start += stride\n"
        "    return count",
        "    return len(range(0, N + 2 * padding - dilation * (K - 1), stride))",
        "    eff = K + (K - 1) * (dilation - 1)\n    return 1 + (N - eff + 2 * padding) // stride",
    ],
    "ex6_4": [
        "    return sum(o * i * K + o for i, o in zip(channels, channels[1:]))",
        "    total = 0\n    for c_in, c_out in zip(channels[:-1], channels[1:]):\n"
        "        total += c_out * c_in * K + c_out\n    return total",
        "    total = 0\n    for layer in range(len(channels) - 1):\n"
        "        total += channels[layer + 1] * (channels[layer] * K + 1)\n    return total",
        "    import numpy as np\n    c = np.array(channels)\n"
        "    return int((c[1:] * c[:-1] * K + c[1:]).sum())",
        "    weights = sum(a * b * K for a, b in zip(channels[:-1], channels[1:], strict=True))\n"
        "    biases = sum(channels[1:])\n    return weights + biases",
        "    n, i = 0, 0\n    while i + 1 < len(channels):\n"
        "        n += channels[i + 1] * channels[i] * K  # the kernels\n"
        "        n += channels[i + 1]  # the biases\n        i += 1\n    return n",
    ],
}

# ------------------------------------------------------------------------------ ex3_4 in words
EX3_4 = [
    "The padded layer keeps working for the shifts -2 to 1. For larger right shifts the last "
    "output is wrong, and for larger left shifts the first one is. Shifting pushes entries off "
    "one end of x, and zero padding pretends that beyond the ends there are only zeros. As long "
    "as the entries pushed out are zeros anyway nothing changes; x_1d has two zeros at the start "
    "and one at the end, which is why the range is asymmetric.",
    "Only the border outputs break. When I shift right by 2 or more, output 9 differs: before "
    "the shift it used x_8 = 7 through the weight -2, after the shift that input fell off the "
    "end and the window sees the padding zero instead, a gap of 14. Left shifts of 3 or more "
    "break output 0 the same way. Interior outputs never see the padding so they always agree. "
    "Without padding, left shifts fail because the output is shorter than the input.",
    "Equivariance fails at the edges of the signal. Zero padding adds zeros on both sides, but "
    "a shift discards real values at one edge and inserts zeros at the other. The convolution "
    "then sees a zero where it used to see a real value, so the first or last output changes. "
    "It only happens when the discarded values are nonzero; that gives the shifts -2, -1, 0, 1 "
    "for x_1d, since x_1d begins with two zeros and ends with a single one.",
    "I computed f(tau(x)) - tau(f(x)) for every n and the difference is zero everywhere except "
    "position 0 (n <= -3) or position 9 (n >= 2). The reason is that a finite shift is not a "
    "true translation: information is lost at the boundary, and the padded convolution mixes "
    "that lost value into its boundary output. So the layer is only shift equivariant in the "
    "interior, or when the signal has enough zeros at its ends.",
    "Think of the padding as an assumption about the world outside the vector: it is zero "
    "there. The shift operator makes the same assumption for what comes in, but it throws "
    "away what goes out. A convolution output near the border reads one value from outside. If "
    "the shift moved a nonzero value outside, f(tau x) reads zero where tau f(x) still carries "
    "that value. For x_1d that happens from shift 2 to the right and from shift 3 to the left.",
    "Answer: shifts in {-2,-1,0,1} commute with the padded layer on x_1d. Larger shifts give a "
    "nonzero gap in exactly one output, the one whose receptive field overlaps the padding, "
    "because the tap that should multiply the dropped sample multiplies a padding zero. The "
    "kernal weights at the ends (1 and -2) set the size of the gap, 1,2,3 on the left and "
    "14,12,10,8 on the right.",
    "Circular padding would make every shift work, because then the shift and the padding "
    "agree about what lies beyond the end. With zero padding they disagree as soon as a "
    "nonzero input leaves the vector: the boundary output sees a zero in one order and the "
    "real input in the other. Here the gap appears for right shifts from 2 on and left shifts "
    "from 3 on, in the last and first outputs respectively, and it grows with the lost values.",
]

# ----------------------------------------------------------------------------- the near copies
# (exercise, the implementation copied, the copy as handed in)
COPIES = {
    "cpy1": [
        (
            "ex1_3",
            4,
            """    # build the matrix without any loops
    kern = torch.as_tensor(w).to(torch.float32)
    cols = torch.arange(N).unsqueeze(0)
    length = len(kern)
    m = N - length + 1 + 2 * padding
    rows = torch.arange(m).unsqueeze(1)
    offset = cols - rows + padding  # which tap lands here
    valid = (offset >= 0) & (offset < length)
    return torch.where(valid, kern[offset.clamp(0, length - 1)], torch.zeros(()))
""",
        ),
        (
            "ex4_2",
            2,
            """    kern = torch.as_tensor(kernel).float()
    R, S = kern.shape
    out_w, out_h = W - S + 1, H - R + 1

    def make_band(r):
        # one Toeplitz band for a row of the kernel
        band = torch.zeros(out_w, W)
        for col in range(out_w):
            band[col, col:col + S] = r
        return band

    bands = [make_band(kern[q]) for q in range(R)]
    result = torch.zeros(out_h * out_w, H * W)
    for row in range(out_h):
        for q in range(R):
            result[row * out_w:(row + 1) * out_w, (row + q) * W:(row + q + 1) * W] = bands[q]
    return result
""",
        ),
    ],
    "cpy2": [
        (
            "ex1_3",
            0,
            """    w = torch.as_tensor(w, dtype=torch.float32)
    klen = len(w)
    n_rows = N + 2 * padding - klen + 1
    out = torch.zeros(n_rows, N)
    for r in range(n_rows):  # </pre><script>alert(1)</script>
        for t in range(klen):
            c = r + t - padding
            if 0 <= c < N:
                out[r, c] = w[t]
    return out
""",
        ),
        (
            "ex3_1",
            4,
            """    shift_fn = make_shift(n)
    a = shift_fn(f(x))
    b = f(shift_fn(x))
    worst = 0.0
    # compare entry by entry
    for p, q in zip(b.flatten().tolist(), a.flatten().tolist()):
        worst = max(worst, abs(p - q))
    return worst
""",
        ),
    ],
    "cpy3": [
        (
            "ex4_2",
            0,
            """    kern = torch.as_tensor(kernel, dtype=torch.float32)
    R, S = kern.shape
    h_out, w_out = H - R + 1, W - S + 1
    M = torch.zeros(h_out * w_out, H * W)
    for r in range(h_out):
        for c in range(w_out):
            for p in range(R):
                for q in range(S):
                    M[r * w_out + c, (r + p) * W + c + q] = kern[p, q]
    return M
""",
        ),
        (
            "ex5_2",
            2,
            """    count_out = 0
    count_nz = 0
    for a in range(H - R + 1):
        for b in range(W - S + 1):
            count_nz += R * S
            count_out += 1
    return (count_out * H * W, count_nz, R * S)
""",
        ),
        (
            "ex3_1",
            3,
            """    import numpy as np
    left = f(make_shift(n)(x)).detach().numpy()
    right = make_shift(n)(f(x)).detach().numpy()
    return float(np.max(np.abs(left - right)))
""",
        ),
    ],
    "cpy4": [
        (
            "ex5_2",
            6,
            """    s = {"inputs": H * W, "outputs": (H - R + 1) * (W - S + 1), "kern": R * S}
    c = {
        "dense": s["inputs"] * s["outputs"],
        "nonzero": s["kern"] * s["outputs"],
        "kernel": s["kern"],
    }
    return (c["dense"], c["nonzero"], c["kernel"])
""",
        ),
    ],
    "cpy5": [
        (
            "ex2_2",
            0,
            """    M = torch.zeros(10, 10)
    for row in range(10):  # one output per row
        for t in range(3):
            col = row + t - 1  # the input this tap meets
            if 0 <= col < 10:
                M[row, col] = w[t]
    return M
""",
        ),
        (
            "ex6_2",
            3,
            """    import numpy as np
    kern = np.asarray(w, dtype=np.float32)
    reach = dilation * (len(kern) - 1) + 1
    rows = (N + 2 * padding - reach) // stride + 1
    buf = np.zeros((rows, N + 2 * padding), dtype=np.float32)
    for i in range(rows):
        # the dilated kernel, stride columns further on each row
        buf[i, i * stride + dilation * np.arange(len(kern))] = kern
    return torch.from_numpy(buf[:, padding:padding + N].copy())
""",
        ),
    ],
    "cpy6": [
        (
            "ex4_1",
            6,
            """    kern = torch.as_tensor(kernel, dtype=torch.float32)
    result = torch.zeros(6, 20)
    for a in range(3):
        band = torch.zeros(3, 5)
        for b in range(3):
            band[torch.arange(3), torch.arange(3) + b] = kern[a, b]
        sel = torch.zeros(2, 4)
        sel[0, a] = sel[1, a + 1] = 1.0
        result += torch.kron(sel, band)
    return result
""",
        ),
        (
            "ex6_3",
            2,
            """    kern = torch.as_tensor(w).float()
    size = len(kern)
    length = (L - 1) * stride + size
    cols = torch.arange(L).view(1, -1)
    rows = torch.arange(length).view(-1, 1)
    tap = rows - cols * stride  # which weight lands here
    ok = (tap >= 0) & (tap < size)
    return torch.where(ok, kern[tap.clamp(0, size - 1)], torch.zeros(()))
""",
        ),
    ],
}
# a copied written answer: two sentences swapped, a few words changed
COPIED_TEXT = (
    "cpy2",
    1,
    "Only the outputs at the border break. Left shifts of 3 or more break output 0 the same "
    "way. When I shift right by 2 or more, output 9 is different: before the shift it used "
    "x_8 = 7 through the weight -2, after the shift that input fell off the end and the window "
    "sees the padding zero instead, a gap of 14. Interior outputs never see the padding so they "
    "always agree. Without padding, left shifts fail since the output is shorter than the input.",
)

FUNCTIONS = {
    "ex1_3": EX1_3,
    "ex2_2": EX2_2,
    "ex3_1": EX3_1,
    "ex4_1": EX4_1,
    "ex4_2": EX4_2,
    "ex5_2": EX5_2,
    "ex6_2": EX6_2,
    "ex6_3": EX6_3,
    **SHORT,
}
NAME = {e.answer_id: e.name for e in EXERCISES}
INDEPENDENT = [f"ind{i}" for i in range(1, 9)]
SCRATCH_COMMON = "print(toeplitz_1d(torch.tensor([1., 1., -2.]), 5))"
SCRATCH_ODD = "# check the kernal is not flipped\nprint(toeplitz_1d(w_1d, 6, padding=2))"
SHARED_FILE = "1Zr8Qv0dHkT3mW5yNcEeLxA9uPbGs7oFi"  # ind6's Drive file, cpy4 made from it
ODD_OUTPUT = {
    "output_type": "stream",
    "name": "stdout",
    "text": "tensor([[ 0.,  0.,  1.,  0.,  0.,  0.],\n [ 1.,  ... (mine)\n",
}
COURSE_FILE = "1CoursEShaReDCopY00000000000000000"  # the copy the course shared (4 students)


def _cell(nbs, grade_id):
    for nb in nbs.values():
        for cell in nb.cells:
            if cell.metadata.get("nbgrader", {}).get("grade_id") == grade_id:
                return cell
    raise KeyError(grade_id)


def _fill(nbs, grade_id, body):
    cell = _cell(nbs, grade_id)
    assert GIVEN in cell.source
    answer(nbs, grade_id, cell.source.replace(GIVEN, body.rstrip("\n")))


def _colab_ids(raw, rng):
    for cell in raw["cells"]:
        cell["metadata"]["id"] = "".join(
            rng.choice(string.ascii_letters + string.digits) for _ in range(12)
        )


@pytest.fixture(scope="module")
def klass(tmp_path_factory):
    """A course root with the class under submitted/; origin[(student, exercise)] = which
    implementation the answer is (copies share their source's)."""
    root = tmp_path_factory.mktemp("similarity")
    shutil.copytree(ROOT / "release", root / "release")
    shutil.copytree(ROOT / "notebooks", root / "notebooks")
    shutil.copy(ROOT / "nbgrader_config.py", root / "nbgrader_config.py")
    rng = random.Random(24)
    origin = {}
    files = {}
    for i, student in enumerate(INDEPENDENT):
        nbs = release(ROOT)
        for exercise, impls in FUNCTIONS.items():
            if i < len(impls):
                _fill(nbs, exercise, impls[i])
                origin[student, exercise] = i
        if i < len(EX3_4):
            answer(nbs, "ex3_4", EX3_4[i])
            origin[student, "ex3_4"] = i
        nb1 = nbs["01_conv1d_toeplitz"]
        at = nb1.cells.index(_cell(nbs, "ex1_3")) + 1
        if i < 4:  # the same check, the same right output: common, not a trace
            scratch = nbformat.v4.new_code_cell(SCRATCH_COMMON)
            scratch.outputs = [
                nbformat.v4.new_output(
                    "stream",
                    text=str(
                        torch.tensor(
                            [
                                [1.0, 1.0, -2.0, 0.0, 0.0],
                                [0.0, 1.0, 1.0, -2.0, 0.0],
                                [0.0, 0.0, 1.0, 1.0, -2.0],
                            ]
                        )
                    )
                    + "\n",
                )
            ]
            nb1.cells.insert(at, scratch)
        if student == "ind6":
            nb1.cells.insert(at, nbformat.v4.new_code_cell(SCRATCH_ODD))
        if student in ("ind6", "ind7", "ind8"):
            raws = {name: to_colab(nb) for name, nb in nbs.items()}
            for name, raw in raws.items():
                _colab_ids(raw, rng)
                mine = "1" + "".join(rng.choice(string.ascii_letters) for _ in range(32))
                file_id = SHARED_FILE if student == "ind6" and name.startswith("01") else mine
                raw["metadata"]["colab"]["provenance"] = [
                    {"file_id": COURSE_FILE, "timestamp": 1700000000000},
                    {"file_id": file_id, "timestamp": 1700000100000 + i},
                ]
                for cell in raw["cells"]:  # Colab keeps the outputs it ran
                    if student == "ind6" and "".join(cell["source"]) == SCRATCH_ODD:
                        cell["outputs"] = [ODD_OUTPUT]
                counts = iter([3, 4, 7, 8, 11, 12, 15, 20, 21, 22, 30, 31, 33, 40, 41, 42, 50])
                for cell in raw["cells"]:
                    if cell["cell_type"] == "code" and student == "ind6":
                        cell["execution_count"] = next(counts, None)
            files[student] = {f"{n}.ipynb": json.dumps(r, indent=1) for n, r in raws.items()}
        else:
            files[student] = {f"{n}.ipynb": nbformat.writes(nb) for n, nb in nbs.items()}

    for student, copies in COPIES.items():
        if student == "cpy4":  # ind6's Colab files, its answers replaced by the release's
            raws = {n: json.loads(t) for n, t in files["ind6"].items()}
            given = release(ROOT)
            for name, raw in raws.items():
                for cell in raw["cells"]:
                    meta = cell["metadata"].get("nbgrader", {})
                    if meta.get("solution"):
                        cell["source"] = _cell({name: given[name[:-6]]}, meta["grade_id"]).source
            for exercise, source_impl, body in copies:
                for raw in raws.values():
                    for cell in raw["cells"]:
                        if cell["metadata"].get("nbgrader", {}).get("grade_id") == exercise:
                            cell["source"] = cell["source"].replace(GIVEN, body.rstrip("\n"))
                origin[student, exercise] = source_impl
            files[student] = {n: json.dumps(r, indent=1) for n, r in raws.items()}
            continue
        nbs = release(ROOT)
        for exercise, source_impl, body in copies:
            _fill(nbs, exercise, body)
            origin[student, exercise] = source_impl
        if student == COPIED_TEXT[0]:
            answer(nbs, "ex3_4", COPIED_TEXT[2])
            origin[student, "ex3_4"] = COPIED_TEXT[1]
        files[student] = {f"{n}.ipynb": nbformat.writes(nb) for n, nb in nbs.items()}

    for student, notebooks in files.items():
        dest = root / "submitted" / student / "toeplitz"
        dest.mkdir(parents=True)
        for name, text in notebooks.items():
            (dest / name).write_text(text, encoding="utf-8")
    # a hand-in that is a link to another student's notebook is not read, nor compared
    link = root / "submitted" / "lnk1" / "toeplitz"
    link.mkdir(parents=True)
    (link / "01_conv1d_toeplitz.ipynb").symlink_to(
        root / "submitted" / "ind1" / "toeplitz" / "01_conv1d_toeplitz.ipynb"
    )
    result = sim.similarity(root)
    return root, origin, result


# ---------------------------------------------------------------------- the class is honest


def _function(exercise, body):
    cell = _cell(release(ROOT), exercise).source.replace(GIVEN, body.rstrip("\n"))
    scope = {"torch": torch, "F": F, "np": np, "make_shift": make_shift}
    exec(cell, scope)  # noqa: S102 - the test's own implementations
    return scope[NAME[exercise]]


def _right(exercise, fn):
    g = torch.Generator().manual_seed(0)
    if exercise == "ex1_3":
        for k, n, p in [(3, 10, 0), (3, 10, 1), (2, 7, 2), (4, 9, 1), (1, 5, 0)]:
            w = torch.randn(k, generator=g)
            x = torch.randn(n, generator=g)
            want = F.conv1d(x.view(1, 1, n), w.view(1, 1, k), padding=p).flatten()
            assert torch.allclose(fn(w, n, p) @ x, want, atol=1e-5)
    elif exercise == "ex4_2":
        for r, s, h, w in [(3, 3, 4, 5), (2, 3, 5, 4), (1, 2, 3, 3), (3, 1, 4, 4)]:
            k = torch.randn(r, s, generator=g)
            img = torch.randn(h, w, generator=g)
            want = F.conv2d(img.view(1, 1, h, w), k.view(1, 1, r, s)).flatten()
            assert torch.allclose(fn(k, h, w) @ img.flatten(), want, atol=1e-5)
    elif exercise == "ex3_1":
        layer = torch.nn.Conv1d(1, 1, 3, padding=1, bias=False)
        x = torch.tensor([[0.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 0.0]])
        for n in range(-5, 6):
            t = make_shift(n)
            want = (layer(t(x)) - t(layer(x))).abs().max().item()
            assert abs(fn(layer, x, n) - want) < 1e-5
    elif exercise == "ex5_2":
        for h, w, r, s in [(4, 5, 3, 3), (6, 7, 2, 3), (3, 3, 3, 3)]:
            n_out = (h - r + 1) * (w - s + 1)
            assert tuple(fn(h, w, r, s)) == (n_out * h * w, n_out * r * s, r * s)
    elif exercise == "ex2_2":
        for _ in range(3):
            w, x = torch.randn(3, generator=g), torch.randn(10, generator=g)
            want = F.conv1d(x.view(1, 1, 10), w.view(1, 1, 3), padding=1).flatten()
            assert torch.allclose(torch.as_tensor(fn(w)) @ x, want, atol=1e-5)
    elif exercise == "ex4_1":
        for _ in range(3):
            k, img = torch.randn(3, 3, generator=g), torch.randn(4, 5, generator=g)
            want = F.conv2d(img.view(1, 1, 4, 5), k.view(1, 1, 3, 3)).flatten()
            assert torch.allclose(torch.as_tensor(fn(k)) @ img.flatten(), want, atol=1e-5)
    elif exercise == "ex6_2":
        for k, n, p, s, d in [(3, 10, 1, 2, 2), (2, 7, 0, 3, 1), (4, 12, 2, 1, 3), (1, 5, 0, 2, 1)]:
            w, x = torch.randn(k, generator=g), torch.randn(n, generator=g)
            want = F.conv1d(x.view(1, 1, n), w.view(1, 1, k), padding=p, stride=s, dilation=d)
            got = torch.as_tensor(fn(w, n, padding=p, stride=s, dilation=d)) @ x
            assert torch.allclose(got, want.flatten(), atol=1e-5)
    elif exercise == "ex6_3":
        for k, n, s in [(3, 4, 2), (2, 5, 3), (4, 3, 1), (1, 4, 2)]:
            w, y = torch.randn(k, generator=g), torch.randn(n, generator=g)
            want = F.conv_transpose1d(y.view(1, 1, n), w.view(1, 1, k), stride=s).flatten()
            assert torch.allclose(torch.as_tensor(fn(w, n, stride=s)) @ y, want, atol=1e-5)
    else:  # a length, a padding or a count: against what torch's own layers give
        for n, k, p, s, d in [(10, 3, 0, 1, 1), (7, 7, 0, 1, 1), (9, 2, 2, 3, 2), (12, 4, 1, 2, 3)]:
            length = F.conv1d(
                torch.zeros(1, 1, n), torch.zeros(1, 1, k), padding=p, stride=s, dilation=d
            ).shape[-1]
            if exercise == "ex6_1":
                assert fn(n, k, padding=p, stride=s, dilation=d) == length
            elif exercise == "ex2_1" and s == d == 1:
                assert fn(n, k, p) == length
            elif exercise == "ex1_1" and p == 0 and s == d == 1:
                assert fn(n, k) == length
        if exercise == "ex2_3":
            for k in range(1, 9):
                keeps = [
                    p
                    for p in range(k)
                    if F.conv1d(torch.zeros(1, 1, 11), torch.zeros(1, 1, k), padding=p).shape[-1]
                    == 11
                ]
                assert fn(k) == (keeps[0] if keeps else None)
        if exercise == "ex6_4":
            for channels, k in [([1, 4, 8], 3), ([3, 16], 5), ([2, 6, 6, 1], 7)]:
                net = torch.nn.Sequential(
                    *(
                        torch.nn.Conv1d(a, b, k)
                        for a, b in zip(channels[:-1], channels[1:], strict=True)
                    )
                )
                assert fn(channels, k) == sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("exercise", sorted(FUNCTIONS))
def test_every_implementation_and_copy_is_right(exercise):
    impls = FUNCTIONS[exercise]
    assert len(impls) >= 6
    for body in impls + [b for c in COPIES.values() for e, _, b in c if e == exercise]:
        _right(exercise, _function(exercise, body))


def test_every_function_exercise_is_compared():
    """A function exercise added to the course is compared (and calibrated here) or this fails."""
    nbs = release(ROOT)
    functions = {
        e.answer_id
        for e in EXERCISES
        if e.autograded and _cell(nbs, e.answer_id).source.lstrip().startswith("def ")
    }
    assert set(sim.FUNCTION_EXERCISES) == functions
    assert set(FUNCTIONS) == functions


# -------------------------------------------------------------------------- the calibration


def _scores(result):
    """(exercise, a, b) -> score, over every pair that has both answers (0 when no match)."""
    out = {}
    for pair in result.pairs:
        for m in pair["exercises"]:
            out[m["exercise"], pair["a"], pair["b"]] = m["score"]
    return out


def calibration(root, origin, result):
    scores = _scores(result)
    copies, independent = {}, {}
    for exercise in sim.COMPARED:
        who = sorted(s for (s, e) in origin if e == exercise)
        for a, b in ((a, b) for i, a in enumerate(who) for b in who[i + 1 :]):
            score = scores.get((exercise, a, b), 0.0)
            same = origin[a, exercise] == origin[b, exercise]
            (copies if same else independent)[exercise, a, b] = score
    return copies, independent


def test_copies_rank_above_every_independent_pair(klass):
    root, origin, result = klass
    copies, independent = calibration(root, origin, result)
    assert len(copies) == sum(len(c) for c in COPIES.values()) + 1
    # every exercise whose answer is more than a line has a copy in the class
    assert {e for c in COPIES.values() for e, _, _ in c} | {"ex3_4"} == set(sim.COMPARED) - set(
        SHORT
    )
    for exercise in sim.COMPARED:
        mine = {k: v for k, v in copies.items() if k[0] == exercise}
        others = {k: v for k, v in independent.items() if k[0] == exercise}
        assert len(others) >= 15, exercise
        if mine:
            assert min(mine.values()) > max(others.values()), (
                exercise,
                mine,
                max(others.items(), key=lambda kv: kv[1]),
            )
        else:  # a one-line answer: six students wrote it alike and none of them is reported
            assert max(others.values()) < result.threshold, (exercise, others)
    # and across exercises: the reported threshold separates them
    assert min(copies.values()) >= result.threshold > max(independent.values())
    print("copies", sorted(copies.values()), "independent max", max(independent.values()))


def test_the_pairs_are_ranked_copies_first(klass):
    root, origin, result = klass
    copy_pairs = {
        tuple(sorted((s, f"ind{impl + 1}"))) for s, c in COPIES.items() for _, impl, _ in c
    } | {("cpy2", "ind2"), ("cpy4", "ind6")}
    ranked = [(p["a"], p["b"]) for p in result.pairs]
    top = ranked[: len(copy_pairs)]
    assert set(top) == copy_pairs
    assert {(p["a"], p["b"]) for p in result.flagged} == copy_pairs


CANONICAL = [  # the two-line answer, as six students would each write it
    "    n_out = (H - R + 1) * (W - S + 1)\n    return (n_out * H * W, n_out * R * S, R * S)",
    "    outs = (H - R + 1) * (W - S + 1)\n    return (outs * H * W, outs * R * S, R * S)",
    "    m = (H - R + 1) * (W - S + 1)  # outputs\n    return (m * H * W, m * R * S, R * S)",
    "    n = (H - R + 1) * (W - S + 1)\n    return n * H * W, n * R * S, R * S",
    "    o = (H-R+1)*(W-S+1)\n    return (o*H*W, o*R*S, R*S)",
    "    count = (H - R + 1) * (W - S + 1)\n    return (count * H * W, count * R * S, R * S)",
]


def test_the_same_short_right_answer_does_not_flood(tmp_path, monkeypatch):
    """Six students write the canonical two-liner: alike because the answer is, so no pair is
    reported; the class filter is what keeps them off the list."""
    shutil.copytree(ROOT / "release", tmp_path / "release")
    for i, body in enumerate(CANONICAL):
        _right("ex5_2", _function("ex5_2", body))
        nbs = release(ROOT)
        _fill(nbs, "ex5_2", body)
        dest = tmp_path / "submitted" / f"s{i}" / "toeplitz"
        dest.mkdir(parents=True)
        nb = nbs["05_parameter_counts"]
        (dest / "05_parameter_counts.ipynb").write_text(nbformat.writes(nb), encoding="utf-8")
    result = sim.analyse(tmp_path)
    assert result.students == len(CANONICAL) and not result.flagged
    monkeypatch.setattr(sim, "common_students", lambda n: n)
    unfiltered = sim.analyse(tmp_path)
    # without it, most pairs of the two-liner are reported (its length is above the floor)
    assert len(unfiltered.flagged) > len(CANONICAL) * (len(CANONICAL) - 1) // 4


# ------------------------------------------------------------------------------- forensics


def test_forensics_find_the_shared_file_and_nothing_else(klass):
    root, origin, result = klass
    traced = {(p["a"], p["b"]) for p in result.pairs if p["forensics"]}
    assert traced == {("cpy4", "ind6")}
    pair = next(p for p in result.pairs if (p["a"], p["b"]) == ("cpy4", "ind6"))
    kinds = {f["kind"] for f in pair["forensics"]}
    assert {"cell_id", "colab_file", "output", "comment", "typo", "execution_counts"} <= kinds
    found = {f["kind"]: [x["what"] for x in f["examples"]] for f in pair["forensics"]}
    assert SHARED_FILE in found["colab_file"] and COURSE_FILE not in found["colab_file"]
    assert any(w.startswith("kernal") for w in found["typo"])
    assert any("(mine)" in w for w in found["output"])
    cell_ids = next(f for f in pair["forensics"] if f["kind"] == "cell_id")
    assert cell_ids["count"] > 20  # every cell of the file: Colab's random ids
    # no code of cpy4 resembles ind6's: the traces alone put the pair on the list
    assert all(m["score"] < result.threshold for m in pair["exercises"])


def test_links_are_not_read(klass):
    root, origin, result = klass
    assert "lnk1" not in json.dumps([(p["a"], p["b"]) for p in result.pairs])
    assert any("lnk1" in line for line in result.unread)


# ---------------------------------------------------------------------------- what is written


def test_json_and_page(klass):
    root, origin, result = klass
    data = json.loads((root / "exports" / "similarity.json").read_text())
    assert data["engine"]["name"] == "copydetect"
    assert [(p["a"], p["b"]) for p in data["pairs"]] == [(p["a"], p["b"]) for p in result.pairs]
    top = data["pairs"][0]["exercises"][0]
    assert top["matched"][0] and top["texts"][0]
    page = (root / "exports" / "similarity.html").read_text()
    assert '<meta http-equiv="Content-Security-Policy"' in page
    assert "script-src 'none'" in page and "default-src 'none'" in page
    assert "<script" not in page.lower()
    assert "&lt;/pre&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in page
    for needle in ("src=", "http:", "https:", "@import", "url("):
        assert needle not in page
    assert "cpy2" in page and "<mark>" in page


def test_terminal_text_is_escaped(klass):
    root, origin, result = klass
    odd = sim.Similarity(
        [
            {
                "a": "x",
                "b": "y",
                "score": 1.0,
                "forensics": [],
                "exercises": [{"exercise": "ex1_3\x1b[2J", "score": 1.0}],
            }
        ],
        ["s\x1b]0;t\x07"],
        2,
    )
    text = odd.format()
    assert "\x1b" not in text and "\\x1b" in text
    assert "cpy4 ~ ind6" in result.format()


def test_cli(klass, capsys):
    from toeplitz_course.__main__ import main

    root, origin, result = klass
    assert main(["--root", str(root), "similarity"]) == 0
    out = capsys.readouterr().out
    assert "pair(s) to look at" in out and "cpy1 ~ ind5" in out


def test_summary_for_report_and_export(klass, tmp_path):
    root, origin, result = klass
    found = sim.summary(root)
    assert [(p["a"], p["b"]) for p in found["pairs"]] == [(p["a"], p["b"]) for p in result.flagged]
    lines = sim.summary_lines(root)
    assert lines[0].startswith(f"Similarity: {len(result.flagged)} pair(s)")
    assert any("cpy4 ~ ind6" in line and "traces" in line for line in lines)
    assert sim.summary(tmp_path) is None
