"""The timing questions of ``figures/timings/``: each one Markdown table, one figure (PNG and PDF)
and one findings file, folded from the speed benchmarks' JSON records in the same folder.

* ``assignment_cost`` (Table 4, assignment side): ms per image of the overlap matrices (box IoU,
  brute force, full-image tables, Alg. 1) and of every assigner, per dataset, size and setting
  (CPU thread count or GPU): the median over the runs and their range;
* ``assignment_goals``: the ratios with a goal (and three more) of the same runs: median,
  range and in how many runs each goal was met;
* ``model_speed`` (Table 4, speed side): anchors, training s/iteration and inference fps of
  YOLACT (fixed IoU), ATSS-YOLACT (GmaIoU) and GmaYOLACT, on the CPU and on a GPU;
* ``trained_inference``: the same models with trained weights on their val split, CPU and GPU,
  both mask assemblies scored.

Records (every JSON names its device and torch version):

* ``assignment_cost_cpu.json``: notebook 03's runs (one and two torch threads, rounds of the
  goal ratios), :func:`gmaiou.paper.benchmarks.assign.assignment_record`;
* ``assignment_cost_cuda*.json``, ``model_speed_*_cuda.json``, ``trained_inference_cuda*.json``:
  ``gmaiou-paper bench gpu`` on a lent GPU;
* ``model_speed_recipe_cpu.json``, ``model_speed_paper_cpu.json``: notebook 03
  (``gmaiou-paper bench train --scale cpu|paper``); ``model_speed_table5_cpu.json``: notebook 07;
* ``trained_inference_cpu*.json``: ``gmaiou-paper bench infer --run ...``.

The CPU records of notebook 03 are the profile's own; the GPU and trained-inference records are
read from the committed folder whatever the profile (a GPU is lent now and then, and trained
weights are the default profile's). ``python -m gmaiou.paper.benchmarks.timings`` rewrites every
question from the records present, timing nothing.

Each findings file opens with a headline (:func:`gmaiou.paper.figures.save_findings`): one
sentence computed from the same records (:func:`assignment_cost_headline`,
:func:`assignment_goals_headline`, :func:`model_speed_headline`,
:func:`trained_inference_headline`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from statistics import median
from typing import Any

from gmaiou.paper.benchmarks.assign import (  # the method names the headlines compare
    _ALG1,
    _BRUTE,
    _FULL,
    GOALS,
    AssignBenchmark,
    assignment_cost_findings,
    assignment_goals_findings,
    format_assignment_cost,
    format_assignment_goals,
    load_runs,
    plot_assignment_cost,
    plot_assignment_goals,
)
from gmaiou.paper.figures import save_stem
from gmaiou.paper.paths import TIMINGS, timings_dir

__all__ = [
    "ASSIGNMENT_RECORD",
    "QUESTIONS",
    "assignment_cost_headline",
    "assignment_goals_headline",
    "assignment_runs",
    "main",
    "model_speed_headline",
    "model_speed_records",
    "refresh",
    "trained_inference_headline",
    "trained_inference_records",
    "write_assignment",
    "write_model_speed",
    "write_trained_inference",
]

#: The timing questions: each ``<name>.md``, ``.png``, ``.pdf`` and ``<name>_findings.md``.
QUESTIONS: tuple[str, ...] = (
    "assignment_cost",
    "assignment_goals",
    "model_speed",
    "trained_inference",
)
#: Notebook 03's record of its assignment runs on the CPU.
ASSIGNMENT_RECORD = "assignment_cost_cpu.json"
#: The speed records notebook 03 times itself (``model_speed_<scale>_cpu.json``).
CPU_SPEED_SCALES: tuple[str, ...] = ("recipe", "paper")


def _load(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def _committed(pattern: str) -> list[Path]:
    """The committed timing records (``figures/timings/``) matching ``pattern``, by name."""
    return sorted(timings_dir("default").glob(pattern))


def _write(
    fig, table: str, findings: list[str], name: str, profile: str, source: str, headline: str
):
    """One question's three outputs, its findings headed by ``headline``; the figure is closed
    after saving."""
    import matplotlib.pyplot as plt

    paths = save_stem(f"{TIMINGS}/{name}", table, fig, findings, headline, profile, source=source)
    plt.close(fig)
    return paths


def _factor(value: float) -> str:
    """A ratio to at most 3 significant digits: 245, 22.1, 1.06."""
    if value >= 99.95:
        return f"{value:.0f}"
    return f"{value:.1f}" if value >= 9.995 else f"{value:.2f}"


def _span(values: Sequence[float]) -> str:
    """``low-high`` of ``values`` (:func:`_factor`), one value where both read alike."""
    low, high = _factor(min(values)), _factor(max(values))
    return low if low == high else f"{low}-{high}"


def _short(model: str) -> str:
    """A model's label without its parenthesis: ``ATSS-YOLACT (GmaIoU)`` -> ``ATSS-YOLACT``."""
    return model.split(" (")[0]


