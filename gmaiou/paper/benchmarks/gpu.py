"""``gmaiou-paper bench gpu``: every check that only a GPU can make, in one command.

A GPU may be lent for minutes at a time, so the checks run as one prepared sequence,
the most important first, each step in its own process with its own time limit
(:data:`STEP_LIMITS`, seconds; without ``--run`` they sum to under five minutes); a step
that fails or runs out of time is recorded and the next one starts:

1. ``pytest -m cuda``: the CUDA tests (CUDA equals the CPU for the measure, the
   assigners, half precision, a training step, inference and mask assembly; the loss after
   assignment, forward and backward, runs under ``torch.cuda.set_sync_debug_mode("error")``:
   no host-device synchronisation);
2. ``gmaiou-paper bench infer --run ...``, only with ``--run``: trained models' network and
   post-processing time and fps, both mask assemblies scored
   (-> ``trained_inference_<device>.json``);
3. ``gmaiou-paper bench assign``: the overlap and assignment times and the ratios of Table 4,
   ATSS GmaIoU / ATSS IoU among them (-> ``assignment_cost_<device>.json``);
4. ``gmaiou-paper bench train --scale paper --trainer-settings``: GmaYOLACT, ATSS-YOLACT and
   YOLACT, ResNet-50 at 550 px, batch 8, each training step timed as ``gmaiou train`` takes
   it (float16 autocast, gradient scaler, TF32, cudnn.benchmark), with images/s, peak GPU
   memory, host-device syncs per step and the estimated minutes per COCO epoch; then the
   same after up to :data:`TRAINED_IN_ITERS` iterations of training on the COCO sample
   (stopped after :data:`TRAINED_IN_SECONDS`), and inference fps
   (-> ``model_speed_paper_<device>.json``);
5. ``gmaiou-paper bench train --scale table5``: ResNet-50 inference fps at 400, 550 and
   700 px (-> ``model_speed_table5_<device>.json``).

The records are JSON with the device's name and torch's version; notebook 03 folds them into
the timing tables beside the CPU's (:mod:`gmaiou.paper.benchmarks.timings`). Each step's
command, exit status and seconds go to ``gpu_checks_<device>.json`` in ``--out-dir``
(default ``figures/timings/``, under ``$GMAIOU_FIGURES`` as for the other benchmarks).
``--device cpu --profile smoke`` runs the same sequence on the CPU in seconds (the tests
check that the sequence works where no GPU is).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from gmaiou.paper.benchmarks import device_name, write_record
from gmaiou.paper.paths import repo_root, timings_dir

__all__ = [
    "GPU_RECORDS",
    "STEP_LIMITS",
    "Step",
    "TRAINED_IN_ITERS",
    "TRAINED_IN_SECONDS",
    "gpu_findings",
    "gpu_records",
    "gpu_steps",
    "run_steps",
    "sync_findings",
]

#: Seconds each step may take. The default sequence (no ``--run``: no ``infer`` step) sums
#: to under five minutes of an H100: the paper step's own estimate is about 90 s (imports,
#: batches, three ResNet-50s, cuDNN autotuning, two timings, the training in between).
STEP_LIMITS: dict[str, float] = {
    "tests": 60.0,
    "infer": 90.0,
    "assign": 60.0,
    "paper": 125.0,
    "table5": 40.0,
}
#: Iterations of training before the paper step's second timing, and its limit in seconds.
TRAINED_IN_ITERS = 200
TRAINED_IN_SECONDS = 40.0


@dataclasses.dataclass(frozen=True)
class Step:
    """One command of the sequence and the seconds it may take."""

    name: str
    argv: tuple[str, ...]
    timeout_s: float


def _tag(device: str) -> str:
    return device.split(":")[0]


def gpu_steps(
    out_dir: Path,
    runs: Sequence[str],
    device: str = "cuda",
    profile: str = "paper",
    data: str | None = None,
    batch_size: int = 8,
    timeouts: dict[str, float] | None = None,
) -> list[Step]:
    """The sequence for ``device``: tests, trained inference, assignment, training speed."""
    py = (sys.executable, "-m")
    tag = _tag(device)
    limits = {**STEP_LIMITS, **(timeouts or {})}
    smoke = profile == "smoke"
    tests = (
        "tests/lib/test_cuda.py",
        "tests/lib/test_loss_syncs.py",
        "tests/lib/test_measure.py",
        "tests/lib/test_assigners.py",
    )
    root = repo_root()
    pytest = (*py, "pytest", "-q", "-p", "no:cacheprovider", "-m", "cuda")
    steps = [Step("tests", (*pytest, *(str(root / t) for t in tests)), limits["tests"])]
    if runs:
        infer = [*py, "gmaiou.paper", "bench", "infer", "--device", device, "--no-progress"]
        infer += [a for run in runs for a in ("--run", run)]
        infer += ["--out", str(out_dir / f"trained_inference_{tag}.json")]
        if data is not None:
            infer += ["--data", data]
        if smoke:
            infer += ["--eval-images", "2", "--warmup", "1"]
        steps.append(Step("infer", tuple(infer), limits["infer"]))
    assign = [*py, "gmaiou.paper", "bench", "assign", "--device", device, "--profile", profile]
    assign += ["--images", "2" if smoke else "30", "--repeats", "1" if smoke else "3"]
    assign += ["--bruteforce-images", "1"]
    assign += ["--out", str(out_dir / f"assignment_cost_{tag}.json")]
    steps.append(Step("assign", tuple(assign), limits["assign"]))
    for scale in ("paper", "table5"):
        train = [*py, "gmaiou.paper", "bench", "train", "--scale", scale, "--device", device]
        train += ["--profile", profile, "--no-progress"]
        if scale == "paper":
            if not smoke:
                train += ["--batch-size", str(batch_size)]
            # gmaiou train's own step, also where the dry run is on the CPU
            train += [
                "--trainer-settings",
                "--trained-in-iters",
                str(2 if smoke else TRAINED_IN_ITERS),
            ]
            train += ["--trained-in-seconds", f"{TRAINED_IN_SECONDS:g}"]
        stem = f"model_speed_{scale}"
        stem += "_smoke" if smoke else ""
        train += ["--out", str(out_dir / f"{stem}_{tag}.json")]
        steps.append(Step(scale, tuple(train), limits[scale]))
    return steps


def run_steps(steps: Sequence[Step], log: Path | None = None) -> list[dict]:
    """Run the steps in order, each in its own process; one failing does not stop the rest."""
    results = []
    for step in steps:
        print(f"== {step.name}: {' '.join(step.argv)}", flush=True)
        start = time.perf_counter()
        try:
            rc = subprocess.run(step.argv, timeout=step.timeout_s).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
        seconds = time.perf_counter() - start
        print(f"== {step.name}: exit {rc} after {seconds:.0f} s", flush=True)
        results.append({"step": step.name, "argv": list(step.argv), "exit": rc, "s": seconds})
        if log is not None:
            write_record(log, {"steps": results})
    return results


def run(args: argparse.Namespace) -> int:
    # The records of a lent GPU are committed (figures/timings/); a smoke run's are not.
    default_dir = timings_dir("smoke" if args.profile == "smoke" else "default")
    out_dir = Path(args.out_dir) if args.out_dir else default_dir
    runs = args.run or []  # the infer step only for the runs named
    steps = gpu_steps(out_dir, runs, args.device, args.profile, args.data, args.batch_size)
    if args.only:
        steps = [s for s in steps if s.name in args.only]
    log = out_dir / f"gpu_checks_{_tag(args.device)}.json"
    results = run_steps(steps, log)
    write_record(log, {"device": device_name(args.device), "steps": results})
    failed = [r["step"] for r in results if r["exit"] != 0]
    print(f"written {log}; " + (f"failed: {', '.join(failed)}" if failed else "every step passed"))
    return 1 if failed else 0


#: The records ``gmaiou-paper bench gpu`` writes, as glob patterns (``<device>`` is ``cuda``).
GPU_RECORDS: tuple[str, ...] = (
    "trained_inference_cuda*.json",
    "assignment_cost_cuda*.json",
    "model_speed_*_cuda.json",
)


def gpu_records(folder: Path) -> list[Path]:
    """The GPU records present in ``folder``, in :data:`GPU_RECORDS`' order."""
    return [p for pattern in GPU_RECORDS for p in sorted(Path(folder).glob(pattern))]


def sync_findings(record: dict) -> list[str]:
    """Per scale of a ``bench train`` record timed with the trainer's settings on CUDA: the
    host-device synchronisations of one training step per model (CUDA's sync debug mode),
    and again after the training in between when it was timed. None where not counted."""
    lines = []
    for block in record.get("scales", []):
        rows = block.get("models", [])
        first = [(r["model"], r.get("train_host_syncs_per_step")) for r in rows]
        first = [(m, n) for m, n in first if n is not None]
        if not first:
            continue
        line = (
            f"{record['device']}, {block['size']} px: host-device synchronisations in one "
            "training step (gmaiou train's step, assignment included; CUDA's sync debug mode): "
            + ", ".join(f"{m} {n}" for m, n in first)
        )
        again = [(r["model"], (r.get("trained_in") or {}).get("host_syncs_per_step")) for r in rows]
        again = [(m, n) for m, n in again if n is not None]
        iterations = (block.get("trained_in") or {}).get("iterations")
        if again and iterations is not None:
            line += f"; after {iterations} iterations of training: " + ", ".join(
                f"{m} {n}" for m, n in again
            )
        lines.append(line + ".")
    return lines


def gpu_findings(folder: Path) -> list[str]:
    """Sentences computed from the GPU records in ``folder`` (and the CPU inference record
    ``trained_inference_cpu.json``): both mask assemblies and the CPU's fps of every trained
    model, where each assignment goal was met, and the host-device synchronisations of a
    training step (:func:`sync_findings`)."""
    from gmaiou.paper.benchmarks.assign import assignment_goals_findings, load_runs
    from gmaiou.paper.benchmarks.infer import assembly_findings, versus_cpu_findings

    folder = Path(folder)
    cpu_path = folder / "trained_inference_cpu.json"
    cpu = json.loads(cpu_path.read_text()) if cpu_path.is_file() else None
    lines: list[str] = []
    for path in sorted(folder.glob("trained_inference_cuda*.json")):
        record = json.loads(path.read_text())
        lines += assembly_findings(record) + versus_cpu_findings(record, cpu)
    for path in sorted(folder.glob("assignment_cost_cuda*.json")):
        lines += assignment_goals_findings(load_runs(json.loads(path.read_text())))
    for path in sorted(folder.glob("model_speed_*_cuda*.json")):
        lines += sync_findings(json.loads(path.read_text()))
    return lines


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "gpu",
        help="every GPU check in one command: CUDA tests, trained inference, assignment, "
        "training speed",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--device", default="cuda", help="cuda or cuda:N (cpu: a dry run)")
    p.add_argument("--profile", default="paper", help="iterations of the benchmarks")
    p.add_argument(
        "--run",
        action="append",
        help="trained run folder for bench infer (repeat; without it there is no infer step; "
        "with it the sequence may take longer than five minutes)",
    )
    p.add_argument("--data", help="dataset the trained runs are evaluated on (default: theirs)")
    p.add_argument("--batch-size", type=int, default=8, help="paper-scale training batch")
    p.add_argument(
        "--only", nargs="+", help="run only these steps (tests infer assign paper table5)"
    )
    p.add_argument(
        "--out-dir", help="where the records go (default figures/timings/, under $GMAIOU_FIGURES)"
    )
    p.set_defaults(func=run)
