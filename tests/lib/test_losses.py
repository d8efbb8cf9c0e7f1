"""Loss terms: hand-computed values, OHEM's selection, and the Rank & Sort loss against a direct
loop and against the positive-by-positive implementation it replaces."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from gmaiou.losses import (
    _rank_sort_loss_loop_reference,
    dice_coefficient,
    mask_bce_loss,
    ohem_cross_entropy,
    rank_sort_loss,
    self_balance,
    semantic_loss,
)

# --------------------------------------------------------------------------- OHEM


def test_ohem_keeps_the_positives_and_the_three_hardest_negatives():
    logits = torch.tensor(
        [[[0.0, 2.0], [3.0, 0.0], [0.0, 1.0], [0.0, 4.0], [0.0, 3.0], [1.0, 2.0]]]
    )
    labels = torch.tensor([[1, 0, 0, 0, 0, 0]])
    pos = torch.tensor([[True, False, False, False, False, False]])
    neg = torch.tensor([[False, True, True, True, True, False]])  # anchor 5 ignored
    ce = F.cross_entropy(logits[0], torch.tensor([1, 0, 0, 0, 0, 0]), reduction="none")
    # negatives' background losses: anchor 3 > 4 > 2 > 1; the ignored anchor 5 never counts
    expected = ce[0] + ce[3] + ce[4] + ce[2]
    got = ohem_cross_entropy(logits, labels, pos, neg, neg_pos_ratio=3)
    assert torch.allclose(got, expected)


def test_ohem_is_per_image_and_normalised_by_all_positives():
    logits = torch.randn(2, 50, 4, generator=torch.Generator().manual_seed(0))
    labels = torch.randint(1, 4, (2, 50), generator=torch.Generator().manual_seed(1))
    pos = torch.zeros(2, 50, dtype=torch.bool)
    pos[0, :2] = True  # image 0: 2 positives -> 6 negatives; image 1: none -> no negatives
    neg = ~pos
    ce = F.cross_entropy(
        logits.reshape(-1, 4), torch.where(pos, labels, 0).reshape(-1), reduction="none"
    ).view(2, 50)
    hardest = ce[0, 2:].sort(descending=True).values[:6].sum()
    expected = (ce[0, :2].sum() + hardest) / 2
    assert torch.allclose(ohem_cross_entropy(logits, labels, pos, neg), expected)


def test_ohem_without_positives_is_zero_and_rejects_overlapping_masks():
    logits = torch.randn(1, 10, 3, requires_grad=True)
    zero = ohem_cross_entropy(
        logits,
        torch.zeros(1, 10, dtype=torch.long),
        torch.zeros(1, 10, dtype=torch.bool),
        torch.ones(1, 10, dtype=torch.bool),
    )
    assert zero.item() == 0
    zero.backward()
    assert logits.grad is not None and logits.grad.abs().sum() == 0
    both = torch.ones(1, 10, dtype=torch.bool)
    with pytest.raises(ValueError, match="overlap"):
        ohem_cross_entropy(logits, torch.zeros(1, 10, dtype=torch.long), both, both)


# --------------------------------------------------------------------------- masks and semantics


def test_mask_bce_counts_only_the_crop_and_divides_by_the_box_area():
    logits = torch.zeros(2, 2, 2)
    targets = torch.tensor([[[1.0, 0.0], [0.0, 0.0]], [[1.0, 1.0], [1.0, 1.0]]])
    crops = torch.tensor([[[True, True], [False, False]], [[True, True], [True, True]]])
    areas = torch.tensor([2.0, 4.0])
    got = mask_bce_loss(logits, targets, crops, areas)
    assert torch.allclose(got, torch.tensor([math.log(2), math.log(2)]))
    # confident and right inside the crop, wrong outside it: no loss
    logits = torch.tensor([[[20.0, -20.0], [20.0, 20.0]]])
    got = mask_bce_loss(logits, targets[:1], crops[:1], torch.tensor([2.0]))
    assert got.item() < 1e-6


def test_semantic_loss_is_mean_over_pixels_summed_over_classes():
    logits = torch.zeros(2, 3, 4, 5)
    targets = torch.zeros(2, 3, 4, 5)
    assert torch.allclose(semantic_loss(logits, targets), torch.tensor(3 * math.log(2)))
    with pytest.raises(ValueError, match="shape"):
        semantic_loss(logits, targets[:, :2])


def test_dice_and_self_balance():
    a = torch.zeros(2, 4, 4)
    a[0, :2] = 1
    a[1, 2:] = 1
    assert torch.allclose(dice_coefficient(a, a), torch.ones(2), atol=1e-5)
    assert torch.allclose(dice_coefficient(a, a.flip(0)), torch.zeros(2))
    x = torch.tensor(4.0, requires_grad=True)
    balanced = self_balance(x * x, torch.tensor(2.0))
    assert balanced.item() == pytest.approx(2.0)
    balanced.backward()
    assert x.grad.item() == pytest.approx(2.0 / 16.0 * 8.0)  # d(x²)/dx scaled by 2 / 16


# --------------------------------------------------------------------------- Rank & Sort


def _rank_sort_reference(logits, targets, positive, delta):
    """The RS loss and its identity-update gradients, one positive at a time, from the definitions."""
    h = lambda x: min(max(x / (2 * delta) + 0.5, 0.0), 1.0)  # noqa: E731
    pos = [i for i in range(len(logits)) if positive[i]]
    low = min(logits[i] for i in pos) - delta
    neg = [j for j in range(len(logits)) if not positive[j] and logits[j] >= low]
    grad = [0.0] * len(logits)
    rank_errors, sort_errors = [], []
    for i in pos:
        rank_pos = sum(h(logits[k] - logits[i]) for k in pos)
        fp = sum(h(logits[j] - logits[i]) for j in neg)
        rank_err = fp / (rank_pos + fp)
        current = sum(h(logits[k] - logits[i]) * (1 - targets[k]) for k in pos) / rank_pos
        better = [k for k in pos if targets[k] >= targets[i]]
        t_rank = sum(h(logits[k] - logits[i]) for k in better)
        target = sum(h(logits[k] - logits[i]) * (1 - targets[k]) for k in better) / t_rank
        sort_err = current - target
        rank_errors.append(rank_err)
        sort_errors.append(sort_err)
        if fp > 1e-10:
            grad[i] -= rank_err
            for j in neg:
                grad[j] += h(logits[j] - logits[i]) * rank_err / fp
        worse = [k for k in pos if targets[k] < targets[i]]
        denom = sum(h(logits[k] - logits[i]) for k in worse)
        if denom > 1e-10:
            grad[i] -= sort_err
            for k in worse:
                grad[k] += h(logits[k] - logits[i]) * sort_err / denom
    n = len(pos)
    return sum(rank_errors) / n, sum(sort_errors) / n, [g / n for g in grad]


def test_rank_sort_hand_computed_ranking():
    # one positive and one negative with equal logits: H(0) = 1/2 each, ranking error 1/2
    logits = torch.zeros(2, requires_grad=True)
    loss, ranking, sorting = rank_sort_loss(
        logits, torch.tensor([1.0, 0.0]), torch.tensor([True, False])
    )
    assert (loss.item(), ranking.item(), sorting.item()) == pytest.approx((0.5, 0.5, 0.0))
    loss.backward()
    assert logits.grad.tolist() == pytest.approx([-0.5, 0.5])


def test_rank_sort_hand_computed_sorting():
    # positive 0 (IoU 0.5) outscores positive 1 (IoU 1.0) by 2δ: sorting error 1/3 on positive 1
    logits = torch.tensor([2.0, 0.0], requires_grad=True)
    loss, ranking, sorting = rank_sort_loss(
        logits, torch.tensor([0.5, 1.0]), torch.tensor([True, True]), delta=1.0
    )
    assert ranking.item() == 0 and sorting.item() == pytest.approx(1 / 6)
    loss.backward()
    assert logits.grad.tolist() == pytest.approx([1 / 6, -1 / 6])


def test_rank_sort_is_zero_for_a_perfect_ranking_and_sorting():
    logits = torch.tensor([9.0, 7.0, 5.0, 0.0, -1.0], requires_grad=True)
    targets = torch.tensor([0.9, 0.8, 0.6, 0.0, 0.0])
    positive = torch.tensor([True, True, True, False, False])
    loss, _, _ = rank_sort_loss(logits, targets, positive, delta=0.5)
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-7)
    assert logits.grad.abs().max() == 0


@pytest.mark.parametrize("chunk", [1, 7, 1 << 23])
def test_rank_sort_matches_the_direct_loop(chunk):
    g = torch.Generator().manual_seed(3)
    n = 60
    logits = torch.randn(n, generator=g) * 1.5
    positive = torch.rand(n, generator=g) < 0.25
    positive[0] = True
    targets = torch.where(positive, torch.rand(n, generator=g), torch.zeros(n))
    ref_rank, ref_sort, ref_grad = _rank_sort_reference(
        logits.tolist(), targets.tolist(), positive.tolist(), 0.5
    )
    x = logits.clone().requires_grad_(True)
    loss, ranking, sorting = rank_sort_loss(x, targets, positive, delta=0.5, chunk_elements=chunk)
    loss.backward()
    assert ranking.item() == pytest.approx(ref_rank, abs=1e-5)
    assert sorting.item() == pytest.approx(ref_sort, abs=1e-5)
    assert loss.item() == pytest.approx(ref_rank + ref_sort, abs=1e-5)
    assert torch.allclose(x.grad, torch.tensor(ref_grad), atol=1e-6)
    # identity update: what a positive loses, the examples causing its error gain
    assert abs(x.grad.sum().item()) < 1e-5


def test_rank_sort_without_positives_and_bad_input():
    logits = torch.randn(5, requires_grad=True)
    loss, ranking, sorting = rank_sort_loss(
        logits, torch.zeros(5), torch.zeros(5, dtype=torch.bool)
    )
    loss.backward()
    assert loss.item() == ranking.item() == sorting.item() == 0
    assert logits.grad.abs().sum() == 0
    with pytest.raises(ValueError, match="1-D"):
        rank_sort_loss(torch.zeros(2, 2), torch.zeros(2, 2), torch.zeros(2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="delta"):
        rank_sort_loss(torch.zeros(2), torch.zeros(2), torch.ones(2, dtype=torch.bool), delta=0)


def test_rank_sort_descent_ranks_positives_first():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(200, generator=g).requires_grad_(True)
    positive = torch.zeros(200, dtype=torch.bool)
    positive[:10] = True
    targets = torch.where(positive, torch.linspace(0.1, 1.0, 200), torch.zeros(200))
    opt = torch.optim.SGD([logits], lr=20.0)
    first = None
    for _ in range(100):
        loss, _, _ = rank_sort_loss(logits, targets, positive)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.25 * first


# --------------------------------------------------------------------------- Rank & Sort, binned


def _loss_and_grad(fn, logits, targets, positive, **kwargs):
    """``(loss, ranking, sorting, grad)`` of one RS implementation; the gradient of ``loss``."""
    x = logits.clone().requires_grad_(True)
    loss, ranking, sorting = fn(x, targets, positive, **kwargs)
    loss.backward()
    return loss.detach(), ranking, sorting, x.grad


def _assert_matches_the_loop(logits, targets, positive, delta=0.5, atol=1e-6, **kwargs):
    got = _loss_and_grad(rank_sort_loss, logits, targets, positive, delta=delta, **kwargs)
    ref = _loss_and_grad(_rank_sort_loss_loop_reference, logits, targets, positive, delta=delta)
    for a, b in zip(got, ref):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert torch.allclose(a, b, atol=atol, rtol=0), float((a - b).abs().max())
    return got


def _random_case(seed, n, pos_fraction, scale=1.5, grid=None):
    """``[n]`` float64 logits (rounded to ``grid`` for ties), IoU targets and a positive mask."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, generator=g, dtype=torch.float64) * scale
    if grid is not None:
        logits = (logits / grid).round() * grid
    positive = torch.rand(n, generator=g) < pos_fraction
    iou = torch.rand(n, generator=g, dtype=torch.float64)
    return logits, torch.where(positive, iou, torch.zeros_like(iou)), positive


