"""Analyses behind notebook 01: Table 1, pixel weights (Fig. 3b), IoU vs GmaIoU (Fig. 4), Corollary 1."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from gmaiou.anchors import yolact_anchors
from gmaiou.data.transforms import mask_tight_boxes
from gmaiou.measure import gmaiou, pairwise_overlaps

__all__ = [
    "IOU_VARIANTS",
    "OverlapPairs",
    "corollary_1_check",
    "overlap_pairs",
    "pixel_weights",
    "plot_pixel_weights",
]

#: The three measures of Fig. 3(b): (title, measure name of :func:`pixel_weights`).
PIXEL_WEIGHT_MEASURES: tuple[tuple[str, str], ...] = (
    ("IoU", "iou"),
    ("maIoU (P = B)", "gmaiou-box"),
    ("GmaIoU (P = M)", "gmaiou-mask"),
)

#: Table 1 of the paper: IoU variants, the properties of their two inputs and their purpose.
IOU_VARIANTS: list[dict[str, str]] = [
    {
        "IoU variant": "IoU",
        "input 1": "box",
        "input 2": "box",
        "purpose": "performance measure, anchor assigner",
    },
    {
        "IoU variant": "Mask IoU",
        "input 1": "mask",
        "input 2": "mask",
        "purpose": "performance measure",
    },
    {
        "IoU variant": "Boundary IoU",
        "input 1": "mask",
        "input 2": "mask",
        "purpose": "performance measure",
    },
    {
        "IoU variant": "Generalized IoU",
        "input 1": "box",
        "input 2": "box",
        "purpose": "loss function",
    },
    {"IoU variant": "Distance IoU", "input 1": "box", "input 2": "box", "purpose": "loss function"},
    {"IoU variant": "Complete IoU", "input 1": "box", "input 2": "box", "purpose": "loss function"},
    {
        "IoU variant": "Generalized Mask-aware IoU (GmaIoU)",
        "input 1": "box + mask",
        "input 2": "box",
        "purpose": "anchor assigner",
    },
]


def pixel_weights(mask: Tensor, box: Tensor, measure: str) -> Tensor:
    """Weight of every pixel of the GT box in the intersection, ``[H, W]`` (Fig. 3b).

    IoU weighs every pixel of the box 1, on or off the mask. maIoU (``"gmaiou-box"``)
    moves the off-mask pixels' weight onto the mask: on-mask pixels weigh
    ``|B| / |M|``, off-mask 0. GmaIoU with P = M weighs on-mask pixels 1.
    Summing the weights over an anchor gives the measure's intersection.

    Args:
        mask: ``[H, W]`` bool mask of one GT.
        box: ``[4]`` its box, integer coordinates.
        measure: ``"iou"``, ``"gmaiou-box"`` or ``"gmaiou-mask"``.
    """
    h, w = mask.shape
    x1, y1, x2, y2 = (int(v) for v in box.round().tolist())
    inside = torch.zeros(h, w, dtype=torch.bool)
    inside[max(y1, 0) : max(y2, 0), max(x1, 0) : max(x2, 0)] = True
    if measure == "iou":
        return inside.float()
    m = mask & inside
    if measure == "gmaiou-box":
        area = (x2 - x1) * (y2 - y1)
        return m.float() * area / max(int(m.sum()), 1)
    if measure == "gmaiou-mask":
        return m.float()
    raise ValueError(
        f"pixel weights are defined for 'iou', 'gmaiou-box' and 'gmaiou-mask', not {measure!r}"
    )


def plot_pixel_weights(
    mask: Tensor,
    box: Tensor,
    anchors: Tensor,
    anchor_names: tuple[str, str],
    title: str | None = None,
):
    """Fig. 3(b): the pixel weights of IoU, maIoU and GmaIoU inside one GT box, with two anchors.

    Each panel's title gives the measure's value for both anchors; the colour bars are
    labelled; a legend names the mask outline, the GT box and the anchors.

    Args:
        mask: ``[H, W]`` bool mask of the GT.
        box: ``[4]`` its box, integer coordinates.
        anchors: ``[2, 4]`` the two anchors, drawn orange and red.
        anchor_names: what each anchor is (legend text), e.g. ``("on the arm", "on the corner")``.

    Returns:
        The figure and ``{title: [2] values}`` of the three measures for the two anchors.
    """
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle

    from gmaiou.measure import gmaiou as gmaiou_fn
    from gmaiou.measure import maiou

    if anchors.shape != (2, 4) or len(anchor_names) != 2:
        raise ValueError(f"give two anchors [2, 4] and two names, got {tuple(anchors.shape)}")
    boxes, masks = box[None].float(), mask[None]
    values = {
        "IoU": pairwise_overlaps("iou", boxes, anchors)[0],
        "maIoU (P = B)": maiou(boxes, masks, anchors)[0],
        "GmaIoU (P = M)": gmaiou_fn(boxes, masks, anchors)[0],
    }
    colours = ("tab:orange", "tab:red")
    vmax = float(pixel_weights(mask, box, "gmaiou-box").max())
    fig, axes = plt.subplots(1, 3, figsize=(13, 5.0))
    for ax, (name, measure) in zip(axes, PIXEL_WEIGHT_MEASURES):
        image = ax.imshow(pixel_weights(mask, box, measure), cmap="viridis", vmin=0, vmax=vmax)
        ax.contour(mask.float(), levels=[0.5], colors="white", linewidths=1)
        x1, y1, x2, y2 = box.tolist()
        ax.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, ec="w", ls="--"))
        for (a1, b1, a2, b2), colour in zip(anchors.tolist(), colours):
            # inset a little so that the anchors and the dashed GT box stay visible side by side
            ax.add_patch(
                Rectangle(
                    (a1 - 0.3, b1 - 0.3), a2 - a1 - 0.4, b2 - b1 - 0.4, fill=False, ec=colour, lw=2
                )
            )
        v = values[name]
        ax.set_title(f"{name} pixel weights\n{name} of orange anchor {v[0]:.2f}, red {v[1]:.2f}")
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(image, ax=ax, fraction=0.046, label="weight of a pixel in the intersection")
    handles = [
        Line2D([], [], color="white", linewidth=1, label="GT mask outline"),
        Line2D([], [], color="white", linestyle="--", label="GT box"),
        *(
            Line2D([], [], color=c, linewidth=2, label=f"{c.split(':')[1]} anchor: {n}")
            for c, n in zip(colours, anchor_names)
        ),
    ]
    fig.legend(
        handles=handles,
        loc="lower center",
        bbox_to_anchor=(0.5, 0.0),
        ncol=4,
        facecolor="0.55",
        fontsize=9,
    )
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig, values


@dataclass
class OverlapPairs:
    """IoU, maIoU (P = B) and GmaIoU (P = M) of anchor-GT pairs with a non-zero value, flattened."""

    iou: np.ndarray
    maiou: np.ndarray
    gmaiou: np.ndarray
    num_images: int
    num_gts: int
    num_anchors: int

    def __len__(self) -> int:
        return int(self.iou.shape[0])


def overlap_pairs(instances: list[tuple[Tensor, Tensor]], image_size: int = 550) -> OverlapPairs:
    """All anchor-GT pairs of YOLACT's anchors over ``instances`` where any measure is non-zero.

    Args:
        instances: per image, GT boxes ``[G, 4]`` and masks ``[G, S, S]`` at ``image_size``.
    """
    anchors = yolact_anchors(image_size).anchors
    ious, maious, gmaious = [], [], []
    gts = 0
    for boxes, masks in instances:
        if boxes.shape[0] == 0:
            continue
        iou = pairwise_overlaps("iou", boxes, anchors)
        ma = gmaiou(boxes, masks, anchors, polygon="box")
        gm = gmaiou(boxes, masks, anchors, polygon="mask")
        keep = (iou > 0) | (ma > 0) | (gm > 0)
        ious.append(iou[keep].numpy())
        maious.append(ma[keep].numpy())
        gmaious.append(gm[keep].numpy())
        gts += boxes.shape[0]
    cat = lambda xs: np.concatenate(xs) if xs else np.zeros(0, dtype=np.float32)  # noqa: E731
    return OverlapPairs(
        cat(ious), cat(maious), cat(gmaious), len(instances), gts, int(anchors.shape[0])
    )


def corollary_1_check(
    instances: list[tuple[Tensor, Tensor]], image_size: int = 550
) -> dict[str, float]:
    """Check ``GmaIoU_M <= GmaIoU_B`` (Corollary 1) on YOLACT's anchors.

    The corollary assumes ``M ⊆ B``. Annotated COCO boxes do not always hold their
    mask (and resizing moves the two apart), so the boxes are replaced here by the
    masks' tight boxes. It then holds exactly for anchors with integer coordinates;
    with fractional coordinates the discretisation of ``docs/spec.md`` section 1.5 counts rounded pixels
    against a continuous ``|A|``, so a few pairs can break it by a small margin.
    Reports, for both anchor sets and for the annotated boxes, the pairs checked,
    the pairs that break it and the largest excess.
    """
    anchors = yolact_anchors(image_size).anchors
    cases = (
        ("integer anchors, tight boxes", anchors.round(), True),
        ("YOLACT anchors, tight boxes", anchors, True),
        ("integer anchors, annotated boxes", anchors.round(), False),
    )
    out: dict[str, float] = {}
    for label, a, tight in cases:
        pairs = violations = 0
        worst = 0.0
        for boxes, masks in instances:
            if boxes.shape[0] == 0:
                continue
            b = mask_tight_boxes(masks) if tight else boxes
            diff = gmaiou(b, masks, a, polygon="mask") - gmaiou(b, masks, a, polygon="box")
            pairs += diff.numel()
            violations += int((diff > 1e-6).sum())
            worst = max(worst, float(diff.max()))
        out[f"{label}: pairs"] = pairs
        out[f"{label}: pairs with GmaIoU_M > GmaIoU_B"] = violations
        out[f"{label}: largest excess"] = max(worst, 0.0)
    return out
