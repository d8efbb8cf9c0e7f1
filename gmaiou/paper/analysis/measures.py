"""Analyses behind notebook 01: Table 1, pixel weights (Fig. 3b), IoU vs GmaIoU (Fig. 4), Corollary 1.

Each paper item has a function that computes its table (:func:`table1_frame`,
:func:`pixel_weight_table`, :func:`iou_vs_gmaiou_table`), one that states the table's findings
(``(headline, lines)``, numbers read from the table) and a writer of its files
(``<stem>.md``, ``.png``, ``.pdf`` and ``<stem>_findings.md``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from gmaiou.anchors import yolact_anchors
from gmaiou.data.transforms import mask_tight_boxes
from gmaiou.measure import gmaiou, mob_ratio, pairwise_overlaps

__all__ = [
    "IOU_VARIANTS",
    "MOB_BINS",
    "OverlapPairs",
    "corollary_1_check",
    "iou_vs_gmaiou_findings",
    "iou_vs_gmaiou_table",
    "overlap_pairs",
    "pixel_weight_example",
    "pixel_weight_findings",
    "pixel_weight_table",
    "pixel_weights",
    "plot_iou_vs_gmaiou",
    "plot_pixel_weights",
    "table1_findings",
    "table1_frame",
    "write_iou_vs_gmaiou",
    "write_pixel_weights",
    "write_table1",
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


#: Where Table 1's picture and its stamp say the rows come from.
TABLE1_SOURCE = "Table 1 of the paper, plain IoU added"


def table1_frame() -> pd.DataFrame:
    """Table 1 as a frame: one row per IoU variant, columns ``IoU variant``, ``input 1``,
    ``input 2`` and ``purpose`` (:data:`IOU_VARIANTS`)."""
    return pd.DataFrame(IOU_VARIANTS, columns=["IoU variant", "input 1", "input 2", "purpose"])


def _short_name(name: str) -> str:
    """``"Generalized Mask-aware IoU (GmaIoU)"`` -> ``"GmaIoU"``; a name without brackets as it is."""
    if name.endswith(")") and "(" in name:
        return name[name.rindex("(") + 1 : -1]
    return name


def _names(names: Sequence[str]) -> str:
    return ", ".join(names) if names else "none"


def table1_findings(table: pd.DataFrame) -> tuple[str, list[str]]:
    """``(headline, lines)`` read from :func:`table1_frame`: which variants read a mask, which
    compare what with what, and which are anchor assigners."""
    names = [_short_name(n) for n in table["IoU variant"]]
    reads_mask = [
        "mask" in f"{a} {b}" for a, b in zip(table["input 1"], table["input 2"], strict=True)
    ]
    assigner = ["anchor assigner" in p for p in table["purpose"]]
    masked = [n for n, m in zip(names, reads_mask, strict=True) if m]
    assigners = [n for n, a in zip(names, assigner, strict=True) if a]
    masked_assigners = [n for n, m, a in zip(names, reads_mask, assigner, strict=True) if m and a]
    verb = "does" if len(masked_assigners) == 1 else "do"
    headline = (
        f"{len(masked)} of {len(names)} IoU variants read a mask; {len(masked_assigners)} of the "
        f"{len(assigners)} anchor assigners {verb} ({_names(masked_assigners)})"
    )
    lines = []
    kinds: dict[str, list[str]] = {}
    for name, a, b in zip(names, table["input 1"], table["input 2"], strict=True):
        kinds.setdefault(f"{a} with {b}", []).append(name)
    lines.append(
        f"{len(names)} IoU variants compare: "
        + "; ".join(f"{kind}: {len(ns)} ({_names(ns)})" for kind, ns in kinds.items())
        + "."
    )
    lines.append(
        f"Anchor assigners: {len(assigners)} of {len(names)} ({_names(assigners)}); of these, "
        f"{len(masked_assigners)} {'reads' if len(masked_assigners) == 1 else 'read'} a mask "
        f"({_names(masked_assigners)})."
    )
    purposes: dict[str, list[str]] = {}
    for name, purpose in zip(names, table["purpose"], strict=True):
        for part in (p.strip() for p in purpose.split(",")):
            purposes.setdefault(part, []).append(name)
    lines.append(
        "Uses: " + "; ".join(f"{p}: {len(ns)} ({_names(ns)})" for p, ns in purposes.items()) + "."
    )
    return headline, lines


def write_table1(
    table: pd.DataFrame, profile: str = "default", *, source: str = TABLE1_SOURCE
) -> list[Path]:
    """``table1_iou_variants.md``, ``.png``, ``.pdf`` (the table drawn) and
    ``table1_iou_variants_findings.md`` in the profile's figures folder."""
    import matplotlib.pyplot as plt

    from gmaiou.paper.figures import save_stem, table_figure

    fig = table_figure(table, "Table 1: IoU variants, their inputs and purpose")
    headline, lines = table1_findings(table)
    paths = save_stem("table1_iou_variants", table, fig, lines, headline, profile, source=source)
    plt.close(fig)
    return paths


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


