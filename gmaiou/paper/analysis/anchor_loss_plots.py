"""Fig. 2: per-anchor losses against the MOB of their GT, mean and spread over seeds, and the
sentences on Observation 1 computed from the slopes of :func:`gmaiou.paper.analysis.anchor_losses.mob_trends`.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

__all__ = [
    "OBSERVATION1_SIGN",
    "describe_observation1",
    "fig2_table",
    "observation1_headline",
    "plot_loss_vs_mob",
    "seed_summary",
    "trend_verdicts",
]

_TASK_NAMES = {"cls": "classification", "box": "box", "mask": "mask"}
_PANELS = (
    ("negative", "cls", "(a) negatives: classification loss"),
    ("positive", "cls", "(b) positives: classification loss"),
    ("positive", "box", "(b) positives: box loss"),
    ("positive", "mask", "(b) positives: mask loss"),
)


def seed_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean, std and seeds per (label, group, MOB bin) of a records frame.

    Args:
        frame: :func:`gmaiou.paper.analysis.anchor_losses.records_frame` output.

    Returns:
        One row per (label, group, mob_lo, mob_hi): ``seeds``, ``count`` (mean anchors per
        seed) and ``<task>_mean``, ``<task>_std`` (std over seeds, NaN for one seed).
    """
    if len(frame) == 0:
        raise ValueError("the Fig. 2 frame is empty: no record to summarise")
    keys = ["label", "group", "mob_lo", "mob_hi"]
    grouped = frame.groupby(keys, sort=True)
    out = grouped.agg(seeds=("seed", "nunique"), count=("count", "mean")).reset_index()
    for task in ("cls", "box", "mask"):
        stats = grouped[task].agg(["mean", "std"]).reset_index(drop=True)
        out[f"{task}_mean"], out[f"{task}_std"] = stats["mean"], stats["std"]
    return out


def fig2_table(frame: pd.DataFrame, bands) -> pd.DataFrame:
    """Fig. 2's binned values as shown (``fig2_loss_vs_mob.md``): per (label, group, MOB bin),
    ``seeds``, ``count`` (mean anchors per seed, 1 decimal) and each task's ``mean ± std`` over
    seeds (3 decimals, ``–`` without a mean; the negatives have no box or mask loss); ``group``
    names its IoU band.

    Args:
        frame: :func:`gmaiou.paper.analysis.anchor_losses.records_frame` output.
        bands: the :class:`~gmaiou.paper.analysis.anchor_losses.Fig2Bands` the records used.
    """
    from gmaiou.paper.figures import format_cell

    summary = seed_summary(frame)
    table = summary[["label", "group", "mob_lo", "mob_hi", "seeds", "count"]].copy()
    table["count"] = table["count"].round(1)
    for task in ("cls", "box", "mask"):
        table[task] = [
            "–" if m != m else f"{format_cell(m, 3)} ± {format_cell(s, 3)}"
            for m, s in zip(summary[f"{task}_mean"], summary[f"{task}_std"])
        ]
    table.loc[table["group"] == "negative", ["box", "mask"]] = "–"
    band = {"negative": bands.negative, "positive": bands.positive}
    table["group"] = [f"{g}s, IoU in [{band[g][0]}, {band[g][1]})" for g in table["group"]]
    return table


