"""Loss terms of YOLACT and GmaYOLACT, as pure functions of predictions and targets.

YOLACT (Bolya et al., ICCV 2019): softmax cross-entropy with online hard negative mining
(3 negatives per positive), SmoothL1 on coded boxes (:func:`torch.nn.functional.smooth_l1_loss`),
a per-instance mask BCE inside the GT box normalised by the box area, and a semantic
segmentation BCE.

GmaYOLACT: the Rank & Sort loss (Oksuz et al., ICCV 2021) for classification, a Dice
mask loss, and self-balancing of the other heads (:func:`self_balance`). The box term
is the GIoU loss (the arithmetic of :func:`~torchvision.ops.generalized_box_iou_loss`).

The assembly (assignment, targets, weights) is :meth:`gmaiou.models.YOLACT.loss`; after the
assignment it keeps every shape fixed off the CPU (no host-device synchronisation): OHEM ranks
the negatives on the device, and :func:`rank_sort_loss` takes ``max_positives``.
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
    if bool((pos_mask & neg_mask).any()):  # a host synchronisation: the model skips it
        raise ValueError("pos_mask and neg_mask overlap; an anchor is either positive or negative")
    return _ohem_cross_entropy(logits, labels, pos_mask, neg_mask, neg_pos_ratio)


def _ohem_cross_entropy(
    logits: Tensor, labels: Tensor, pos_mask: Tensor, neg_mask: Tensor, neg_pos_ratio: float
) -> Tensor:
    """:func:`ohem_cross_entropy` without its checks: fixed shapes, no host synchronisation
    (the number of hard negatives stays on the device, as a bound on each negative's rank)."""
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


class _DominanceSums:
    """Sums of per-point values over the points below a position and below a rank.

    Points ``k = 0..N-1`` have a ``position`` and a ``rank``, each a permutation of ``0..N-1``;
    :meth:`sums` adds ``values[k]`` over ``position[k] < L`` and ``rank[k] < t`` for each query
    ``(L, t)``. A merge-sort tree in fixed shapes (as a wavelet tree): level ``l`` cuts the
    positions into nodes of ``2^l`` and holds the points sorted by (node, rank), with the
    running count of the points that go to the lower child. A query walks from the root to
    position ``L``: it knows how many points of its node have a rank below ``t`` (``t`` at the
    root), the running counts say how many of them lie in the lower child, and where ``L``
    goes to the upper child the lower one lies wholly below ``L``: its points with a rank
    below ``t`` are the first ones of its run, a difference of prefix sums. ``O(N log² N)``
    to build, ``O(log N)`` gathers a query, no search and no data-dependent shape.
    """

    def __init__(self, position: Tensor, rank: Tensor) -> None:
        n = position.numel()
        self.n, self.top = n, n.bit_length()  # 2^top > N: the root holds every position
        self.order, self.lower = [], [None]
        for level in range(self.top + 1):
            order = ((position >> level) * n + rank).argsort()
            self.order.append(order)
            if level:  # running count, in this level's order, of the points in lower children
                goes_lower = ((position[order] >> (level - 1)) & 1) == 0
                self.lower.append(F.pad(goes_lower.cumsum(0), (1, 0)))

    def sums(self, values: Tensor, below: Tensor, rank_below: Tensor) -> Tensor:
        """``[Q, C]``: ``values [N, C]`` summed over the points with a position below
        ``below [Q]`` (in ``[0, N]``) and a rank below ``rank_below [Q]`` (in ``[0, N]``)."""
        n = self.n
        out = values.new_zeros(below.shape[0], values.shape[1])
        node = torch.zeros_like(below)
        count = rank_below  # the node's points with a rank below the query's
        for level in range(self.top, 0, -1):
            start = (node << level).clamp(
                max=n
            )  # where the node's run (and its lower child's) starts
            lower = self.lower[level]
            count_lower = lower[start + count] - lower[start]
            prefix = F.pad(values[self.order[level - 1]].cumsum(0), (0, 0, 1, 0))
            upper = ((below >> (level - 1)) & 1) == 1
            lower_sum = prefix.index_select(0, start + count_lower) - prefix.index_select(0, start)
            out += torch.where(upper[:, None], lower_sum, 0)
            node = 2 * node + upper
            count = torch.where(upper, count - count_lower, count_lower)
        return out


class _RankSortSlots(torch.autograd.Function):
    """:class:`_RankSort` in fixed shapes: no host synchronisation.

    The positives fill a static number of slots (the ``k``-th positive, row-major, in slot
    ``k``; the slots past their count are empty and weigh nothing), so nothing is sized by the
    number of positives. The sums over negatives are :class:`_RankSort`'s, over the slots' band
    edges (an empty slot's at ``+inf``). The sums over pairs of positives, instead of
    ``[rows, P]`` blocks: ``H`` is piecewise linear in the logits, so a sum of ``H``-weighted
    terms over the positives is one of counts, weights and weighted logits over ranges of the
    positives ordered by logit (prefix sums), and over those with a target at least (or above)
    ``y_i`` as well, a sum over a position range and a rank range (:class:`_DominanceSums`);
    accumulated in float64, the missorted positives counted exactly.
    ``O(M log S + S log² S)`` for ``M`` pairs and ``S`` slots.
    """

    @staticmethod
    def forward(
        ctx,
        logits: Tensor,
        targets: Tensor,
        positive: Tensor,
        negative: Tensor,
        delta: float,
        slots: int,
    ):
        m, dtype, acc = logits.numel(), logits.dtype, torch.float64
        if m == 0:
            ctx.save_for_backward(torch.zeros_like(logits))
            components = logits.new_zeros(2)
            ctx.mark_non_differentiable(components)
            return logits.new_zeros(()), components
        slot = torch.arange(slots, device=logits.device)
        count = positive.cumsum(0)
        num_pos = count[-1]
        torch._assert_async(num_pos <= slots, "rank_sort_loss: more positives than max_positives")
        index = torch.searchsorted(count, slot + 1).clamp(max=m - 1)  # the k-th positive
        filled = slot < num_pos
        s = torch.where(filled, logits[index], 0)
        y = torch.where(filled, targets[index], 0)
        s64, y64 = s.to(acc), y.to(acc)
        num = num_pos.clamp(min=1).to(acc)
        two_delta = 2.0 * delta

        # Negatives per bin of the sorted band edges, as in _RankSort.
        num_bins = 2 * slots + 1
        inf = torch.full_like(s, float("inf"))
        edges = (
            torch.cat([torch.where(filled, s - delta, inf), torch.where(filled, s + delta, inf)])
            .sort()
            .values
        )  # [2S], the empty slots' last
        negatives = torch.where(negative, logits, float("-inf"))
        bins = torch.searchsorted(edges, negatives, right=True, out_int32=True)  # [M]
        lo = torch.searchsorted(edges, s - delta, right=True)
        hi = torch.searchsorted(edges, s + delta, right=True)
        bin_count = logits.new_zeros(num_bins, dtype=acc)
        bin_count.index_add_(0, bins, bin_count.new_ones(1).expand(bins.numel()))
        total = logits.new_zeros(num_bins, dtype=acc).index_add_(0, bins, negatives.to(acc))
        # Bin 0 zeroed in place: assigning a Python 0 would copy it from the host.
        bin_count[:1].zero_()
        total[:1].zero_()
        cum_count = F.pad(bin_count.cumsum(0), (1, 0))
        cum_total = F.pad(total.cumsum(0), (1, 0))
        n_band = cum_count[hi] - cum_count[lo]
        n_above = cum_count[num_bins] - cum_count[hi]
        fp_num = n_above + (cum_total[hi] - cum_total[lo] - n_band * s64) / two_delta + 0.5 * n_band

        # Pairs of positives. Positions: by target, highest first (the empty slots last); ranks:
        # by logit. Only the filled slots carry values.
        y_key = torch.where(filled, -y, inf)
        order_y = y_key.argsort(stable=True)
        order_s = s.argsort(stable=True)
        y_sorted, s_sorted = y_key[order_y], s[order_s]
        tree = _DominanceSums(
            torch.empty_like(slot).scatter_(0, order_y, slot),
            torch.empty_like(slot).scatter_(0, order_s, slot),
        )
        at_least = torch.searchsorted(y_sorted, -y, right=True)  # the positions of y_k >= y_i
        above = torch.searchsorted(y_sorted, -y)  # the positions of y_k > y_i
        # H(s_k - s_i) is 0 at the ranks below band_lo (s_k <= s_i - δ), linear up to band_hi, then 1.
        band_lo = torch.searchsorted(s_sorted, s - delta, right=True)
        band_hi = torch.searchsorted(s_sorted, s + delta)
        thresholds = torch.cat([band_lo, band_hi])

        def h_sum(lo: Tensor, hi: Tensor, total: Tensor) -> Tensor:
            """``Σ_k H(s_k - s_i) w_k`` from the sums of ``w`` and ``w s`` (channels 0, 1) over
            the ranks below band_lo, below band_hi, and all."""
            band, band_s = hi[:, 0] - lo[:, 0], hi[:, 1] - lo[:, 1]
            return total[..., 0] - hi[:, 0] + (band_s - s64 * band) / two_delta + 0.5 * band

        # Channels (1, s, 1 - y, (1 - y) s): over every positive (prefix sums by logit), and over
        # those with y_k >= y_i (the tree; all ranks: prefix sums by target).
        values = torch.stack([torch.ones_like(s64), s64, 1 - y64, (1 - y64) * s64], dim=1)
        values = values * filled[:, None]
        by_rank = F.pad(values[order_s].cumsum(0), (0, 0, 1, 0))
        all_lo, all_hi, all_total = by_rank[band_lo], by_rank[band_hi], by_rank[-1]
        tops = tree.sums(values, at_least.repeat(2), thresholds).view(2, slots, 4)
        top_total = F.pad(values[order_y].cumsum(0), (0, 0, 1, 0))[at_least]
        rank_pos = h_sum(all_lo, all_hi, all_total)  # at least H(0) = 1/2 in a filled slot
        current_sort = h_sum(all_lo[:, 2:], all_hi[:, 2:], all_total[2:]) / rank_pos
        target_rel = h_sum(tops[0], tops[1], top_total)
        target_sort = h_sum(tops[0, :, 2:], tops[1, :, 2:], top_total[:, 2:]) / target_rel
        sorting_error = torch.where(filled, current_sort - target_sort, 0)
        # The missorted: a lower target and a logit above s_i - δ; counted exactly.
        missorted = all_total[0] - all_lo[:, 0] - (top_total[:, 0] - tops[0, :, 0])
        denom = rank_pos - target_rel
        has_ms = filled & (missorted > 0) & (denom > _RS_EPS)
        fg_grad = -torch.where(has_ms, sorting_error, 0)
        share = torch.where(has_ms, sorting_error / denom.clamp(min=_RS_EPS), 0)
        # What the positives with a higher target pass to each positive k above them: in s_i,
        # H(s_k - s_i) is 1 at the ranks below band_lo, linear up to band_hi, then 0.
        passed = tree.sums(torch.stack([share, share * s64], dim=1), above.repeat(2), thresholds)
        lo_sums, hi_sums = passed.view(2, slots, 2)
        band, band_s = hi_sums[:, 0] - lo_sums[:, 0], hi_sums[:, 1] - lo_sums[:, 1]
        received = lo_sums[:, 0] + (s64 * band - band_s) / two_delta + 0.5 * band
        fg_grad += torch.where(filled, received, 0)

        ranking_error = torch.where(filled, fp_num / (rank_pos + fp_num), 0)
        has_fp = filled & (fp_num > _RS_EPS)
        fg_grad -= torch.where(has_fp, ranking_error, 0)
        weight = torch.where(has_fp, ranking_error / fp_num.clamp(min=_RS_EPS), 0)

        # The negatives' gradients, as in _RankSort (the empty slots weigh 0).
        below = s64.new_zeros(num_bins).index_add_(0, hi, weight).cumsum(0)
        band_w = s64.new_zeros(num_bins).index_add_(0, lo, weight).index_add_(0, hi, -weight)
        band_ws = (
            s64.new_zeros(num_bins).index_add_(0, lo, weight * s64).index_add_(0, hi, -weight * s64)
        )
        band_w, band_ws = band_w.cumsum(0), band_ws.cumsum(0)
        left = torch.cat([edges[:1], edges]).to(acc)
        left = torch.where(left.isfinite(), left, 0)  # the bins past the filled slots' edges
        at_left = below + (band_w * left - band_ws) / two_delta + 0.5 * band_w
        at_left, slope = at_left / num, band_w / (two_delta * num)
        at_left[:1].zero_()
        slope[:1].zero_()
        offset = logits - left.to(dtype).index_select(0, bins)
        grads = at_left.to(dtype).index_select(0, bins)
        grads.addcmul_(slope.to(dtype).index_select(0, bins), offset)
        grads.index_add_(0, index, torch.where(filled, fg_grad / num, 0).to(dtype))
        ctx.save_for_backward(grads)
        components = torch.stack([ranking_error.sum() / num, sorting_error.sum() / num]).to(dtype)
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
    max_positives: int | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Rank & Sort loss over flattened per-class logits.

    Time ``O(M log P + P²)``, memory ``O(M)`` plus ``[rows, P]`` blocks of at most
    ``chunk_elements`` (no ``[P, N]`` matrix, no pass per positive); one host
    synchronisation counts the positives. With ``max_positives``, none: the positives fill
    that many slots (fixed shapes, ``O(M log S + S log² S)`` for ``S`` slots), and
    ``chunk_elements`` is not used.

    Args:
        logits: ``[M]`` sigmoid logits (anchor x class pairs).
        targets: ``[M]`` sorting targets in [0, 1] (the positives' IoUs; read at positives).
        positive: ``[M]`` bool, the positive anchor-class pairs; all other valid pairs are negatives.
        delta: smoothing of the step function (RS loss: 0.5).
        chunk_elements: bound on the ``[rows, P]`` matrices of the pairs of positives.
        valid: ``[M]`` bool, the pairs that take part (default: all); the others (ignored
            anchors) are neither positive nor negative and get no gradient.
        max_positives: a bound on the number of positive pairs (for instance the anchors, where
            each anchor has at most one positive class). More positives than that are an
            error, raised on the CPU and by a device-side assertion elsewhere.

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
    if max_positives is not None:
        if (
            isinstance(max_positives, bool)
            or not isinstance(max_positives, int)
            or max_positives < 1
        ):
            raise ValueError(f"max_positives must be a positive integer, got {max_positives!r}")
        loss, components = _RankSortSlots.apply(
            logits.to(dtype),
            targets.to(dtype).detach(),
            positive,
            negative,
            float(delta),
            min(max_positives, logits.numel()),
        )
        return loss, components[0], components[1]
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