def _two_anchor_measures(
    mask: Tensor, box: Tensor, anchors: Tensor, anchor_names: Sequence[str]
) -> dict[str, Tensor]:
    """Fig. 3(b)'s three measures of one GT against its two anchors: ``{name: [2]}``."""
    from gmaiou.measure import maiou

    if anchors.shape != (2, 4) or len(anchor_names) != 2:
        raise ValueError(f"give two anchors [2, 4] and two names, got {tuple(anchors.shape)}")
    boxes, masks = box[None].float(), mask[None]
    return {
        "IoU": pairwise_overlaps("iou", boxes, anchors)[0],
        "maIoU (P = B)": maiou(boxes, masks, anchors)[0],
        "GmaIoU (P = M)": gmaiou(boxes, masks, anchors)[0],
    }


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

    values = _two_anchor_measures(mask, box, anchors, anchor_names)
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


#: Where Fig. 3(b)'s example comes from (its stamp).
PIXEL_WEIGHT_SOURCE = "a 16 × 16 L-shaped mask (gmaiou.shapes.l_shape)"


def pixel_weight_example() -> tuple[Tensor, Tensor, Tensor, tuple[str, str]]:
    """Fig. 3(b)'s example: ``(mask [16, 16], box [4], anchors [2, 4], anchor names)``.

    An L-shaped mask of 80 pixels in a 12 x 12 box; the two anchors are the box's left half
    (on the L's upright arm) and its right half (mostly the empty corner), both of IoU 0.5.
    """
    from gmaiou.shapes import l_shape

    mask = torch.from_numpy(l_shape((16, 16), 2.0, 2.0, 12.0, 4.0))
    box = torch.tensor([2.0, 2.0, 14.0, 14.0])
    anchors = torch.tensor([[2.0, 2.0, 8.0, 14.0], [8.0, 2.0, 14.0, 14.0]])
    names = ("left half of the box, on the arm", "right half, mostly on the empty corner")
    return mask, box, anchors, names


def pixel_weight_table(
    mask: Tensor, box: Tensor, anchors: Tensor, anchor_names: Sequence[str]
) -> pd.DataFrame:
    """Fig. 3(b)'s numbers: one row per anchor (drawn orange, then red).

    Columns: ``anchor`` (colour and name), ``box`` (``x1, y1, x2, y2``), ``anchor pixels``
    (``|A|``), ``mask pixels in anchor`` (``|A ∩ M|``), ``mask pixels`` (``|M|``), ``IoU``,
    ``maIoU (P = B)`` and ``GmaIoU (P = M)``, the measures rounded to 3 decimals.
    """
    values = _two_anchor_measures(mask, box, anchors, anchor_names)
    masks = mask[None]
    inside = mob_ratio(anchors, masks)[0] * (anchors[:, 2:] - anchors[:, :2]).prod(dim=1)
    rows = []
    for k, (colour, name) in enumerate(zip(("orange", "red"), anchor_names, strict=True)):
        a = anchors[k]
        rows.append(
            {
                "anchor": f"{colour}: {name}",
                "box": ", ".join(f"{v:g}" for v in a.tolist()),
                "anchor pixels": int(round(float((a[2:] - a[:2]).prod()))),
                "mask pixels in anchor": int(round(float(inside[k]))),
                "mask pixels": int(mask.sum()),
                **{m: round(float(v[k]), 3) for m, v in values.items()},
            }
        )
    return pd.DataFrame(rows)


