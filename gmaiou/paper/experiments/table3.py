"""Table 3's report: the GmaYOLACT build-up step by step, from the ``table3`` grid's records.

* :func:`table3_report`: the table per step (mask AP, AP50, AP75, box AP, mask and box
  oLRP, training s/iteration, inference fps; mean ± std over seeds), each step's paired
  gain over the step before and over step 1 (and GmaYOLACT's over a YOLACT trained with
  cosine annealing, where such runs are recorded: :func:`cosine_yolact_records`) with 95% t
  intervals (:func:`gmaiou.paper.experiments.stats.paired_differences`), the verdict of each
  in words ("helps", "hurts", "no detectable change", or "not enough seeds" where there is no
  interval), and the paper's claims on the build-up checked one by one.
* :func:`table3_speeds`: the speed of each run, cached as its own record under
  ``figures/runs/<profile>/table3-speed/<id>.json``: training s/iteration is the median of
  the per-iteration ``time`` of the run's ``metrics.jsonl`` after warm-up; inference fps
  is :func:`gmaiou.paper.benchmarks.infer.run_infer_benchmark` (``gmaiou-paper bench infer --run DIR``)
  on the run's val images with its trained weights. Timing needs a quiet machine, so a
  record is made once and re-read; it is remade only when missing, forced, or when its run
  was retrained since.

Multiple comparisons: the family of Holm's adjustment is every comparison of Table 3 on one
metric (each step over the step before, each step from 3 on over step 1, and GmaYOLACT over
the cosine-schedule YOLACT: 12 with the full grid and those runs; fewer on a metric without
data, e.g. no speed records for the cosine YOLACT). The steps are one build-up, read together,
so they are corrected together; the metrics are separate questions, so they are separate
families. Every gain carries its paired t-test's p-value, its raw 95% t interval, Holm's
adjusted p-value and the interval widened to its Holm step's level ``0.05 / (m - rank + 1)``
(:func:`gmaiou.paper.experiments.primary.holm_table`); the verdicts ("helps", "hurts",
"faster", "slower") need a Holm-adjusted p of at most 0.05, and the paper's claimed numbers
are compared with the adjusted interval.

Every number of the paper quoted here is in :data:`PAPER_CLAIMS`, with its source; the
paper's per-step numbers were lost from its text, so no step is compared with a number.

:func:`write_table3` writes the report under one stem, :data:`NAME`: the table
(``table3_gmayolact.md``), its figure (PNG and PDF) and its findings
(``table3_gmayolact_findings.md``: one sentence per line, headed by :func:`table3_headline`,
GmaYOLACT's mask AP gain over both YOLACT baselines); beside them ``table3_steps.md`` (the paired
gains) and ``table3_summary.md`` (the findings in words, for the README).
"""

from __future__ import annotations

import json
import math
import os
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gmaiou.paper.experiments.grids import Step, table3_steps
from gmaiou.paper.experiments.primary import holm_table
from gmaiou.paper.experiments.runner import RunSpec, SyntheticData, record_path
from gmaiou.paper.experiments.stats import paired_differences, records_frame, summary_table

__all__ = [
    "ALPHA",
    "COSINE_OVER",
    "COSINE_REFERENCE",
    "GAIN_METRICS",
    "NAME",
    "PAPER_CLAIMS",
    "SPEED_GRID",
    "TRAIN_WARMUP_ITERS",
    "Table3Report",
    "check_claims",
    "cosine_yolact_records",
    "format_gain",
    "median_iteration_seconds",
    "measure_speed",
    "speed_path",
    "step_frame",
    "step_gains",
    "step_table",
    "steps_frame",
    "table3_findings",
    "table3_headline",
    "table3_report",
    "table3_speeds",
    "verdict",
    "write_table3",
]

#: The stem of Table 3's outputs: ``table3_gmayolact.md``, ``.png``, ``.pdf``, ``_findings.md``.
NAME = "table3_gmayolact"

#: Folder of the speed records, beside the grid's: ``figures/runs/<profile>/table3-speed/``.
SPEED_GRID = "table3-speed"
#: Iterations dropped from the start of ``metrics.jsonl`` before the median s/iteration (the
#: first iterations pay for allocations and the data loader's start).
TRAIN_WARMUP_ITERS = 10
#: Metrics of the paired gains: column -> higher is better.
GAIN_METRICS: dict[str, bool] = {
    "mask AP": True,
    "box AP": True,
    "mask oLRP": False,
    "box oLRP": False,
    "train s/it": False,
    "fps": True,
}
_SPEED = ("train s/it", "fps")
#: The familywise level of Holm's adjustment.
ALPHA = 0.05
#: ``over`` and ``reference`` of GmaYOLACT's gains over the cosine-schedule YOLACT.
COSINE_OVER = "cosine YOLACT"
COSINE_REFERENCE = "YOLACT (fixed IoU) with cosine annealing, grid table2"
_OVER_ORDER = {"previous step": 0, "step 1": 1, COSINE_OVER: 2}