# ----------------------------------------------------------------------------- assignment


def assignment_runs(profile: str = "default") -> tuple[list[AssignBenchmark], str]:
    """The runs of the profile's :data:`ASSIGNMENT_RECORD` and of every committed GPU record,
    and the data they timed (for the stamp).

    Raises:
        FileNotFoundError: the profile has no CPU record (run notebook 03).
    """
    path = timings_dir(profile) / ASSIGNMENT_RECORD
    if not path.is_file():
        raise FileNotFoundError(f"no {path}: notebook 03 writes it")
    record = _load(path)
    runs = load_runs(record)
    sources = [record.get("source", "")]
    for gpu in _committed("assignment_cost_cuda*.json"):
        runs += load_runs(_load(gpu))
        sources.append(f"GPU record {gpu.name}")
    return runs, "; ".join(s for s in sources if s)


def _median_ms(runs: Sequence[AssignBenchmark]) -> dict[tuple[str, int, str], dict[str, float]]:
    """(dataset, size, setting) -> method -> the median ms per image over the runs."""
    values: dict[tuple[str, int, str], dict[str, list[float]]] = {}
    for run in runs:
        for row in run.rows:
            key = (row["dataset"], row["size"], run.setting)
            values.setdefault(key, {}).setdefault(row["method"], []).append(row["ms_per_image"])
    return {k: {m: median(v) for m, v in ms.items()} for k, ms in values.items()}


def assignment_cost_headline(runs: Sequence[AssignBenchmark]) -> str:
    """How much faster Alg. 1 builds the GmaIoU matrix than brute force and than full-image
    tables: the range of the ratios of medians over every dataset, size and setting timed."""
    ms = _median_ms(runs).values()
    parts = []
    texts = ("faster than brute force", "faster than full-image tables")
    for other, text in zip((_BRUTE, _FULL), texts):
        factors = [t[other] / t[_ALG1] for t in ms if other in t and t.get(_ALG1)]
        if factors:
            parts.append(f"{_span(factors)}x {text}")
    if not parts:
        return "no run timed Alg. 1 against brute force or full-image tables"
    return f"Alg. 1 builds the GmaIoU matrix {' and '.join(parts)}"


#: The goals of :data:`GOALS` in short for the headline (``{}``: the sense and the goal).
_GOAL_SHORT = {
    "ATSS GmaIoU / ATSS IoU": "ATSS GmaIoU/IoU {}",
    "full-image / Alg. 1": "tables/Alg. 1 {}",
    "Alg. 1 / box IoU": "Alg. 1/IoU {}",
}