def pixel_weight_findings(table: pd.DataFrame) -> tuple[str, list[str]]:
    """``(headline, lines)`` read from :func:`pixel_weight_table`: the two anchors under each measure."""
    first, second = table.iloc[0], table.iloc[1]
    short = [str(name).split(":")[0] for name in table["anchor"]]
    lines = []
    for measure in ("IoU", "maIoU (P = B)", "GmaIoU (P = M)"):
        a, b = float(first[measure]), float(second[measure])
        relation = "the same" if a == b else f"{short[0]} − {short[1]}: {a - b:+.3f}"
        lines.append(
            f"{measure}: {a:.3f} for the {short[0]} anchor, {b:.3f} for the {short[1]} "
            f"({relation})."
        )
    lines.append(
        f"The {short[0]} anchor holds {first['mask pixels in anchor']} of the "
        f"{first['mask pixels']} mask pixels, the {short[1]} one "
        f"{second['mask pixels in anchor']}, in {first['anchor pixels']} and "
        f"{second['anchor pixels']} anchor pixels."
    )
    # where each anchor lies: the last part of its name ("left half, on the arm" -> "on the arm")
    where = [str(name).split(":", 1)[-1].split(",")[-1].strip() for name in table["anchor"]]
    iou = (
        f"Equal IoU {first['IoU']:.2f}"
        if first["IoU"] == second["IoU"]
        else f"IoU {first['IoU']:.2f} and {second['IoU']:.2f}"
    )
    headline = (
        f"{iou}, GmaIoU (P = M) {first['GmaIoU (P = M)']:.2f} {where[0]} and "
        f"{second['GmaIoU (P = M)']:.2f} {where[1]}"
    )
    return headline, lines


def write_pixel_weights(
    table: pd.DataFrame, fig, profile: str = "default", *, source: str = PIXEL_WEIGHT_SOURCE
) -> list[Path]:
    """``fig3b_pixel_weights.md`` (:func:`pixel_weight_table`), ``.png`` and ``.pdf`` (``fig``,
    from :func:`plot_pixel_weights`) and ``fig3b_pixel_weights_findings.md``."""
    from gmaiou.paper.figures import save_stem

    headline, lines = pixel_weight_findings(table)
    return save_stem("fig3b_pixel_weights", table, fig, lines, headline, profile, source=source)


@dataclass
class OverlapPairs:
    """IoU, maIoU (P = B) and GmaIoU (P = M) of anchor-GT pairs with a non-zero value, flattened.

    ``mob``: each pair's GT's MOB ratio ``|B ∩ M| / |B|`` (:func:`gmaiou.measure.mob_ratio`),
    ``gt_mob``: every GT's (``num_gts`` of them), at the analysed size.
    """

    iou: np.ndarray
    maiou: np.ndarray
    gmaiou: np.ndarray
    num_images: int
    num_gts: int
    num_anchors: int
    mob: np.ndarray
    gt_mob: np.ndarray

    def __len__(self) -> int:
        return int(self.iou.shape[0])


def overlap_pairs(instances: list[tuple[Tensor, Tensor]], image_size: int = 550) -> OverlapPairs:
    """All anchor-GT pairs of YOLACT's anchors over ``instances`` where any measure is non-zero.

    Args:
        instances: per image, GT boxes ``[G, 4]`` and masks ``[G, S, S]`` at ``image_size``.
    """
    anchors = yolact_anchors(image_size).anchors
    ious, maious, gmaious, mobs, gt_mobs = [], [], [], [], []
    gts = 0
    for boxes, masks in instances:
        if boxes.shape[0] == 0:
            continue
        iou = pairwise_overlaps("iou", boxes, anchors)
        ma = gmaiou(boxes, masks, anchors, polygon="box")
        gm = gmaiou(boxes, masks, anchors, polygon="mask")
        mob = mob_ratio(boxes, masks).diagonal()
        keep = (iou > 0) | (ma > 0) | (gm > 0)
        ious.append(iou[keep].numpy())
        maious.append(ma[keep].numpy())
        gmaious.append(gm[keep].numpy())
        mobs.append(mob[:, None].expand_as(keep)[keep].numpy())
        gt_mobs.append(mob.numpy())
        gts += boxes.shape[0]
    cat = lambda xs: np.concatenate(xs) if xs else np.zeros(0, dtype=np.float32)  # noqa: E731
    return OverlapPairs(
        cat(ious),
        cat(maious),
        cat(gmaious),
        len(instances),
        gts,
        int(anchors.shape[0]),
        cat(mobs),
        cat(gt_mobs),
    )


