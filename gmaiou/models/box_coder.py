"""Box regression targets: mmdetection's ``DeltaXYWHBBoxCoder`` (means 0, stds 0.1, 0.1, 0.2, 0.2).

A box ``(x1, y1, x2, y2)`` relative to an anchor is coded as centre offsets in anchor
widths and log size ratios, each divided by its standard deviation:
``dx = (gx - ax) / aw / 0.1``, ``dw = log(gw / aw) / 0.2`` (same for y, h).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["BOX_STDS", "MAX_LOG_RATIO", "decode_boxes", "encode_boxes"]

#: Standard deviations of the coded ``(dx, dy, dw, dh)`` (YOLACT's variances 0.1, 0.2).
BOX_STDS: tuple[float, float, float, float] = (0.1, 0.1, 0.2, 0.2)
#: Largest decoded ``|log(w / aw)|``: a box at most 62.5 times larger or smaller than its anchor
#: (mmdetection's ``wh_ratio_clip = 16 / 1000``); keeps ``exp`` from overflowing.
MAX_LOG_RATIO: float = abs(math.log(16 / 1000))


def _constants(like: Tensor, values: Sequence[float]) -> Tensor:
    """``values`` as a ``[len(values)]`` tensor of ``like``'s dtype, filled on ``like``'s device:
    ``new_tensor`` copies from host memory, which synchronises a CUDA device with the host."""
    return torch.stack([like.new_full((), float(v)) for v in values])


def _centre_size(boxes: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    w = boxes[..., 2] - boxes[..., 0]
    h = boxes[..., 3] - boxes[..., 1]
    return boxes[..., 0] + 0.5 * w, boxes[..., 1] + 0.5 * h, w, h


def encode_boxes(anchors: Tensor, boxes: Tensor, stds: Sequence[float] = BOX_STDS) -> Tensor:
    """Regression targets of ``boxes`` relative to ``anchors``.

    Args:
        anchors: ``[..., 4]`` boxes with positive width and height.
        boxes: ``[..., 4]`` target boxes, the same shape; zero sizes are clamped to a
            thousandth of a pixel so the logarithm stays finite.

    Returns:
        ``[..., 4]`` deltas ``(dx, dy, dw, dh)``.
    """
    if anchors.shape != boxes.shape or anchors.shape[-1:] != (4,):
        raise ValueError(
            f"anchors and boxes must both have shape [..., 4], got {list(anchors.shape)} and {list(boxes.shape)}"
        )
    ax, ay, aw, ah = _centre_size(anchors)
    gx, gy, gw, gh = _centre_size(boxes)
    gw, gh = gw.clamp(min=1e-3), gh.clamp(min=1e-3)
    deltas = torch.stack(
        [(gx - ax) / aw, (gy - ay) / ah, torch.log(gw / aw), torch.log(gh / ah)], dim=-1
    )
    return deltas / _constants(deltas, stds)


def decode_boxes(
    anchors: Tensor,
    deltas: Tensor,
    stds: Sequence[float] = BOX_STDS,
    max_shape: int | tuple[int, int] | None = None,
) -> Tensor:
    """Boxes from regression ``deltas`` relative to ``anchors`` (inverse of :func:`encode_boxes`).

    Args:
        anchors: ``[..., 4]`` (broadcast against ``deltas``).
        deltas: ``[..., 4]``.
        max_shape: clip to an image of side ``S`` or ``(height, width)``; ``None``: no clipping.

    Returns:
        ``[..., 4]`` boxes ``(x1, y1, x2, y2)``; log-scales are clamped to ``±MAX_LOG_RATIO``.
    """
    if anchors.shape[-1] != 4 or deltas.shape[-1] != 4:
        raise ValueError(
            f"anchors and deltas must have shape [..., 4], got {list(anchors.shape)} and {list(deltas.shape)}"
        )
    d = deltas * _constants(deltas, stds)
    ax, ay, aw, ah = _centre_size(anchors)
    cx = ax + d[..., 0] * aw
    cy = ay + d[..., 1] * ah
    w = aw * d[..., 2].clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO).exp()
    h = ah * d[..., 3].clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO).exp()
    boxes = torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)
    if max_shape is not None:
        height, width = (max_shape, max_shape) if isinstance(max_shape, int) else max_shape
        limits = _constants(boxes, [width, height, width, height])
        boxes = torch.minimum(boxes.clamp(min=0), limits)
    return boxes
