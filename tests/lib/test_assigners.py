"""MaxIoU and ATSS assigners: hand cases, a loop-by-loop reference, empty and bad inputs."""

from __future__ import annotations

import statistics
import warnings

import numpy as np
import pytest
import torch
from conftest import random_instances

from gmaiou import MaskIntegrals, pairwise_overlaps
from gmaiou.anchors import atss_anchors, yolact_anchors
from gmaiou.assigners import IGNORED, NEGATIVE, ATSSAssigner, MaxIoUAssigner

ALL_MEASURES = ["iou", "giou", "diou", "ciou", "gmaiou-box", "gmaiou-mask"]


def reference_atss(anchors, num_level, gt_boxes, overlaps, topk):
    """ATSS written pair by pair from the paper's description, to check the vectorised one."""
    a = anchors.double().tolist()
    g = gt_boxes.double().tolist()
    ov = overlaps.double().tolist()
    centres = [((x1 + x2) / 2, (y1 + y2) / 2) for x1, y1, x2, y2 in a]
    labels = [NEGATIVE] * len(a)
    best = [-float("inf")] * len(a)
    for gi, (bx1, by1, bx2, by2) in enumerate(g):
        gc = ((bx1 + bx2) / 2, (by1 + by2) / 2)
        cands, start = [], 0
        for n in num_level:
            dist = [
                ((centres[start + i][0] - gc[0]) ** 2 + (centres[start + i][1] - gc[1]) ** 2)
                for i in range(n)
            ]
            order = sorted(range(n), key=lambda i: dist[i])[: min(topk, n)]
            cands += [start + i for i in order]
            start += n
        vals = [ov[gi][c] for c in cands]
        thr = statistics.fmean(vals) + (statistics.stdev(vals) if len(vals) > 1 else 0.0)
        for c in cands:
            cx, cy = centres[c]
            inside = min(cx - bx1, cy - by1, bx2 - cx, by2 - cy) > 0.01
            if ov[gi][c] >= thr and inside and ov[gi][c] > best[c]:
                best[c] = ov[gi][c]
                labels[c] = gi
    return torch.tensor(labels)


def reference_max_iou(overlaps, pos, neg, min_pos):
    g, a = overlaps.shape
    labels = []
    for j in range(a):
        col = overlaps[:, j]
        m = float(col.max())
        labels.append(int(col.argmax()) if m >= pos else (NEGATIVE if m < neg else IGNORED))
    for i in range(g):  # later GTs overwrite earlier ones, as YOLACT does
        if float(overlaps[i].max()) >= min_pos:
            labels[int(overlaps[i].argmax())] = i
    return torch.tensor(labels)


# ----------------------------------------------------------------------------- ATSS


@pytest.mark.parametrize("measure", ALL_MEASURES)
@pytest.mark.parametrize("seed", range(3))
def test_atss_matches_reference(measure, seed):
    rng = np.random.default_rng(seed)
    size = 128
    grid = atss_anchors(size)
    boxes, masks = random_instances(rng, 6, size, size)
    assigner = ATSSAssigner(topk=9, measure=measure)
    result = assigner.assign(grid.anchors, boxes, masks, num_level_anchors=grid.num_level_anchors)
    overlaps = pairwise_overlaps(measure, boxes, grid.anchors, masks)
    expected = reference_atss(grid.anchors, grid.num_level_anchors, boxes, overlaps, 9)
    assert torch.equal(result.gt_inds, expected)
    pos = result.pos_mask
    assert pos.any()
    torch.testing.assert_close(
        result.max_overlaps[pos], overlaps[result.gt_inds[pos], pos.nonzero()[:, 0]]
    )
    assert torch.isfinite(result.max_overlaps).all()


def test_atss_with_prebuilt_tables_is_identical(rng):
    grid = atss_anchors(160, scales_per_octave=2)
    boxes, masks = random_instances(rng, 8, 160, 160)
    assigner = ATSSAssigner(measure="gmaiou-mask")
    raw = assigner.assign(grid, boxes, masks)
    for backend in ("numpy", "torch"):
        pre = assigner.assign(grid, boxes, MaskIntegrals(masks, boxes, backend).build())
        assert torch.equal(raw.gt_inds, pre.gt_inds)
        torch.testing.assert_close(raw.max_overlaps, pre.max_overlaps)


