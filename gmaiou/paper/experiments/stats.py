"""Statistics of experiment records: mean ± std tables, paired differences with confidence
intervals, Student's t distribution, and where each run was trained.

Runs with the same seed share their initialisation (backbone and FPN), sample order and
augmentation draws (:mod:`gmaiou.paper.experiments.runner`), so assigners are compared seed by
seed: the difference ``d_s = metric(A, s) - metric(B, s)`` has far less noise than the
difference of two means. Its 95% confidence interval is Student's t interval over the
seeds, ``mean(d) ± t_{0.975, n-1} · std(d) / sqrt(n)``.

Student's t distribution function is computed here (no SciPy) from the regularized incomplete
beta function, ``P(|T| > t) = I_{df / (df + t^2)}(df / 2, 1 / 2)``, evaluated by its continued
fraction with Lentz's method; its quantiles (:func:`t_quantile`, :func:`t_critical`) invert it
by bisection to about 1e-12, so an interval's bounds are exact to the digits they are shown with.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from gmaiou.paper.experiments.records import DIRTY_REASON, GridRecords, is_dirty

__all__ = [
    "METRICS",
    "describe_difference",
    "dirty_note",
    "format_mean_std",
    "no_clean_record",
    "paired_differences",
    "records_frame",
    "regularized_beta",
    "summary_table",
    "t_cdf",
    "t_critical",
    "t_quantile",
    "t_two_sided_p",
    "training_provenance",
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

_TINY = 1e-300


def _beta_fraction(x: float, a: float, b: float, eps: float = 1e-15, most: int = 1000) -> float:
    """The continued fraction ``1 + d1 / (1 + d2 / (1 + ...))`` of ``I_x(a, b)``, by Lentz's method.

    ``d_{2m} = m (b - m) x / ((a + 2m - 1)(a + 2m))`` and
    ``d_{2m+1} = -(a + m)(a + b + m) x / ((a + 2m)(a + 2m + 1))``.
    """
    value, c, d = 1.0, 1.0, 0.0
    for j in range(1, 2 * most + 1):
        m = j // 2
        if j % 2:
            term = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        else:
            term = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        d = 1.0 + term * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + term / c
        c = c if abs(c) > _TINY else _TINY
        step = c * d
        value *= step
        if abs(step - 1.0) < eps:
            return value
    raise ArithmeticError(f"the incomplete beta fraction did not converge for x={x}, a={a}, b={b}")


def regularized_beta(x: float, a: float, b: float) -> float:
    """The regularized incomplete beta function ``I_x(a, b)`` for ``0 <= x <= 1``, ``a, b > 0``."""
    if not (a > 0 and b > 0):
        raise ValueError(f"a and b must be > 0, got a={a!r}, b={b!r}")
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"x must lie in [0, 1], got {x!r}")
    if x in (0.0, 1.0):
        return x
    if x > (a + 1) / (a + b + 2):  # the fraction converges fast below this point
        return 1.0 - regularized_beta(1.0 - x, b, a)
    log_front = (
        a * math.log(x)
        + b * math.log1p(-x)
        - math.log(a)
        - (math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b))
    )
    return math.exp(log_front) / _beta_fraction(x, a, b)


def t_two_sided_p(t: float, df: float) -> float:
    """``P(|T| >= |t|)`` for Student's ``T`` with ``df`` degrees of freedom."""
    if not df > 0:
        raise ValueError(f"degrees of freedom must be > 0, got {df!r}")
    if math.isnan(t):
        return math.nan
    if math.isinf(t):
        return 0.0
    return regularized_beta(df / (df + t * t), df / 2, 0.5)


def t_cdf(t: float, df: float) -> float:
    """``P(T <= t)`` for Student's ``T`` with ``df`` degrees of freedom."""
    tail = 0.5 * t_two_sided_p(t, df)
    return 1.0 - tail if t > 0 else tail


