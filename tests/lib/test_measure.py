"""GmaIoU, maIoU, MOB and the box measures: hand cases, properties, brute force vs Alg. 1, bad inputs."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
import torchvision.ops as tvops
from conftest import coco_image_instances, random_anchors, random_instances
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gmaiou import MaskIntegrals, gmaiou, gmaiou_bruteforce, maiou, mob_ratio, pairwise_overlaps
from gmaiou.measure import MEASURES

BACKENDS = ["numpy", "torch"]


@pytest.fixture
def l_mask() -> tuple[torch.Tensor, torch.Tensor]:
    """An L in a 10x10 image: column 2 of rows 2-7 and row 7 of columns 3-6; |M| = 10, box [2,2,7,8]."""
    m = torch.zeros(1, 10, 10, dtype=torch.bool)
    m[0, 2:8, 2] = True
    m[0, 7, 3:7] = True
    return torch.tensor([[2.0, 2.0, 7.0, 8.0]]), m


# ----------------------------------------------------------------------------- hand-computed cases


def test_hand_computed_l_shape(l_mask):
    boxes, masks = l_mask
    anchors = torch.tensor(
        [
            [2.0, 2.0, 4.0, 8.0],  # cols 2-3, rows 2-7: 7 mask pixels, |A| = 12
            [4.0, 2.0, 7.0, 7.0],  # misses the L entirely
            [4.4, 6.6, 7.4, 8.4],  # rounds to cols 4-6, row 7: 3 pixels, |A| = 3 * 1.8
        ]
    )
    got_m = gmaiou(boxes, masks, anchors, polygon="mask")[0]
    got_b = maiou(boxes, masks, anchors)[0]
    # P = M: |A∩M| / (|A| + |M| - |A∩M|)
    assert got_m.tolist() == pytest.approx([7 / 15, 0.0, 3 / 12.4], abs=1e-6)
    # P = B: |A∩M| |B| / (|M| |A ∪ B|); |B| = 30; A3 ∩ B = 2.6 * 1.4
    union3 = 5.4 + 30 - 2.6 * 1.4
    assert got_b.tolist() == pytest.approx(
        [7 * 30 / (10 * 30), 0.0, 3 * 30 / (10 * union3)], abs=1e-6
    )
    # box IoU for comparison: the anchor covers 70% of the mask but only 40% of the box
    assert tvops.box_iou(boxes, anchors[:1]).item() == pytest.approx(0.4)


def test_rounding_is_half_to_even(l_mask):
    boxes, masks = l_mask
    # x1 = 2.5 rounds to 2 and x2 = 3.5 rounds to 4: columns 2 and 3, as torch.round does.
    a = torch.tensor([[2.5, 2.0, 3.5, 8.0]])
    inter = MaskIntegrals(masks).intersection(a)
    assert inter.item() == 7
    # 3.5 and 4.5 both round to 4: no column at all; 5.5 rounds to 6: columns 4 and 5.
    assert MaskIntegrals(masks).intersection(torch.tensor([[3.5, 2.0, 4.5, 8.0]])).item() == 0
    assert MaskIntegrals(masks).intersection(torch.tensor([[3.5, 2.0, 5.5, 8.0]])).item() == 2


def test_mob_ratio_hand(l_mask):
    boxes, masks = l_mask
    boxes2 = torch.cat([boxes, torch.tensor([[2.0, 7.0, 7.0, 8.0], [0.0, 0.0, 0.0, 5.0]])])
    mob = mob_ratio(boxes2, masks)
    assert mob.shape == (1, 3)
    assert mob[0].tolist() == pytest.approx([10 / 30, 5 / 5, 0.0])


def test_full_mask_equals_box_iou(rng):
    h, w = 40, 50
    boxes = torch.tensor([[3.0, 4.0, 20.0, 30.0], [10.0, 0.0, 50.0, 12.0]])
    masks = torch.zeros(2, h, w, dtype=torch.bool)
    for i, (x1, y1, x2, y2) in enumerate(boxes.long().tolist()):
        masks[i, y1:y2, x1:x2] = True
    anchors = random_anchors(rng, 300, h, w, integer=True)
    iou = tvops.box_iou(boxes, anchors)
    iou = torch.nan_to_num(iou, nan=0.0)
    for polygon in ("mask", "box"):
        got = gmaiou(boxes, masks, anchors, polygon=polygon)
        torch.testing.assert_close(got, iou, atol=1e-6, rtol=0)


# ----------------------------------------------------------------------------- brute force vs Alg. 1


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("polygon", ["mask", "box"])
def test_efficient_matches_bruteforce_random(rng, backend, polygon):
    h, w = 64, 80
    boxes, masks = random_instances(rng, 12, h, w)
    anchors = random_anchors(rng, 400, h, w)
    ref = gmaiou_bruteforce(boxes, masks, anchors, polygon=polygon)
    integrals = MaskIntegrals(masks, boxes, backend=backend)
    got = gmaiou(boxes, integrals, anchors, polygon=polygon)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=0)
    assert torch.isfinite(got).all()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31 - 1),
    num_gt=st.integers(0, 6),
    num_anchors=st.integers(0, 60),
    height=st.integers(1, 48),
    width=st.integers(1, 48),
    kind=st.sampled_from(["bar", "ring", "l_shape", "u_shape", "crescent", "stick_figure", None]),
    polygon=st.sampled_from(["mask", "box"]),
    backend=st.sampled_from(BACKENDS),
    hint=st.sampled_from(["tight", "none", "wrong"]),
)
def test_efficient_matches_bruteforce_property(
    seed, num_gt, num_anchors, height, width, kind, polygon, backend, hint
):
    rng = np.random.default_rng(seed)
    kinds = None if kind is None else [kind]
    boxes, masks = random_instances(rng, num_gt, height, width, kinds)
    anchors = random_anchors(rng, num_anchors, height, width)
    ref = gmaiou_bruteforce(boxes, masks, anchors, polygon=polygon)
    # A wrong box hint must not change the result, only where the tables are cropped.
    hint_boxes = {"tight": boxes, "none": None, "wrong": boxes.flip(0) if num_gt else boxes}[hint]
    got = gmaiou(boxes, MaskIntegrals(masks, hint_boxes, backend=backend), anchors, polygon=polygon)
    assert got.shape == (num_gt, num_anchors)
    # rtol: an anchor far smaller than a pixel that still counts one (the rounding of docs/spec.md section 1.5) gives
    # values far above 1 (e.g. 112.6 for a 1x1 image), where float32 carries ~1e-5 relative.
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("polygon", ["mask", "box"])
def test_numpy_and_torch_lookups_are_bitwise_equal(rng, dtype, polygon):
    """The CPU's NumPy look-ups and formula do torch's operations in torch's order."""
    h, w = 90, 70
    boxes, masks = random_instances(rng, 9, h, w)
    masks[4] = False  # an empty mask: no pair of it is looked up
    anchors = random_anchors(rng, 500, h, w).to(dtype)
    anchors[:5] -= 200.0  # wholly off the image
    by = {b: MaskIntegrals(masks, boxes, backend=b) for b in BACKENDS}
    # The backends crop differently (box hints, tight extents), so the pair lists differ.
    dense = [by[b].intersection(anchors) for b in BACKENDS]
    assert dense[0].dtype == torch.long and torch.equal(*dense)
    values = {b: gmaiou(boxes.to(dtype), by[b], anchors, polygon) for b in BACKENDS}
    assert values["numpy"].dtype == dtype
    assert torch.equal(values["numpy"], values["torch"])
    idx = torch.from_numpy(rng.integers(0, 500, (9, 12)))
    grouped = [by[b].grouped_intersection(anchors[idx]) for b in BACKENDS]
    assert torch.equal(*grouped)
    # Mixed or half dtypes take the torch path on NumPy tables; values agree to rounding.
    for gt_dtype, anchor_dtype in [(torch.float64, torch.float32), (dtype, torch.bfloat16)]:
        mixed = gmaiou(boxes.to(gt_dtype), by["numpy"], anchors.to(anchor_dtype), polygon)
        assert mixed.dtype == anchor_dtype
        ref = gmaiou(boxes.to(gt_dtype), by["torch"], anchors.to(anchor_dtype), polygon)
        torch.testing.assert_close(mixed, ref)
    nothing = MaskIntegrals(masks[:0], boxes[:0], backend="numpy")
    assert gmaiou(boxes[:0], nothing, anchors, polygon).shape == (0, 500)


