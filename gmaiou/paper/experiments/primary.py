"""The pre-registered primary test of the paper's main claim and the MOB-share dose-response,
from the records of the ``primary`` and ``mob-share`` grids (:mod:`gmaiou.paper.experiments.grids`).

* :func:`primary_test`: ATSS GmaIoU (P = M) minus ATSS IoU, mask AP on the held-out test split,
  paired by (class mix, data seed, seed): the mean, its 95% t interval, the two-sided paired
  t-test's p-value, and whether the paper's +1.0 to +1.5 lies inside the interval.
* :func:`mob_share_slope`: the paired gain against the realised share of boxes with MOB < 0.5,
  a least-squares line over the pairs with the slope's 95% t interval (``n - 2`` degrees of
  freedom), and each level's mean gain with its interval.
* :func:`holm_table`: for a :func:`~gmaiou.paper.experiments.stats.paired_differences` frame,
  the paired t-test's p-values, Holm's adjusted p-values per family of comparisons and the
  intervals widened to each comparison's Holm level (Tables 2 and 3 use it).
* :func:`write_primary_test`, :func:`write_mob_share_gain`: ``primary_test`` and
  ``mob_share_gain`` as Markdown tables, PNG/PDF figures and findings files.

Student's t distribution (no SciPy) is :mod:`gmaiou.paper.experiments.stats`'s:
:func:`~gmaiou.paper.experiments.stats.t_cdf`, :func:`~gmaiou.paper.experiments.stats.t_two_sided_p`
and the quantiles :func:`~gmaiou.paper.experiments.stats.t_quantile` (re-exported here).
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gmaiou.paper.experiments.grids import ASSIGNER_LABELS, PLANNING_SD, PRIMARY_ASSIGNERS
from gmaiou.paper.experiments.power import holm_adjust, paired_power
from gmaiou.paper.experiments.stats import (
    METRICS,
    regularized_beta,
    t_cdf,
    t_critical,
    t_quantile,
    t_two_sided_p,
    training_provenance,
)

__all__ = [
    "BASELINE",
    "CLAIM",
    "TREATMENT",
    "holm_table",
    "mob_share_findings",
    "mob_share_headline",
    "mob_share_slope",
    "paired_gains",
    "plot_mob_share_gain",
    "plot_primary_test",
    "primary_findings",
    "primary_headline",
    "primary_table",
    "primary_test",
    "realised_shares",
    "regularized_beta",
    "t_cdf",
    "t_quantile",
    "t_two_sided_p",
    "write_mob_share_gain",
    "write_primary_test",
]

BASELINE = ASSIGNER_LABELS[PRIMARY_ASSIGNERS[0]]
TREATMENT = ASSIGNER_LABELS[PRIMARY_ASSIGNERS[1]]
#: The paper's claimed mask AP gain of ATSS GmaIoU (P = M) over ATSS IoU (``docs/spec.md`` section 5).
CLAIM: tuple[float, float] = (1.0, 1.5)


# ----------------------------------------------------------------------------- pairs


def _metric(record: Mapping[str, Any], metric: str) -> float:
    kind, key = METRICS[metric]
    value = record["metrics"][kind].get(key)
    return math.nan if value is None else float(value)


def paired_gains(records: Sequence[Mapping[str, Any]], metric: str = "mask AP") -> pd.DataFrame:
    """ATSS GmaIoU (P = M) minus ATSS IoU per pair: records paired by (class mix, data seed, seed).

    Returns one row per complete pair, sorted: ``mix``, ``data seed``, ``seed``, ``baseline``,
    ``treatment`` (the two values) and ``gain``. Records of other assigners are ignored.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    values: dict[tuple[str, int, int], dict[str, float]] = {}
    for r in records:
        if r["label"] not in (BASELINE, TREATMENT):
            continue
        data = r["data"]
        key = (str(data["mix"]), int(data.get("seed", r.get("data_seed", 0))), int(r["seed"]))
        side = "treatment" if r["label"] == TREATMENT else "baseline"
        if side in values.setdefault(key, {}):
            raise ValueError(f"two {r['label']} records for mix, data seed and seed {key}")
        values[key][side] = _metric(r, metric)
    rows = [
        {"mix": k[0], "data seed": k[1], "seed": k[2], **v, "gain": v["treatment"] - v["baseline"]}
        for k, v in sorted(values.items())
        if len(v) == 2 and not math.isnan(v["treatment"] - v["baseline"])
    ]
    columns = ["mix", "data seed", "seed", "baseline", "treatment", "gain"]
    return pd.DataFrame(rows, columns=columns)


