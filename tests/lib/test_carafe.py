"""CARAFE's reassembly: the in-place accumulation against the window-copy einsum it replaces
and the autograd shifted sum, in values and both gradients."""

from __future__ import annotations

import pytest
import torch

from gmaiou.models.carafe import (
    CARAFE,
    _carafe_reassemble_windows,
    carafe_reassemble,
    carafe_reassemble_shifted,
)


def _inputs(b, c, h, w, k, s, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, c, h, w, generator=g, dtype=dtype)
    kernels = torch.randn(b, k * k, s * h, s * w, generator=g, dtype=dtype).softmax(1)
    grad = torch.randn(b, c, s * h, s * w, generator=g, dtype=dtype)
    return x, kernels, grad


def _value_and_grads(fn, x, kernels, grad, k, s):
    x, kernels = x.clone().requires_grad_(), kernels.clone().requires_grad_()
    out = fn(x, kernels, k, s)
    gx, gk = torch.autograd.grad(out, (x, kernels), grad)
    return out.detach(), gx, gk


@pytest.mark.parametrize(
    "b, c, h, w, k, s",
    [
        (2, 3, 4, 6, 5, 2),
        (1, 8, 1, 1, 3, 2),
        (2, 4, 3, 2, 3, 3),
        (1, 16, 7, 5, 5, 2),
        (3, 2, 2, 9, 1, 4),
    ],
)
def test_accumulated_reassembly_matches_the_window_einsum_and_the_shifted_sum(b, c, h, w, k, s):
    x, kernels, grad = _inputs(b, c, h, w, k, s, seed=k * s + h)
    got = _value_and_grads(carafe_reassemble, x, kernels, grad, k, s)
    assert got[0].shape == (b, c, s * h, s * w) and got[2].shape == kernels.shape
    for reference in (_carafe_reassemble_windows, carafe_reassemble_shifted):
        for a, e in zip(got, _value_and_grads(reference, x, kernels, grad, k, s)):
            assert torch.allclose(a, e, atol=1e-5, rtol=0)


def test_float64_agrees_to_rounding_and_one_hot_kernels_copy_a_neighbour():
    x, kernels, grad = _inputs(2, 5, 6, 7, 5, 2, seed=1, dtype=torch.float64)
    got = _value_and_grads(carafe_reassemble, x, kernels, grad, 5, 2)
    for a, e in zip(got, _value_and_grads(_carafe_reassemble_windows, x, kernels, grad, 5, 2)):
        assert torch.allclose(a, e, atol=1e-12, rtol=0)
    # all weight on offset (u, v) = (2, 3), i.e. (0, +1): out[i', j'] = x[i'//2, j'//2 + 1], 0 past the edge
    one_hot = torch.zeros(1, 25, 8, 8, dtype=torch.float64)
    one_hot[:, 2 * 5 + 3] = 1
    x = torch.arange(16, dtype=torch.float64).view(1, 1, 4, 4)
    out = carafe_reassemble(x, one_hot, 5, 2)[0, 0]
    shifted = torch.cat([x[0, 0, :, 1:], torch.zeros(4, 1, dtype=torch.float64)], 1)
    assert torch.equal(out, shifted.repeat_interleave(2, 0).repeat_interleave(2, 1))


def test_only_the_inputs_are_saved_and_one_sided_gradients_work():
    x, kernels, grad = _inputs(1, 4, 5, 5, 5, 2, seed=2)
    x.requires_grad_()
    saved = []

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = carafe_reassemble(x, kernels, 5, 2)
    assert len(saved) == 2 and {t.data_ptr() for t in saved} == {x.data_ptr(), kernels.data_ptr()}
    (gx,) = torch.autograd.grad(out, x, grad)  # kernels need no gradient
    expected = _value_and_grads(_carafe_reassemble_windows, x.detach(), kernels, grad, 5, 2)[1]
    assert torch.allclose(gx, expected, atol=1e-5, rtol=0)
    with torch.no_grad():
        assert torch.equal(carafe_reassemble(x, kernels, 5, 2), out.detach())


def test_autocast_computes_in_its_dtype_and_bad_kernels_are_refused():
    x, kernels, _ = _inputs(1, 4, 3, 3, 3, 2, seed=3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = carafe_reassemble(x, kernels, 3, 2)
    assert out.dtype == torch.bfloat16
    assert torch.allclose(out.float(), carafe_reassemble(x, kernels, 3, 2), atol=3e-2)
    with pytest.raises(ValueError, match="kernels"):
        carafe_reassemble(x, kernels[:, :4], 3, 2)


def test_carafe_module_trains_through_the_accumulated_reassembly():
    up = CARAFE(8, scale=2, up_kernel=5, encoder_kernel=3, compressed_channels=4)
    x = torch.randn(2, 8, 5, 6, requires_grad=True)
    up(x).square().sum().backward()
    assert x.grad.shape == x.shape and up.encoder.weight.grad.abs().sum() > 0