@pytest.mark.parametrize("backend", BACKENDS)
def test_grouped_and_paired_counts_match_dense(rng, backend):
    h, w = 50, 70
    boxes, masks = random_instances(rng, 7, h, w)
    anchors = random_anchors(rng, 200, h, w)
    dense = MaskIntegrals(masks, boxes, backend=backend).intersection(anchors)
    idx = torch.from_numpy(rng.integers(0, 200, (7, 30)))
    grouped = MaskIntegrals(masks, boxes, backend=backend).grouped_intersection(anchors[idx])
    torch.testing.assert_close(grouped, dense.gather(1, idx))
    gt_index = torch.arange(7).repeat_interleave(30)
    paired = MaskIntegrals(masks, boxes, backend=backend).paired_intersection(
        gt_index, anchors[idx.reshape(-1)]
    )
    torch.testing.assert_close(paired.view(7, 30), dense.gather(1, idx))


@pytest.mark.parametrize("hint", ["tight", "none", "wrong", "zero-area"])
def test_grouped_counts_from_raw_masks(rng, hint):
    """ATSS's one-pass path (no tables) agrees with the dense counts, whatever the hint."""
    from gmaiou.measure import grouped_counts_from_masks

    h, w = 60, 75
    boxes, masks = random_instances(rng, 9, h, w)
    masks[3] = False  # an empty mask
    anchors = random_anchors(rng, 300, h, w)
    idx = torch.from_numpy(rng.integers(0, 300, (9, 25)))
    hints = {
        "tight": boxes,
        "none": None,
        "wrong": boxes.flip(0),
        "zero-area": torch.cat([boxes[:, :2], boxes[:, :2]], dim=1),
    }[hint]
    area, counts = grouped_counts_from_masks(masks, hints, anchors[idx])
    dense = MaskIntegrals(masks).intersection(anchors)
    assert area.tolist() == masks.sum(dim=(1, 2)).tolist()
    torch.testing.assert_close(counts, dense.gather(1, idx))
    empty_area, empty = grouped_counts_from_masks(masks, hints, anchors[idx][:, :0])
    assert empty.shape == (9, 0) and empty_area.tolist() == area.tolist()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31 - 1),
    num_gt=st.integers(1, 6),
    k=st.integers(0, 12),
    height=st.integers(1, 40),
    width=st.integers(1, 40),
    polygon=st.sampled_from(["mask", "box"]),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    hint=st.sampled_from(["tight", "wrong", "shifted"]),
    halves=st.booleans(),
)
def test_grouped_gmaiou_from_raw_masks_matches_bruteforce_property(
    seed, num_gt, k, height, width, polygon, dtype, hint, halves
):
    """ATSS's raw-mask path (16-bit column sums, rows marked, not sorted) is the brute force's value."""
    from gmaiou.measure import grouped_gmaiou

    rng = np.random.default_rng(seed)
    boxes, masks = random_instances(rng, num_gt, height, width)
    anchors = random_anchors(rng, 40, height, width)
    if halves:  # coordinates on .5, where rounding goes half to even
        anchors = torch.round(anchors * 2) / 2
    idx = torch.from_numpy(rng.integers(0, 40, (num_gt, k)))
    hint_boxes = {"tight": boxes, "wrong": boxes.flip(0), "shifted": boxes + 3.0}[hint]
    # The hint is the GT box itself here: a wrong one only moves the crops.
    got = grouped_gmaiou(hint_boxes.to(dtype), masks, anchors[idx].to(dtype), polygon)
    ref = gmaiou_bruteforce(hint_boxes.double(), masks, anchors.double(), polygon).gather(1, idx)
    assert got.dtype == dtype and got.shape == (num_gt, k)
    torch.testing.assert_close(got.double(), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_computed_in_float32(dtype):
    """float16 overflows past 65,504 (a 300-px box's area, a 90,000-pixel mask) and bfloat16
    rounds such counts: every measure computes in float32 and returns the boxes' dtype."""
    from gmaiou.measure import grouped_gmaiou

    h = w = 512
    masks = torch.zeros(2, h, w, dtype=torch.bool)
    masks[0, :400, :300] = True
    masks[1, 100:150, 200:500] = True
    boxes = torch.tensor([[0.0, 0.0, 304.0, 400.0], [200.0, 96.0, 504.0, 152.0]])
    anchors = torch.tensor([[0.0, 0.0, 400.0, 400.0], [8.0, 16.0, 320.0, 512.0], [0, 0, 0, 0.0]])
    for polygon in ("mask", "box"):
        ref = gmaiou(boxes, masks, anchors, polygon)
        got = gmaiou(boxes.to(dtype), masks, anchors.to(dtype), polygon)
        assert got.dtype == dtype and ref[0, 0] > 0.5
        torch.testing.assert_close(got, ref.to(dtype), atol=0, rtol=0)
        idx = torch.tensor([[0, 1], [1, 2]])
        got = grouped_gmaiou(boxes.to(dtype), masks, anchors[idx].to(dtype), polygon)
        torch.testing.assert_close(got, ref.gather(1, idx).to(dtype), atol=0, rtol=0)
    got = mob_ratio(anchors.to(dtype), masks)
    torch.testing.assert_close(got, mob_ratio(anchors, masks).to(dtype), atol=0, rtol=0)
    for measure in ("iou", "giou", "diou", "ciou"):
        ref = pairwise_overlaps(measure, boxes, anchors + 100)
        got = pairwise_overlaps(measure, boxes.to(dtype), (anchors + 100).to(dtype))
        torch.testing.assert_close(got, ref.to(dtype), atol=0, rtol=0)


@pytest.mark.parametrize("hint", [True, False])
def test_grouped_paths_take_no_gts(hint):
    from gmaiou.measure import grouped_counts_from_masks, grouped_gmaiou

    masks, boxes, query = (
        torch.zeros(0, 20, 20, dtype=torch.bool),
        torch.zeros(0, 4),
        torch.zeros(0, 5, 4),
    )
    area, counts = grouped_counts_from_masks(masks, boxes if hint else None, query)
    assert area.shape == (0,) and counts.shape == (0, 5)
    assert grouped_gmaiou(boxes, masks, query).shape == (0, 5)


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (7, 1), (13, 10)])
def test_fill_table_writes_the_transposed_summed_area_table(rng, dtype, shape):
    """OpenCV's table, transposed into the stored layout; int64 tables go through float64."""
    from gmaiou.measure.numpy_tables import _fill_table

    big = rng.random((shape[0] + 4, shape[1] + 6)) < 0.5
    crop = big[2 : 2 + shape[0], 3 : 3 + shape[1]]  # a view with a row stride, as the masks give
    t = np.full((shape[1] + 1, shape[0] + 1), -1, dtype=dtype)
    _fill_table(t, crop)
    ref = np.zeros((shape[0] + 1, shape[1] + 1), dtype=np.int64)
    ref[1:, 1:] = crop.cumsum(0).cumsum(1)
    np.testing.assert_array_equal(t, ref.T)