def test_atss_hand_case():
    # One level, 5 anchors in a row, centres 10 apart; one GT centred on anchor 2.
    anchors = torch.tensor([[x - 5.0, 0.0, x + 5.0, 10.0] for x in (5, 15, 25, 35, 45)])
    gt = torch.tensor([[18.0, 0.0, 32.0, 10.0]])
    # topk=3 picks anchors 1, 2, 3; IoUs 2/22 (=0.0909), 10/14 (=0.714), 2/22
    # mean 0.3052, std 0.3533 -> threshold 0.6585: only anchor 2 is positive.
    result = ATSSAssigner(topk=3, measure="iou").assign(anchors, gt, num_level_anchors=[5])
    assert result.gt_inds.tolist() == [NEGATIVE, NEGATIVE, 0, NEGATIVE, NEGATIVE]
    assert result.max_overlaps[2].item() == pytest.approx(10 / 14)
    assert result.max_overlaps[0].item() == 0.0  # not a candidate
    assert result.max_overlaps[1].item() == pytest.approx(2 / 22)


def test_atss_centre_must_lie_inside_the_gt():
    # The GT is a thin vertical strip between anchor centres: no candidate centre is inside it.
    anchors = torch.tensor([[x - 5.0, 0.0, x + 5.0, 10.0] for x in (5, 15, 25)])
    gt = torch.tensor([[19.0, 0.0, 21.0, 10.0]])
    result = ATSSAssigner(topk=2, measure="iou").assign(anchors, gt, num_level_anchors=[3])
    assert (result.gt_inds == NEGATIVE).all()


def test_atss_conflict_goes_to_highest_overlap():
    anchors = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    gts = torch.tensor([[0.0, 0.0, 12.0, 12.0], [0.0, 0.0, 10.0, 11.0]])
    result = ATSSAssigner(topk=1, measure="iou").assign(anchors, gts, num_level_anchors=[1])
    assert result.gt_inds.tolist() == [1]  # IoU 100/110 beats 100/144


def test_atss_topk_larger_than_level_and_single_candidate():
    anchors = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 15.0, 15.0], [0.0, 0.0, 20.0, 20.0]])
    gt = torch.tensor([[1.0, 1.0, 11.0, 11.0]])
    # level sizes 2 and 1 with topk 9: all three are candidates
    result = ATSSAssigner(topk=9, measure="iou").assign(anchors, gt, num_level_anchors=[2, 1])
    overlaps = pairwise_overlaps("iou", gt, anchors)
    assert torch.equal(result.gt_inds, reference_atss(anchors, [2, 1], gt, overlaps, 9))
    # a single candidate: std is 0, threshold is its own overlap, so it is positive
    single = ATSSAssigner(topk=1, measure="iou").assign(anchors[:1], gt, num_level_anchors=[1])
    assert single.gt_inds.tolist() == [0]


# ----------------------------------------------------------------------------- MaxIoU


def test_max_iou_hand_case():
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 60.0, 60.0]])
    anchors = torch.tensor(
        [
            [0.0, 0.0, 10.0, 6.0],  # IoU 0.6 with GT 0 -> positive
            [0.0, 0.0, 10.0, 4.5],  # IoU 0.45 -> ignored
            [0.0, 0.0, 10.0, 3.0],  # IoU 0.3 -> negative
            [52.0, 50.0, 60.0, 53.0],  # IoU 0.24 with GT 1, but GT 1's best anchor -> positive
            [100.0, 100.0, 110.0, 110.0],  # far away -> negative
        ]
    )
    result = MaxIoUAssigner().assign(anchors, gt)
    assert result.gt_inds.tolist() == [0, IGNORED, NEGATIVE, 1, NEGATIVE]
    assert result.max_overlaps.tolist() == pytest.approx([0.6, 0.45, 0.3, 0.24, 0.0])


def test_max_iou_later_gt_wins_a_shared_best_anchor():
    anchors = torch.tensor([[0.0, 0.0, 10.0, 10.0], [40.0, 40.0, 41.0, 41.0]])
    gts = torch.tensor([[0.0, 0.0, 20.0, 20.0], [0.0, 0.0, 10.0, 30.0]])  # both prefer anchor 0
    result = MaxIoUAssigner().assign(anchors, gts)
    assert result.gt_inds.tolist() == [1, NEGATIVE]


@pytest.mark.parametrize("measure", ALL_MEASURES)
def test_max_iou_matches_reference(rng, measure):
    grid = yolact_anchors(96)
    boxes, masks = random_instances(rng, 5, 96, 96)
    result = MaxIoUAssigner(0.5, 0.4, 0.0, measure=measure).assign(grid.anchors, boxes, masks)
    overlaps = pairwise_overlaps(measure, boxes, grid.anchors, masks)
    assert torch.equal(result.gt_inds, reference_max_iou(overlaps, 0.5, 0.4, 0.0))


