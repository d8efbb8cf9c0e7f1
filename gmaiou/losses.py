"""Loss terms of YOLACT and GmaYOLACT, as pure functions of predictions and targets.

YOLACT (Bolya et al., ICCV 2019): softmax cross-entropy with online hard negative mining
(3 negatives per positive), SmoothL1 on coded boxes (:func:`torch.nn.functional.smooth_l1_loss`),
a per-instance mask BCE inside the GT box normalised by the box area, and a semantic
segmentation BCE.

GmaYOLACT: the Rank & Sort loss (Oksuz et al., ICCV 2021) for classification, a Dice
mask loss, and self-balancing of the other heads (:func:`self_balance`). The box term
is torchvision's :func:`~torchvision.ops.generalized_box_iou_loss`.

The assembly (assignment, targets, weights) is :meth:`gmaiou.models.YOLACT.loss`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "dice_coefficient",
    "mask_bce_loss",
    "ohem_cross_entropy",
    "rank_sort_loss",
    "self_balance",
    "semantic_loss",
]


def ohem_cross_entropy(
    logits: Tensor, labels: Tensor, pos_mask: Tensor, neg_mask: Tensor, neg_pos_ratio: float = 3.0
) -> Tensor:
    """Softmax cross-entropy over the positives and the hardest negatives, per image.

    Negatives are ranked by their background loss (the cross-entropy with target 0) and
    the top ``neg_pos_ratio x`` (the image's positives) are kept. The sum is divided by
    the number of positives in the batch (at least 1).

    Args:
        logits: ``[B, A, K]`` with the background at index 0.
        labels: ``[B, A]`` int64 targets in ``[0, K)`` (0 = background); read where
            ``pos_mask`` or ``neg_mask`` holds.
        pos_mask, neg_mask: ``[B, A]`` bool, disjoint; anchors in neither are ignored.

    Returns:
        Scalar loss.
    """
    if logits.dim() != 3 or labels.shape != logits.shape[:2]:
        raise ValueError(
            f"logits [B, A, K] and labels [B, A] expected, got {list(logits.shape)} and {list(labels.shape)}"
        )
    if bool((pos_mask & neg_mask).any()):
        raise ValueError("pos_mask and neg_mask overlap; an anchor is either positive or negative")
    b, a, k = logits.shape
    targets = torch.where(pos_mask, labels, torch.zeros_like(labels))
    ce = F.cross_entropy(logits.reshape(-1, k).float(), targets.reshape(-1), reduction="none").view(
        b, a
    )
    num_pos = pos_mask.sum(dim=1)
    num_neg = torch.minimum((num_pos.float() * neg_pos_ratio).floor().long(), neg_mask.sum(dim=1))
    # Rank every negative by its loss within its image (YOLACT's double-sort trick).
    neg_loss = torch.where(neg_mask, ce.detach(), torch.full_like(ce, -1.0))
    order = neg_loss.argsort(dim=1, descending=True)
    rank = order.argsort(dim=1)
    hard_neg = neg_mask & (rank < num_neg[:, None])
    total = (ce * (pos_mask | hard_neg)).sum()
    return total / num_pos.sum().clamp(min=1)


def mask_bce_loss(mask_logits: Tensor, targets: Tensor, crops: Tensor, box_areas: Tensor) -> Tensor:
    """Per-instance mask BCE inside its crop, divided by its GT box area (YOLACT).

    Args:
        mask_logits: ``[N, H, W]`` logits of the assembled masks (``protos @ coeffs``).
        targets: ``[N, H, W]`` binary targets at the same resolution.
        crops: ``[N, H, W]`` bool, the pixels inside each GT box (padded).
        box_areas: ``[N]`` GT box areas in the same pixel units (clamped to at least 1).

    Returns:
        ``[N]`` losses; the caller sums them and divides by the number of masks.
    """
    bce = F.binary_cross_entropy_with_logits(mask_logits.float(), targets.float(), reduction="none")
    return (bce * crops).sum(dim=(1, 2)) / box_areas.float().clamp(min=1.0)


def semantic_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Per-class, per-pixel BCE with logits, summed and divided by ``B x H x W``.

    Args:
        logits: ``[B, C, H, W]`` semantic head output.
        targets: ``[B, C, H, W]`` binary: pixel inside some instance of that class.
    """
    if logits.shape != targets.shape:
        raise ValueError(
            f"logits {list(logits.shape)} and targets {list(targets.shape)} differ in shape"
        )
    b, _, h, w = logits.shape
    bce = F.binary_cross_entropy_with_logits(logits.float(), targets.float(), reduction="sum")
    return bce / max(b * h * w, 1)


def dice_coefficient(probs: Tensor, targets: Tensor, eps: float = 1e-5) -> Tensor:
    """Soft Dice ``2 Σ p t / (Σ p² + Σ t² + eps)`` of ``[N, H, W]`` maps; ``[N]``."""
    p, t = probs.flatten(1).float(), targets.flatten(1).float()
    return 2 * (p * t).sum(1) / ((p * p).sum(1) + (t * t).sum(1) + eps)


def self_balance(loss: Tensor, reference: Tensor, eps: float = 1e-12) -> Tensor:
    """``loss`` rescaled to ``reference``'s value, with gradients still ``∝ ∇ loss`` (RS loss's self-balancing)."""
    return loss * (reference.detach() / loss.detach().clamp(min=eps))


#: Below this, a positive has no false positive (or no mis-sorted positive) to pass its error to.
_RS_EPS = 1e-10


def _working_dtype(logits: Tensor) -> torch.dtype:
    """float64 stays float64; every other float dtype is computed in float32."""
    return torch.float64 if logits.dtype == torch.float64 else torch.float32


class _RankSort(torch.autograd.Function):
    """Rank & Sort loss with its identity-update gradients (Oksuz et al., ICCV 2021, Alg. 1).

    For a positive ``i`` with logit ``s_i`` and continuous target ``y_i`` (the IoU of its
    prediction), with the smoothed step ``H(x) = clamp(x / 2δ + 0.5, 0, 1)``:

    * ``rank⁺(i) = Σ_{k∈P} H(s_k - s_i)``, ``N_FP(i) = Σ_{j∈N} H(s_j - s_i)``, ``rank = rank⁺ + N_FP``;
    * ranking error ``N_FP / rank`` (its target is 0);
    * sorting error: ``Σ_{k∈P} H(s_k - s_i)(1 - y_k) / rank⁺`` minus the same sum over the
      positives with ``y_k >= y_i`` (the error of the target order).

    Gradients: each error is pulled from ``i`` and distributed over the examples causing it
    (negatives ranked above, in proportion ``H``; positives with lower ``y`` ranked above);
    everything is divided by ``|P|``.

    ``H`` is piecewise linear, so the sums over the negatives need no ``[P, N]`` matrix. The
    ``2|P|`` band edges ``s_i ± δ``, sorted, cut the line into ``2|P| + 1`` bins; each negative
    falls in one bin (``searchsorted``), and per bin its count and logit sum are accumulated.
    For a positive, the bins between its two edges hold the negatives with ``H`` linear in
    ``s_j`` (count and sum give ``Σ H``), the bins above its upper edge those with ``H = 1``.
    Backward, a negative's gradient ``Σ_i H(s_j - s_i) w_i`` is linear in ``s_j`` within a bin:
    the positives whose upper edge lies below the bin add ``w_i``, those whose band covers it
    ``w_i H``; prefix sums of ``w_i`` and ``w_i s_i`` over the edges give each bin's line.
    The sums over pairs of positives (the sorting error orders them by ``s`` and by ``y``)
    use ``[rows, P]`` matrices. Bin sums are accumulated in float64.
    """

    @staticmethod
    def forward(
        ctx,
        logits: Tensor,
        targets: Tensor,
        positive: Tensor,
        negative: Tensor,
        delta: float,
        chunk_elements: int,
    ):
        # The one host synchronisation: the number of positives sizes the [P] and [rows, P] work.
        pos_idx = positive.nonzero().squeeze(1)
        num_pos = pos_idx.numel()
        if num_pos == 0:
            ctx.save_for_backward(torch.zeros_like(logits))
            components = logits.new_zeros(2)
            ctx.mark_non_differentiable(components)
            return logits.new_zeros(()), components
        acc = torch.float64
        s, y = logits[pos_idx], targets[pos_idx]  # [P]
        s64 = s.to(acc)
        two_delta = 2.0 * delta

        # Negatives per bin of the sorted band edges: bin_j = #(edges <= s_j), so for an edge e,
        # s_j >= e exactly when bin_j >= #(edges <= e), which is at least 1. Bin 0 lies below
        # every band: it also takes everything that is not a negative, and is never read.
        num_bins = 2 * num_pos + 1
        edges = torch.cat([s - delta, s + delta]).sort().values  # [2P]
        negatives = torch.where(negative, logits, float("-inf"))
        bins = torch.searchsorted(edges, negatives, right=True, out_int32=True)  # [M] in [0, 2P]
        lo = torch.searchsorted(edges, s - delta, right=True)  # [P] first bin of the band
        hi = torch.searchsorted(edges, s + delta, right=True)  # [P] first bin above it
        count = logits.new_zeros(num_bins, dtype=acc)
        count.index_add_(0, bins, count.new_ones(1).expand(bins.numel()))
        total = logits.new_zeros(num_bins, dtype=acc).index_add_(0, bins, negatives.to(acc))
        count[0] = total[0] = 0
        cum_count, cum_total = F.pad(count.cumsum(0), (1, 0)), F.pad(total.cumsum(0), (1, 0))
        n_band = cum_count[hi] - cum_count[lo]  # cum_*[k]: over the bins < k
        n_above = cum_count[num_bins] - cum_count[hi]
        fp_num = n_above + (cum_total[hi] - cum_total[lo] - n_band * s64) / two_delta + 0.5 * n_band

        # Pairs of positives, in [rows, P] blocks: H(s_k - s_i) at [i, k].
        dtype = logits.dtype
        rank_pos = torch.empty_like(s)
        sorting_error = torch.empty_like(s)
        fg_grad = torch.zeros_like(s)
        rows = max(1, chunk_elements // num_pos)
        for start in range(0, num_pos, rows):
            sl = slice(start, min(start + rows, num_pos))
            h = ((s[None, :] - s[sl, None]) / two_delta + 0.5).clamp(0, 1)  # [c, P]
            at_least = y[None, :] >= y[sl, None]  # target order: higher IoU first
            rank_pos[sl] = h.sum(1)
            current_sort = (h * (1 - y[None, :])).sum(1) / rank_pos[sl]
            target_rel = h * at_least
            target_sort = (target_rel * (1 - y[None, :])).sum(1) / target_rel.sum(1)
            sort_err = current_sort - target_sort
            sorting_error[sl] = sort_err
            missorted = h * (~at_least)
            denom = missorted.sum(1)
            has_ms = denom > _RS_EPS
            fg_grad[sl] -= torch.where(has_ms, sort_err, torch.zeros_like(sort_err))
            share = torch.where(
                has_ms, sort_err / denom.clamp(min=_RS_EPS), torch.zeros_like(sort_err)
            )
            fg_grad += (missorted * share[:, None]).sum(0)

        rank = rank_pos.to(acc) + fp_num
        ranking_error = fp_num / rank
        has_fp = fp_num > _RS_EPS
        fg_grad -= torch.where(has_fp, ranking_error, torch.zeros_like(ranking_error)).to(dtype)
        weight = torch.where(
            has_fp, ranking_error / fp_num.clamp(min=_RS_EPS), torch.zeros_like(ranking_error)
        )  # [P] share of N_FP(i) per unit of H

        # Each negative's gradient is a line in s_j per bin: w_i for the positives whose upper
        # edge lies at or below the bin, w_i H(s_j - s_i) for those whose band holds it.
        below = s64.new_zeros(num_bins).index_add_(0, hi, weight).cumsum(0)
        band_w = s64.new_zeros(num_bins).index_add_(0, lo, weight).index_add_(0, hi, -weight)
        band_ws = (
            s64.new_zeros(num_bins).index_add_(0, lo, weight * s64).index_add_(0, hi, -weight * s64)
        )
        band_w, band_ws = band_w.cumsum(0), band_ws.cumsum(0)
        # Centred at the bin's lower edge, so that the float32 evaluation does not cancel. Bin 0
        # (below every band, and everything that is not a negative) has the zero line.
        left = torch.cat([edges[:1], edges]).to(acc)  # [2P + 1]
        at_left = below + (band_w * left - band_ws) / two_delta + 0.5 * band_w
        at_left, slope = at_left / num_pos, band_w / (two_delta * num_pos)
        at_left[0] = slope[0] = 0
        offset = logits - left.to(dtype).index_select(0, bins)  # [M]
        grads = at_left.to(dtype).index_select(0, bins)
        grads.addcmul_(slope.to(dtype).index_select(0, bins), offset)
        grads[pos_idx] = fg_grad / num_pos
        ctx.save_for_backward(grads)
        components = torch.stack([ranking_error.to(dtype).mean(), sorting_error.mean()])
        ctx.mark_non_differentiable(components)
        return components.sum(), components

    @staticmethod
    def backward(ctx, grad_loss: Tensor, grad_components: Tensor):
        (grads,) = ctx.saved_tensors
        return grads * grad_loss, None, None, None, None, None


class _RankSortLoopReference(torch.autograd.Function):
    """The Rank & Sort loss of :class:`_RankSort` computed positive by positive (chunks of rows).

    Kept as the reference of the tests and of ``gmaiou-paper bench rsloss``: ``[rows, P + N]``
    matrices, a Python pass per chunk (one per positive at COCO scale). Not used in training.
    """

    @staticmethod
    def forward(
        ctx, logits: Tensor, targets: Tensor, positive: Tensor, delta: float, chunk_elements: int
    ):
        fg_logits, fg_targets = logits[positive], targets[positive]
        num_pos = fg_logits.numel()
        grads = torch.zeros_like(logits)
        zero = logits.new_zeros(())
        if num_pos == 0:
            ctx.save_for_backward(grads)
            components = logits.new_zeros(2)
            ctx.mark_non_differentiable(components)
            return zero, components
        relevant_bg = (~positive) & (logits >= fg_logits.min() - delta)
        bg_logits = logits[relevant_bg]
        fg_grad = torch.zeros_like(fg_logits)
        bg_grad = torch.zeros_like(bg_logits)
        ranking_error = torch.zeros_like(fg_logits)
        sorting_error = torch.zeros_like(fg_logits)
        step = max(1, chunk_elements // (num_pos + bg_logits.numel()))
        eps = _RS_EPS
        for start in range(0, num_pos, step):
            sl = slice(start, min(start + step, num_pos))
            s = fg_logits[sl, None]
            fg_rel = ((fg_logits[None, :] - s) / (2 * delta) + 0.5).clamp(0, 1)  # [c, P]
            bg_rel = ((bg_logits[None, :] - s) / (2 * delta) + 0.5).clamp(0, 1)  # [c, N]
            rank_pos = fg_rel.sum(1)
            fp_num = bg_rel.sum(1)
            rank_err = fp_num / (rank_pos + fp_num)
            current_sort = (fg_rel * (1 - fg_targets[None, :])).sum(1) / rank_pos
            at_least = fg_targets[None, :] >= fg_targets[sl, None]  # target order: higher IoU first
            target_rel = fg_rel * at_least
            target_sort = (target_rel * (1 - fg_targets[None, :])).sum(1) / target_rel.sum(1)
            sort_err = current_sort - target_sort
            ranking_error[sl], sorting_error[sl] = rank_err, sort_err

            has_fp = fp_num > eps
            fg_grad[sl] -= torch.where(has_fp, rank_err, torch.zeros_like(rank_err))
            share = torch.where(
                has_fp, rank_err / fp_num.clamp(min=eps), torch.zeros_like(rank_err)
            )
            bg_grad += (bg_rel * share[:, None]).sum(0)

            missorted = fg_rel * (~at_least)
            denom = missorted.sum(1)
            has_ms = denom > eps
            fg_grad[sl] -= torch.where(has_ms, sort_err, torch.zeros_like(sort_err))
            share = torch.where(has_ms, sort_err / denom.clamp(min=eps), torch.zeros_like(sort_err))
            fg_grad += (missorted * share[:, None]).sum(0)
        grads[positive] = fg_grad / num_pos
        grads[relevant_bg] = bg_grad / num_pos
        ctx.save_for_backward(grads)
        components = torch.stack([ranking_error.mean(), sorting_error.mean()])
        ctx.mark_non_differentiable(components)
        return components.sum(), components

    @staticmethod
    def backward(ctx, grad_loss: Tensor, grad_components: Tensor):
        (grads,) = ctx.saved_tensors
        return grads * grad_loss, None, None, None, None


def _check_rank_sort_inputs(
    logits: Tensor, targets: Tensor, positive: Tensor, delta: float, valid: Tensor | None
) -> None:
    shapes = [logits.shape, targets.shape, positive.shape]
    if valid is not None:
        shapes.append(valid.shape)
    if logits.dim() != 1 or any(shape != logits.shape for shape in shapes):
        raise ValueError(
            "logits, targets, positive (and valid) must be 1-D of one length, got "
            + ", ".join(str(list(shape)) for shape in shapes)
        )
    if delta <= 0:
        raise ValueError(f"delta must be positive, got {delta}")


def rank_sort_loss(
    logits: Tensor,
    targets: Tensor,
    positive: Tensor,
    delta: float = 0.5,
    chunk_elements: int = 1 << 23,
    valid: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Rank & Sort loss over flattened per-class logits.

    Time ``O(M log P + P²)``, memory ``O(M)`` plus ``[rows, P]`` blocks of at most
    ``chunk_elements`` (no ``[P, N]`` matrix, no pass per positive); one host
    synchronisation counts the positives.

    Args:
        logits: ``[M]`` sigmoid logits (anchor x class pairs).
        targets: ``[M]`` sorting targets in [0, 1] (the positives' IoUs; read at positives).
        positive: ``[M]`` bool, the positive anchor-class pairs; all other valid pairs are negatives.
        delta: smoothing of the step function (RS loss: 0.5).
        chunk_elements: bound on the ``[rows, P]`` matrices of the pairs of positives.
        valid: ``[M]`` bool, the pairs that take part (default: all); the others (ignored
            anchors) are neither positive nor negative and get no gradient.

    Returns:
        ``(loss, ranking, sorting)``: ``loss = ranking + sorting`` carries the gradient;
        ``ranking`` and ``sorting`` are detached components. Zero (with zero gradient)
        when there is no positive. Computed in float32 (in float64 for float64 logits).
    """
    _check_rank_sort_inputs(logits, targets, positive, delta, valid)
    dtype = _working_dtype(logits)
    positive = positive.bool()
    negative = ~positive
    if valid is not None:
        valid = valid.bool()
        positive, negative = positive & valid, negative & valid
    loss, components = _RankSort.apply(
        logits.to(dtype),
        targets.to(dtype).detach(),
        positive,
        negative,
        float(delta),
        int(chunk_elements),
    )
    return loss, components[0], components[1]


def _rank_sort_loss_loop_reference(
    logits: Tensor,
    targets: Tensor,
    positive: Tensor,
    delta: float = 0.5,
    chunk_elements: int = 1 << 23,
) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`rank_sort_loss` by the positive-by-positive loop (the reference; slow at COCO scale)."""
    _check_rank_sort_inputs(logits, targets, positive, delta, None)
    dtype = _working_dtype(logits)
    loss, components = _RankSortLoopReference.apply(
        logits.to(dtype),
        targets.to(dtype).detach(),
        positive.bool(),
        float(delta),
        int(chunk_elements),
    )
    return loss, components[0], components[1]