def test_rank_sort_hand_computed_false_positives_in_and_above_the_band():
    # positive 0 at logit 0 (IoU 1), δ = 0.5; negatives at 0.25 (H = 0.75), 2 (H = 1), -3 (H = 0):
    # rank⁺ = H(0) = 1/2, N_FP = 1.75, ranking error 1.75 / 2.25 = 7/9, no sorting error.
    logits = torch.tensor([0.0, 0.25, 2.0, -3.0], dtype=torch.float64, requires_grad=True)
    positive = torch.tensor([True, False, False, False])
    targets = torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    loss, ranking, sorting = rank_sort_loss(logits, targets, positive)
    assert (loss.item(), ranking.item(), sorting.item()) == pytest.approx((7 / 9, 7 / 9, 0.0))
    loss.backward()
    # 7/9 leaves the positive; the negatives take 7/9 in proportion to H: 0.75 / 1.75 and 1 / 1.75
    assert logits.grad.tolist() == pytest.approx([-7 / 9, 1 / 3, 4 / 9, 0.0])


def test_rank_sort_hand_computed_overlapping_bands():
    # positives at 0 (IoU 0.5) and 0.5 (IoU 1), δ = 0.5; one negative at 0.5.
    # Positive 0: rank⁺ = 1/2 + 1 = 3/2, N_FP = 1, ranking error 1 / (5/2) = 2/5;
    # sorting: current (1/2 · 1/2 + 1 · 0) / (3/2) = 1/6, target (y >= 1/2: both) the same: 0.
    # Positive 1: rank⁺ = 0 + 1/2 = 1/2, N_FP = 1/2, ranking error 1/2; sorting:
    # current (0 + 1/2 · 0) / (1/2) = 0, target 0.
    logits = torch.tensor([0.0, 0.5, 0.5], dtype=torch.float64, requires_grad=True)
    positive = torch.tensor([True, True, False])
    targets = torch.tensor([0.5, 1.0, 0.0], dtype=torch.float64)
    loss, ranking, sorting = rank_sort_loss(logits, targets, positive)
    assert ranking.item() == pytest.approx((2 / 5 + 1 / 2) / 2)
    assert sorting.item() == pytest.approx(0.0, abs=1e-12)
    loss.backward()
    # each positive's ranking error goes to the one negative; everything over |P| = 2
    assert logits.grad.tolist() == pytest.approx([-1 / 5, -1 / 4, 1 / 5 + 1 / 4])


