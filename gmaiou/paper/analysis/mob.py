"""Mask-over-box (MOB) ratios of ground-truth boxes (Fig. 3(a), Observation 2) as a table, their
ECDF and plot; the dataset statistics are the library's (:mod:`gmaiou.data.stats`).

The MOB ratio of a GT is ``|M| / |B|``: the share of its box that its mask fills
(:func:`gmaiou.measure.mob_ratio` of the GT's mask with its own box). Sizes follow
COCO's area ranges on the mask's pixel count: small below 32², medium below 96²,
large from 96² on.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from gmaiou.data import stats as _stats
from gmaiou.data.coco import CocoInstances
from gmaiou.data.stats import (
    SIZE_RANGES,
    dataset_statistics,
    mob_summary,
    size_name,
    statistics_markdown,
)

__all__ = [
    "SIZE_RANGES",
    "dataset_statistics",
    "ecdf",
    "gt_mob_ratios",
    "mob_distribution_findings",
    "mob_distribution_table",
    "mob_summary",
    "plot_mob_distribution",
    "size_name",
    "statistics_markdown",
    "write_mob_distribution",
]


def gt_mob_ratios(
    dataset: CocoInstances, max_images: int | None = None, progress: bool = False
) -> pd.DataFrame:
    """:func:`gmaiou.data.stats.gt_mob_ratios` as a table: one row per ground truth of ``dataset``.

    Columns: ``image_id``, ``label``, ``class_name``, ``area`` (mask pixels), ``box_area``,
    ``mob`` (``|M| / |B|``), ``size`` (small / medium / large).
    """
    rows = _stats.gt_mob_ratios(dataset, max_images=max_images, progress=progress)
    return pd.DataFrame(rows, columns=list(_stats.GT_COLUMNS))


def ecdf(values: np.ndarray | torch.Tensor | pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Empirical CDF: sorted values ``x`` and ``F(x) = (rank) / n`` for each, both ``[n]``."""
    x = np.sort(np.asarray(values, dtype=np.float64).ravel())
    return x, np.arange(1, x.size + 1, dtype=np.float64) / max(x.size, 1)


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


def mob_distribution_table(
    frames: Mapping[str, pd.DataFrame], threshold: float = 0.5
) -> pd.DataFrame:
    """Fig. 3(a)'s numbers: one row per named set of :func:`gt_mob_ratios` rows.

    Columns: ``data`` (the name), ``images`` (with a ground truth), then :func:`mob_summary`'s
    ``count``, ``share_below`` (the share of GT boxes with MOB below ``threshold``),
    ``threshold``, ``mean`` and ``median``, rounded to 4 decimals.
    """
    if not frames:
        raise ValueError("give at least one set of MOB ratios")
    rows = [
        {"data": name, "images": int(f["image_id"].nunique()), **mob_summary(f["mob"], threshold)}
        for name, f in frames.items()
    ]
    return pd.DataFrame(rows).round(4)


def mob_distribution_findings(table: pd.DataFrame) -> tuple[str, list[str]]:
    """``(headline, lines)`` read from :func:`mob_distribution_table`: the share of GT boxes
    below the threshold per set (Observation 2), their mean and median, and the sets compared."""
    threshold = float(table["threshold"].iloc[0])
    lines = [
        f"{r['data']}: {100 * r['share_below']:.1f}% of {r['count']:,} GT boxes "
        f"({r['images']} images) have MOB < {threshold:g}; mean MOB {r['mean']:.2f}, "
        f"median {r['median']:.2f}."
        for _, r in table.iterrows()
    ]
    if len(table) > 1:
        high = table.loc[table["share_below"].idxmax()]
        low = table.loc[table["share_below"].idxmin()]
        lines.append(
            f"The share below {threshold:g} is {100 * (high['share_below'] - low['share_below']):.1f} "
            f"points higher on {high['data']} ({100 * high['share_below']:.1f}%) than on "
            f"{low['data']} ({100 * low['share_below']:.1f}%)."
        )
    parts = [f"{100 * r['share_below']:.1f}% of {r['data']}" for _, r in table.iterrows()]
    joined = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    headline = f"{joined} GT boxes have MOB below {threshold:g}"
    return headline, lines


def write_mob_distribution(
    table: pd.DataFrame, fig, profile: str = "default", *, source: str
) -> list[Path]:
    """``fig3a_mob_distribution.md`` (:func:`mob_distribution_table`), ``.png`` and ``.pdf``
    (``fig``, from :func:`plot_mob_distribution`) and ``fig3a_mob_distribution_findings.md``."""
    from gmaiou.paper.figures import save_stem

    headline, lines = mob_distribution_findings(table)
    name = "fig3a_mob_distribution"
    return save_stem(name, table, fig, lines, headline, profile, source=source)