#: The paper's numbers on the build-up that its text kept, with their source. The
#: per-step numbers of the build-up were lost from the text (``docs/spec.md`` section 5).
PAPER_CLAIMS: dict[str, dict[str, Any]] = {
    "gmaiou-atss over fixed IoU": {
        "value": (1.5, 2.0),
        "unit": "mask AP",
        "source": "GmaIoU paper, abstract (docs/spec.md section 5): ATSS with GmaIoU about "
        "+1.5 to +2 mask AP over the fixed IoU rule",
    },
    "gmayolact over yolact": {
        "value": 7.0,
        "unit": "mask AP",
        "source": "GmaIoU paper, abstract (docs/spec.md section 5): GmaYOLACT about +7 mask AP "
        "over YOLACT (COCO, ResNet-50)",
    },
    "atss inference time saved": {
        "value": 0.25,
        "unit": "share of inference time",
        "source": "GmaIoU paper, abstract and section 4.3 (docs/spec.md section 5): about 25% "
        "less inference time from ATSS's fewer anchors",
    },
}


# --------------------------------------------------------------------------- speed records


def median_iteration_seconds(
    metrics_file: str | Path, warmup: int = TRAIN_WARMUP_ITERS
) -> tuple[float, int]:
    """The median wall time of a training iteration (the ``time`` field, data loading
    included) after the first ``warmup`` iterations, and how many iterations it is over.

    A run no longer than the warm-up (a smoke run) keeps its last iteration.
    """
    path = Path(metrics_file)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: no training log to time")
    times = [json.loads(line)["time"] for line in path.read_text().splitlines() if line.strip()]
    if not times:
        raise ValueError(f"{path} holds no iteration")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    timed = times[warmup:] or times[-1:]
    return float(statistics.median(timed)), len(timed)


def speed_path(spec: RunSpec, figures: Path | None = None) -> Path:
    """Where ``spec``'s speed record lives: ``<figures>/runs/<profile>/table3-speed/<id>.json``."""
    return record_path(spec, figures).parent.parent / SPEED_GRID / f"{spec.run_id}.json"