def t_quantile(alpha: float, df: float) -> float:
    """The two-sided quantile of Student's t: the ``t >= 0`` with ``P(|T| >= t) = alpha``.

    ``t_quantile(0.05, df)`` is ``t_{0.975, df}``; a smaller ``alpha`` (a Holm step's level)
    gives a wider interval. Found by bisection on :func:`t_two_sided_p`.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha!r}")
    if not df > 0:
        raise ValueError(f"degrees of freedom must be > 0, got {df!r}")
    return _t_quantile(float(alpha), float(df))


@lru_cache(maxsize=1024)
def _t_quantile(alpha: float, df: float) -> float:
    low, high = 0.0, 2.0
    while t_two_sided_p(high, df) > alpha:
        low, high = high, 2.0 * high
    for _ in range(200):
        mid = 0.5 * (low + high)
        if t_two_sided_p(mid, df) > alpha:
            low = mid
        else:
            high = mid
        if high - low <= 1e-13 * high:
            break
    return 0.5 * (low + high)


def t_critical(df: int) -> float:
    """``t_{0.975, df}``: the two-sided 95% quantile of Student's t with ``df`` degrees of freedom
    (:func:`t_quantile` at 0.05; e.g. 12.7062 for one degree of freedom, 4.3027 for two)."""
    if isinstance(df, bool) or not isinstance(df, int) or df < 1:
        raise ValueError(f"degrees of freedom must be a positive integer, got {df!r}")
    return t_quantile(0.05, df)


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


def _p_text(p: float) -> str:
    return "n/a" if math.isnan(p) else (f"{p:.2g}" if p < 0.001 else f"{p:.3f}")


def _adjusted(row: Mapping[str, Any]) -> bool:
    """Whether ``row`` carries a Holm adjustment (:func:`~gmaiou.paper.experiments.primary.holm_table`)."""
    value = row.get("p holm") if hasattr(row, "get") else None
    return value is not None and not math.isnan(float(value))


def describe_difference(
    row: Mapping[str, Any], claim: tuple[float, float] | None = None, alpha: float = 0.05
) -> str:
    """One plain sentence on a :func:`paired_differences` row, against the paper's claimed range.

    With Holm's columns (``p holm``, ``family size``, ``holm low``, ``holm high`` of
    :func:`~gmaiou.paper.experiments.primary.holm_table`) the sentence gives the raw 95% interval,
    the Holm-widened one and the adjusted p-value; the verdict is a gain or a loss only when the
    adjusted p is at most ``alpha``, and the claimed range ``(low, high)`` is compared with the
    adjusted interval. Without them, the verdict and the comparison read the raw 95% interval.
    """
    mean, low, high = row["mean"], row["ci low"], row["ci high"]
    text = f"{row['comparison']} on the {row['data']} set: {mean:+.2f} {row['metric']} "
    if math.isnan(low):
        return text + f"({row['pairs']} paired seed); one seed gives no interval."
    if _adjusted(row):
        p_holm = float(row["p holm"])
        low, high = float(row["holm low"]), float(row["holm high"])
        text += (
            f"(95% CI {row['ci low']:+.2f} to {row['ci high']:+.2f}; Holm-adjusted over the "
            f"{int(row['family size'])} {row['metric']} comparisons: CI {low:+.2f} to {high:+.2f}, "
            f"p = {_p_text(p_holm)}; {row['pairs']} paired seeds)"
        )
        if p_holm <= alpha:
            text += "; a gain" if mean > 0 else "; a loss"
            text += " after Holm's adjustment"
        else:
            text += "; not distinguishable from zero after Holm's adjustment"
        scope = " (adjusted interval)"
    else:
        text += f"(95% CI {low:+.2f} to {high:+.2f}, {row['pairs']} paired seeds)"
        if low > 0:
            text += "; a gain at 95% confidence"
        elif high < 0:
            text += "; a loss at 95% confidence"
        else:
            text += "; not distinguishable from zero"
        scope = ""
    if claim is not None:
        c_low, c_high = claim
        if high < c_low:
            text += f", and smaller than the paper's claimed {c_low:+.1f} to {c_high:+.1f}"
        elif low > c_high:
            text += f", and larger than the paper's claimed {c_low:+.1f} to {c_high:+.1f}"
        else:
            text += f", and compatible with the paper's claimed {c_low:+.1f} to {c_high:+.1f}"
        text += scope
    return text + "."


_THREADS_SUFFIX = re.compile(r"\s*\(\d+ threads?\)$")


def _device_of(record: Mapping[str, Any]) -> str:
    """The record's device name without the ``(N threads)`` that CPU names carry."""
    name = str(record.get("device_name") or record.get("device") or "an unrecorded device")
    return _THREADS_SUFFIX.sub("", name)


def _threads_of(record: Mapping[str, Any]) -> str:
    threads = record.get("torch_threads")
    if threads is None:
        return "an unrecorded number of torch threads"
    return f"{threads} torch thread" + ("" if threads == 1 else "s")


