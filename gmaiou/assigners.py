"""Anchor assigners: YOLACT's fixed-IoU rule and ATSS, each with any overlap measure.

An assigner has one job: label each anchor positive (matched to a ground truth),
negative or ignored. Result convention (``docs/spec.md`` section 2): ``gt_inds[a] = g >= 0``
for a positive matched to GT ``g``, ``-1`` for a negative, ``-2`` for ignored.

Every assigner is called the same way: the anchors, then the GT (boxes, then masks), then
options by keyword::

    assigner.assign(grid, gt_boxes, gt_masks)  # an AnchorGrid carries its level counts
    assigner.assign(anchors, gt_boxes, gt_masks, num_level_anchors=counts)

The order of gmaiou 0.x, ``assign(anchors, num_level_anchors, gt_boxes, gt_masks)``, is
still accepted (the level counts are recognised as a list or tuple of ints in second
place) with a :class:`DeprecationWarning`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from gmaiou._validation import check_boxes, check_same_device, widened
from gmaiou.anchors import AnchorGrid
from gmaiou.measure import (
    MaskIntegrals,
    box_overlaps,
    canonical_measure,
    check_mask_input,
    is_mask_measure,
    pairwise_overlaps,
    polygon_of,
)
from gmaiou.measure.mask_aware import _grouped_gmaiou

__all__ = ["ATSSAssigner", "AssignResult", "MaxIoUAssigner", "NEGATIVE", "IGNORED"]

NEGATIVE = -1
IGNORED = -2


@dataclass(frozen=True)
class AssignResult:
    """Labels of ``A`` anchors.

    Attributes:
        gt_inds: ``[A]`` int64: ``g >= 0`` positive for GT ``g``; ``-1`` negative; ``-2`` ignored.
        max_overlaps: ``[A]`` overlap that decided each label (see the assigner), in the
            anchors' dtype (half-precision anchors are assigned in float32).
    """

    gt_inds: Tensor
    max_overlaps: Tensor

    @property
    def pos_mask(self) -> Tensor:
        """``[A]`` bool, the positives."""
        return self.gt_inds >= 0

    @property
    def neg_mask(self) -> Tensor:
        """``[A]`` bool, the negatives."""
        return self.gt_inds == NEGATIVE

    @property
    def num_pos(self) -> int:
        return int(self.pos_mask.sum())


_GtMasks = Tensor | MaskIntegrals | None


def _is_level_counts(value: object) -> bool:
    """Whether ``value`` looks like ``num_level_anchors`` (a list or tuple of ints), not GT boxes."""
    return isinstance(value, (list, tuple)) and all(
        isinstance(n, int) and not isinstance(n, bool) for n in value
    )


def _arguments_in_order(
    assigner: str,
    gt_boxes: Tensor | Sequence[int],
    gt_masks: _GtMasks | Tensor,
    extra: tuple,
    num_level_anchors: Sequence[int] | None,
) -> tuple[Tensor, _GtMasks, Sequence[int] | None]:
    """``(gt_boxes, gt_masks, num_level_anchors)`` of an ``assign`` call, from the current
    order or, with a :class:`DeprecationWarning`, the old ``(anchors, num_level_anchors,
    gt_boxes, gt_masks)`` one."""
    if not _is_level_counts(gt_boxes):
        if extra:
            raise TypeError(
                f"{assigner}.assign() takes (anchors, gt_boxes, gt_masks) positionally and "
                f"num_level_anchors by keyword; got {3 + len(extra)} positional arguments"
            )
        return gt_boxes, gt_masks, num_level_anchors  # type: ignore[return-value]
    if num_level_anchors is not None or len(extra) > 1:
        raise TypeError(
            f"{assigner}.assign() got the level counts both in second place and by keyword, "
            "or too many arguments; call assign(anchors, gt_boxes, gt_masks, "
            "num_level_anchors=counts)"
        )
    warnings.warn(
        f"{assigner}.assign(anchors, num_level_anchors, gt_boxes, gt_masks) is deprecated; "
        "call assign(anchors, gt_boxes, gt_masks, num_level_anchors=counts), or pass an "
        "AnchorGrid as anchors and leave the counts out",
        DeprecationWarning,
        stacklevel=3,
    )
    if gt_masks is None:
        raise ValueError("gt_boxes [G, 4] is required")
    return gt_masks, (extra[0] if extra else None), gt_boxes  # type: ignore[return-value]


def _check_assign_inputs(
    anchors: Tensor | AnchorGrid,
    num_level_anchors: Sequence[int] | None,
    gt_boxes: Tensor,
    gt_masks: _GtMasks,
    measure: str,
    levels_required: bool = True,
) -> tuple[Tensor, Sequence[int], Tensor, _GtMasks, torch.dtype]:
    if isinstance(anchors, AnchorGrid):
        if num_level_anchors is not None and tuple(num_level_anchors) != anchors.num_level_anchors:
            raise ValueError(
                f"num_level_anchors {list(num_level_anchors)} differs from the AnchorGrid's "
                f"{list(anchors.num_level_anchors)}; leave it out when passing an AnchorGrid"
            )
        anchors, num_level_anchors = anchors.anchors, anchors.num_level_anchors
    elif num_level_anchors is None and levels_required:
        raise ValueError(
            "num_level_anchors is required with an anchors tensor (or pass an AnchorGrid)"
        )
    anchors = check_boxes(anchors, "anchors")
    gt_boxes = check_boxes(gt_boxes, "gt_boxes")
    if num_level_anchors is None:
        num_level_anchors = (anchors.shape[0],)  # one level: the assigner ignores levels
    if sum(num_level_anchors) != anchors.shape[0] or any(n < 0 for n in num_level_anchors):
        raise ValueError(
            f"num_level_anchors {list(num_level_anchors)} sums to {sum(num_level_anchors)} "
            f"but there are {anchors.shape[0]} anchors"
        )
    if is_mask_measure(measure):
        if gt_masks is None:
            raise ValueError(
                f"measure {measure!r} is mask-aware and needs gt_masks [G, H, W]; none were given"
            )
        gt_masks = check_mask_input(gt_masks, gt_boxes.shape[0])
        if gt_masks.device != anchors.device:
            raise ValueError(
                f"gt_masks is on {gt_masks.device} but anchors are on {anchors.device}; move them to one device"
            )
    check_same_device(anchors=anchors, gt_boxes=gt_boxes)
    # Half-precision boxes are assigned in float32 (see widened); the result keeps their dtype.
    return widened(anchors), num_level_anchors, widened(gt_boxes), gt_masks, anchors.dtype


def _all_negative(anchors: Tensor, dtype: torch.dtype) -> AssignResult:
    n = anchors.shape[0]
    return AssignResult(
        torch.full((n,), NEGATIVE, dtype=torch.long, device=anchors.device),
        anchors.new_zeros(n, dtype=dtype),
    )


class MaxIoUAssigner:
    """YOLACT's fixed-threshold assigner.

    An anchor whose best overlap is ``>= pos_iou`` is positive for that GT, ``< neg_iou``
    negative, in between ignored. Then every GT whose best overlap is ``>= min_pos_iou``
    also takes its best anchor (a later GT wins an anchor two GTs claim, as in YOLACT).

    ``max_overlaps`` is each anchor's best overlap over the GTs.
    """

    def __init__(
        self,
        pos_iou: float = 0.5,
        neg_iou: float = 0.4,
        min_pos_iou: float = 0.0,
        measure: str = "iou",
    ) -> None:
        if not neg_iou <= pos_iou:
            raise ValueError(f"neg_iou ({neg_iou}) must not exceed pos_iou ({pos_iou})")
        self.pos_iou, self.neg_iou, self.min_pos_iou = pos_iou, neg_iou, min_pos_iou
        self.measure = canonical_measure(measure)

    def __repr__(self) -> str:
        return (
            f"MaxIoUAssigner(pos_iou={self.pos_iou}, neg_iou={self.neg_iou}, "
            f"min_pos_iou={self.min_pos_iou}, measure={self.measure!r})"
        )

    def assign(
        self,
        anchors: Tensor | AnchorGrid,
        gt_boxes: Tensor,
        gt_masks: Tensor | MaskIntegrals | None = None,
        *deprecated: Tensor | MaskIntegrals | None,
        num_level_anchors: Sequence[int] | None = None,
    ) -> AssignResult:
        """Label ``[A, 4]`` anchors against ``[G, 4]`` GT boxes (and ``[G, H, W]`` masks if mask-aware).

        ``anchors`` is a tensor or an :class:`~gmaiou.anchors.AnchorGrid`. The rule does
        not use the levels: ``num_level_anchors`` is optional and, when given, only checked
        (it must sum to ``A``). ``deprecated`` takes the masks of the old argument order
        (see the module docstring).
        """
        gt_boxes, gt_masks, num_level_anchors = _arguments_in_order(
            "MaxIoUAssigner", gt_boxes, gt_masks, deprecated, num_level_anchors
        )
        anchors, num_level_anchors, gt_boxes, gt_masks, dtype = _check_assign_inputs(
            anchors, num_level_anchors, gt_boxes, gt_masks, self.measure, levels_required=False
        )
        num_gt, num_anchors = gt_boxes.shape[0], anchors.shape[0]
        if num_gt == 0 or num_anchors == 0:
            return _all_negative(anchors, dtype)
        overlaps = pairwise_overlaps(self.measure, gt_boxes, anchors, gt_masks)  # [G, A]
        max_overlaps, argmax = overlaps.max(dim=0)
        gt_inds = torch.full((num_anchors,), IGNORED, dtype=torch.long, device=anchors.device)
        gt_inds[max_overlaps < self.neg_iou] = NEGATIVE
        pos = max_overlaps >= self.pos_iou
        gt_inds[pos] = argmax[pos]

        # Each GT also takes its best anchor; where GTs share one, the later GT wins.
        gt_best, best_anchor = overlaps.max(dim=1)
        eligible = gt_best >= self.min_pos_iou
        if bool(eligible.any()):
            claim = torch.full((num_anchors,), -1, dtype=torch.long, device=anchors.device)
            gt_ids = torch.arange(num_gt, device=anchors.device)[eligible]
            claim = claim.scatter_reduce(0, best_anchor[eligible], gt_ids, reduce="amax")
            gt_inds = torch.where(claim >= 0, claim, gt_inds)
        return AssignResult(gt_inds, max_overlaps.to(dtype))


def _nearest(dist: Tensor, k: int) -> Tensor:
    """``[G, k]`` indices of the ``k`` smallest of each row of ``dist [G, n]``; ties at the k-th
    place go to the lowest index, so that CPU and CUDA choose the same anchors (``topk`` alone
    breaks ties differently on the two devices)."""
    if k >= dist.shape[1]:
        return dist.topk(k, dim=1, largest=False).indices
    values, idx = dist.topk(k + 1, dim=1, largest=False)
    tied = values[:, k - 1] == values[:, k]
    idx = idx[:, :k]
    if bool(tied.any()):
        idx = idx.clone()
        idx[tied] = torch.sort(dist[tied], dim=1, stable=True).indices[:, :k]
    return idx


class ATSSAssigner:
    """Adaptive Training Sample Selection (Zhang et al., CVPR 2020) with any overlap measure.

    For each GT: on every level, the ``topk`` anchors nearest by centre distance
    are candidates; the threshold is the mean plus the unbiased standard deviation
    of the candidates' overlaps; a candidate is positive if its overlap reaches the
    threshold and its centre lies inside the GT box (more than 0.01 from every side).
    An anchor positive for several GTs goes to the one it overlaps most.

    With a mask-aware measure only the candidates' overlaps are computed (``k``
    per level per GT), from integral images cropped to each mask.

    ``max_overlaps`` is, for a positive, its overlap with its GT; for any other
    anchor, its highest overlap among the GTs it was a candidate of (0 if none).
    """

    def __init__(self, topk: int = 9, measure: str = "gmaiou-mask") -> None:
        if isinstance(topk, bool) or not isinstance(topk, int) or topk < 1:
            raise ValueError(f"topk must be a positive integer, got {topk!r}")
        self.topk = topk
        self.measure = canonical_measure(measure)

    def __repr__(self) -> str:
        return f"ATSSAssigner(topk={self.topk}, measure={self.measure!r})"

    def _candidates(
        self, anchor_ctr: Tensor, gt_ctr: Tensor, num_level_anchors: Sequence[int]
    ) -> Tensor:
        """``[G, K]`` indices of each GT's candidates, ``K = sum_l min(topk, n_l)``."""
        # Squared distances written out: cheaper than cdist or a reduction over a dim of 2.
        dx = gt_ctr[:, 0:1] - anchor_ctr[None, :, 0]
        dy = gt_ctr[:, 1:2] - anchor_ctr[None, :, 1]
        dist = dx * dx + dy * dy  # [G, A]
        out, start = [], 0
        for n in num_level_anchors:
            if n:
                out.append(_nearest(dist[:, start : start + n], min(self.topk, n)) + start)
            start += n
        return torch.cat(out, dim=1)

    def _candidate_overlaps(
        self,
        cand: Tensor,
        anchors: Tensor,
        gt_boxes: Tensor,
        gt_masks: Tensor | MaskIntegrals | None,
    ) -> Tensor:
        """``[G, K]`` overlaps of each GT with its candidates."""
        if not is_mask_measure(self.measure):
            return box_overlaps(self.measure, gt_boxes, anchors).gather(1, cand)
        assert gt_masks is not None
        cand_boxes = anchors.index_select(0, cand.reshape(-1)).view(*cand.shape, 4)  # [G, K, 4]
        # Inputs were checked once in assign(): the unchecked entry point.
        return _grouped_gmaiou(gt_boxes, gt_masks, cand_boxes, polygon_of(self.measure))

    def assign(
        self,
        anchors: Tensor | AnchorGrid,
        gt_boxes: Tensor,
        gt_masks: Tensor | MaskIntegrals | None = None,
        *deprecated: Tensor | MaskIntegrals | None,
        num_level_anchors: Sequence[int] | None = None,
    ) -> AssignResult:
        """Label ``[A, 4]`` anchors against ``[G, 4]`` GT boxes (and ``[G, H, W]`` masks if mask-aware).

        ``num_level_anchors`` gives how many of the anchors, in order, belong to each level:
        required with an anchors tensor, left out with an :class:`~gmaiou.anchors.AnchorGrid`
        (``assign(grid, gt_boxes, gt_masks)``). ``deprecated`` takes the masks of the old
        argument order (see the module docstring).
        """
        gt_boxes, gt_masks, num_level_anchors = _arguments_in_order(
            "ATSSAssigner", gt_boxes, gt_masks, deprecated, num_level_anchors
        )
        anchors, num_level_anchors, gt_boxes, gt_masks, dtype = _check_assign_inputs(
            anchors, num_level_anchors, gt_boxes, gt_masks, self.measure
        )
        num_gt, num_anchors = gt_boxes.shape[0], anchors.shape[0]
        if num_gt == 0 or num_anchors == 0:
            return _all_negative(anchors, dtype)

        anchor_ctr = (anchors[:, :2] + anchors[:, 2:]) / 2
        gt_ctr = (gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2
        cand = self._candidates(anchor_ctr, gt_ctr, num_level_anchors)  # [G, K]
        cand_ov = self._candidate_overlaps(cand, anchors, gt_boxes, gt_masks)  # [G, K]

        k = cand_ov.shape[1]
        std = cand_ov.std(dim=1, correction=1) if k > 1 else torch.zeros_like(cand_ov[:, 0])
        threshold = cand_ov.mean(dim=1) + std
        is_pos = cand_ov >= threshold[:, None]

        c = anchor_ctr.index_select(0, cand.reshape(-1)).view(num_gt, k, 2)
        left, top = c[..., 0] - gt_boxes[:, 0:1], c[..., 1] - gt_boxes[:, 1:2]
        right, bottom = gt_boxes[:, 2:3] - c[..., 0], gt_boxes[:, 3:4] - c[..., 1]
        is_pos &= torch.minimum(torch.minimum(left, top), torch.minimum(right, bottom)) > 0.01

        # An anchor positive for several GTs goes to the highest overlap (lowest GT index on ties).
        pos_g, pos_k = is_pos.nonzero(as_tuple=True)
        pos_a, pos_v = cand[pos_g, pos_k], cand_ov[pos_g, pos_k]
        neg_inf = torch.finfo(cand_ov.dtype).min
        best = cand_ov.new_full((num_anchors,), neg_inf).scatter_reduce(
            0, pos_a, pos_v, reduce="amax"
        )
        wins = pos_v == best[pos_a]
        best_gt = torch.full((num_anchors,), num_gt, dtype=torch.long, device=anchors.device)
        best_gt = best_gt.scatter_reduce(0, pos_a[wins], pos_g[wins], reduce="amin")
        positive = best_gt < num_gt
        gt_inds = torch.where(positive, best_gt, torch.full_like(best_gt, NEGATIVE))

        seen = cand_ov.new_full((num_anchors,), neg_inf).scatter_reduce(
            0, cand.reshape(-1), cand_ov.reshape(-1), reduce="amax"
        )
        seen = torch.where(seen > neg_inf, seen, torch.zeros_like(seen))
        max_overlaps = torch.where(positive, best, seen)
        return AssignResult(gt_inds, max_overlaps.to(dtype))
