"""Table 2's report: the table, the paired differences and the findings in words, from run records.

Notebook 04 calls :func:`table2_report` once for the current CPU recipe (grid ``table2``) and
once for the first recipe (grid ``table2-recipe1``), so both are computed the same way.

Multiple comparisons: Table 2 makes, per metric, one comparison of ATSS GmaIoU (P=M) against
every other assigner on every set (7 with the full grid: five baselines on the uniform set, two
on the COCO-MOB set). The family of Holm's adjustment is all of Table 2's comparisons on one
metric (mask AP, box AP and mask oLRP are three families): the sets are pooled because the
paper's claim is one claim over both, and the metrics are kept apart because each is a
question of its own (the findings state a verdict per metric, never one from all three).
Every comparison carries its paired t-test's p-value, its raw 95% t interval, Holm's adjusted
p-value and the interval widened to its Holm step's level ``0.05 / (m - rank + 1)``
(:func:`gmaiou.paper.experiments.primary.holm_table`); the findings call a difference a gain
or a loss only when the Holm-adjusted p is at most 0.05, and compare the paper's claimed range
with the adjusted interval.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from gmaiou.paper.experiments.grids import ASSIGNER_LABELS
from gmaiou.paper.experiments.primary import holm_table
from gmaiou.paper.experiments.stats import (
    describe_difference,
    paired_differences,
    records_frame,
    summary_table,
)

__all__ = [
    "ALPHA",
    "CLAIMS",
    "DIFF_COLUMNS",
    "TREATMENT",
    "Table2Report",
    "differences_table",
    "gain_vs_mob_share",
    "other_metrics_sentence",
    "table2_report",
]

TREATMENT = ASSIGNER_LABELS["atss-gmaiou"]
#: The paper's claimed mask AP gains of GmaIoU-ATSS over these baselines (``docs/spec.md`` section 5).
CLAIMS: dict[str, tuple[float, float]] = {
    ASSIGNER_LABELS["atss-iou"]: (1.0, 1.5),
    ASSIGNER_LABELS["fixed"]: (1.5, 2.0),
}
#: The familywise level of Holm's adjustment.
ALPHA = 0.05
#: Columns of :func:`differences_table`, the shown paired differences.
DIFF_COLUMNS: tuple[str, ...] = (
    "data", "comparison", "metric", "pairs", "mean", "std", "ci low", "ci high", "p",
    "family size", "p holm", "holm low", "holm high", "better",
)  # fmt: skip


@dataclass(frozen=True)
class Table2Report:
    """Table 2 from a grid's records.

    Attributes:
        table: mean ± std over seeds per assigner and dataset (:func:`summary_table`).
        diffs: GmaIoU-ATSS minus each assigner, seed by seed, for mask AP, box AP and mask
            oLRP (:func:`paired_differences`; lower oLRP is better, so a gain there is negative),
            with the paired t-test and Holm's adjustment per metric
            (:func:`~gmaiou.paper.experiments.primary.holm_table`).
        findings: one sentence per mask-AP comparison, one on the share of low-MOB
            objects and one on the box-AP and oLRP differences, as markdown bullet lines.
    """

    table: pd.DataFrame
    diffs: pd.DataFrame
    findings: str


def gain_vs_mob_share(mask_diffs: pd.DataFrame, shares: Mapping[str, float]) -> str | None:
    """A sentence on whether the gain over ATSS IoU differs between the two class mixes.

    ``mask_diffs``: mask-AP rows of the paired differences, with Holm's columns;
    ``shares``: class mix -> share of GT boxes with MOB < 0.5. The two Holm-adjusted
    intervals are compared. ``None`` when either mix lacks the comparison.
    """
    vs_iou = mask_diffs[mask_diffs["baseline"] == ASSIGNER_LABELS["atss-iou"]].set_index("data")
    if not {"uniform", "coco"} <= set(vs_iou.index):
        return None
    u, c = vs_iou.loc["uniform"], vs_iou.loc["coco"]
    overlap = not (u["holm low"] > c["holm high"] or c["holm low"] > u["holm high"])
    return (
        f"Share of low-MOB objects: against ATSS IoU the gain is {u['mean']:+.2f} mask AP on the "
        f"set with {shares['uniform']:.0%} of boxes below MOB 0.5 and {c['mean']:+.2f} on the set "
        f"with {shares['coco']:.0%}; the two Holm-adjusted intervals "
        + (
            "overlap, so this scale does not show that the gain depends on that share."
            if overlap
            else "do not overlap: the gain differs between the two sets."
        )
    )


def table2_report(
    records: Sequence[Mapping[str, Any]], shares: Mapping[str, float] | None = None
) -> Table2Report:
    """Table 2, its paired differences and its findings from the records of one grid.

    Args:
        records: run records (:func:`gmaiou.paper.experiments.run_grid` or ``load_records``).
        shares: class mix -> share of GT boxes with MOB < 0.5, for the sentence comparing
            the two synthetic sets (omitted when ``None``).
    """
    if not records:
        raise ValueError("table2_report needs at least one run record; the grid has none")
    frame = records_frame(records)
    table = summary_table(frame, order=list(ASSIGNER_LABELS.values()))
    diffs = pd.concat(
        [
            paired_differences(frame, TREATMENT, "mask AP"),
            paired_differences(frame, TREATMENT, "box AP"),
            paired_differences(frame, TREATMENT, "mask oLRP", higher_is_better=False),
        ],
        ignore_index=True,
    )
    diffs = holm_table(diffs, family="metric", alpha=ALPHA)
    mask = diffs[diffs["metric"] == "mask AP"]
    lines = [
        describe_difference(row, CLAIMS.get(row["baseline"]), ALPHA) for _, row in mask.iterrows()
    ]
    if shares is not None and (sentence := gain_vs_mob_share(mask, shares)):
        lines.append(sentence)
    lines.append(other_metrics_sentence(diffs))
    lines.append(
        "Verdicts: a gain or a loss only where the paired t-test's p-value, Holm-adjusted over "
        "all of Table 2's comparisons on the same metric, is at most 0.05; the adjusted interval "
        "is the t interval at the comparison's Holm level 0.05 / (m − rank + 1)."
    )
    return Table2Report(table, diffs, "\n".join(f"- {line}" for line in lines))


def _p_text(p: float) -> str:
    return "n/a" if math.isnan(p) else (f"{p:.2g}" if p < 0.001 else f"{p:.3f}")


def other_metrics_sentence(diffs: pd.DataFrame, alpha: float = ALPHA) -> str:
    """A sentence naming the box-AP and mask-oLRP differences that Holm's procedure rejects.

    ``diffs``: :func:`~gmaiou.paper.experiments.primary.holm_table` rows (``metric``, ``data``,
    ``comparison``, ``mean``, ``ci low``, ``ci high``, ``p holm``, ``holm low``, ``holm high``:
    treatment minus baseline; lower oLRP is better). Comparisons with a single pair have no
    p-value and are not counted.
    """
    other = diffs[(diffs["metric"] != "mask AP") & diffs["p holm"].notna()]
    clear = other[other["p holm"] <= alpha]
    if other.empty:
        return "Box AP and mask oLRP: no comparison has two or more paired seeds."
    families = ", ".join(
        f"{n} {metric}" for metric, n in other.groupby("metric", sort=False).size().items()
    )
    if clear.empty:
        return (
            f"Box AP and mask oLRP: none of the {len(other)} paired differences is "
            f"distinguishable from zero after Holm's adjustment within each metric ({families} "
            "comparisons)."
        )
    parts = [
        f"{r['comparison']} on the {r['data'].split(' ')[0]} set: {r['mean']:+.2f} {r['metric']} "
        f"(95% CI {r['ci low']:+.2f} to {r['ci high']:+.2f}; adjusted CI {r['holm low']:+.2f} to "
        f"{r['holm high']:+.2f}, p = {_p_text(r['p holm'])}; "
        + ("better" if (r["mean"] > 0) != ("oLRP" in r["metric"]) else "worse")
        + " for GmaIoU-ATSS)"
        for _, r in clear.iterrows()
    ]
    return (
        f"Box AP and mask oLRP: {len(clear)} of the {len(other)} paired differences "
        + ("is" if len(clear) == 1 else "are")
        + f" distinguishable from zero after Holm's adjustment within each metric ({families} "
        "comparisons): " + "; ".join(parts) + "."
    )


def differences_table(diffs: pd.DataFrame, data_names: Mapping[str, str] | None = None) -> str:
    """The paired differences as Markdown: :data:`DIFF_COLUMNS`, numbers to 3 decimals,
    p-values to 3 (2 significant digits below 0.001), ``data`` renamed by ``data_names``."""
    shown = diffs.loc[:, list(DIFF_COLUMNS)].copy()
    if data_names:
        shown["data"] = shown["data"].map(lambda d: data_names.get(d, d))
    for column in ("mean", "std", "ci low", "ci high", "holm low", "holm high", "better"):
        shown[column] = ["–" if math.isnan(v) else f"{v:.3f}" for v in shown[column]]
    for column in ("p", "p holm"):
        shown[column] = [_p_text(v) for v in shown[column]]
    shown["family size"] = ["–" if math.isnan(v) else str(int(v)) for v in shown["family size"]]
    shown["pairs"] = shown["pairs"].astype(int).astype(str)
    return shown.to_markdown(index=False, disable_numparse=True)