def _t_summary(gains: np.ndarray) -> dict[str, float]:
    """Mean, sd, 95% t interval, t statistic and two-sided p-value of paired gains (n >= 2)."""
    n = len(gains)
    mean = float(gains.mean())
    sd = float(gains.std(ddof=1))
    se = sd / math.sqrt(n)
    half = t_critical(n - 1) * se
    if se > 0:
        t = mean / se
    else:
        t = math.copysign(math.inf, mean) if mean else math.nan
    p = t_two_sided_p(t, n - 1) if not math.isnan(t) else 1.0
    return {"mean": mean, "sd": sd, "ci_low": mean - half, "ci_high": mean + half, "t": t, "p": p}


def primary_test(
    records: Sequence[Mapping[str, Any]],
    metric: str = "mask AP",
    mix: str | None = None,
    claim: tuple[float, float] = CLAIM,
) -> dict[str, Any]:
    """The primary test: the paired t-test of ATSS GmaIoU (P = M) − ATSS IoU.

    Args:
        records: run records of the ``primary`` grid (other assigners are ignored).
        metric: a column of :data:`~gmaiou.paper.experiments.stats.METRICS`.
        mix: only this class mix (``None``: every pair of every mix, pooled).
        claim: the paper's claimed gain ``(low, high)``.

    Returns:
        ``pairs``, ``mixes``, ``metric``, ``mean``, ``sd``, ``ci_low``, ``ci_high`` (95%, t with
        ``pairs - 1`` degrees of freedom), ``df``, ``t``, ``p`` (two-sided), ``claim``,
        ``claim_inside`` (the whole claimed range lies inside the interval) and
        ``claim_overlaps`` (some of it does).

    Raises:
        ValueError: fewer than two complete pairs.
    """
    gains = paired_gains(records, metric)
    if mix is not None:
        gains = gains[gains["mix"] == mix]
    n = len(gains)
    if n < 2:
        raise ValueError(f"the paired t-test needs at least 2 complete pairs, got {n}")
    summary = _t_summary(gains["gain"].to_numpy(dtype=np.float64))
    low, high = claim
    return {
        "pairs": n,
        "mixes": sorted(set(gains["mix"])),
        "metric": metric,
        **summary,
        "df": n - 1,
        "claim": (float(low), float(high)),
        "claim_inside": bool(summary["ci_low"] <= low and high <= summary["ci_high"]),
        "claim_overlaps": bool(summary["ci_low"] <= high and low <= summary["ci_high"]),
    }


# ----------------------------------------------------------------------------- dose-response


def _share_of(shares: Mapping[Any, float], mix: str, data_seed: int) -> float:
    if (mix, data_seed) in shares:
        return float(shares[(mix, data_seed)])
    if mix in shares:
        return float(shares[mix])
    raise KeyError(f"no realised share for class mix {mix!r}, data seed {data_seed}")