def assignment_goals_headline(runs: Sequence[AssignBenchmark]) -> str:
    """In how many timings (a run at a size) each goal of :data:`GOALS` was met, on the CPU and
    on a GPU apart."""
    counts: dict[str, dict[str, list[int]]] = {}
    for run in runs:
        where = "CPU" if run.device_type == "cpu" else "GPU"
        for row in run.goal_ratios():
            for name in GOALS:
                met, total = counts.setdefault(where, {}).setdefault(name, [0, 0])
                counts[where][name] = [met + bool(row[f"{name} met"]), total + 1]
    if not counts:
        return "no timing of the goals' methods"
    parts = [
        ", ".join(f"{met}/{total}" for met, total in counts[where].values()) + f" {where}"
        for where in ("CPU", "GPU")
        if where in counts
    ]
    goals = ", ".join(
        _GOAL_SHORT.get(name, name + " {}").format(f"{'≤' if sense == '<=' else '≥'} {goal:g}")
        for name, (_, _, sense, goal) in GOALS.items()
    )
    return f"Goals met in {' and '.join(parts)} timings: {goals}"


def write_assignment(runs: Sequence[AssignBenchmark], profile: str, source: str) -> list[Path]:
    """``assignment_cost`` and ``assignment_goals``: table, figure and findings of each."""
    paths = _write(
        plot_assignment_cost(runs),
        format_assignment_cost(runs),
        assignment_cost_findings(runs),
        "assignment_cost",
        profile,
        source,
        assignment_cost_headline(runs),
    )
    return paths + _write(
        plot_assignment_goals(runs),
        format_assignment_goals(runs),
        assignment_goals_findings(runs),
        "assignment_goals",
        profile,
        source,
        assignment_goals_headline(runs),
    )


# ----------------------------------------------------------------------------- model speed


def model_speed_records(profile: str = "default") -> dict[str, dict[str, Any]]:
    """File name -> record: the profile's CPU records of :data:`CPU_SPEED_SCALES` and every
    committed GPU record (``model_speed_*_cuda.json``, Table 5's scale included)."""
    paths = [timings_dir(profile) / f"model_speed_{scale}_cpu.json" for scale in CPU_SPEED_SCALES]
    paths = [p for p in paths if p.is_file()] + _committed("model_speed_*_cuda.json")
    return {p.name: _load(p) for p in paths}


def model_speed_headline(
    records: Sequence[Mapping[str, Any]], reference: str = "yolact-fixed"
) -> str:
    """Each model's inference time per image against YOLACT (fixed IoU) in the same record and
    size: the range over every record and size, and how many such timings it spans."""
    ratios: dict[str, list[float]] = {}
    devices = set()
    for record in records:
        for block in record["scales"]:
            rows = {r["key"]: r for r in block["models"]}
            ref = rows.get(reference)
            if ref is None:
                continue
            devices.add(record.get("device_type", "cpu"))
            for key, r in rows.items():
                if key != reference:
                    ratio = r["total_ms_per_image"] / ref["total_ms_per_image"]
                    ratios.setdefault(_short(r["model"]), []).append(ratio)
    if not ratios:
        return "no record times a model beside YOLACT (fixed IoU)"
    timings = max(len(v) for v in ratios.values())
    where = " and ".join(d.upper() if d == "cpu" else "GPU" for d in sorted(devices))
    return (
        "Time per image against YOLACT: "
        + ", ".join(f"{model} {_span(values)}x" for model, values in ratios.items())
        + f" ({timings} timings, {where})"
    )


def write_model_speed(records: dict[str, dict[str, Any]], profile: str) -> list[Path]:
    """``model_speed``: the records' table, figure and findings."""
    from gmaiou.paper.benchmarks.train import (
        describe_data,
        format_model_speed,
        model_speed_findings,
        plot_speed,
    )

    if not records:
        raise ValueError("no model speed record: run notebook 03 or gmaiou-paper bench train")
    values = list(records.values())
    data = "; ".join(dict.fromkeys(describe_data(r) for r in values))
    source = f"{data}; records {', '.join(records)}"
    return _write(
        plot_speed(values),
        format_model_speed(values),
        model_speed_findings(values),
        "model_speed",
        profile,
        source,
        model_speed_headline(values),
    )


# ----------------------------------------------------------------------------- trained inference


