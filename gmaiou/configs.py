"""Model, assigner, loss, post-processing and training settings as frozen dataclasses.

Every experiment is a named preset ``<model>-<assigner>-<backbone>-<size>``:

* model: ``yolact`` (Bolya et al., with the assigner of the name) or ``gmayolact``
  (GmaYOLACT, paper section 4.3: CARAFE in the FPN, DCNv2 in the backbone's last three
  stages, two anchor scales per location, cosine annealing, Rank & Sort loss);
* assigner: ``fixed`` (YOLACT's IoU 0.5 / 0.4 rule, 3 anchors per location) or
  ``atss-<measure>`` with measure ``iou``, ``giou``, ``diou``, ``maiou`` (GmaIoU with
  P = B) or ``gmaiou`` (GmaIoU with P = M), 1 anchor per location (2 for GmaYOLACT);
* backbone and size: the paper's ``r50`` / ``r101`` at 400, 550, 700 pixels, and
  CPU-scale presets with ``r18`` / ``r34`` at 160, 256, 320 pixels (same structure,
  64-channel FPN and heads, small batches, a short warm-up and schedule).

Values come from ``docs/spec.md`` section 3 and the public configs of the BMVC
version; where the GmaIoU paper's numbers were lost (GmaYOLACT's learning rate,
semantic weight and score threshold) the values of its public predecessors are used:
RS-YOLACT's learning rate 6e-3 at batch 32 (1.5e-3 at GmaYOLACT's single-GPU batch 8)
without gradient clipping, the RS-loss repository's score threshold 0.40, and YOLACT's
semantic weight 1. ``docs/fidelity.md`` lists every paper setting with its source.

``gmaiou configs`` lists the presets, one per line; ``gmaiou configs NAME`` prints one
as JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
from dataclasses import dataclass, field
from typing import Any

from gmaiou.measure import MEASURES

__all__ = [
    "ARCHS",
    "ASSIGNER_NAMES",
    "AugmentConfig",
    "BACKBONES",
    "AssignerConfig",
    "Config",
    "LossConfig",
    "ModelConfig",
    "PRESETS",
    "PostprocessConfig",
    "SECTIONS",
    "TrainConfig",
    "apply_overrides",
    "apply_settings",
    "get_config",
    "list_configs",
    "register",
    "with_num_classes",
]

ARCHS: tuple[str, ...] = ("yolact", "gmayolact")
BACKBONES: tuple[str, ...] = ("r18", "r34", "r50", "r101")
#: Assigner part of a preset name -> the overlap measure ATSS uses (``None``: fixed IoU rule).
ASSIGNER_NAMES: dict[str, str | None] = {
    "fixed": None,
    "atss-iou": "iou",
    "atss-giou": "giou",
    "atss-diou": "diou",
    "atss-maiou": "gmaiou-box",
    "atss-gmaiou": "gmaiou-mask",
}
_MEASURES = tuple(sorted(set(MEASURES.values())))  # canonical names, no aliases


def _check_choice(value: Any, choices: tuple[str, ...], name: str) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def _check_positive(value: Any, name: str, integer: bool = False) -> None:
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or value <= 0:
        raise ValueError(
            f"{name} must be a positive {'integer' if integer else 'number'}, got {value!r}"
        )


@dataclass(frozen=True)
class ModelConfig:
    """The network.

    Attributes:
        arch: ``"yolact"`` or ``"gmayolact"``.
        backbone: ResNet depth, ``"r18"``, ``"r34"``, ``"r50"`` or ``"r101"`` (torchvision).
        image_size: square input side ``S``.
        num_classes: foreground classes ``C`` (80 for COCO; see :func:`with_num_classes`).
        fpn_channels: channels of P3-P7.
        head_channels: channels of the shared prediction-head conv.
        proto_channels: channels of the protonet's hidden convs.
        num_protos: prototype masks (YOLACT: 32).
        proto_scale: the protonet's upsampling of P3 (YOLACT: 2, prototypes at stride 4).
        anchors: ``"yolact"`` (3 aspect ratios, YOLACT sizes) or ``"atss"`` (square, 4 x stride).
        anchor_scales: ATSS anchor scales per octave (GmaYOLACT: 2, sides 4 and 4·√2 x stride).
        anchor_base_scale: ATSS anchor side in strides (the octave base scale; ATSS: 4).
        classifier: ``"softmax"`` (``C + 1`` logits, background first) or ``"sigmoid"``
            (``C`` logits, for the Rank & Sort loss).
        upsample: FPN top-down upsampling, ``"bilinear"`` or ``"carafe"``.
        dcn: modulated deformable convs (DCNv2) in the backbone's last three stages.
        dcn_groups: offset groups of those convs (maYOLACT: 4).
        backbone_weights: the backbone's start when training, ``"none"`` (random
            initialisation) or ``"imagenet"`` (torchvision's ImageNet weights, as every
            reference); ``gmaiou train --weights`` overrides it.
        fpn_extras: how P6 and P7 are made: ``"separate"`` (stride-2 convs of C5 and P6
            after the top-down path, no output convs) or ``"top-down"`` (mmdetection's
            FPN_CARAFE: their laterals join the top-down path P7 -> P3 and every level has
            a 3x3 output conv).
        head_init: ``"prior"`` (class and box convs N(0, 0.01), semantic head biased to a
            0.01 prior, for random-backbone training) or ``"xavier"`` (every head conv
            Xavier-uniform with zero bias, as YOLACT and the maIoU code).
        anchor_scaling: YOLACT anchors' sides and strides: ``"image"`` (scaled with the
            image, as dbolya/yolact), ``"fixed-550"`` (the 550 sides 24 ... 384 and
            strides 550 / f at every size, as the maIoU code) or ``"sides-550"`` (the 550
            sides at the image's own strides, as ATSS anchors: the CPU presets, whose small
            images would leave the 550 strides' P6/P7 centres far from the image's cells).
        anchor_offset: ATSS anchor centres at ``(j + offset) * stride``: 0.5 (cell centres)
            or 0.0 (mmdetection's AnchorGenerator, the maIoU code).
        target_resize: downsampling of mask and semantic targets: ``"area"`` (a cell is on
            when over half of it is) or ``"bilinear"`` (bilinear, then > 0.5, as the references).
        resize_antialias: antialiased resize of the input image (training and test);
            ``False``: plain bilinear, as OpenCV / mmcv in the references.
    """

    arch: str = "yolact"
    backbone: str = "r50"
    image_size: int = 550
    num_classes: int = 80
    fpn_channels: int = 256
    head_channels: int = 256
    proto_channels: int = 256
    num_protos: int = 32
    proto_scale: int = 2
    anchors: str = "yolact"
    anchor_scales: int = 1
    anchor_base_scale: float = 4.0
    classifier: str = "softmax"
    upsample: str = "bilinear"
    dcn: bool = False
    dcn_groups: int = 4
    backbone_weights: str = "none"
    fpn_extras: str = "separate"
    head_init: str = "prior"
    anchor_scaling: str = "image"
    anchor_offset: float = 0.5
    target_resize: str = "area"
    resize_antialias: bool = True

    def __post_init__(self) -> None:
        _check_choice(self.arch, ARCHS, "model.arch")
        _check_choice(self.backbone_weights, ("none", "imagenet"), "model.backbone_weights")
        _check_choice(self.fpn_extras, ("separate", "top-down"), "model.fpn_extras")
        _check_choice(self.head_init, ("prior", "xavier"), "model.head_init")
        _check_choice(
            self.anchor_scaling, ("image", "fixed-550", "sides-550"), "model.anchor_scaling"
        )
        _check_choice(self.target_resize, ("area", "bilinear"), "model.target_resize")
        if self.anchor_offset not in (0.0, 0.5):
            raise ValueError(f"model.anchor_offset must be 0.0 or 0.5, got {self.anchor_offset!r}")
        _check_choice(self.backbone, BACKBONES, "model.backbone")
        _check_choice(self.anchors, ("yolact", "atss"), "model.anchors")
        _check_choice(self.classifier, ("softmax", "sigmoid"), "model.classifier")
        _check_choice(self.upsample, ("bilinear", "carafe"), "model.upsample")
        if (
            isinstance(self.image_size, bool)
            or not isinstance(self.image_size, int)
            or self.image_size < 32
        ):
            raise ValueError(
                f"model.image_size must be an integer of at least 32, got {self.image_size!r}"
            )
        for name in (
            "num_classes",
            "fpn_channels",
            "head_channels",
            "proto_channels",
            "num_protos",
            "proto_scale",
            "anchor_scales",
            "dcn_groups",
        ):
            _check_positive(getattr(self, name), f"model.{name}", integer=True)
        _check_positive(self.anchor_base_scale, "model.anchor_base_scale")
        if self.anchors == "atss" and self.anchor_scaling != "image":
            raise ValueError(
                "model.anchor_scaling applies to YOLACT anchors (model.anchors='yolact')"
            )
        if self.anchors == "yolact" and self.anchor_offset != 0.5:
            raise ValueError("model.anchor_offset applies to ATSS anchors (model.anchors='atss')")
        if self.anchors == "yolact" and self.anchor_scales != 1:
            raise ValueError("model.anchor_scales > 1 needs ATSS anchors (model.anchors='atss')")

    @property
    def num_cls_outputs(self) -> int:
        """Logits per anchor: ``C + 1`` for softmax (background at index 0), ``C`` for sigmoid."""
        return self.num_classes + 1 if self.classifier == "softmax" else self.num_classes


@dataclass(frozen=True)
class AssignerConfig:
    """Which anchors are positive, negative or ignored.

    Attributes:
        kind: ``"fixed"`` (YOLACT's MaxIoU rule) or ``"atss"``.
        measure: the overlap measure (``"iou"``, ``"giou"``, ``"diou"``, ``"ciou"``,
            ``"gmaiou-box"`` = maIoU, ``"gmaiou-mask"`` = GmaIoU with P = M).
        topk: ATSS candidates per level per GT.
        pos_iou, neg_iou, min_pos_iou: the fixed rule's thresholds.
        crowd_iof: anchors not positive whose area lies more than this fraction inside a
            crowd box are ignored (YOLACT's ``crowd_iou_threshold``).
    """

    kind: str = "fixed"
    measure: str = "iou"
    topk: int = 9
    pos_iou: float = 0.5
    neg_iou: float = 0.4
    min_pos_iou: float = 0.0
    crowd_iof: float = 0.7

    def __post_init__(self) -> None:
        _check_choice(self.kind, ("fixed", "atss"), "assigner.kind")
        _check_choice(self.measure, _MEASURES, "assigner.measure")
        _check_positive(self.topk, "assigner.topk", integer=True)
        if not self.neg_iou <= self.pos_iou:
            raise ValueError(
                f"assigner.neg_iou ({self.neg_iou}) must not exceed pos_iou ({self.pos_iou})"
            )


@dataclass(frozen=True)
class LossConfig:
    """Loss terms and weights.

    Attributes:
        kind: ``"yolact"`` (softmax cross-entropy with OHEM, SmoothL1 boxes, cropped mask
            BCE, semantic BCE) or ``"ranksort"`` (GmaYOLACT: Rank & Sort classification,
            GIoU boxes and Dice masks weighted by the score and self-balanced, semantic BCE).
        cls_weight, box_weight, mask_weight, semantic_weight: term weights (box and mask
            weights are replaced by self-balancing when ``self_balance``).
        ohem_ratio: negatives kept per positive by OHEM.
        smooth_l1_beta: SmoothL1's transition point.
        max_masks: masks trained per image (a random subset of the positives beyond it).
        rs_delta: the Rank & Sort loss's smoothing width ``delta``.
        self_balance: scale the box and mask terms to the classification loss's value.
    """

    kind: str = "yolact"
    cls_weight: float = 1.0
    box_weight: float = 1.5
    mask_weight: float = 6.125
    semantic_weight: float = 1.0
    ohem_ratio: float = 3.0
    smooth_l1_beta: float = 1.0
    max_masks: int = 100
    rs_delta: float = 0.5
    self_balance: bool = False

    def __post_init__(self) -> None:
        _check_choice(self.kind, ("yolact", "ranksort"), "loss.kind")
        for name in ("cls_weight", "box_weight", "mask_weight", "semantic_weight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"loss.{name} must be a non-negative number, got {value!r}")
        for name in ("ohem_ratio", "smooth_l1_beta", "rs_delta"):
            _check_positive(getattr(self, name), f"loss.{name}")
        _check_positive(self.max_masks, "loss.max_masks", integer=True)


@dataclass(frozen=True)
class PostprocessConfig:
    """Detection post-processing (box decoding, Fast NMS, mask assembly).

    Attributes:
        score_thr: anchors whose best class score is below this are dropped before NMS,
            and detections below it after.
        nms_iou: Fast NMS IoU threshold.
        top_k: boxes per class entering Fast NMS.
        max_dets: detections kept per image.
        mask_thr: threshold of the upsampled mask probabilities.
        score_activation: ``"softmax"`` or ``"sigmoid"``; must match ``model.classifier``.
        pre_nms_per_level: keep each pyramid level's this many best-scoring anchors
            before the score threshold and NMS (mmdetection's ``nms_pre``, 1000 in the
            maIoU configs); ``None``: all anchors.
    """

    score_thr: float = 0.05
    nms_iou: float = 0.5
    top_k: int = 200
    max_dets: int = 100
    mask_thr: float = 0.5
    score_activation: str = "softmax"
    pre_nms_per_level: int | None = None

    def __post_init__(self) -> None:
        if self.pre_nms_per_level is not None:
            _check_positive(self.pre_nms_per_level, "postprocess.pre_nms_per_level", integer=True)
        _check_choice(self.score_activation, ("softmax", "sigmoid"), "postprocess.score_activation")
        _check_positive(self.top_k, "postprocess.top_k", integer=True)
        _check_positive(self.max_dets, "postprocess.max_dets", integer=True)
        for name in ("score_thr", "nms_iou", "mask_thr"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"postprocess.{name} must lie in [0, 1], got {value!r}")


@dataclass(frozen=True)
class AugmentConfig:
    """The training augmentation (:class:`gmaiou.data.transforms.TrainTransform`).

    Attributes:
        photometric: random brightness, contrast, saturation and hue.
        expand: YOLACT's expand (a canvas 1-4 times the image, probability 1/2).
        crop: SSD's min-IoU random crop.
        flip: horizontal flip, probability 1/2.
        scale_range: mild scale jitter ``(low, high)``, ``None`` for none (YOLACT has none).
        channel_swap: the photometric distortion's random channel permutation
            (mmdetection's ``PhotoMetricDistortion``, probability 1/2).
    """

    photometric: bool = True
    expand: bool = True
    crop: bool = True
    flip: bool = True
    scale_range: tuple[float, float] | None = None
    channel_swap: bool = False

    def __post_init__(self) -> None:
        if self.scale_range is not None:
            low, high = self.scale_range
            if not 0.0 < low <= high:
                raise ValueError(
                    f"augment.scale_range must satisfy 0 < low <= high, got {self.scale_range}"
                )

    def transform(self, size: int, antialias: bool = True):
        """The :class:`~gmaiou.data.transforms.TrainTransform` to ``size x size`` these settings
        describe (``antialias``: the model's ``resize_antialias``)."""
        from gmaiou.data.transforms import TrainTransform

        return TrainTransform(
            size,
            photometric=self.photometric,
            expand=self.expand,
            crop=self.crop,
            flip=self.flip,
            scale_range=self.scale_range,
            channel_swap=self.channel_swap,
            antialias=antialias,
        )


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation (read by ``gmaiou.training``).

    Attributes:
        epochs: training epochs.
        batch_size: images per optimizer step, over all processes (the global batch;
            each of ``N`` processes takes ``batch_size / N``, see :mod:`gmaiou.training.batch`).
        optimizer: ``"sgd"`` (the paper's) or ``"adamw"`` (the CPU recipe's: from random
            weights it learns several times faster in a few minutes, ``docs/recipe.md``).
        lr, momentum, weight_decay: optimizer settings (``momentum``: SGD only); ``lr`` is
            the rate for ``lr_batch`` images.
        lr_batch: the global batch ``lr`` is set for (default: ``batch_size``); a run with
            another ``batch_size`` uses ``lr x batch_size / lr_batch`` (linear scaling).
        grad_clip: max gradient norm (``None``: no clipping).
        warmup_iters, warmup_ratio: mmdetection's linear warm-up.
        schedule: ``"step"`` or ``"cosine"`` (cosine annealing to ``min_lr_ratio``).
        steps: epochs at which a step schedule multiplies the rate by ``gamma``.
        gamma: step decay factor.
        min_lr_ratio: final factor of the cosine schedule.
        amp: mixed precision where the device supports it.
        tf32: on CUDA, TF32 for float32 matrix products as for cuDNN convolutions (both of
            torch's flags set for the run, restored after; ``False``: full float32 in both).
            The deformable convolutions' products follow it (see :mod:`gmaiou.training.trainer`).
    """

    epochs: int = 55
    batch_size: int = 32
    optimizer: str = "sgd"
    lr: float = 4e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    grad_clip: float | None = 35.0
    warmup_iters: int = 500
    warmup_ratio: float = 0.1
    schedule: str = "step"
    steps: tuple[float, ...] = (20, 42, 49, 52)
    gamma: float = 0.1
    min_lr_ratio: float = 0.0
    amp: bool = True
    lr_batch: int | None = None
    tf32: bool = True

    def __post_init__(self) -> None:
        _check_choice(self.schedule, ("step", "cosine"), "train.schedule")
        _check_choice(self.optimizer, ("sgd", "adamw"), "train.optimizer")
        _check_positive(self.epochs, "train.epochs", integer=True)
        _check_positive(self.batch_size, "train.batch_size", integer=True)
        if self.lr_batch is None:  # dataclasses.replace(batch_size=...) keeps it
            object.__setattr__(self, "lr_batch", self.batch_size)
        _check_positive(self.lr_batch, "train.lr_batch", integer=True)
        _check_positive(self.lr, "train.lr")
        if tuple(self.steps) != tuple(sorted(self.steps)):
            raise ValueError(f"train.steps must be increasing, got {self.steps}")
        if not 0.0 < self.warmup_ratio <= 1.0:
            raise ValueError(f"train.warmup_ratio must lie in (0, 1], got {self.warmup_ratio}")
        if self.grad_clip is not None:
            _check_positive(self.grad_clip, "train.grad_clip")


@dataclass(frozen=True)
class Config:
    """One experiment: the network, its assigner, losses, post-processing and training."""

    name: str
    model: ModelConfig = field(default_factory=ModelConfig)
    assigner: AssignerConfig = field(default_factory=AssignerConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        m, a, lo, p = self.model, self.assigner, self.loss, self.postprocess
        if (a.kind == "fixed") != (m.anchors == "yolact"):
            raise ValueError(
                f"{self.name}: assigner.kind={a.kind!r} needs model.anchors="
                f"{'yolact' if a.kind == 'fixed' else 'atss'!r}, got {m.anchors!r}"
            )
        if p.score_activation != m.classifier:
            raise ValueError(
                f"{self.name}: postprocess.score_activation={p.score_activation!r} does not match "
                f"model.classifier={m.classifier!r}"
            )
        wanted = "sigmoid" if lo.kind == "ranksort" else "softmax"
        if m.classifier != wanted:
            raise ValueError(
                f"{self.name}: loss.kind={lo.kind!r} needs model.classifier={wanted!r}"
            )

    def with_num_classes(self, num_classes: int) -> Config:
        """The same config for a dataset with ``num_classes`` foreground classes."""
        return with_num_classes(self, num_classes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dictionary (tuples become lists)."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Config:
        """Inverse of :meth:`to_dict`; unknown keys are an error naming them."""
        parts = SECTIONS
        unknown = sorted(set(data) - set(parts) - {"name"})
        if unknown:
            raise ValueError(f"unknown config keys {unknown}")
        kwargs: dict[str, Any] = {"name": data["name"]}
        for key, klass in parts.items():
            values = dict(data.get(key, {}))
            names = {f.name for f in dataclasses.fields(klass)}
            bad = sorted(set(values) - names)
            if bad:
                raise ValueError(f"unknown keys in config.{key}: {bad}")
            if key == "train" and "steps" in values:
                values["steps"] = tuple(values["steps"])
            if key == "augment" and values.get("scale_range") is not None:
                values["scale_range"] = tuple(values["scale_range"])
            kwargs[key] = klass(**values)
        return cls(**kwargs)


#: The config's sections: attribute name -> dataclass.
SECTIONS: dict[str, type] = {
    "model": ModelConfig,
    "assigner": AssignerConfig,
    "loss": LossConfig,
    "postprocess": PostprocessConfig,
    "train": TrainConfig,
    "augment": AugmentConfig,
}


def with_num_classes(config: Config, num_classes: int) -> Config:
    """``config`` with ``model.num_classes`` replaced (e.g. from the dataset's categories)."""
    _check_positive(num_classes, "num_classes", integer=True)
    return dataclasses.replace(
        config, model=dataclasses.replace(config.model, num_classes=num_classes)
    )


def _parse_value(text: str) -> Any:
    """A setting's value from the command line: JSON (numbers, true/false, null, lists), else a string."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return tuple(value) if isinstance(value, list) else value


def _setting_text(section: str, name: str, value: Any) -> str:
    """``section.field=value`` with the value as JSON (tuples as lists), as :func:`apply_settings` reads it."""
    text = json.dumps(list(value) if isinstance(value, tuple) else value)
    return f"{section}.{name}={text}"


def _replace_fields(config: Config, changes: list[tuple[str, str, Any, str]]) -> Config:
    """``config`` with each ``(section, field, value, setting)`` change made.

    The one path by which settings and overrides change a frozen config: an unknown section
    or field is an error naming the ``setting`` (with close field names); the changes are
    made together and checked once, so that changes that only agree as a set (a loss with
    the classifier it needs) do not fail half-made.
    """
    sections = {f.name for f in dataclasses.fields(config)} - {"name"}
    grouped: dict[str, dict[str, tuple[str, Any]]] = {}
    for section, name, value, setting in changes:
        if section not in sections:
            raise ValueError(
                f"unknown config section {section!r} in {setting!r}; sections: {sorted(sections)}"
            )
        names = [f.name for f in dataclasses.fields(getattr(config, section))]
        if name not in names:
            close = difflib.get_close_matches(name, names, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ValueError(f"unknown setting {f'{section}.{name}'!r}{hint}")
        grouped.setdefault(section, {})[name] = (setting, value)
    parts = {}
    for section, values in grouped.items():
        try:
            parts[section] = dataclasses.replace(
                getattr(config, section), **{k: v for k, (_, v) in values.items()}
            )
        except (TypeError, ValueError) as err:
            given = ", ".join(repr(text) for text, _ in values.values())
            raise ValueError(f"bad value in {given}: {err}") from None
    try:
        return dataclasses.replace(config, **parts)
    except (TypeError, ValueError) as err:
        given = [setting for *_, setting in changes]
        raise ValueError(f"settings {given} give an inconsistent config: {err}") from None


def apply_settings(config: Config, settings: list[str] | tuple[str, ...]) -> Config:
    """``config`` with ``section.field=value`` settings applied, e.g. ``model.anchor_base_scale=2``.

    Values are JSON (``true``, ``null``, ``[0.75, 1.33]``) or bare strings (``cosine``); lists
    become tuples. An unknown section or field, or a value the field rejects, is an error
    naming the setting.
    """
    changes = []
    for setting in settings:
        key, sep, text = setting.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot:
            raise ValueError(
                f"a setting is section.field=value (e.g. train.lr=0.01), got {setting!r}"
            )
        changes.append((section, name, _parse_value(text.strip()), setting))
    return _replace_fields(config, changes)


def apply_overrides(config: Config, overrides: dict[str, Any]) -> Config:
    """``config`` with ``config.train`` fields replaced by ``overrides`` (``None`` values ignored).

    Overriding ``epochs`` rescales the step-decay epochs in proportion (a preset's steps at
    16 and 20 of 24 epochs become 2 and 2.5 of 3), unless ``steps`` is overridden too.
    An overridden ``lr`` is the rate for the (overridden) batch; overriding ``batch_size``
    alone keeps ``lr_batch``, so the preset's rate is scaled linearly to the new batch.
    Errors are those of :func:`apply_settings`, naming the setting as ``train.field=value``.
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    if not given:
        return config
    train = config.train
    if "lr" in given and "lr_batch" not in given:  # a given rate is meant for the given batch
        given["lr_batch"] = given.get("batch_size", train.batch_size)
    if "epochs" in given and "steps" not in given and given["epochs"] != train.epochs:
        given["steps"] = tuple(s * given["epochs"] / train.epochs for s in train.steps)
    changes = [("train", k, v, _setting_text("train", k, v)) for k, v in given.items()]
    return _replace_fields(config, changes)


def settings_between(base: Config, target: Config) -> tuple[str, ...]:
    """The ``section.field=value`` settings that turn ``base`` into ``target`` (the inverse of
    :func:`apply_settings`: ``apply_settings(base, settings_between(base, target)) == target``)."""
    settings = []
    for section in SECTIONS:
        a, b = getattr(base, section), getattr(target, section)
        for f in dataclasses.fields(b):
            value = getattr(b, f.name)
            if getattr(a, f.name) != value:
                settings.append(_setting_text(section, f.name, value))
    return tuple(settings)


# --------------------------------------------------------------------------- presets

PAPER_BACKBONES: tuple[str, ...] = ("r50", "r101")
PAPER_SIZES: tuple[int, ...] = (400, 550, 700)
CPU_BACKBONES: tuple[str, ...] = ("r18", "r34")
CPU_SIZES: tuple[int, ...] = (160, 256, 320)


def _preset(arch: str, assigner_name: str, backbone: str, size: int) -> Config:
    measure = ASSIGNER_NAMES[assigner_name]
    cpu = backbone in CPU_BACKBONES
    channels = 64 if cpu else 256
    fixed = measure is None
    gma = arch == "gmayolact"
    model = ModelConfig(
        arch=arch,
        backbone=backbone,
        image_size=size,
        fpn_channels=channels,
        head_channels=channels,
        proto_channels=channels,
        # CPU: prototypes at the image's resolution (stride 1); at 160 px YOLACT's stride 4
        # cannot draw the thin bars and rings (docs/recipe.md, search round 4).
        proto_scale=8 if cpu else 2,
        anchors="yolact" if fixed else "atss",
        anchor_scales=2 if gma else 1,
        classifier="sigmoid" if gma else "softmax",
        upsample="carafe" if gma else "bilinear",
        dcn=gma,
        backbone_weights="none" if cpu else "imagenet",
        fpn_extras="top-down" if gma and not cpu else "separate",
        head_init="prior" if cpu else "xavier",
        anchor_scaling=("sides-550" if cpu else "fixed-550") if fixed else "image",
        anchor_offset=0.5 if fixed or cpu else 0.0,
        target_resize="area" if cpu else "bilinear",
        resize_antialias=cpu,
    )
    assigner = (
        AssignerConfig(kind="fixed", measure="iou")
        if fixed
        else AssignerConfig(kind="atss", measure=measure)
    )
    loss = LossConfig(
        kind="ranksort" if gma else "yolact",
        mask_weight=6.125 if fixed else 8.0,
        self_balance=gma,
    )
    post = PostprocessConfig(
        score_thr=0.40 if gma else 0.05,
        score_activation=model.classifier,
        pre_nms_per_level=None if cpu else 1000,
    )
    augment = AugmentConfig(channel_swap=not cpu)
    if cpu:
        # The CPU recipe (docs/recipe.md): from random weights, in minutes, on 2 cores; 4 epochs
        # fit 6 minutes with stride-1 prototypes.
        # AdamW learns several times faster than SGD (SGD above lr 4e-3 collapsed), and
        # YOLACT's expand/crop (even a mild scale jitter) cost more than they gave in
        # 6 epochs; fixed-IoU anchors keep their 550 sides, as ATSS anchors do.
        train = TrainConfig(
            epochs=4,
            batch_size=4,
            optimizer="adamw",
            lr=1e-3,
            weight_decay=0.05,
            warmup_iters=50,
            schedule="cosine",
            steps=(),
            amp=False,
        )
        augment = AugmentConfig(photometric=False, expand=False, crop=False, flip=True)
    elif gma:
        # Single-GPU batch 8 (paper section 4.3, as YOLACT) with RS-YOLACT's optimisation
        # (the public config training YOLACT with Rank & Sort): lr 6e-3 for a batch of 32,
        # scaled linearly to 1.5e-3 at 8, no gradient clipping, cosine annealing.
        train = TrainConfig(
            batch_size=8,
            lr=6e-3,
            lr_batch=32,
            grad_clip=None,
            schedule="cosine",
            steps=(),
        )
    else:
        train = TrainConfig()
    name = f"{arch}-{assigner_name}-{backbone}-{size}"
    return Config(
        name=name,
        model=model,
        assigner=assigner,
        loss=loss,
        postprocess=post,
        train=train,
        augment=augment,
    )


def _build_presets() -> dict[str, Config]:
    presets: dict[str, Config] = {}
    for arch in ARCHS:
        for assigner_name in ASSIGNER_NAMES:
            if arch == "gmayolact" and assigner_name == "fixed":
                continue  # GmaYOLACT is built on ATSS (two anchor scales, no aspect ratios)
            for backbones, sizes in ((PAPER_BACKBONES, PAPER_SIZES), (CPU_BACKBONES, CPU_SIZES)):
                for backbone in backbones:
                    for size in sizes:
                        cfg = _preset(arch, assigner_name, backbone, size)
                        presets[cfg.name] = cfg
    return presets


#: Every named preset.
PRESETS: dict[str, Config] = _build_presets()


def list_configs() -> list[str]:
    """Names of all presets, in a stable order (model, assigner, backbone, size)."""
    return list(PRESETS)


def get_config(name: str) -> Config:
    """The preset called ``name``; an unknown name raises ``ValueError`` listing close matches."""
    if not isinstance(name, str):
        raise TypeError(f"config name must be a string, got {type(name).__name__}")
    try:
        return PRESETS[name]
    except KeyError:
        pass
    close = difflib.get_close_matches(name, PRESETS, n=5, cutoff=0.6)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise ValueError(
        f"unknown config {name!r}.{hint} Names are <model>-<assigner>-<backbone>-<size>, e.g. "
        f"yolact-atss-gmaiou-r50-550; `gmaiou configs` lists all {len(PRESETS)}."
    )


# --------------------------------------------------------------------------- CLI


def run(args: argparse.Namespace) -> int:
    if args.name is None:
        print("\n".join(list_configs()))
    else:
        print(get_config(args.name).to_json())
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``gmaiou configs [NAME]``."""
    parser = subparsers.add_parser(
        "configs",
        help="list the named presets, or print one as JSON",
        description="Without NAME: print every preset name, one per line. With NAME: print it as JSON.",
    )
    parser.add_argument(
        "name", nargs="?", metavar="NAME", help="a preset name, e.g. yolact-fixed-r50-550"
    )
    parser.set_defaults(func=run)
