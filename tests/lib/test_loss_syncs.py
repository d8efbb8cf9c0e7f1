"""The loss after assignment reads nothing back from the device, and equals the previous one.

Under :class:`~torch._subclasses.fake_tensor.FakeTensorMode` every op runs on shapes alone;
the data-dependent ones (``nonzero``, a boolean-mask index, ``.item()``, ``bool`` or ``int``
of a tensor) raise, so a loss (and its backward) that completes there never waits for the
device: on CUDA it does not synchronise. ``_yolact_loss`` and ``_ranksort_loss`` run from
targets built on fixed assignments, with the model's fixed shapes (``static_shapes``, the
default off the CPU). The previous implementation, kept below as the reference (it raises
there), gives the same values.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools

import pytest
import torch
import torch.nn.functional as F
import torchvision
from test_models import SIZE, small_config, synthetic_batch
from torch._subclasses.fake_tensor import (
    DataDependentOutputException,
    DynamicOutputShapeException,
    FakeTensor,
    FakeTensorMode,
)
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from gmaiou.assigners import IGNORED, NEGATIVE
from gmaiou.losses import (
    dice_coefficient,
    mask_bce_loss,
    ohem_cross_entropy,
    rank_sort_loss,
    self_balance,
)
from gmaiou.models import build_model
from gmaiou.models.box_coder import decode_boxes, encode_boxes
from gmaiou.models.postprocess import crop_masks
from gmaiou.models.yolact import _downsample_masks, _Targets

NAMES = ["yolact-fixed-r18-160", "yolact-atss-gmaiou-r18-160", "gmayolact-atss-gmaiou-r18-160"]
SYNCS = (DynamicOutputShapeException, DataDependentOutputException)


# --------------------------------------------------------------------------- the previous loss


def _old_aligned_iou(boxes1, boxes2):
    lt = torch.maximum(boxes1[:, :2], boxes2[:, :2])
    rb = torch.minimum(boxes1[:, 2:], boxes2[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=1)
    area1 = (boxes1[:, 2:] - boxes1[:, :2]).clamp(min=0).prod(dim=1)
    area2 = (boxes2[:, 2:] - boxes2[:, :2]).clamp(min=0).prod(dim=1)
    union = area1 + area2 - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(union))


def _old_mask_terms(model, outputs, targets):
    protos, coeffs = outputs["protos"], outputs["coeffs"]
    hp, wp = protos.shape[1:3]
    scale = protos.new_tensor([wp / model.image_size, hp / model.image_size] * 2)
    out = []
    for b in range(protos.shape[0]):
        pos = (targets.gt_inds[b] >= 0).nonzero().squeeze(1)
        if pos.numel() == 0:
            continue
        if pos.numel() > model.config.loss.max_masks:
            pick = torch.randperm(pos.numel(), device=pos.device)[: model.config.loss.max_masks]
            pos = pos[pick]
        gt = targets.gt_inds[b, pos]
        logits = (protos[b].float() @ coeffs[b, pos].float().t()).permute(2, 0, 1)
        mask_targets = _downsample_masks(
            targets.masks[b], (hp, wp), model.config.model.target_resize
        )[gt]
        boxes = targets.boxes[b][gt] * scale
        out.append((b, pos, logits, mask_targets, crop_masks(boxes, hp, wp), boxes))
    return out


def _old_yolact_loss(model, outputs, targets):
    cfg = model.config.loss
    cls_logits, deltas = outputs["cls_logits"], outputs["box_deltas"]
    pos = targets.gt_inds >= 0
    neg = targets.gt_inds == NEGATIVE
    labels = targets.matched_labels() + 1
    cls = ohem_cross_entropy(cls_logits, labels, pos, neg, cfg.ohem_ratio)
    num_pos = pos.sum().clamp(min=1)
    anchors = model.anchor_boxes[None].expand(pos.shape[0], -1, -1)[pos]
    box_targets = encode_boxes(anchors, targets.matched_boxes()[pos])
    box = (
        F.smooth_l1_loss(deltas[pos].float(), box_targets, beta=cfg.smooth_l1_beta, reduction="sum")
        / num_pos
    )
    mask_sum, mask_count = cls_logits.new_zeros(()), 0
    for _, _, logits, mask_targets, crops, boxes in _old_mask_terms(model, outputs, targets):
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        mask_sum = mask_sum + mask_bce_loss(logits, mask_targets, crops, areas).sum()
        mask_count += logits.shape[0]
    if mask_count:
        mask = mask_sum / mask_count
    else:
        mask = (outputs["protos"].sum() + outputs["coeffs"].sum()) * 0
    semantic = model._semantic_loss(outputs["semantic"], targets)
    total = (
        cfg.cls_weight * cls
        + cfg.box_weight * box
        + cfg.mask_weight * mask
        + cfg.semantic_weight * semantic
    )
    return {"loss": total, "cls": cls, "box": box, "mask": mask, "semantic": semantic}


def _old_ranksort_loss(model, outputs, targets):
    cfg = model.config.loss
    cls_logits, deltas = outputs["cls_logits"].float(), outputs["box_deltas"].float()
    bsz, num_anchors, num_classes = cls_logits.shape
    pos = targets.gt_inds >= 0
    valid = targets.gt_inds != IGNORED
    pos_idx = pos.nonzero(as_tuple=True)
    anchors = model.anchor_boxes[pos_idx[1]]
    pred_boxes = decode_boxes(anchors, deltas[pos_idx])
    gt_boxes = targets.matched_boxes()[pos_idx]
    ious = _old_aligned_iou(pred_boxes.detach(), gt_boxes)
    labels = targets.matched_labels().clamp(min=0)
    classes = torch.arange(num_classes, device=labels.device)
    pos_pairs = (labels[:, :, None] == classes) & pos[:, :, None]
    pos_ious = cls_logits.new_zeros(bsz, num_anchors).index_put(pos_idx, ious)
    sort_targets = pos_pairs.float() * pos_ious[:, :, None]
    cls, _, _ = rank_sort_loss(
        cls_logits.reshape(-1),
        sort_targets.reshape(-1),
        pos_pairs.reshape(-1),
        cfg.rs_delta,
        valid=valid[:, :, None].expand_as(pos_pairs).reshape(-1),
    )
    score_weight = cls_logits.detach().sigmoid().max(dim=2).values
    weights = score_weight[pos_idx]
    if pred_boxes.shape[0]:
        giou = torchvision.ops.generalized_box_iou_loss(pred_boxes, gt_boxes, reduction="none")
        box = (weights * giou).sum() / weights.sum().clamp(min=1e-12)
    else:
        box = deltas.sum() * 0
    dice_sum, weight_sum = cls_logits.new_zeros(()), cls_logits.new_zeros(())
    for b, idx, logits, mask_targets, crops, _ in _old_mask_terms(model, outputs, targets):
        w = score_weight[b, idx]
        dice_sum = dice_sum + (w * dice_coefficient(logits.sigmoid() * crops, mask_targets)).sum()
        weight_sum = weight_sum + w.sum()
    has_weight = weight_sum > 0
    ratio = dice_sum / torch.where(has_weight, weight_sum, torch.ones_like(weight_sum))
    no_mask = (outputs["protos"].sum() + outputs["coeffs"].sum()) * 0
    mask = torch.where(has_weight, 1 - ratio, no_mask)
    if cfg.self_balance:
        box, mask = self_balance(box, cls), self_balance(mask, cls)
    else:
        box, mask = cfg.box_weight * box, cfg.mask_weight * mask
    semantic = model._semantic_loss(outputs["semantic"], targets)
    total = cfg.cls_weight * cls + box + mask + cfg.semantic_weight * semantic
    return {"loss": total, "cls": cls, "box": box, "mask": mask, "semantic": semantic}


# --------------------------------------------------------------------------- cases


@functools.cache
def _case(name: str, case: str, max_masks: int = 100, self_balance: bool | None = None):
    """``(model, outputs, gt parts, gt_inds)``: a training forward's outputs and fixed assignments.

    Cases: ``every`` image has positives; image 1 has ``one-empty`` (no GT); the batch has
    ``none``. A few negatives are made ignored in each."""
    cfg = small_config(name)
    loss = dataclasses.replace(cfg.loss, max_masks=max_masks)
    if self_balance is not None:
        loss = dataclasses.replace(loss, self_balance=self_balance)
    cfg = dataclasses.replace(cfg, loss=loss)
    torch.manual_seed(0)
    model = build_model(cfg)
    batch = synthetic_batch(num_images=2, per_image=3)
    empty = [torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), torch.zeros(0, SIZE, SIZE).bool()]
    parts = [list(batch[key]) for key in ("boxes", "labels", "masks")]
    for i in {"every": [], "one-empty": [1], "none": [0, 1]}[case]:
        for part, nothing in zip(parts, empty):
            part[i] = nothing
    batch.update(zip(("boxes", "labels", "masks"), parts))
    batch["mask_integrals"] = None
    with torch.no_grad():
        outputs = model(batch["images"])
        gt_inds = model.assign(batch)
    gt_inds[:, 3:40:4] = torch.where(gt_inds[:, 3:40:4] < 0, IGNORED, gt_inds[:, 3:40:4])
    positives = (gt_inds >= 0).sum(dim=1).tolist()
    expected = {"every": [True, True], "one-empty": [True, False], "none": [False, False]}[case]
    assert [p > 0 for p in positives] == expected
    parts[0] = [b.float() for b in parts[0]]
    return model, outputs, parts, gt_inds


def _loss(model, outputs, parts, gt_inds, reference: bool = False):
    targets = _Targets(gt_inds, *parts, model.anchor_boxes)
    if model.config.loss.kind == "ranksort":
        return (_old_ranksort_loss if reference else type(model)._ranksort_loss)(
            model, outputs, targets
        )
    return (_old_yolact_loss if reference else type(model)._yolact_loss)(model, outputs, targets)


@contextlib.contextmanager
def _static_shapes(model, value):
    """``model.static_shapes = value`` for the block."""
    previous = getattr(model, "static_shapes", None)
    model.static_shapes = value
    try:
        yield
    finally:
        model.static_shapes = previous


class _LossOf(torch.nn.Module):
    """The loss of fixed assignments as a module, for :func:`torch.func.functional_call`."""

    def __init__(self, model, reference: bool = False) -> None:
        super().__init__()
        self.model, self.reference = model, reference

    def forward(self, outputs, parts, gt_inds):
        return _loss(self.model, outputs, parts, gt_inds, self.reference)


class _HostToDevice(TorchDispatchMode):
    """Records the copies of host tensors to a CUDA device (a constant made by ``torch.tensor``
    or ``new_tensor``): from pageable memory, such a copy synchronises the device with the host."""

    def __init__(self) -> None:
        super().__init__()
        self.copies: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func in (torch.ops.aten._to_copy.default, torch.ops.aten.copy_.default):
            sources = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
            targets = [t for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
            if any(t.device.type == "cpu" for t in sources) and any(
                t.device.type == "cuda" for t in targets
            ):
                self.copies.append(str(func))
        return out


def _fake_loss(name, case, max_masks=100, device="cpu", static=True, reference=False, watch=None):
    """The loss (and, on the CPU, its backward) under FakeTensorMode: every tensor it reads
    fake, the model's anchors passed in by ``functional_call``; ``watch``, a dispatch mode
    around the loss alone."""
    model, outputs, parts, gt_inds = _case(name, case, max_masks)
    mode = FakeTensorMode()  # a real tensor reaching an op would raise too

    def fake(t: torch.Tensor) -> torch.Tensor:
        f = mode.from_tensor(t)
        if device == "cuda":
            with mode:
                f = f.to("cuda")
        return f

    leaves = {k: fake(v.clone().requires_grad_(device == "cpu")) for k, v in outputs.items()}
    fake_parts = [[fake(t) for t in part] for part in parts]
    buffers = {"model.anchor_boxes": fake(model.anchor_boxes)}
    module = _LossOf(model, reference)
    fake_inds = fake(gt_inds)
    with _static_shapes(model, static), mode, watch or contextlib.nullcontext():
        losses = torch.func.functional_call(module, buffers, (leaves, fake_parts, fake_inds))
        if device == "cpu":  # autograd's engine wants a real CUDA context
            losses["loss"].backward()
    return losses, leaves


# --------------------------------------------------------------------------- no synchronisation


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    "case, max_masks",
    [("every", 100), ("one-empty", 100), ("none", 100), ("every", 3)],
    ids=["every-image", "an-image-without", "none-in-the-batch", "more-than-max-masks"],
)
def test_the_loss_and_its_backward_read_nothing_from_the_device(name, case, max_masks):
    gt_inds = _case(name, case, max_masks)[3]
    if max_masks == 3:
        assert ((gt_inds >= 0).sum(dim=1) > max_masks).all()
    losses, leaves = _fake_loss(name, case, max_masks)
    assert set(losses) == {"loss", "cls", "box", "mask", "semantic"}
    assert all(isinstance(v, FakeTensor) and v.shape == () for v in losses.values())
    for key in ("cls_logits", "box_deltas", "coeffs", "protos", "semantic"):
        assert leaves[key].grad is not None and leaves[key].grad.shape == leaves[key].shape


@pytest.mark.parametrize("name", NAMES)
def test_on_cuda_the_default_loss_reads_nothing_from_the_device_and_copies_nothing_to_it(name):
    watch = _HostToDevice()
    losses, _ = _fake_loss(name, "one-empty", device="cuda", static=None, watch=watch)
    assert all(v.device.type == "cuda" and v.shape == () for v in losses.values())
    assert watch.copies == []


def test_the_host_copy_check_sees_a_constant_made_on_the_host():
    mode, watch = FakeTensorMode(), _HostToDevice()
    with mode:
        x = mode.from_tensor(torch.zeros(3)).to("cuda")
        with watch:
            x.new_full((), 0.1)  # filled on the device
            torch.where(x > 0, x, 0)  # a Python scalar: no tensor copied
            assert watch.copies == []
            x.new_tensor([0.1, 0.2])  # made on the host, then copied
            assert watch.copies == ["aten._to_copy.default"]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("case", ["every", "one-empty"])
def test_on_a_gpu_the_loss_and_its_backward_do_not_synchronise(name, case):
    # The real thing: CUDA's sync debug mode raises at the first synchronising call.
    model, outputs, parts, gt_inds = _case(name, case)
    gpu = copy.deepcopy(model).cuda()
    leaves = {k: v.cuda().requires_grad_(True) for k, v in outputs.items()}
    gpu_parts = [[t.cuda() for t in part] for part in parts]
    gpu_inds = gt_inds.cuda()
    torch.cuda.synchronize()
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("error")
    try:
        losses = _loss(gpu, leaves, gpu_parts, gpu_inds)
        losses["loss"].backward()
    finally:
        torch.cuda.set_sync_debug_mode(previous)
    torch.cuda.synchronize()
    with _static_shapes(model, True):
        cpu = _loss(model, outputs, parts, gt_inds)
    for key, value in cpu.items():
        torch.testing.assert_close(losses[key].detach().cpu(), value, rtol=2e-3, atol=1e-4)
    assert all(leaves[k].grad.isfinite().all() for k in leaves)


@pytest.mark.parametrize("name", NAMES)
def test_the_previous_loss_and_the_cpu_default_read_back_from_the_device(name):
    # The check itself: the previous implementation, and the CPU's sizes from the data, raise.
    with pytest.raises(SYNCS):
        _fake_loss(name, "every", reference=True)
    with pytest.raises(SYNCS):
        _fake_loss(name, "every", static=None)


# --------------------------------------------------------------------------- same values


def _values_and_grads(model, outputs, parts, gt_inds, reference=False):
    leaves = {k: v.clone().requires_grad_(True) for k, v in outputs.items()}
    losses = _loss(model, leaves, parts, gt_inds, reference)
    losses["loss"].backward()
    return {k: v.detach() for k, v in losses.items()}, {k: v.grad for k, v in leaves.items()}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("case", ["every", "one-empty", "none"])
@pytest.mark.parametrize("static", [True, None])
def test_the_loss_equals_the_previous_one(name, case, static):
    model, outputs, parts, gt_inds = _case(name, case, self_balance=False)
    assert int((gt_inds >= 0).sum(dim=1).max()) <= model.config.loss.max_masks  # same masks
    with _static_shapes(model, static):
        got, got_grads = _values_and_grads(model, outputs, parts, gt_inds)
    ref, ref_grads = _values_and_grads(model, outputs, parts, gt_inds, reference=True)
    for key in ("cls", "box"):
        torch.testing.assert_close(got[key], ref[key], rtol=1e-6, atol=1e-6)
    for key in ("mask", "semantic", "loss"):
        torch.testing.assert_close(got[key], ref[key], rtol=1e-6, atol=1e-6)
    for key in got_grads:
        torch.testing.assert_close(got_grads[key], ref_grads[key], rtol=1e-5, atol=1e-7)
    if case == "none":
        assert got["cls"] == got["box"] == got["mask"] == 0


@pytest.mark.parametrize("name", ["gmayolact-atss-gmaiou-r18-160"])
def test_the_self_balanced_loss_equals_the_previous_one(name):
    model, outputs, parts, gt_inds = _case(name, "one-empty")
    assert model.config.loss.self_balance
    with _static_shapes(model, True):
        got, got_grads = _values_and_grads(model, outputs, parts, gt_inds)
    ref, ref_grads = _values_and_grads(model, outputs, parts, gt_inds, reference=True)
    for key in got:
        torch.testing.assert_close(got[key], ref[key], rtol=1e-6, atol=1e-6)
    for key in got_grads:
        torch.testing.assert_close(got_grads[key], ref_grads[key], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("static", [True, None])
def test_beyond_max_masks_a_uniform_subset_of_the_positives(static):
    max_masks = 3
    model, outputs, parts, gt_inds = _case(NAMES[1], "one-empty", max_masks)
    pos = gt_inds >= 0
    counts = pos.sum(dim=1)
    assert counts[0] > 2 * max_masks and counts[1] == 0
    picked = torch.zeros_like(gt_inds, dtype=torch.long)
    torch.manual_seed(0)
    with _static_shapes(model, static):
        for _ in range(300):
            terms = model._mask_terms(outputs, _Targets(gt_inds, *parts, model.anchor_boxes))
            assert terms.valid.sum(dim=1).tolist() == [max_masks, 0]
            assert torch.equal(terms.valid, pos.gather(1, terms.index))  # valid: the positives
            assert len(set(terms.index[0].tolist())) == terms.index.shape[1]  # no anchor twice
            picked[0].index_add_(0, terms.index[0][terms.valid[0]], torch.ones(max_masks).long())
    assert terms.index.shape[1] == max_masks
    # each positive drawn about 300 * 3 / count times, never a non-positive
    share = picked[0][pos[0]].float() / (300 * max_masks / counts[0])
    assert picked[0][~pos[0]].sum() == 0
    assert share.min() > 0.4 and share.max() < 1.8, share


def test_the_cpu_default_takes_no_more_slots_than_the_positives():
    model, outputs, parts, gt_inds = _case(NAMES[0], "one-empty")
    targets = _Targets(gt_inds, *parts, model.anchor_boxes)
    most = int((gt_inds >= 0).sum(dim=1).max())
    assert model._mask_terms(outputs, targets).index.shape == (2, most)
    with _static_shapes(model, True):
        assert model._mask_terms(outputs, targets).index.shape == (2, 100)


def test_giou_and_iou_of_every_anchor_match_torchvision():
    from gmaiou.models.yolact import _aligned_iou, _giou_loss

    g = torch.Generator().manual_seed(0)
    xy = torch.rand(2, 50, 2, generator=g) * 50
    a = torch.cat([xy, xy + torch.rand(2, 50, 2, generator=g) * 30 + 0.1], dim=2)
    xy = torch.rand(2, 50, 2, generator=g) * 50
    b = torch.cat([xy, xy + torch.rand(2, 50, 2, generator=g) * 30], dim=2)
    b[0, :5] = a[0, :5]  # identical boxes
    b[1, :5] = torch.tensor([0.0, 0.0, 0.0, 0.0])  # an empty image's fill
    expected = torchvision.ops.generalized_box_iou_loss(a.view(-1, 4), b.view(-1, 4))
    assert torch.equal(_giou_loss(a, b), expected.view(2, 50))
    iou = torchvision.ops.box_iou(a.view(-1, 4), b.view(-1, 4)).diagonal()
    torch.testing.assert_close(_aligned_iou(a, b), iou.view(2, 50))
    assert torch.equal(_aligned_iou(a[0], b[0]), _old_aligned_iou(a[0], b[0]))