def mob_share_slope(
    records: Sequence[Mapping[str, Any]],
    shares: Mapping[Any, float],
    metric: str = "mask AP",
) -> dict[str, Any]:
    """The paired gain against the realised share of boxes with MOB < 0.5: a least-squares line.

    Args:
        records: run records of the ``mob-share`` grid.
        shares: the realised share of each set, keyed by ``(mix, data seed)`` or by ``mix``
            (:func:`realised_shares`).
        metric: a column of :data:`~gmaiou.paper.experiments.stats.METRICS`.

    Returns:
        ``pairs``, ``slope`` (gain per unit share: per 100 percentage points), ``intercept``,
        ``se``, ``ci_low``, ``ci_high`` (95%, t with ``pairs - 2`` degrees of freedom), ``df``,
        ``t``, ``p`` (two-sided, slope zero), ``gains`` (:func:`paired_gains` with ``share``) and
        ``levels``: per mix ``mix``, ``share`` (mean realised), ``pairs``, ``mean``, ``sd``,
        ``ci low``, ``ci high`` (95% t; NaN with one pair), by share.

    Raises:
        ValueError: fewer than three pairs, or one share only.
    """
    gains = paired_gains(records, metric)
    gains["share"] = [
        _share_of(shares, m, s) for m, s in zip(gains["mix"], gains["data seed"], strict=True)
    ]
    n = len(gains)
    if n < 3:
        raise ValueError(f"a line with an interval needs at least 3 complete pairs, got {n}")
    x = gains["share"].to_numpy(dtype=np.float64)
    y = gains["gain"].to_numpy(dtype=np.float64)
    sxx = float(((x - x.mean()) ** 2).sum())
    if sxx <= 0:
        raise ValueError("every pair has the same realised share: no slope to fit")
    slope = float(((x - x.mean()) * (y - y.mean())).sum() / sxx)
    intercept = float(y.mean() - slope * x.mean())
    residual = y - (intercept + slope * x)
    df = n - 2
    se = math.sqrt(float((residual**2).sum()) / df / sxx)
    half = t_critical(df) * se
    t = slope / se if se > 0 else (math.copysign(math.inf, slope) if slope else math.nan)
    levels = []
    for mix, group in gains.groupby("mix", sort=False):
        values = group["gain"].to_numpy(dtype=np.float64)
        k = len(values)
        mean = float(values.mean())
        sd = float(values.std(ddof=1)) if k > 1 else math.nan
        level_half = t_critical(k - 1) * sd / math.sqrt(k) if k > 1 else math.nan
        levels.append(
            {
                "mix": mix,
                "share": float(group["share"].mean()),
                "pairs": k,
                "mean": mean,
                "sd": sd,
                "ci low": mean - level_half,
                "ci high": mean + level_half,
            }
        )
    level_frame = pd.DataFrame(levels).sort_values("share", kind="stable").reset_index(drop=True)
    return {
        "pairs": n,
        "metric": metric,
        "slope": slope,
        "intercept": intercept,
        "se": se,
        "ci_low": slope - half,
        "ci_high": slope + half,
        "df": df,
        "t": t,
        "p": t_two_sided_p(t, df) if not math.isnan(t) else 1.0,
        "gains": gains,
        "levels": level_frame,
    }


def realised_shares(
    records: Sequence[Mapping[str, Any]],
    root: Path | None = None,
    split: str = "train",
    threshold: float = 0.5,
) -> dict[tuple[str, int], float]:
    """The share of GT boxes with MOB below ``threshold`` in ``split`` of each record's set.

    Keyed by ``(mix, data seed)``; the sets are generated under ``root`` (the repository root)
    where absent (:meth:`~gmaiou.paper.experiments.runner.SyntheticData.ensure`).
    """
    from gmaiou.data import CocoInstances
    from gmaiou.data.stats import dataset_statistics
    from gmaiou.paper.experiments.runner import spec_from_record
    from gmaiou.paper.paths import repo_root

    base = Path(root) if root is not None else repo_root()
    out: dict[tuple[str, int], float] = {}
    for record in records:
        data = spec_from_record(record).data
        key = (data.mix, data.seed)
        if key in out:
            continue
        dataset = CocoInstances.from_root(data.ensure(base), split)
        out[key] = float(dataset_statistics(dataset, threshold=threshold)["mob"]["share_below"])
    return out


# ----------------------------------------------------------------------------- Holm


