"""GmaIoU inside torchvision's detectors: switch a built model's matching to any measure.

torchvision matches anchors (and Faster/Mask R-CNN's proposals) to ground truths by box IoU
alone. :func:`use_measure` switches a built model, in place, to IoU, GIoU, DIoU, maIoU
(GmaIoU with P = B) or GmaIoU (P = M), reading the masks from the targets; :func:`restore`
switches it back::

    model = torchvision.models.detection.maskrcnn_resnet50_fpn(weights=None, num_classes=91)
    use_measure(model, "gmaiou")  # RPN and RoI heads
    losses = model(images, targets)  # targets[i]["masks"]: [G, H, W], at the image's size
    restore(model)  # stock again (scriptable if the stock model is)

Families:

* Faster / Mask / Keypoint R-CNN (:class:`~torchvision.models.detection.GeneralizedRCNN`):
  the RPN's anchors and the RoI heads' proposals (``roi_measure``, default ``measure``);
* RetinaNet: its anchors (``compute_loss``);
* SSD and SSDlite: their default boxes (the stock forward's box-IoU matching is
  recomputed in ``compute_loss``, where the transformed targets and the boxes meet);
* FCOS: an ATSS assigner (:class:`~gmaiou.assigners.ATSSAssigner`, any measure) replaces its
  centre sampling and scale ranges; its anchors (one per location, as large as the stride)
  are scaled by ``atss_anchor_scale`` (8, as ATSS does) about their centres for the
  measure, so that a location's square is 8 strides wide. With ``measure="iou"`` FCOS
  therefore trains as ATSS with IoU, not as the stock FCOS.

The switch changes the modules' classes (a subclass per stock class that overrides the
matching method) and adds plain attributes: no parameter or buffer, the same
``state_dict`` keys, eval outputs unchanged. With ``"iou"`` a switched Faster/Mask R-CNN,
RetinaNet or SSD computes exactly what the stock model computes (same losses, same gradients,
bit for bit). A switched model pickles by its ``state_dict``; :func:`restore` it before
``torch.save(model)`` or ``torch.jit.script``.

Hazards, and what this module does about them:

1. Setting ``box_similarity`` is not enough: torchvision's RPN hands it boxes only (no
   masks), and the RoI heads ignore it (``assign_targets_to_proposals`` calls
   ``box_iou`` directly and gets the GT boxes only; the targets reach only its caller
   ``select_training_samples``). The switched RoI heads keep the targets of the current
   ``select_training_samples`` call for the matching.
2. ``select_training_samples`` appends the GT boxes to the proposals, and a GT box scored
   against its own mask gets its mask-over-box ratio under GmaIoU (``|M| / |B|``, below 0.5
   for about 28% of COCO's objects): those appended proposals would turn negative or
   ignored. **Policy** (``keep_gt_proposals=True``, the default): an appended GT proposal
   scores at least 1 against its own GT, as it does under box IoU, so that it stays a
   positive of its own GT; every RPN proposal is scored by the measure.

Further: the stock thresholds (RPN 0.7 / 0.3, RoI 0.5, RetinaNet 0.5 / 0.4, SSD 0.5) were
tuned for box IoU, and GmaIoU is lower than IoU for objects that fill little of their box,
so a fixed threshold gives them fewer positives (ATSS adapts its threshold per GT). A GT
whose mask is empty (a sliver lost by the resize) scores 0 under a mask measure: its row
falls back to box IoU (see :func:`match_quality`). Masks must be at the image's size (the
model's transform resizes them with the image); a training forward checks this.

The masks' summed-area tables (:class:`~gmaiou.measure.MaskIntegrals`) are built once per
image and forward and shared by the RPN and the RoI heads (:class:`MaskTableCache`, keyed
on the mask tensor's identity; the model's transform hands both the same target dicts).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torchvision  # the package, not this module: imports are absolute
from torch import Tensor, nn
from torchvision.models.detection.fcos import FCOS
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.models.detection.retinanet import RetinaNet
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import RegionProposalNetwork
from torchvision.models.detection.ssd import SSD

from gmaiou.assigners import ATSSAssigner
from gmaiou.measure import MEASURES, MaskIntegrals, is_mask_measure, pairwise_overlaps

__all__ = [
    "MaskTableCache",
    "MatchRecord",
    "SUPPORTED_MEASURES",
    "atss_matches",
    "capture_matches",
    "describe",
    "is_switched",
    "match_quality",
    "restore",
    "use_measure",
]

#: The measures :func:`use_measure` documents (any key of :data:`gmaiou.measure.MEASURES`
#: is accepted): box IoU, GIoU, DIoU, maIoU (P = B) and GmaIoU (P = M).
SUPPORTED_MEASURES: tuple[str, ...] = ("iou", "giou", "diou", "maiou", "gmaiou")

_ATTR = "_gmaiou_switch"  # per switched module: its _Switch
_HOOKS = "_gmaiou_hooks"  # on the top model: the forward hooks' handles


def _canonical(measure: str) -> str:
    try:
        return MEASURES[measure]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown measure {measure!r}; choose one of {', '.join(SUPPORTED_MEASURES)} "
            f"(or {', '.join(sorted(set(MEASURES) - set(SUPPORTED_MEASURES)))})"
        ) from None


class MaskTableCache:
    """The masks' summed-area tables of the current forward, keyed on the mask tensor's identity.

    An entry holds the mask tensor itself (so its ``id`` cannot be reused while cached) and
    its version counter (an in-place change rebuilds). A switched model clears it when a
    forward starts and when it ends.

    Attributes:
        builds: how many tables sets were built since the cache was made (a count for tests
            and benchmarks; clearing does not reset it).
    """

    def __init__(self) -> None:
        self._entries: dict[int, tuple[Tensor, int, MaskIntegrals]] = {}
        self.builds = 0

    def __len__(self) -> int:
        return len(self._entries)

    def integrals(self, masks: Tensor, boxes: Tensor | None = None) -> MaskIntegrals:
        """The tables of ``masks [G, H, W]``, built on the first request within a forward."""
        entry = self._entries.get(id(masks))
        if entry is not None and entry[0] is masks and entry[1] == masks._version:
            return entry[2]
        built = MaskIntegrals(masks, None if boxes is None else boxes.detach())
        self._entries[id(masks)] = (masks, masks._version, built)
        self.builds += 1
        return built

    def clear(self) -> None:
        self._entries.clear()


def _masks_of(target: Mapping[str, Tensor], measure: str, gt_boxes: Tensor) -> Tensor:
    masks = target.get("masks")
    if masks is None:
        raise ValueError(
            f"measure {measure!r} is mask-aware and reads the ground-truth masks from "
            "targets[i]['masks'] ([G, H, W] at the image's size), but the target has no "
            f"'masks' key (it has {sorted(target)})"
        )
    if not isinstance(masks, Tensor) or masks.dim() != 3 or masks.shape[0] != gt_boxes.shape[0]:
        shape = list(masks.shape) if isinstance(masks, Tensor) else type(masks).__name__
        raise ValueError(
            f"targets[i]['masks'] must be [G, H, W] with G = {gt_boxes.shape[0]} boxes, got {shape}"
        )
    return masks


def match_quality(
    target: Mapping[str, Tensor],
    boxes: Tensor,
    measure: str,
    *,
    cache: MaskTableCache | None = None,
) -> Tensor:
    """The match-quality matrix of one image's ground truths and ``boxes`` under ``measure``.

    Args:
        target: the image's target dict: ``boxes`` ``[G, 4]`` ``(x1, y1, x2, y2)`` and, for a
            mask measure, ``masks`` ``[G, H, W]`` (bool or 0/1 integers) at the (resized)
            image's size.
        boxes: ``[N, 4]`` anchors or proposals ``(x1, y1, x2, y2)``; they may lie partly or
            wholly off the image.
        measure: ``"iou"``, ``"giou"``, ``"diou"``, ``"maiou"`` (P = B) or ``"gmaiou"``
            (P = M), or another key of :data:`gmaiou.measure.MEASURES`.
        cache: where the masks' summed-area tables are kept for the rest of the forward
            (``None``: built for this call).

    Returns:
        ``[G, N]`` in ``boxes``' dtype. ``"iou"`` is :func:`torchvision.ops.box_iou` itself
        (what torchvision's matchers read). Under a mask measure a GT whose mask is empty
        would score 0 against every box; its row falls back to box IoU instead.

    Raises:
        ValueError: for a mask measure without ``target["masks"]`` (the message names the key),
            or masks whose count differs from the boxes'.
    """
    name = _canonical(measure)
    gt_boxes = target["boxes"]
    if name == "iou":
        return torchvision.ops.box_iou(gt_boxes, boxes)
    if not is_mask_measure(name):
        return pairwise_overlaps(name, gt_boxes, boxes)
    masks = _masks_of(target, measure, gt_boxes)
    if gt_boxes.shape[0] == 0:
        return boxes.new_zeros(0, boxes.shape[0])
    integrals = (
        cache.integrals(masks, gt_boxes) if cache is not None else MaskIntegrals(masks, gt_boxes)
    )
    quality = pairwise_overlaps(name, gt_boxes, boxes, integrals)
    empty = integrals.mask_area == 0
    if bool(empty.any()):
        quality[empty] = torchvision.ops.box_iou(gt_boxes[empty], boxes).to(quality.dtype)
    return quality


def _scaled_about_centre(boxes: Tensor, scale: float) -> Tensor:
    if scale == 1.0:
        return boxes
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]) * (scale / 2)
    return torch.cat([centre - half, centre + half], dim=1)


def atss_matches(
    target: Mapping[str, Tensor],
    anchors: Tensor,
    num_level_anchors: Sequence[int],
    measure: str,
    *,
    topk: int = 9,
    anchor_scale: float = 1.0,
    cache: MaskTableCache | None = None,
) -> Tensor:
    """ATSS matches of one image's anchors: ``[N]`` int64, the GT index or -1 (background).

    The anchors (level by level, ``num_level_anchors`` of each) are scaled by
    ``anchor_scale`` about their centres before :class:`~gmaiou.assigners.ATSSAssigner`
    scores them with ``measure`` (``target`` as in :func:`match_quality`). Under a mask
    measure a GT whose mask is empty is assigned with box IoU, as :func:`match_quality`
    falls back for its row; the GTs are independent in ATSS but for an anchor that several
    claim (it goes to the highest overlap, then the lowest GT index), which is kept.
    """
    gt_boxes = target["boxes"]
    if gt_boxes.shape[0] == 0:
        return torch.full((anchors.shape[0],), -1, dtype=torch.int64, device=anchors.device)
    name = _canonical(measure)
    scaled = _scaled_about_centre(anchors, anchor_scale)
    levels = list(num_level_anchors)
    if not is_mask_measure(name):
        return _atss(name, topk, scaled, gt_boxes, levels, None)[0]
    masks = _masks_of(target, measure, gt_boxes)
    integrals = (
        cache.integrals(masks, gt_boxes) if cache is not None else MaskIntegrals(masks, gt_boxes)
    )
    empty = integrals.mask_area == 0
    if not bool(empty.any()):
        return _atss(name, topk, scaled, gt_boxes, levels, integrals)[0]
    full = (~empty).nonzero().flatten()
    hollow = empty.nonzero().flatten()
    first, first_ov = _atss(name, topk, scaled, gt_boxes[full], levels, masks[full])
    second, second_ov = _atss("iou", topk, scaled, gt_boxes[hollow], levels, None)
    first = torch.where(first >= 0, full[first.clamp(min=0)], first)
    second = torch.where(second >= 0, hollow[second.clamp(min=0)], second)
    take_second = (second >= 0) & (
        (first < 0) | (second_ov > first_ov) | ((second_ov == first_ov) & (second < first))
    )
    return torch.where(take_second, second, first)


def _atss(
    measure: str,
    topk: int,
    anchors: Tensor,
    gt_boxes: Tensor,
    levels: list[int],
    masks: Tensor | MaskIntegrals | None,
) -> tuple[Tensor, Tensor]:
    if gt_boxes.shape[0] == 0:
        n = anchors.shape[0]
        return (
            torch.full((n,), -1, dtype=torch.int64, device=anchors.device),
            anchors.new_zeros(n),
        )
    result = ATSSAssigner(topk=topk, measure=measure).assign(
        anchors, gt_boxes=gt_boxes, num_level_anchors=levels, gt_masks=masks
    )
    gt_inds = torch.where(result.gt_inds >= 0, result.gt_inds, torch.full_like(result.gt_inds, -1))
    return gt_inds, result.max_overlaps


# ------------------------------------------------------------------------------ the switch


@dataclass(frozen=True)
class MatchRecord:
    """One image's matching inside a switched model (see :func:`capture_matches`).

    Attributes:
        stage: ``"rpn"``, ``"roi"``, ``"retinanet"``, ``"ssd"`` or ``"fcos"``.
        image: the image's index in the batch.
        measure: the measure that scored the boxes.
        boxes: ``[N, 4]`` the anchors or proposals (the RoI heads': the RPN's proposals with
            the GT boxes appended), in the resized image's coordinates.
        gt_boxes: ``[G, 4]`` the GT boxes they were matched to.
        quality: ``[G, N]`` the match-quality matrix the matcher read (after the RoI heads'
            GT-proposal policy); ``None`` for FCOS's ATSS.
        matched: ``[N]`` int64 as the matcher returned it: the GT index, -1 below the low
            threshold (background), -2 between the thresholds (ignored).
    """

    stage: str
    image: int
    measure: str
    boxes: Tensor
    gt_boxes: Tensor
    quality: Tensor | None
    matched: Tensor


@dataclass
class _Switch:
    """What a switched module adds: its measure, the shared cache and its original class."""

    original: type
    measure: str
    cache: MaskTableCache
    keep_gt_proposals: bool = True
    topk: int = 9
    anchor_scale: float = 8.0
    log: list[MatchRecord] | None = None
    targets: list[dict[str, Tensor]] | None = field(default=None, repr=False)

    def record(self, stage, image, boxes, gt_boxes, quality, matched) -> None:
        if self.log is not None:
            self.log.append(
                MatchRecord(
                    stage,
                    image,
                    self.measure,
                    boxes.detach(),
                    gt_boxes.detach(),
                    None if quality is None else quality.detach(),
                    matched,
                )
            )


def _switch_of(module: nn.Module) -> _Switch:
    return module.__dict__[_ATTR]


def _matcher_indices(module: nn.Module, stage: str, anchors, targets) -> list[Tensor]:
    """Per image, the module's ``proposal_matcher`` on the switched measure's quality matrix
    (-1 everywhere for an image without GTs, as torchvision does)."""
    s = _switch_of(module)
    out = []
    for i, (anchors_i, target) in enumerate(zip(anchors, targets)):
        if target["boxes"].numel() == 0:
            out.append(
                torch.full((anchors_i.shape[0],), -1, dtype=torch.int64, device=anchors_i.device)
            )
            continue
        quality = match_quality(target, anchors_i, s.measure, cache=s.cache)
        matched = module.proposal_matcher(quality)
        s.record(stage, i, anchors_i, target["boxes"], quality, matched)
        out.append(matched)
    return out


class _SwitchedRPN:
    """RPN: the anchors' labels from the switched measure (the targets arrive here)."""

    def assign_targets_to_anchors(
        self, anchors: list[Tensor], targets: list[dict[str, Tensor]]
    ) -> tuple[list[Tensor], list[Tensor]]:
        s = _switch_of(self)
        matcher = self.proposal_matcher
        labels, matched_boxes = [], []
        for i, (anchors_i, target) in enumerate(zip(anchors, targets)):
            gt_boxes = target["boxes"]
            n = anchors_i.shape[0]
            if gt_boxes.numel() == 0:  # an image without objects: every anchor negative
                labels.append(torch.zeros(n, dtype=torch.float32, device=anchors_i.device))
                matched_boxes.append(
                    torch.zeros(anchors_i.shape, dtype=torch.float32, device=anchors_i.device)
                )
                continue
            quality = match_quality(target, anchors_i, s.measure, cache=s.cache)
            matched = matcher(quality)
            s.record("rpn", i, anchors_i, gt_boxes, quality, matched)
            label = (matched >= 0).to(torch.float32)
            label[matched == matcher.BELOW_LOW_THRESHOLD] = 0.0
            label[matched == matcher.BETWEEN_THRESHOLDS] = -1.0
            labels.append(label)
            matched_boxes.append(gt_boxes[matched.clamp(min=0)])
        return labels, matched_boxes


def _keep_gt_proposals(quality: Tensor, proposals: Tensor, gt_boxes: Tensor) -> None:
    """The policy: appended GT proposals score at least 1 against their own GT (in place).

    Applied only where the last ``G`` proposals are the GT boxes themselves, as
    ``select_training_samples`` appends them.
    """
    g, n = gt_boxes.shape[0], proposals.shape[0]
    if g == 0 or n < g or not torch.equal(proposals[n - g :], gt_boxes):
        return
    rows = torch.arange(g, device=quality.device)
    quality[rows, rows + (n - g)] = quality[rows, rows + (n - g)].clamp(min=1.0)


class _SwitchedRoIHeads:
    """RoI heads: the proposals' labels from the switched measure.

    ``select_training_samples`` has the targets but ``assign_targets_to_proposals``, which it
    calls, gets the GT boxes only: the targets are kept for the duration of the call.
    """

    def select_training_samples(self, proposals, targets):
        s = _switch_of(self)
        s.targets = targets
        try:
            return super().select_training_samples(proposals, targets)
        finally:
            s.targets = None

    def assign_targets_to_proposals(self, proposals, gt_boxes, gt_labels):
        s = _switch_of(self)
        matcher = self.proposal_matcher
        mask_aware = is_mask_measure(s.measure)
        if mask_aware and s.targets is None:
            raise ValueError(
                f"measure {s.measure!r} needs the targets' masks: the switched RoI heads match "
                "proposals inside select_training_samples(proposals, targets)"
            )
        matched_idxs, labels = [], []
        for i, (props, boxes, gt_lab) in enumerate(zip(proposals, gt_boxes, gt_labels)):
            n = props.shape[0]
            if boxes.numel() == 0:  # an image without objects: every proposal background
                matched_idxs.append(torch.zeros(n, dtype=torch.int64, device=props.device))
                labels.append(torch.zeros(n, dtype=torch.int64, device=props.device))
                continue
            view = {"boxes": boxes}
            if s.targets is not None and "masks" in s.targets[i]:
                view["masks"] = s.targets[i]["masks"]
            quality = match_quality(view, props, s.measure, cache=s.cache)
            if mask_aware and s.keep_gt_proposals:
                _keep_gt_proposals(quality, props, boxes)
            matched = matcher(quality)
            s.record("roi", i, props, boxes, quality, matched)
            clamped = matched.clamp(min=0)
            label = gt_lab[clamped].to(torch.int64)
            label[matched == matcher.BELOW_LOW_THRESHOLD] = 0
            label[matched == matcher.BETWEEN_THRESHOLDS] = -1
            matched_idxs.append(clamped)
            labels.append(label)
        return matched_idxs, labels


class _SwitchedRetinaNet:
    """RetinaNet: the anchors' matches from the switched measure."""

    def compute_loss(self, targets, head_outputs, anchors):
        matched = _matcher_indices(self, "retinanet", anchors, targets)
        return self.head.compute_loss(targets, head_outputs, anchors, matched)


class _SwitchedSSD:
    """SSD / SSDlite: the stock forward's box-IoU matches are recomputed with the measure."""

    def compute_loss(self, targets, head_outputs, anchors, matched_idxs):
        matched = _matcher_indices(self, "ssd", anchors, targets)
        return super().compute_loss(targets, head_outputs, anchors, matched)


class _SwitchedFCOS:
    """FCOS: ATSS with the switched measure instead of centre sampling and scale ranges."""

    def compute_loss(self, targets, head_outputs, anchors, num_anchors_per_level):
        s = _switch_of(self)
        matched = []
        for i, (anchors_i, target) in enumerate(zip(anchors, targets)):
            m = atss_matches(
                target,
                anchors_i,
                num_anchors_per_level,
                s.measure,
                topk=s.topk,
                anchor_scale=s.anchor_scale,
                cache=s.cache,
            )
            s.record("fcos", i, anchors_i, target["boxes"], None, m)
            matched.append(m)
        return self.head.compute_loss(targets, head_outputs, anchors, matched)


_CLASSES: dict[tuple[type, type], type] = {}


def _switched_class(behaviour: type, base: type) -> type:
    """``base`` with ``behaviour``'s matching methods first in its MRO (made once per pair)."""
    key = (behaviour, base)
    if key not in _CLASSES:
        _CLASSES[key] = type(
            f"GmaIoU{base.__name__}",
            (behaviour, base),
            {"__module__": __name__, "__doc__": f"{base.__name__} matched by gmaiou.torchvision."},
        )
    return _CLASSES[key]


def _switch(
    module: nn.Module, behaviour: type, measure: str, cache: MaskTableCache, **opts
) -> None:
    current = module.__dict__.get(_ATTR)
    if current is not None:  # switched already: change the measure and options only
        current.measure, current.cache = measure, cache
        for k, v in opts.items():
            setattr(current, k, v)
        return
    original = type(module)
    module.__dict__[_ATTR] = _Switch(original, measure, cache, **opts)
    module.__class__ = _switched_class(behaviour, original)


def _switched_modules(model: nn.Module) -> list[nn.Module]:
    candidates = [model, getattr(model, "rpn", None), getattr(model, "roi_heads", None)]
    return [m for m in candidates if isinstance(m, nn.Module) and _ATTR in m.__dict__]


def is_switched(model: nn.Module) -> bool:
    """Whether :func:`use_measure` switched ``model`` (and :func:`restore` has not undone it)."""
    return bool(_switched_modules(model))


def _check_mask_sizes(model: nn.Module, args: tuple, kwargs: dict) -> None:
    images = args[0] if args else kwargs.get("images")
    targets = args[1] if len(args) > 1 else kwargs.get("targets")
    if targets is None or images is None:
        return
    for s in (_switch_of(m) for m in _switched_modules(model)):
        if not is_mask_measure(s.measure):
            continue
        for i, (image, target) in enumerate(zip(images, targets)):
            masks = _masks_of(target, s.measure, target["boxes"])
            if tuple(masks.shape[-2:]) != tuple(image.shape[-2:]):
                raise ValueError(
                    f"targets[{i}]['masks'] is {tuple(masks.shape[-2:])} but image {i} is "
                    f"{tuple(image.shape[-2:])}: masks must be at the image's size"
                )
        return


def _install_hooks(model: nn.Module, cache: MaskTableCache) -> None:
    old = model.__dict__.pop(_HOOKS, None)
    if old is not None:
        for handle in old:
            handle.remove()

    def before(module, args, kwargs):
        cache.clear()
        if module.training:
            _check_mask_sizes(module, args, kwargs)

    def after(module, args, output):
        cache.clear()

    model.__dict__[_HOOKS] = (
        model.register_forward_pre_hook(before, with_kwargs=True),
        model.register_forward_hook(after),
    )


def use_measure(
    model: nn.Module,
    measure: str,
    roi_measure: str | None = None,
    *,
    keep_gt_proposals: bool = True,
    atss_topk: int = 9,
    atss_anchor_scale: float = 8.0,
) -> nn.Module:
    """Switch a built torchvision detector's matching to ``measure``, in place.

    Args:
        model: a :class:`~torchvision.models.detection.GeneralizedRCNN` (Faster, Mask or
            Keypoint R-CNN), :class:`~torchvision.models.detection.RetinaNet`,
            :class:`~torchvision.models.detection.SSD` (SSDlite included) or
            :class:`~torchvision.models.detection.FCOS`. A switched model may be switched
            again (to another measure).
        measure: ``"iou"``, ``"giou"``, ``"diou"``, ``"maiou"`` (P = B) or ``"gmaiou"``
            (P = M); the R-CNNs' RPN, or the single-stage model's matching.
        roi_measure: the R-CNNs' RoI heads' measure (``None``: ``measure``).
        keep_gt_proposals: the RoI heads' policy under a mask measure: the GT boxes that
            ``select_training_samples`` appends to the proposals score at least 1 against
            their own GT (as under box IoU), so each stays a positive of its own GT, whatever
            its mask-over-box ratio. ``False`` scores them by the measure like any proposal
            (a GT with ``|M| / |B| < 0.5`` then turns its own proposal negative).
        atss_topk: FCOS: ATSS's candidates per level and GT.
        atss_anchor_scale: FCOS: the factor its anchors are scaled by for the measure.

    Returns:
        ``model`` itself: no new parameters, the same ``state_dict`` keys. Training targets
        need ``masks`` ``[G, H, W]`` at the image's size under a mask measure.
    """
    measure = _canonical(measure)
    roi = measure if roi_measure is None else _canonical(roi_measure)
    if isinstance(atss_topk, bool) or not isinstance(atss_topk, int) or atss_topk < 1:
        raise ValueError(f"atss_topk must be a positive integer, got {atss_topk!r}")
    if not atss_anchor_scale > 0:
        raise ValueError(f"atss_anchor_scale must be positive, got {atss_anchor_scale!r}")
    switched = _switched_modules(model)
    cache = _switch_of(switched[0]).cache if switched else MaskTableCache()
    if isinstance(model, GeneralizedRCNN):
        if not isinstance(model.rpn, RegionProposalNetwork) or not isinstance(
            model.roi_heads, RoIHeads
        ):
            raise TypeError(
                "use_measure needs torchvision's RegionProposalNetwork and RoIHeads (or "
                f"subclasses), got {type(model.rpn).__name__} and {type(model.roi_heads).__name__}"
            )
        _switch(model.rpn, _SwitchedRPN, measure, cache)
        _switch(model.roi_heads, _SwitchedRoIHeads, roi, cache, keep_gt_proposals=keep_gt_proposals)
    elif roi_measure is not None:
        raise ValueError(f"roi_measure applies to the R-CNNs only, not to {type(model).__name__}")
    elif isinstance(model, RetinaNet):
        _switch(model, _SwitchedRetinaNet, measure, cache)
    elif isinstance(model, SSD):
        _switch(model, _SwitchedSSD, measure, cache)
    elif isinstance(model, FCOS):
        _switch(
            model, _SwitchedFCOS, measure, cache, topk=atss_topk, anchor_scale=atss_anchor_scale
        )
    else:
        raise TypeError(
            "use_measure supports torchvision's GeneralizedRCNN (Faster, Mask, Keypoint R-CNN), "
            f"RetinaNet, SSD / SSDlite and FCOS, got {type(model).__name__}"
        )
    _install_hooks(model, cache)
    return model


def restore(model: nn.Module) -> nn.Module:
    """Undo :func:`use_measure`: the stock classes, no added attributes, no hooks; ``model``.

    A model never switched is returned unchanged. The restored model is the stock one: it
    scripts with :func:`torch.jit.script` whenever the stock model does.
    """
    for module in _switched_modules(model):
        module.__class__ = module.__dict__.pop(_ATTR).original
    for handle in model.__dict__.pop(_HOOKS, ()):
        handle.remove()
    return model


@contextmanager
def capture_matches(model: nn.Module) -> Iterator[list[MatchRecord]]:
    """Record every matching a switched model does inside the ``with`` block.

    Yields the list that receives one :class:`MatchRecord` per stage and image, in call
    order (R-CNNs: the RPN's images, then the RoI heads')::

        with capture_matches(model) as records:
            model(images, targets)
    """
    modules = _switched_modules(model)
    if not modules:
        raise ValueError("the model is not switched: call use_measure(model, measure) first")
    records: list[MatchRecord] = []
    for m in modules:
        _switch_of(m).log = records
    try:
        yield records
    finally:
        for m in modules:
            if _ATTR in m.__dict__:
                _switch_of(m).log = None


def describe(model: nn.Module) -> str:
    """Which part of ``model`` matches with which measure, e.g. ``"rpn: gmaiou-mask, roi_heads:
    gmaiou-mask"`` (``"stock"`` if not switched)."""
    parts = []
    for name, module in (
        ("model", model),
        ("rpn", getattr(model, "rpn", None)),
        ("roi_heads", getattr(model, "roi_heads", None)),
    ):
        if isinstance(module, nn.Module) and _ATTR in module.__dict__:
            parts.append(f"{name}: {_switch_of(module).measure}")
    return ", ".join(parts) or "stock"
