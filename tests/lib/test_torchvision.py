"""gmaiou.torchvision: GmaIoU matching inside torchvision's detectors.

Tiny backbones at 96 px and weights=None: every family trains one step in well under a second.
"""

from __future__ import annotations

import copy
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torchvision
from conftest import random_anchors, random_instances
from torch import nn
from torchvision.models.detection import (
    FCOS,
    FasterRCNN,
    MaskRCNN,
    RetinaNet,
    ssdlite320_mobilenet_v3_large,
)
from torchvision.models.detection._utils import Matcher
from torchvision.models.detection.anchor_utils import AnchorGenerator, DefaultBoxGenerator
from torchvision.models.detection.ssd import SSD
from torchvision.ops import MultiScaleRoIAlign

from gmaiou.assigners import ATSSAssigner
from gmaiou.measure import gmaiou_bruteforce, pairwise_overlaps
from gmaiou.shapes import l_shape
from gmaiou.torchvision import (
    MaskTableCache,
    atss_matches,
    capture_matches,
    is_switched,
    match_quality,
    restore,
    use_measure,
)

SIZE = 96
FAMILIES = ["maskrcnn", "fasterrcnn", "retinanet", "ssd", "ssdlite"]


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class TinyBackbone(nn.Module):
    """Three feature maps (strides 4, 8, 16) of ``channels`` channels."""

    def __init__(self, channels: int = 8) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, channels, 3, 2, 1), nn.ReLU(), nn.Conv2d(channels, channels, 3, 2, 1)
        )
        self.levels = nn.ModuleList(
            nn.Sequential(nn.Conv2d(channels, channels, 3, 1 if i == 0 else 2, 1), nn.ReLU())
            for i in range(3)
        )
        self.out_channels = channels

    def forward(self, x):
        x = self.stem(x)
        out = OrderedDict()
        for i, level in enumerate(self.levels):
            x = level(x)
            out[str(i)] = x
        return out


def build(family: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    names = ["0", "1", "2"]
    anchors = AnchorGenerator(((16,), (32,), (64,)), ((0.5, 1.0, 2.0),) * 3)
    size = {"min_size": SIZE, "max_size": SIZE}
    if family in ("maskrcnn", "fasterrcnn"):
        kw = dict(
            rpn_anchor_generator=anchors,
            box_roi_pool=MultiScaleRoIAlign(names, 7, 2),
            box_batch_size_per_image=64,
            rpn_batch_size_per_image=64,
            box_detections_per_img=20,
            **size,
        )
        if family == "fasterrcnn":
            return FasterRCNN(TinyBackbone(), num_classes=3, **kw)
        return MaskRCNN(
            TinyBackbone(), num_classes=3, mask_roi_pool=MultiScaleRoIAlign(names, 14, 2), **kw
        )
    if family == "retinanet":
        return RetinaNet(TinyBackbone(), num_classes=3, anchor_generator=anchors, **size)
    if family == "ssd":
        boxes = DefaultBoxGenerator([[2], [2], [2]], min_ratio=0.2, max_ratio=0.9)
        backbone = TinyBackbone()
        backbone.out_channels = [backbone.out_channels] * 3  # SSD reads one per level
        return SSD(backbone, boxes, (SIZE, SIZE), num_classes=3)
    if family == "ssdlite":
        return ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=3)
    if family == "fcos":
        points = AnchorGenerator(((4,), (8,), (16,)), ((1.0,),) * 3)
        return FCOS(TinyBackbone(32), num_classes=3, anchor_generator=points, **size)
    raise ValueError(family)