@pytest.mark.parametrize(
    "seed, n, pos_fraction, grid",
    [
        (0, 50, 0.3, None),
        (1, 400, 0.05, None),
        (2, 3000, 0.02, None),
        (3, 300, 0.2, 0.25),  # ties: logits on a grid of δ / 2, band edges on logits
        (4, 2000, 0.05, 0.5),
        (5, 200, 0.9, None),  # mostly positives
    ],
)
def test_rank_sort_matches_the_positive_by_positive_loop(seed, n, pos_fraction, grid):
    logits, targets, positive = _random_case(seed, n, pos_fraction, grid=grid)
    positive[0] = True
    if grid is not None:  # tied targets too
        targets = (targets * 4).round() / 4
    for delta in (0.5, 0.2, 1.5):
        _assert_matches_the_loop(logits, targets, positive, delta=delta)


@pytest.mark.parametrize("chunk", [1, 37, 1 << 23])
def test_rank_sort_chunks_of_positive_pairs_do_not_change_the_result(chunk):
    logits, targets, positive = _random_case(6, 500, 0.1)
    _assert_matches_the_loop(logits, targets, positive, chunk_elements=chunk)


def test_rank_sort_one_positive_and_no_positive():
    logits, targets, positive = _random_case(7, 100, 0.0)
    positive[17] = True
    targets[17] = 0.6
    loss, _, sorting, grad = _assert_matches_the_loop(logits, targets, positive)
    assert sorting.item() == 0 and loss.item() > 0  # one positive is always sorted
    assert grad.sum().abs().item() < 1e-12  # what the positive loses, the negatives gain
    none = torch.zeros(100, dtype=torch.bool)
    loss, ranking, sorting, grad = _assert_matches_the_loop(logits, targets, none)
    assert loss.item() == ranking.item() == sorting.item() == 0 and grad.abs().sum() == 0