def holm_table(
    diffs: pd.DataFrame, family: str | Sequence[str] = "metric", alpha: float = 0.05
) -> pd.DataFrame:
    """``diffs`` (:func:`~gmaiou.paper.experiments.stats.paired_differences` rows) with the
    paired t-test and Holm's step-down adjustment within each family of comparisons.

    A family is the rows sharing the ``family`` column(s) (default: one family per metric).
    Added columns:

    * ``t``, ``p``: the paired t statistic ``mean / (std / sqrt(pairs))`` and its two-sided
      p-value (``pairs - 1`` degrees of freedom);
    * ``p holm``: Holm's adjusted p-value (:func:`~gmaiou.paper.experiments.power.holm_adjust`);
      the family's comparisons with ``p holm <= alpha`` are those Holm's procedure rejects;
    * ``family size``: the ``m`` comparisons of the row's family;
    * ``holm level``: the Bonferroni-Holm step's level for the row, ``alpha / (m - rank + 1)``
      with ``rank`` its place (1 = smallest p) among the family's p-values;
    * ``holm low``, ``holm high``: the t interval at that level,
      ``mean ± t_quantile(holm level, pairs - 1) · std / sqrt(pairs)``, wider than the raw
      ``1 - alpha`` interval except for the family's largest p-value.

    The adjusted interval is the step's own: where Holm's procedure stopped at an earlier
    (smaller) p-value, a later comparison is not rejected (its ``p holm`` exceeds ``alpha``)
    although its interval may exclude zero. ``p holm <= alpha`` always implies that its interval
    excludes zero; a verdict reads ``p holm``. Rows with fewer than two pairs get NaN and are
    left out of their family.
    """
    out = diffs.copy()
    t_values, p_values = [], []
    for _, row in out.iterrows():
        n, mean, std = int(row["pairs"]), float(row["mean"]), float(row["std"])
        if n < 2 or math.isnan(std):
            t_values.append(math.nan)
            p_values.append(math.nan)
            continue
        se = std / math.sqrt(n)
        if se > 0:
            t_values.append(mean / se)
            p_values.append(t_two_sided_p(mean / se, n - 1))
        else:
            t_values.append(math.copysign(math.inf, mean) if mean else math.nan)
            p_values.append(0.0 if mean else 1.0)
    out["t"] = t_values
    out["p"] = p_values
    for column in ("p holm", "family size", "holm level", "holm low", "holm high"):
        out[column] = math.nan
    keys = [family] if isinstance(family, str) else list(family)
    if out.empty:
        return out
    for _, group in out.groupby(keys, sort=False):
        valid = group["p"].dropna()
        if valid.empty:
            continue
        m = len(valid)
        out.loc[valid.index, "p holm"] = holm_adjust(valid.tolist())
        out.loc[valid.index, "family size"] = m
        # The same order as holm_adjust: by p, ties in the frame's order.
        for rank, index in enumerate(sorted(valid.index, key=lambda i: valid[i])):
            level = alpha / (m - rank)
            n = int(out.at[index, "pairs"])
            mean = float(out.at[index, "mean"])
            half = t_quantile(level, n - 1) * float(out.at[index, "std"]) / math.sqrt(n)
            out.at[index, "holm level"] = level
            out.at[index, "holm low"] = mean - half
            out.at[index, "holm high"] = mean + half
    return out


# ----------------------------------------------------------------------------- writers


def _interval(low: float, high: float) -> str:
    return f"{low:+.2f} to {high:+.2f}"


def _p_text(p: float) -> str:
    return "n/a" if math.isnan(p) else (f"{p:.2g}" if p < 0.001 else f"{p:.3f}")


def primary_table(records: Sequence[Mapping[str, Any]], metric: str = "mask AP") -> pd.DataFrame:
    """The pooled primary test, then each mix alone (Holm-adjusted over the mixes).

    Columns: ``set``, ``pairs``, ``mean``, ``sd``, ``ci low``, ``ci high``, ``t``, ``p``,
    ``p holm`` (NaN for the pooled test, which is the one pre-registered test).
    """
    rows = [{"set": "all (pooled)", **primary_test(records, metric)}]
    gains = paired_gains(records, metric)
    for mix in sorted(set(gains["mix"])):
        if (gains["mix"] == mix).sum() >= 2:
            rows.append({"set": mix, **primary_test(records, metric, mix=mix)})
    frame = pd.DataFrame(rows).rename(columns={"ci_low": "ci low", "ci_high": "ci high"})
    frame["p holm"] = math.nan
    if len(frame) > 1:
        frame.loc[frame.index[1:], "p holm"] = holm_adjust(frame["p"].iloc[1:].tolist())
    return frame[["set", "pairs", "mean", "sd", "ci low", "ci high", "t", "p", "p holm"]]


