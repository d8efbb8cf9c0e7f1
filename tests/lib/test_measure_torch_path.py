"""The torch (GPU) path of GmaIoU, run on the CPU: tables, look-ups and formula agree bit for
bit with the NumPy path and with brute force, and the hot paths never wait on the device."""

from __future__ import annotations

import collections

import numpy as np
import pytest
import torch
from conftest import random_anchors, random_instances
from torch.utils._python_dispatch import TorchDispatchMode

from gmaiou.anchors import atss_anchors
from gmaiou.assigners import ATSSAssigner
from gmaiou.measure import (
    MaskIntegrals,
    gmaiou,
    gmaiou_bruteforce,
    gmaiou_from_counts,
    grouped_gmaiou,
    mob_ratio,
    torch_tables,
)
from gmaiou.measure.integrals import _whole_image_integrals
from gmaiou.measure.mask_aware import _grouped_gmaiou

POLYGONS = ["mask", "box"]


def bits(x: torch.Tensor) -> torch.Tensor:
    """A float tensor's bit patterns (torch.equal calls -0.0 and 0.0 equal)."""
    return x.view({torch.float32: torch.int32, torch.float64: torch.int64}[x.dtype])


def hard_case(rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """An H != W image with an empty mask, a one-pixel mask, a mask on the border, a
    zero-area box, and anchors off the image, of zero area and on .5 coordinates."""
    h, w = 41, 58
    boxes, masks = random_instances(rng, 7, h, w)
    masks[1] = False
    boxes[1] = torch.tensor([20.0, 20.0, 20.0, 20.0])
    masks[2] = False
    masks[2, 40, 57] = True
    boxes[2] = torch.tensor([57.0, 40.0, 58.0, 41.0])
    masks[3, :, :3] = True
    anchors = random_anchors(rng, 400, h, w)
    anchors[:60] = torch.round(anchors[:60] * 2) / 2  # half to even
    anchors[60:70] -= 300.0  # wholly off the image
    anchors[70:75, 2:] = anchors[70:75, :2]  # zero area
    anchors[75] = torch.tensor([-1e6, -1e6, 1e6, 1e6])  # far beyond every side
    return boxes, masks, anchors


def torch_paths(masks: torch.Tensor, boxes: torch.Tensor) -> dict[str, MaskIntegrals]:
    """Every torch look-up path: cropped torch tables, the GPU's one-off whole-image
    tables, and NumPy-cropped tables read by the torch look-ups (as after ``.to("cuda")``)."""
    moved = MaskIntegrals(masks, boxes, backend="numpy").to("cpu")
    moved._numpy_lookups, moved._frame = False, None
    return {
        "torch": MaskIntegrals(masks, boxes, backend="torch"),
        "whole image": _whole_image_integrals(masks),
        "numpy tables, torch look-ups": moved,
    }


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("polygon", POLYGONS)
def test_torch_paths_equal_the_numpy_path_bit_for_bit(rng, dtype, polygon):
    boxes, masks, anchors = hard_case(rng)
    anchors, gt = anchors.to(dtype), boxes.to(dtype)
    numpy_tables = MaskIntegrals(masks, boxes, backend="numpy")
    dense = gmaiou(gt, numpy_tables, anchors, polygon)
    ref = gmaiou_bruteforce(gt, masks, anchors, polygon)
    torch.testing.assert_close(dense, ref, atol=1e-5, rtol=0)
    idx = torch.from_numpy(rng.integers(0, anchors.shape[0], (masks.shape[0], 23)))
    grouped = grouped_gmaiou(gt, masks, anchors[idx], polygon)  # NumPy's raw-mask path
    counts = numpy_tables.intersection(anchors)
    for name, integrals in torch_paths(masks, boxes).items():
        got = gmaiou(gt, integrals, anchors, polygon)
        assert got.dtype == dtype and torch.equal(bits(got), bits(dense)), name
        got = grouped_gmaiou(gt, integrals, anchors[idx], polygon)
        assert torch.equal(bits(got), bits(grouped)), name
        assert torch.equal(integrals.intersection(anchors), counts), name
        assert integrals.intersection(anchors).dtype == torch.long
        assert torch.equal(integrals.grouped_intersection(anchors[idx]), counts.gather(1, idx))
        gi = idx[:, :5].reshape(-1) % masks.shape[0]
        paired = integrals.paired_intersection(gi, anchors[:35])
        assert torch.equal(paired, counts[gi, torch.arange(35)]), name
        assert integrals.mask_area.tolist() == masks.sum((1, 2)).tolist(), name
        assert torch.equal(mob_ratio(anchors, integrals), mob_ratio(anchors, numpy_tables))


def test_grouped_gmaiou_on_whole_image_tables_matches_bruteforce(rng):
    boxes, masks, anchors = hard_case(rng)
    idx = torch.from_numpy(rng.integers(0, anchors.shape[0], (masks.shape[0], 30)))
    for polygon in POLYGONS:
        ref = gmaiou_bruteforce(boxes, masks, anchors, polygon).gather(1, idx)
        got = _grouped_gmaiou(boxes, _whole_image_integrals(masks), anchors[idx], polygon)
        torch.testing.assert_close(got, ref, atol=1e-5, rtol=0)


def test_torch_tables_are_those_built_mask_by_mask(rng):
    """The one-gather build cuts the same tight crops, in the same buffer layout, as the
    per-mask loop that large stacks take."""
    boxes, masks, _ = hard_case(rng)
    for stack in (masks, masks[:, :, :30], masks[:1], masks[1:2]):
        gathered = torch_tables._build_tables_torch(stack)
        looped = torch_tables._build_tables_torch_per_mask(stack)
        for name, a, b in zip(["table", "origin", "size", "offset", "area"], gathered, looped):
            nonempty = stack.flatten(1).any(1)
            if name == "origin":  # an empty mask's origin is arbitrary (its size is 0)
                a, b = a[nonempty], b[nonempty]
            assert torch.equal(a, b), name


def test_large_stacks_are_built_mask_by_mask(rng, monkeypatch):
    boxes, masks, anchors = hard_case(rng)
    ref = gmaiou(boxes, MaskIntegrals(masks, boxes, backend="numpy"), anchors, "box")
    monkeypatch.setattr(torch_tables, "_STACK_MAX_NUMEL", 0)
    assert not torch_tables._fits_stack(masks)
    got = gmaiou(boxes, MaskIntegrals(masks, boxes, backend="torch"), anchors, "box")
    assert torch.equal(bits(got), bits(ref))


@pytest.mark.parametrize("polygon", POLYGONS)
def test_empty_inputs_on_the_torch_path(rng, polygon):
    boxes, masks, anchors = hard_case(rng)
    no_gt = {
        "torch": MaskIntegrals(masks[:0], boxes[:0], backend="torch"),
        "whole image": _whole_image_integrals(masks[:0]),
    }
    for integrals in no_gt.values():
        assert len(integrals) == 0
        assert gmaiou(boxes[:0], integrals, anchors, polygon).shape == (0, anchors.shape[0])
        assert integrals.intersection(anchors).shape == (0, anchors.shape[0])
        assert grouped_gmaiou(boxes[:0], integrals, anchors[:0, None], polygon).shape == (0, 1)
    for integrals in torch_paths(masks, boxes).values():
        assert gmaiou(boxes, integrals, anchors[:0], polygon).shape == (masks.shape[0], 0)
        empty_k = grouped_gmaiou(boxes, integrals, anchors[None, :0].expand(7, 0, 4), polygon)
        assert empty_k.shape == (7, 0)
    nothing = torch.zeros_like(masks)  # every mask empty: every value 0
    for integrals in torch_paths(nothing, boxes).values():
        got = gmaiou(boxes, integrals, anchors, polygon)
        assert torch.equal(bits(got), bits(torch.zeros_like(got)))
        assert integrals.mask_area.tolist() == [0] * masks.shape[0]


def test_one_pixel_and_one_line_images():
    for h, w in [(1, 1), (1, 9), (7, 1)]:
        masks = torch.ones(2, h, w, dtype=torch.bool)
        masks[1, 0, 0] = False
        boxes = torch.tensor([[0.0, 0.0, w, h]] * 2)
        anchors = torch.tensor(
            [[0.0, 0.0, 1.0, 1.0], [-2.0, -2.0, 20.0, 20.0], [0.5, 0.0, 2.5, 1.0]]
        )
        ref = gmaiou_bruteforce(boxes, masks, anchors, "mask")
        for integrals in torch_paths(masks, boxes).values():
            torch.testing.assert_close(gmaiou(boxes, integrals, anchors), ref, atol=1e-6, rtol=0)


def test_gmaiou_from_counts_keeps_its_contract():
    """Integer counts convert by type promotion; |M| = 0 or a zero denominator gives 0."""
    inter = torch.tensor([[3, 0, 2, 5]])
    mask_area = torch.tensor([[5, 0, 0, 5]])
    anchor_area = torch.tensor([4.0, 0.0, 2.0, 0.0])
    gt_area = torch.tensor([[6.0]])
    union = torch.tensor([[7.0, 6.0, 6.0, 0.0]])
    got = gmaiou_from_counts(inter, mask_area, gt_area, anchor_area, union, "box")
    assert got.dtype == torch.float32
    assert got.tolist() == [[pytest.approx(3 * 6 / (5 * 7)), 0.0, 0.0, 0.0]]
    got = gmaiou_from_counts(inter, mask_area, gt_area, anchor_area, None, "mask")
    assert got.tolist() == [[pytest.approx(3 / 6), 0.0, 0.0, 0.0]]
    as_floats = gmaiou_from_counts(
        inter.double(), mask_area.double(), gt_area, anchor_area, union, "box"
    )
    assert as_floats.dtype == torch.float32
    ref = gmaiou_from_counts(inter, mask_area, gt_area, anchor_area, union, "box")
    assert torch.equal(as_floats, ref)
    with pytest.raises(ValueError, match="polygon"):
        gmaiou_from_counts(inter, mask_area, gt_area, anchor_area, union, "hull")


# ----------------------------------------------------------------------------- host syncs

#: Operators whose result's shape or value the host must read: a GPU waits for them.
SYNCS = {"nonzero", "_local_scalar_dense", "unique", "_unique2", "masked_select"}


class _Syncs(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.seen: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        name = func._schema.name.split("::")[1]
        if name in SYNCS:
            self.seen[name] += 1
        return func(*args, **(kwargs or {}))


def test_gpu_paths_from_raw_masks_wait_on_nothing(rng):
    """The GPU's raw-mask paths (what as_integrals builds there), the look-ups on prepared
    tables and the formula run no operator that synchronises with the host."""
    boxes, masks, anchors = hard_case(rng)
    idx = torch.from_numpy(rng.integers(0, anchors.shape[0], (masks.shape[0], 9)))
    prepared = MaskIntegrals(masks, boxes, backend="torch").build()
    with _Syncs() as mode:
        for polygon in POLYGONS:
            gmaiou(boxes, _whole_image_integrals(masks), anchors, polygon)
            _grouped_gmaiou(boxes, _whole_image_integrals(masks), anchors[idx], polygon)
            gmaiou(boxes, prepared, anchors, polygon)
            _grouped_gmaiou(boxes, prepared, anchors[idx], polygon)
        prepared.intersection(anchors)
    assert not mode.seen
    with _Syncs() as mode:
        MaskIntegrals(masks, boxes, backend="torch").build()
    assert mode.seen == {"_local_scalar_dense": 1}  # the cropped buffer's size


def test_atss_on_whole_image_tables_equals_atss_on_numpy_tables():
    grid = atss_anchors(128)
    rng = np.random.default_rng(5)
    boxes, masks = random_instances(rng, 6, 128, 128)
    for measure_name in ("gmaiou-mask", "gmaiou-box"):
        assigner = ATSSAssigner(measure=measure_name)
        ref = assigner.assign(grid, gt_boxes=boxes, gt_masks=masks)
        for integrals in torch_paths(masks, boxes).values():
            got = assigner.assign(grid, gt_boxes=boxes, gt_masks=integrals)
            assert torch.equal(got.gt_inds, ref.gt_inds)
            assert torch.equal(bits(got.max_overlaps), bits(ref.max_overlaps))
