"""Reference matrices of 1D and 2D convolution, built from the kernel alone.

The course's data (``X_1D``, ``W_1D``, ``IMG_2D``, ``KERNEL_2D``) are defined on the kernel side
(:mod:`toeplitz_course.kernel.data`), where the probe needs them too; the tensors built from them
are here.

The conventions are PyTorch's, the ones the notebooks teach:

* ``nn.Conv1d`` / ``F.conv1d`` compute a *cross-correlation*: with padding ``p`` and ``x`` taken
  as zero outside ``0..n-1``, ``y[i] = sum_k w[k] * x[i + k - p]``, ``n + 2p - K + 1`` outputs.
* ``nn.Conv2d`` / ``F.conv2d`` (no padding, stride 1):
  ``y[i, j] = sum_{r,s} k[r, s] * x[i + r, j + s]``.
* A convolution matrix ``T`` has one row per output and one column per input: ``T @ x == conv(x)``.
* 2D inputs and outputs are flattened row-major, ``index = row * W + col``, as ``view`` and
  ``flatten`` do.

Every matrix is returned as a fresh ``torch.float64`` tensor: float64 holds every float32 kernel
value exactly, and callers that want plain data call ``.tolist()``. The builders index the kernel
directly and never call a torch convolution, so they are an independent witness for the tests
that compare them with ``F.conv1d`` / ``F.conv2d``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..kernel.data import IMG_2D, KERNEL_2D, W_1D, X_1D

__all__ = ["IMG_2D", "KERNEL_2D", "W_1D", "X_1D"]  # the course's data, kept beside the builders


def x_1d() -> torch.Tensor:
    """The course's 1D input as the notebook has it: float32, shape (1, 10) (one channel)."""
    return torch.tensor([X_1D], dtype=torch.float32)


def w_1d() -> torch.Tensor:
    """The course's 1D kernel: float32, shape (3,)."""
    return torch.tensor(W_1D, dtype=torch.float32)


def image_2d() -> torch.Tensor:
    """The course's 2D input: float32, shape (4, 5)."""
    return torch.tensor(IMG_2D, dtype=torch.float32)


def kernel_2d() -> torch.Tensor:
    """The course's 2D kernel: float32, shape (3, 3)."""
    return torch.tensor(KERNEL_2D, dtype=torch.float32)


def _as_f64(values: Any, dims: int, what: str) -> torch.Tensor:
    if isinstance(values, torch.Tensor):
        t = values.detach().to(device="cpu", dtype=torch.float64)
    else:
        t = torch.tensor(values, dtype=torch.float64)
    if t.dim() != dims:
        raise ValueError(f"{what} must be {dims}-D, got shape {tuple(t.shape)}")
    if t.numel() == 0:
        raise ValueError(f"{what} is empty")
    return t


def banded_1d(w: Any, rows: int, n: int, offset: int) -> torch.Tensor:
    """The ``rows x n`` matrix ``M[i, j] = w[j - i + offset]`` (zero where that index is outside w).

    ``toeplitz_1d`` is the case ``rows = n + 2p - K + 1, offset = p``. Other offsets describe the
    same band moved sideways: ``offset = p - 1`` puts every row's kernel one column to the right,
    which is how ``checks`` recognises an off-by-one in the column index.
    """
    wt = _as_f64(w, 1, "w")
    k_len = wt.shape[0]
    i = torch.arange(rows).unsqueeze(1)
    j = torch.arange(n).unsqueeze(0)
    k = j - i + offset
    inside = (k >= 0) & (k < k_len)
    out = torch.zeros(rows, n, dtype=torch.float64)
    out[inside] = wt[k[inside]]
    return out