def _primary_verdict(result: Mapping[str, Any]) -> tuple[str, str]:
    """The verdict on the interval and where the paper's claimed range lies against it."""
    low, high = result["claim"]
    if result["ci_low"] > 0:
        verdict = "a gain at 95% confidence"
    elif result["ci_high"] < 0:
        verdict = "a loss at 95% confidence"
    else:
        verdict = "not distinguishable from zero at 95% confidence"
    if result["claim_inside"]:
        claim = f"the paper's {low:+.1f} to {high:+.1f} lies inside the interval"
    elif result["claim_overlaps"]:
        claim = f"the paper's {low:+.1f} to {high:+.1f} lies partly inside the interval"
    elif result["ci_high"] < low:
        claim = f"the interval lies below the paper's {low:+.1f} to {high:+.1f}"
    else:
        claim = f"the interval lies above the paper's {low:+.1f} to {high:+.1f}"
    return verdict, claim


def primary_headline(result: Mapping[str, Any]) -> str:
    """:func:`primary_test`'s result in one sentence (the findings' headline)."""
    verdict, claim = _primary_verdict(result)
    return (
        f"{result['mean']:+.2f} {result['metric']} (95% CI "
        f"{_interval(result['ci_low'], result['ci_high'])}, {result['pairs']} pairs): "
        f"{verdict.removesuffix(' at 95% confidence')}; {claim}"
    )


def primary_findings(
    result: Mapping[str, Any], table: pd.DataFrame, planned: int | None
) -> list[str]:
    """Sentences on :func:`primary_test`'s result and the per-mix rows of :func:`primary_table`."""
    done = f"{result['pairs']} pairs" + (f" of the {planned} planned" if planned else "")
    verdict, claim = _primary_verdict(result)
    lines = [
        f"Primary test, {TREATMENT} − {BASELINE}, {result['metric']} on the held-out test split, "
        f"{done} over the {' and '.join(result['mixes'])} mixes: {result['mean']:+.2f} "
        f"(sd {result['sd']:.2f}; 95% CI {_interval(result['ci_low'], result['ci_high'])}), "
        f"paired t = {result['t']:.2f} with {result['df']} df, two-sided p = {_p_text(result['p'])}: "
        f"{verdict}; {claim}."
    ]
    if planned and result["pairs"] >= 2:
        low = result["claim"][0]
        power = paired_power(result["pairs"], low, result["sd"])
        lines.append(
            f"Size check (not part of the pre-registered analysis): the test was sized for a "
            f"paired-difference sd of at most {PLANNING_SD:.1f}; the observed sd is "
            f"{result['sd']:.2f}, at which {result['pairs']} pairs detect {low:+.1f} with "
            f"{power:.0%} power (two-sided 5%)."
        )
    for _, row in table.iloc[1:].iterrows():
        lines.append(
            f"{row['set']} mix alone ({row['pairs']} pairs): {row['mean']:+.2f} "
            f"(95% CI {_interval(row['ci low'], row['ci high'])}), p = {_p_text(row['p'])}, "
            f"Holm-adjusted over the {len(table) - 1} mixes p = {_p_text(row['p holm'])}."
        )
    return lines


def _planned(grid: str, profile: str) -> int | None:
    from gmaiou.paper.experiments.grids import get_grid

    try:
        return len(get_grid(grid, profile)) // len(PRIMARY_ASSIGNERS)
    except ValueError:
        return None