def test_rank_sort_with_every_negative_far_below_has_only_the_sorting_error():
    logits, targets, positive = _random_case(8, 300, 0.2)
    logits = torch.where(positive, logits, logits - 100.0)
    loss, ranking, sorting, grad = _assert_matches_the_loop(logits, targets, positive)
    assert ranking.item() == 0 and sorting.item() > 0
    assert loss.item() == pytest.approx(sorting.item())
    assert grad[~positive].abs().max() == 0


def test_rank_sort_of_float16_logits_computes_in_float32():
    logits, targets, positive = _random_case(9, 1000, 0.05)
    half = logits.half()
    got = _loss_and_grad(rank_sort_loss, half, targets.float(), positive)
    ref = _loss_and_grad(rank_sort_loss, half.double(), targets, positive)
    assert got[0].dtype == torch.float32 and got[3].dtype == torch.float16
    for a, b in zip(got[:3], ref[:3]):
        assert abs(a.item() - b.item()) < 1e-6
    # the gradient, rounded to float16 on its way back to the logits
    assert torch.allclose(got[3].double(), ref[3], atol=1e-6, rtol=1e-3)
    _assert_matches_the_loop(half, targets.float(), positive, atol=1e-6)


def test_rank_sort_valid_mask_is_the_loss_of_the_valid_pairs():
    logits, targets, positive = _random_case(10, 400, 0.1)
    valid = torch.rand(400, generator=torch.Generator().manual_seed(11)) < 0.7
    valid |= positive
    got = _loss_and_grad(rank_sort_loss, logits, targets, positive, valid=valid)
    ref = _loss_and_grad(rank_sort_loss, logits[valid], targets[valid], positive[valid])
    for a, b in zip(got[:3], ref[:3]):
        assert torch.allclose(a, b, atol=1e-12, rtol=0)
    assert torch.allclose(got[3][valid], ref[3], atol=1e-12, rtol=0)
    assert got[3][~valid].abs().max() == 0  # ignored pairs get no gradient
    with pytest.raises(ValueError, match="1-D"):
        rank_sort_loss(logits, targets, positive, valid=valid[:10])