def _commit_of(record: Mapping[str, Any]) -> str:
    """The record's commit, abbreviated to 7 characters (``-dirty`` dropped; dirtiness is
    counted apart), or ``unrecorded``."""
    commit = str(record.get("commit") or "")
    commit = commit.removesuffix("-dirty")
    return commit[:7] if commit else "unrecorded"


def _commits_text(records: Sequence[Mapping[str, Any]], with_mix: bool) -> str:
    """The footer's words on the commits the runs were trained at: ``all at commit abc1234``,
    or how many commits with the seeds whose runs (the pairs compared) straddle two."""
    commits = sorted({_commit_of(r) for r in records})
    if len(commits) == 1:
        return f"all at commit {commits[0]}" if len(records) > 1 else f"at commit {commits[0]}"
    by_seed: dict[tuple[str, int], set[str]] = {}
    for r in records:
        by_seed.setdefault((_mix_of(r), int(r["seed"])), set()).add(_commit_of(r))
    split = sorted(key for key, found in by_seed.items() if len(found) > 1)
    text = f"trained at {len(commits)} commits ({', '.join(commits)})"
    if not split:
        return text + "; the runs of each seed (the pairs compared) share one commit"
    return (
        text
        + "; seeds whose runs (the pairs compared) straddle commits: "
        + ", ".join(f"{mix} seed {seed}" if with_mix else f"seed {seed}" for mix, seed in split)
    )


def _seeds_text(seeds: Iterable[int]) -> str:
    """``seed 2``, ``seeds 3, 4``, ``seeds 0-2`` or ``seeds 0-2, 5``."""
    values = sorted(set(seeds))
    parts, start = [], 0
    for i in range(1, len(values) + 1):
        if i == len(values) or values[i] != values[i - 1] + 1:
            run = values[start:i]
            parts += [f"{run[0]}-{run[-1]}"] if len(run) > 2 else [str(v) for v in run]
            start = i
    return ("seed " if len(values) == 1 else "seeds ") + ", ".join(parts)


def _mix_of(record: Mapping[str, Any]) -> str:
    data = record.get("data")
    return str(data.get("mix", "")) if isinstance(data, Mapping) else ""


def _name_runs(records: Sequence[Mapping[str, Any]], order: Sequence[str], with_mix: bool) -> str:
    """The runs by label, labels with the same seeds together: ``A, B: coco seed 2, uniform seeds 3, 4``."""
    by_label: dict[str, dict[str, set[int]]] = {}
    for r in records:
        by_label.setdefault(str(r["label"]), {}).setdefault(_mix_of(r), set()).add(int(r["seed"]))

    def rank(label: str) -> tuple[int, str]:
        return (order.index(label) if label in order else len(order), label)

    described: dict[str, list[str]] = {}
    for label in sorted(by_label, key=rank):
        mixes = by_label[label]
        text = ", ".join(
            (f"{mix} " if with_mix and mix else "") + _seeds_text(seeds)
            for mix, seeds in sorted(mixes.items())
        )
        described.setdefault(text, []).append(label)
    return "; ".join(f"{', '.join(labels)}: {text}" for text, labels in described.items())


def dirty_note(grid: GridRecords, order: Sequence[str] = ()) -> str:
    """The footer's words on the dirty records a table left out of ``grid`` (``""`` if none):
    ``2 dirty records of grid table2 left out (trained from a checkout with uncommitted
    changes): ATSS DIoU, ATSS maIoU (P=B): uniform seed 0``; runs named as by
    :func:`training_provenance` (``order``: the labels' order)."""
    dirty = grid.left_out
    if not dirty:
        return ""
    n = len(dirty)
    of = f" of grid {grid.grid}" if grid.grid else ""
    names = _name_runs(dirty, list(order), with_mix=True)
    return f"{n} dirty record{'s' if n != 1 else ''}{of} left out ({DIRTY_REASON}): {names}"


