"""Table 2's report: the table, the paired differences and the findings in words, from run records.

Notebook 04 calls :func:`table2_report` once for the current CPU recipe (grid ``table2``) and
once for the first recipe (grid ``table2-recipe1``), so both are computed the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from gmaiou.paper.experiments.grids import ASSIGNER_LABELS
from gmaiou.paper.experiments.stats import (
    describe_difference,
    paired_differences,
    records_frame,
    summary_table,
)

__all__ = [
    "CLAIMS",
    "TREATMENT",
    "Table2Report",
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


@dataclass(frozen=True)
class Table2Report:
    """Table 2 from a grid's records.

    Attributes:
        table: mean ± std over seeds per assigner and dataset (:func:`summary_table`).
        diffs: GmaIoU-ATSS minus each assigner, seed by seed, for mask AP, box AP and mask
            oLRP (:func:`paired_differences`; lower oLRP is better, so a gain there is negative).
        findings: one sentence per mask-AP comparison, one on the share of low-MOB
            objects and one on the box-AP and oLRP differences, as markdown bullet lines.
    """

    table: pd.DataFrame
    diffs: pd.DataFrame
    findings: str


def gain_vs_mob_share(mask_diffs: pd.DataFrame, shares: Mapping[str, float]) -> str | None:
    """A sentence on whether the gain over ATSS IoU differs between the two class mixes.

    ``mask_diffs``: mask-AP rows of the paired differences; ``shares``: class mix -> share
    of GT boxes with MOB < 0.5. ``None`` when either mix lacks the comparison.
    """
    vs_iou = mask_diffs[mask_diffs["baseline"] == ASSIGNER_LABELS["atss-iou"]].set_index("data")
    if not {"uniform", "coco"} <= set(vs_iou.index):
        return None
    u, c = vs_iou.loc["uniform"], vs_iou.loc["coco"]
    overlap = not (u["ci low"] > c["ci high"] or c["ci low"] > u["ci high"])
    return (
        f"Share of low-MOB objects: against ATSS IoU the gain is {u['mean']:+.2f} mask AP on the "
        f"set with {shares['uniform']:.0%} of boxes below MOB 0.5 and {c['mean']:+.2f} on the set "
        f"with {shares['coco']:.0%}; the two intervals "
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
    mask = diffs[diffs["metric"] == "mask AP"]
    lines = [describe_difference(row, CLAIMS.get(row["baseline"])) for _, row in mask.iterrows()]
    if shares is not None and (sentence := gain_vs_mob_share(mask, shares)):
        lines.append(sentence)
    lines.append(other_metrics_sentence(diffs))
    return Table2Report(table, diffs, "\n".join(f"- {line}" for line in lines))


def other_metrics_sentence(diffs: pd.DataFrame) -> str:
    """A sentence naming the box-AP and mask-oLRP differences whose 95% interval excludes zero.

    ``diffs``: :func:`paired_differences` rows (``metric``, ``data``, ``comparison``, ``mean``,
    ``ci low``, ``ci high``: treatment minus baseline; lower oLRP is better). Comparisons
    with a single pair have no interval and are not counted.
    """
    other = diffs[(diffs["metric"] != "mask AP") & diffs["ci low"].notna()]
    clear = other[(other["ci low"] > 0) | (other["ci high"] < 0)]
    if other.empty:
        return "Box AP and mask oLRP: no comparison has two or more paired seeds."
    if clear.empty:
        return (
            f"Box AP and mask oLRP: none of the {len(other)} paired differences is "
            "distinguishable from zero at 95% confidence."
        )
    parts = [
        f"{r['comparison']} on the {r['data'].split(' ')[0]} set: {r['mean']:+.2f} {r['metric']} "
        f"(95% CI {r['ci low']:+.2f} to {r['ci high']:+.2f}; "
        + ("better" if (r["mean"] > 0) != ("oLRP" in r["metric"]) else "worse")
        + " for GmaIoU-ATSS)"
        for _, r in clear.iterrows()
    ]
    return (
        f"Box AP and mask oLRP: {len(clear)} of the "
        f"{len(other)} paired differences exclude zero at 95% confidence: "
        + "; ".join(parts)
        + ". (With no real difference, about one comparison in twenty would exclude zero"
        " by chance.)"
    )
