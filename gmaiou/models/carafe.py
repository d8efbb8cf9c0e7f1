"""CARAFE: content-aware reassembly of features (Wang et al., ICCV 2019), written from the paper.

Upsampling by ``σ`` predicts, for every output location, a ``k_up x k_up`` kernel from
the input's content (a channel compressor and a content encoder, then pixel shuffle and
a softmax over the kernel); the output at ``l' = (i', j')`` is that kernel applied to the
``k_up x k_up`` neighbourhood of the source location ``(⌊i'/σ⌋, ⌊j'/σ⌋)``.

The reassembly runs as a sum over the ``k_up²`` kernel offsets of shifted input maps
times their kernel weights, so memory stays O(C σ² H W) (no ``k_up²``-times unfolded copy)
and the module is plain tensor ops that trace to ONNX.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["CARAFE", "carafe_reassemble"]


def carafe_reassemble(features: Tensor, kernels: Tensor, up_kernel: int, scale: int) -> Tensor:
    """Reassemble ``features`` with per-location kernels.

    Args:
        features: ``[B, C, H, W]``.
        kernels: ``[B, k², σH, σW]``, normalised over the ``k²`` axis (row-major kernel offsets).
        up_kernel: ``k`` (odd).
        scale: ``σ``.

    Returns:
        ``[B, C, σH, σW]`` with ``out[:, :, i', j'] = Σ_{u,v} K[:, (u,v), i', j'] X[:, :, i+u-r, j+v-r]``
        where ``(i, j) = (⌊i'/σ⌋, ⌊j'/σ⌋)``, ``r = k // 2`` and ``X`` is zero outside the map.
    """
    b, c, h, w = features.shape
    k2 = up_kernel * up_kernel
    if kernels.shape != (b, k2, h * scale, w * scale):
        raise ValueError(
            f"kernels must have shape [{b}, {k2}, {h * scale}, {w * scale}], got {list(kernels.shape)}"
        )
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
        return carafe_reassemble(x, self.kernels(x), self.up_kernel, self.scale)