@pytest.fixture
def torch_threads():
    """``torch.set_num_threads``, with the count as it was restored after the test."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape", [(1, 1, 1), (2, 3, 680), (3, 40, 51), (2, 300, 301)])
@pytest.mark.parametrize("density", [0.0, 0.3, 1.0])
def test_count_all_on_one_or_two_threads_counts_every_pixel(
    rng, monkeypatch, torch_threads, threads, shape, density
):
    """The parallel count sums 255 int64 words a group: all-ones masks fill every byte of a
    group's sum to 255 (the most it can hold); sizes off the group length leave a tail."""
    from gmaiou.measure import pixel_counts

    monkeypatch.setattr(pixel_counts, "_PARALLEL_COUNT_MIN_BYTES", 1)  # the small shapes too
    masks = rng.random(shape) < density
    torch_threads(threads)
    assert pixel_counts._count_all(masks) == np.count_nonzero(masks)
    assert pixel_counts._count_bytes_torch(masks.reshape(-1)) == np.count_nonzero(masks)


def test_count_all_counts_non_bool_bytes_as_set_pixels(monkeypatch, torch_threads):
    """A uint8 mask may hold 255 for a set pixel: counted once, not summed, on two threads too;
    a read-only bool array is counted without a warning."""
    from gmaiou.measure import pixel_counts

    monkeypatch.setattr(pixel_counts, "_PARALLEL_COUNT_MIN_BYTES", 1)
    masks = np.zeros((2, 50, 60), dtype=np.uint8)
    masks[0, 3:7, 5:9] = 255
    masks[1, 10, :] = 2
    torch_threads(2)
    assert pixel_counts._count_all(masks) == 16 + 60
    read_only = masks != 0
    read_only.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns on wrapping a read-only array
        assert pixel_counts._count_all(read_only) == 16 + 60


