"""Fig. 1: anchors on which box IoU and GmaIoU disagree, chosen automatically.

For each ground truth of an image (resized to the network input ``S x S`` as in
training), among YOLACT's anchors:

* the *IoU-positive* anchor covering the least of the object's mask: IoU >= 0.5
  (YOLACT calls it positive) but little of the object is in it;
* the *IoU-negative* anchor with the highest GmaIoU: IoU < 0.4 (a negative) though it
  covers much of the mask.

A ground truth scores ``(IoU - GmaIoU)`` of the first plus ``(GmaIoU - IoU)`` of the
second; the figure shows the top-scoring ground truth of the top-scoring images.
:func:`atss_positives` gives, for the interactive cell, the anchors ATSS makes
positive for one ground truth under IoU and under GmaIoU.

:func:`examples_table` holds the chosen examples' numbers, :func:`examples_findings` states them
and :func:`write_examples` writes ``fig1_examples.md``, ``.png``, ``.pdf`` and its findings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch import Tensor
from tqdm.auto import tqdm

from gmaiou.anchors import atss_anchors, yolact_anchors
from gmaiou.assigners import ATSSAssigner
from gmaiou.data.coco import CocoInstances, Item
from gmaiou.data.transforms import mask_tight_boxes, resize
from gmaiou.measure import MaskIntegrals, Polygon, box_area, gmaiou_from_counts, mob_ratio

__all__ = [
    "AnchorScore",
    "GTDisagreement",
    "atss_positives",
    "examples_findings",
    "examples_table",
    "gt_disagreements",
    "load_resized",
    "plot_atss_positives",
    "plot_examples",
    "select_examples",
    "to_original",
    "write_examples",
]


@dataclass(frozen=True)
class AnchorScore:
    """One anchor and how the measures see it.

    Attributes:
        box: ``[4]`` anchor ``(x1, y1, x2, y2)`` at the network input size.
        iou: box IoU with the GT box.
        gmaiou: GmaIoU with the GT (box and mask).
        coverage: ``|A ∩ M| / |M|``, the share of the mask inside the anchor.
    """

    box: Tensor
    iou: float
    gmaiou: float
    coverage: float


@dataclass(frozen=True)
class GTDisagreement:
    """A ground truth with an IoU-positive anchor of low GmaIoU and an IoU-negative one of high GmaIoU.

    Attributes:
        index: dataset index of the image; ``image_id`` its COCO id.
        gt_index: the GT's index in the (resized) item.
        positive: the IoU-positive anchor covering the least of the mask.
        negative: the IoU-negative anchor with the highest GmaIoU.
        score: ``(positive.iou - positive.gmaiou) + (negative.gmaiou - negative.iou)``.
    """

    index: int
    image_id: int
    gt_index: int
    positive: AnchorScore
    negative: AnchorScore
    score: float


def load_resized(dataset: CocoInstances, index: int, size: int) -> tuple[Item, Item]:
    """Item ``index`` at its original size (image in [0, 1], no transform) and resized to ``size x size``.

    Both hold the same instances in the same order.
    """
    item = dataset.load(index, apply_transform=False)
    return item, resize(item, size)


def to_original(boxes: Tensor, size: int, height: int, width: int) -> Tensor:
    """Boxes at the ``size x size`` network input mapped back onto an ``height x width`` image."""
    scale = torch.tensor(
        [width / size, height / size, width / size, height / size], dtype=boxes.dtype
    )
    return boxes * scale.to(boxes.device)


def gt_disagreements(
    boxes: Tensor,
    masks: Tensor,
    anchors: Tensor,
    pos_iou: float = 0.5,
    neg_iou: float = 0.4,
    polygon: Polygon = "mask",
    min_area: int = 32 * 32,
) -> list[tuple[int, AnchorScore, AnchorScore, float]]:
    """For each GT with both kinds of anchor: ``(gt_index, positive, negative, score)``, best score first.

    The positive is the IoU-positive anchor covering the least of the mask (the lowest
    GmaIoU among equals); the negative is the IoU-negative anchor with the highest GmaIoU.
    Only anchors that meet the GT's box or mask are examined.

    Args:
        boxes: ``[G, 4]`` GT boxes; masks: ``[G, H, W]`` GT masks; anchors: ``[A, 4]``.
        pos_iou: IoU from which an anchor is positive; neg_iou: below which it is negative.
        polygon: GmaIoU's polygon (``"mask"``: P = M, ``"box"``: P = B, maIoU).
        min_area: GTs with fewer mask pixels are skipped (too small to show).
    """
    if boxes.shape[0] == 0 or anchors.shape[0] == 0:
        return []
    integrals = MaskIntegrals(masks, boxes)
    mask_boxes = mask_tight_boxes(masks)
    region_lt = torch.minimum(boxes[:, :2], mask_boxes[:, :2])
    region_rb = torch.maximum(boxes[:, 2:], mask_boxes[:, 2:])
    # (GT, anchor) pairs where the anchor meets the GT's box or mask, all GTs at once.
    wh = torch.minimum(anchors[None, :, 2:], region_rb[:, None]) - torch.maximum(
        anchors[None, :, :2], region_lt[:, None]
    )
    gi, ai = ((wh > 0).all(dim=2) & (integrals.mask_area >= min_area)[:, None]).nonzero(
        as_tuple=True
    )
    if gi.numel() == 0:
        return []
    gt_boxes, cand_boxes = boxes[gi], anchors[ai]
    lt = torch.maximum(gt_boxes[:, :2], cand_boxes[:, :2])
    rb = torch.minimum(gt_boxes[:, 2:], cand_boxes[:, 2:])
    box_inter = (rb - lt).clamp(min=0).prod(dim=1)
    union = box_area(gt_boxes) + box_area(cand_boxes) - box_inter
    iou = box_inter / union
    inter = integrals.paired_intersection(gi, cand_boxes)
    mask_area = integrals.mask_area[gi]
    gma = gmaiou_from_counts(
        inter, mask_area, box_area(gt_boxes), box_area(cand_boxes), union, polygon
    )
    coverage = inter.double() / mask_area
    out = []
    for g in gi.unique().tolist():
        rows = (gi == g).nonzero().flatten()
        pos = rows[iou[rows] >= pos_iou]
        neg = rows[(iou[rows] < neg_iou) & (gma[rows] > 0)]
        if pos.numel() == 0 or neg.numel() == 0:
            continue
        by_gma = pos[gma[pos].argsort(stable=True)]
        p = int(by_gma[coverage[by_gma].argsort(stable=True)[0]])
        n = int(neg[gma[neg].argmax()])
        positive, negative = (
            AnchorScore(cand_boxes[k].clone(), float(iou[k]), float(gma[k]), float(coverage[k]))
            for k in (p, n)
        )
        value = (positive.iou - positive.gmaiou) + (negative.gmaiou - negative.iou)
        out.append((g, positive, negative, value))
    out.sort(key=lambda row: -row[3])
    return out


def select_examples(
    dataset: CocoInstances,
    num_examples: int = 4,
    size: int = 550,
    max_images: int | None = None,
    polygon: Polygon = "mask",
    min_area: int = 32 * 32,
    progress: bool = False,
) -> list[GTDisagreement]:
    """The ``num_examples`` images (one GT each) where IoU and GmaIoU disagree most on YOLACT's anchors.

    Images are resized to ``size x size`` as in training; at most ``max_images`` are scanned.
    """
    if num_examples < 1:
        raise ValueError(f"num_examples must be >= 1, got {num_examples}")
    anchors = yolact_anchors(size).anchors
    count = len(dataset) if max_images is None else min(max_images, len(dataset))
    found: list[GTDisagreement] = []
    for index in tqdm(range(count), desc="IoU vs GmaIoU", unit="img", disable=not progress):
        _, item = load_resized(dataset, index, size)
        rows = gt_disagreements(
            item["boxes"], item["masks"], anchors, polygon=polygon, min_area=min_area
        )
        if rows:
            g, positive, negative, value = rows[0]
            found.append(GTDisagreement(index, int(item["image_id"]), g, positive, negative, value))
    found.sort(key=lambda d: -d.score)
    return found[:num_examples]


def atss_positives(
    boxes: Tensor,
    masks: Tensor,
    size: int,
    gt_index: int,
    measures: Sequence[str] = ("iou", "gmaiou-mask"),
    scales_per_octave: int = 1,
) -> dict[str, Tensor]:
    """Anchors ATSS makes positive for GT ``gt_index`` under each measure: ``{measure: [P, 4]}``.

    ``boxes`` ``[G, 4]`` and ``masks`` ``[G, S, S]`` are at the ``size x size`` network input.
    """
    if not 0 <= gt_index < boxes.shape[0]:
        raise ValueError(f"gt_index {gt_index} out of range for {boxes.shape[0]} ground truths")
    grid = atss_anchors(size, scales_per_octave=scales_per_octave)
    out = {}
    for measure in measures:
        result = ATSSAssigner(measure=measure).assign(grid, boxes, masks)
        out[measure] = grid.anchors[result.gt_inds == gt_index]
    return out


def _box_text(box: Tensor) -> str:
    return ", ".join(f"{v:.1f}" for v in box.tolist())


def examples_table(dataset: CocoInstances, examples: Sequence[GTDisagreement]) -> pd.DataFrame:
    """Fig. 1's numbers: one row per example, in the figure's order.

    Columns: ``image`` (COCO id), ``class``, ``GT MOB`` (``|B ∩ M| / |B|`` at the original
    size), then for the IoU-positive (``IoU+``) and the IoU-negative (``IoU−``) anchor its
    ``anchor`` (``x1, y1, x2, y2`` at the network input), ``IoU``, ``GmaIoU`` (the polygon
    the examples were chosen with) and ``mask covered`` (``|A ∩ M| / |M|``), and the
    ``disagreement`` score; values rounded to 3 decimals.
    """
    rows = []
    for e in examples:
        targets = dataset.get_targets(e.index)
        g = e.gt_index
        mob = float(mob_ratio(targets["boxes"][g : g + 1], targets["masks"][g : g + 1])[0, 0])
        row = {
            "image": e.image_id,
            "class": dataset.class_names[int(targets["labels"][g])],
            "GT MOB": round(mob, 3),
        }
        for tag, anchor in (("IoU+", e.positive), ("IoU−", e.negative)):
            row[f"{tag} anchor"] = _box_text(anchor.box)
            row[f"{tag} IoU"] = round(anchor.iou, 3)
            row[f"{tag} GmaIoU"] = round(anchor.gmaiou, 3)
            row[f"{tag} mask covered"] = round(anchor.coverage, 3)
        row["disagreement"] = round(e.score, 3)
        rows.append(row)
    return pd.DataFrame(rows)


def _span(values: pd.Series) -> str:
    """``"0.12–0.34"``, or one number where all are equal (2 decimals)."""
    low, high = f"{values.min():.2f}", f"{values.max():.2f}"
    return low if low == high else f"{low}–{high}"


def examples_findings(table: pd.DataFrame) -> tuple[str, list[str]]:
    """``(headline, lines)`` read from :func:`examples_table`: each example's two anchors, and
    the ranges over the examples."""
    if table.empty:
        return "No example: no image had both an IoU-positive and an IoU-negative anchor", []
    lines = [
        f"Image {r['image']} ({r['class']}, GT MOB {r['GT MOB']:.2f}): the IoU-positive anchor "
        f"(IoU {r['IoU+ IoU']:.2f}) has GmaIoU {r['IoU+ GmaIoU']:.2f} and covers "
        f"{100 * r['IoU+ mask covered']:.0f}% of the mask; the IoU-negative anchor "
        f"(IoU {r['IoU− IoU']:.2f}) has GmaIoU {r['IoU− GmaIoU']:.2f} and covers "
        f"{100 * r['IoU− mask covered']:.0f}%."
        for _, r in table.iterrows()
    ]
    lines.append(
        f"Over the {len(table)} examples: anchors IoU calls positive (IoU {_span(table['IoU+ IoU'])}) "
        f"have GmaIoU {_span(table['IoU+ GmaIoU'])}; anchors IoU calls negative "
        f"(IoU {_span(table['IoU− IoU'])}) have GmaIoU {_span(table['IoU− GmaIoU'])}; "
        f"GT MOB {_span(table['GT MOB'])}."
    )
    headline = (
        f"IoU-positive anchors (IoU {_span(table['IoU+ IoU'])}) have GmaIoU "
        f"{_span(table['IoU+ GmaIoU'])}; IoU-negatives reach GmaIoU {table['IoU− GmaIoU'].max():.2f}"
    )
    return headline, lines


def write_examples(
    table: pd.DataFrame, fig, profile: str = "default", *, source: str
) -> list[Path]:
    """``fig1_examples.md`` (:func:`examples_table`), ``.png`` and ``.pdf`` (``fig``, from
    :func:`plot_examples`) and ``fig1_examples_findings.md``."""
    from gmaiou.paper.figures import save_stem

    headline, lines = examples_findings(table)
    return save_stem("fig1_examples", table, fig, lines, headline, profile, source=source)


# ----------------------------------------------------------------------------- plotting


def _draw_box(
    ax,
    box: Sequence[float],
    color: str,
    label: str | None = None,
    style: str = "-",
    at_bottom: bool = False,
) -> None:
    """Outline ``box`` and write ``label`` at its top-left corner (bottom-left with ``at_bottom``)."""
    import matplotlib.patches as patches

    x1, y1, x2, y2 = (float(v) for v in box)
    ax.add_patch(
        patches.Rectangle(
            (x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=color, linewidth=2, linestyle=style
        )
    )
    if label:
        # Outside the box (below it, or above it) where the image has room, else inside;
        # always on the image, even when the anchor sticks out of it.
        (left, right), (bottom, top) = ax.get_xlim(), ax.get_ylim()
        room = 0.07 * (bottom - top)
        # Left-aligned at the box's left edge in the left half of the image, right-aligned
        # at its right edge in the right half: the label never runs off the image.
        if (x1 + x2) / 2 <= (left + right) / 2:
            x, ha = min(max(x1, left), right) + 2, "left"
        else:
            x, ha = max(min(x2, right), left) - 2, "right"
        y1, y2 = min(max(y1, top), bottom), min(max(y2, top), bottom)
        if at_bottom:
            y, va = (y2 + 2, "top") if y2 + room <= bottom else (y2 - 2, "bottom")
        else:
            y, va = (y1 - 2, "bottom") if y1 - room >= top else (y1 + 2, "top")
        ax.text(
            x,
            y,
            label,
            color="white",
            fontsize=7,
            ha=ha,
            va=va,
            clip_on=True,
            bbox={"facecolor": color, "alpha": 0.85, "pad": 1.5, "edgecolor": "none"},
        )


_MASK_COLOUR = (1.0, 0.85, 0.0)


def _show_mask(ax, image: Tensor, mask: Tensor, color=_MASK_COLOUR) -> None:
    overlay = image.permute(1, 2, 0).clone()
    tint = torch.tensor(color, dtype=overlay.dtype)
    overlay[mask] = 0.45 * overlay[mask] + 0.55 * tint
    ax.imshow(overlay.numpy())
    ax.set_xticks([])
    ax.set_yticks([])


def _examples_legend(fig, ncol: int) -> None:
    """The legend of Fig. 1: mask, GT box and the two anchors (on grey, so white shows)."""
    import matplotlib.patches as patches
    from matplotlib.lines import Line2D

    handles = [
        patches.Patch(facecolor=_MASK_COLOUR, alpha=0.8, label="GT mask"),
        Line2D([], [], color="white", linestyle="--", linewidth=2, label="GT box"),
        Line2D(
            [],
            [],
            color="tab:red",
            linewidth=2,
            label="anchor IoU calls positive (IoU ≥ 0.5), lowest GmaIoU (P = M)",
        ),
        Line2D(
            [],
            [],
            color="tab:green",
            linewidth=2,
            label="anchor IoU calls negative (IoU < 0.4), highest GmaIoU (P = M)",
        ),
    ]
    fig.legend(
        handles=handles,
        loc="lower center",
        ncol=ncol,
        fontsize=8,
        facecolor="0.55",
        framealpha=1.0,
        bbox_to_anchor=(0.5, 0.0),
    )


def plot_examples(
    dataset: CocoInstances,
    examples: Sequence[GTDisagreement],
    size: int = 550,
    title: str | None = None,
):
    """Fig. 1: each example's image with its GT mask (yellow) and box (dashed white), the
    IoU-positive anchor of low GmaIoU (red) and the IoU-negative anchor of high GmaIoU (green),
    IoU and GmaIoU (P = M) (computed at ``size x size``) written on each, a legend below
    and ``title`` above. Returns the figure."""
    import matplotlib.pyplot as plt

    if not examples:
        raise ValueError(
            "no examples to plot: no image had both an IoU-positive and an IoU-negative anchor"
        )
    cols = min(len(examples), 4)
    rows = -(-len(examples) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 4.0 * rows + 0.8), squeeze=False)
    for ax in axes.flat[len(examples) :]:
        ax.axis("off")
    for ax, ex in zip(axes.flat, examples):
        item = dataset.load(ex.index, apply_transform=False)
        h, w = item["image"].shape[1:]
        _show_mask(ax, item["image"], item["masks"][ex.gt_index])
        _draw_box(ax, item["boxes"][ex.gt_index], "white", style="--")
        for anchor, color, at_bottom in (
            (ex.positive, "tab:red", True),
            (ex.negative, "tab:green", False),
        ):
            box = to_original(anchor.box[None], size, h, w)[0]
            text = f"IoU {anchor.iou:.2f}, GmaIoU (P = M) {anchor.gmaiou:.2f}"
            _draw_box(ax, box, color, text, at_bottom=at_bottom)
        name = dataset.class_names[int(item["labels"][ex.gt_index])]
        ax.set_title(f"{name} (image {ex.image_id})", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=11)
    _examples_legend(fig, ncol=2 if cols > 1 else 1)
    fig.tight_layout(rect=(0, 0.1 if cols > 1 else 0.16, 1, 1))
    return fig


def plot_atss_positives(image: Tensor, mask: Tensor, box: Tensor, positives: Mapping[str, Tensor]):
    """One panel per measure: the GT (mask and dashed box) and the anchors ATSS makes positive for it.

    ``image`` ``[3, S, S]`` in [0, 1], ``mask`` ``[S, S]``, ``box`` ``[4]``, all at the network size.
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(positives), figsize=(4.2 * len(positives), 4.2), squeeze=False)
    for ax, (measure, anchors) in zip(axes[0], positives.items()):
        _show_mask(ax, image, mask)
        _draw_box(ax, box, "white", style="--")
        for anchor in anchors:
            _draw_box(ax, anchor, "tab:cyan")
        ax.set_title(f"ATSS with {measure}: {anchors.shape[0]} positives", fontsize=9)
    fig.tight_layout()
    return fig