def toeplitz_1d(w: Any, n: int, padding: int = 0) -> torch.Tensor:
    """The convolution matrix of ``F.conv1d(x, w, padding=padding)`` for inputs of length ``n``.

    Shape ``(n + 2*padding - K + 1, n)``; ``T[i, j] = w[j - i + padding]`` (cross-correlation, the
    padding zeros get no column because they multiply nothing).
    """
    k_len = _as_f64(w, 1, "w").shape[0]
    if padding < 0 or n < 1:
        raise ValueError(f"need n >= 1 and padding >= 0, got n={n}, padding={padding}")
    rows = n + 2 * padding - k_len + 1
    if rows < 1:
        raise ValueError(
            f"a kernel of length {k_len} does not fit in {n} inputs + padding {padding}"
        )
    return banded_1d(w, rows, n, padding)


def block_toeplitz_2d(kernel: Any, H: int, W: int) -> torch.Tensor:
    """The matrix of the valid ``F.conv2d`` of an ``H x W`` input with an ``R x S`` kernel.

    Shape ``((H-R+1)*(W-S+1), H*W)``; row ``i*(W-S+1) + j`` is output ``y[i, j]`` and holds
    ``k[r, s]`` in column ``(i + r) * W + (j + s)`` (row-major flattening of output and input).
    """
    k = _as_f64(kernel, 2, "kernel")
    r_len, s_len = k.shape
    h_out, w_out = H - r_len + 1, W - s_len + 1
    if h_out < 1 or w_out < 1:
        raise ValueError(f"a {r_len}x{s_len} kernel does not fit in a {H}x{W} input")
    i, j, r, s = torch.meshgrid(
        torch.arange(h_out),
        torch.arange(w_out),
        torch.arange(r_len),
        torch.arange(s_len),
        indexing="ij",
    )
    rows = (i * w_out + j).reshape(-1)
    cols = ((i + r) * W + (j + s)).reshape(-1)
    out = torch.zeros(h_out * w_out, H * W, dtype=torch.float64)
    # Each (output, kernel offset) pair lands on its own cell, so plain assignment is exact.
    out[rows, cols] = k[r, s].reshape(-1)
    return out


def _column_major_order(rows: int, cols: int) -> torch.Tensor:
    """``perm[row * cols + col] = col * rows + row``: each row-major index's column-major place."""
    r, c = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
    return (c * rows + r).reshape(-1)


def block_toeplitz_2d_column_major(
    kernel: Any, H: int, W: int, *, inputs: bool = True, outputs: bool = True
) -> torch.Tensor:
    """A diagnostic variant: ``block_toeplitz_2d`` for column-major flattening (``col * H + row``).

    ``inputs`` / ``outputs`` choose which side is flattened column-major. This is the matrix a
    student builds who numbers pixels down the columns; it is wrong for PyTorch.
    """
    t = block_toeplitz_2d(kernel, H, W)
    k = _as_f64(kernel, 2, "kernel")
    h_out, w_out = H - k.shape[0] + 1, W - k.shape[1] + 1
    rows = _column_major_order(h_out, w_out) if outputs else torch.arange(h_out * w_out)
    cols = _column_major_order(H, W) if inputs else torch.arange(H * W)
    out = torch.zeros_like(t)
    out[rows.unsqueeze(1), cols.unsqueeze(0)] = t
    return out


