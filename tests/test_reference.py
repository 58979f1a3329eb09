"""The reference matrices against torch's own convolutions, applied to the identity basis."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from toeplitz_course.course import reference


def conv1d_matrix(w: torch.Tensor, n: int, padding: int) -> torch.Tensor:
    """Column j is F.conv1d of the j-th basis vector: the matrix of the map, by definition."""
    basis = torch.eye(n, dtype=torch.float64).unsqueeze(1)  # n inputs, 1 channel, length n
    out = F.conv1d(basis, w.to(torch.float64).view(1, 1, -1), padding=padding)
    return out[:, 0, :].T


def conv2d_matrix(kernel: torch.Tensor, H: int, W: int) -> torch.Tensor:
    basis = torch.eye(H * W, dtype=torch.float64).view(H * W, 1, H, W)
    out = F.conv2d(basis, kernel.to(torch.float64).view(1, 1, *kernel.shape))
    return out.flatten(1).T


def random_cases_1d(seed: int, count: int):
    g = torch.Generator().manual_seed(seed)
    for _ in range(count):
        k_len = int(torch.randint(1, 7, (1,), generator=g))
        n = int(torch.randint(k_len, 16, (1,), generator=g))
        padding = int(torch.randint(0, 5, (1,), generator=g))
        yield torch.randn(k_len, generator=g), n, padding


def random_cases_2d(seed: int, count: int):
    g = torch.Generator().manual_seed(seed)
    for _ in range(count):
        r_len, s_len = (int(v) for v in torch.randint(1, 5, (2,), generator=g))
        H = int(torch.randint(r_len, 9, (1,), generator=g))
        W = int(torch.randint(s_len, 9, (1,), generator=g))
        yield torch.randn(r_len, s_len, generator=g), H, W


@pytest.mark.parametrize("seed", range(4))
def test_toeplitz_1d_is_the_matrix_of_conv1d(seed):
    for w, n, padding in random_cases_1d(seed, 30):
        expected = conv1d_matrix(w, n, padding)
        got = reference.toeplitz_1d(w, n, padding)
        assert got.dtype == torch.float64
        assert got.shape == expected.shape, (w, n, padding)
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("k_len", [2, 4, 6])
@pytest.mark.parametrize("padding", [0, 1, 2, 3])
def test_toeplitz_1d_even_kernels(k_len, padding):
    w = torch.arange(1.0, k_len + 1)  # no symmetry, so a flip or an off-by-one would show
    n = 9
    torch.testing.assert_close(
        reference.toeplitz_1d(w, n, padding), conv1d_matrix(w, n, padding), rtol=0, atol=0
    )


def test_toeplitz_1d_accepts_lists_and_defaults_to_no_padding():
    x = torch.tensor(reference.X_1D, dtype=torch.float64)
    y = F.conv1d(x.view(1, 1, -1), torch.tensor(reference.W_1D, dtype=torch.float64).view(1, 1, -1))
    torch.testing.assert_close(reference.toeplitz_1d(reference.W_1D, len(x)) @ x, y.view(-1))


def test_toeplitz_1d_rejects_a_kernel_that_does_not_fit():
    with pytest.raises(ValueError):
        reference.toeplitz_1d([1.0, 2.0, 3.0], 1, 0)
    with pytest.raises(ValueError):
        reference.toeplitz_1d([1.0], 3, -1)


def test_banded_1d_moves_the_band_sideways():
    w = [1.0, 2.0, 3.0]
    base = reference.banded_1d(w, 4, 6, 0)
    right = reference.banded_1d(w, 4, 6, -1)
    # Away from the edges the band sits one column further right.
    torch.testing.assert_close(right[:, 1:], base[:, :-1])
    assert torch.equal(reference.banded_1d(w, 6, 6, 1), reference.toeplitz_1d(w, 6, 1))


@pytest.mark.parametrize("seed", range(4))
def test_block_toeplitz_2d_is_the_matrix_of_conv2d(seed):
    for kernel, H, W in random_cases_2d(seed, 40):
        expected = conv2d_matrix(kernel, H, W)
        got = reference.block_toeplitz_2d(kernel, H, W)
        assert got.dtype == torch.float64
        assert got.shape == expected.shape, (kernel.shape, H, W)
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)


def test_block_toeplitz_2d_course_case_with_flatten():
    image, kernel = reference.image_2d().double(), reference.kernel_2d().double()
    y = F.conv2d(image.view(1, 1, 4, 5), kernel.view(1, 1, 3, 3))
    t = reference.block_toeplitz_2d(reference.KERNEL_2D, 4, 5)
    torch.testing.assert_close(t @ image.flatten(), y.flatten())


@pytest.mark.parametrize(("inputs", "outputs"), [(True, True), (True, False), (False, True)])
def test_column_major_variant_is_the_conv_for_column_major_vectors(inputs, outputs):
    for kernel, H, W in random_cases_2d(11, 20):
        x = torch.randn(H, W, dtype=torch.float64)
        y = F.conv2d(x.view(1, 1, H, W), kernel.double().view(1, 1, *kernel.shape))[0, 0]
        m = reference.block_toeplitz_2d_column_major(kernel, H, W, inputs=inputs, outputs=outputs)
        x_vec = x.T.flatten() if inputs else x.flatten()
        y_vec = y.T.flatten() if outputs else y.flatten()
        torch.testing.assert_close(m @ x_vec, y_vec)


def test_block_toeplitz_2d_rejects_a_kernel_that_does_not_fit():
    with pytest.raises(ValueError):
        reference.block_toeplitz_2d([[1.0, 2.0]], 3, 1)


def test_builders_do_not_use_torch_convolutions(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the reference must not call a torch convolution")

    for name in ("conv1d", "conv2d"):
        monkeypatch.setattr(F, name, refuse)
        monkeypatch.setattr(torch, name, refuse)
    reference.toeplitz_1d([1.0, -1.0], 6, 2)
    reference.block_toeplitz_2d([[1.0, 2.0], [3.0, 4.0]], 4, 3)
    reference.block_toeplitz_2d_column_major([[1.0, 2.0], [3.0, 4.0]], 4, 3)


def test_make_shift_semantics():
    x = torch.arange(1.0, 6.0).view(1, 5)
    assert torch.equal(reference.make_shift(0)(x), x)
    assert reference.make_shift(0)(x) is not x
    assert reference.make_shift(2)(x).tolist() == [[0.0, 0.0, 1.0, 2.0, 3.0]]
    assert reference.make_shift(-2)(x).tolist() == [[3.0, 4.0, 5.0, 0.0, 0.0]]
    assert reference.make_shift(5)(x).tolist() == [[0.0] * 5]
    assert reference.make_shift(-7)(x).tolist() == [[0.0] * 5]


def test_make_shift_acts_on_the_last_dim_only_and_keeps_dtype():
    x = torch.arange(24, dtype=torch.int64).view(2, 3, 4)
    shifted = reference.make_shift(1)(x)
    assert shifted.dtype == x.dtype and shifted.shape == x.shape
    assert torch.equal(shifted[..., 1:], x[..., :-1])
    assert torch.equal(shifted[..., 0], torch.zeros(2, 3, dtype=torch.int64))


def test_make_shift_matches_pad_and_slice():
    g = torch.Generator().manual_seed(3)
    for length in range(1, 9):
        x = torch.randn(1, length, generator=g)
        for n in range(-10, 11):
            if n >= 0:
                expected = F.pad(x, (n, 0))[..., :length]
            else:
                expected = F.pad(x, (0, -n))[..., -n:]
            assert torch.equal(reference.make_shift(n)(x), expected), (length, n)


def test_equivariance_gap_definition():
    x = torch.tensor([[1.0, 2.0, 0.0, -1.0, 3.0]])
    assert reference.equivariance_gap(lambda v: 2 * v, x, 2) == 0.0
    flipped = reference.equivariance_gap(lambda v: v.flip(-1), x, 1)
    tau = reference.make_shift(1)
    assert isinstance(flipped, float) and flipped > 0
    assert flipped == float((tau(x).flip(-1) - tau(x.flip(-1))).abs().max())


def test_equivariance_gap_of_a_conv_layer_is_a_float_without_grad():
    conv = torch.nn.Conv1d(1, 1, 3, padding=1, bias=False)
    gap = reference.equivariance_gap(conv, reference.x_1d(), 3)
    assert isinstance(gap, float) and gap >= 0


@pytest.mark.parametrize("seed", range(3))
def test_param_counts_from_the_torch_matrix(seed):
    for kernel, H, W in random_cases_2d(seed + 100, 30):
        kernel = kernel.sign() * (kernel.abs() + 0.5)  # no zero in the kernel
        m = conv2d_matrix(kernel, H, W)
        layer = torch.nn.Conv2d(1, 1, tuple(kernel.shape), bias=False)
        n_params = sum(p.numel() for p in layer.parameters())
        assert reference.param_counts(H, W, *kernel.shape) == (
            m.numel(),
            int((m != 0).sum()),
            n_params,
        )


def test_param_counts_rejects_a_kernel_that_does_not_fit():
    with pytest.raises(ValueError):
        reference.param_counts(2, 5, 3, 1)


def test_course_data_are_fresh_float32_tensors():
    shapes = {
        reference.x_1d: (1, 10),
        reference.w_1d: (3,),
        reference.image_2d: (4, 5),
        reference.kernel_2d: (3, 3),
    }
    for make, shape in shapes.items():
        a = make()
        assert a.dtype == torch.float32 and tuple(a.shape) == shape
        a.fill_(99.0)
        assert not torch.equal(make(), a)
    assert reference.x_1d()[0].tolist() == [float(v) for v in reference.X_1D]
    assert reference.kernel_2d().tolist() == [[float(v) for v in r] for r in reference.KERNEL_2D]


def test_flip_turns_nested_lists_around():
    assert reference.flip([1, 2, 3]) == [3, 2, 1]
    assert reference.flip([[1, 2], [3, 4]]) == [[4, 3], [2, 1]]