def no_clean_record(grid: GridRecords, order: Sequence[str] = ()) -> tuple[list[str], str]:
    """Sentences and a headline for a table whose grid has no record to use, e.g. for a grid
    whose one record is dirty: ``["No clean record of grid curve yet: 1 dirty record of grid
    curve left out (trained from a checkout with uncommitted changes): ATSS IoU: uniform seed
    0.", "Retrain them with: gmaiou-paper experiment --grid curve --profile default
    --redo-dirty (from a clean checkout)."]`` and ``No clean record of grid curve yet (1 dirty
    record left out, to retrain)``; without dirty records ``No record of grid curve yet``.

    Returns ``(lines, headline)``, each line one sentence.
    """
    of = f" of grid {grid.grid}" if grid.grid else ""
    if not grid.left_out:
        return [f"No record{of} yet."], f"No record{of} yet"
    n = len(grid.left_out)
    lines = [f"No clean record{of} yet: {dirty_note(grid, order)}."]
    if grid.grid:
        profile = grid.left_out[0].get("profile")
        lines.append(
            f"Retrain them with: gmaiou-paper experiment --grid {grid.grid}"
            + (f" --profile {profile}" if profile else "")
            + " --redo-dirty (from a clean checkout)."
        )
    headline = (
        f"No clean record{of} yet ({n} dirty record{'s' if n != 1 else ''} left out, to retrain)"
    )
    return lines, headline


def training_provenance(
    records: Sequence[Mapping[str, Any]],
    order: Sequence[str] = (),
    left_out: Sequence[GridRecords] = (),
) -> str:
    """Where a table's runs were trained, for its footer: device and torch threads per group
    of runs, whether the table mixes devices or thread counts, the runs trained from a
    checkout with uncommitted changes (:func:`~gmaiou.paper.experiments.records.is_dirty`), and
    the dirty records left out of each grid of ``left_out`` (:func:`dirty_note`), and the
    commits the runs were trained at, naming the seeds whose runs straddle two (a pair at two
    commits compares code versions too).

    The largest group is counted; every other group names its runs by label, class mix (when
    the records span several) and seeds. ``order``: the labels' order in those names (others
    follow, sorted). E.g. ``8 runs on CPU X with 2 torch threads (ATSS IoU: coco seed 2), the
    other 23 on CPU X with 1 torch thread; this table mixes thread counts (1, 2); ...; trained
    at 2 commits (0af8ee0, 3002dd6); seeds whose runs (the pairs compared) straddle commits:
    coco seed 2; 0 of 31 runs dirty (trained from a checkout with uncommitted changes)``.
    """
    notes = [note for grid in left_out if (note := dirty_note(grid, order))]
    if not records:
        return "; ".join(["no runs", *notes])
    order = list(order)
    with_mix = len({_mix_of(r) for r in records}) > 1
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for r in records:
        groups.setdefault((_device_of(r), _threads_of(r)), []).append(r)
    ranked = sorted(groups.items(), key=lambda kv: -len(kv[1]))
    n = len(records)
    if len(ranked) == 1:
        (device, threads), _ = ranked[0]
        text = f"{'the run' if n == 1 else f'all {n} runs'} trained on {device} with {threads}"
    else:
        parts = [
            f"{len(runs)} run{'s' if len(runs) > 1 else ''} on {device} with {threads} "
            f"({_name_runs(runs, order, with_mix)})"
            for (device, threads), runs in ranked[1:]
        ]
        (device, threads), runs = ranked[0]
        text = (
            "trained: " + ", ".join(parts) + f", the other {len(runs)} on {device} with {threads}"
        )
        devices = sorted({d for d, _ in groups})
        thread_counts = sorted({str(r.get("torch_threads")) for r in records})
        mixed = [
            f"devices ({', '.join(devices)})" if len(devices) > 1 else "",
            f"thread counts ({', '.join(thread_counts)})" if len(thread_counts) > 1 else "",
        ]
        text += "; this table mixes " + " and ".join(m for m in mixed if m)
        settings: dict[tuple[str, int], set[tuple[str, str]]] = {}
        for r in records:
            key = (_mix_of(r), int(r["seed"]))
            settings.setdefault(key, set()).add((_device_of(r), _threads_of(r)))
        split = sorted(key for key, found in settings.items() if len(found) > 1)
        text += (
            "; the runs of each seed (the pairs compared) share one device and thread count"
            if not split
            else "; seeds whose runs (the pairs compared) differ in them: "
            + ", ".join(f"{mix} seed {seed}" if with_mix else f"seed {seed}" for mix, seed in split)
        )
    text += "; " + _commits_text(records, with_mix)
    dirty = [r for r in records if is_dirty(r)]
    text += f"; {len(dirty)} of {n} runs dirty ({DIRTY_REASON})"
    if dirty:
        text += f": {_name_runs(dirty, order, with_mix)}"
    return "; ".join([text, *notes])
