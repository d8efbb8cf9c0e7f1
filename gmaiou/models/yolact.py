"""YOLACT and GmaYOLACT: ResNet + FPN P3-P7, a shared prediction head, protonet and semantic head.

``forward`` is a pure tensor function (traceable, exported to ONNX); ``loss`` assigns
anchors with the config's assigner and computes the loss terms; ``predict`` runs the
eval-mode forward and :func:`gmaiou.models.postprocess.postprocess`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gmaiou.anchors import AnchorGrid, atss_anchors, yolact_anchors
from gmaiou.assigners import IGNORED, NEGATIVE, ATSSAssigner, MaxIoUAssigner
from gmaiou.configs import Config
from gmaiou.losses import (
    _ohem_cross_entropy,
    dice_coefficient,
    mask_bce_loss,
    rank_sort_loss,
    self_balance,
    semantic_loss,
)
from gmaiou.measure import MaskIntegrals, is_mask_measure
from gmaiou.models.backbone import ResNetBackbone
from gmaiou.models.box_coder import _constants, decode_boxes, encode_boxes
from gmaiou.models.fpn import FPN
from gmaiou.models.heads import PredictionHead, ProtoNet, SemanticHead
from gmaiou.models.postprocess import crop_masks, postprocess

__all__ = ["YOLACT"]


def _downsample_masks(masks: Tensor, size: tuple[int, int], mode: str = "area") -> Tensor:
    """``[G, H, W]`` binary masks -> ``[G, h, w]`` float {0, 1}.

    ``mode="area"``: a cell is on when over half of it is; ``"bilinear"``: on where the
    bilinear interpolation (``align_corners=False``) exceeds 0.5, as YOLACT and the maIoU code.
    """
    if mode not in ("area", "bilinear"):
        raise ValueError(f"mode must be 'area' or 'bilinear', got {mode!r}")
    if masks.shape[0] == 0:
        return masks.new_zeros((0, *size), dtype=torch.float32)
    kwargs = {"align_corners": False} if mode == "bilinear" else {}
    small = F.interpolate(masks[None].float(), size=size, mode=mode, **kwargs)[0]
    return (small > 0.5).float()


class YOLACT(nn.Module):
    """YOLACT / GmaYOLACT built from a :class:`~gmaiou.configs.Config`.

    Attributes:
        config: the config it was built from.
        anchors: the :class:`~gmaiou.anchors.AnchorGrid` of ``config.model.image_size``
            (on the model's device).
    """

    #: Whether the loss keeps every shape fixed, so that it never synchronises the host with
    #: the device. ``None`` (the default): everywhere but on the CPU, where a synchronisation
    #: costs nothing and sizes read from the data save work: mask terms for as many anchors as
    #: an image's most positives rather than ``max_masks``, the RS loss's pairs of positives
    #: sized by their number rather than by the anchors.
    static_shapes: bool | None = None

    def __init__(self, config: Config) -> None:
        super().__init__()
        m = config.model
        self.config = config
        self.image_size = m.image_size
        self.backbone = ResNetBackbone(m.backbone, dcn=m.dcn, dcn_groups=m.dcn_groups)
        self.fpn = FPN(self.backbone.out_channels, m.fpn_channels, m.upsample, m.fpn_extras)
        if m.anchors == "yolact":
            if m.anchor_scaling == "sides-550":
                grid = yolact_anchors(m.image_size, base_size=24.0 * 550 / m.image_size)
            else:
                reference = 550 if m.anchor_scaling == "fixed-550" else None
                grid = yolact_anchors(m.image_size, reference_size=reference)
        else:
            # Offset 0 is mmdetection's AnchorGenerator: centres at j * 2^k.
            grid = atss_anchors(
                m.image_size,
                scales_per_octave=m.anchor_scales,
                octave_base_scale=m.anchor_base_scale,
                offset=m.anchor_offset,
                strides="exact" if m.anchor_offset == 0.0 else "image",
            )
        self._grid_layout = (grid.num_level_anchors, grid.feature_sizes, grid.anchors_per_location)
        self.register_buffer("anchor_boxes", grid.anchors, persistent=False)
        self.head = PredictionHead(
            m.fpn_channels,
            m.head_channels,
            grid.anchors_per_location,
            m.num_cls_outputs,
            m.num_protos,
            init=m.head_init,
        )
        self.protonet = ProtoNet(m.fpn_channels, m.proto_channels, m.num_protos, m.proto_scale)
        self.semantic_head = SemanticHead(m.fpn_channels, m.num_classes, init=m.head_init)
        a = config.assigner
        if a.kind == "fixed":
            self.assigner: MaxIoUAssigner | ATSSAssigner = MaxIoUAssigner(
                a.pos_iou, a.neg_iou, a.min_pos_iou, measure=a.measure
            )
        else:
            self.assigner = ATSSAssigner(topk=a.topk, measure=a.measure)

    def _static_shapes(self, device: torch.device) -> bool:
        return device.type != "cpu" if self.static_shapes is None else self.static_shapes

    @property
    def anchors(self) -> AnchorGrid:
        levels, sizes, per_loc = self._grid_layout
        return AnchorGrid(self.anchor_boxes, levels, sizes, per_loc, self.image_size)

    # ------------------------------------------------------------------ forward

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """Raw predictions.

        Args:
            images: ``[B, 3, S, S]`` normalised images, ``S = config.model.image_size``.

        Returns:
            ``cls_logits [B, A, K]`` (``K = C + 1``, background at 0, for softmax;
            ``K = C`` for sigmoid), ``box_deltas [B, A, 4]`` (coded as in
            :mod:`gmaiou.models.box_coder`), ``coeffs [B, A, P]`` (tanh), ``protos
            [B, Hp, Wp, P]`` (``Hp = proto_scale * ceil(S / 8)``) and, in training mode,
            ``semantic [B, C, Hs, Ws]`` (``Hs = ceil(S / 8)``).
        """
        s = self.image_size
        if (
            images.dim() != 4
            or images.shape[1] != 3
            or images.shape[2] != s
            or images.shape[3] != s
        ):
            raise ValueError(
                f"images must have shape [B, 3, {s}, {s}] for this config, got {list(images.shape)}"
            )
        pyramid = self.fpn(self.backbone(images))
        cls_logits, box_deltas, coeffs = self.head(pyramid)
        out = {
            "cls_logits": cls_logits,
            "box_deltas": box_deltas,
            "coeffs": coeffs,
            "protos": self.protonet(pyramid[0]),
        }
        if self.training:
            out["semantic"] = self.semantic_head(pyramid[0])
        return out

    # ------------------------------------------------------------------ assignment

    def _assign_image(
        self,
        gt_boxes: Tensor,
        gt_masks: Tensor | None,
        integrals: MaskIntegrals | None,
        crowd: Tensor | None,
    ) -> Tensor:
        """``[A]`` matched GT index (>= 0), ``NEGATIVE`` or ``IGNORED`` for one image, on the model's device."""
        anchors = self.anchor_boxes
        device = anchors.device
        layout = self._grid_layout[0]
        if is_mask_measure(self.config.assigner.measure):
            source: Tensor | MaskIntegrals | None = integrals if integrals is not None else gt_masks
            if source is None:
                raise ValueError(
                    f"assigner measure {self.config.assigner.measure!r} needs GT masks: the batch has "
                    "neither 'masks' nor 'mask_integrals'"
                )
            # Assign where the masks (or their integral images) live, e.g. built on the CPU
            # by a data-loader worker; only the [A] result moves.
            where = source.device
            gt_inds = self.assigner.assign(
                anchors.to(where), gt_boxes.to(where), source, num_level_anchors=layout
            ).gt_inds
        else:
            gt_inds = self.assigner.assign(
                anchors, gt_boxes.to(device), num_level_anchors=layout
            ).gt_inds
        gt_inds = gt_inds.to(device)
        if crowd is not None and crowd.shape[0] > 0:
            # YOLACT ignores non-positive anchors lying mostly inside a crowd box.
            crowd = crowd.to(device=device, dtype=anchors.dtype)
            lt = torch.maximum(anchors[:, None, :2], crowd[None, :, :2])
            rb = torch.minimum(anchors[:, None, 2:], crowd[None, :, 2:])
            inter = (rb - lt).clamp(min=0).prod(dim=2)
            area = ((anchors[:, 2] - anchors[:, 0]) * (anchors[:, 3] - anchors[:, 1])).clamp(
                min=1e-6
            )
            iof = (inter / area[:, None]).max(dim=1).values
            gt_inds = torch.where(
                (iof > self.config.assigner.crowd_iof) & (gt_inds < 0),
                torch.full_like(gt_inds, IGNORED),
                gt_inds,
            )
        return gt_inds

    def assign(self, batch: dict[str, Any]) -> Tensor:
        """``[B, A]`` assignment of every image of a collated batch (see :meth:`loss`)."""
        boxes = batch["boxes"]
        masks = batch.get("masks")
        integrals = batch.get("mask_integrals")
        crowd = batch.get("crowd_boxes")
        rows = []
        for i, gt_boxes in enumerate(boxes):
            rows.append(
                self._assign_image(
                    gt_boxes,
                    None if masks is None else masks[i],
                    None if integrals is None else integrals[i],
                    None if crowd is None else crowd[i],
                )
            )
        return torch.stack(rows)

    # ------------------------------------------------------------------ loss

    def loss(self, outputs: dict[str, Tensor], batch: dict[str, Any]) -> dict[str, Tensor]:
        """Training loss of a batch.

        Args:
            outputs: :meth:`forward` in training mode (with ``"semantic"``).
            batch: ``gmaiou.data.loader.collate_instances`` output: ``"boxes"`` (list of
                ``[G, 4]``), ``"labels"`` (list of ``[G]`` in ``[0, C)``), ``"masks"`` (list of
                ``[G, S, S]`` bool), optional ``"crowd_boxes"`` (list of ``[K, 4]``) and
                ``"mask_integrals"`` (list of :class:`~gmaiou.measure.MaskIntegrals` or ``None``).

        Returns:
            ``{"loss", "cls", "box", "mask", "semantic"}`` scalars; ``loss`` is the weighted total.
        """
        for key in ("cls_logits", "box_deltas", "coeffs", "protos", "semantic"):
            if key not in outputs:
                raise ValueError(f"outputs lacks {key!r}: call loss() on a training-mode forward")
        for key in ("boxes", "labels", "masks"):
            if key not in batch:
                raise ValueError(f"batch lacks {key!r}")
        cls_logits = outputs["cls_logits"]
        bsz, num_anchors = cls_logits.shape[:2]
        if len(batch["boxes"]) != bsz or len(batch["labels"]) != bsz or len(batch["masks"]) != bsz:
            raise ValueError(
                f"batch holds {len(batch['boxes'])} box lists, {len(batch['labels'])} label lists and "
                f"{len(batch['masks'])} mask stacks for {bsz} images"
            )
        device = cls_logits.device
        s = self.image_size
        for i, (b, lab, m) in enumerate(zip(batch["boxes"], batch["labels"], batch["masks"])):
            g = b.shape[0]
            if lab.shape != (g,) or m.shape != (g, s, s):
                raise ValueError(
                    f"image {i}: {g} boxes need labels [{g}] and masks [{g}, {s}, {s}], "
                    f"got {list(lab.shape)} and {list(m.shape)}"
                )
        _check_labels(batch["labels"], self.config.model.num_classes)
        gt_boxes = [b.to(device=device, dtype=torch.float32) for b in batch["boxes"]]
        gt_labels = [lab.to(device=device, dtype=torch.long) for lab in batch["labels"]]
        gt_masks = [m.to(device) for m in batch["masks"]]
        gt_inds = self.assign(batch)  # [B, A]
        targets = _Targets(gt_inds, gt_boxes, gt_labels, gt_masks, self.anchor_boxes)
        if self.config.loss.kind == "ranksort":
            return self._ranksort_loss(outputs, targets)
        return self._yolact_loss(outputs, targets)

    def _semantic_loss(self, semantic: Tensor, targets: _Targets) -> Tensor:
        hs, ws = semantic.shape[-2:]
        num_classes = semantic.shape[1]
        maps = []
        for masks, labels in zip(targets.masks, targets.labels):
            small = _downsample_masks(masks, (hs, ws), self.config.model.target_resize).flatten(
                1
            )  # [G, hs*ws]
            index = labels[:, None].expand_as(small)
            per_class = small.new_zeros(num_classes, hs * ws).scatter_reduce(
                0, index, small, "amax"
            )
            maps.append(per_class.view(num_classes, hs, ws))
        return semantic_loss(semantic, torch.stack(maps))

    def _mask_terms(self, outputs: dict[str, Tensor], targets: _Targets) -> _MaskTerms:
        """The mask terms' inputs in fixed shapes: ``K = min(max_masks, A)`` anchors per image.

        ``torch.topk`` over (positive + uniform noise in ``[0, 1)``) takes every positive of an
        image when it has at most ``K``, a uniform random ``K`` of them otherwise, and fills
        the other slots with non-positives, which ``valid`` weighs 0. Without
        :attr:`static_shapes`, ``K`` is at most the most positives of an image (at least 1)."""
        protos, coeffs = outputs["protos"], outputs["coeffs"]
        bsz, num_anchors = targets.gt_inds.shape
        hp, wp = protos.shape[1:3]
        k = min(self.config.loss.max_masks, num_anchors)
        pos = targets.gt_inds >= 0
        if not self._static_shapes(pos.device):
            k = max(1, min(k, int(pos.sum(dim=1).max())))
        noise = torch.rand(pos.shape, device=pos.device)
        index = (pos.float() + noise).topk(k, dim=1, sorted=False).indices  # [B, K]
        valid = pos.gather(1, index)
        gt = targets.gt_inds.gather(1, index).clamp(min=0)
        picked = coeffs.gather(1, index[:, :, None].expand(-1, -1, coeffs.shape[2]))  # [B, K, P]
        logits = (protos.float() @ picked.float().transpose(1, 2)[:, None]).permute(0, 3, 1, 2)
        mask_targets = []
        for masks, inds in zip(targets.masks, gt):
            small = _downsample_masks(masks, (hp, wp), self.config.model.target_resize)
            if small.shape[0] == 0:  # no GT in this image: none of its slots is valid
                mask_targets.append(small.new_zeros(k, hp, wp))
            else:
                mask_targets.append(small[inds])
        scale = _constants(protos, [wp / self.image_size, hp / self.image_size] * 2)
        boxes = targets.matched_boxes().gather(1, index[:, :, None].expand(-1, -1, 4)) * scale
        crops = crop_masks(boxes.reshape(-1, 4), hp, wp).view(bsz, k, hp, wp)
        return _MaskTerms(index, valid, logits, torch.stack(mask_targets), crops, boxes)

    def _yolact_loss(self, outputs: dict[str, Tensor], targets: _Targets) -> dict[str, Tensor]:
        cfg = self.config.loss
        cls_logits, deltas = outputs["cls_logits"], outputs["box_deltas"]
        pos = targets.gt_inds >= 0
        neg = targets.gt_inds == NEGATIVE
        labels = targets.matched_labels() + 1  # background is index 0
        # pos and neg are disjoint by construction: no check (it would synchronise).
        cls = _ohem_cross_entropy(cls_logits, labels, pos, neg, cfg.ohem_ratio)

        # SmoothL1 over every anchor, kept at the positives.
        num_pos = pos.sum().clamp(min=1)
        anchors = self.anchor_boxes[None].expand_as(deltas)
        box_targets = encode_boxes(anchors, targets.matched_boxes())
        smooth_l1 = F.smooth_l1_loss(
            deltas.float(), box_targets, beta=cfg.smooth_l1_beta, reduction="none"
        ).sum(dim=2)
        box = torch.where(pos, smooth_l1, 0).sum() / num_pos

        terms = self._mask_terms(outputs, targets)
        areas = (terms.boxes[..., 2] - terms.boxes[..., 0]) * (
            terms.boxes[..., 3] - terms.boxes[..., 1]
        )
        bce = mask_bce_loss(
            terms.logits.flatten(0, 1),
            terms.targets.flatten(0, 1),
            terms.crops.flatten(0, 1),
            areas.flatten(),
        ).view_as(areas)
        mask_sum = torch.where(terms.valid, bce, 0).sum()
        mask_count = terms.valid.sum()
        # No positive in the batch: a zero that still reaches the mask branch.
        no_mask = (outputs["protos"].sum() + outputs["coeffs"].sum()) * 0
        mask = torch.where(mask_count > 0, mask_sum / mask_count.clamp(min=1), no_mask)

        semantic = self._semantic_loss(outputs["semantic"], targets)
        total = (
            cfg.cls_weight * cls
            + cfg.box_weight * box
            + cfg.mask_weight * mask
            + cfg.semantic_weight * semantic
        )
        return {"loss": total, "cls": cls, "box": box, "mask": mask, "semantic": semantic}

    def mask_targets(self, masks: Tensor, size: tuple[int, int]) -> Tensor:
        """``[G, S, S]`` GT masks as the loss sees them at ``size`` ``(h, w)``: ``[G, h, w]``
        float {0, 1}, downsampled by ``config.model.target_resize``."""
        return _downsample_masks(masks, size, self.config.model.target_resize)

    def _ranksort_loss(self, outputs: dict[str, Tensor], targets: _Targets) -> dict[str, Tensor]:
        cfg = self.config.loss
        cls_logits, deltas = outputs["cls_logits"].float(), outputs["box_deltas"].float()
        bsz, num_anchors, num_classes = cls_logits.shape
        pos = targets.gt_inds >= 0
        valid = targets.gt_inds != IGNORED
        # Every anchor's box, kept (weighted) at the positives: fixed shapes.
        pred_boxes = decode_boxes(self.anchor_boxes, deltas)  # [B, A, 4]
        gt_boxes = targets.matched_boxes()
        ious = torch.where(pos, _aligned_iou(pred_boxes.detach(), gt_boxes), 0)

        # (anchor, class) pairs, flattened; positives at their class, ignored anchors left out
        # by rank_sort_loss's valid mask. An anchor has at most one positive class, so with
        # static shapes the anchors bound the positive pairs (rank_sort_loss's slots).
        labels = targets.matched_labels().clamp(min=0)  # [B, A], meaningful at positives
        classes = torch.arange(num_classes, device=labels.device)
        pos_pairs = (labels[:, :, None] == classes) & pos[:, :, None]  # [B, A, K]
        sort_targets = pos_pairs.float() * ious[:, :, None]
        cls, _, _ = rank_sort_loss(
            cls_logits.reshape(-1),
            sort_targets.reshape(-1),
            pos_pairs.reshape(-1),
            cfg.rs_delta,
            valid=valid[:, :, None].expand_as(pos_pairs).reshape(-1),
            max_positives=bsz * num_anchors if self._static_shapes(cls_logits.device) else None,
        )

        # Box and mask terms weighted by each positive's best score (RS-YOLACT), then self-balanced.
        score_weight = cls_logits.detach().sigmoid().max(dim=2).values  # [B, A]
        weights = torch.where(pos, score_weight, 0)
        giou = torch.where(pos, _giou_loss(pred_boxes, gt_boxes), 0)
        # No positive: 0 / 1e-12, a zero that still reaches the box branch.
        box = (weights * giou).sum() / weights.sum().clamp(min=1e-12)
        terms = self._mask_terms(outputs, targets)
        w = torch.where(terms.valid, score_weight.gather(1, terms.index), 0)
        dice = dice_coefficient(
            (terms.logits.sigmoid() * terms.crops).flatten(0, 1), terms.targets.flatten(0, 1)
        ).view_as(w)
        dice_sum, weight_sum = (w * dice).sum(), w.sum()
        # No positive (or no weight): a zero that still reaches the mask branch. Selected on the
        # device; the division by 1 keeps the unselected branch finite.
        has_weight = weight_sum > 0
        ratio = dice_sum / torch.where(has_weight, weight_sum, torch.ones_like(weight_sum))
        no_mask = (outputs["protos"].sum() + outputs["coeffs"].sum()) * 0
        mask = torch.where(has_weight, 1 - ratio, no_mask)
        if cfg.self_balance:
            box, mask = self_balance(box, cls), self_balance(mask, cls)
        else:
            box, mask = cfg.box_weight * box, cfg.mask_weight * mask
        semantic = self._semantic_loss(outputs["semantic"], targets)
        total = cfg.cls_weight * cls + box + mask + cfg.semantic_weight * semantic
        return {"loss": total, "cls": cls, "box": box, "mask": mask, "semantic": semantic}

    # ------------------------------------------------------------------ inference

    @torch.no_grad()
    def predict(
        self, images: Tensor, out_size: tuple[int, int] | None = None
    ) -> list[dict[str, Tensor]]:
        """Detections per image: ``boxes [N, 4]`` xyxy, ``scores [N]``, ``labels [N]`` in ``[0, C)``,
        ``masks [N, H, W]`` bool, in input pixels (``S x S``) or in ``out_size`` ``(H, W)``."""
        was_training = self.training
        self.eval()
        try:
            outputs = self(images)
        finally:
            self.train(was_training)
        return postprocess(
            outputs, self.anchor_boxes, self.config.postprocess, self.image_size, out_size
        )


def _check_labels(labels: list[Tensor], num_classes: int) -> None:
    """Labels in ``[0, num_classes)``, as a :class:`ValueError` naming the first bad image.

    Host tensors are read per image (no synchronisation); labels already on a device are
    checked once for the whole batch (one synchronisation, none more on the error path)."""
    on_host = all(lab.device.type == "cpu" for lab in labels)
    if not on_host:
        flat = [lab.reshape(-1) for lab in labels if lab.numel()]
        if not flat:
            return
        joined = torch.cat(flat)
        if not bool(((joined < 0) | (joined >= num_classes)).any()):
            return
    for i, lab in enumerate(labels):
        if lab.numel() and (int(lab.min()) < 0 or int(lab.max()) >= num_classes):
            raise ValueError(
                f"image {i}: labels must lie in [0, {num_classes}), got "
                f"{int(lab.min())}..{int(lab.max())}"
            )


def _aligned_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """IoU of corresponding boxes, ``[..., 4]`` x ``[..., 4]`` -> ``[...]``."""
    lt = torch.maximum(boxes1[..., :2], boxes2[..., :2])
    rb = torch.minimum(boxes1[..., 2:], boxes2[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=-1)
    area1 = (boxes1[..., 2:] - boxes1[..., :2]).clamp(min=0).prod(dim=-1)
    area2 = (boxes2[..., 2:] - boxes2[..., :2]).clamp(min=0).prod(dim=-1)
    union = area1 + area2 - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(union))


def _giou_loss(boxes1: Tensor, boxes2: Tensor, eps: float = 1e-7) -> Tensor:
    """``1 - GIoU`` of corresponding boxes, ``[..., 4]`` x ``[..., 4]`` -> ``[...]``.

    The arithmetic of :func:`torchvision.ops.generalized_box_iou_loss` (the same ``eps``), with
    the intersection selected by ``torch.where`` instead of boolean indexing: elementwise, no
    data-dependent shape."""
    x1, y1, x2, y2 = boxes1.unbind(dim=-1)
    x1g, y1g, x2g, y2g = boxes2.unbind(dim=-1)
    xk1, yk1 = torch.max(x1, x1g), torch.max(y1, y1g)
    xk2, yk2 = torch.min(x2, x2g), torch.min(y2, y2g)
    overlap = (yk2 > yk1) & (xk2 > xk1)
    inter = torch.where(overlap, (xk2 - xk1) * (yk2 - yk1), torch.zeros_like(x1))
    union = (x2 - x1) * (y2 - y1) + (x2g - x1g) * (y2g - y1g) - inter
    iou = inter / (union + eps)
    enclosing = (torch.max(x2, x2g) - torch.min(x1, x1g)) * (
        torch.max(y2, y2g) - torch.min(y1, y1g)
    )
    return 1 - (iou - (enclosing - union) / (enclosing + eps))


class _MaskTerms(NamedTuple):
    """:meth:`YOLACT._mask_terms`: ``K`` slots per image, each an anchor or padding."""

    index: Tensor  # [B, K] anchor of each slot
    valid: Tensor  # [B, K] bool: the slot holds a positive
    logits: Tensor  # [B, K, Hp, Wp] assembled mask logits
    targets: Tensor  # [B, K, Hp, Wp] float {0, 1} GT masks at the prototypes' size
    crops: Tensor  # [B, K, Hp, Wp] bool, the pixels inside the (padded) GT box
    boxes: Tensor  # [B, K, 4] GT boxes in prototype pixels


class _Targets:
    """Per-batch assignment with the GT it refers to (all on the model's device)."""

    def __init__(
        self,
        gt_inds: Tensor,
        boxes: list[Tensor],
        labels: list[Tensor],
        masks: list[Tensor],
        anchors: Tensor,
    ) -> None:
        self.gt_inds, self.boxes, self.labels, self.masks = gt_inds, boxes, labels, masks
        self._anchors = anchors

    def _gather(self, per_image: list[Tensor], fill: Tensor) -> Tensor:
        rows = []
        for b, values in enumerate(per_image):
            idx = self.gt_inds[b].clamp(min=0)
            if values.shape[0] == 0:
                rows.append(fill.expand(idx.shape[0], *fill.shape))
            else:
                rows.append(values[idx])
        return torch.stack(rows)

    def matched_labels(self) -> Tensor:
        """``[B, A]`` class of each anchor's GT (meaningful at positives)."""
        return self._gather(self.labels, self.gt_inds.new_zeros(()))

    def matched_boxes(self) -> Tensor:
        """``[B, A, 4]`` box of each anchor's GT (meaningful at positives)."""
        return self._gather(self.boxes, self._anchors.new_zeros(4))
