"""CARAFE: content-aware reassembly of features (Wang et al., ICCV 2019), written from the paper.

Upsampling by ``σ`` predicts, for every output location, a ``k_up x k_up`` kernel from
the input's content (a channel compressor and a content encoder, then pixel shuffle and
a softmax over the kernel); the output at ``l' = (i', j')`` is that kernel applied to the
``k_up x k_up`` neighbourhood of the source location ``(⌊i'/σ⌋, ⌊j'/σ⌋)``.

:func:`carafe_reassemble` accumulates the map shifted by each of the ``k_up²`` offsets (a
view) times that offset's kernel weights, in place, with its own backward pass (the same
loop, for the two gradients): no ``k_up x k_up`` window copy of the features is made or
kept, only the inputs are saved. :func:`carafe_reassemble_shifted` is the same sum left to autograd (plain tensor
ops; used for ONNX export and as the tests' reference). ``_carafe_reassemble_windows``, a
strided window view contracted by one ``einsum`` (which copies the windows, ``k_up²`` times
the map, and keeps the copy for backward), is the earlier form, kept as a reference of the
tests and of ``gmaiou-paper bench carafe``, which times the three.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

__all__ = ["CARAFE", "carafe_reassemble", "carafe_reassemble_shifted"]


def _check_kernels(features: Tensor, kernels: Tensor, up_kernel: int, scale: int) -> None:
    b, _, h, w = features.shape
    k2 = up_kernel * up_kernel
    if kernels.shape != (b, k2, h * scale, w * scale):
        raise ValueError(
            f"kernels must have shape [{b}, {k2}, {h * scale}, {w * scale}], got {list(kernels.shape)}"
        )


def _kernels_by_offset(kernels: Tensor, up_kernel: int, scale: int, h: int, w: int) -> Tensor:
    """``[B, k², σH, σW]`` -> ``[B, σ, σ, k², H, W]`` (contiguous): per sub-pixel, per offset."""
    b = kernels.shape[0]
    k2 = up_kernel * up_kernel
    return kernels.view(b, k2, h, scale, w, scale).permute(0, 3, 5, 1, 2, 4).contiguous()


class _Reassemble(torch.autograd.Function):
    """The reassembly as ``k²`` in-place multiply-adds, forward and backward; saves the inputs only.

    With ``K[b, s, t, (u, v), i, j]`` the kernels by sub-pixel ``(s, t)`` and ``X̃`` the
    zero-padded features, ``out[b, s, t, c, i, j] = Σ_{u,v} K[b, s, t, (u, v), i, j]
    X̃[b, c, i + u, j + v]``; the gradients are, per offset, ``dK = Σ_c dout · X̃`` and
    ``dX̃[.., i + u, j + v] += Σ_{s,t} dout · K``.
    """

    @staticmethod
    def forward(ctx, features: Tensor, kernels: Tensor, up_kernel: int, scale: int) -> Tensor:
        b, c, h, w = features.shape
        k, r = up_kernel, up_kernel // 2
        by_offset = _kernels_by_offset(kernels, k, scale, h, w)  # [B, σ, σ, k², H, W]
        padded = F.pad(features, (r, r, r, r))
        out = features.new_empty(b, scale, scale, c, h, w)
        for u in range(k):
            for v in range(k):
                weight = by_offset[:, :, :, u * k + v, None]  # [B, σ, σ, 1, H, W]
                shifted = padded[:, None, None, :, u : u + h, v : v + w]  # [B, 1, 1, C, H, W]
                if u == v == 0:
                    torch.mul(weight, shifted, out=out)
                else:
                    out.addcmul_(weight, shifted)
        ctx.save_for_backward(features, kernels)
        ctx.up_kernel, ctx.scale = up_kernel, scale
        return out.permute(0, 3, 4, 1, 5, 2).reshape(b, c, h * scale, w * scale)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:
        features, kernels = ctx.saved_tensors
        k, s = ctx.up_kernel, ctx.scale
        b, c, h, w = features.shape
        r = k // 2
        by_offset = _kernels_by_offset(kernels, k, s, h, w)
        padded = F.pad(features, (r, r, r, r))
        grad = grad.reshape(b, c, h, s, w, s).permute(0, 3, 5, 1, 2, 4).contiguous()
        want_features, want_kernels = ctx.needs_input_grad[:2]
        grad_kernels = kernels.new_empty(b, s, s, k * k, h, w)
        grad_padded = features.new_zeros(b, c, h + 2 * r, w + 2 * r)
        product = torch.empty_like(grad)  # [B, σ, σ, C, H, W], reused for every offset
        for u in range(k):
            for v in range(k):
                uv = u * k + v
                if want_kernels:
                    torch.mul(grad, padded[:, None, None, :, u : u + h, v : v + w], out=product)
                    torch.sum(product, 3, out=grad_kernels[:, :, :, uv])
                if want_features:
                    torch.mul(grad, by_offset[:, :, :, uv, None], out=product)
                    grad_padded[:, :, u : u + h, v : v + w] += product.sum((1, 2))
        grad_features = grad_padded[:, :, r : r + h, r : r + w] if want_features else None
        grad_kernels = grad_kernels.permute(0, 3, 4, 1, 5, 2).reshape(b, k * k, h * s, w * s)
        return grad_features, grad_kernels if want_kernels else None, None, None


def carafe_reassemble(features: Tensor, kernels: Tensor, up_kernel: int, scale: int) -> Tensor:
    """Reassemble ``features`` with per-location kernels, accumulating the ``k²`` offsets in place.

    Same arguments and result as :func:`carafe_reassemble_shifted`. Forward and backward each
    loop over the ``k²`` offsets with in-place multiply-adds on buffers of the output's size;
    nothing but the inputs is kept for backward. Computed in the inputs' common dtype (under
    autocast: autocast's dtype, as ``einsum`` does); not twice differentiable.
    """
    _check_kernels(features, kernels, up_kernel, scale)
    device_type = features.device.type
    if torch.is_autocast_enabled(device_type):
        dtype = torch.get_autocast_dtype(device_type)
    else:
        dtype = torch.promote_types(features.dtype, kernels.dtype)
    return _Reassemble.apply(features.to(dtype), kernels.to(dtype), up_kernel, scale)


def _carafe_reassemble_windows(
    features: Tensor, kernels: Tensor, up_kernel: int, scale: int
) -> Tensor:
    """The earlier form (reference): the ``k x k`` windows of the zero-padded, channels-last map
    as a strided view (``Tensor.unfold``), contracted with the kernels by one ``einsum``, a
    batched ``[C, k²] x [k², σ²]`` product per source location. ``einsum`` copies the windows
    (``k²`` times the map) and autograd keeps the copy."""
    _check_kernels(features, kernels, up_kernel, scale)
    b, c, h, w = features.shape
    k, s, r = up_kernel, scale, up_kernel // 2
    padded = F.pad(features, (r, r, r, r)).permute(0, 2, 3, 1)  # [B, H + 2r, W + 2r, C]
    windows = padded.unfold(1, k, 1).unfold(2, k, 1)  # [B, H, W, C, k, k]
    weights = kernels.view(b, k, k, h, s, w, s)  # [B, k, k, H, σ, W, σ]
    out = torch.einsum("bhwcuv,buvhswt->bchswt", windows, weights)  # [B, C, H, σ, W, σ]
    return out.reshape(b, c, h * s, w * s)


def carafe_reassemble_shifted(
    features: Tensor, kernels: Tensor, up_kernel: int, scale: int
) -> Tensor:
    """Reassemble ``features`` with per-location kernels, as a sum of ``k²`` shifted maps.

    Args:
        features: ``[B, C, H, W]``.
        kernels: ``[B, k², σH, σW]``, normalised over the ``k²`` axis (row-major kernel offsets).
        up_kernel: ``k`` (odd).
        scale: ``σ``.

    Returns:
        ``[B, C, σH, σW]`` with ``out[:, :, i', j'] = Σ_{u,v} K[:, (u,v), i', j'] X[:, :, i+u-r, j+v-r]``
        where ``(i, j) = (⌊i'/σ⌋, ⌊j'/σ⌋)``, ``r = k // 2`` and ``X`` is zero outside the map.
    """
    _check_kernels(features, kernels, up_kernel, scale)
    b, c, h, w = features.shape
    k2 = up_kernel * up_kernel
    r = up_kernel // 2
    padded = F.pad(features, (r, r, r, r))
    # [B, k², H, σ, W, σ]: the kernel weight of each offset at each (source, sub-pixel) position.
    weights = kernels.view(b, k2, h, scale, w, scale)
    out = features.new_zeros(b, c, h, scale, w, scale)
    for u in range(up_kernel):
        for v in range(up_kernel):
            shifted = padded[:, :, u : u + h, v : v + w]  # X[i + u - r, j + v - r]
            out = out + shifted[:, :, :, None, :, None] * weights[:, u * up_kernel + v].unsqueeze(1)
    return out.view(b, c, h * scale, w * scale)


class CARAFE(nn.Module):
    """Content-aware ×``scale`` upsampling of a ``channels``-channel map.

    Args:
        channels: input and output channels.
        scale: upsampling factor ``σ``.
        up_kernel: reassembly kernel size ``k_up`` (paper: 5).
        encoder_kernel: content-encoder kernel size ``k_encoder`` (paper: 3).
        compressed_channels: channels after the 1x1 compressor (paper: 64).
    """

    def __init__(
        self,
        channels: int,
        scale: int = 2,
        up_kernel: int = 5,
        encoder_kernel: int = 3,
        compressed_channels: int = 64,
    ) -> None:
        super().__init__()
        if up_kernel % 2 == 0 or encoder_kernel % 2 == 0:
            raise ValueError(
                f"kernel sizes must be odd, got up_kernel={up_kernel}, encoder_kernel={encoder_kernel}"
            )
        self.scale, self.up_kernel = scale, up_kernel
        self.compressor = nn.Conv2d(channels, compressed_channels, 1)
        self.encoder = nn.Conv2d(
            compressed_channels,
            scale * scale * up_kernel * up_kernel,
            encoder_kernel,
            padding=encoder_kernel // 2,
        )
        nn.init.xavier_uniform_(self.compressor.weight)
        nn.init.zeros_(self.compressor.bias)
        # Near-zero encoder: the initial kernels are close to uniform (a local mean).
        nn.init.normal_(self.encoder.weight, std=0.001)
        nn.init.zeros_(self.encoder.bias)

    def kernels(self, x: Tensor) -> Tensor:
        """``[B, k_up², σH, σW]`` softmax-normalised reassembly kernels for ``x`` ``[B, C, H, W]``."""
        k = self.encoder(self.compressor(x))  # [B, σ² k², H, W]
        k = F.pixel_shuffle(k, self.scale)  # [B, k², σH, σW]
        return k.softmax(dim=1)

    def forward(self, x: Tensor) -> Tensor:
        # The custom autograd function does not export to ONNX; the shifted sum (same values) does.
        reassemble = (
            carafe_reassemble_shifted if torch.onnx.is_in_onnx_export() else carafe_reassemble
        )
        return reassemble(x, self.kernels(x), self.up_kernel, self.scale)