#: The GT MOB bins of Fig. 4's table: ``[lower, upper)``, the last one closed.
MOB_BINS: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)


def _bin_label(lower: float, upper: float, first: bool, last: bool) -> str:
    if first:
        return f"< {upper:g}"
    if last:
        return f"≥ {lower:g}"
    return f"{lower:g}–{upper:g}"


def iou_vs_gmaiou_table(
    pairs: OverlapPairs, edges: Sequence[float] = MOB_BINS, tolerance: float = 1e-6
) -> pd.DataFrame:
    """Fig. 4's numbers: where GmaIoU (P = M) is below IoU, per bin of the GT's MOB, and over all.

    One row per bin of ``edges`` (``[lower, upper)``; the first bin takes everything below its
    upper edge and the last everything from its lower edge on), then ``all``. Columns:

    * ``GT MOB``: the bin; ``GTs``: ground truths in it; ``pairs``: their non-zero pairs;
    * ``GmaIoU < IoU (%)``: pairs whose GmaIoU is below their IoU (by more than ``tolerance``);
    * ``mean GmaIoU − IoU``;
    * ``IoU ≥ 0.5 pairs``: pairs IoU calls positive; ``of which GmaIoU < 0.5 (%)``;
    * ``IoU < 0.4, GmaIoU ≥ 0.5 pairs``: pairs IoU calls negative that GmaIoU scores 0.5 or
      more (a count: they are few).

    Shares in percent with 1 decimal, the mean with 3; ``nan`` where a bin has no pair.
    """
    edges = [float(e) for e in edges]
    if len(edges) < 2 or any(b <= a for a, b in zip(edges, edges[1:])):
        raise ValueError(f"MOB bin edges must rise, at least two of them, got {edges}")
    iou = np.asarray(pairs.iou, dtype=np.float64)
    gma = np.asarray(pairs.gmaiou, dtype=np.float64)
    mob = np.asarray(pairs.mob, dtype=np.float64)
    gt_mob = np.asarray(pairs.gt_mob, dtype=np.float64)

    def share(hit: np.ndarray, of: np.ndarray) -> float:
        return round(100.0 * float(hit[of].mean()), 1) if of.any() else float("nan")

    def row(label: str, sel: np.ndarray, gts: int) -> dict:
        positive = sel & (iou >= 0.5)
        return {
            "GT MOB": label,
            "GTs": gts,
            "pairs": int(sel.sum()),
            "GmaIoU < IoU (%)": share(gma < iou - tolerance, sel),
            "mean GmaIoU − IoU": round(float((gma - iou)[sel].mean()), 3)
            if sel.any()
            else float("nan"),
            "IoU ≥ 0.5 pairs": int(positive.sum()),
            "of which GmaIoU < 0.5 (%)": share(gma < 0.5, positive),
            "IoU < 0.4, GmaIoU ≥ 0.5 pairs": int((sel & (iou < 0.4) & (gma >= 0.5)).sum()),
        }

    rows = []
    bins = list(zip(edges, edges[1:]))
    for k, (lower, upper) in enumerate(bins):
        first, last = k == 0, k == len(bins) - 1
        lo = -np.inf if first else lower
        hi = np.inf if last else upper
        rows.append(
            row(
                _bin_label(lower, upper, first, last),
                (mob >= lo) & (mob < hi),
                int(((gt_mob >= lo) & (gt_mob < hi)).sum()),
            )
        )
    rows.append(row("all", np.ones(iou.shape, bool), int(gt_mob.size)))
    return pd.DataFrame(rows)