def plot_loss_vs_mob(frame: pd.DataFrame, bands: dict | None = None):
    """Fig. 2: losses against MOB per assigner (lines), mean over seeds with ±1 std bars.

    Panels: (a) classification loss of the negatives in the negative IoU band; (b) the
    classification, box and mask losses of the positives in the positive IoU band; (c) the
    anchors per MOB bin of both bands (mean over seeds, log scale).

    Args:
        frame: :func:`gmaiou.paper.analysis.anchor_losses.records_frame` output.
        bands: a record's ``"bands"`` (for the axis titles), optional.

    Returns:
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt

    summary = seed_summary(frame)
    labels = list(dict.fromkeys(frame["label"]))
    fig, axes = plt.subplots(1, 5, figsize=(19, 3.6))
    offsets = np.linspace(-0.012, 0.012, len(labels)) if len(labels) > 1 else [0.0]
    for ax, (group, task, title) in zip(axes, _PANELS):
        for i, (label, dx) in enumerate(zip(labels, offsets)):
            part = summary[(summary["label"] == label) & (summary["group"] == group)]
            x = (part["mob_lo"] + part["mob_hi"]) / 2 + dx
            ax.errorbar(x, part[f"{task}_mean"], yerr=part[f"{task}_std"].fillna(0.0),
                        marker="o", capsize=3, label=label, color=f"C{i}")  # fmt: skip
        band = bands.get(group) if bands else None
        suffix = f"\nIoU in [{band[0]}, {band[1]})" if band else ""
        ax.set_title(title + suffix, fontsize=9)
        ax.set_xlabel("MOB of the GT")
        ax.set_ylabel("mean loss per anchor")
    ax = axes[-1]
    for i, label in enumerate(labels):
        for group, style in (("positive", "-"), ("negative", "--")):
            part = summary[(summary["label"] == label) & (summary["group"] == group)]
            ax.plot((part["mob_lo"] + part["mob_hi"]) / 2, part["count"].clip(lower=0.5),
                    style, marker="o", color=f"C{i}", label=f"{label}, {group}s")  # fmt: skip
    ax.set_yscale("log")
    ax.set_title("(c) anchors per MOB bin (both bands)", fontsize=9)
    ax.set_xlabel("MOB of the GT")
    ax.set_ylabel("anchors (mean over seeds)")
    ax.legend(fontsize=7)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


#: Observation 1's direction of each group's losses against MOB (the paper, Sec. 3): the
#: negatives' loss rises with MOB (Fig. 2(a)), the positives' losses fall (Fig. 2(b)).
OBSERVATION1_SIGN: dict[str, int] = {"negative": 1, "positive": -1}
_DIRECTION = {1: "rises", -1: "falls"}


def trend_verdicts(trends: pd.DataFrame, reference: str, candidate: str) -> pd.DataFrame:
    """Per (group, task): the slopes of ``reference`` (IoU) and ``candidate`` (GmaIoU) and verdicts.

    A slope goes Observation 1's way when its sign is :data:`OBSERVATION1_SIGN` of its group
    (negatives: the loss rises with MOB; positives: it falls). ``observation1`` holds when
    the reference's slope goes that way in every seed; ``None`` where no seed has a slope
    (too few binned anchors). Where it holds, the candidate ``removes`` the trend when its
    slope does not go that way in every seed, ``weakens`` it when it does with a smaller mean
    slope in size, and ``keeps`` it otherwise; where it does not hold, the candidate's trend
    ``appears`` (that way in every seed) or there is ``none either``; ``no data`` without
    any slope.

    Args:
        trends: :func:`gmaiou.paper.analysis.anchor_losses.mob_trends` output.

    Returns:
        One row per (group, task): ``expected`` (rises / falls), ``<label> slope`` (mean over
        seeds), ``<label> seeds along`` (``k/n`` seeds whose slope goes Observation 1's
        way), ``observation1`` (bool or None) and ``candidate`` (the verdict above).
    """
    if len(trends) == 0:
        raise ValueError("no trend to judge")
    for label in (reference, candidate):
        if label not in set(trends["label"]):
            raise ValueError(f"no trend of {label!r}; labels: {sorted(set(trends['label']))}")
    rows = []
    for (group, task), part in trends.groupby(["group", "task"], sort=False):
        sign = OBSERVATION1_SIGN[group]
        row: dict = {"group": group, "task": task, "expected": _DIRECTION[sign]}
        along = {}
        for label in (reference, candidate):
            values = part.loc[part["label"] == label, "slope"].dropna()
            along[label] = values * sign  # > 0: Observation 1's way
            row[f"{label} slope"] = float(values.mean()) if len(values) else math.nan
            row[f"{label} seeds along"] = f"{int((values * sign > 0).sum())}/{len(values)}"
        ref, cand = along[reference], along[candidate]
        row["observation1"] = bool((ref > 0).all()) if len(ref) else None
        if len(cand) == 0:
            row["candidate"] = "no data"
        elif row["observation1"] is not True:
            row["candidate"] = "appears" if bool((cand > 0).all()) else "none either"
        elif not bool((cand > 0).all()):
            row["candidate"] = "removes"
        elif cand.mean() < ref.mean():
            row["candidate"] = "weakens"
        else:
            row["candidate"] = "keeps"
        rows.append(row)
    return pd.DataFrame(rows)


def describe_observation1(verdicts: pd.DataFrame, reference: str, candidate: str) -> list[str]:
    """Sentences from :func:`trend_verdicts`, one line each: where Observation 1 holds with
    ``reference``, where it does not or cannot be judged, and what ``candidate`` does."""
    if len(verdicts) == 0:
        raise ValueError("no verdict to describe")
    names = [
        f"{_TASK_NAMES[r.task]} loss of the {r.group}s ({r.expected} with MOB in the paper)"
        for r in verdicts.itertuples(index=False)
    ]
    judged = _judged(verdicts)
    holds = [n for n, ok in zip(names, judged) if ok is True]
    fails = [n for n, ok in zip(names, judged) if ok is False]
    unknown = [n for n, ok in zip(names, judged) if ok is None]
    parts = []
    if holds:
        parts.append(
            f"With {reference}, the loss moves with the GT's MOB as Observation 1 says in every "
            f"seed for the {'; '.join(holds)}: Observation 1 holds for these."
        )
    if fails:
        parts.append(
            f"With {reference}, the loss does not move with MOB as Observation 1 says in every "
            f"seed for the {'; '.join(fails)}: Observation 1 is not confirmed for these."
        )
    if unknown:
        parts.append(
            f"With {reference}, too few anchors per MOB bin to judge the {'; '.join(unknown)}."
        )
    what = {
        "removes": "no longer moves that way in every seed (trend removed)",
        "weakens": "still moves that way in every seed, with a smaller slope (trend weakened)",
        "keeps": "moves that way in every seed with a slope as steep or steeper (trend kept)",
        "appears": "moves that way in every seed, unlike with the reference (trend appears)",
        "none either": "does not move that way in every seed either (no trend)",
        "no data": "cannot be judged (too few anchors per MOB bin)",
    }
    for verdict, sentence in what.items():
        which = [n for n, v in zip(names, verdicts["candidate"]) if v == verdict]
        if which:
            parts.append(f"With {candidate}, for the {'; '.join(which)}, the loss {sentence}.")
    return parts


def _judged(verdicts: pd.DataFrame) -> list[bool | None]:
    """``observation1`` of each verdict row as True, False or None (not judged)."""
    return [None if ok is None or ok != ok else bool(ok) for ok in verdicts["observation1"]]


#: How :func:`observation1_headline` names each of the candidate's verdicts.
_TREND = {
    "keeps": "kept",
    "weakens": "weakened",
    "removes": "removed",
    "appears": "appearing",
    "none either": "absent",
    "no data": "unjudged",
}


def observation1_headline(verdicts: pd.DataFrame, reference: str, candidate: str) -> str:
    """:func:`describe_observation1` in one short sentence: for how many of the losses
    Observation 1 holds with ``reference``, how many of them ``candidate``'s trend keeps,
    weakens, removes (...) and over how many seeds (the reference's slopes)."""
    if len(verdicts) == 0:
        raise ValueError("no verdict to describe")
    holds = sum(ok is True for ok in _judged(verdicts))
    counts = verdicts["candidate"].value_counts()
    trend = ", ".join(f"{word} in {counts[v]}" for v, word in _TREND.items() if v in counts)
    seeds = sorted({int(str(a).split("/")[1]) for a in verdicts[f"{reference} seeds along"]} - {0})
    of_seeds = ""
    if seeds:
        span = str(seeds[0]) if len(seeds) == 1 else f"{seeds[0]}–{seeds[-1]}"
        of_seeds = f" ({span} seeds)"
    return (
        f"Obs. 1 holds for {holds} of {len(verdicts)} losses with {reference}; "
        f"{candidate}: trend {trend}{of_seeds}"
    )
