"""Mask-over-box (MOB) ratios of ground-truth boxes (Fig. 3(a), Observation 2) and dataset statistics.

The MOB ratio of a GT is ``|M| / |B|``: the share of its box that its mask fills
(:func:`gmaiou.measure.mob_ratio` of the GT's mask with its own box). Sizes follow
COCO's area ranges on the mask's pixel count: small below 32², medium below 96²,
large from 96² on.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from gmaiou.data.coco import CocoInstances
from gmaiou.measure import mob_ratio

__all__ = [
    "SIZE_RANGES",
    "dataset_statistics",
    "ecdf",
    "gt_mob_ratios",
    "mob_summary",
    "plot_mob_distribution",
    "size_name",
    "statistics_markdown",
]

#: COCO's object size ranges on area in pixels: (name, low inclusive, high exclusive).
SIZE_RANGES: tuple[tuple[str, float, float], ...] = (
    ("small", 0.0, 32.0**2),
    ("medium", 32.0**2, 96.0**2),
    ("large", 96.0**2, float("inf")),
)


def size_name(area: float) -> str:
    """COCO's size name of an object of ``area`` pixels."""
    for name, low, high in SIZE_RANGES:
        if low <= area < high:
            return name
    raise ValueError(f"area must be >= 0, got {area}")


def gt_mob_ratios(
    dataset: CocoInstances, max_images: int | None = None, progress: bool = False
) -> pd.DataFrame:
    """One row per ground truth of ``dataset`` (at original size, no transform).

    Columns: ``image_id``, ``label``, ``class_name``, ``area`` (mask pixels), ``box_area``,
    ``mob`` (``|M| / |B|``), ``size`` (small / medium / large).

    Args:
        dataset: any :class:`CocoInstances`; its transform is not applied.
        max_images: only the first ``max_images`` images (all if ``None``).
        progress: show a progress bar.
    """
    count = len(dataset) if max_images is None else min(max_images, len(dataset))
    rows: list[dict] = []
    for index in tqdm(range(count), desc="GT MOB ratios", unit="img", disable=not progress):
        targets = dataset.get_targets(index)
        boxes, masks = targets["boxes"], targets["masks"]
        if boxes.shape[0] == 0:
            continue
        mob = mob_ratio(boxes, masks).diagonal()
        area = torch.count_nonzero(masks, dim=(1, 2))
        box_area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        for g in range(boxes.shape[0]):
            label = int(targets["labels"][g])
            rows.append(
                {
                    "image_id": targets["image_id"],
                    "label": label,
                    "class_name": dataset.class_names[label],
                    "area": int(area[g]),
                    "box_area": float(box_area[g]),
                    "mob": float(mob[g]),
                    "size": size_name(float(area[g])),
                }
            )
    columns = ["image_id", "label", "class_name", "area", "box_area", "mob", "size"]
    return pd.DataFrame(rows, columns=columns)