def test_integral_refuses_a_destination_of_the_wrong_shape():
    import cv2

    from gmaiou.measure.numpy_tables import _integral

    with pytest.raises(RuntimeError, match="in place"):
        _integral(np.ones((3, 4), dtype=np.uint8), np.empty((4, 4), dtype=np.int32), cv2.CV_32S)


@pytest.mark.parametrize("hint", [True, False])
def test_grouped_counts_with_wide_tables_equal_int32_ones(rng, monkeypatch, hint):
    """Crops of 2**31 pixels or more get float64 tables: forced here on small masks."""
    import gmaiou.measure as measure
    from gmaiou.measure import numpy_tables

    boxes, masks = random_instances(rng, 6, 50, 40)
    query = random_anchors(rng, 6 * 15, 50, 40).view(6, 15, 4)
    hints = boxes if hint else None
    area, counts = measure.grouped_counts_from_masks(masks, hints, query)
    monkeypatch.setattr(numpy_tables, "_INT32_PIXELS", 1)
    wide_area, wide = measure.grouped_counts_from_masks(masks, hints, query)
    assert torch.equal(area, wide_area) and torch.equal(counts, wide)
    built = measure.MaskIntegrals(masks, hints)
    assert built._table.dtype == torch.int64
    assert torch.equal(built.grouped_intersection(query), counts)


def test_grouped_gmaiou_reads_non_contiguous_masks(rng):
    from gmaiou.measure import grouped_gmaiou

    boxes, masks = random_instances(rng, 5, 48, 36)
    query = random_anchors(rng, 5 * 12, 48, 36).view(5, 12, 4)
    strided = masks.transpose(1, 2).contiguous().transpose(1, 2)  # same values, column-major
    assert not strided.is_contiguous()
    assert torch.equal(grouped_gmaiou(boxes, strided, query), grouped_gmaiou(boxes, masks, query))
    assert torch.equal(gmaiou(boxes, strided, query[0]), gmaiou(boxes, masks, query[0]))


@pytest.mark.parametrize("polygon", ["mask", "box"])
def test_grouped_gmaiou_equals_gmaiou_row_by_row(rng, polygon):
    from gmaiou.measure import grouped_gmaiou

    h, w = 70, 64
    boxes, masks = random_instances(rng, 8, h, w)
    masks[2] = False  # an empty mask
    anchors = random_anchors(rng, 200, h, w)
    idx = torch.from_numpy(rng.integers(0, 200, (8, 20)))
    dense = gmaiou(boxes, masks, anchors, polygon)
    for mask_input in (masks, MaskIntegrals(masks, boxes), masks.to(torch.uint8)):
        got = grouped_gmaiou(boxes, mask_input, anchors[idx], polygon)
        assert got.dtype == anchors.dtype
        torch.testing.assert_close(got, dense.gather(1, idx), atol=1e-6, rtol=0)
    assert grouped_gmaiou(boxes, masks, anchors[idx][:, :0], polygon).shape == (8, 0)
    with pytest.raises(ValueError, match=r"shape \[8, K, 4\]"):
        grouped_gmaiou(boxes, masks, anchors[:5], polygon)


def test_tables_are_cropped_to_the_masks(rng):
    h, w = 200, 300
    boxes, masks = random_instances(rng, 10, h, w)
    for backend in BACKENDS:
        integrals = MaskIntegrals(masks, boxes, backend=backend).build()
        extents = []
        for m in masks:
            if m.any():
                rows, cols = m.any(1).nonzero(), m.any(0).nonzero()
                extents.append((rows.max() - rows.min() + 2) * (cols.max() - cols.min() + 2))
            else:
                extents.append(torch.tensor(1))
        # tight extent, or the box hint rounded outwards (at most one pixel more per side)
        bound = sum(int(e) for e in extents) + sum(2 * (h + w) for _ in extents)
        assert integrals._table.numel() <= bound < masks.numel()
        assert integrals.mask_area.tolist() == masks.sum((1, 2)).tolist()


# ----------------------------------------------------------------------------- properties


@pytest.mark.parametrize("seed", range(5))
def test_corollary_1_and_bounds_on_integer_anchors(seed):
    rng = np.random.default_rng(seed)
    h, w = 60, 60
    boxes, masks = random_instances(rng, 10, h, w)
    anchors = random_anchors(rng, 500, h, w, integer=True)
    g_mask = gmaiou(boxes, masks, anchors, polygon="mask")
    g_box = gmaiou(boxes, masks, anchors, polygon="box")
    assert (g_mask <= g_box + 1e-6).all(), "Corollary 1: GmaIoU_M <= GmaIoU_B"
    for g in (g_mask, g_box):
        assert (g >= 0).all() and (g <= 1 + 1e-6).all()


def test_fractional_anchor_rounding_can_exceed_one_for_p_m():
    # The contract counts rounded pixels but uses the continuous |A|: a full mask under an
    # anchor slightly smaller than the pixels it rounds to gives GmaIoU_M > 1. Documented, kept.
    masks = torch.zeros(1, 20, 20, dtype=torch.bool)
    masks[0, 10:21, 10:21] = True
    boxes = torch.tensor([[10.0, 10.0, 20.0, 20.0]])
    a = torch.tensor([[10.4, 10.4, 19.6, 19.6]])
    val = gmaiou(boxes, masks, a, polygon="mask").item()
    assert val == pytest.approx(100 / (9.2 * 9.2), rel=1e-5)
    assert gmaiou_bruteforce(boxes, masks, a, polygon="mask").item() == pytest.approx(val, rel=1e-6)