def iou_vs_gmaiou_findings(table: pd.DataFrame) -> tuple[str, list[str]]:
    """``(headline, lines)`` read from :func:`iou_vs_gmaiou_table`: how often and by how much
    GmaIoU is below IoU for low- and high-MOB GTs."""
    bins = table[(table["GT MOB"] != "all") & (table["pairs"] > 0)]
    total = table[table["GT MOB"] == "all"].iloc[0]
    lines = []

    def positives(r) -> str:
        if r["IoU ≥ 0.5 pairs"] == 0:
            return "no pair has IoU ≥ 0.5"
        return (
            f"of the {r['IoU ≥ 0.5 pairs']:,} pairs IoU calls positive (IoU ≥ 0.5), "
            f"{r['of which GmaIoU < 0.5 (%)']:.1f}% have GmaIoU < 0.5"
        )

    for _, r in bins.iterrows():
        lines.append(
            f"GT MOB {r['GT MOB']}: {r['pairs']:,} pairs of {r['GTs']} GTs; GmaIoU (P = M) is "
            f"below IoU in {r['GmaIoU < IoU (%)']:.1f}% of them (mean GmaIoU − IoU "
            f"{r['mean GmaIoU − IoU']:+.3f}); {positives(r)}."
        )
    if total["pairs"] > 0:
        lines.append(
            f"All {total['pairs']:,} pairs of {total['GTs']} GTs: GmaIoU (P = M) below IoU in "
            f"{total['GmaIoU < IoU (%)']:.1f}%, mean GmaIoU − IoU "
            f"{total['mean GmaIoU − IoU']:+.3f}; {positives(total)}; "
            f"{total['IoU < 0.4, GmaIoU ≥ 0.5 pairs']:,} pairs IoU calls negative (IoU < 0.4) "
            "have GmaIoU ≥ 0.5."
        )
    if len(bins) == 0:
        return f"No anchor–GT pair with a non-zero measure among {total['GTs']} GTs", lines
    low, high = bins.iloc[0], bins.iloc[-1]
    if len(bins) > 1:
        change = float(high["mean GmaIoU − IoU"]) - float(low["mean GmaIoU − IoU"])
        trend = "rises" if change > 0 else "falls" if change < 0 else "stays"
        lines.append(
            f"From the lowest MOB bin ({low['GT MOB']}) to the highest ({high['GT MOB']}) the "
            f"mean GmaIoU − IoU {trend} from {low['mean GmaIoU − IoU']:+.3f} to "
            f"{high['mean GmaIoU − IoU']:+.3f}."
        )
        headline = (
            f"GmaIoU is below IoU for {low['GmaIoU < IoU (%)']:.1f}% of anchor–GT pairs at GT MOB "
            f"{low['GT MOB']}, {high['GmaIoU < IoU (%)']:.1f}% at MOB {high['GT MOB']}"
        )
    else:
        headline = (
            f"GmaIoU is below IoU for {low['GmaIoU < IoU (%)']:.1f}% of anchor–GT pairs "
            f"(GT MOB {low['GT MOB']})"
        )
    return headline, lines


def plot_iou_vs_gmaiou(pairs: OverlapPairs, title: str | None = None):
    """Fig. 4: 2-D histograms (log counts) of maIoU against IoU, GmaIoU (P = M) against IoU and
    GmaIoU (P = M) against maIoU over ``pairs``, the diagonal dashed. Returns the figure."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8), constrained_layout=True)
    panels = [
        (pairs.iou, pairs.maiou, "IoU", "GmaIoU, P = B (maIoU)", "(a)"),
        (pairs.iou, pairs.gmaiou, "IoU", "GmaIoU, P = M", "(b)"),
        (pairs.maiou, pairs.gmaiou, "GmaIoU, P = B", "GmaIoU, P = M", "(c)"),
    ]
    for ax, (x, y, xl, yl, tag) in zip(axes, panels):
        h = ax.hist2d(x, y, bins=60, range=[[0, 1], [0, 1]], norm=LogNorm(), cmap="magma")
        ax.plot([0, 1], [0, 1], color="cyan", lw=0.8, ls="--")
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        ax.set_title(f"{tag} {yl} vs {xl}")
        fig.colorbar(h[3], ax=ax, label="anchor-GT pairs")
    if title:
        fig.suptitle(title)
    return fig


def write_iou_vs_gmaiou(
    table: pd.DataFrame, fig, profile: str = "default", *, source: str
) -> list[Path]:
    """``fig4_iou_vs_gmaiou.md`` (:func:`iou_vs_gmaiou_table`), ``.png`` and ``.pdf`` (``fig``,
    from :func:`plot_iou_vs_gmaiou`) and ``fig4_iou_vs_gmaiou_findings.md``."""
    from gmaiou.paper.figures import save_stem

    headline, lines = iou_vs_gmaiou_findings(table)
    return save_stem("fig4_iou_vs_gmaiou", table, fig, lines, headline, profile, source=source)


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
