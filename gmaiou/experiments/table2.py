"""Table 2's report: the table, the paired differences and the findings in words, from run records.

Notebook 04 calls :func:`table2_report` once for the current CPU recipe (grid ``table2``) and
once for the first recipe (grid ``table2-recipe1``), so both are computed the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from gmaiou.experiments.grids import ASSIGNER_LABELS
from gmaiou.experiments.stats import (
    describe_difference,
    paired_differences,
    records_frame,
    summary_table,
)

__all__ = ["CLAIMS", "TREATMENT", "Table2Report", "gain_vs_mob_share", "table2_report"]

TREATMENT = ASSIGNER_LABELS["atss-gmaiou"]
#: The paper's claimed mask AP gains of GmaIoU-ATSS over these baselines (spec section 5).
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
            oLRP (:func:`paired_differences`; oLRP signed so that positive is better).
        findings: one sentence per mask-AP comparison and one on the share of low-MOB
            objects, as markdown bullet lines.
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
        records: run records (:func:`gmaiou.experiments.run_grid` or ``load_records``).
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
    return Table2Report(table, diffs, "\n".join(f"- {line}" for line in lines))