def test_max_iou_min_pos_iou_blocks_forced_matches():
    anchors = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    gt = torch.tensor([[100.0, 100.0, 110.0, 110.0]])
    assert MaxIoUAssigner(min_pos_iou=0.0).assign(anchors, gt).gt_inds.tolist() == [0]
    assert MaxIoUAssigner(min_pos_iou=0.1).assign(anchors, gt).gt_inds.tolist() == [NEGATIVE]


# ----------------------------------------------------------------------------- empty and bad inputs


@pytest.mark.parametrize(
    "assigner", [MaxIoUAssigner(), ATSSAssigner(measure="iou"), ATSSAssigner()]
)
def test_no_ground_truth_makes_every_anchor_negative(assigner):
    grid = atss_anchors(64)
    result = assigner.assign(grid, torch.zeros(0, 4), torch.zeros(0, 64, 64, dtype=torch.bool))
    assert (result.gt_inds == NEGATIVE).all() and result.gt_inds.shape == (len(grid),)
    assert (result.max_overlaps == 0).all() and result.num_pos == 0


def test_no_anchors():
    result = ATSSAssigner(measure="iou").assign(
        torch.zeros(0, 4), torch.tensor([[0.0, 0.0, 5.0, 5.0]]), num_level_anchors=[0, 0]
    )
    assert result.gt_inds.shape == (0,)


def test_mask_measure_without_masks_is_an_error():
    with pytest.raises(ValueError, match="mask-aware and needs gt_masks"):
        ATSSAssigner(measure="gmaiou-mask").assign(
            torch.zeros(1, 4), torch.zeros(1, 4), num_level_anchors=[1]
        )
    with pytest.raises(ValueError, match="mask-aware and needs gt_masks"):
        MaxIoUAssigner(measure="maiou").assign(torch.zeros(1, 4), torch.zeros(1, 4))


def test_bad_arguments():
    with pytest.raises(ValueError, match="sums to 3 but there are 2 anchors"):
        ATSSAssigner(measure="iou").assign(
            torch.zeros(2, 4), torch.zeros(1, 4), num_level_anchors=[1, 2]
        )
    with pytest.raises(ValueError, match="holds 2 masks but there are 1 boxes"):
        ATSSAssigner().assign(
            torch.zeros(2, 4),
            torch.zeros(1, 4),
            torch.zeros(2, 8, 8, dtype=torch.bool),
            num_level_anchors=[2],
        )
    with pytest.raises(ValueError, match="gt_boxes\\[0\\].*x2 < x1"):
        ATSSAssigner(measure="iou").assign(
            torch.zeros(2, 4), torch.tensor([[3.0, 0.0, 1.0, 1.0]]), num_level_anchors=[2]
        )
    with pytest.raises(ValueError, match="topk must be a positive integer"):
        ATSSAssigner(topk=0)
    with pytest.raises(ValueError, match="unknown measure"):
        ATSSAssigner(measure="dice")
    with pytest.raises(ValueError, match="must not exceed pos_iou"):
        MaxIoUAssigner(pos_iou=0.4, neg_iou=0.5)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
@pytest.mark.parametrize("measure", ["iou", "gmaiou-mask", "gmaiou-box"])
def test_atss_cuda_matches_cpu(rng, measure):
    grid = atss_anchors(256)
    boxes, masks = random_instances(rng, 10, 256, 256)
    cpu = ATSSAssigner(measure=measure).assign(grid, boxes, masks)
    gpu = ATSSAssigner(measure=measure).assign(
        grid.anchors.cuda(), boxes.cuda(), masks.cuda(), num_level_anchors=grid.num_level_anchors
    )
    assert torch.equal(cpu.gt_inds, gpu.gt_inds.cpu())


@pytest.mark.parametrize("assigner", [MaxIoUAssigner(), ATSSAssigner(measure="gmaiou-mask")])
def test_assigners_accept_an_anchor_grid(assigner):
    boxes, masks = random_instances(np.random.default_rng(5), 4, 96, 96)
    grid = yolact_anchors(96) if isinstance(assigner, MaxIoUAssigner) else atss_anchors(96)
    expected = assigner.assign(grid.anchors, boxes, masks, num_level_anchors=grid.num_level_anchors)
    for got in (
        assigner.assign(grid, boxes, masks),
        assigner.assign(grid, gt_boxes=boxes, gt_masks=masks),
        assigner.assign(grid, boxes, masks, num_level_anchors=grid.num_level_anchors),
    ):
        assert torch.equal(got.gt_inds, expected.gt_inds)
        assert torch.equal(got.max_overlaps, expected.max_overlaps)
    with pytest.raises(ValueError, match="differs from the AnchorGrid"):
        assigner.assign(grid, boxes, masks, num_level_anchors=[len(grid)])
    with pytest.raises(TypeError, match="gt_boxes"):
        assigner.assign(grid)