def scene(num_images: int = 2, empty_mask: bool = False):
    """Images with an L-shaped object (mask-over-box ratio about 0.27) and a rectangle."""
    g = torch.Generator().manual_seed(7)
    images, targets = [], []
    for i in range(num_images):
        images.append(torch.rand(3, SIZE, SIZE, generator=g))
        ell = torch.from_numpy(l_shape((SIZE, SIZE), 8.0 + 4 * i, 10.0, 44.0, 6.0))
        rect = torch.zeros(SIZE, SIZE, dtype=torch.bool)
        rect[52:84, 40:90] = True
        ys, xs = torch.where(ell)
        boxes = torch.tensor(
            [
                [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)],
                [40.0, 52.0, 90.0, 84.0],
            ]
        )
        masks = torch.stack([ell, rect]).to(torch.uint8)
        if empty_mask:
            masks[1] = 0
        targets.append({"boxes": boxes, "labels": torch.tensor([1, 2]), "masks": masks})
    return images, targets


def sgd_step(model: nn.Module, images, targets, seed: int = 3):
    model.train()
    torch.manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    losses = model(images, copy.deepcopy(targets))
    sum(losses.values()).backward()
    opt.step()
    return {k: v.detach() for k, v in losses.items()}


def scaled(boxes: torch.Tensor, factor: float) -> torch.Tensor:
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]) * (factor / 2)
    return torch.cat([centre - half, centre + half], dim=1)


# ------------------------------------------------------------------------ bit for bit with IoU


@pytest.mark.parametrize("family", FAMILIES)
def test_iou_switch_trains_bit_for_bit_like_the_stock_model(family):
    images, targets = scene()
    stock = build(family)
    switched = use_measure(copy.deepcopy(stock), "iou")
    assert is_switched(switched) and not is_switched(stock)
    want, got = sgd_step(stock, images, targets), sgd_step(switched, images, targets)
    assert want.keys() == got.keys()
    for k in want:
        assert torch.equal(want[k], got[k]), k
    for (name, a), (_, b) in zip(stock.state_dict().items(), switched.state_dict().items()):
        assert torch.equal(a, b), name


def test_fcos_iou_switch_is_atss_with_iou_bit_for_bit():
    """FCOS's stock loss fed ATSS-IoU matches computed outside equals the switched model's."""
    images, targets = scene()
    stock = build("fcos")
    switched = use_measure(copy.deepcopy(stock), "iou")
    head = stock.head

    def reference_loss(targets, head_outputs, anchors, num_anchors_per_level):
        assigner = ATSSAssigner(topk=9, measure="iou")
        matched = [
            assigner.assign(
                scaled(a, 8.0), gt_boxes=t["boxes"], num_level_anchors=num_anchors_per_level
            ).gt_inds
            for a, t in zip(anchors, targets)
        ]
        return head.compute_loss(targets, head_outputs, anchors, matched)

    stock.compute_loss = reference_loss
    with capture_matches(switched) as records:
        got = sgd_step(switched, images, targets)
    want = sgd_step(stock, images, targets)
    for k in want:
        assert torch.equal(want[k], got[k]), k
    for a, b in zip(stock.parameters(), switched.parameters()):
        assert torch.equal(a, b)
    assert [r.stage for r in records] == ["fcos", "fcos"]
    assert all(int((r.matched >= 0).sum()) > 0 for r in records)


# ------------------------------------------------------------------- the match-quality matrix


