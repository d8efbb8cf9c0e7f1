"""Figures of the experiments: paired differences against the paper's claims, learning curves,
the recipe search, Table 3's build-up. Each function returns a matplotlib figure; the notebooks save it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

__all__ = [
    "plot_build_up",
    "plot_learning_curve",
    "plot_paired_differences",
    "plot_recipe_search",
]


def plot_paired_differences(
    diffs: pd.DataFrame,
    claims: Mapping[str, tuple[float, float]] | None = None,
    data_names: Mapping[str, str] | None = None,
):
    """One panel per dataset: the treatment's paired difference against each baseline, with
    its 95% interval, and the paper's claimed range (``claims[baseline]``) shaded.

    Args:
        diffs: :func:`gmaiou.paper.experiments.stats.paired_differences` output.
        claims: baseline label -> (low, high) claimed gain.
        data_names: dataset key -> title.
    """
    if diffs.empty:
        raise ValueError("no paired differences to plot")
    datasets = list(dict.fromkeys(diffs["data"]))
    fig, axes = plt.subplots(
        1, len(datasets), figsize=(5.2 * len(datasets), max(2.2, 0.5 + 0.55 * diffs.groupby("data").size().max())),
        squeeze=False, sharex=True,
    )  # fmt: skip
    for ax, data in zip(axes[0], datasets):
        rows = diffs[diffs["data"] == data].reset_index(drop=True)
        y = np.arange(len(rows))[::-1]
        for yi, (_, row) in zip(y, rows.iterrows()):
            claim = (claims or {}).get(row["baseline"])
            if claim is not None:
                ax.fill_betweenx([yi - 0.35, yi + 0.35], *claim, color="tab:green", alpha=0.25,
                                 lw=0, label="paper's claimed gain")  # fmt: skip
            err = np.array([[row["mean"] - row["ci low"]], [row["ci high"] - row["mean"]]])
            colour = (
                "tab:blue" if row["ci low"] > 0 else ("tab:red" if row["ci high"] < 0 else "0.3")
            )
            ax.errorbar(row["mean"], yi, xerr=None if np.isnan(err).any() else err, fmt="o",
                        color=colour, capsize=4)  # fmt: skip
            ax.annotate(f"{row['mean']:+.2f}", (row["mean"], yi), xytext=(0, 7),
                        textcoords="offset points", ha="center", fontsize=8)  # fmt: skip
        ax.axvline(0.0, color="k", lw=0.8)
        ax.set_yticks(y, [f"− {b}" for b in rows["baseline"]])
        metric = rows["metric"].iloc[0]
        ax.set_xlabel(f"{rows['comparison'].iloc[0].split(' − ')[0]} minus baseline, {metric}")
        ax.set_title((data_names or {}).get(data, data), fontsize=10)
        handles, labels = ax.get_legend_handles_labels()
        unique = dict(zip(labels, handles))
        if unique:
            ax.legend(unique.values(), unique.keys(), loc="best", fontsize=8)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle("Paired differences over seeds (dots: mean; bars: 95% t-interval)", fontsize=11)
    fig.tight_layout()
    return fig


def plot_learning_curve(
    records: Sequence[Mapping[str, Any]],
    target_ap: float | None = None,
    budget_minutes: float | None = None,
):
    """Mask and box AP against training minutes for each record with a curve.

    ``target_ap`` and ``budget_minutes`` draw the recipe's target (a dashed line each).
    """
    curves = [r for r in records if r.get("curve")]
    if not curves:
        raise ValueError("no record holds a learning curve (train with curve_points > 1)")
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for r in curves:
        minutes = [0.0] + [p["train_seconds"] / 60 for p in r["curve"]]
        for kind, style, name in (("segm", "o-", "mask AP"), ("bbox", "s--", "box AP")):
            values = [0.0] + [p[kind]["AP"] for p in r["curve"]]
            tag = f"{r['label']}, {r['variant']}" if r.get("variant") else r["label"]
            ax.plot(minutes, values, style, label=f"{tag}: {name} ({r['device_name']})")
    if target_ap is not None:
        ax.axhline(target_ap, color="tab:red", ls=":", label=f"target {target_ap:g} mask AP")
    if budget_minutes is not None:
        ax.axvline(budget_minutes, color="tab:red", ls="-.", label=f"{budget_minutes:g} min budget")
    ax.set_xlabel("training minutes (iterations' wall time, data loading included)")
    ax.set_ylabel("COCO AP on the val split")
    ax.set_ylim(bottom=0)
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("CPU recipe: learning curve")
    fig.tight_layout()
    return fig


def plot_recipe_search(frame: pd.DataFrame):
    """Horizontal bars of mask and box AP per recipe variant (``records_frame`` of the search)."""
    if frame.empty:
        raise ValueError("no recipe-search records to plot")
    frame = frame.sort_values("mask AP")
    y = np.arange(len(frame))
    fig, ax = plt.subplots(figsize=(7.0, max(2.4, 0.6 + 0.3 * len(frame))))
    ax.barh(y - 0.2, frame["mask AP"], height=0.4, label="mask AP")
    ax.barh(y + 0.2, frame["box AP"], height=0.4, label="box AP", alpha=0.6)
    for yi, value in zip(y, frame["mask AP"]):
        ax.text(value + 0.3, yi - 0.2, f"{value:.1f}", va="center", fontsize=7)
    ax.set_yticks(y, frame["label"], fontsize=8)
    iterations = sorted({int(i) for i in frame["iterations"]})
    span = (
        f"{iterations[0]:,}" if len(iterations) == 1 else f"{iterations[0]:,} to {iterations[-1]:,}"
    )
    ax.set_xlabel(f"COCO AP on the val split after {span} training iterations")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title("Recipe search (ATSS-IoU YOLACT unless named, seed 0)")
    fig.tight_layout()
    return fig


def plot_build_up(frame: pd.DataFrame, gains: pd.DataFrame, labels: Sequence[str]):
    """Table 3's build-up in three panels: mask and box AP per step (mean, seeds as dots);
    each step's paired mask-AP and box-AP gain over the step before with its 95% interval;
    training s/iteration and inference fps per step (where speed records exist).

    Args:
        frame: :func:`gmaiou.paper.experiments.table3.step_frame` (columns ``step``, ``label``,
            ``mask AP``, ``box AP``, ``train s/it``, ``fps``).
        gains: :func:`gmaiou.paper.experiments.table3.step_gains`.
        labels: the steps' labels in order (x axis).
    """
    if frame.empty:
        raise ValueError("no Table 3 records to plot")
    x = np.arange(1, len(labels) + 1)
    ticks = [f"{i}. {label}" for i, label in zip(x, labels)]
    fig, axes = plt.subplots(1, 3, figsize=(16.0, 4.6))
    ax = axes[0]
    for metric, colour in (("mask AP", "tab:blue"), ("box AP", "tab:orange")):
        means = frame.groupby("step")[metric].mean()
        ax.plot(means.index, means.values, "o-", color=colour, label=f"{metric} (mean)")
        ax.plot(frame["step"], frame[metric], ".", color=colour, alpha=0.45)
    ax.set_ylabel("COCO AP on the val split (dots: seeds)")
    ax.set_title("Accuracy per step")
    ax.legend(fontsize=8)
    ax = axes[1]
    prev = gains[gains["over"] == "previous step"]
    for metric, colour, dx in (("mask AP", "tab:blue", -0.12), ("box AP", "tab:orange", 0.12)):
        rows = prev[prev["metric"] == metric]
        for _, r in rows.iterrows():
            err = np.array([[r["mean"] - r["ci low"]], [r["ci high"] - r["mean"]]])
            ax.errorbar(r["step"] + dx, r["mean"], yerr=None if np.isnan(err).any() else err,
                        fmt="o", color=colour, capsize=4)  # fmt: skip
        ax.plot([], [], "o", color=colour, label=f"{metric} gain")
    ax.axhline(0.0, color="k", lw=0.8)
    ax.set_ylabel("paired gain over the step before (95% t interval)")
    ax.set_title("What each step adds")
    ax.legend(fontsize=8)
    ax = axes[2]
    speed = frame.groupby("step")[["train s/it", "fps"]].mean()
    if speed.notna().any().any():
        ax.plot(speed.index, speed["train s/it"], "s-", color="tab:red", label="train s/iteration")
        ax.set_ylabel("training s/iteration (median)", color="tab:red")
        twin = ax.twinx()
        twin.plot(speed.index, speed["fps"], "^-", color="tab:green", label="inference fps")
        twin.set_ylabel("inference images/s (batch 1, val split)", color="tab:green")
        twin.set_ylim(bottom=0)
        ax.set_ylim(bottom=0)
    else:
        ax.text(0.5, 0.5, "no speed records", ha="center", va="center", transform=ax.transAxes)
    ax.set_title("Speed per step")
    for ax in axes:
        ax.set_xticks(x, ticks, rotation=35, ha="right", fontsize=8)
        ax.set_xlim(0.5, len(labels) + 0.5)
        ax.grid(alpha=0.3)
    fig.suptitle("Table 3: the GmaYOLACT build-up at CPU scale", fontsize=11)
    fig.tight_layout()
    return fig