def test_empty_mask_zero_area_boxes_and_off_image_anchors_are_finite():
    masks = torch.zeros(3, 16, 16, dtype=torch.bool)
    masks[1, 4:8, 4:8] = True
    masks[2, 0, 0] = True
    boxes = torch.tensor([[5.0, 5.0, 5.0, 5.0], [4.0, 4.0, 8.0, 8.0], [0.0, 0.0, 0.0, 0.0]])
    anchors = torch.tensor(
        [
            [4.0, 4.0, 8.0, 8.0],
            [6.0, 6.0, 6.0, 6.0],  # zero area
            [-50.0, -50.0, -10.0, -10.0],  # wholly off the image
            [100.0, 0.0, 120.0, 16.0],
            [-5.0, -5.0, 30.0, 30.0],  # covers the whole image
            [0.0, 0.0, 0.0, 1.0],
        ]
    )
    for measure in MEASURES:
        out = pairwise_overlaps(measure, boxes, anchors, masks)
        assert out.shape == (3, 6)
        assert torch.isfinite(out).all(), measure
    g = gmaiou(boxes, masks, anchors, polygon="mask")
    assert (g[0] == 0).all(), "an empty mask gives 0 for every anchor"
    assert g[1, 0] == 1.0
    assert (g[:, 2:4] == 0).all()
    assert mob_ratio(anchors, masks)[:, 1].eq(0).all()


def test_box_measures_degenerate_values():
    gt = torch.tensor([[2.0, 2.0, 2.0, 2.0]])
    a = torch.tensor([[4.0, 2.0, 4.0, 2.0], [2.0, 2.0, 2.0, 2.0]])
    assert pairwise_overlaps("iou", gt, a).tolist() == [[0.0, 0.0]]
    # separate points: hull is a zero-area segment -> penalty defined 0
    assert pairwise_overlaps("giou", gt, a).tolist() == [[0.0, 0.0]]
    d = pairwise_overlaps("diou", gt, a)
    assert d[0, 0] == pytest.approx(-1.0, abs=1e-5) and d[0, 1] == 0.0
    assert torch.isfinite(pairwise_overlaps("ciou", gt, a)).all()


@pytest.mark.parametrize("measure", ["iou", "giou", "diou", "ciou"])
def test_box_measures_are_torchvision(rng, measure):
    boxes = random_anchors(rng, 10, 50, 50) + torch.tensor([0.0, 0.0, 1.0, 1.0])
    anchors = random_anchors(rng, 30, 50, 50) + torch.tensor([0.0, 0.0, 1.0, 1.0])
    fn = {
        "iou": tvops.box_iou,
        "giou": tvops.generalized_box_iou,
        "diou": tvops.distance_box_iou,
        "ciou": tvops.complete_box_iou,
    }[measure]
    torch.testing.assert_close(pairwise_overlaps(measure, boxes, anchors), fn(boxes, anchors))


def test_aliases():
    boxes = torch.tensor([[0.0, 0.0, 4.0, 4.0]])
    masks = torch.zeros(1, 8, 8, dtype=torch.bool)
    masks[0, :2, :4] = True
    a = torch.tensor([[0.0, 0.0, 4.0, 2.0], [0.0, 2.0, 4.0, 4.0]])
    torch.testing.assert_close(pairwise_overlaps("maiou", boxes, a, masks), maiou(boxes, masks, a))
    torch.testing.assert_close(
        pairwise_overlaps("gmaiou-box", boxes, a, masks), maiou(boxes, masks, a)
    )
    torch.testing.assert_close(
        pairwise_overlaps("gmaiou", boxes, a, masks), gmaiou(boxes, masks, a)
    )
    torch.testing.assert_close(
        pairwise_overlaps("gmaiou-mask", boxes, a, masks), gmaiou(boxes, masks, a)
    )


# ----------------------------------------------------------------------------- empty and bad inputs


@pytest.mark.parametrize("num_gt,num_anchors", [(0, 0), (0, 5), (3, 0)])
def test_empty_inputs(rng, num_gt, num_anchors):
    boxes, masks = random_instances(rng, num_gt, 20, 20)
    anchors = random_anchors(rng, num_anchors, 20, 20)
    for polygon in ("mask", "box"):
        assert gmaiou(boxes, masks, anchors, polygon).shape == (num_gt, num_anchors)
        assert gmaiou_bruteforce(boxes, masks, anchors, polygon).shape == (num_gt, num_anchors)
    assert mob_ratio(anchors, masks).shape == (num_gt, num_anchors)
    assert pairwise_overlaps("iou", boxes, anchors).shape == (num_gt, num_anchors)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_box_checks_name_the_bad_box_in_every_dtype(dtype):
    """The CPU's NumPy fast path (float32, float64) and torch's (others) find the same box."""
    from gmaiou._validation import check_boxes

    good = torch.tensor([[0.0, 0.0, 4.0, 4.0]] * 3, dtype=dtype, requires_grad=True)
    assert check_boxes(good, "anchors") is good
    for row, value, match in [
        (2, float("inf"), r"anchors\[2\] has a non-finite"),
        (1, -1.0, r"anchors\[1\] .* x2 < x1"),
    ]:
        bad = good.detach().clone()
        bad[row, 2] = value
        with pytest.raises(ValueError, match=match):
            check_boxes(bad.requires_grad_(), "anchors")