# --------------------------------------------------------------------------- Rank & Sort in slots


def _hand_cases():
    """The hand-computed cases above: (logits, targets, positive, delta)."""
    f64 = torch.float64
    return [
        (torch.zeros(2), torch.tensor([1.0, 0.0]), torch.tensor([True, False]), 0.5),
        (torch.tensor([2.0, 0.0]), torch.tensor([0.5, 1.0]), torch.tensor([True, True]), 1.0),
        (
            torch.tensor([9.0, 7.0, 5.0, 0.0, -1.0]),
            torch.tensor([0.9, 0.8, 0.6, 0.0, 0.0]),
            torch.tensor([True, True, True, False, False]),
            0.5,
        ),
        (
            torch.tensor([0.0, 0.25, 2.0, -3.0], dtype=f64),
            torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=f64),
            torch.tensor([True, False, False, False]),
            0.5,
        ),
        (
            torch.tensor([0.0, 0.5, 0.5], dtype=f64),
            torch.tensor([0.5, 1.0, 0.0], dtype=f64),
            torch.tensor([True, True, False]),
            0.5,
        ),
    ]


@pytest.mark.parametrize("case", range(5))
@pytest.mark.parametrize("slots", [3, 64])
def test_rank_sort_in_slots_gives_the_hand_computed_values(case, slots):
    logits, targets, positive, delta = _hand_cases()[case]
    got = _loss_and_grad(
        rank_sort_loss, logits, targets, positive, delta=delta, max_positives=slots
    )
    ref = _loss_and_grad(rank_sort_loss, logits, targets, positive, delta=delta)
    for a, b in zip(got, ref):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert torch.allclose(a, b, atol=1e-7, rtol=0), (a, b)


@pytest.mark.parametrize(
    "seed, n, pos_fraction, grid",
    [
        (0, 50, 0.3, None),
        (1, 400, 0.05, None),
        (2, 3000, 0.02, None),
        (3, 300, 0.2, 0.25),  # ties in logits, band edges on logits, and ties in targets
        (4, 2000, 0.05, 0.5),
        (5, 200, 0.9, None),  # mostly positives
    ],
)
def test_rank_sort_in_slots_matches_the_positive_by_positive_loop(seed, n, pos_fraction, grid):
    logits, targets, positive = _random_case(seed, n, pos_fraction, grid=grid)
    positive[0] = True
    if grid is not None:
        targets = (targets * 4).round() / 4
    exact = int(positive.sum())
    for delta in (0.5, 0.2, 1.5):
        for slots in (exact, n, 10 * n):  # as many slots as positives, one a pair, more
            _assert_matches_the_loop(logits, targets, positive, delta=delta, max_positives=slots)