@pytest.mark.parametrize("measure,polygon", [("gmaiou", "mask"), ("maiou", "box")])
def test_match_quality_equals_the_bruteforce_reference(measure, polygon):
    rng = np.random.default_rng(5)
    gt_boxes, masks = random_instances(rng, 5, 60, 80)
    random = random_anchors(rng, 300, 60, 80)  # many partly or wholly off the image
    off = torch.tensor([[-40.0, -30.0, -5.0, -2.0], [85.0, 0.0, 120.0, 50.0], [-10, -10, 90, 70]])
    jitter = torch.from_numpy(rng.normal(0, 3, (5, 20, 4))).float()
    corners = (gt_boxes[:, None, :] + jitter).reshape(-1, 2, 2)  # proposals around each GT
    proposals = torch.cat([corners.min(1).values, corners.max(1).values], 1)
    boxes = torch.cat([random, off, proposals, gt_boxes])
    keep = torch.ones(len(gt_boxes), dtype=torch.bool)
    keep[(gt_boxes[:, 2:] <= gt_boxes[:, :2]).any(1)] = False  # box IoU fallback is tested apart
    gt_boxes, masks = gt_boxes[keep], masks[keep]
    target64 = {"boxes": gt_boxes.double(), "masks": masks}
    exact = match_quality(target64, boxes.double(), measure)
    assert exact.dtype == torch.float64 and exact.shape == (len(gt_boxes), len(boxes))
    assert torch.equal(exact, gmaiou_bruteforce(gt_boxes.double(), masks, boxes.double(), polygon))
    got32 = match_quality({"boxes": gt_boxes, "masks": masks.to(torch.uint8)}, boxes, measure)
    ref32 = gmaiou_bruteforce(gt_boxes, masks, boxes, polygon)
    assert got32.dtype == torch.float32
    assert float((got32 - ref32).abs().max()) <= 1e-6


def test_box_measures_are_torchvisions_and_the_librarys():
    rng = np.random.default_rng(2)
    gt_boxes, masks = random_instances(rng, 4, 50, 50)
    gt_boxes = gt_boxes + torch.tensor([0.0, 0.0, 1.0, 1.0])
    boxes = random_anchors(rng, 100, 50, 50)
    target = {"boxes": gt_boxes}  # box measures need no masks
    assert torch.equal(
        match_quality(target, boxes, "iou"), torchvision.ops.box_iou(gt_boxes, boxes)
    )
    for m in ("giou", "diou"):
        assert torch.equal(match_quality(target, boxes, m), pairwise_overlaps(m, gt_boxes, boxes))


def test_an_empty_mask_row_falls_back_to_box_iou():
    images, targets = scene(1, empty_mask=True)
    t = targets[0]
    anchors = random_anchors(np.random.default_rng(0), 200, SIZE, SIZE)
    q = match_quality(t, anchors, "gmaiou")
    iou = torchvision.ops.box_iou(t["boxes"], anchors)
    assert torch.equal(q[1], iou[1])
    ref = gmaiou_bruteforce(t["boxes"][:1], t["masks"][:1], anchors)[0]
    assert float((q[0] - ref).abs().max()) <= 1e-6
    # ATSS: the empty-mask GT takes the anchors ATSS-IoU gives it alone.
    grid = torch.cat([scaled(a, 1.0) for a in _fcos_points()])
    levels = [len(a) for a in _fcos_points()]
    got = atss_matches(t, grid, levels, "gmaiou", anchor_scale=8.0)
    alone = atss_matches({"boxes": t["boxes"][1:]}, grid, levels, "iou", anchor_scale=8.0)
    assert torch.equal(got == 1, alone == 0) and int((got == 1).sum()) > 0
    assert int((got == 0).sum()) > 0
    # Inside Mask R-CNN: the RPN labels an image whose only GT has an empty mask as box IoU does.
    single = [{k: v[1:] for k, v in t.items()}]
    runs = {}
    for measure in ("iou", "gmaiou"):
        model = use_measure(build("maskrcnn"), measure)
        with capture_matches(model) as records:
            sgd_step(model, images, single)
        runs[measure] = records
    for a, b in zip(runs["iou"], runs["gmaiou"]):
        assert a.stage == b.stage
        if a.stage == "rpn":
            assert torch.equal(a.quality, b.quality) and torch.equal(a.matched, b.matched)


def _fcos_points():
    out = []
    for stride in (4, 8, 16):
        n = SIZE // stride
        c = (torch.arange(n, dtype=torch.float32) + 0.5) * stride
        cy, cx = torch.meshgrid(c, c, indexing="ij")
        ctr = torch.stack([cx.flatten(), cy.flatten()], 1)
        out.append(torch.cat([ctr - stride / 2, ctr + stride / 2], 1))
    return out


