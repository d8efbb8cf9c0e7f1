"""Where every setting of the ``paper`` presets comes from: one table, read by
``docs/fidelity.md`` (rendered from it) and by ``tests/paper/test_fidelity.py`` (which checks
the presets against it).

Each :class:`Setting` names a config field (``"model.fpn_channels"``), a constant of the
code (``"code:gmaiou.models.box_coder.BOX_STDS"``) or nothing (a structural choice of the
code, described), the paper presets it applies to, its value, its source (the paper's
section, or a reference file and line at the commits in :data:`REFERENCES`) and, where
the presets depart from that source, why.

``python -m gmaiou.paper.fidelity`` rewrites ``docs/fidelity.md``; ``--check`` exits 1 when a
preset disagrees with the table or the document is stale.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gmaiou.configs import (
    PAPER_BACKBONES,
    PAPER_SIZES,
    SECTIONS,
    Config,
    get_config,
    list_configs,
)

__all__ = [
    "AREAS",
    "NAME_FIELDS",
    "REFERENCES",
    "SELECTORS",
    "SETTINGS",
    "Setting",
    "check_presets",
    "lookup",
    "paper_presets",
    "render_markdown",
    "undocumented_fields",
]

#: The public code cited, at the commit read.
REFERENCES: dict[str, str] = {
    "maIoU": "kemaloksuz/Mask-aware-IoU @ a6ddebb9f32b03c9d76be33b00ebde692ab952fb "
    "(the mmdetection fork behind the BMVC maIoU numbers and maYOLACT)",
    "RS": "kemaloksuz/RankSortLoss @ b41f64df70b1f8e3260e5c04015e0c7b59b339d9 (RS-YOLACT)",
    "YOLACT": "dbolya/yolact @ 902073d414728280b496c5f0a59a8e8285b3c13c",
}

#: Which paper presets a setting applies to.
SELECTORS: dict[str, str] = {
    "all": "every paper preset",
    "yolact": "YOLACT, both assigners",
    "fixed": "YOLACT with the fixed-IoU assigner",
    "atss": "every ATSS preset (YOLACT-ATSS and GmaYOLACT)",
    "yolact-atss": "YOLACT with ATSS",
    "gmayolact": "GmaYOLACT",
}

AREAS: tuple[str, ...] = (
    "model",
    "anchors",
    "assigner",
    "losses",
    "augmentation",
    "schedule",
    "evaluation",
)

#: Fields set by the preset name ``<model>-<assigner>-<backbone>-<size>`` (rows describe them).
NAME_FIELDS: frozenset[str] = frozenset(
    {"model.arch", "model.backbone", "model.image_size", "assigner.kind", "assigner.measure"}
)

_Y550 = "maIoU configs/mayolact/yolact_r50_4x8_coco_scale550.py"
_A550 = "maIoU configs/mayolact/yolact_r50_4x8_coco_scale550_ATSSwmaIoU.py"
_MAY = "maIoU configs/mayolact/mayolact_r50_4x8_coco_scale550.py"
_HEAD = "maIoU mmdet/models/dense_heads/yolact_head.py"
_RSY = "RS configs/ranksort_loss/ranksort_yolact_r50_55e_coco.py"
_PIPE = "maIoU mmdet/datasets/pipelines/transforms.py"


@dataclass(frozen=True)
class Setting:
    """One row of the table.

    Attributes:
        area: one of :data:`AREAS`.
        name: what the setting is, in words.
        field: ``"part.field"`` of :class:`~gmaiou.configs.Config`, ``"code:module.NAME"``
            or ``None`` (a structural choice of the code; ``value`` describes it).
        applies: a key of :data:`SELECTORS`.
        value: the value for those presets.
        source: the paper's section or a reference file and line.
        departure: where and why the presets depart from the source (empty: they follow it).
    """

    area: str
    name: str
    field: str | None
    applies: str
    value: Any
    source: str
    departure: str = ""

    def __post_init__(self) -> None:
        if self.area not in AREAS:
            raise ValueError(f"area must be one of {AREAS}, got {self.area!r}")
        if self.applies not in SELECTORS:
            raise ValueError(f"applies must be one of {tuple(SELECTORS)}, got {self.applies!r}")


def _s(*args: Any, **kwargs: Any) -> Setting:
    return Setting(*args, **kwargs)


SETTINGS: tuple[Setting, ...] = (
    # ------------------------------------------------------------------ model
    _s("model", "architecture", None, "all",
       "yolact: YOLACT; gmayolact: GmaYOLACT (from the preset name)",
       "paper §4.1, §4.3; docs/spec.md section 3"),
    _s("model", "backbone and image size", None, "all",
       "ResNet-50 / ResNet-101 at 400, 550, 700 (from the preset name)",
       "paper §4.1 (ResNet-50, the sizes of Bolya et al.); ResNet-101 is YOLACT's own "
       "backbone (YOLACT data/config.py:671)"),
    _s("model", "backbone start", "model.backbone_weights", "all", "imagenet",
       f"{_Y550}:7 (pretrained='torchvision://resnet50'); {_RSY}:7"),
    _s("model", "classes", "model.num_classes", "all", 80, f"{_Y550}:28"),
    _s("model", "FPN channels", "model.fpn_channels", "all", 256, f"{_Y550}:21"),
    _s("model", "head channels", "model.head_channels", "all", 256, f"{_Y550}:30"),
    _s("model", "protonet channels", "model.proto_channels", "all", 256, f"{_HEAD}:796"),
    _s("model", "prototypes", "model.num_protos", "all", 32, f"{_Y550}:51,56"),
    _s("model", "protonet upsampling (prototypes at stride 8 / scale)", "model.proto_scale", "all",
       2, "docs/spec.md section 3 (protonet: three 3x3 convs, x2 upsample, 3x3 conv, 1x1 conv)"),
    _s("model", "FPN upsampling", "model.upsample", "yolact", "bilinear", f"{_Y550}:25"),
    _s("model", "FPN upsampling", "model.upsample", "gmayolact", "carafe",
       f"{_MAY}:8-20 (k_up 5, k_encoder 3, 64 compressed channels)"),
    _s("model", "P6/P7", "model.fpn_extras", "yolact", "separate",
       f"{_Y550}:19,23 (FPN, add_extra_convs='on_input')"),
    _s("model", "P6/P7", "model.fpn_extras", "gmayolact", "top-down",
       f"{_MAY}:8 (FPN_CARAFE); maIoU mmdet/models/necks/fpn_carafe.py:140-199, 239-267"),
    _s("model", "deformable convs (DCNv2)", "model.dcn", "yolact", False, f"{_Y550}:8-17"),
    _s("model", "deformable convs (DCNv2)", "model.dcn", "gmayolact", True,
       f"{_MAY}:5-6 (stages 2-4); paper §4.3"),
    _s("model", "DCN offset groups", "model.dcn_groups", "all", 4, f"{_MAY}:5"),
    _s("model", "classifier", "model.classifier", "yolact", "softmax", f"{_Y550}:46"),
    _s("model", "classifier", "model.classifier", "gmayolact", "sigmoid",
       "paper §4.3 (RS Loss); RS mmdet/models/dense_heads/ranksort_yolact_head.py"),
    _s("model", "head initialisation", "model.head_init", "all", "xavier",
       f"{_HEAD}:110-116, 700-702, 852-856 (Xavier-uniform, zero bias)"),
    _s("model", "box coder", "code:gmaiou.models.box_coder.BOX_STDS", "all",
       (0.1, 0.1, 0.2, 0.2), f"{_Y550}:43"),
    # ------------------------------------------------------------------ anchors
    _s("anchors", "anchor kind", "model.anchors", "fixed", "yolact", f"{_Y550}:31-39"),
    _s("anchors", "anchor kind", "model.anchors", "atss", "atss", f"{_A550}:31-36"),
    _s("anchors", "YOLACT anchor sides and strides", "model.anchor_scaling", "fixed",
       "fixed-550",
       f"{_Y550}:33-39 (sides 24 ... 384, strides 550 / (69, 35, 18, 9, 5), the same "
       "file at 400 and 700)",
       "dbolya/yolact scales them with the image (YOLACT data/config.py:709-721); the "
       "presets follow the code behind the numbers they are compared with"),
    _s("anchors", "ATSS anchor centres", "model.anchor_offset", "atss", 0.0,
       f"{_A550}:36 (strides 8 ... 128); maIoU mmdet/core/anchor/anchor_generator.py:67 "
       "(center_offset=0: centres at j * stride)"),
    _s("anchors", "ATSS octave base scale (anchor side / stride)", "model.anchor_base_scale",
       "atss", 4.0, f"{_A550}:33-34 (octave base scale 4)"),
    _s("anchors", "ATSS scales per octave", "model.anchor_scales", "yolact-atss", 1,
       f"{_A550}:33-34 (octave base scale 4)"),
    _s("anchors", "ATSS scales per octave", "model.anchor_scales", "gmayolact", 2,
       f"{_MAY}:21; paper §4.3"),
    # ------------------------------------------------------------------ assigner
    _s("assigner", "assigner and measure", None, "all",
       "fixed IoU or ATSS with the measure of the preset name",
       f"{_Y550}:69-72; {_A550}:66-67; paper §3.4"),
    _s("assigner", "fixed-IoU thresholds (pos / neg)", "assigner.pos_iou", "fixed", 0.5,
       f"{_Y550}:70"),
    _s("assigner", "fixed-IoU negative threshold", "assigner.neg_iou", "fixed", 0.4,
       f"{_Y550}:71"),
    _s("assigner", "fixed-IoU min positive IoU", "assigner.min_pos_iou", "fixed", 0.0,
       f"{_Y550}:72"),
    _s("assigner", "ATSS top-k per level", "assigner.topk", "atss", 9, f"{_A550}:67"),
    _s("assigner", "crowd boxes", "assigner.crowd_iof", "all", 0.7,
       "YOLACT data/config.py:701 (crowd_iou_threshold)",
       "kept from dbolya/yolact: non-positive anchors mostly inside a crowd box are "
       "ignored; the mmdetection configs give their assigners no crowd boxes "
       f"({_RSY}:61, ignore_iof_thr=-1)"),
    # ------------------------------------------------------------------ losses
    _s("losses", "loss", "loss.kind", "yolact", "yolact", f"{_Y550}:44-65"),
    _s("losses", "loss", "loss.kind", "gmayolact", "ranksort", "paper §4.3; RS"),
    _s("losses", "classification weight", "loss.cls_weight", "all", 1.0, f"{_Y550}:48"),
    _s("losses", "box weight", "loss.box_weight", "yolact", 1.5, f"{_Y550}:49"),
    _s("losses", "mask weight", "loss.mask_weight", "fixed", 6.125, f"{_Y550}:59"),
    _s("losses", "mask weight", "loss.mask_weight", "yolact-atss", 8.0,
       f"{_A550}:56; paper §4.1"),
    _s("losses", "self-balanced box and mask terms", "loss.self_balance", "gmayolact", True,
       "paper §4.3"),
    _s("losses", "semantic weight", "loss.semantic_weight", "yolact", 1.0, f"{_Y550}:65"),
    _s("losses", "semantic weight", "loss.semantic_weight", "gmayolact", 1.0,
       "paper §4.3 (value lost from the extracted text)",
       "the paper's value is lost; YOLACT's weight 1 is used (RS-YOLACT has no "
       "semantic head)"),
    _s("losses", "OHEM negatives per positive", "loss.ohem_ratio", "yolact", 3.0,
       f"{_Y550}:78"),
    _s("losses", "SmoothL1 beta", "loss.smooth_l1_beta", "yolact", 1.0, f"{_Y550}:49"),
    _s("losses", "masks trained per image", "loss.max_masks", "all", 100, f"{_Y550}:58"),
    _s("losses", "RS Loss delta", "loss.rs_delta", "gmayolact", 0.5,
       "RS mmdet/models/losses/ranking_losses.py:5"),
    _s("losses", "mask and semantic targets", "model.target_resize", "all", "bilinear",
       f"{_HEAD}:763-767, 1013-1017 (bilinear, then > 0.5)"),
    # ------------------------------------------------------------------ augmentation
    _s("augmentation", "normalisation mean (RGB, /255)", "code:gmaiou.data.transforms.IMAGE_MEAN",
       "all", (123.68 / 255, 116.78 / 255, 103.94 / 255), f"{_Y550}:90-91"),
    _s("augmentation", "photometric distortion", None, "all",
       "brightness ±32, contrast 0.5-1.5, saturation 0.5-1.5, hue ±18, each p = 1/2",
       f"{_Y550}:96-101"),
    _s("augmentation", "random channel swap", "augment.channel_swap", "all", True,
       f"{_PIPE}:685-687 (PhotoMetricDistortion, p = 1/2)"),
    _s("augmentation", "photometric distortion on", "augment.photometric", "all", True,
       f"{_Y550}:96-101"),
    _s("augmentation", "expand on", "augment.expand", "all", True, f"{_Y550}:102-113"),
    _s("augmentation", "min-IoU crop on", "augment.crop", "all", True, f"{_Y550}:102-113"),
    _s("augmentation", "horizontal flip on", "augment.flip", "all", True, f"{_Y550}:102-113"),
    _s("augmentation", "scale jitter", "augment.scale_range", "all", None,
       f"{_Y550}:96-113 (the training pipeline; no scale jitter in it)"),
    _s("augmentation", "expand, min-IoU crop, flip", None, "all",
       "expand 1-4 (p = 1/2); crop modes 0.1 ... 0.9, min side 0.3; flip p = 1/2",
       f"{_Y550}:102-113"),
    _s("augmentation", "resize", "model.resize_antialias", "all", False,
       f"{_Y550}:111 (keep_ratio=False); {_PIPE}:194 (mmcv.imresize, bilinear)"),
    _s("augmentation", "boxes under 4 px dropped", None, "all",
       "gmaiou.data.CocoInstances(min_box_size=4)", f"{_Y550}:95"),
    # ------------------------------------------------------------------ schedule
    _s("schedule", "global batch", "train.batch_size", "yolact", 32,
       f"{_Y550}:131 (8 per GPU) x 4 GPUs (maIoU README.md:70)"),
    _s("schedule", "global batch", "train.batch_size", "gmayolact", 8,
       "paper §4.3 (single GPU, as YOLACT); YOLACT train.py:33 (batch 8)"),
    _s("schedule", "learning rate (for lr_batch images)", "train.lr", "yolact", 4e-3,
       f"{_Y550}:149"),
    _s("schedule", "learning rate (for lr_batch images)", "train.lr", "gmayolact", 6e-3,
       f"{_RSY}:137 (RS-YOLACT, 4 x 8 images)",
       "the paper's value is lost; RS-YOLACT is the public config training YOLACT with "
       "RS Loss, so its rate, scaled linearly to the single-GPU batch (1.5e-3 at 8), is "
       "used; maYOLACT's 8e-3 was set for the score-based losses"),
    _s("schedule", "batch the rate is set for", "train.lr_batch", "yolact", 32, f"{_Y550}:131"),
    _s("schedule", "batch the rate is set for", "train.lr_batch", "gmayolact", 32,
       f"{_RSY}:119 (8 per GPU; 4 GPUs as RS README.md:107)"),
    _s("schedule", "optimizer", "train.optimizer", "all", "sgd",
       f"{_Y550}:149; {_RSY}:137 (SGD)"),
    _s("schedule", "momentum", "train.momentum", "all", 0.9, f"{_Y550}:149; {_RSY}:137"),
    _s("schedule", "weight decay", "train.weight_decay", "all", 5e-4,
       f"{_Y550}:149; {_RSY}:137"),
    _s("schedule", "gradient clipping (max norm)", "train.grad_clip", "yolact", 35.0,
       f"{_Y550}:150"),
    _s("schedule", "gradient clipping (max norm)", "train.grad_clip", "gmayolact", None,
       f"{_RSY}:138 (optimizer_config = dict())"),
    _s("schedule", "warm-up iterations", "train.warmup_iters", "all", 500,
       f"{_Y550}:155; {_RSY}:143"),
    _s("schedule", "warm-up start factor", "train.warmup_ratio", "all", 0.1,
       f"{_Y550}:156; {_RSY}:144"),
    _s("schedule", "epochs", "train.epochs", "all", 55, f"{_Y550}:158; {_RSY}:146"),
    _s("schedule", "decay", "train.schedule", "yolact", "step", f"{_Y550}:152-157"),
    _s("schedule", "decay", "train.schedule", "gmayolact", "cosine",
       f"{_RSY}:140-145; {_MAY}:26-31; paper §4.3"),
    _s("schedule", "step epochs", "train.steps", "yolact", (20, 42, 49, 52), f"{_Y550}:157"),
    _s("schedule", "step factor", "train.gamma", "yolact", 0.1,
       "mmcv's step policy default (gamma 0.1)"),
    _s("schedule", "cosine final factor", "train.min_lr_ratio", "gmayolact", 0.0,
       f"{_RSY}:145"),
    _s("schedule", "mixed precision", "train.amp", "all", True,
       "none: the references train in fp32",
       "automatic mixed precision on CUDA for speed (a deliberate departure; the losses "
       "and the assigner run in fp32)"),
    _s("schedule", "TF32 matrix products and convolutions", "train.tf32", "all", True,
       "none: the references predate TF32 (fp32 on their GPUs)",
       "on Ampere and later GPUs, float32 matrix products (the DCNv2 im2col products) use "
       "TF32 as cuDNN's float32 convolutions do by default; false: full fp32 in both"),
    # ------------------------------------------------------------------ evaluation
    _s("evaluation", "candidates per level before NMS", "postprocess.pre_nms_per_level",
       "all", 1000, f"{_Y550}:81; {_HEAD}:629-643"),
    _s("evaluation", "score threshold", "postprocess.score_thr", "yolact", 0.05,
       f"{_Y550}:83"),
    _s("evaluation", "score threshold", "postprocess.score_thr", "gmayolact", 0.40,
       "paper §4.3 (higher than usual, value lost); RS "
       "configs/ranksort_loss/ranksort_faster_rcnn_r50_fpn_1x_coco.py:34",
       "the paper's value is lost; RS-YOLACT's public config keeps 0.05, but the paper "
       "raises it because RS Loss gives higher confidences, the reason the RS repository "
       "uses 0.40 for its RS-R-CNNs"),
    _s("evaluation", "Fast NMS IoU", "postprocess.nms_iou", "all", 0.5, f"{_Y550}:84"),
    _s("evaluation", "boxes per class into NMS", "postprocess.top_k", "all", 200,
       f"{_Y550}:85"),
    _s("evaluation", "detections per image", "postprocess.max_dets", "all", 100,
       f"{_Y550}:86"),
    _s("evaluation", "mask threshold", "postprocess.mask_thr", "all", 0.5, f"{_HEAD}:1048"),
    _s("evaluation", "score activation", "postprocess.score_activation", "yolact", "softmax",
       f"{_Y550}:46"),
    _s("evaluation", "score activation", "postprocess.score_activation", "gmayolact",
       "sigmoid", "paper §4.3 (RS Loss)"),
)  # fmt: skip


def paper_presets(applies: str = "all") -> list[str]:
    """Names of the paper presets (r50/r101 at 400/550/700) that ``applies`` selects."""
    if applies not in SELECTORS:
        raise ValueError(f"applies must be one of {tuple(SELECTORS)}, got {applies!r}")
    names = []
    for name in list_configs():
        cfg = get_config(name)
        if cfg.model.backbone not in PAPER_BACKBONES or cfg.model.image_size not in PAPER_SIZES:
            continue
        arch, kind = cfg.model.arch, cfg.assigner.kind
        chosen = {
            "all": True,
            "yolact": arch == "yolact",
            "fixed": arch == "yolact" and kind == "fixed",
            "atss": kind == "atss",
            "yolact-atss": arch == "yolact" and kind == "atss",
            "gmayolact": arch == "gmayolact",
        }[applies]
        if chosen:
            names.append(name)
    return names


def lookup(config: Config, field: str) -> Any:
    """The value ``field`` names: ``"part.name"`` of ``config`` or ``"code:module.NAME"``."""
    if field.startswith("code:"):
        module, _, attr = field[5:].rpartition(".")
        return getattr(importlib.import_module(module), attr)
    part, _, name = field.partition(".")
    return getattr(getattr(config, part), name)


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
            return a == b
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def check_presets() -> list[str]:
    """Disagreements between the paper presets and :data:`SETTINGS`, one line each (empty: none)."""
    problems = []
    for row in SETTINGS:
        if row.field is None:
            continue
        for name in paper_presets(row.applies):
            value = lookup(get_config(name), row.field)
            if not _equal(value, row.value):
                problems.append(f"{name}: {row.field} is {value!r}, the table says {row.value!r}")
    return problems


def undocumented_fields() -> list[str]:
    """Config fields that neither :data:`SETTINGS` nor :data:`NAME_FIELDS` covers."""
    parts = SECTIONS
    covered = {row.field for row in SETTINGS} | NAME_FIELDS
    return [
        f"{part}.{f.name}"
        for part, klass in parts.items()
        for f in dataclasses.fields(klass)
        if f"{part}.{f.name}" not in covered
    ]


def _format(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, tuple):
        return "(" + ", ".join(_format(v) for v in value) + ")"
    return str(value)


def render_markdown() -> str:
    """``docs/fidelity.md``: the table by area, with the references and the selectors."""
    lines = [
        "# Fidelity of the `paper` presets",
        "",
        "<!-- Generated by `python -m gmaiou.paper.fidelity` from gmaiou/fidelity.py; do not edit. -->",
        "",
        "Every setting of the `paper` presets (ResNet-50/101 at 400, 550 and 700 pixels), its "
        "value, where it comes from and, where the presets depart from that source, why. "
        "`tests/paper/test_fidelity.py` checks the presets against this table (the same table in "
        "`gmaiou/fidelity.py`) and that every config field appears in it. The CPU presets "
        "(r18/r34 at 160/256/320) keep their own settings (random initialisation, prior-biased "
        "heads, anchors scaled with the image, antialiased resizing, no channel swap). "
        "CARAFE's reassembly is one fused computation; `gmaiou-paper bench carafe` times it against "
        "the earlier shifted sum (figures/timings/carafe_cpu.md).",
        "",
        "Sources: *paper* is the GmaIoU paper (arXiv 2312.17031; section "
        "numbers). File references are `repository path:line` at these commits:",
        "",
    ]
    lines += [f"- **{key}**: {text}" for key, text in REFERENCES.items()]
    lines += ["", "Columns *presets* say which paper presets a row covers:", ""]
    lines += [f"- `{key}`: {text}" for key, text in SELECTORS.items()]
    for area in AREAS:
        rows = [r for r in SETTINGS if r.area == area]
        lines += [
            "",
            f"## {area.capitalize()}",
            "",
            "| setting | field | presets | value | source | departure and why |",
            "|---|---|---|---|---|---|",
        ]
        for r in rows:
            field = f"`{r.field}`" if r.field else "(code)"
            lines.append(
                f"| {r.name} | {field} | `{r.applies}` | {_format(r.value)} | {r.source} | "
                f"{r.departure or '–'} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gmaiou.paper.fidelity", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("docs/fidelity.md"))
    parser.add_argument(
        "--check", action="store_true", help="only check the presets and the document"
    )
    args = parser.parse_args(argv)
    problems = check_presets() + [f"undocumented field {f}" for f in undocumented_fields()]
    text = render_markdown()
    if args.check:
        if not args.out.is_file() or args.out.read_text() != text:
            problems.append(f"{args.out} is stale: run python -m gmaiou.paper.fidelity")
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    for line in problems:
        print(line, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