def plot_primary_test(records: Sequence[Mapping[str, Any]], metric: str = "mask AP"):
    """Per-pair gains by mix (dots), each set's mean with its 95% interval, the claim shaded."""
    import matplotlib.pyplot as plt

    gains = paired_gains(records, metric)
    table = primary_table(records, metric)
    sets = list(table["set"])
    fig, ax = plt.subplots(figsize=(1.6 + 1.5 * len(sets), 3.6))
    ax.axhspan(*CLAIM, color="tab:green", alpha=0.2, lw=0, label="paper's claimed gain")
    ax.axhline(0.0, color="k", lw=0.8)
    for i, (_, row) in enumerate(table.iterrows()):
        part = gains if i == 0 else gains[gains["mix"] == row["set"]]
        offsets = np.linspace(-0.15, 0.15, len(part)) if len(part) > 1 else np.zeros(1)
        ax.plot(
            i + offsets, part["gain"], "o", color="0.6", ms=4, label="one pair" if i == 0 else None
        )
        err = [[row["mean"] - row["ci low"]], [row["ci high"] - row["mean"]]]
        ax.errorbar(i + 0.3, row["mean"], yerr=err, fmt="s", color="tab:blue", capsize=4,
                    label="mean, 95% t-interval" if i == 0 else None)  # fmt: skip
    ax.set_xticks(range(len(sets)), sets)
    ax.set_ylabel(f"{metric}: {TREATMENT} − {BASELINE}", fontsize=9)
    ax.set_title("Primary test (held-out test split)", fontsize=10)
    ax.legend(loc="best", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def _source(records: Sequence[Mapping[str, Any]], grid: str, profile: str, pairs: int) -> str:
    """The footer's data: the grid's records, its pairs and where its runs were trained."""
    return (
        f"runs/{profile}/{grid}, {len(records)} run{'' if len(records) == 1 else 's'} "
        f"({pairs} complete pair{'' if pairs == 1 else 's'}), test split; "
        + training_provenance(records, [BASELINE, TREATMENT])
    )


#: Characters per line of a figure's footer (:func:`gmaiou.paper.figures.save_figure`).
FOOTER_WIDTH = 100


def write_primary_test(
    records: Sequence[Mapping[str, Any]],
    profile: str = "default",
    *,
    source: str | None = None,
    metric: str = "mask AP",
    all_planned: bool | None = None,
) -> list[Path]:
    """``primary_test.md``, ``.png``, ``.pdf`` and ``primary_test_findings.md`` in the profile's
    figures folder, from the ``primary`` grid's records.

    Without records nothing is written (``[]``). With ``all_planned`` (``None``: for the
    committed profiles, where the test is pre-registered: docs/results.md), the test is read
    only once every planned pair is recorded; before that, and always with fewer than two
    complete pairs, only the findings are written, saying how many pairs there are. The footer
    names the records and where they were trained
    (:func:`~gmaiou.paper.experiments.stats.training_provenance`) unless ``source`` is given.
    """
    import matplotlib.pyplot as plt

    from gmaiou.paper.experiments.runner import COMMITTED_PROFILES
    from gmaiou.paper.figures import save_figure, save_findings, save_table

    if not records:
        return []
    if all_planned is None:
        all_planned = profile in COMMITTED_PROFILES
    pairs = len(paired_gains(records, metric))
    planned = _planned("primary", profile)
    source = source or _source(records, "primary", profile, pairs)
    waiting = all_planned and planned is not None and pairs < planned
    if pairs < 2 or waiting:
        of_planned = f" of the {planned} planned" if planned else ""
        why = (
            "the pre-registered test is read once all of them are recorded"
            if waiting
            else "the paired t-test needs at least 2"
        )
        line = (
            f"Primary test: {pairs} complete pair{'' if pairs == 1 else 's'}{of_planned} so far; "
            f"{why}, so there is no result yet."
        )
        headline = f"no result yet: {pairs} complete pair{'' if pairs == 1 else 's'}{of_planned}"
        return [save_findings([line], "primary_test", profile, source=source, headline=headline)]
    result = primary_test(records, metric)
    table = primary_table(records, metric)
    shown = table.copy()
    for column in ("mean", "ci low", "ci high", "t"):
        shown[column] = [f"{v:+.2f}" for v in shown[column]]
    shown["sd"] = [f"{v:.2f}" for v in shown["sd"]]
    for column in ("p", "p holm"):
        shown[column] = [_p_text(v) for v in shown[column]]
    text = shown.to_markdown(index=False, disable_numparse=True)  # keep the signs
    paths = [save_table(text, "primary_test", profile, source=source)]
    fig = plot_primary_test(records, metric)
    paths += save_figure(fig, "primary_test", profile, source=textwrap.fill(source, FOOTER_WIDTH))
    plt.close(fig)
    findings = primary_findings(result, table, _planned("primary", profile))
    paths.append(
        save_findings(
            findings, "primary_test", profile, source=source, headline=primary_headline(result)
        )
    )
    return paths


def _mob_share_verdict(result: Mapping[str, Any]) -> str:
    if result["ci_low"] > 0:
        return "the gain grows with the share of low-MOB boxes at 95% confidence"
    if result["ci_high"] < 0:
        return "the gain shrinks as the share of low-MOB boxes grows, at 95% confidence"
    return "no trend with the share of low-MOB boxes is distinguishable at 95% confidence"


def mob_share_headline(result: Mapping[str, Any]) -> str:
    """:func:`mob_share_slope`'s line in one sentence (the findings' headline)."""
    return (
        f"slope {0.1 * result['slope']:+.2f} {result['metric']} per 10 points of low-MOB share "
        f"(95% CI {_interval(0.1 * result['ci_low'], 0.1 * result['ci_high'])}, "
        f"{result['pairs']} pairs): {_mob_share_verdict(result).removesuffix(' at 95% confidence')}"
    )


def mob_share_findings(result: Mapping[str, Any]) -> list[str]:
    """Sentences on :func:`mob_share_slope`'s line and its levels."""
    per10 = 0.1
    verdict = _mob_share_verdict(result)
    lines = [
        f"{TREATMENT} − {BASELINE}, {result['metric']} on the held-out test split, against the "
        f"realised share of boxes with MOB < 0.5 ({result['pairs']} pairs, "
        f"{len(result['levels'])} levels): slope {per10 * result['slope']:+.2f} per 10 points of "
        f"share (95% CI {_interval(per10 * result['ci_low'], per10 * result['ci_high'])}, "
        f"{result['df']} df, p = {_p_text(result['p'])}): {verdict}."
    ]
    parts = [
        f"{row['mix']} ({row['share']:.0%}): {row['mean']:+.2f}"
        + ("" if math.isnan(row["ci low"]) else f" ({_interval(row['ci low'], row['ci high'])})")
        for _, row in result["levels"].iterrows()
    ]
    lines.append("Mean gain per level (95% CI): " + "; ".join(parts) + ".")
    return lines


def plot_mob_share_gain(result: Mapping[str, Any]):
    """Per-pair gains against the realised share, each level's mean with its interval, the line."""
    import matplotlib.pyplot as plt

    gains, levels = result["gains"], result["levels"]
    fig, ax = plt.subplots(figsize=(5.4, 3.6))
    ax.axhline(0.0, color="k", lw=0.8)
    ax.plot(100 * gains["share"], gains["gain"], "o", color="0.6", ms=4, label="one pair")
    err = np.array([levels["mean"] - levels["ci low"], levels["ci high"] - levels["mean"]])
    ax.errorbar(100 * levels["share"] + 0.8, levels["mean"],
                yerr=None if np.isnan(err).any() else err, fmt="s", color="tab:blue",
                capsize=4, label="level mean, 95% t-interval")  # fmt: skip
    xs = np.linspace(float(gains["share"].min()), float(gains["share"].max()), 2)
    ax.plot(100 * xs, result["intercept"] + result["slope"] * xs, color="tab:orange",
            label=f"least squares: {0.1 * result['slope']:+.2f} per 10 points")  # fmt: skip
    ax.set_xlabel("realised share of boxes with MOB < 0.5 (%)")
    ax.set_ylabel(f"{result['metric']}: {TREATMENT} − {BASELINE}", fontsize=9)
    ax.set_title("Gain against the share of low-MOB objects (test split)", fontsize=10)
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def write_mob_share_gain(
    records: Sequence[Mapping[str, Any]],
    shares: Mapping[Any, float] | None = None,
    profile: str = "default",
    *,
    source: str | None = None,
    metric: str = "mask AP",
    all_planned: bool | None = None,
) -> list[Path]:
    """``mob_share_gain.md``, ``.png``, ``.pdf`` and ``mob_share_gain_findings.md`` in the
    profile's figures folder, from the ``mob-share`` grid's records; ``shares``: the realised
    shares (``None``: measured on each set's train split, :func:`realised_shares`).

    Without records nothing is written (``[]``); with too few pairs for a line (three, over
    two shares at least), or with ``all_planned`` (``None``: for the committed profiles) before
    every planned pair is recorded, only the findings, saying so. The footer names the records
    and where they were trained unless ``source`` is given.
    """
    import matplotlib.pyplot as plt

    from gmaiou.paper.figures import save_figure, save_findings, save_table

    if not records:
        return []
    from gmaiou.paper.experiments.runner import COMMITTED_PROFILES

    if all_planned is None:
        all_planned = profile in COMMITTED_PROFILES
    gains = paired_gains(records, metric)
    planned = _planned("mob-share", profile)
    source = source or _source(records, "mob-share", profile, len(gains))
    waiting = all_planned and planned is not None and len(gains) < planned
    if len(gains) < 3 or gains["mix"].nunique() < 2 or waiting:
        why = (
            f"the line is read once all {planned} planned pairs are recorded"
            if waiting
            else "the line needs at least 3 pairs over 2 levels"
        )
        line = (
            f"MOB-share dose-response: {len(gains)} complete pair{'' if len(gains) == 1 else 's'} "
            f"on {gains['mix'].nunique()} level{'' if gains['mix'].nunique() == 1 else 's'} so far; "
            f"{why}, so there is no result yet."
        )
        n, levels = len(gains), gains["mix"].nunique()
        of_planned = f" of the {planned} planned" if waiting else ""
        headline = (
            f"no result yet: {n} complete pair{'' if n == 1 else 's'}{of_planned} on {levels} "
            f"level{'' if levels == 1 else 's'}"
        )
        return [save_findings([line], "mob_share_gain", profile, source=source, headline=headline)]
    if shares is None:
        shares = realised_shares(records)
    result = mob_share_slope(records, shares, metric)
    levels = result["levels"]
    shown = pd.DataFrame(
        {
            "mix": levels["mix"],
            "realised share": levels["share"].map(lambda v: f"{v:.1%}"),
            "pairs": levels["pairs"],
            "mean gain": levels["mean"].map(lambda v: f"{v:+.2f}"),
            "95% CI": [
                "–" if math.isnan(lo) else _interval(lo, hi)
                for lo, hi in zip(levels["ci low"], levels["ci high"], strict=True)
            ],
        }
    )
    text = (
        shown.to_markdown(index=False, disable_numparse=True)
        + f"\n\nSlope: {0.1 * result['slope']:+.2f} {metric} per 10 points of share "
        f"(95% CI {_interval(0.1 * result['ci_low'], 0.1 * result['ci_high'])}, "
        f"{result['pairs']} pairs, {result['df']} df)."
    )
    paths = [save_table(text, "mob_share_gain", profile, source=source)]
    fig = plot_mob_share_gain(result)
    paths += save_figure(fig, "mob_share_gain", profile, source=textwrap.fill(source, FOOTER_WIDTH))
    plt.close(fig)
    paths.append(
        save_findings(
            mob_share_findings(result),
            "mob_share_gain",
            profile,
            source=source,
            headline=mob_share_headline(result),
        )
    )
    return paths