def test_uint8_masks_accepted():
    masks = torch.zeros(1, 6, 6, dtype=torch.uint8)
    masks[0, 1:3, 1:3] = 1
    boxes = torch.tensor([[1.0, 1.0, 3.0, 3.0]])
    assert gmaiou(boxes, masks, boxes).item() == 1.0


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"gt_boxes": torch.zeros(2, 3)}, r"gt_boxes must have shape \[N, 4\]"),
        ({"anchors": torch.zeros(5)}, r"anchors must have shape \[N, 4\]"),
        ({"gt_boxes": torch.tensor([[5.0, 0.0, 1.0, 4.0]])}, r"gt_boxes\[0\].*x2 < x1"),
        ({"anchors": torch.tensor([[0.0, 5.0, 4.0, 1.0]])}, r"anchors\[0\].*y2 < y1"),
        (
            {"anchors": torch.tensor([[0.0, float("nan"), 4.0, 1.0]])},
            r"anchors\[0\] has a non-finite",
        ),
        (
            {"gt_masks": torch.zeros(2, 8, 8, dtype=torch.bool)},
            r"holds 2 masks but there are 1 boxes",
        ),
        (
            {"gt_masks": torch.zeros(8, 8, dtype=torch.bool)},
            r"gt_masks must have shape \[G, H, W\]",
        ),
        ({"gt_masks": torch.full((1, 8, 8), 2, dtype=torch.uint8)}, r"binary"),
        ({"polygon": "hull"}, r"polygon must be 'mask' or 'box'"),
    ],
)
def test_bad_inputs_have_clear_errors(kwargs, match):
    args = {
        "gt_boxes": torch.tensor([[0.0, 0.0, 4.0, 4.0]]),
        "gt_masks": torch.ones(1, 8, 8, dtype=torch.bool),
        "anchors": torch.tensor([[0.0, 0.0, 4.0, 4.0]]),
        "polygon": "mask",
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        gmaiou(**args)
    with pytest.raises(ValueError, match=match):
        gmaiou_bruteforce(**args)


def test_float_masks_rejected():
    with pytest.raises(TypeError, match="bool or uint8"):
        gmaiou(torch.zeros(1, 4), torch.zeros(1, 4, 4), torch.zeros(1, 4))


def test_unknown_measure_and_missing_masks():
    with pytest.raises(ValueError, match="unknown measure 'jaccard'"):
        pairwise_overlaps("jaccard", torch.zeros(1, 4), torch.zeros(1, 4))
    with pytest.raises(ValueError, match="mask-aware and needs gt_masks"):
        pairwise_overlaps("gmaiou-mask", torch.zeros(1, 4), torch.zeros(1, 4))


def test_mask_integrals_bad_inputs():
    with pytest.raises(ValueError, match="masks must have shape"):
        MaskIntegrals(torch.zeros(4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="boxes must have shape"):
        MaskIntegrals(torch.zeros(2, 4, 4, dtype=torch.bool), torch.zeros(3, 4))
    with pytest.raises(ValueError, match="backend"):
        MaskIntegrals(torch.zeros(2, 4, 4, dtype=torch.bool), backend="cuda")
    mi = MaskIntegrals(torch.zeros(2, 4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="must pair up"):
        mi.paired_intersection(torch.zeros(3, dtype=torch.long), torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"shape \[2, K, 4\]"):
        mi.grouped_intersection(torch.zeros(3, 5, 4))
    with pytest.raises(ValueError, match="holds 2 masks but there are 1 boxes"):
        gmaiou(torch.zeros(1, 4), mi, torch.zeros(1, 4))


# ----------------------------------------------------------------------------- devices and real data


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_matches_cpu(rng):
    h, w = 96, 128
    boxes, masks = random_instances(rng, 15, h, w)
    anchors = random_anchors(rng, 2000, h, w)
    for polygon in ("mask", "box"):
        cpu = gmaiou(boxes, masks, anchors, polygon)
        gpu = gmaiou(boxes.cuda(), masks.cuda(), anchors.cuda(), polygon)
        assert gpu.device.type == "cuda"
        torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-5, rtol=0)
    integrals = MaskIntegrals(masks, boxes).to("cuda")
    torch.testing.assert_close(
        integrals.intersection(anchors.cuda()).cpu(), MaskIntegrals(masks).intersection(anchors)
    )


def test_real_coco_masks_match_bruteforce(coco_sample, rng):
    _, coco = coco_sample
    image_ids = sorted(coco.getImgIds())[:6]
    checked = 0
    for image_id in image_ids:
        boxes, masks = coco_image_instances(coco, image_id)
        if boxes.shape[0] == 0:
            continue
        h, w = masks.shape[1:]
        anchors = random_anchors(rng, 150, h, w)
        # COCO boxes do not always hold every pixel of their polygon: the crop must not lose any.
        for polygon in ("mask", "box"):
            ref = gmaiou_bruteforce(boxes, masks, anchors, polygon)
            torch.testing.assert_close(
                gmaiou(boxes, masks, anchors, polygon), ref, atol=1e-5, rtol=0
            )
        area = MaskIntegrals(masks, boxes).mask_area
        assert area.tolist() == masks.sum((1, 2)).tolist()
        checked += 1
    assert checked >= 3


def test_real_coco_gt_mob_share(coco_sample):
    """On real COCO annotations about 27-29% of GT boxes have MOB < 0.5 (docs/spec.md section 5)."""
    _, coco = coco_sample
    mobs = []
    for image_id in sorted(coco.getImgIds()):
        boxes, masks = coco_image_instances(coco, image_id)
        if boxes.shape[0]:
            mobs.append(torch.diagonal(mob_ratio(boxes, masks)))
    mobs = torch.cat(mobs)
    share = float((mobs < 0.5).float().mean())
    assert 0.2 < share < 0.4, share
    assert math.isfinite(share)


# ----------------------------------------------------------------------------- API consistency


@pytest.mark.parametrize(
    ("masks", "error", "message"),
    [
        (torch.tensor([[[0.0, 1.0], [1.0, 0.0]]]), TypeError, "must be bool or uint8"),
        (torch.tensor([[[0, 2], [1, 0]]], dtype=torch.uint8), ValueError, "must be binary"),
        (torch.tensor([[[0, -1], [1, 0]]], dtype=torch.int64), ValueError, "must be binary"),
    ],
)
def test_mask_integrals_validate_masks_as_gmaiou_does(masks, error, message):
    """The same input fails the same way in MaskIntegrals and in gmaiou()."""
    boxes = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    with pytest.raises(error, match=message) as from_gmaiou:
        gmaiou(boxes, masks, boxes)
    with pytest.raises(error, match=message) as from_integrals:
        MaskIntegrals(masks, boxes)
    # Same wording; only the argument's own name differs.
    assert str(from_integrals.value) == str(from_gmaiou.value).replace("gt_masks", "masks", 1)


@pytest.mark.parametrize("dtype", [torch.bool, torch.uint8, torch.int32, torch.int64])
def test_mask_integrals_accept_binary_integers(dtype):
    masks = torch.tensor([[[0, 1, 1], [1, 1, 0]]]).to(dtype)
    box = torch.tensor([[0.0, 0.0, 3.0, 2.0]])
    assert MaskIntegrals(masks, box).mask_area.tolist() == [4]
    assert MaskIntegrals(masks).intersection(torch.tensor([[1.0, 0.0, 2.0, 2.0]])).item() == 2


def test_mob_ratio_takes_boxes_then_masks(l_mask):
    boxes, masks = l_mask
    # |M| = 10 pixels in the 5 x 6 box: 1/3.
    assert mob_ratio(boxes, masks).item() == pytest.approx(10 / 30)
    assert mob_ratio(boxes, MaskIntegrals(masks)).item() == pytest.approx(10 / 30)
    with pytest.raises(ValueError, match=r"boxes must have shape \[N, 4\]"):
        mob_ratio(masks, boxes)


def test_measures_accept_an_anchor_grid():
    from gmaiou.anchors import atss_anchors

    boxes, masks = random_instances(np.random.default_rng(3), 3, 64, 64)
    grid = atss_anchors(64)
    for polygon in ("mask", "box"):
        expected = gmaiou(boxes, masks, grid.anchors, polygon)
        torch.testing.assert_close(gmaiou(boxes, masks, grid, polygon), expected)
    torch.testing.assert_close(maiou(boxes, masks, grid), maiou(boxes, masks, grid.anchors))
    torch.testing.assert_close(
        pairwise_overlaps("iou", boxes, grid), pairwise_overlaps("iou", boxes, grid.anchors)
    )
    torch.testing.assert_close(mob_ratio(grid, masks), mob_ratio(grid.anchors, masks))


def test_integrals_moved_to_a_device_report_the_device_their_tensors_are_on():
    # "cuda" moves tensors to "cuda:0": the integrals must report that, or every device
    # comparison with a tensor fails ("cuda" != "cuda:0"); "cpu:0" shows the same on the CPU.
    from gmaiou.anchors import atss_anchors
    from gmaiou.assigners import ATSSAssigner

    boxes, masks = random_instances(np.random.default_rng(0), 3, 64, 64)
    moved = MaskIntegrals(masks, boxes).to("cpu:0")
    assert moved.device == boxes.device == torch.device("cpu")
    grid = atss_anchors(64)
    ATSSAssigner(measure="gmaiou-mask").assign(grid, gt_boxes=boxes, gt_masks=moved)