def test_a_mask_measure_without_masks_names_the_key():
    gt = torch.tensor([[10.0, 10.0, 40.0, 40.0]])
    with pytest.raises(ValueError, match=r"\['masks'\]"):
        match_quality({"boxes": gt}, gt, "gmaiou")
    images, targets = scene(1)
    del targets[0]["masks"]
    model = use_measure(build("retinanet"), "maiou")
    with pytest.raises(ValueError, match=r"'masks'"):
        sgd_step(model, images, targets)


def test_masks_must_be_at_the_image_size():
    images, targets = scene(1)
    targets[0]["masks"] = targets[0]["masks"][:, :80]
    model = use_measure(build("retinanet"), "gmaiou")
    with pytest.raises(ValueError, match="image's size"):
        sgd_step(model, images, targets)


# ----------------------------------------------------------- matches captured inside the model


def _transformed(model, images, targets):
    model.transform.train()
    _, out = model.transform(list(images), copy.deepcopy(targets))
    return out


def test_captured_rcnn_matches_equal_the_bruteforce_outside():
    images, targets = scene()
    model = use_measure(build("maskrcnn"), "gmaiou")
    cache = model.rpn._gmaiou_switch.cache
    builds = cache.builds
    with capture_matches(model) as records:
        sgd_step(model, images, targets)
    assert cache.builds - builds == len(images)  # one table set per image, shared by both stages
    assert len(cache) == 0  # dropped when the forward ends
    assert [r.stage for r in records] == ["rpn", "rpn", "roi", "roi"]
    inside = _transformed(model, images, targets)
    rpn_matcher = Matcher(0.7, 0.3, allow_low_quality_matches=True)
    roi_matcher = Matcher(0.5, 0.5, allow_low_quality_matches=False)
    for r in records:
        t = inside[r.image]
        assert torch.equal(r.gt_boxes, t["boxes"])
        ref = gmaiou_bruteforce(t["boxes"], t["masks"], r.boxes, "mask")
        if r.stage == "rpn":
            assert float((r.quality - ref).abs().max()) <= 1e-6
            assert torch.equal(r.matched, rpn_matcher(ref))
        else:
            g = len(t["boxes"])
            assert torch.equal(r.boxes[-g:], t["boxes"])
            rows = torch.arange(g)
            ref[rows, rows + len(r.boxes) - g] = 1.0  # the GT-proposal policy
            assert float((r.quality - ref).abs().max()) <= 1e-6
            assert torch.equal(r.matched, roi_matcher(ref))
            assert torch.equal(r.matched[-g:], rows)


def test_captured_single_stage_matches_equal_those_outside():
    images, targets = scene()
    for family, stage in (("retinanet", "retinanet"), ("ssd", "ssd")):
        model = use_measure(build(family), "maiou")
        with capture_matches(model) as records:
            sgd_step(model, images, targets)
        inside = _transformed(model, images, targets)
        matcher = model.proposal_matcher
        assert [r.stage for r in records] == [stage, stage]
        for r in records:
            t = inside[r.image]
            ref = gmaiou_bruteforce(t["boxes"], t["masks"], r.boxes, "box")
            assert float((r.quality - ref).abs().max()) <= 1e-6
            assert torch.equal(r.matched, matcher(ref))
    model = use_measure(build("fcos"), "gmaiou")
    with capture_matches(model) as records:
        sgd_step(model, images, targets)
    inside = _transformed(model, images, targets)
    levels = [len(a) for a in _fcos_points()]
    for r in records:
        t = inside[r.image]
        want = ATSSAssigner(topk=9, measure="gmaiou").assign(
            scaled(r.boxes, 8.0), gt_boxes=t["boxes"], num_level_anchors=levels, gt_masks=t["masks"]
        )
        assert torch.equal(r.matched, want.gt_inds)


# ---------------------------------------------------------------------- the GT-proposal policy


