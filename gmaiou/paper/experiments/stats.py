"""Statistics of experiment records: mean ± std tables and paired differences with confidence intervals.

Runs with the same seed share their initialisation (backbone and FPN), sample order and
augmentation draws (:mod:`gmaiou.paper.experiments.runner`), so assigners are compared seed by
seed: the difference ``d_s = metric(A, s) - metric(B, s)`` has far less noise than the
difference of two means. Its 95% confidence interval is Student's t interval over the
seeds, ``mean(d) ± t_{0.975, n-1} · std(d) / sqrt(n)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "METRICS",
    "describe_difference",
    "format_mean_std",
    "paired_differences",
    "records_frame",
    "summary_table",
    "t_critical",
]

#: Columns of :func:`records_frame` taken from each record's metrics: column -> (iou type, key).
METRICS: dict[str, tuple[str, str]] = {
    "mask AP": ("segm", "AP"),
    "mask AP50": ("segm", "AP50"),
    "mask AP75": ("segm", "AP75"),
    "mask APs": ("segm", "APs"),
    "mask APm": ("segm", "APm"),
    "mask APl": ("segm", "APl"),
    "box AP": ("bbox", "AP"),
    "mask oLRP": ("segm", "oLRP"),
    "box oLRP": ("bbox", "oLRP"),
}

# Two-sided 95% quantiles of Student's t for 1..30 degrees of freedom.
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def t_critical(df: int) -> float:
    """``t_{0.975, df}``: the two-sided 95% quantile of Student's t with ``df`` degrees of freedom.

    Tabulated up to 30; beyond, the Cornish-Fisher expansion around the normal quantile
    (error below 1e-3).
    """
    if isinstance(df, bool) or not isinstance(df, int) or df < 1:
        raise ValueError(f"degrees of freedom must be a positive integer, got {df!r}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def records_frame(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per run record: ``label``, ``preset``, ``data`` (class mix), ``seed``, the
    :data:`METRICS` columns, ``train minutes``, ``iterations`` and ``device``."""
    rows = []
    for r in records:
        row = {
            "label": r["label"],
            "preset": r["preset"],
            "data": r["data"]["mix"],
            "seed": r["seed"],
            "train minutes": r["train_seconds"] / 60,
            "iterations": r["iterations"],
            "device": r["device_name"],
        }
        for column, (kind, key) in METRICS.items():
            value = r["metrics"][kind].get(key)
            row[column] = np.nan if value is None else float(value)
        rows.append(row)
    columns = ["label", "preset", "data", "seed", *METRICS, "train minutes", "iterations", "device"]
    return pd.DataFrame(rows, columns=columns)


def format_mean_std(values: Iterable[float | None], decimals: int = 1) -> str:
    """``"mean ± std"`` (sample std) of the values that are not None/NaN; one value alone
    (a single seed has no spread to state, so no ``± 0.0``); ``"n/a"`` when none is left."""
    series = pd.Series(list(values), dtype=float).dropna()
    if series.empty:
        return "n/a"
    if len(series) == 1:
        return f"{series.iloc[0]:.{decimals}f}"
    return f"{series.mean():.{decimals}f} ± {series.std(ddof=1):.{decimals}f}"


def summary_table(
    frame: pd.DataFrame,
    metrics: Sequence[str] = tuple(METRICS),
    order: Sequence[str] | None = None,
    decimals: int = 1,
) -> pd.DataFrame:
    """``mean ± std`` over seeds of each metric, one row per (data, label), plus the seed count.

    ``order`` fixes the order of the labels (others follow, sorted). A metric that is NaN
    for every seed (e.g. APl without large objects) shows ``n/a``; a metric with one seed
    shows its value alone (a single run has no spread to state).
    """
    if frame.empty:
        raise ValueError("no records to summarise")
    labels = list(order or [])
    labels += sorted(set(frame["label"]) - set(labels))
    out = []
    for data, group in frame.groupby("data", sort=True):
        for label in labels:
            runs = group[group["label"] == label]
            if runs.empty:
                continue
            row: dict[str, Any] = {"data": data, "assigner": label, "seeds": len(runs)}
            for metric in metrics:
                row[metric] = format_mean_std(runs[metric], decimals)
            out.append(row)
    return pd.DataFrame(out)


def paired_differences(
    frame: pd.DataFrame, treatment: str, metric: str = "mask AP", higher_is_better: bool = True
) -> pd.DataFrame:
    """``treatment`` minus every other label, paired by seed, per dataset.

    Returns one row per (data, baseline): ``pairs``, ``mean``, ``std``, ``ci low``, ``ci high``
    (95%, Student's t; NaN with a single pair) and ``better`` (the share of seeds where the
    treatment wins). With ``higher_is_better=False`` (oLRP) the sign stays treatment − baseline,
    and ``better`` counts seeds where it is lower.
    """
    rows = []
    for data, group in frame.groupby("data", sort=True):
        mine = group[group["label"] == treatment].set_index("seed")[metric]
        if mine.empty:
            continue
        for baseline in group["label"].unique():
            if baseline == treatment:
                continue
            theirs = group[group["label"] == baseline].set_index("seed")[metric]
            diff = (mine - theirs).dropna()
            n = len(diff)
            if n == 0:
                continue
            mean = float(diff.mean())
            std = float(diff.std(ddof=1)) if n > 1 else math.nan
            half = t_critical(n - 1) * std / math.sqrt(n) if n > 1 else math.nan
            wins = (diff > 0) if higher_is_better else (diff < 0)
            rows.append(
                {
                    "data": data,
                    "comparison": f"{treatment} − {baseline}",
                    "baseline": baseline,
                    "metric": metric,
                    "pairs": n,
                    "mean": mean,
                    "std": std,
                    "ci low": mean - half,
                    "ci high": mean + half,
                    "better": float(wins.mean()),
                }
            )
    return pd.DataFrame(rows)


def describe_difference(row: Mapping[str, Any], claim: tuple[float, float] | None = None) -> str:
    """One plain sentence on a :func:`paired_differences` row, against the paper's claimed range.

    Says whether the 95% interval excludes zero (a gain or a loss at this confidence) or not,
    and, given ``claim = (low, high)``, whether the interval lies below, overlaps or lies
    above the claimed range.
    """
    mean, low, high = row["mean"], row["ci low"], row["ci high"]
    text = (
        f"{row['comparison']} on the {row['data']} set: {mean:+.2f} {row['metric']} "
        f"(95% CI {low:+.2f} to {high:+.2f}, {row['pairs']} paired seeds)"
    )
    if math.isnan(low):
        return text + "; one seed gives no interval."
    if low > 0:
        text += "; a gain at 95% confidence"
    elif high < 0:
        text += "; a loss at 95% confidence"
    else:
        text += "; not distinguishable from zero"
    if claim is not None:
        c_low, c_high = claim
        if high < c_low:
            text += f", and smaller than the paper's claimed {c_low:+.1f} to {c_high:+.1f}"
        elif low > c_high:
            text += f", and larger than the paper's claimed {c_low:+.1f} to {c_high:+.1f}"
        else:
            text += f", and compatible with the paper's claimed {c_low:+.1f} to {c_high:+.1f}"
    return text + "."
