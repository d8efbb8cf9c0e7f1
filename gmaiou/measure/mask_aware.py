"""GmaIoU (Eq. 7 of the paper; ``docs/spec.md`` section 1.4) with P = M and P = B (maIoU), dense and per GT,
and the mask-over-box ratio (Eq. 1), from Alg. 1's counts."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import Tensor

from gmaiou._validation import (
    NUMPY_FLOATS,
    check_boxes,
    check_masks,
    check_same_device,
    widened,
)
from gmaiou.anchors import AnchorGrid
from gmaiou.measure.boxes import anchor_boxes, box_area
from gmaiou.measure.integrals import MaskIntegrals, as_integrals, check_mask_input
from gmaiou.measure.numpy_tables import (
    _grouped_counts_from_masks_numpy,
    _rounded_pixel_bounds_numpy,
)

Polygon = Literal["mask", "box"]


def gmaiou_from_counts(
    inter: Tensor,
    mask_area: Tensor,
    gt_area: Tensor | None,
    anchor_area: Tensor,
    union_box: Tensor | None,
    polygon: Polygon,
) -> Tensor:
    """GmaIoU from its ingredients; all arguments broadcast to a common shape.

    Args:
        inter: ``|A ∩ M|`` pixel counts.
        mask_area: ``|M|`` pixel counts.
        gt_area: ``|B|``, continuous (only read for ``polygon="box"``).
        anchor_area: ``|A|``, continuous.
        union_box: ``|A ∪ B|``, continuous (only read for ``polygon="box"``).
        polygon: ``"box"`` (P = B, maIoU) or ``"mask"`` (P = M).
    """
    dtype = anchor_area.dtype if anchor_area.is_floating_point() else torch.float32
    # Integer counts are converted where they meet a float operand (type promotion: the
    # same cast inside that kernel, one kernel fewer each).
    if inter.is_floating_point():
        inter = inter.to(dtype)
    m = mask_area.to(dtype) if mask_area.is_floating_point() else mask_area
    if polygon == "box":
        assert gt_area is not None and union_box is not None
        num = inter * gt_area.to(dtype)
        den = m * union_box.to(dtype)
    elif polygon == "mask":
        num = inter
        den = anchor_area.to(dtype) + m - inter
    else:
        raise ValueError(f"polygon must be 'mask' or 'box', got {polygon!r}")
    # |M| = 0 forces |A ∩ M| = 0: the value is 0, never 0/0 (computed, then not selected).
    valid = (m > 0) & (den > 0)
    return torch.where(valid, num / den, 0.0)


def _check_measure_inputs(
    gt_boxes: Tensor,
    gt_masks: Tensor | MaskIntegrals,
    anchors: Tensor | AnchorGrid,
    polygon: str,
) -> tuple[Tensor, Tensor | MaskIntegrals, Tensor]:
    if polygon not in ("mask", "box"):
        raise ValueError(f"polygon must be 'mask' or 'box', got {polygon!r}")
    gt_boxes = check_boxes(gt_boxes, "gt_boxes")
    anchors = check_boxes(anchor_boxes(anchors), "anchors")
    gt_masks = check_mask_input(gt_masks, gt_boxes.shape[0])
    check_same_device(gt_boxes=gt_boxes, anchors=anchors)
    if gt_masks.device != anchors.device:
        raise ValueError(
            f"gt_masks is on {gt_masks.device} but anchors are on {anchors.device}; move them to one device"
        )
    return gt_boxes, gt_masks, anchors


def gmaiou(
    gt_boxes: Tensor,
    gt_masks: Tensor | MaskIntegrals,
    anchors: Tensor | AnchorGrid,
    polygon: Polygon = "mask",
) -> Tensor:
    """Generalized mask-aware IoU between every ground truth and every anchor (Alg. 1).

    Args:
        gt_boxes: ``[G, 4]`` ground-truth boxes ``(x1, y1, x2, y2)``.
        gt_masks: ``[G, H, W]`` bool or uint8 ground-truth masks at image resolution,
            or their prebuilt :class:`MaskIntegrals`.
        anchors: ``[A, 4]`` anchor boxes, or an :class:`~gmaiou.anchors.AnchorGrid`; they
            may lie partly or wholly off the image.
        polygon: ``"mask"`` for P = M (the IoU of the anchor box and the mask) or
            ``"box"`` for P = B (maIoU).

    Returns:
        ``[G, A]`` tensor in the anchors' floating dtype.
    """
    gt_boxes, gt_masks, anchors = _check_measure_inputs(gt_boxes, gt_masks, anchors, polygon)
    integrals = as_integrals(gt_masks, gt_boxes)
    out = _gmaiou_dense(integrals, widened(gt_boxes), widened(anchors), polygon)
    return out.to(anchors.dtype)


def maiou(
    gt_boxes: Tensor, gt_masks: Tensor | MaskIntegrals, anchors: Tensor | AnchorGrid
) -> Tensor:
    """Mask-aware IoU of the BMVC paper: :func:`gmaiou` with ``polygon="box"``; ``[G, A]``."""
    return gmaiou(gt_boxes, gt_masks, anchors, polygon="box")


def _gmaiou_torch(
    inter: Tensor, mask_area: Tensor, gt_boxes: Tensor, boxes: Tensor, polygon: Polygon
) -> Tensor:
    """GmaIoU of GT ``g`` and ``boxes[..., k, :]`` from the counts of torch look-ups: the
    areas and, for P = B, the box union, then :func:`gmaiou_from_counts`.

    Args:
        inter: ``[G, K]`` counts ``|A ∩ M|`` (integers).
        mask_area: ``[G]`` pixel counts ``|M|``.
        gt_boxes: ``[G, 4]``.
        boxes: ``[K, 4]`` (every GT with every box) or ``[G, K, 4]`` (K boxes per GT).

    Returns:
        ``[G, K]`` in ``boxes``' dtype, bit for bit the NumPy tables' values on the pairs
        that path evaluates, and 0 on those it skips (their count is 0).
    """
    wh = boxes[..., 2:] - boxes[..., :2]
    anchor_area = wh[..., 0] * wh[..., 1]  # [K] or [G, K]
    gt_area = union = None
    if polygon == "box":
        gt_wh = gt_boxes[:, 2:] - gt_boxes[:, :2]
        gt_area = (gt_wh[:, 0] * gt_wh[:, 1])[:, None]  # [G, 1]
        gt = gt_boxes[:, None, :]
        overlap = torch.minimum(boxes[..., 2:], gt[..., 2:]) - torch.maximum(
            boxes[..., :2], gt[..., :2]
        )
        overlap = overlap.clamp_(min=0)  # [G, K, 2]
        union = anchor_area + gt_area - overlap[..., 0] * overlap[..., 1]
    return gmaiou_from_counts(inter, mask_area[:, None], gt_area, anchor_area, union, polygon)


def _gmaiou_dense(
    integrals: MaskIntegrals, gt_boxes: Tensor, anchors: Tensor, polygon: Polygon
) -> Tensor:
    # GmaIoU is 0 wherever |A ∩ M| is: on the CPU, evaluate the formula on the pairs that
    # meet a mask only; on a GPU, every pair (cheaper than finding those pairs).
    if (
        integrals._numpy_lookups
        and anchors.device.type == "cpu"
        and len(integrals)
        and anchors.dtype in NUMPY_FLOATS
        and gt_boxes.dtype == anchors.dtype
    ):
        return torch.from_numpy(_gmaiou_dense_numpy(integrals, gt_boxes, anchors, polygon))
    if not integrals._numpy_lookups:  # every pair: no host synchronisation, no scatter
        inter = integrals._torch_counts(anchors, integrals._lookup_frame()[:, None])  # [G, A]
        return _gmaiou_torch(inter, integrals.mask_area, gt_boxes, anchors, polygon)
    # NumPy tables with mixed dtypes or no GTs: the pairs that meet a crop only.
    gi, ai, inter = integrals.sparse_intersection(anchors)
    ax1, ay1, ax2, ay2 = anchors.index_select(0, ai).unbind(1)  # [P] each: 1-D ops are faster
    a_area, b_area = (ax2 - ax1) * (ay2 - ay1), box_area(gt_boxes).index_select(0, gi)
    union = None
    if polygon == "box":
        bx1, by1, bx2, by2 = gt_boxes.index_select(0, gi).unbind(1)
        iw = (torch.minimum(ax2, bx2) - torch.maximum(ax1, bx1)).clamp_(min=0)
        ih = (torch.minimum(ay2, by2) - torch.maximum(ay1, by1)).clamp_(min=0)
        union = a_area + b_area - iw * ih
    values = gmaiou_from_counts(
        inter, integrals.mask_area.index_select(0, gi), b_area, a_area, union, polygon
    )
    out = anchors.new_zeros(gt_boxes.shape[0], anchors.shape[0])
    out[gi, ai] = values
    return out


def _gmaiou_dense_numpy(
    integrals: MaskIntegrals, gt_boxes: Tensor, anchors: Tensor, polygon: Polygon
) -> np.ndarray:
    """:func:`_gmaiou_dense` in NumPy: the same operations in the same order, hence equal values.

    For float32 or float64 boxes and anchors of one dtype (others take the torch path).

    The pairs come as flat positions in the ``[G, A]`` output, so that the values are
    written with one ``put``; per-anchor quantities are computed once and gathered.
    """
    g, n = gt_boxes.shape[0], anchors.shape[0]
    a = np.ascontiguousarray(anchors.detach().numpy().T)  # [4, A]
    b = np.ascontiguousarray(gt_boxes.detach().numpy().T, dtype=a.dtype)  # [4, G]
    flat, _, ai, counts, per = integrals._sparse_counts_numpy(
        _rounded_pixel_bounds_numpy(a, integrals.height, integrals.width)
    )
    a_area = ((a[2] - a[0]) * (a[3] - a[1])).take(ai)
    b_area = ((b[2] - b[0]) * (b[3] - b[1])).repeat(per)  # the pairs come GT by GT
    inter = counts.astype(a.dtype)
    m = integrals.mask_area.numpy().astype(a.dtype).repeat(per)
    if polygon == "box":
        pa, pb = a.take(ai, axis=1), b.repeat(per, axis=1)  # [4, P] each
        lo = np.maximum(pa[:2], pb[:2])
        wh = np.minimum(pa[2:], pb[2:], out=pa[2:])
        wh -= lo
        np.maximum(wh, 0, out=wh)
        union = a_area + b_area
        union -= wh[0] * wh[1]
        num, den = inter * b_area, m * union
    else:
        num, den = inter, a_area + m - inter
    values = _divide_where_defined(num, den)
    out = np.zeros(g * n, dtype=a.dtype)
    out.put(flat, values)
    return out.reshape(g, n)


def grouped_gmaiou(
    gt_boxes: Tensor,
    gt_masks: Tensor | MaskIntegrals,
    boxes: Tensor,
    polygon: Polygon = "mask",
) -> Tensor:
    """GmaIoU of each ground truth with ``K`` boxes of its own (e.g. its ATSS candidates).

    Args:
        gt_boxes: ``[G, 4]``.
        gt_masks: ``[G, H, W]`` binary masks or their :class:`MaskIntegrals`.
        boxes: ``[G, K, 4]``: row ``g`` holds the boxes to compare with GT ``g``.
        polygon: ``"mask"`` or ``"box"``, as in :func:`gmaiou`.

    Returns:
        ``[G, K]``, equal to ``gmaiou(gt_boxes, gt_masks, boxes[g])[g]`` row by row. Raw
        masks on the CPU take a NumPy path: OpenCV's tables of the box-hint crops, in one
        buffer, and one gather for every box's four corners.
    """
    gt_boxes = check_boxes(gt_boxes, "gt_boxes")
    g = gt_boxes.shape[0]
    if boxes.dim() != 3 or boxes.shape[0] != g or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must have shape [{g}, K, 4], got {list(boxes.shape)}")
    if polygon not in ("mask", "box"):
        raise ValueError(f"polygon must be 'mask' or 'box', got {polygon!r}")
    masks = check_mask_input(gt_masks, g)
    return _grouped_gmaiou(widened(gt_boxes), masks, widened(boxes), polygon).to(boxes.dtype)


def _grouped_gmaiou(
    gt_boxes: Tensor, gt_masks: Tensor | MaskIntegrals, boxes: Tensor, polygon: Polygon
) -> Tensor:
    """:func:`grouped_gmaiou` on validated inputs, half precision already widened (the
    assigners check and widen theirs once)."""
    if (
        isinstance(gt_masks, Tensor)
        and gt_masks.device.type == "cpu"
        and boxes.dtype in NUMPY_FLOATS
        and gt_boxes.dtype in NUMPY_FLOATS
    ):
        return torch.from_numpy(_grouped_gmaiou_numpy(gt_boxes, gt_masks, boxes, polygon))
    integrals = as_integrals(gt_masks, gt_boxes)
    if boxes.shape[1] == 0 or gt_boxes.shape[0] == 0:
        return boxes.new_zeros(boxes.shape[:2])
    inter = integrals._torch_counts(boxes, integrals._lookup_frame()[:, None])  # [G, K]
    return _gmaiou_torch(inter, integrals.mask_area, gt_boxes, boxes, polygon)


def _grouped_gmaiou_numpy(
    gt_boxes: Tensor, masks: Tensor, boxes: Tensor, polygon: str
) -> np.ndarray:
    """:func:`grouped_gmaiou` on raw CPU masks, in NumPy (a few microseconds per operation, not ten)."""
    b = boxes.detach().numpy()
    hint = gt_boxes.detach().numpy()
    area, counts = _grouped_counts_from_masks_numpy(masks.numpy(), hint, b)
    dtype = b.dtype
    inter = counts.astype(dtype)
    m = area.astype(dtype)[:, None]
    a_area = b[..., 2] - b[..., 0]
    a_area *= b[..., 3] - b[..., 1]
    if polygon == "mask":
        num = inter
        den = a_area + m
        den -= inter
    else:
        gt = hint.astype(dtype, copy=False)
        gt_area = ((gt[:, 2] - gt[:, 0]) * (gt[:, 3] - gt[:, 1]))[:, None]
        iw = np.minimum(gt[:, None, 2], b[..., 2]) - np.maximum(gt[:, None, 0], b[..., 0])
        ih = np.minimum(gt[:, None, 3], b[..., 3]) - np.maximum(gt[:, None, 1], b[..., 1])
        union = gt_area + a_area - np.maximum(iw, 0) * np.maximum(ih, 0)
        num, den = inter * gt_area, m * union
    return _divide_where_defined(num, den)


def _divide_where_defined(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """GmaIoU values ``num / den``, written into ``num`` where ``den > 0``; elsewhere ``num``
    stays, and is 0 there: never 0/0.

    ``den > 0`` is :func:`gmaiou_from_counts`'s ``(|M| > 0) & (den > 0)``. With P = B,
    ``num = |A ∩ M| |B|`` and ``den = |M| |A ∪ B|``: ``den = 0`` means ``|M| = 0`` (so
    ``|A ∩ M| = 0``) or an empty union (so ``|B| = 0``). With P = M, ``den = |A| + |M| -
    |A ∩ M| = 0`` forces ``|A ∩ M| = 0``, and ``|M| = 0`` gives 0 over a positive ``den``.
    """
    return np.divide(num, den, out=num, where=den > 0)


def mob_ratio(boxes: Tensor | AnchorGrid, gt_masks: Tensor | MaskIntegrals) -> Tensor:
    """Mask-over-box ratio ``|box ∩ M| / |box|`` for every mask and box.

    Arguments in the package's order, boxes then masks.

    Args:
        boxes: ``[N, 4]`` boxes (anchors, an :class:`~gmaiou.anchors.AnchorGrid`, or the
            GTs' own boxes).
        gt_masks: ``[G, H, W]`` binary masks, or their :class:`MaskIntegrals`.

    Returns:
        ``[G, N]`` ratios; 0 where a box has zero area. For a GT's own (tight) box
        the diagonal is ``|M| / |B|``.
    """
    boxes = check_boxes(anchor_boxes(boxes), "boxes")
    if isinstance(gt_masks, MaskIntegrals):
        integrals = gt_masks
    else:
        if not isinstance(gt_masks, Tensor) or gt_masks.dim() != 3:
            shape = (
                list(gt_masks.shape) if isinstance(gt_masks, Tensor) else type(gt_masks).__name__
            )
            raise ValueError(f"gt_masks must have shape [G, H, W], got {shape}")
        integrals = MaskIntegrals(check_masks(gt_masks, gt_masks.shape[0]))
    check_same_device(boxes=boxes, gt_masks=integrals.mask_area)
    wide = widened(boxes)
    inter = integrals.intersection(wide).to(wide.dtype)
    area = box_area(wide)[None, :].expand_as(inter)
    ratio = torch.where(
        area > 0, inter / area.clamp(min=torch.finfo(wide.dtype).tiny), torch.zeros_like(inter)
    )
    return ratio.to(boxes.dtype)