def test_appended_gt_proposals_stay_positive_under_the_policy():
    images, targets = scene(1)
    mob = float(targets[0]["masks"][0].sum()) / float(
        torchvision.ops.box_area(targets[0]["boxes"][:1])
    )
    assert mob < 0.5  # the L's own box scores below the RoI threshold under GmaIoU
    matched = {}
    for keep in (True, False):
        model = use_measure(build("maskrcnn"), "gmaiou", keep_gt_proposals=keep)
        with capture_matches(model) as records:
            sgd_step(model, images, targets)
        (roi,) = [r for r in records if r.stage == "roi"]
        matched[keep] = roi.matched[-2:]
        assert float(roi.quality[0, -2]) == (1.0 if keep else pytest.approx(mob, abs=0.02))
    assert matched[True].tolist() == [0, 1]
    assert int(matched[False][0]) < 0 and int(matched[False][1]) == 1


def test_roi_measure_apart_from_the_rpn():
    model = use_measure(build("fasterrcnn"), "iou", roi_measure="maiou")
    images, targets = scene(1)
    with capture_matches(model) as records:
        sgd_step(model, images, targets)
    assert [(r.stage, r.measure) for r in records] == [("rpn", "iou"), ("roi", "gmaiou-box")]


# ------------------------------------------------------------------ the switch and its undoing


def test_eval_outputs_state_dict_and_restore():
    images, _ = scene()
    model = build("maskrcnn").eval()
    keys = list(model.state_dict())
    num_params = sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        before = model(images)
    use_measure(model, "gmaiou").eval()
    assert list(model.state_dict()) == keys
    assert sum(p.numel() for p in model.parameters()) == num_params
    with torch.no_grad():
        after = model(images)
    for a, b in zip(before, after):
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), k
    assert restore(model) is model and not is_switched(model)
    assert type(model.rpn) is torchvision.models.detection.rpn.RegionProposalNetwork
    assert type(model.roi_heads) is torchvision.models.detection.roi_heads.RoIHeads
    assert not [k for k in vars(model.rpn) if k.startswith("_gmaiou")]
    assert not model._forward_pre_hooks and not model._forward_hooks
    assert isinstance(torch.jit.script(model), torch.jit.ScriptModule)


def test_a_restored_single_stage_model_scripts_and_detects_as_before():
    images, targets = scene()
    model = build("retinanet")
    sgd_step(use_measure(model, "gmaiou"), images, targets)
    model.eval()
    with torch.no_grad():
        want = model(images)
    scripted = torch.jit.script(restore(model))
    with torch.no_grad():
        _, got = scripted(images)
    for a, b in zip(want, got):
        for k in a:
            assert torch.equal(a[k], b[k]), k


def test_switching_again_and_the_errors():
    model = use_measure(build("retinanet"), "iou")
    use_measure(model, "gmaiou")
    assert type(model).__mro__[2] is RetinaNet  # one level of switch, not two
    assert model._gmaiou_switch.measure == "gmaiou-mask"
    with pytest.raises(ValueError, match="unknown measure"):
        use_measure(model, "dice")
    with pytest.raises(ValueError, match="R-CNNs only"):
        use_measure(model, "iou", roi_measure="gmaiou")
    with pytest.raises(TypeError, match="supports"):
        use_measure(nn.Linear(2, 2), "iou")
    with pytest.raises(ValueError, match="not switched"):
        with capture_matches(restore(model)):
            pass


def test_the_cache_rebuilds_for_another_tensor_or_an_in_place_change():
    _, targets = scene(1)
    cache = MaskTableCache()
    masks, boxes = targets[0]["masks"], targets[0]["boxes"]
    first = cache.integrals(masks, boxes)
    assert cache.integrals(masks, boxes) is first and cache.builds == 1
    assert cache.integrals(masks.clone(), boxes) is not first and cache.builds == 2
    masks[0, 0, 0] = 1
    assert cache.integrals(masks, boxes) is not first and cache.builds == 3