def test_max_iou_takes_anchors_then_gt_boxes():
    """The call a user writes first: anchors, then the GT boxes; the levels are optional."""
    anchors = torch.tensor([[0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 60.0, 60.0]])
    gt = torch.tensor([[0.0, 0.0, 10.0, 9.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the current order warns about nothing
        result = MaxIoUAssigner().assign(anchors, gt)
        levels = MaxIoUAssigner().assign(anchors, gt, num_level_anchors=[1, 1])
    assert result.gt_inds.tolist() == [0, NEGATIVE]
    assert torch.equal(levels.gt_inds, result.gt_inds)
    with pytest.raises(ValueError, match="sums to 3 but there are 2 anchors"):
        MaxIoUAssigner().assign(anchors, gt, num_level_anchors=[1, 2])


@pytest.mark.parametrize("assigner", [MaxIoUAssigner(), ATSSAssigner(measure="gmaiou-mask")])
def test_old_argument_order_still_works_with_a_deprecation_warning(assigner):
    boxes, masks = random_instances(np.random.default_rng(7), 4, 96, 96)
    grid = atss_anchors(96)
    expected = assigner.assign(grid, boxes, masks)
    with pytest.warns(DeprecationWarning, match="num_level_anchors=counts"):
        old = assigner.assign(grid.anchors, grid.num_level_anchors, boxes, masks)
    with pytest.warns(DeprecationWarning):
        old_tuple = assigner.assign(grid.anchors, tuple(grid.num_level_anchors), boxes, masks)
    for got in (old, old_tuple):
        assert torch.equal(got.gt_inds, expected.gt_inds)
        assert torch.equal(got.max_overlaps, expected.max_overlaps)
    with pytest.raises(TypeError, match="by keyword"), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assigner.assign(
            grid.anchors, grid.num_level_anchors, boxes, masks, num_level_anchors=[len(grid)]
        )
    with pytest.raises(TypeError, match="4 positional arguments"):
        assigner.assign(grid, boxes, masks, masks)


def test_atss_candidates_break_distance_ties_by_lowest_index():
    """CUDA's and the CPU's topk order ties differently; the candidates must not depend on it."""
    from gmaiou.assigners import _nearest

    dist = torch.tensor(
        [[3.0, 1.0, 2.0, 1.0, 5.0], [0.0, 0.0, 0.0, 0.0, 1.0], [4.0, 3.0, 2.0, 1.0, 0.0]]
    )
    assert _nearest(dist, 2).sort(dim=1).values.tolist() == [[1, 3], [0, 1], [3, 4]]
    assert _nearest(dist, 5).sort(dim=1).values.tolist() == [[0, 1, 2, 3, 4]] * 3
    # A GT centre on a cell corner is equidistant from four anchors: the lowest indices win.
    grid = atss_anchors(64)
    gt = torch.tensor([[16.0, 16.0, 32.0, 32.0]])  # centre (24, 24): four P3 centres at 20 and 28
    cand = ATSSAssigner(topk=3)._candidates(
        (grid.anchors[:, :2] + grid.anchors[:, 2:]) / 2,
        (gt[:, :2] + gt[:, 2:]) / 2,
        grid.num_level_anchors,
    )
    p3 = cand[0, :3].sort().values.tolist()
    assert p3 == [2 * 8 + 2, 2 * 8 + 3, 3 * 8 + 2]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("measure", ALL_MEASURES)
def test_half_precision_anchors_assign_as_float32(rng, dtype, measure):
    """float16 overflows past 65,504 (a 256-px anchor's area, a squared distance of 256 px):
    half-precision boxes are assigned in float32 and the overlaps returned in their dtype."""
    grid = atss_anchors(640)  # anchors up to 512 px
    boxes, masks = random_instances(rng, 4, 640, 640)
    # Coordinates that half precision holds exactly (multiples of 8 up to 2048 for bfloat16).
    anchors = (grid.anchors / 8).round() * 8
    boxes = (boxes / 8).round() * 8
    for assigner in (ATSSAssigner(measure=measure), MaxIoUAssigner(measure=measure)):
        levels = grid.num_level_anchors
        ref = assigner.assign(anchors, boxes, masks, num_level_anchors=levels)
        got = assigner.assign(anchors.to(dtype), boxes.to(dtype), masks, num_level_anchors=levels)
        assert torch.equal(got.gt_inds, ref.gt_inds), assigner
        assert got.max_overlaps.dtype == dtype
        torch.testing.assert_close(got.max_overlaps, ref.max_overlaps.to(dtype), atol=0, rtol=0)
