"""Named overlap measures (``docs/spec.md`` section 2's ablation: IoU, GIoU, DIoU, CIoU, maIoU, GmaIoU)
and :func:`pairwise_overlaps`, every GT against every anchor under one of them."""

from __future__ import annotations

from torch import Tensor

from gmaiou._validation import check_boxes, check_same_device
from gmaiou.anchors import AnchorGrid
from gmaiou.measure.boxes import anchor_boxes, box_overlaps
from gmaiou.measure.integrals import MaskIntegrals
from gmaiou.measure.mask_aware import Polygon, gmaiou

#: Measures accepted by :func:`pairwise_overlaps` and the assigners, with aliases.
MEASURES: dict[str, str] = {
    "iou": "iou",
    "giou": "giou",
    "diou": "diou",
    "ciou": "ciou",
    "gmaiou-box": "gmaiou-box",
    "maiou": "gmaiou-box",
    "gmaiou-mask": "gmaiou-mask",
    "gmaiou": "gmaiou-mask",
}


def canonical_measure(measure: str) -> str:
    """Resolve an alias (``"maiou"`` -> ``"gmaiou-box"``); raise for an unknown name."""
    try:
        return MEASURES[measure]
    except (KeyError, TypeError):
        raise ValueError(f"unknown measure {measure!r}; choose one of {sorted(MEASURES)}") from None


def is_mask_measure(measure: str) -> bool:
    """Whether ``measure`` needs ground-truth masks."""
    return canonical_measure(measure).startswith("gmaiou")


def polygon_of(measure: str) -> Polygon:
    """The GmaIoU polygon of a mask-aware measure (``"box"`` or ``"mask"``)."""
    name = canonical_measure(measure)
    if not name.startswith("gmaiou"):
        raise ValueError(f"{measure!r} is a box measure, not a mask-aware one")
    return "box" if name == "gmaiou-box" else "mask"


def pairwise_overlaps(
    measure: str,
    gt_boxes: Tensor,
    anchors: Tensor | AnchorGrid,
    gt_masks: Tensor | MaskIntegrals | None = None,
) -> Tensor:
    """Overlap of every ground truth with every anchor under a named measure.

    Args:
        measure: ``"iou"``, ``"giou"``, ``"diou"``, ``"ciou"`` (torchvision), or
            ``"gmaiou-box"`` (alias ``"maiou"``), ``"gmaiou-mask"`` (alias ``"gmaiou"``).
        gt_boxes: ``[G, 4]``.
        anchors: ``[A, 4]``, or an :class:`~gmaiou.anchors.AnchorGrid`.
        gt_masks: ``[G, H, W]`` masks or their :class:`MaskIntegrals`; required by the
            mask-aware measures.

    Returns:
        ``[G, A]``.
    """
    name = canonical_measure(measure)
    if name.startswith("gmaiou"):
        if gt_masks is None:
            raise ValueError(
                f"measure {measure!r} is mask-aware and needs gt_masks [G, H, W]; none were given"
            )
        return gmaiou(gt_boxes, gt_masks, anchors, polygon=polygon_of(name))
    gt_boxes = check_boxes(gt_boxes, "gt_boxes")
    anchors = check_boxes(anchor_boxes(anchors), "anchors")
    check_same_device(gt_boxes=gt_boxes, anchors=anchors)
    return box_overlaps(name, gt_boxes, anchors)
