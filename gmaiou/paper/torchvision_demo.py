"""Notebook 08's parts: GmaIoU in torchvision's detectors (:mod:`gmaiou.torchvision`).

* :func:`build_family` builds each family (Mask / Faster R-CNN, RetinaNet, SSDlite, FCOS)
  with ``weights=None`` and a small backbone (ResNet-18 with a 64-channel FPN; SSDlite's own
  MobileNetV3);
* :func:`synthetic_batch` draws synthetic scenes (:func:`gmaiou.data.synthetic.render_scene`)
  as torchvision images and targets;
* :func:`label_changes` captures a switched model's matching and re-scores the same anchors
  and proposals by box IoU with the same matcher: which ones change label;
  :func:`change_table` and :func:`plot_label_changes` show them;
* :func:`train_steps` trains a few SGD steps;
* the paired comparison: torchvision's Mask R-CNN (ResNet-18 FPN, 160 px) trained with box IoU
  and with GmaIoU in the RPN and the RoI heads, paired seeds, on Table 2's synthetic sets
  (:func:`tv_grid`); :func:`time_iteration` and :func:`plan` size it, and
  :func:`paired_comparison` trains the runs without a record and reads those with one. A run
  checkpoints every :data:`CHECKPOINT_EVERY` iterations (:func:`checkpoint_file`): an
  interrupted run resumes from its last checkpoint, exactly as if it had not stopped.

Each question is written under one stem, a table (Markdown), a picture (PNG and PDF) and
findings headed by a computed sentence: :func:`write_label_changes` (:data:`LABEL_CHANGES`) and,
once runs are recorded, :func:`write_paired_comparison` (:data:`PAIRED`).
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from gmaiou.torchvision import atss_matches, capture_matches, match_quality, use_measure

__all__ = [
    "CHECKPOINT_EVERY",
    "FAMILIES",
    "FCOS_ANCHOR_SCALE",
    "LABEL_CHANGES",
    "LabelChange",
    "PAIRED",
    "TV_MEASURES",
    "TV_SCALES",
    "TvRun",
    "TvScale",
    "build_family",
    "change_table",
    "checkpoint_file",
    "label_change_findings",
    "label_change_headline",
    "label_changes",
    "paired_comparison",
    "paired_findings",
    "paired_gains",
    "paired_headline",
    "paired_table",
    "plan",
    "plot_label_changes",
    "plot_paired",
    "record_file",
    "synthetic_batch",
    "time_inference",
    "time_iteration",
    "train_run",
    "train_steps",
    "tv_grid",
    "write_label_changes",
    "write_paired_comparison",
]

#: The stems of notebook 08's outputs (each ``.md``, ``.png``, ``.pdf`` and ``_findings.md``).
LABEL_CHANGES = "tv_label_changes"
PAIRED = "tv_maskrcnn_iou_vs_gmaiou"

#: The families notebook 08 builds, by short name.
FAMILIES: tuple[str, ...] = ("maskrcnn", "fasterrcnn", "retinanet", "ssdlite", "fcos")
#: The synthetic generator's eight classes, plus torchvision's background label 0.
NUM_CLASSES = 9
_GRID = "torchvision"
#: FCOS's ATSS anchors in the demo: 4 strides wide (the paper's YOLACT ATSS anchors), not ATSS's
#: 8: at 160 px most objects are smaller than 8 strides of P3, and anchors that hold a whole
#: object score every measure alike (|B| / |A| under IoU, |M| / |A| under GmaIoU).
FCOS_ANCHOR_SCALE = 4.0


def _resnet18_fpn(fpn_channels: int, p6p7: bool) -> nn.Module:
    """ResNet-18 (random weights, trainable BatchNorm: nothing is pretrained) with an FPN."""
    from torchvision.models import resnet18
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7

    body = resnet18(weights=None)
    stages = ["layer2", "layer3", "layer4"] if p6p7 else ["layer1", "layer2", "layer3", "layer4"]
    widths = {"layer1": 64, "layer2": 128, "layer3": 256, "layer4": 512}
    extra = LastLevelP6P7(fpn_channels, fpn_channels) if p6p7 else LastLevelMaxPool()
    return BackboneWithFPN(
        body,
        {name: str(i) for i, name in enumerate(stages)},
        [widths[s] for s in stages],
        fpn_channels,
        extra_blocks=extra,
    )


def build_family(
    family: str,
    size: int = 160,
    seed: int = 0,
    num_classes: int = NUM_CLASSES,
    fpn_channels: int = 64,
) -> nn.Module:
    """One torchvision detector with random weights, resizing its input to ``size``.

    ``maskrcnn`` / ``fasterrcnn``: ResNet-18 FPN (P2-P6), torchvision's heads, 256 RoIs per
    image; ``retinanet`` and ``fcos``: ResNet-18 FPN (P3-P7); ``ssdlite``:
    ``ssdlite320_mobilenet_v3_large`` (its input is always 320 px). The R-CNNs' and
    RetinaNet's anchors are torchvision's for 800-px images scaled to ``size`` (at 160 px:
    8 to 128 pixels, one size per level; FCOS's are its strides already).
    """
    from torchvision.models import detection as det
    from torchvision.models.detection.anchor_utils import AnchorGenerator

    torch.manual_seed(seed)
    resize = {"min_size": size, "max_size": size}
    base = [s * size / 160 for s in (8, 16, 32, 64, 128)]
    if family in ("maskrcnn", "fasterrcnn"):
        cls = det.MaskRCNN if family == "maskrcnn" else det.FasterRCNN
        return cls(
            _resnet18_fpn(fpn_channels, p6p7=False),
            num_classes=num_classes,
            rpn_anchor_generator=AnchorGenerator(tuple((b,) for b in base), ((0.5, 1.0, 2.0),) * 5),
            box_batch_size_per_image=256,
            **resize,
        )
    if family == "retinanet":
        octaves = tuple((b, b * 2 ** (1 / 3), b * 2 ** (2 / 3)) for b in base)
        return det.RetinaNet(
            _resnet18_fpn(fpn_channels, p6p7=True),
            num_classes,
            anchor_generator=AnchorGenerator(octaves, ((0.5, 1.0, 2.0),) * 5),
            **resize,
        )
    if family == "fcos":
        return det.FCOS(_resnet18_fpn(fpn_channels, p6p7=True), num_classes, **resize)
    if family == "ssdlite":
        return det.ssdlite320_mobilenet_v3_large(
            weights=None, weights_backbone=None, num_classes=num_classes
        )
    raise ValueError(f"unknown family {family!r}; choose one of {', '.join(FAMILIES)}")


def synthetic_batch(
    size: int = 160, num_images: int = 2, seed: int = 0, mix: str = "uniform"
) -> tuple[list[Tensor], list[dict[str, Tensor]]]:
    """``num_images`` synthetic scenes as torchvision inputs: images ``[3, S, S]`` in [0, 1] and
    targets with ``boxes`` (tight boxes of the visible masks), ``labels`` (class + 1) and
    ``masks`` (uint8). Scenes without objects are drawn again."""
    from gmaiou.data.synthetic import render_scene
    from gmaiou.shapes import tight_box

    rng = np.random.default_rng(seed)
    images, targets = [], []
    while len(images) < num_images:
        pixels, instances = render_scene(size, rng, mix)
        if not instances:
            continue
        masks = np.stack([m for _, m in instances])
        images.append(torch.from_numpy(pixels).permute(2, 0, 1).float().div(255.0))
        targets.append(
            {
                "boxes": torch.from_numpy(np.stack([tight_box(m) for m in masks])).float(),
                "labels": torch.tensor([c + 1 for c, _ in instances], dtype=torch.int64),
                "masks": torch.from_numpy(masks).to(torch.uint8),
            }
        )
    return images, targets


# --------------------------------------------------------------------- which labels change


@dataclass(frozen=True)
class LabelChange:
    """One stage's matching of one image, by the switched measure and by box IoU.

    Attributes:
        family, stage, image: where (``stage`` as :class:`gmaiou.torchvision.MatchRecord`).
        measure: the switched measure.
        boxes: ``[N, 4]`` the anchors or proposals, in the resized image's coordinates.
        gt_boxes: ``[G, 4]``.
        by_measure, by_iou: ``[N]`` matches (GT index, -1 background, -2 ignored).
        image_size: ``(H, W)`` of the image the model matched on.
    """

    family: str
    stage: str
    image: int
    measure: str
    boxes: Tensor
    gt_boxes: Tensor
    by_measure: Tensor
    by_iou: Tensor
    image_size: tuple[int, int]

    @property
    def gained(self) -> Tensor:
        """Positive by the measure, not by IoU."""
        return (self.by_measure >= 0) & (self.by_iou < 0)

    @property
    def lost(self) -> Tensor:
        """Positive by IoU, not by the measure."""
        return (self.by_measure < 0) & (self.by_iou >= 0)

    @property
    def reassigned(self) -> Tensor:
        """Positive by both, for different GTs."""
        return (self.by_measure >= 0) & (self.by_iou >= 0) & (self.by_measure != self.by_iou)


def _iou_matches(model: nn.Module, record, levels: list[int] | None, scale: float) -> Tensor:
    """The record's boxes matched by box IoU with the stage's own matcher (FCOS: ATSS over
    ``levels``, the anchors per level, scaled by ``scale``)."""
    target = {"boxes": record.gt_boxes}
    if record.stage == "fcos":
        return atss_matches(target, record.boxes, levels, "iou", anchor_scale=scale)
    matcher = {
        "rpn": lambda: model.rpn.proposal_matcher,
        "roi": lambda: model.roi_heads.proposal_matcher,
    }.get(record.stage, lambda: model.proposal_matcher)()
    return matcher(match_quality(target, record.boxes, "iou"))


def _fcos_levels(model: nn.Module, images: Sequence[Tensor]) -> list[int]:
    """Anchors per level of a FCOS model on these images (its feature maps' sizes)."""
    with torch.no_grad():
        batch, _ = model.transform(list(images))
        features = list(model.backbone(batch.tensors).values())
    return [f.shape[-2] * f.shape[-1] for f in features]


def label_changes(
    model: nn.Module,
    family: str,
    images: Sequence[Tensor],
    targets: Sequence[dict[str, Tensor]],
    measure: str = "gmaiou",
    seed: int = 0,
    fcos_anchor_scale: float = FCOS_ANCHOR_SCALE,
) -> list[LabelChange]:
    """Switch ``model`` to ``measure``, run one training forward without gradients, and compare
    every captured matching with box IoU's on the same anchors or proposals.

    The model keeps the switch; its state is unchanged (no optimizer step, BatchNorm's running
    statistics put back). Training-mode BatchNorm needs two images or more. FCOS's ATSS
    scales its anchors (as large as the stride) by ``fcos_anchor_scale``.
    """
    was_training = model.training
    kept = {k: v.clone() for k, v in model.state_dict().items()}  # BatchNorm's running stats
    use_measure(model, measure, atss_anchor_scale=fcos_anchor_scale)
    levels = _fcos_levels(model, images) if family == "fcos" else None
    model.train()
    torch.manual_seed(seed)
    with torch.no_grad(), capture_matches(model) as records:
        model(list(images), [dict(t) for t in targets])
    model.load_state_dict(kept)
    model.train(was_training)
    with torch.no_grad():
        _, resized = model.transform(list(images), [dict(t) for t in targets])
    out = [
        LabelChange(
            family,
            r.stage,
            r.image,
            r.measure,
            r.boxes,
            r.gt_boxes,
            r.matched,
            _iou_matches(model, r, levels, fcos_anchor_scale),
            tuple(resized[r.image]["masks"].shape[-2:]),
        )
        for r in records
    ]
    return out


def change_table(changes: Sequence[LabelChange]):
    """One row per family and stage, summed over images: boxes, positives by IoU and by the
    measure, gained, lost and reassigned positives."""
    import pandas as pd

    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for c in changes:
        row = rows.setdefault(
            (c.family, c.stage),
            {
                "family": c.family,
                "stage": c.stage,
                "measure": c.measure,
                "boxes": 0,
                "positives (IoU)": 0,
                "positives (measure)": 0,
                "gained": 0,
                "lost": 0,
                "reassigned": 0,
            },
        )
        row["boxes"] += int(c.boxes.shape[0])
        row["positives (IoU)"] += int((c.by_iou >= 0).sum())
        row["positives (measure)"] += int((c.by_measure >= 0).sum())
        row["gained"] += int(c.gained.sum())
        row["lost"] += int(c.lost.sum())
        row["reassigned"] += int(c.reassigned.sum())
    return pd.DataFrame(list(rows.values()))


def plot_label_changes(
    image: Tensor, target: dict[str, Tensor], changes: Sequence[LabelChange], title: str = ""
):
    """One panel per change (stage): the image, its GT masks and boxes, and the boxes that
    gained (green) or lost (red) a positive label under the measure, dashed when reassigned."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    fig, axes = plt.subplots(1, len(changes), figsize=(4.2 * len(changes), 4.6), squeeze=False)
    for ax, c in zip(axes[0], changes):
        h, w = c.image_size
        ax.imshow(image.permute(1, 2, 0).numpy(), extent=(0, w, h, 0))
        overlay = np.zeros((*target["masks"].shape[-2:], 4))
        for m in target["masks"].bool().numpy():
            overlay[m] = (1.0, 1.0, 0.2, 0.35)
        ax.imshow(overlay, extent=(0, w, h, 0))
        for x1, y1, x2, y2 in c.gt_boxes.tolist():
            ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec="yellow", lw=1.2))
        for kind, colour, style in (
            (c.gained, "lime", "-"),
            (c.lost, "red", "-"),
            (c.reassigned, "cyan", "--"),
        ):
            # Proposals of a random-weight RPN differ in the 6th digit with the thread count:
            # drawn at 0.01 px, the figure's bytes do not.
            for x1, y1, x2, y2 in c.boxes[kind].round(decimals=2).tolist():
                ax.add_patch(
                    Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec=colour, lw=0.8, ls=style)
                )
        ax.set_xlim(0, w)
        ax.set_ylim(h, 0)
        ax.set_title(
            f"{c.family} {c.stage}: +{int(c.gained.sum())} / -{int(c.lost.sum())} "
            f"/ ~{int(c.reassigned.sum())}",
            fontsize=9,
        )
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def label_change_headline(table) -> str:
    """:func:`change_table`'s totals in one sentence: the positives lost and gained against box
    IoU's, over every matcher (family and stage)."""
    if table.empty:
        return "no matching captured"
    total = {c: int(table[c].sum()) for c in ("positives (IoU)", "gained", "lost", "reassigned")}
    families = table["family"].nunique()
    text = (
        f"Matched by GmaIoU, {_plural(len(table), 'matcher')} of {families} famil"
        f"{'y' if families == 1 else 'ies'} lose "
        f"{total['lost']} and gain {total['gained']} of {total['positives (IoU)']} box-IoU "
        "positives"
    )
    return text + (f", reassign {total['reassigned']}" if total["reassigned"] else "")


def label_change_findings(table) -> list[str]:
    """One sentence per matcher of :func:`change_table`, then how many matchers end with fewer,
    more or as many positives as under box IoU."""
    lines = []
    for _, r in table.iterrows():
        kind = "proposals" if r["stage"] == "roi" else "anchors"
        lines.append(
            f"{r['family']} {r['stage']} ({r['measure']}): {r['positives (IoU)']} positives by box "
            f"IoU and {r['positives (measure)']} by the measure among {r['boxes']:,} {kind}, "
            f"{r['gained']} gained, {r['lost']} lost and {r['reassigned']} reassigned."
        )
    if not table.empty:
        diff = table["positives (measure)"] - table["positives (IoU)"]
        lines.append(
            f"{int((diff < 0).sum())} of {len(table)} matchers have fewer positives under the "
            f"measure than under box IoU, {int((diff > 0).sum())} more and "
            f"{int((diff == 0).sum())} as many."
        )
    return lines


def write_label_changes(
    changes: Sequence[LabelChange],
    image: Tensor,
    target: dict[str, Tensor],
    profile: str,
    source: str,
    shown: Sequence[str] = ("maskrcnn", "retinanet", "fcos"),
) -> list[Path]:
    """Write :data:`LABEL_CHANGES`: :func:`change_table` (Markdown), the changes of image 0 in the
    ``shown`` families (:func:`plot_label_changes`, PNG and PDF) and the findings with their
    headline. ``image`` and ``target``: image 0 of the scenes the changes were captured on."""
    import matplotlib.pyplot as plt

    from gmaiou.paper.figures import save_figure, save_findings, save_table

    table = change_table(changes)
    paths = [save_table(table, LABEL_CHANGES, profile, source=source)]
    fig = plot_label_changes(
        image,
        target,
        [c for f in shown for c in changes if c.family == f and c.image == 0],
        title="Label changes, GmaIoU vs box IoU (green: gained, red: lost, cyan: reassigned)",
    )
    paths += save_figure(fig, LABEL_CHANGES, profile, source=source)
    plt.close(fig)
    paths.append(
        save_findings(
            label_change_findings(table),
            LABEL_CHANGES,
            profile,
            source=source,
            headline=label_change_headline(table),
        )
    )
    return paths


def train_steps(
    model: nn.Module,
    images: Sequence[Tensor],
    targets: Sequence[dict[str, Tensor]],
    steps: int,
    lr: float = 0.01,
    seed: int = 0,
) -> list[float]:
    """``steps`` SGD steps (momentum 0.9) on one batch; the summed loss before each step."""
    model.train()
    torch.manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    totals = []
    for _ in range(steps):
        losses = model(list(images), [dict(t) for t in targets])
        total = sum(losses.values())
        opt.zero_grad()
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        totals.append(float(total.detach()))
    return totals


# ----------------------------------------------------------------------- paired comparison


@dataclass(frozen=True)
class TvScale:
    """How big a profile's paired comparison is.

    Attributes:
        images, size: synthetic images (train + val) and their side.
        mixes: the synthetic sets (``uniform``: the default set; ``coco``: COCO's share of
            low-MOB boxes), those of Table 2.
        seeds: paired seeds per measure and set.
        epochs, batch_size, lr: the schedule (SGD, momentum 0.9, weight decay 1e-4, linear
            warm-up over ``warmup`` iterations, steps at 2/3 and 8/9 of the run).
        max_iters: stop early (smoke).
    """

    images: int
    size: int
    mixes: tuple[str, ...]
    seeds: int
    epochs: int
    batch_size: int = 4
    lr: float = 0.02
    warmup: int = 100
    max_iters: int | None = None


TV_SCALES: dict[str, TvScale] = {
    "smoke": TvScale(12, 160, ("uniform",), seeds=2, epochs=1, batch_size=2, warmup=1, max_iters=2),
    "quick": TvScale(120, 160, ("uniform",), seeds=2, epochs=1, warmup=10),
    # One set (the one with most low-MOB objects) and 2 epochs: at Table 2's 4 epochs on both
    # sets a Mask R-CNN run took 17-34 min on the 2-core CPU, past the 15 min a run may cost.
    "default": TvScale(1000, 160, ("uniform",), seeds=3, epochs=2),
}
TV_SCALES["paper"] = TV_SCALES["default"]  # a CPU comparison: the paper profile has no larger one
#: The measures compared (RPN and RoI heads alike).
TV_MEASURES: tuple[str, ...] = ("iou", "gmaiou")
#: Iterations between a run's checkpoints (:func:`train_run` also writes one at its last).
CHECKPOINT_EVERY = 50


@dataclass(frozen=True)
class TvRun:
    """One run: Mask R-CNN trained with ``measure`` on synthetic set ``mix``, seed ``seed``."""

    profile: str
    mix: str
    measure: str
    seed: int

    @property
    def run_id(self) -> str:
        return f"maskrcnn-r18-{self.mix}-{self.measure}-seed{self.seed}"


def _scale(profile: str) -> TvScale:
    try:
        return TV_SCALES[profile]
    except KeyError:
        raise ValueError(
            f"no paired comparison for profile {profile!r}; profiles: {', '.join(TV_SCALES)}"
        ) from None


def tv_grid(profile: str) -> list[TvRun]:
    """The runs of a profile, seed by seed (a grid stopped halfway holds whole pairs)."""
    sc = _scale(profile)
    return [
        TvRun(profile, mix, measure, seed)
        for seed in range(sc.seeds)
        for mix in sc.mixes
        for measure in TV_MEASURES
    ]


def record_file(run: TvRun, figures: Path | None = None) -> Path:
    from gmaiou.paper.paths import figures_dir

    base = figures if figures is not None else figures_dir(run.profile)
    return base / "runs" / run.profile / _GRID / f"{run.run_id}.json"


def checkpoint_file(run: TvRun, root: Path | None = None) -> Path:
    """Where ``run`` keeps its checkpoint while it trains:
    ``<root>/runs/<profile>/torchvision/<id>/checkpoint.pt`` (``root``: the repository's)."""
    from gmaiou.paper.paths import repo_root

    base = Path(root) if root is not None else repo_root()
    return base / "runs" / run.profile / _GRID / run.run_id / "checkpoint.pt"


def _iterations(sc: TvScale) -> int:
    from gmaiou.data.synthetic import split_sizes

    train, _ = split_sizes(sc.images)
    total = sc.epochs * math.ceil(train / sc.batch_size)
    return total if sc.max_iters is None else min(total, sc.max_iters)


def time_iteration(
    size: int = 160, batch_size: int = 4, measure: str = "gmaiou", iters: int = 3, seed: int = 0
) -> float:
    """Seconds per training iteration (median of ``iters`` after one warm-up) of the comparison's
    Mask R-CNN on synthetic scenes, with torch's current thread count."""
    model = use_measure(build_family("maskrcnn", size, seed), measure)
    images, targets = synthetic_batch(size, batch_size, seed)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    model.train()
    times = []
    for i in range(iters + 1):
        start = time.perf_counter()
        losses = model(images, [dict(t) for t in targets])
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()
        if i:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_inference(size: int = 160, images: int = 3, seed: int = 0) -> float:
    """Seconds per image of the comparison's Mask R-CNN in evaluation (random weights: up to its
    100 detections per image, the slow end), median over ``images`` after one warm-up."""
    model = build_family("maskrcnn", size, seed).eval()
    batch, _ = synthetic_batch(size, images + 1, seed)
    times = []
    with torch.no_grad():
        for i, image in enumerate(batch):
            start = time.perf_counter()
            model([image])
            if i:
                times.append(time.perf_counter() - start)
    return statistics.median(times)


def plan(
    profile: str, seconds_per_iter: float, seconds_per_val_image: float = 0.0
) -> dict[str, Any]:
    """The comparison's cost: runs, iterations per run, minutes per run (training plus the
    evaluation of the val split) and for the grid."""
    from gmaiou.data.synthetic import split_sizes

    sc = _scale(profile)
    runs = len(tv_grid(profile))
    iters = _iterations(sc)
    per_run = (iters * seconds_per_iter + split_sizes(sc.images)[1] * seconds_per_val_image) / 60
    return {
        "profile": profile,
        "runs": runs,
        "sets": len(sc.mixes),
        "seeds": sc.seeds,
        "measures": len(TV_MEASURES),
        "iterations per run": iters,
        "seconds per iteration": seconds_per_iter,
        "seconds per val image": seconds_per_val_image,
        "minutes per run": per_run,
        "minutes for the grid": runs * per_run,
    }


def _lr_at(sc: TvScale, it: int, total: int) -> float:
    warm = min(1.0, (it + 1) / max(sc.warmup, 1))
    decay = 0.1 ** sum(it >= total * f for f in (2 / 3, 8 / 9))
    return sc.lr * warm * decay


def _collate(dataset, indices: Sequence[int]):
    images, targets = [], []
    for i in indices:
        item = dataset[i]
        images.append(item["image"])
        targets.append(
            {
                "boxes": item["boxes"],
                "labels": item["labels"] + 1,
                "masks": item["masks"].to(torch.uint8),
            }
        )
    return images, targets


def _evaluate(model: nn.Module, dataset) -> dict[str, dict[str, float]]:
    from gmaiou.evaluation.coco import coco_metrics
    from gmaiou.evaluation.results import detections_to_coco

    model.eval()
    detections = []
    with torch.no_grad():
        for i in range(len(dataset)):
            item = dataset[i]
            out = model([item["image"]])[0]
            detections += detections_to_coco(
                dataset.image_ids[i],
                out["boxes"],
                out["scores"],
                out["labels"] - 1,
                out["masks"][:, 0] > 0.5,
                dataset.cat_ids,
            )
    return coco_metrics(dataset.coco, detections)


@dataclass
class _Position:
    """Where a run's training stands: all a checkpoint holds besides the states of the model,
    the optimizer and the random generators.

    Attributes:
        iteration: iterations done.
        epoch: permutations of the training set drawn so far.
        perm: the current epoch's sample order (``None`` before the first).
        batch: the next batch's index within ``perm``.
        losses: the summed loss of every iteration done.
        seconds: training seconds so far, over every stretch.
        segments: the stretches of training (``start``, ``device_name``, ``threads``,
            ``commit``, ``dirty``).
    """

    iteration: int = 0
    epoch: int = 0
    perm: list[int] | None = None
    batch: int = 0
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    segments: list[dict[str, Any]] = field(default_factory=list)


def _plain(value: Any) -> Any:
    """``value`` as JSON would give it back (tuples become lists), for comparisons."""
    return json.loads(json.dumps(value))


def _save_checkpoint(
    path: Path,
    run: TvRun,
    sc: TvScale,
    model: nn.Module,
    opt: torch.optim.Optimizer,
    order: torch.Generator,
    pos: _Position,
) -> None:
    """Write the run's checkpoint to ``path`` atomically (a temporary file, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(
        {
            "run": _plain(asdict(run)),
            "scale": _plain(asdict(sc)),
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "order": order.get_state(),
            "rng": torch.get_rng_state(),
            "position": asdict(pos),
        },
        tmp,
    )
    tmp.replace(path)


def _load_checkpoint(path: Path, run: TvRun, sc: TvScale) -> dict[str, Any] | None:
    """The checkpoint at ``path`` (``None`` when there is none).

    Raises:
        ValueError: it is of another run or scale; the message names what differs.
    """
    if not path.is_file():
        return None
    saved = torch.load(path, map_location="cpu", weights_only=True)
    diffs = [
        f"{kind} {key} {saved[kind].get(key)!r} (checkpoint) vs {now.get(key)!r} (now)"
        for kind, now in (("run", _plain(asdict(run))), ("scale", _plain(asdict(sc))))
        for key in sorted(set(saved[kind]) | set(now))
        if saved[kind].get(key) != now.get(key)
    ]
    if diffs:
        raise ValueError(
            f"checkpoint {path} is not of {run.run_id} at this scale: {'; '.join(diffs)}; "
            "delete it to train the run from the start"
        )
    return saved


def _restore(
    saved: dict[str, Any], model: nn.Module, opt: torch.optim.Optimizer, order: torch.Generator
) -> _Position:
    """Put back a checkpoint's model, optimizer, sample order and torch's global RNG (the RPN's
    and RoI heads' samplers draw from it); its position."""
    model.load_state_dict(saved["model"])
    opt.load_state_dict(saved["optimizer"])
    order.set_state(saved["order"])
    torch.set_rng_state(saved["rng"])
    return _Position(**saved["position"])


def _train(
    run: TvRun,
    sc: TvScale,
    model: nn.Module,
    opt: torch.optim.Optimizer,
    order: torch.Generator,
    train,
    pos: _Position,
    checkpoint: tuple[Path, int],
    progress: bool,
) -> None:
    """Train from ``pos`` to the scale's last iteration, updating ``pos``; checkpoint to
    ``checkpoint[0]`` every ``checkpoint[1]`` iterations and at the last.

    An epoch's sample order is drawn from ``order`` when its first batch is due (the last
    partial batch is dropped), so a run resumed from ``pos`` sees the same batches."""
    path, every = checkpoint
    total = _iterations(sc)
    per_epoch = len(train) // sc.batch_size
    if per_epoch < 1:
        raise ValueError(f"{len(train)} training images make no batch of {sc.batch_size}")
    start, before = time.perf_counter(), pos.seconds
    model.train()
    while pos.iteration < total:
        if pos.perm is None or pos.batch >= per_epoch:
            pos.perm = torch.randperm(len(train), generator=order).tolist()
            pos.epoch, pos.batch = pos.epoch + 1, 0
        first = pos.batch * sc.batch_size
        images, targets = _collate(train, pos.perm[first : first + sc.batch_size])
        pos.batch += 1
        for group in opt.param_groups:
            group["lr"] = _lr_at(sc, pos.iteration, total)
        loss = sum(model(images, targets).values())
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        pos.losses.append(float(loss.detach()))
        pos.iteration += 1
        pos.seconds = before + time.perf_counter() - start
        if pos.iteration % every == 0 or pos.iteration == total:
            _save_checkpoint(path, run, sc, model, opt, order, pos)
        if progress and pos.iteration % 50 == 0:
            recent = statistics.fmean(pos.losses[-50:])
            print(f"{run.run_id}: {pos.iteration}/{total} loss {recent:.3f}")


def train_run(
    run: TvRun,
    root: Path | None = None,
    progress: bool = False,
    allow_dirty: bool | None = None,
    checkpoint_every: int | None = None,
) -> dict[str, Any]:
    """Train and evaluate one run; return its record (not written: :func:`paired_comparison`).

    Seed ``seed`` fixes the initial weights and the sample order, the same for both measures.
    The record names the commit, whether tracked files were modified (``dirty``), the device,
    torch's threads and version, the data seed and the split scored.

    Every ``checkpoint_every`` iterations (:data:`CHECKPOINT_EVERY`) and at the last, the run
    writes its checkpoint (:func:`checkpoint_file`): the model's and optimizer's states, the
    iteration, the epoch's sample order and batch, the sample-order generator's and torch's
    global RNG states, the losses and the training seconds. A run whose checkpoint exists
    resumes from it, exactly as if it had not stopped; ``train_seconds`` sums the stretches,
    and ``segments`` lists them (``start``: the iteration it resumed from, ``device_name``,
    ``threads``, ``commit`` and ``dirty``; a stretch resumed from the last iteration only
    evaluates). The record is ``dirty`` when any stretch was, and names the last one's
    ``commit``. The checkpoint stays: :func:`paired_comparison` deletes it once the record is
    written.

    Raises:
        ValueError: on a committed profile (``COMMITTED_PROFILES``: ``default``), the checkout
            has modified tracked files outside ``figures/`` and ``allow_dirty`` is not set; the
            run's checkpoint is of another run or scale (the message names what differs);
            ``checkpoint_every`` is below 1.
    """
    from gmaiou.data.coco import CocoInstances, find_split
    from gmaiou.paper.benchmarks import cpu_name
    from gmaiou.paper.experiments.runner import COMMITTED_PROFILES, SyntheticData, source_state
    from gmaiou.paper.paths import repo_root

    every = CHECKPOINT_EVERY if checkpoint_every is None else checkpoint_every
    if every < 1:
        raise ValueError(f"checkpoint_every must be at least 1, got {every}")
    sc = _scale(run.profile)
    root = Path(root) if root is not None else repo_root()
    state = source_state(root)
    strict = allow_dirty is False or (allow_dirty is None and run.profile in COMMITTED_PROFILES)
    if state.dirty and strict:
        raise ValueError(
            f"refusing to train {run.run_id}: tracked files are modified "
            f"({', '.join(state.changed)}); commit them, or pass --allow-dirty "
            "(allow_dirty=True) to record the run as dirty"
        )
    path = checkpoint_file(run, root)
    saved = _load_checkpoint(path, run, sc)
    data_root = SyntheticData(sc.images, sc.size, mix=run.mix).ensure(root)
    train = CocoInstances(*find_split(data_root, "train"), skip_empty=True)
    val = CocoInstances(*find_split(data_root, "val"))
    model = use_measure(build_family("maskrcnn", sc.size, run.seed), run.measure)
    opt = torch.optim.SGD(model.parameters(), lr=sc.lr, momentum=0.9, weight_decay=1e-4)
    order = torch.Generator().manual_seed(run.seed)
    pos = _restore(saved, model, opt, order) if saved is not None else _Position()
    del saved
    pos.segments.append(
        {
            "start": pos.iteration,
            "device_name": cpu_name(),
            "threads": torch.get_num_threads(),
            "commit": state.commit,
            "dirty": state.dirty,
        }
    )
    _train(run, sc, model, opt, order, train, pos, (path, every), progress)
    evaluated = time.perf_counter()
    metrics = _evaluate(model, val)
    return {
        "run": asdict(run),
        "run_id": run.run_id,
        "scale": asdict(sc),
        "iterations": pos.iteration,
        "train_seconds": pos.seconds,
        "eval_seconds": time.perf_counter() - evaluated,
        "final_loss": statistics.fmean(pos.losses[-20:]) if pos.losses else None,
        "metrics": metrics,
        "split": "val",
        "data_seed": 0,
        "device": "cpu",
        "device_name": cpu_name(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "commit": state.commit,
        "dirty": any(segment["dirty"] for segment in pos.segments),
        "segments": pos.segments,
    }


def paired_comparison(
    profile: str,
    root: Path | None = None,
    figures: Path | None = None,
    train: bool | None = None,
    progress: bool = False,
    allow_dirty: bool | None = None,
) -> list[dict[str, Any]]:
    """Every run of :func:`tv_grid`: read from its record when one exists, else trained (and its
    record written) when ``train``, else left out. Returns the records in grid order.

    ``train=None`` trains unless ``GMAIOU_RECORDED_ONLY`` is set (``make reproduce RECORDED=1``).
    ``allow_dirty`` as in :func:`train_run`. A run interrupted before its record resumes from
    its checkpoint (:func:`checkpoint_file`), which is deleted once the record is in place.
    """
    if train is None:
        from gmaiou.paper.experiments.runner import _recorded_only_from_env

        train = not _recorded_only_from_env()
    records = []
    for run in tv_grid(profile):
        path = record_file(run, figures)
        if path.is_file():
            records.append(json.loads(path.read_text()))
            continue
        if not train:
            continue
        record = train_run(run, root, progress, allow_dirty)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
        tmp.replace(path)
        _remove_checkpoint(run, root)
        records.append(record)
    return records


def _remove_checkpoint(run: TvRun, root: Path | None) -> None:
    """Delete ``run``'s checkpoint, and its folder when that is left empty."""
    path = checkpoint_file(run, root)
    path.unlink(missing_ok=True)
    try:
        path.parent.rmdir()
    except OSError:  # absent, or holds something else
        pass


def paired_table(records: Sequence[dict[str, Any]]):
    """Mask and box AP per set and measure (mean over seeds) and GmaIoU's paired gain over IoU."""
    import pandas as pd

    rows = []
    for r in records:
        rows.append(
            {
                "set": r["run"]["mix"],
                "measure": r["run"]["measure"],
                "seed": r["run"]["seed"],
                "mask AP": r["metrics"]["segm"]["AP"],
                "box AP": r["metrics"]["bbox"]["AP"],
            }
        )
    frame = pd.DataFrame(rows, columns=["set", "measure", "seed", "mask AP", "box AP"])
    if frame.empty:
        return frame
    wide = frame.pivot_table(index=["set", "seed"], columns="measure", values="mask AP")
    out = frame.groupby(["set", "measure"], as_index=False)[["mask AP", "box AP"]].mean()
    if {"iou", "gmaiou"} <= set(wide.columns):
        gain = (wide["gmaiou"] - wide["iou"]).dropna().groupby(level="set")
        out = out.merge(
            pd.DataFrame(
                {
                    "set": list(gain.groups),
                    "paired seeds": [len(g) for _, g in gain],
                    "mask AP gain (GmaIoU - IoU)": [float(g.mean()) for _, g in gain],
                }
            ),
            on="set",
            how="left",
        )
    return out


_METRICS = {"mask AP": "segm", "box AP": "bbox"}


def _per_seed(records: Sequence[dict[str, Any]]) -> dict[tuple[str, str, int], dict[str, float]]:
    """(set, measure, seed) -> {"mask AP": ..., "box AP": ...}."""
    out = {}
    for r in records:
        run = r["run"]
        out[(run["mix"], run["measure"], run["seed"])] = {
            metric: float(r["metrics"][kind]["AP"]) for metric, kind in _METRICS.items()
        }
    return out


def paired_gains(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """GmaIoU minus IoU per set and metric, paired by seed: ``set``, ``metric``, ``pairs``,
    ``mean``, ``ci low``, ``ci high`` (95% Student's t; NaN with one pair) and ``higher`` (the
    seeds where GmaIoU is higher). Sets without a complete pair have no row."""
    from gmaiou.paper.experiments.stats import t_critical

    values = _per_seed(records)
    out = []
    for mix in dict.fromkeys(m for m, _, _ in values):
        seeds = sorted(
            s for m, meas, s in values if m == mix and meas == "gmaiou" and (m, "iou", s) in values
        )
        if not seeds:
            continue
        for metric in _METRICS:
            diff = [values[(mix, "gmaiou", s)][metric] - values[(mix, "iou", s)][metric]
                    for s in seeds]  # fmt: skip
            mean = statistics.fmean(diff)
            half = (
                t_critical(len(diff) - 1) * statistics.stdev(diff) / math.sqrt(len(diff))
                if len(diff) > 1
                else math.nan
            )
            out.append({"set": mix, "metric": metric, "pairs": len(diff), "mean": mean,
                        "ci low": mean - half, "ci high": mean + half,
                        "higher": sum(d > 0 for d in diff)})  # fmt: skip
    return out


def _gain_text(g: dict[str, Any]) -> str:
    if math.isnan(g["ci low"]):
        return f"{g['mean']:+.2f} {g['metric']} (1 pair, no interval)"
    return (
        f"{g['mean']:+.2f} {g['metric']} (95% CI {g['ci low']:+.2f} to {g['ci high']:+.2f}, "
        f"{g['pairs']} pairs)"
    )


def paired_headline(records: Sequence[dict[str, Any]]) -> str:
    """GmaIoU's paired mask AP gain over IoU in torchvision's Mask R-CNN, per set, one sentence."""
    gains = [g for g in paired_gains(records) if g["metric"] == "mask AP"]
    if not gains:
        return f"no complete pair yet ({_plural(len(records), 'run')} recorded)"
    sets = len(gains) > 1
    return "Mask R-CNN, GmaIoU − IoU: " + "; ".join(
        (f"{g['set']} set " if sets else "") + _gain_text(g) for g in gains
    )


def paired_findings(records: Sequence[dict[str, Any]]) -> list[str]:
    """Per set: each measure's mean mask and box AP over its seeds, then GmaIoU's paired gain
    per metric with its 95% interval and the seeds where it is higher."""
    values = _per_seed(records)
    lines = []
    for mix in dict.fromkeys(m for m, _, _ in values):
        parts = []
        for measure in TV_MEASURES:
            seeds = [v for (m, meas, _), v in values.items() if (m, meas) == (mix, measure)]
            if seeds:
                parts.append(
                    f"{measure} {statistics.fmean(v['mask AP'] for v in seeds):.2f} mask AP and "
                    f"{statistics.fmean(v['box AP'] for v in seeds):.2f} box AP over "
                    f"{_plural(len(seeds), 'seed')}"
                )
        lines.append(f"The {mix} set, means: " + "; ".join(parts) + ".")
    for g in paired_gains(records):
        lines.append(
            f"The {g['set']} set, GmaIoU − IoU paired by seed: {_gain_text(g)}, GmaIoU higher in "
            f"{g['higher']} of {g['pairs']}."
        )
    return lines


def plot_paired(records: Sequence[dict[str, Any]]):
    """Mask and box AP of each run, IoU and GmaIoU side by side, one line per seed (one colour
    per set)."""
    import matplotlib.pyplot as plt

    values = _per_seed(records)
    fig, axes = plt.subplots(1, len(_METRICS), figsize=(7.5, 3.6), squeeze=False)
    mixes = list(dict.fromkeys(m for m, _, _ in values))
    for ax, metric in zip(axes[0], _METRICS):
        for k, mix in enumerate(mixes):
            colour = f"C{k}"
            seeds = sorted({s for m, _, s in values if m == mix})
            for i, seed in enumerate(seeds):
                xs = [j for j, meas in enumerate(TV_MEASURES) if (mix, meas, seed) in values]
                ys = [values[(mix, TV_MEASURES[j], seed)][metric] for j in xs]
                ax.plot(xs, ys, "o-", color=colour, alpha=0.7,
                        label=f"{mix} set" if i == 0 else None)  # fmt: skip
        ax.set_xticks(range(len(TV_MEASURES)))
        ax.set_xticklabels(["box IoU" if m == "iou" else "GmaIoU" for m in TV_MEASURES])
        ax.set_xlim(-0.4, len(TV_MEASURES) - 0.6)
        ax.set_ylabel(f"{metric} on the val split (lines: seeds)")
        ax.set_title(metric)
        ax.legend(fontsize=8)
    fig.suptitle("torchvision Mask R-CNN (ResNet-18 FPN, 160 px) matched by box IoU or GmaIoU")
    fig.tight_layout()
    return fig


def provenance(records: Sequence[dict[str, Any]]) -> str:
    """Which device, thread count and commit trained the runs: ``"trained on <CPU> at 1 thread,
    commit abc1234"``, one clause per distinct combination (``;``-joined)."""
    groups: dict[tuple[str, int, str], int] = {}
    for r in records:
        key = (
            r.get("device_name") or "an unrecorded device",
            int(r.get("threads") or 0),
            (r.get("commit") or "unknown")[:7],
        )
        groups[key] = groups.get(key, 0) + 1
    clauses = [
        f"trained on {name} at {_plural(threads, 'thread')}, commit {commit}"
        + (f" ({_plural(n, 'run')})" if len(groups) > 1 else "")
        for (name, threads, commit), n in groups.items()
    ]
    return "; ".join(clauses)


def write_paired_comparison(
    records: Sequence[dict[str, Any]], profile: str, source: str | None = None
) -> list[Path]:
    """Write :data:`PAIRED` from the runs' records: :func:`paired_table` (Markdown), the runs
    (:func:`plot_paired`, PNG and PDF) and the findings with their headline; nothing (``[]``)
    before the first record."""
    import textwrap

    import matplotlib.pyplot as plt

    from gmaiou.paper.experiments.records import split_dirty
    from gmaiou.paper.figures import save_figure, save_findings, save_table

    split = split_dirty(records)
    records, dirty = split.used, split.left_out
    if not records:
        return []
    if source is None:
        source = (
            f"{_plural(len(records), 'run')} of torchvision's Mask R-CNN (ResNet-18 FPN, 160 px, "
            f"random initial weights) on synthetic sets, scored on the val split, "
            f"{provenance(records)}; records in {record_file(tv_grid(profile)[0]).parent}"
            + (f" ({_plural(len(dirty), 'dirty record')} left out)" if dirty else "")
        )
    paths = [save_table(paired_table(records), PAIRED, profile, source=source)]
    fig = plot_paired(records)
    paths += save_figure(fig, PAIRED, profile, source=textwrap.fill(source, 110))
    plt.close(fig)
    paths.append(
        save_findings(
            paired_findings(records),
            PAIRED,
            profile,
            source=source,
            headline=paired_headline(records),
        )
    )
    return paths
