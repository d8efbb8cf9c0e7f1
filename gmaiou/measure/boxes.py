"""Box measures, the baselines of ``docs/spec.md`` section 2: box areas and unions, and IoU, GIoU, DIoU
and CIoU through ``torchvision.ops``, kept finite for zero-area boxes."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torchvision.ops as tvops
from torch import Tensor

from gmaiou._validation import widened
from gmaiou.anchors import AnchorGrid


def box_area(boxes: Tensor) -> Tensor:
    """Continuous areas of ``[N, 4]`` boxes, shape ``[N]``."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def box_union(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Continuous union areas ``|b1 ∪ b2|`` of ``[N, 4]`` and ``[M, 4]`` boxes, shape ``[N, M]``."""
    lt = torch.maximum(boxes1[:, None, :2], boxes2[None, :, :2])
    rb = torch.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return box_area(boxes1)[:, None] + box_area(boxes2)[None, :] - inter


def anchor_boxes(anchors: Tensor | AnchorGrid) -> Tensor:
    """The ``[A, 4]`` boxes of an :class:`~gmaiou.anchors.AnchorGrid`, or ``anchors`` itself."""
    return anchors.anchors if isinstance(anchors, AnchorGrid) else anchors


def _hull_and_centres(gt: Tensor, anchors: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Hull area ``[G, A]``, squared hull diagonal and squared centre distance."""
    lt = torch.minimum(gt[:, None, :2], anchors[None, :, :2])
    rb = torch.maximum(gt[:, None, 2:], anchors[None, :, 2:])
    wh = rb - lt
    hull = wh[..., 0] * wh[..., 1]
    diag2 = wh[..., 0] ** 2 + wh[..., 1] ** 2
    cg = (gt[:, :2] + gt[:, 2:]) / 2
    ca = (anchors[:, :2] + anchors[:, 2:]) / 2
    dist2 = ((cg[:, None, :] - ca[None, :, :]) ** 2).sum(-1)
    return hull, diag2, dist2


def _degenerate_box_measure(name: str, gt: Tensor, anchors: Tensor) -> Tensor:
    """Value for pairs where torchvision divides 0 by 0 (zero-area boxes).

    The overlap term of such a pair is 0 (no area in common); a penalty whose
    denominator is 0 is 0; CIoU's aspect term is undefined for a point and
    counts 0. So GIoU is -1 for separate hulls, DIoU and CIoU keep their
    centre-distance penalty (with torchvision's eps).
    """
    hull, diag2, dist2 = _hull_and_centres(gt, anchors)
    if name == "iou":
        return torch.zeros_like(hull)
    if name == "giou":
        union = box_union(gt, anchors)
        return -torch.where(
            hull > 0, (hull - union) / hull.clamp(min=1e-12), torch.zeros_like(hull)
        )
    iou = tvops.box_iou(gt, anchors).nan_to_num(0.0)
    return iou - dist2 / (diag2 + 1e-7)


_BOX_FUNCTIONS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "iou": tvops.box_iou,
    "giou": tvops.generalized_box_iou,
    "diou": tvops.distance_box_iou,
    "ciou": tvops.complete_box_iou,
}


def box_overlaps(measure: str, gt_boxes: Tensor, anchors: Tensor) -> Tensor:
    """A torchvision box measure for every GT and anchor, ``[G, A]``; finite for zero-area boxes."""
    fn = _BOX_FUNCTIONS[measure]
    if gt_boxes.shape[0] == 0 or anchors.shape[0] == 0:
        return anchors.new_zeros(gt_boxes.shape[0], anchors.shape[0])
    dtype = anchors.dtype
    gt_boxes, anchors = widened(gt_boxes), widened(anchors)
    out = fn(gt_boxes, anchors)
    bad = ~torch.isfinite(out)
    if bool(bad.any()):
        out = torch.where(bad, _degenerate_box_measure(measure, gt_boxes, anchors), out)
    return out.to(dtype)