def test_rank_sort_in_slots_one_positive_no_positive_and_far_negatives():
    logits, targets, positive = _random_case(7, 100, 0.0)
    positive[17] = True
    targets[17] = 0.6
    loss, _, sorting, grad = _assert_matches_the_loop(logits, targets, positive, max_positives=5)
    assert sorting.item() == 0 and loss.item() > 0 and grad.sum().abs().item() < 1e-12
    none = torch.zeros(100, dtype=torch.bool)
    loss, ranking, sorting, grad = _assert_matches_the_loop(logits, targets, none, max_positives=5)
    assert loss.item() == ranking.item() == sorting.item() == 0 and grad.abs().sum() == 0
    logits, targets, positive = _random_case(8, 300, 0.2)
    logits = torch.where(positive, logits, logits - 100.0)
    loss, ranking, sorting, grad = _assert_matches_the_loop(
        logits, targets, positive, max_positives=300
    )
    assert ranking.item() == 0 and sorting.item() > 0 and grad[~positive].abs().max() == 0
    empty = torch.zeros(0, dtype=torch.float64)
    loss, _, _ = rank_sort_loss(empty, empty, empty.bool(), max_positives=4)
    assert loss.item() == 0


def test_rank_sort_in_slots_of_float16_logits_and_a_valid_mask():
    logits, targets, positive = _random_case(9, 1000, 0.05)
    half = logits.half()
    got = _loss_and_grad(rank_sort_loss, half, targets.float(), positive, max_positives=1000)
    ref = _loss_and_grad(rank_sort_loss, half, targets.float(), positive)
    assert got[0].dtype == torch.float32 and got[3].dtype == torch.float16
    for a, b in zip(got, ref):
        assert torch.allclose(a.double(), b.double(), atol=1e-6, rtol=1e-3)
    logits, targets, positive = _random_case(10, 400, 0.1)
    valid = torch.rand(400, generator=torch.Generator().manual_seed(11)) < 0.7
    valid |= positive
    got = _loss_and_grad(rank_sort_loss, logits, targets, positive, valid=valid, max_positives=400)
    ref = _loss_and_grad(rank_sort_loss, logits[valid], targets[valid], positive[valid])
    for a, b in zip(got[:3], ref[:3]):
        assert torch.allclose(a, b, atol=1e-12, rtol=0)
    assert torch.allclose(got[3][valid], ref[3], atol=1e-12, rtol=0)
    assert got[3][~valid].abs().max() == 0


def test_rank_sort_in_slots_refuses_more_positives_than_slots():
    logits, targets, positive = _random_case(12, 100, 0.3)
    with pytest.raises(RuntimeError, match="more positives than max_positives"):
        rank_sort_loss(logits, targets, positive, max_positives=int(positive.sum()) - 1)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="max_positives"):
            rank_sort_loss(logits, targets, positive, max_positives=bad)


def test_rank_sort_in_slots_reads_nothing_back_from_the_device():
    # Under FakeTensorMode a data-dependent op (nonzero, .item(), a boolean mask) raises:
    # the slots' forward and backward complete; the default path counts its positives.
    from torch._subclasses.fake_tensor import DynamicOutputShapeException, FakeTensorMode

    logits, targets, positive = _random_case(13, 500, 0.1)
    mode = FakeTensorMode()
    x = mode.from_tensor(logits.clone().requires_grad_(True))
    fake_targets, fake_positive = mode.from_tensor(targets), mode.from_tensor(positive)
    with mode:
        loss, _, _ = rank_sort_loss(x, fake_targets, fake_positive, max_positives=500)
        loss.backward()
        assert x.grad.shape == (500,)
        with pytest.raises(DynamicOutputShapeException):
            rank_sort_loss(x, fake_targets, fake_positive)
