"""CARAFE: content-aware reassembly of features (Wang et al., ICCV 2019), written from the paper.

Upsampling by ``σ`` predicts, for every output location, a ``k_up x k_up`` kernel from
the input's content (a channel compressor and a content encoder, then pixel shuffle and
a softmax over the kernel); the output at ``l' = (i', j')`` is that kernel applied to the
``k_up x k_up`` neighbourhood of the source location ``(⌊i'/σ⌋, ⌊j'/σ⌋)``.

:func:`carafe_reassemble` is one fused computation: the ``k_up x k_up`` neighbourhoods
(a strided ``unfold`` view) times the kernels, one batched matrix product per source
location.
:func:`carafe_reassemble_shifted`, the earlier form, sums ``k_up²`` shifted maps times
their weights in Python; it is kept as the reference of the tests and of
``gmaiou-paper bench carafe``, which times the two, and for ONNX export (plain tensor ops).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["CARAFE", "carafe_reassemble", "carafe_reassemble_shifted"]


def _check_kernels(features: Tensor, kernels: Tensor, up_kernel: int, scale: int) -> None:
    b, _, h, w = features.shape
    k2 = up_kernel * up_kernel
    if kernels.shape != (b, k2, h * scale, w * scale):
        raise ValueError(
            f"kernels must have shape [{b}, {k2}, {h * scale}, {w * scale}], got {list(kernels.shape)}"
        )


def carafe_reassemble(features: Tensor, kernels: Tensor, up_kernel: int, scale: int) -> Tensor:
    """Reassemble ``features`` with per-location kernels in one fused product.

    The ``k x k`` windows of the zero-padded, channels-last map are a strided view
    (``Tensor.unfold``, no copy); one ``einsum`` contracts them with the kernels, a batched
    ``[C, k²] x [k², σ²]`` product per source location. Same arguments and result as
    :func:`carafe_reassemble_shifted`.
    """
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
        # The strided window view does not export to ONNX; the shifted sum (same values) does.
        reassemble = (
            carafe_reassemble_shifted if torch.onnx.is_in_onnx_export() else carafe_reassemble
        )
        return reassemble(x, self.kernels(x), self.up_kernel, self.scale)