def mob_summary(
    ratios: np.ndarray | torch.Tensor | pd.Series, threshold: float = 0.5
) -> dict[str, float]:
    """Count, share below ``threshold``, mean and median of MOB ratios.

    Raises ``ValueError`` for no ratios (a share of nothing is undefined).
    """
    values = np.asarray(ratios, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("no MOB ratios to summarise (the dataset has no ground truths)")
    return {
        "count": int(values.size),
        "share_below": float((values < threshold).mean()),
        "threshold": float(threshold),
        "mean": float(values.mean()),
        "median": float(np.median(values)),
    }


def ecdf(values: np.ndarray | torch.Tensor | pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Empirical CDF: sorted values ``x`` and ``F(x) = (rank) / n`` for each, both ``[n]``."""
    x = np.sort(np.asarray(values, dtype=np.float64).ravel())
    return x, np.arange(1, x.size + 1, dtype=np.float64) / max(x.size, 1)


def dataset_statistics(
    dataset: CocoInstances, max_images: int | None = None, threshold: float = 0.5
) -> dict:
    """Instances per class, COCO size shares and MOB statistics of a dataset split, as plain numbers.

    Returns a dict with ``images``, ``instances``, ``size_shares`` (small/medium/large),
    ``mob`` (:func:`mob_summary`) and ``classes``: per class ``name``, ``instances``,
    ``share`` of all instances, ``size_shares``, ``mob_mean``, ``mob_share_below``.
    """
    frame = gt_mob_ratios(dataset, max_images=max_images)
    images = len(dataset) if max_images is None else min(max_images, len(dataset))
    if frame.empty:
        raise ValueError(
            f"{dataset.ann_file} has no ground-truth instances in its first {images} images"
        )

    def size_shares(part: pd.DataFrame) -> dict[str, float]:
        return {name: float((part["size"] == name).mean()) for name, _, _ in SIZE_RANGES}

    classes = []
    for label, name in enumerate(dataset.class_names):
        part = frame[frame["label"] == label]
        if part.empty:
            continue
        classes.append(
            {
                "name": name,
                "instances": int(len(part)),
                "share": float(len(part) / len(frame)),
                "size_shares": size_shares(part),
                "mob_mean": float(part["mob"].mean()),
                "mob_share_below": float((part["mob"] < threshold).mean()),
            }
        )
    return {
        "images": int(images),
        "instances": int(len(frame)),
        "size_shares": size_shares(frame),
        "mob": mob_summary(frame["mob"], threshold),
        "classes": classes,
    }


def statistics_markdown(stats: Mapping) -> str:
    """A Markdown table of :func:`dataset_statistics` (one row per class and a total row)."""
    threshold = stats["mob"]["threshold"]
    lines = [
        f"| class | instances | share | small | medium | large | mean MOB | MOB < {threshold:g} |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def pct(x: float) -> str:
        return f"{100 * x:.1f}%"

    for c in stats["classes"]:
        s = c["size_shares"]
        lines.append(
            f"| {c['name']} | {c['instances']} | {pct(c['share'])} | {pct(s['small'])} | "
            f"{pct(s['medium'])} | {pct(s['large'])} | {c['mob_mean']:.2f} | {pct(c['mob_share_below'])} |"
        )
    s = stats["size_shares"]
    lines.append(
        f"| **all** | {stats['instances']} | 100% | {pct(s['small'])} | {pct(s['medium'])} | "
        f"{pct(s['large'])} | {stats['mob']['mean']:.2f} | {pct(stats['mob']['share_below'])} |"
    )
    return "\n".join(lines)


def plot_mob_distribution(
    ratio_sets: Mapping[str, np.ndarray],
    threshold: float = 0.5,
    bins: int = 20,
    title: str | None = None,
):
    """Fig. 3(a): histogram and ECDF of GT MOB ratios for each named set, the share below ``threshold`` marked.

    Every colour is in both panels' legends; ``title`` (e.g. the images and splits the
    ratios come from) goes above. Returns the matplotlib figure (two panels).
    """
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    if not ratio_sets:
        raise ValueError("give at least one set of MOB ratios")
    fig, (ax_hist, ax_cdf) = plt.subplots(1, 2, figsize=(11, 4.2))
    edges = np.linspace(0.0, 1.0, bins + 1)
    for name, values in ratio_sets.items():
        summary = mob_summary(values, threshold)
        label = (
            f"{name} (n={summary['count']}, {100 * summary['share_below']:.1f}% < {threshold:g})"
        )
        values = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0)
        ax_hist.hist(
            values,
            bins=edges,
            weights=np.full(values.size, 1.0 / values.size),
            alpha=0.55,
            label=name,
        )
        x, y = ecdf(values)
        line = ax_cdf.step(np.r_[0.0, x, 1.0], np.r_[0.0, y, 1.0], where="post", label=label)[0]
        ax_cdf.plot([threshold], [summary["share_below"]], "o", color=line.get_color())
    for ax in (ax_hist, ax_cdf):
        ax.axvline(threshold, color="k", linestyle="--", linewidth=0.8)
        ax.set_xlabel("MOB ratio of the GT box, |M| / |B|")
        ax.set_xlim(0, 1)
    ax_hist.set_ylabel("share of GT boxes (per set)")
    ax_hist.set_title("histogram")
    marks = [
        Line2D([], [], color="k", linestyle="--", linewidth=0.8, label=f"MOB = {threshold:g}"),
    ]
    handles, _ = ax_hist.get_legend_handles_labels()
    ax_hist.legend(handles=handles + marks, loc="upper left", fontsize=8)
    ax_cdf.set_ylabel("share of GT boxes with MOB ≤ x")
    ax_cdf.set_ylim(0, 1)
    ax_cdf.set_title("ECDF")
    marks.append(
        Line2D(
            [], [], color="0.3", marker="o", linestyle="none", label=f"share below {threshold:g}"
        )
    )
    handles, _ = ax_cdf.get_legend_handles_labels()
    ax_cdf.legend(handles=handles + marks, loc="upper left", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig
