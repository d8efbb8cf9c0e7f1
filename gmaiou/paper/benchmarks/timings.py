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
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gmaiou.paper.benchmarks.assign import (
    AssignBenchmark,
    assignment_cost_findings,
    assignment_goals_findings,
    format_assignment_cost,
    format_assignment_goals,
    load_runs,
    plot_assignment_cost,
    plot_assignment_goals,
)
from gmaiou.paper.figures import save_figure, save_findings, save_table
from gmaiou.paper.paths import TIMINGS, timings_dir

__all__ = [
    "ASSIGNMENT_RECORD",
    "QUESTIONS",
    "assignment_runs",
    "main",
    "model_speed_records",
    "refresh",
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


def _write(fig, table: str, findings: list[str], name: str, profile: str, source: str):
    """One question's three outputs; the figure is closed after saving."""
    import matplotlib.pyplot as plt

    name = f"{TIMINGS}/{name}"
    paths = [save_table(table, name, profile, source=source)]
    paths += save_figure(fig, name, profile, source=source)
    plt.close(fig)
    paths.append(save_findings(findings, name, profile, source=source))
    return paths


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


def write_assignment(runs: Sequence[AssignBenchmark], profile: str, source: str) -> list[Path]:
    """``assignment_cost`` and ``assignment_goals``: table, figure and findings of each."""
    paths = _write(
        plot_assignment_cost(runs),
        format_assignment_cost(runs),
        assignment_cost_findings(runs),
        "assignment_cost",
        profile,
        source,
    )
    return paths + _write(
        plot_assignment_goals(runs),
        format_assignment_goals(runs),
        assignment_goals_findings(runs),
        "assignment_goals",
        profile,
        source,
    )


# ----------------------------------------------------------------------------- model speed


def model_speed_records(profile: str = "default") -> dict[str, dict[str, Any]]:
    """File name -> record: the profile's CPU records of :data:`CPU_SPEED_SCALES` and every
    committed GPU record (``model_speed_*_cuda.json``, Table 5's scale included)."""
    paths = [timings_dir(profile) / f"model_speed_{scale}_cpu.json" for scale in CPU_SPEED_SCALES]
    paths = [p for p in paths if p.is_file()] + _committed("model_speed_*_cuda.json")
    return {p.name: _load(p) for p in paths}


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
    )


# ----------------------------------------------------------------------------- trained inference


def trained_inference_records() -> dict[str, dict[str, Any]]:
    """``cpu``, ``cuda_atss``, ... -> record: every committed ``trained_inference_*.json``."""
    prefix = "trained_inference_"
    return {p.stem[len(prefix) :]: _load(p) for p in _committed(f"{prefix}*.json")}


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