def measure_speed(
    spec: RunSpec,
    record: Mapping[str, Any],
    root: Path | None = None,
    figures: Path | None = None,
    force: bool = False,
    device: str = "cpu",
    warmup_images: int = 2,
) -> dict[str, Any]:
    """``spec``'s speed record: read back if it exists for this training of the run, else measured.

    Args:
        spec: the run.
        record: its run record (:func:`gmaiou.paper.experiments.run_grid`); its ``finished_at``
            tells a stale speed record (the run was retrained since) from a current one.
        root: the repository root, where ``runs/`` holds the run's folder and checkpoint.
        figures: the figures folder (default: the profile's).
        force: measure again even if a current record exists.
        device: where inference is timed.
        warmup_images: untimed images before the timed pass over the val split.

    Raises:
        FileNotFoundError: the run's folder has no checkpoint (trained elsewhere).
    """
    from gmaiou.paper.benchmarks.infer import run_infer_benchmark
    from gmaiou.paper.cli import build_parser
    from gmaiou.paper.paths import repo_root
    from gmaiou.runs import CHECKPOINT_FILE

    path = speed_path(spec, figures)
    if path.is_file() and not force:
        cached = json.loads(path.read_text())
        if cached.get("run_finished_at") == record.get("finished_at"):
            return cached
    run_dir = spec.run_dir(Path(root) if root is not None else repo_root())
    if not (run_dir / CHECKPOINT_FILE).is_file():
        raise FileNotFoundError(
            f"{run_dir} has no {CHECKPOINT_FILE}: run {spec.run_id} cannot be timed here (train it "
            f"with `gmaiou-paper experiment --grid {spec.grid} --profile {spec.profile} --only "
            f"{spec.run_id} --force`, or copy its run folder)"
        )
    train_s, timed = median_iteration_seconds(run_dir / "metrics.jsonl")
    args = build_parser().parse_args(
        ["bench", "infer", "--run", str(run_dir), "--device", device, "--no-progress",
         "--warmup", str(warmup_images)]
    )  # fmt: skip
    bench = run_infer_benchmark(args)
    trained = bench["trained"][0]
    speed = {
        "id": spec.run_id,
        "label": spec.label,
        "seed": spec.seed,
        "run_finished_at": record.get("finished_at"),
        "train_s_per_iteration": train_s,
        "train_iterations_timed": timed,
        "train_warmup_iterations": TRAIN_WARMUP_ITERS,
        "train_torch_threads": record.get("torch_threads"),
        "train_device": record.get("device_name"),
        "images_per_s": trained["images_per_s"],
        "network_ms_per_image": trained["network_ms_per_image"],
        "post_ms_per_image": trained["post_ms_per_image"],
        "anchors": trained["anchors"],
        "detections_per_image": trained["detections_per_image"],
        "infer_images": trained["images"],
        "infer_split": trained["split"],
        "infer_device": bench["device"],
        "infer_torch_threads": bench["threads"],
        "infer_cpu_affinity": bench["cpu_affinity"],
        "torch_version": bench["torch"],
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(speed, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return speed


def table3_speeds(
    specs: Sequence[RunSpec],
    records: Sequence[Mapping[str, Any]],
    root: Path | None = None,
    figures: Path | None = None,
    force: bool | None = None,
    device: str = "cpu",
    warmup_images: int = 2,
) -> tuple[list[dict[str, Any]], list[str]]:
    """The speed record of every run with a record (measured where missing or stale).

    ``force``: re-time every run (``None``: the ``GMAIOU_FORCE`` environment variable, which
    also retrains the runs). Returns the speed records and one line per run that could not
    be timed (no record, or no checkpoint here), so a table can say which speeds are missing
    instead of failing.
    """
    from gmaiou.paper.experiments.runner import _force_from_env

    if force is None:
        force = _force_from_env()
    by_id = {r["id"]: r for r in records}
    speeds, missing = [], []
    for spec in specs:
        record = by_id.get(spec.run_id)
        if record is None:
            missing.append(f"{spec.run_id}: no run record")
            continue
        try:
            speeds.append(measure_speed(spec, record, root, figures, force, device, warmup_images))
        except FileNotFoundError as err:
            missing.append(str(err))
    return speeds, missing


# --------------------------------------------------------------------------- tables


def _labels(steps: Sequence[Step]) -> list[str]:
    return [s.label for s in steps]


def steps_frame(steps: Sequence[Step] | None = None) -> pd.DataFrame:
    """The build-up as a table: ``step``, ``configuration``, ``adds`` (in words), ``settings``
    (over the step before; step 1: over its preset) and ``preset`` (what the runs are named after)."""
    steps = table3_steps() if steps is None else steps
    return pd.DataFrame(
        [
            {
                "step": k,
                "configuration": s.label,
                "adds": s.adds,
                "settings": ", ".join(s.settings),
                "preset": s.preset,
            }
            for k, s in enumerate(steps, start=1)
        ]
    )


def step_frame(
    records: Sequence[Mapping[str, Any]],
    speeds: Sequence[Mapping[str, Any]] = (),
    steps: Sequence[Step] | None = None,
) -> pd.DataFrame:
    """One row per run: :func:`records_frame`'s columns, ``step`` (1-based), ``id`` and the
    speed columns ``train s/it``, ``fps`` and ``anchors`` (NaN where a run has no speed record).

    Raises:
        ValueError: no records, or a record whose label is not a step of ``steps``.
    """
    if not records:
        raise ValueError("Table 3 needs at least one run record; the grid has none")
    steps = table3_steps() if steps is None else steps
    labels = _labels(steps)
    unknown = sorted({r["label"] for r in records} - set(labels))
    if unknown:
        raise ValueError(f"records with labels that are not Table 3 steps: {unknown}")
    frame = records_frame(records)
    frame.insert(0, "id", [r["id"] for r in records])
    frame.insert(0, "step", [labels.index(r["label"]) + 1 for r in records])
    by_id = {s["id"]: s for s in speeds}
    for column, key in (("train s/it", "train_s_per_iteration"), ("fps", "images_per_s"),
                        ("anchors", "anchors")):  # fmt: skip
        frame[column] = [
            float(by_id[i][key]) if i in by_id and by_id[i].get(key) is not None else np.nan
            for i in frame["id"]
        ]
    return frame.sort_values(["step", "seed"]).reset_index(drop=True)


_TABLE_METRICS = ("mask AP", "mask AP50", "mask AP75", "box AP", "mask oLRP", "box oLRP")


def step_table(frame: pd.DataFrame, steps: Sequence[Step] | None = None) -> pd.DataFrame:
    """Mean ± std over seeds per step: ``step``, ``configuration``, ``seeds``, the AP and oLRP
    columns (1 decimal), ``anchors``, ``train s/it`` (3 decimals) and ``fps`` (1 decimal)."""
    steps = table3_steps() if steps is None else steps
    labels = _labels(steps)
    acc = summary_table(frame, _TABLE_METRICS, order=labels, decimals=1)
    sit = summary_table(frame, ("train s/it",), order=labels, decimals=3)
    fps = summary_table(frame, ("fps",), order=labels, decimals=1)
    table = acc.merge(sit[["assigner", "train s/it"]], on="assigner").merge(
        fps[["assigner", "fps"]], on="assigner"
    )
    anchors = frame.groupby("label")["anchors"].first()
    table.insert(
        table.columns.get_loc("train s/it"),
        "anchors",
        [
            "n/a" if math.isnan(anchors.get(a, np.nan)) else f"{int(anchors[a]):,}"
            for a in table["assigner"]
        ],
    )
    table.insert(0, "step", [labels.index(a) + 1 for a in table["assigner"]])
    table = table.rename(columns={"assigner": "configuration"}).drop(columns="data")
    return table.sort_values("step").reset_index(drop=True)


def _adjusted(row: Mapping[str, Any]) -> bool:
    """Whether ``row`` carries Holm's adjusted p-value (:func:`holm_table`)."""
    value = row.get("p holm") if hasattr(row, "get") else None
    return value is not None and not math.isnan(float(value))


def verdict(
    row: Mapping[str, Any], higher_is_better: bool, speed: bool = False, alpha: float = ALPHA
) -> str:
    """The verdict on a paired difference, in words.

    Accuracy: ``helps`` (better), ``hurts`` (worse) or ``no detectable change``; speed metrics:
    ``faster`` / ``slower`` / ``no detectable change``. With Holm's columns
    (:func:`~gmaiou.paper.experiments.primary.holm_table`) a change needs a Holm-adjusted
    p-value of at most ``alpha``, its side given by the mean; without them the raw 95% interval
    must lie on one side of zero. With fewer than two pairs there is no interval:
    ``not enough seeds (N paired)``.
    """
    pairs = int(row["pairs"])
    low, high = row["ci low"], row["ci high"]
    if pairs < 2 or low is None or high is None or math.isnan(low) or math.isnan(high):
        return f"not enough seeds ({pairs} paired)"
    if _adjusted(row):
        clear = float(row["p holm"]) <= alpha and row["mean"] != 0
        better = clear and (row["mean"] > 0) == higher_is_better
        worse = clear and not better
    else:
        better = low > 0 if higher_is_better else high < 0
        worse = high < 0 if higher_is_better else low > 0
    if better:
        return "faster" if speed else "helps"
    if worse:
        return "slower" if speed else "hurts"
    return "no detectable change"


_GAIN_COLUMNS = ("metric", "pairs", "mean", "std", "ci low", "ci high", "better")


def _gain_rows(
    pair: pd.DataFrame, treatment: str, step: int, over: str, reference: str
) -> list[dict[str, Any]]:
    rows = []
    for metric, higher in GAIN_METRICS.items():
        diffs = paired_differences(pair, treatment, metric, higher_is_better=higher)
        for _, d in diffs.iterrows():
            rows.append(
                {"step": step, "configuration": treatment, "over": over, "reference": reference,
                 **{c: d[c] for c in _GAIN_COLUMNS}}
            )  # fmt: skip
    return rows


def step_gains(
    frame: pd.DataFrame,
    steps: Sequence[Step] | None = None,
    cosine: pd.DataFrame | None = None,
    alpha: float = ALPHA,
) -> pd.DataFrame:
    """Each step's paired gain over the step before (``over = "previous step"``) and over
    step 1 (``over = "step 1"``), for every metric of :data:`GAIN_METRICS` with data, and the
    last step's over the cosine-schedule YOLACT (``over = COSINE_OVER``) when ``cosine`` (its
    :func:`records_frame` rows) is given; then Holm's adjustment per metric over all of them.

    Columns: ``step``, ``configuration``, ``over``, ``reference`` (its label), ``metric``,
    ``pairs``, ``mean``, ``std``, ``ci low``, ``ci high`` (raw 95%), ``better`` (share of seeds
    where the step is better), ``t``, ``p``, ``family size``, ``p holm``, ``holm level``,
    ``holm low``, ``holm high`` (:func:`~gmaiou.paper.experiments.primary.holm_table`) and
    ``verdict`` (:func:`verdict`, from the Holm-adjusted p). Steps trained without the step
    they are compared with (or with no common seed) have no row.
    """
    steps = table3_steps() if steps is None else steps
    labels = _labels(steps)
    present = set(frame["label"])
    rows = []
    for k in range(1, len(labels)):
        for over, ref in (("previous step", k - 1), ("step 1", 0)):
            if over == "step 1" and k == 1:
                continue  # step 2 over step 1 is its gain over the previous step
            if labels[k] not in present or labels[ref] not in present:
                continue
            pair = frame[frame["label"].isin((labels[k], labels[ref]))]
            rows += _gain_rows(pair, labels[k], k + 1, over, labels[ref])
    if cosine is not None and not cosine.empty and labels[-1] in present:
        pair = pd.concat(
            [frame[frame["label"] == labels[-1]], cosine.assign(label=COSINE_REFERENCE)],
            ignore_index=True,
        )
        rows += _gain_rows(pair, labels[-1], len(labels), COSINE_OVER, COSINE_REFERENCE)
    columns = ["step", "configuration", "over", "reference", *_GAIN_COLUMNS]
    gains = holm_table(pd.DataFrame(rows, columns=columns), family="metric", alpha=alpha)
    gains["verdict"] = [
        verdict(g, GAIN_METRICS[g["metric"]], g["metric"] in _SPEED, alpha)
        for _, g in gains.iterrows()
    ]
    return gains


def _p_text(p: float) -> str:
    return "n/a" if math.isnan(p) else (f"{p:.2g}" if p < 0.001 else f"{p:.3f}")


def format_gain(row: Mapping[str, Any], decimals: int = 2) -> str:
    """``+1.23 (+0.50 to +1.96)``: a paired gain with its 95% interval; with Holm's columns,
    ``+1.23 (+0.50 to +1.96; Holm -0.20 to +2.66, p 0.081)``: the raw interval, the
    Holm-widened one and the adjusted p-value; with one pair, ``+1.23 (1 seed, no interval)``.

    Bounds are formatted from the unrounded values.
    """
    mean = f"{row['mean']:+.{decimals}f}"
    if int(row["pairs"]) < 2 or math.isnan(row["ci low"]):
        return f"{mean} ({int(row['pairs'])} seed, no interval)"
    raw = f"{row['ci low']:+.{decimals}f} to {row['ci high']:+.{decimals}f}"
    if not _adjusted(row):
        return f"{mean} ({raw})"
    return (
        f"{mean} ({raw}; Holm {row['holm low']:+.{decimals}f} to {row['holm high']:+.{decimals}f}, "
        f"p {_p_text(float(row['p holm']))})"
    )


def _gains_table(gains: pd.DataFrame) -> pd.DataFrame:
    """The paired gains as a table: one row per step and reference, one cell per metric."""
    out = []
    for (step, over), group in gains.groupby(["step", "over"], sort=False):
        row: dict[str, Any] = {
            "step": step,
            "configuration": group["configuration"].iloc[0],
            "minus": f"{over} ({group['reference'].iloc[0]})",
            "pairs": int(group["pairs"].max()),
        }
        for _, g in group.iterrows():
            decimals = 3 if g["metric"] == "train s/it" else 2
            row[g["metric"]] = format_gain(g, decimals)
        out.append(row)
    table = pd.DataFrame(out)
    if table.empty:
        return table
    table["_o"] = [_OVER_ORDER[m.split(" (")[0]] for m in table["minus"]]
    return table.sort_values(["_o", "step"]).drop(columns="_o").fillna("n/a").reset_index(drop=True)


def _findings_table(gains: pd.DataFrame, steps: Sequence[Step]) -> pd.DataFrame:
    """One row per step: what it adds and its verdict on each metric over the step before."""
    prev = gains[gains["over"] == "previous step"]
    rows = []
    for k, step in enumerate(steps[1:], start=2):
        mine = prev[prev["step"] == k]
        row: dict[str, Any] = {"step": k, "configuration": step.label}
        if mine.empty:
            row["mask AP"] = "not trained (no paired runs with the step before)"
        for _, g in mine.iterrows():
            row[g["metric"]] = (
                f"{g['verdict']}: {format_gain(g, 3 if g['metric'] == 'train s/it' else 2)}"
            )
        rows.append(row)
    return pd.DataFrame(rows).fillna("n/a")


def _summary_sentence(gains: pd.DataFrame, metric: str = "mask AP") -> str:
    prev = gains[(gains["over"] == "previous step") & (gains["metric"] == metric)]
    groups: dict[str, list[str]] = {}
    for _, g in prev.iterrows():
        key = g["verdict"] if not g["verdict"].startswith("not enough") else "not enough seeds"
        groups.setdefault(key, []).append(f"{g['configuration']} (step {g['step']})")
    parts = [
        f"{name}: {', '.join(groups[name])}"
        for name in ("helps", "hurts", "no detectable change", "not enough seeds")
        if name in groups
    ]
    if not parts:
        return f"No step has a paired {metric} gain over the step before it yet."
    family = gains.loc[(gains["metric"] == metric) & gains["p holm"].notna(), "family size"]
    size = f"the {int(family.iloc[0])} " if len(family) else "the "
    return (
        f"At this scale, each step against the step before it, on {metric} (paired t-tests, "
        f"Holm-adjusted over {size}{metric} comparisons of Table 3): " + "; ".join(parts) + "."
    )


def _find(gains: pd.DataFrame, step: int, over: str, metric: str) -> Mapping[str, Any] | None:
    rows = gains[(gains["step"] == step) & (gains["over"] == over) & (gains["metric"] == metric)]
    return None if rows.empty else rows.iloc[0]


def _interval_vs(row: Mapping[str, Any], claim: float | tuple[float, float], unit: str) -> str:
    """The gain, its verdict and where its interval lies against the paper's number: the
    Holm-adjusted interval where the row has one, else the raw 95% interval."""
    low, high = (claim, claim) if isinstance(claim, (int, float)) else claim
    shown = f"{low:+g}" if low == high else f"{low:+g} to {high:+g}"
    gain = f"{format_gain(row)} {unit}, {int(row['pairs'])} paired seeds"
    if math.isnan(row["ci low"]):
        return f"{gain}: one seed gives no interval to compare with the paper's {shown}"
    if _adjusted(row):
        gain += f", {row['verdict']} after Holm's adjustment"
        i_low, i_high, which = row["holm low"], row["holm high"], "the adjusted interval is "
    else:
        i_low, i_high, which = row["ci low"], row["ci high"], ""
    if i_high < low:
        return f"{gain}: {which}smaller than the paper's {shown}"
    if i_low > high:
        return f"{gain}: {which}larger than the paper's {shown}"
    return f"{gain}: {which}compatible with the paper's {shown}"


def check_claims(
    gains: pd.DataFrame, frame: pd.DataFrame, steps: Sequence[Step] | None = None
) -> pd.DataFrame:
    """The paper's claims on the build-up (section 4.3 and the abstract), each checked
    against this scale's results or said to be unchecked, in words.

    Columns: ``claim`` (the paper's, in short), ``source``, ``result`` (a sentence made
    from the paired gains, or why it cannot be checked here).
    """
    steps = table3_steps() if steps is None else steps
    if len(steps) != len(table3_steps()):
        raise ValueError(
            f"check_claims reads the {len(table3_steps())} steps of table3_steps, got {len(steps)}"
        )
    last = len(steps)
    rows = []

    def add(claim: str, source: str, result: str) -> None:
        rows.append({"claim": claim, "source": source, "result": result})

    c = PAPER_CLAIMS["gmaiou-atss over fixed IoU"]
    row = _find(gains, 2, "previous step", "mask AP")
    add(
        "ATSS with GmaIoU gains about +1.5 to +2 mask AP over the fixed IoU rule",
        c["source"],
        "step 2 not trained" if row is None else _interval_vs(row, c["value"], "mask AP"),
    )
    prev = gains[(gains["over"] == "previous step") & (gains["metric"] == "mask AP")]
    later = prev[prev["step"] >= 3]
    helped = [f"step {s}" for s, v in zip(later["step"], later["verdict"]) if v == "helps"]
    not_shown = [f"step {s}" for s, v in zip(later["step"], later["verdict"]) if v != "helps"]
    add(
        "CARAFE, DCNv2, cosine annealing, two anchor scales and the RS loss are each an "
        "improvement for accuracy",
        "GmaIoU paper, section 4.3 (its per-step numbers were lost from the text)",
        "no step from 3 on is trained yet"
        if later.empty
        else (
            f"mask AP gain over the step before after Holm's adjustment for "
            f"{', '.join(helped) or 'none of them'}; not shown for {', '.join(not_shown) or 'none'}"
            " (each step's verdicts: the findings)"
        ),
    )
    row = _find(gains, last, "previous step", "box AP")
    add(
        "the RS loss gives a significant improvement in detection performance",
        "GmaIoU paper, section 4.3",
        "the RS-loss step is not trained"
        if row is None
        else f"box AP gain over step {last - 1}: {row['verdict']}, {format_gain(row)} box AP, "
        f"{int(row['pairs'])} paired seeds",
    )
    c = PAPER_CLAIMS["gmayolact over yolact"]
    row = _find(gains, last, "step 1", "mask AP")
    against_step = (
        "over the step-schedule YOLACT of step 1: GmaYOLACT or YOLACT is not trained"
        if row is None
        else "over the step-schedule YOLACT of step 1: " + _interval_vs(row, c["value"], "mask AP")
    )
    row = _find(gains, last, COSINE_OVER, "mask AP")
    against_cosine = (
        "over a cosine-schedule YOLACT: no run of YOLACT (fixed IoU) with cosine annealing and "
        "otherwise step 1's config, data and seeds is recorded, so there is no second baseline"
        if row is None
        else f"over the cosine-schedule YOLACT ({COSINE_REFERENCE}: step 1's config with step "
        "5's cosine annealing, same data and seeds): " + _interval_vs(row, c["value"], "mask AP")
    )
    add(
        "GmaYOLACT gains about +7 mask AP over YOLACT",
        c["source"],
        f"{against_step}; {against_cosine} (the paper's gain is on COCO with an ImageNet "
        "ResNet-50 at 550 px)",
    )
    row = _find(gains, last, "step 1", "fps")
    if row is None:
        result = "no inference timing of both (speed records missing)"
    else:
        ratio = _mean_ratio(frame, steps[last - 1].label, steps[0].label, "fps")
        result = (
            f"fps of GmaYOLACT minus YOLACT: {row['verdict']}, {format_gain(row, 1)} fps "
            f"({ratio:.2f} times YOLACT's fps), {int(row['pairs'])} paired seeds; "
            + (
                # A wide interval around a large loss must not read as support.
                "the interval is too wide to confirm or rule out the claim"
                if row["verdict"] == "no detectable change"
                else "the claim does not hold at this scale"
                if row["verdict"] == "slower"
                else "faster, not only unaffected"
                if row["verdict"] == "faster"
                else "no interval to judge it"
            )
        )
    add(
        "GmaYOLACT keeps YOLACT's inference time",
        "GmaIoU paper, section 4.3 (28 fps on an RTX 2080Ti; YOLACT's number lost)",
        result + ("" if row is None else " (timed on the CPU here, the paper on a GPU)"),
    )
    c = PAPER_CLAIMS["atss inference time saved"]
    row = _find(gains, 2, "previous step", "fps")
    anchors = frame.groupby("label")["anchors"].first()
    a1, a2 = anchors.get(steps[0].label, np.nan), anchors.get(steps[1].label, np.nan)
    if row is None:
        result = "no inference timing of steps 1 and 2 (speed records missing)"
    else:
        time_ratio = _mean_ratio(frame, steps[0].label, steps[1].label, "fps")  # t2 / t1
        saved = 1 - time_ratio
        more_or_less = "less" if saved >= 0 else "more"
        result = (
            f"{a2:,.0f} anchors instead of {a1:,.0f}; fps gain {format_gain(row, 1)} "
            f"({row['verdict']}), {abs(saved):.0%} {more_or_less} time per image on average, "
            f"against the paper's about {c['value']:.0%} less"
        )
    add("ATSS's fewer anchors cut YOLACT's inference time by about 25%", c["source"], result)
    a5, a6 = anchors.get(steps[4].label, np.nan), anchors.get(steps[5].label, np.nan)
    add(
        "two anchor scales double the anchors of the standard ATSS",
        "GmaIoU paper, section 4.3",
        "speed records missing (anchors are counted there)"
        if math.isnan(a5) or math.isnan(a6)
        else f"{a6:,.0f} anchors against {a5:,.0f}: {a6 / a5:.2f} times",
    )
    add(
        "single-GPU training is much better than training on several GPUs",
        "GmaIoU paper, section 4.3",
        "not tested: every run here is one CPU process; it is not a step of this build-up",
    )
    add(
        "the RS loss gives higher confidence scores (hence the 0.40 score threshold)",
        "GmaIoU paper, section 4.3",
        "not checked here: the RS-loss step uses the threshold 0.40 as the paper does, and the "
        "scores themselves are not compared",
    )
    return pd.DataFrame(rows)


def _mean_ratio(frame: pd.DataFrame, a: str, b: str, metric: str) -> float:
    """Mean over paired seeds of ``metric(a) / metric(b)``; NaN without a common seed."""
    x = frame[frame["label"] == a].set_index("seed")[metric]
    y = frame[frame["label"] == b].set_index("seed")[metric]
    ratio = (x / y).dropna()
    return float(ratio.mean()) if len(ratio) else math.nan


@dataclass(frozen=True)
class Table3Report:
    """Table 3 from the ``table3`` grid's records.

    Attributes:
        frame: one row per run (:func:`step_frame`).
        table: mean ± std over seeds per step (:func:`step_table`).
        gains: the paired gains, numbers (:func:`step_gains`).
        gains_table: the paired gains, one row per step and reference, formatted.
        findings: one row per step, its verdict on each metric over the step before.
        claims: the paper's claims and what this scale shows (:func:`check_claims`).
        text: the findings in words (Markdown): the verdicts table, which steps help, then
            every claim.
        summary: ``text`` without the verdicts table (the README quotes it).
        headline: GmaYOLACT's mask AP gain over both YOLACT baselines (:func:`table3_headline`).
        lines: the findings, one sentence each (:func:`table3_findings`).
    """

    frame: pd.DataFrame
    table: pd.DataFrame
    gains: pd.DataFrame
    gains_table: pd.DataFrame
    findings: pd.DataFrame
    claims: pd.DataFrame
    text: str
    summary: str
    headline: str
    lines: tuple[str, ...]


def table3_report(
    records: Sequence[Mapping[str, Any]],
    speeds: Sequence[Mapping[str, Any]] = (),
    steps: Sequence[Step] | None = None,
    cosine_yolact: Sequence[Mapping[str, Any]] = (),
) -> Table3Report:
    """Table 3, its paired gains, the verdicts and the paper's claims from one grid's records.

    Args:
        records: run records of the ``table3`` grid.
        speeds: their speed records (:func:`table3_speeds`); without them the speed columns
            are ``n/a`` and the speed claims say so.
        steps: the build-up (default :func:`gmaiou.paper.experiments.grids.table3_steps`).
        cosine_yolact: records of YOLACT with cosine annealing and otherwise step 1's config
            (:func:`cosine_yolact_records`), GmaYOLACT's second baseline; without them the
            claim on GmaYOLACT's gain says that no such run is recorded.
    """
    steps = tuple(table3_steps() if steps is None else steps)
    frame = step_frame(records, speeds, steps)
    cosine = records_frame(cosine_yolact) if cosine_yolact else None
    gains = step_gains(frame, steps, cosine)
    claims = check_claims(gains, frame, steps)
    findings = _findings_table(gains, steps)
    lines = [f"- {_summary_sentence(gains, m)}" for m in ("mask AP", "box AP")]
    lines += [f"- The paper: {c['claim']}. Here: {c['result']}." for _, c in claims.iterrows()]
    summary = "\n".join(lines) + "\n\n" + _VERDICTS_NOTE
    text = findings.to_markdown(index=False) + "\n\n" + summary
    return Table3Report(frame, step_table(frame, steps), gains, _gains_table(gains), findings,
                        claims, text, summary, table3_headline(gains, steps),
                        tuple(table3_findings(gains, claims, steps)))  # fmt: skip


_VERDICTS_NOTE = (
    "Verdicts (helps, hurts, faster, slower) from the paired t-test's "
    "p-value, Holm-adjusted over all of Table 3's comparisons on the same metric (each step "
    "over the step before, over step 1, and GmaYOLACT over the cosine-schedule YOLACT): a "
    "change only where the adjusted p is at most 0.05. Each gain shows its raw 95% t "
    "interval, then the t interval at its Holm level 0.05 / (m − rank + 1) and the adjusted p "
    "(oLRP and s/iteration: lower is better)."
)


def _short_verdict(row: Mapping[str, Any]) -> str:
    """The verdict, with ``N pair(s), no interval`` for one without an interval."""
    if row["verdict"].startswith("not enough seeds"):
        pairs = int(row["pairs"])
        return f"{pairs} pair{'s' if pairs != 1 else ''}, no interval"
    return row["verdict"]


def table3_headline(gains: pd.DataFrame, steps: Sequence[Step] | None = None) -> str:
    """GmaYOLACT's mask AP gain over both YOLACT baselines in one sentence: over step 1 (YOLACT
    with the paper's step decay) and over YOLACT with cosine annealing (:data:`COSINE_OVER`),
    each with its verdict after Holm's adjustment, or why it is missing."""
    last = len(table3_steps() if steps is None else steps)
    parts = []
    for over, baseline, missing in (
        ("step 1", "step decay", "not trained"),
        (COSINE_OVER, "cosine annealing", "no run recorded"),
    ):
        row = _find(gains, last, over, "mask AP")
        parts.append(
            f"vs {baseline}: {missing}"
            if row is None
            else f"{row['mean']:+.1f} vs {baseline} ({_short_verdict(row)})"
        )
    return "GmaYOLACT over YOLACT, mask AP: " + ", ".join(parts)


def _step_sentence(gains: pd.DataFrame, k: int, label: str) -> str:
    """Step ``k``'s verdict and paired gain over the step before on every metric, one sentence."""
    rows = gains[(gains["step"] == k) & (gains["over"] == "previous step")]
    if rows.empty:
        return f"Step {k} ({label}) has no paired runs with step {k - 1}."
    cells = [
        f"{g['metric']} {g['verdict']}, {format_gain(g, 3 if g['metric'] == 'train s/it' else 2)}"
        for _, g in rows.iterrows()
    ]
    pairs = int(rows["pairs"].max())
    return (
        f"Step {k} ({label}) minus step {k - 1}, {pairs} paired seed{'s' if pairs != 1 else ''}: "
        + "; ".join(cells)
        + "."
    )


def table3_findings(
    gains: pd.DataFrame, claims: pd.DataFrame, steps: Sequence[Step] | None = None
) -> list[str]:
    """The findings as sentences, one per line: which steps help on mask AP and on box AP, each
    claim of the paper against this scale (:func:`check_claims`), each step's verdicts over the
    step before on every metric, and how the verdicts are made."""
    steps = table3_steps() if steps is None else steps
    lines = [_summary_sentence(gains, m) for m in ("mask AP", "box AP")]
    lines += [f"The paper: {c['claim']}; result: {c['result']}." for _, c in claims.iterrows()]
    lines += [_step_sentence(gains, k, s.label) for k, s in enumerate(steps[1:], start=2)]
    lines.append(
        "The verdicts (helps, hurts, faster, slower) come from the paired t-test's p-value, "
        "Holm-adjusted over all of Table 3's comparisons on the same metric (each step over the "
        "step before, over step 1, and GmaYOLACT over the cosine-schedule YOLACT), a change only "
        "where the adjusted p is at most 0.05, and each gain shows its raw 95% t interval, then "
        "the t interval at its Holm level 0.05 / (m − rank + 1) and the adjusted p (oLRP and "
        "s/iteration: lower is better)."
    )
    return lines


def write_table3(
    report: Table3Report, labels: Sequence[str], profile: str, source: str
) -> list[Path]:
    """Write Table 3 under :data:`NAME`: the table (Markdown), its figure
    (:func:`gmaiou.paper.experiments.plots.plot_build_up`, PNG and PDF) and its findings with
    their headline; then ``table3_steps.md`` (the paired gains) and ``table3_summary.md``.

    ``labels``: the steps' labels in order (the figure's x axis); ``source``: the stamp's data.
    """
    import textwrap

    import matplotlib.pyplot as plt

    from gmaiou.paper.experiments.plots import plot_build_up
    from gmaiou.paper.figures import save_figure, save_findings, save_table

    paths = [save_table(report.table, NAME, profile, source=source)]
    fig = plot_build_up(report.frame, report.gains, list(labels))
    paths += save_figure(fig, NAME, profile, source=textwrap.fill(source, 130))
    plt.close(fig)
    paths.append(
        save_findings(report.lines, NAME, profile, source=source, headline=report.headline)
    )
    paths.append(save_table(report.gains_table, "table3_steps", profile, source=source))
    paths.append(save_table(report.summary, "table3_summary", profile, source=source))
    return paths


def cosine_yolact_records(
    candidates: Sequence[Mapping[str, Any]], specs: Sequence[RunSpec]
) -> list[dict[str, Any]]:
    """The records among ``candidates`` (e.g. the ``table2`` grid's) of YOLACT with step 1's
    exact config but step 5's cosine annealing, on step 1's data: GmaYOLACT's second baseline.

    ``specs``: the ``table3`` grid's runs (step 1's give the config and the data). A record's
    config is compared as :func:`gmaiou.paper.analysis.anchor_losses.upgrade_config` reads it
    (fields added since it was written take the preset's values); records it cannot read are
    skipped. Sorted by seed.
    """
    from gmaiou.configs import apply_settings
    from gmaiou.paper.analysis.anchor_losses import upgrade_config

    keys = {s.key: s for s in table3_steps()}
    first = [s for s in specs if s.variant == table3_steps()[0].key]
    if not first:
        return []
    wanted = apply_settings(first[0].config(), keys["step5-cosine"].settings).to_dict()
    wanted = json.loads(json.dumps(wanted))
    out = []
    for record in candidates:
        try:
            config = upgrade_config(record["config"], record["preset"]).to_dict()
            data = SyntheticData(**record["data"])
        except (KeyError, TypeError, ValueError):
            continue
        if json.loads(json.dumps(config)) == wanted and data == first[0].data:
            out.append(dict(record))
    return sorted(out, key=lambda r: r["seed"])