def trained_inference_records() -> dict[str, dict[str, Any]]:
    """``cpu``, ``cuda_atss``, ... -> record: every committed ``trained_inference_*.json``."""
    prefix = "trained_inference_"
    return {p.stem[len(prefix) :]: _load(p) for p in _committed(f"{prefix}*.json")}


def trained_inference_headline(
    records: Mapping[str, Mapping[str, Any]], reference: str = "yolact-fixed-"
) -> str:
    """With trained weights: the GmaIoU models' inference time per image against YOLACT (fixed
    IoU) in the same record (each device's default mask assembly), the range over the records,
    and their mask AP against YOLACT's (record ``cpu`` where present)."""
    from gmaiou.models.postprocess import pastes_in_box
    from gmaiou.paper.benchmarks.train import MODELS

    wanted = [k for k in MODELS if not reference.startswith(k)]
    ratios: dict[str, list[float]] = {}
    for record in records.values():
        post = (
            "post_ms_per_image"
            if pastes_in_box(record["device_type"])
            else "post_full_upsampling_ms_per_image"
        )
        ref = next((r for r in record["trained"] if r["config"].startswith(reference)), None)
        if ref is None:
            continue
        for r in record["trained"]:
            key = next((k for k in wanted if r["config"].startswith(f"{k}-")), None)
            if key is not None:
                ratio = (r["network_ms_per_image"] + r[post]) / (
                    ref["network_ms_per_image"] + ref[post]
                )
                ratios.setdefault(key, []).append(ratio)
    if not ratios:
        return "no record times a GmaIoU model beside YOLACT (fixed IoU)"
    order = [k for k in wanted if k in ratios]
    text = "Trained, time per image vs YOLACT: " + ", ".join(
        f"{_short(MODELS[k])} {_span(ratios[k])}x" for k in order
    )
    ap_record = records.get("cpu") or next(iter(records.values()))
    aps = {r["config"]: r["mask_ap"] for r in ap_record["trained"]}
    ref_ap = next((v for c, v in aps.items() if c.startswith(reference)), None)
    mine = [v for k in order for c, v in aps.items() if c.startswith(f"{k}-")]
    if ref_ap is not None and len(mine) == len(order):
        text += f"; mask AP {', '.join(f'{v:.1f}' for v in mine)} vs {ref_ap:.1f}"
    return text


def write_trained_inference(records: dict[str, dict[str, Any]], profile: str) -> list[Path]:
    """``trained_inference``: the records' table, figure and findings."""
    from gmaiou.paper.benchmarks.infer import (
        format_trained_inference,
        plot_trained_inference,
        trained_inference_findings,
    )

    if not records:
        raise ValueError("no trained-weights record: run gmaiou-paper bench infer --run ...")
    data = sorted(
        {
            f"{r.get('data', '?')} ({rec['split']})"
            for rec in records.values()
            for r in rec["trained"]
        }
    )
    source = f"trained runs on {', '.join(data)}; records " + ", ".join(
        f"trained_inference_{name}.json" for name in records
    )
    return _write(
        plot_trained_inference(records),
        format_trained_inference(records),
        trained_inference_findings(records),
        "trained_inference",
        profile,
        source,
        trained_inference_headline(records),
    )


# ----------------------------------------------------------------------------- all of them


def refresh(profile: str = "default") -> list[Path]:
    """Rewrite every question from the records present (the profile's and the committed
    ones), timing nothing; a question without a record is left as it is."""
    paths: list[Path] = []
    if (timings_dir(profile) / ASSIGNMENT_RECORD).is_file():
        runs, source = assignment_runs(profile)
        paths += write_assignment(runs, profile, source)
    speed = model_speed_records(profile)
    if speed:
        paths += write_model_speed(speed, profile)
    trained = trained_inference_records()
    if trained:
        paths += write_trained_inference(trained, profile)
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gmaiou.paper.benchmarks.timings",
        description="Rewrite the timing questions of figures/timings/ from their JSON records.",
    )
    parser.add_argument("--profile", default="default", help="default: %(default)s")
    args = parser.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    for path in refresh(args.profile):
        print(f"written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
