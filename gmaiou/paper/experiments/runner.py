"""Train a grid of runs one at a time and keep each finished run as a small JSON record.

A run is a :class:`RunSpec`: a preset, training overrides and ``--set`` settings, a seed
and a :class:`SyntheticData` set. :func:`run_one` trains it into ``runs/<profile>/<grid>/<id>/``
(resuming an interrupted run from its checkpoint), evaluates it on the val split and writes

    figures/runs/<profile>/<grid>/<id>.json

with the config, the final COCO metrics (box and mask AP family, oLRP and components), the
training time and iterations, the commit, the machine, and under ``command`` the exact
commands that re-create the dataset and the run from nothing (a JSON list of argument lists,
run in order from the repository root). A run whose record exists is skipped unless forced,
so notebooks re-plot from the records in seconds and a long grid is completed across sittings.

Paired seeds: seed ``s`` seeds the model initialisation, the sample order and the
augmentation draws the same way for every preset, so two assigners trained with the same
seed see the same images in the same order with the same augmentation, and start from the
same backbone and FPN weights.

A run with ``curve_points = K`` is trained in ``K`` chunks of its schedule (the schedule is
that of the whole run: chunks are resumes, not shorter schedules) and evaluated after each,
which gives its learning curve: mask and box AP against iterations and training minutes.

Once its record is written, a run's checkpoint keeps the weights only (the optimizer state,
two thirds of the file, is dropped): the run is never resumed again, and evaluation, the
speed benchmarks and the per-anchor loss analysis load weights alone.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from gmaiou.paper.paths import figures_dir, repo_root

__all__ = [
    "RunSpec",
    "SyntheticData",
    "load_records",
    "record_path",
    "run_grid",
    "run_one",
]

RECORD_VERSION = 1


@dataclass(frozen=True)
class SyntheticData:
    """A synthetic dataset, generated on first use under ``<repo>/data/`` (see ``gmaiou data synth``).

    Attributes:
        images: train + val images (a fifth is val).
        size: image side in pixels.
        seed: dataset seed.
        mix: class odds, ``uniform`` (the default set) or ``coco`` (COCO's share of low-MOB boxes).
    """

    images: int
    size: int
    seed: int = 0
    mix: str = "uniform"

    @property
    def name(self) -> str:
        return f"synth-{self.mix}-{self.images}x{self.size}-data{self.seed}"

    @property
    def folder(self) -> str:
        """The dataset folder, relative to the repository root."""
        return f"data/{self.name}"

    def command(self) -> list[str]:
        """The ``gmaiou data synth`` command that writes this set into :attr:`folder`."""
        return [
            "python", "-m", "gmaiou", "data", "synth", "--out", self.folder,
            "--images", str(self.images), "--size", str(self.size), "--seed", str(self.seed),
            "--mix", self.mix,
        ]  # fmt: skip

    def ensure(self, root: Path) -> Path:
        """The dataset folder under ``root``, generated (atomically) if absent."""
        from gmaiou.data.synthetic import generate_atomically

        path = root / self.folder
        if (path / "annotations").is_dir():
            return path
        return generate_atomically(
            path, self.images, self.size, self.seed, progress=False, mix=self.mix
        )


@dataclass(frozen=True)
class RunSpec:
    """One training run of a grid.

    Attributes:
        grid: the grid's name (a folder of records).
        profile: the profile the grid belongs to (``smoke``, ``quick``, ``default``, ...).
        preset: the config preset (``gmaiou configs``).
        seed: the run's seed (paired across presets).
        data: the dataset.
        label: what the run stands for in tables (e.g. the assigner), default the preset.
        variant: a short tag for runs that differ from the preset by ``settings`` or overrides.
        epochs, batch_size, lr: ``gmaiou train`` overrides (``None``: the preset's).
        settings: ``--set section.field=value`` settings.
        curve_points: evaluate at this many evenly spaced points of the schedule (0: at the end only).
        workers: data-loader workers.
    """

    grid: str
    profile: str
    preset: str
    seed: int
    data: SyntheticData
    label: str = ""
    variant: str = ""
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    settings: tuple[str, ...] = ()
    curve_points: int = 0
    workers: int = 2
    max_iters: int | None = field(default=None)

    @property
    def run_id(self) -> str:
        variant = f"+{self.variant}" if self.variant else ""
        return f"{self.preset}{variant}-{self.data.name}-seed{self.seed}"

    def overrides(self) -> dict[str, Any]:
        given = {"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr}
        return {k: v for k, v in given.items() if v is not None}

    def config(self):
        """The resolved :class:`~gmaiou.configs.Config` (preset + overrides + settings)."""
        from gmaiou.configs import apply_settings, get_config
        from gmaiou.training.trainer import apply_overrides

        return apply_settings(
            apply_overrides(get_config(self.preset), self.overrides()), self.settings
        )

    def run_dir(self, root: Path) -> Path:
        return root / "runs" / self.profile / self.grid / self.run_id

    def train_command(self, device: str | None = None) -> list[str]:
        """The ``gmaiou train`` command that trains this run into ``runs/...`` from the repository root."""
        cmd = [
            "python", "-m", "gmaiou", "train", "--config", self.preset, "--data", self.data.folder,
            "--out", f"runs/{self.profile}/{self.grid}/{self.run_id}", "--seed", str(self.seed),
            "--workers", str(self.workers),
        ]  # fmt: skip
        for key, value in self.overrides().items():
            cmd += [f"--{key.replace('_', '-')}", str(value)]
        for setting in self.settings:
            cmd += ["--set", setting]
        if self.max_iters is not None:
            cmd += ["--max-iters", str(self.max_iters)]
        if device:
            cmd += ["--device", device]
        return cmd


def record_path(spec: RunSpec, figures: Path | None = None) -> Path:
    """Where ``spec``'s record lives: ``<figures>/runs/<profile>/<grid>/<id>.json``."""
    base = figures if figures is not None else figures_dir(spec.profile)
    return base / "runs" / spec.profile / spec.grid / f"{spec.run_id}.json"


def _commit(root: Path) -> str | None:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "gmaiou"],
            cwd=root, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{head}-dirty" if dirty else head


def _device_name(device: torch.device) -> str:
    from gmaiou.paper.benchmarks import device_name

    return device_name(device)


def _train_seconds(run_dir: Path, up_to: int | None = None) -> float:
    """Training time from ``metrics.jsonl``: the sum of the iterations' wall times (data included)."""
    total = 0.0
    with open(run_dir / "metrics.jsonl") as handle:
        for line in handle:
            row = json.loads(line)
            if up_to is None or row["iteration"] <= up_to:
                total += row["time"]
    return total


def _chunk_ends(total_iters: int, points: int, max_iters: int | None) -> list[int]:
    end = total_iters if max_iters is None else min(max_iters, total_iters)
    if points <= 1:
        return [end]
    ends = sorted({max(1, round(end * k / points)) for k in range(1, points + 1)})
    return ends


def _train_chunks(spec: RunSpec, root: Path, device: str | None, progress: bool) -> dict[str, Any]:
    """Train ``spec`` (resuming what exists) and evaluate after each chunk; the curve and final metrics."""
    from gmaiou.training.trainer import RunOptions, train

    run_dir = spec.run_dir(root)
    data_root = spec.data.ensure(root)
    config = spec.config()
    n_train = _count_images(data_root)
    iters_per_epoch = math.ceil(n_train / config.train.batch_size)
    total = config.train.epochs * iters_per_epoch
    curve = []
    for end in _chunk_ends(total, spec.curve_points, spec.max_iters):
        resume = _resumable(run_dir)
        options = RunOptions(
            out_dir=run_dir,
            data_root=data_root,
            device=device,
            seed=spec.seed,
            resume=resume,
            overwrite=not resume and run_dir.exists(),
            max_iters=end,
            ckpt_every=200,
            num_workers=spec.workers,
            progress=progress,
        )
        overrides = {
            **spec.overrides(),
            **({"settings": list(spec.settings)} if spec.settings else {}),
        }
        with warnings.catch_warnings():
            # One-core machines: torch suggests fewer loader workers than the recipe's 2.
            warnings.filterwarnings("ignore", message="This DataLoader will create")
            result = train(config, options, config_name=spec.preset, overrides=overrides)
        seconds = _train_seconds(run_dir, up_to=result.iterations)
        curve.append(
            {
                "iteration": result.iterations,
                "epoch": result.iterations / iters_per_epoch,
                "train_seconds": seconds,
                "segm": result.metrics["segm"],
                "bbox": result.metrics["bbox"],
            }
        )
        device_used = next(result.model.parameters()).device
    return {
        "config": config,
        "curve": curve,
        "iterations": curve[-1]["iteration"],
        "total_iterations": total,
        "iters_per_epoch": iters_per_epoch,
        "device": device_used,
    }


def _resumable(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds an interrupted run; a finished run's weights whose record
    was deleted are trained again (deleting a record is how one asks for that run anew)."""
    from gmaiou.training.checkpoint import has_training_state, load_checkpoint
    from gmaiou.training.trainer import CHECKPOINT_FILE

    checkpoint = run_dir / CHECKPOINT_FILE
    if not checkpoint.is_file():
        return False
    if has_training_state(load_checkpoint(checkpoint)):
        return True
    warnings.warn(
        f"{run_dir} holds a finished run's weights but its record is gone: training it again",
        stacklevel=3,
    )
    return False


def _keep_weights_only(run_dir: Path) -> None:
    """Drop a finished run's optimizer state: it is never resumed (its record exists), and
    the analyses need only its weights; a grid's checkpoints then take a third of the disk."""
    from gmaiou.training.checkpoint import drop_training_state
    from gmaiou.training.trainer import CHECKPOINT_FILE

    checkpoint = run_dir / CHECKPOINT_FILE
    if checkpoint.is_file():
        drop_training_state(checkpoint)


def _count_images(data_root: Path) -> int:
    from gmaiou.data import find_split

    _, ann_file = find_split(data_root, "train")
    with open(ann_file) as handle:
        return len(json.load(handle)["images"])


def run_one(
    spec: RunSpec,
    root: Path | None = None,
    figures: Path | None = None,
    force: bool = False,
    device: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train and evaluate ``spec`` unless its record exists (or ``force``); returns the record.

    ``root`` is the repository root (datasets under ``data/``, run folders under ``runs/``);
    ``figures`` the figures folder (default :func:`gmaiou.paper.paths.figures_dir` of the profile).
    An interrupted run resumes from its last checkpoint; ``force`` retrains from scratch.
    """
    from gmaiou.training.trainer import _jsonable

    root = Path(root) if root is not None else repo_root()
    path = record_path(spec, figures)
    if path.is_file() and not force:
        return json.loads(path.read_text())
    run_dir = spec.run_dir(root)
    if force and run_dir.exists():
        shutil.rmtree(run_dir)
    started = time.time()
    outcome = _train_chunks(spec, root, device, progress)
    final = outcome["curve"][-1]
    dev = outcome["device"]
    record = {
        "version": RECORD_VERSION,
        "id": spec.run_id,
        "grid": spec.grid,
        "profile": spec.profile,
        "preset": spec.preset,
        "label": spec.label or spec.preset,
        "variant": spec.variant,
        "seed": spec.seed,
        "data": dataclasses.asdict(spec.data),
        "overrides": spec.overrides(),
        "settings": list(spec.settings),
        "config": outcome["config"].to_dict(),
        "metrics": {"segm": final["segm"], "bbox": final["bbox"]},
        "curve": outcome["curve"] if len(outcome["curve"]) > 1 else [],
        "iterations": outcome["iterations"],
        "total_iterations": outcome["total_iterations"],
        "iters_per_epoch": outcome["iters_per_epoch"],
        "train_seconds": final["train_seconds"],
        "wall_seconds": time.time() - started,
        "device": str(dev),
        "device_name": _device_name(dev),
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "commit": _commit(root),
        "command": [spec.data.command(), spec.train_command(device)],
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(_jsonable(record), indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)
    _keep_weights_only(run_dir)
    return record


def _force_from_env() -> bool:
    """``GMAIOU_FORCE=1`` (``make reproduce FORCE=1``): notebooks retrain runs whose record exists."""
    return os.environ.get("GMAIOU_FORCE", "").strip().lower() in ("1", "true", "yes")


def _recorded_only_from_env() -> bool:
    """``GMAIOU_RECORDED_ONLY=1`` (``make reproduce RECORDED=1``): notebooks plot the runs
    that have a record and train nothing (a grid being completed across sittings)."""
    return os.environ.get("GMAIOU_RECORDED_ONLY", "").strip().lower() in ("1", "true", "yes")


def run_grid(
    specs: Sequence[RunSpec],
    root: Path | None = None,
    figures: Path | None = None,
    force: bool | None = None,
    device: str | None = None,
    parallel: int = 1,
    progress: bool = True,
    recorded_only: bool | None = None,
) -> list[dict[str, Any]]:
    """Run every spec (one at a time, or ``parallel`` subprocesses at once on a GPU machine).

    Records that exist are skipped unless ``force`` (``None``: the ``GMAIOU_FORCE``
    environment variable, which ``make reproduce FORCE=1`` sets). With ``parallel > 1`` each
    run is a ``gmaiou-paper experiment ... --only ID`` subprocess, so runs share nothing but the device.
    With ``recorded_only`` (``None``: the ``GMAIOU_RECORDED_ONLY`` environment variable) nothing
    is trained: the records that exist are returned and the missing runs are named on stderr.
    """
    if recorded_only is None:
        recorded_only = _recorded_only_from_env()
    if recorded_only:
        have = [s for s in specs if record_path(s, figures).is_file()]
        missing = [s.run_id for s in specs if s not in have]
        if missing:
            print(
                f"recorded only: {len(missing)} of {len(specs)} runs have no record and are "
                f"left out: {', '.join(missing)}",
                file=sys.stderr,
            )
        return [json.loads(record_path(s, figures).read_text()) for s in have]
    if force is None:
        force = _force_from_env()
    if parallel <= 1:
        return [run_one(s, root, figures, force, device, progress) for s in specs]
    todo = [s for s in specs if force or not record_path(s, figures).is_file()]
    root_path = Path(root) if root is not None else repo_root()

    def launch(spec: RunSpec) -> int:
        cmd = [sys.executable, "-m", "gmaiou.paper", "experiment", "--grid", spec.grid,
               "--profile", spec.profile, "--only", spec.run_id, "--no-progress"]  # fmt: skip
        if force:
            cmd.append("--force")
        if device:
            cmd += ["--device", device]
        log = root_path / "runs" / spec.profile / spec.grid / f"{spec.run_id}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w") as handle:
            return subprocess.run(
                cmd, cwd=root_path, stdout=handle, stderr=subprocess.STDOUT
            ).returncode

    with ThreadPoolExecutor(max_workers=parallel) as pool:
        codes = list(pool.map(launch, todo))
    failed = [s.run_id for s, c in zip(todo, codes) if c != 0]
    if failed:
        raise RuntimeError(f"{len(failed)} runs failed (logs under runs/): {', '.join(failed)}")
    return [json.loads(record_path(s, figures).read_text()) for s in specs]


def load_records(profile: str, grid: str, figures: Path | None = None) -> list[dict[str, Any]]:
    """Every record of ``grid`` under ``profile`` (sorted by id); an empty list if none."""
    base = figures if figures is not None else figures_dir(profile)
    folder = base / "runs" / profile / grid
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def command_config(train_command: list[str]):
    """The :class:`~gmaiou.configs.Config` a record's ``gmaiou train`` argument list trains."""
    from gmaiou.cli import build_parser
    from gmaiou.training.cli import config_from_args

    if train_command[:4] != ["python", "-m", "gmaiou", "train"]:
        raise ValueError(f"not a 'python -m gmaiou train' command: {train_command[:4]}")
    args = build_parser().parse_args(train_command[3:])
    return config_from_args(args)[0]


def rebase_record_command(record: dict[str, Any]) -> bool:
    """Rewrite ``record``'s train command against today's presets; True if it changed.

    A record's command names its preset; when a preset later changes (a new CPU recipe),
    the command would no longer train the record's config. The rewritten command gives
    every setting where the record's config and today's preset differ, ``--set``
    explicitly, so it trains exactly the recorded config again.
    """
    from gmaiou.configs import Config, get_config, settings_between

    train = record["command"][1]
    config = Config.from_dict(record["config"])
    if command_config(train) == config:
        return False
    keep, i = [], 4
    skip = {"--set", "--epochs", "--lr", "--batch-size"}
    while i < len(train):
        if train[i] in skip:
            i += 2
            continue
        keep.append(train[i])
        i += 1
    sets = settings_between(get_config(record["preset"]), config)
    record["command"][1] = [*train[:4], *keep, *(x for s in sets for x in ("--set", s))]
    assert command_config(record["command"][1]) == config, record["id"]
    return True
