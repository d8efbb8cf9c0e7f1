"""Table 2's report: the table, the paired differences and the findings in words, from run records.

Notebook 04 calls :func:`table2_report` and :func:`write_table2` once for the current CPU recipe
(grid ``table2``, stem ``table2_assigners``) and once for the first recipe (grid
``table2-recipe1``, stem ``table2_recipe1_assigners``), so both are computed and written the
same way: ``<stem>.md`` (mean ± std over seeds), ``<stem>.png``/``.pdf`` (the mask AP paired
differences), ``<stem>_findings.md`` (the sentences and a headline) and the paired differences
of every metric as an extra table.

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
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
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
    "SET_NAMES",
    "TREATMENT",
    "Table2Report",
    "differences_table",
    "gain_vs_mob_share",
    "other_metrics_sentence",
    "table2_headline",
    "table2_report",
    "write_table2",
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
            objects, one on the box-AP and oLRP differences and one on how verdicts are
            made; each one line (for :func:`gmaiou.paper.figures.save_findings`).
        headline: the mask-AP result in one short sentence (:func:`table2_headline`).
    """

    table: pd.DataFrame
    diffs: pd.DataFrame
    findings: tuple[str, ...]
    headline: str


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
    return Table2Report(table, diffs, tuple(lines), table2_headline(diffs))


#: How the headline names each class mix (the order it lists them in).
SET_NAMES: dict[str, str] = {"uniform": "uniform", "coco": "COCO-MOB"}


def table2_headline(diffs: pd.DataFrame, alpha: float = ALPHA) -> str:
    """The mask-AP result in one sentence: GmaIoU-ATSS minus fixed IoU and minus ATSS IoU on
    each set (means, 1 decimal), and how many of the mask-AP comparisons Holm's procedure
    rejects at ``alpha`` (``k of n Holm-significant``, of those with two or more pairs).

    ``diffs``: :attr:`Table2Report.diffs`. Sets are listed in :data:`SET_NAMES`' order, then
    any other in sorted order; a baseline without a set shows ``n/a`` there.
    """
    mask = diffs[diffs["metric"] == "mask AP"]
    if mask.empty:
        raise ValueError("no mask AP paired difference to state")
    present = set(mask["data"])
    sets = [d for d in SET_NAMES if d in present] + sorted(present - set(SET_NAMES))
    parts = []
    for key in ("fixed", "atss-iou"):
        means = mask[mask["baseline"] == ASSIGNER_LABELS[key]].set_index("data")["mean"]
        if means.empty:
            continue
        values = "/".join(f"{means[d]:+.1f}" if d in means.index else "n/a" for d in sets)
        parts.append(f"− {ASSIGNER_LABELS[key]}: {values}" + ("" if parts else " mask AP"))
    tested = mask[mask["p holm"].notna()]
    verdict = (
        f"{int((tested['p holm'] <= alpha).sum())} of {len(tested)} Holm-significant"
        if len(tested)
        else "no comparison has two paired seeds"
    )
    names = "/".join(SET_NAMES.get(d, d) for d in sets)
    treatment = TREATMENT.split(" (")[0]
    compared = ", ".join(parts) if parts else "− each baseline: mask AP"
    return f"{treatment} {compared} ({names}); {verdict}"


def write_table2(
    report: Table2Report,
    stem: str,
    profile: str = "default",
    *,
    data_names: Mapping[str, str] | None = None,
    source: str | None = None,
    differences_name: str | None = None,
    footer_width: int = 130,
) -> list[Path]:
    """Write a Table 2 report into the profile's figures folder, all under one ``stem``:

    ``<stem>.md`` (mean ± std over seeds, ``data`` renamed by ``data_names``), ``<stem>.png``
    and ``<stem>.pdf`` (the mask-AP paired differences against the paper's claims,
    :func:`~gmaiou.paper.experiments.plots.plot_paired_differences`), ``<stem>_findings.md``
    (:attr:`Table2Report.findings` under :attr:`Table2Report.headline`) and
    ``<differences_name>.md`` (every paired difference, :func:`differences_table`; default
    ``<stem>_paired_differences``). ``source`` is every file's stamp, wrapped at
    ``footer_width`` characters under the figure. Returns the paths written.
    """
    import matplotlib.pyplot as plt

    from gmaiou.paper.experiments.plots import plot_paired_differences
    from gmaiou.paper.figures import save_figure, save_findings, save_table

    names = dict(data_names or {})
    table = report.table.assign(data=report.table["data"].map(lambda d: names.get(d, d)))
    paths = [save_table(table, stem, profile, source=source)]
    paths.append(
        save_table(
            differences_table(report.diffs, names),
            differences_name or f"{stem}_paired_differences",
            profile,
            source=source,
        )
    )
    mask = report.diffs[report.diffs["metric"] == "mask AP"]
    fig = plot_paired_differences(mask, CLAIMS, names)
    footer = textwrap.fill(source, footer_width) if source else None
    paths += save_figure(fig, stem, profile, source=footer)
    plt.close(fig)
    paths.append(
        save_findings(report.findings, stem, profile, source=source, headline=report.headline)
    )
    return paths


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