def make_shift(n: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """The course's shift ``tau_n``: along the last dim, same length, zeros fill the vacated end.

    ``n > 0`` moves entries right (``n`` zeros enter on the left, the last ``n`` entries drop off),
    ``n < 0`` moves them left, ``n = 0`` is the identity (a copy).
    """

    def shift(x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(x)
        length = x.shape[-1]
        if n == 0:
            out.copy_(x)
        elif 0 < n < length:
            out[..., n:] = x[..., : length - n]
        elif -length < n < 0:
            out[..., : length + n] = x[..., -n:]
        return out

    return shift


def equivariance_gap(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, n: int) -> float:
    """``max |f(tau_n(x)) - tau_n(f(x))|`` as a Python float (0 when f commutes with the shift)."""
    tau = make_shift(n)
    with torch.no_grad():
        return float((f(tau(x)) - tau(f(x))).abs().max())


def param_counts(H: int, W: int, R: int, S: int) -> tuple[int, int, int]:
    """``(dense entries, nonzero entries, kernel parameters)`` for an ``R x S`` kernel on ``H x W``.

    Dense: every entry of the block-Toeplitz matrix, i.e. a fully connected layer between the same
    input and output. Nonzero: the entries holding a kernel weight (for a kernel without zeros),
    ``R*S`` per output. Kernel: the ``R*S`` weights a convolution layer trains (no bias).
    """
    if not (1 <= R <= H and 1 <= S <= W):
        raise ValueError(f"a {R}x{S} kernel does not fit in a {H}x{W} input")
    outputs = (H - R + 1) * (W - S + 1)
    return outputs * H * W, outputs * R * S, R * S


def flip(values: Sequence[Any]) -> list[Any]:
    """``values`` reversed along every axis of a nested list (a 1D or 2D kernel turned around)."""
    return [flip(v) if isinstance(v, (list, tuple)) else v for v in reversed(values)]


# -- Part 6: stride, dilation, the transpose, channels ------------------------------------------


def conv_output_length(N: int, K: int, padding: int = 0, stride: int = 1, dilation: int = 1) -> int:
    """``floor((N + 2P - d(K-1) - 1) / s) + 1``: the outputs of ``F.conv1d`` with these settings."""
    span = N + 2 * padding - dilation * (K - 1) - 1
    if span < 0 or stride < 1 or dilation < 1:
        raise ValueError(f"the kernel does not fit: N={N}, K={K}, padding={padding}, d={dilation}")
    return span // stride + 1


def toeplitz_general(
    w: Any, n: int, padding: int = 0, stride: int = 1, dilation: int = 1
) -> torch.Tensor:
    """The matrix of ``F.conv1d(x, w, padding, stride, dilation)`` for inputs of length ``n``.

    Row ``i`` is output ``y[i] = sum_k w[k] x[i*stride + k*dilation - padding]``: the stride-1
    matrix of the dilated kernel with only every ``stride``-th row kept.
    """
    wt = _as_f64(w, 1, "w")
    k_len = wt.shape[0]
    rows = conv_output_length(n, k_len, padding, stride, dilation)
    out = torch.zeros(rows, n, dtype=torch.float64)
    for i in range(rows):
        for k in range(k_len):
            j = i * stride + k * dilation - padding
            if 0 <= j < n:
                out[i, j] = wt[k]  # distinct k give distinct j (dilation >= 1): no sums needed
    return out


def transposed_length(L: int, K: int, stride: int = 1) -> int:
    """The outputs of ``F.conv_transpose1d`` (no padding) on ``L`` inputs: ``(L-1)s + K``."""
    return (L - 1) * stride + K


def transposed_matrix(w: Any, L: int, stride: int = 1) -> torch.Tensor:
    """The matrix of ``F.conv_transpose1d(y, w, stride=stride)`` on ``L`` inputs: ``T``ᵀ, with
    ``T`` the matrix of ``F.conv1d(., w, stride=stride)`` on the ``(L-1)s + K`` outputs."""
    k_len = _as_f64(w, 1, "w").shape[0]
    return toeplitz_general(w, transposed_length(L, k_len, stride), 0, stride).T.contiguous()


def cnn_param_count(channels: Sequence[int], K: int) -> int:
    """Parameters of ``Conv1d(c[0], c[1], K)``, ``Conv1d(c[1], c[2], K)``, ... with bias: each
    layer a ``C_out x C_in`` grid of ``K``-weight kernels plus ``C_out`` biases."""
    if len(channels) < 2 or K < 1:
        raise ValueError("need at least two channel counts and K >= 1")
    pairs = zip(channels[:-1], channels[1:], strict=True)
    return sum(c_out * c_in * K + c_out for c_in, c_out in pairs)
