"""Train a grid of runs one at a time and keep each finished run as a small JSON record.

A run is a :class:`RunSpec`: a preset, training overrides and ``section.field=value``
settings, a seed and a :class:`SyntheticData` set. :func:`run_one` trains it into
``runs/<profile>/<grid>/<id>/`` (resuming an interrupted run from its checkpoint), evaluates
it on the val split (on the held-out test split where its set has one) and writes

    figures/runs/<profile>/<grid>/<id>.json

with the run's spec (``spec``, :meth:`RunSpec.to_dict`) and resolved config, the final COCO
metrics (box and mask AP family, oLRP and components), the training time and iterations,
its provenance (``commit``, ``dirty``, device, torch threads and version, data seed, and
``segments``: one entry per stretch of training, several when the run was resumed) and,
for people, under ``command`` the commands that re-create the dataset and the run from
nothing (a JSON list of argument lists, run in order from the repository root). Configs come
from the spec (:func:`spec_from_record`); nothing reads ``command`` but the loader of records
written before they held a spec. A run whose record exists is skipped unless forced, so
notebooks re-plot from the records in seconds and a long grid is completed over several days.

Provenance: a run of a profile whose records are committed (``default``) refuses to start
from a checkout with modified tracked files outside ``figures/`` unless ``allow_dirty``
(``gmaiou-paper experiment --allow-dirty``); such a record says ``"dirty": true``. Tables load
records through :func:`grid_records` (train what is missing, then load) or :func:`load_grid`
(load only), which leave dirty records (:func:`~gmaiou.paper.experiments.records.is_dirty`:
``"dirty": true``, or a ``commit`` ending in ``-dirty``) out unless asked and name them in the
footers; ``redo_dirty`` (``gmaiou-paper experiment --redo-dirty``) counts a run whose record is
dirty as not done, and retrains it from scratch. The ``smoke`` and ``quick`` profiles, whose
records stay on the machine, train from any checkout and keep their dirty records.

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

from gmaiou.paper.experiments.records import GridRecords, is_dirty, split_dirty
from gmaiou.paper.paths import figures_dir, repo_root

__all__ = [
    "COMMITTED_PROFILES",
    "RunSpec",
    "SourceState",
    "SyntheticData",
    "grid_records",
    "load_grid",
    "load_records",
    "rebase_record",
    "record_path",
    "run_grid",
    "run_one",
    "run_state",
    "source_state",
    "spec_from_record",
]

#: 2: the record holds its ``spec``, ``dirty``, ``data_seed`` and ``segments``.
RECORD_VERSION = 2

#: Profiles whose records are committed (under ``figures/`` itself): their runs need a clean
#: checkout, and their tables leave dirty records out (see :func:`run_one`, :func:`load_records`).
COMMITTED_PROFILES: tuple[str, ...] = ("default",)

#: Per run folder: one JSON line per stretch of training (see :func:`run_one`).
SEGMENTS_FILE = "segments.jsonl"


@dataclass(frozen=True)
class SyntheticData:
    """A synthetic dataset, generated on first use under ``<repo>/data/`` (see ``gmaiou data synth``).

    Attributes:
        images: train + val images (a fifth is val).
        size: image side in pixels.
        seed: dataset seed.
        mix: class odds, ``uniform`` (the default set), ``coco`` (COCO's share of low-MOB
            boxes) or ``mob<NN>`` (a target share of ``NN`` percent of boxes with MOB < 0.5).
        test_images: held-out test images beside train and val (0: none); runs on a set
            with a test split are evaluated on it (:attr:`eval_split`).
    """

    images: int
    size: int
    seed: int = 0
    mix: str = "uniform"
    test_images: int = 0

    @property
    def name(self) -> str:
        test = f"-test{self.test_images}" if self.test_images else ""
        return f"synth-{self.mix}-{self.images}x{self.size}-data{self.seed}{test}"

    @property
    def eval_split(self) -> str:
        """The split a run on this set is evaluated on: ``test`` where it has one, else ``val``."""
        return "test" if self.test_images else "val"

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
        ] + (["--test-images", str(self.test_images)] if self.test_images else [])  # fmt: skip

    def ensure(self, root: Path) -> Path:
        """The dataset folder under ``root``, generated (atomically) if absent."""
        from gmaiou.data.synthetic import generate_atomically

        path = root / self.folder
        if (path / "annotations").is_dir():
            return path
        return generate_atomically(
            path,
            self.images,
            self.size,
            self.seed,
            progress=False,
            mix=self.mix,
            test_images=self.test_images,
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
        settings: ``section.field=value`` settings (``gmaiou train --set``).
        curve_points: evaluate at this many evenly spaced points of the schedule (0: at the end only).
        workers: data-loader workers.
        max_iters: stop after this many iterations (``None``: the whole schedule).
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
        from gmaiou.configs import apply_overrides, apply_settings, get_config

        return apply_settings(
            apply_overrides(get_config(self.preset), self.overrides()), self.settings
        )

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain JSON values (what a record stores under ``spec``)."""
        out = dataclasses.asdict(self)
        out["settings"] = list(self.settings)
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunSpec:
        """The spec :meth:`to_dict` wrote; unknown or missing fields are named."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown run spec fields: {', '.join(unknown)}")
        try:
            data = SyntheticData(**values["data"])
            return cls(**{**values, "data": data, "settings": tuple(values.get("settings", ()))})
        except (KeyError, TypeError) as err:
            raise ValueError(f"incomplete run spec ({err})") from None

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
        if self.data.eval_split != "val":
            cmd += ["--eval-split", self.data.eval_split]
        if device:
            cmd += ["--device", device]
        return cmd

    def commands(self, device: str | None = None) -> list[list[str]]:
        """The commands that re-create the dataset and the run from the repository root."""
        return [self.data.command(), self.train_command(device)]


def record_path(spec: RunSpec, figures: Path | None = None) -> Path:
    """Where ``spec``'s record lives: ``<figures>/runs/<profile>/<grid>/<id>.json``."""
    base = figures if figures is not None else figures_dir(spec.profile)
    return base / "runs" / spec.profile / spec.grid / f"{spec.run_id}.json"


# --------------------------------------------------------------------------- records to specs

#: Options of a version-1 record's ``gmaiou train`` command, by the spec field each sets.
_LEGACY_OPTIONS: dict[str, str] = {
    "--config": "preset", "--seed": "seed", "--workers": "workers", "--epochs": "epochs",
    "--batch-size": "batch_size", "--lr": "lr", "--max-iters": "max_iters", "--set": "settings",
    "--data": "", "--out": "", "--device": "",
}  # fmt: skip
_LEGACY_TYPES: dict[str, type] = {
    "seed": int, "workers": int, "epochs": int, "batch_size": int, "lr": float, "max_iters": int,
}  # fmt: skip


def _legacy_spec(record: dict[str, Any]) -> RunSpec:
    """The spec of a record written before records held one: its train command's options
    (the command was rewritten when a preset changed, so it names the exact config) with the
    record's grid, profile, label, variant and data."""
    train = record["command"][1]
    if train[:4] != ["python", "-m", "gmaiou", "train"]:
        raise ValueError(f"record {record.get('id')}: not a 'python -m gmaiou train' command")
    values: dict[str, Any] = {"settings": []}
    args = train[4:]
    for flag, value in zip(args[::2], args[1::2]):
        name = _LEGACY_OPTIONS.get(flag)
        if name is None:
            raise ValueError(f"record {record.get('id')}: unknown train option {flag}")
        if name == "settings":
            values["settings"].append(value)
        elif name:
            values[name] = _LEGACY_TYPES.get(name, str)(value)
    if len(args) % 2:
        raise ValueError(f"record {record.get('id')}: train option {args[-1]} has no value")
    return RunSpec(
        grid=record["grid"],
        profile=record["profile"],
        seed=values.pop("seed", record["seed"]),
        data=SyntheticData(**record["data"]),
        label=record.get("label", ""),
        variant=record.get("variant", ""),
        curve_points=len(record.get("curve") or []),
        **{**values, "settings": tuple(values["settings"])},
    )


def spec_from_record(record: dict[str, Any]) -> RunSpec:
    """The :class:`RunSpec` of a run record: its ``spec``, or for a record written before
    records held one, the spec its train command gives (``python -m gmaiou train ...``)."""
    if "spec" in record:
        return RunSpec.from_dict(record["spec"])
    if "command" not in record:
        raise ValueError(f"record {record.get('id')} holds neither a spec nor a train command")
    return _legacy_spec(record)


def rebase_record(record: dict[str, Any]) -> bool:
    """Rewrite ``record``'s ``spec`` and ``command`` against today's presets; True if they changed.

    A spec names its preset; when a preset later changes (a new CPU recipe), the spec would
    no longer train the record's config. The rewritten spec adds the settings where the
    two differ, so it trains exactly the recorded config again.
    """
    from gmaiou.configs import Config, settings_between

    spec = spec_from_record(record)
    recorded = Config.from_dict(record["config"])
    today = spec.config()
    if today == recorded and "spec" in record:
        return False
    spec = dataclasses.replace(spec, settings=(*spec.settings, *settings_between(today, recorded)))
    if spec.config() != recorded:
        raise ValueError(f"record {record.get('id')}: no settings re-create its config")
    device = record.get("device")
    record["spec"] = spec.to_dict()
    record["command"] = spec.commands(device if isinstance(device, str) else None)
    return True


# --------------------------------------------------------------------------- provenance


@dataclass(frozen=True)
class SourceState:
    """The checkout a run trains from.

    Attributes:
        commit: ``HEAD``'s hash (``None`` outside a git checkout).
        dirty: tracked files outside ``figures/`` differ from ``HEAD`` (the runs' records and
            the notebooks' figures are written there).
        changed: those files' paths (the first few, for the refusal's message).
    """

    commit: str | None
    dirty: bool
    changed: tuple[str, ...] = ()


def source_state(root: Path) -> SourceState:
    """:class:`SourceState` of the git checkout at ``root`` (not dirty outside a checkout)."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, check=True
        ).stdout

    try:
        head = git("rev-parse", "HEAD").strip()
        status = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!figures")
    except (OSError, subprocess.CalledProcessError):
        return SourceState(None, False)
    changed = tuple(line[3:] for line in status.splitlines() if line.strip())
    return SourceState(head, bool(changed), changed[:5])


def _code_state() -> SourceState:
    """The state of the checkout this package is imported from."""
    return source_state(repo_root())


def _dirty_allowed(spec: RunSpec, allow_dirty: bool | None) -> bool:
    return allow_dirty if allow_dirty is not None else spec.profile not in COMMITTED_PROFILES


def _check_source(specs: Sequence[RunSpec], allow_dirty: bool | None) -> SourceState:
    """The checkout's state; refuses a dirty one for runs that need a clean checkout."""
    state = _code_state()
    strict = [s for s in specs if not _dirty_allowed(s, allow_dirty)]
    if state.dirty and strict:
        raise ValueError(
            f"refusing to train {strict[0].run_id}: tracked files are modified "
            f"({', '.join(state.changed)}); commit them, or pass --allow-dirty "
            "(allow_dirty=True) to record the run as dirty"
        )
    return state


def _device_name(device: torch.device) -> str:
    from gmaiou.paper.benchmarks import device_name

    return device_name(device)


# --------------------------------------------------------------------------- training


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


def _begin_segment(run_dir: Path, start: int | None, device: str | None) -> None:
    """Note a stretch of training starting at iteration ``start`` (``None``: a fresh run,
    whose earlier notes go) in ``run_dir``'s :data:`SEGMENTS_FILE`, before it trains: an
    interrupted stretch keeps its note, and the next one's start ends it."""
    from gmaiou.training import resolve_device

    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / SEGMENTS_FILE
    if start is None:
        path.unlink(missing_ok=True)
    where = resolve_device(device)
    note = {
        "start": start or 0,
        "device": str(where),
        "device_name": _device_name(where),
        "torch_threads": torch.get_num_threads(),
    }
    with open(path, "a") as handle:
        handle.write(json.dumps(note) + "\n")


def _segments(run_dir: Path, iterations: int) -> list[dict[str, Any]]:
    """The run's stretches of training: ``device``, ``device_name``, ``torch_threads``,
    ``start`` and ``iterations`` (kept ones: up to the checkpoint the next stretch resumed
    from). Iterations before the first note (trained outside the runner) make a first
    stretch of unknown device."""
    path = run_dir / SEGMENTS_FILE
    notes = [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []
    if (notes[0]["start"] if notes else iterations) > 0:
        notes.insert(0, {"start": 0, "device": None, "device_name": None, "torch_threads": None})
    ends = [n["start"] for n in notes[1:]] + [iterations]
    return [{**n, "iterations": end - n["start"]} for n, end in zip(notes, ends)]


def _train_chunks(spec: RunSpec, root: Path, device: str | None, progress: bool) -> dict[str, Any]:
    """Train ``spec`` (resuming what exists) and evaluate after each chunk; the curve and final metrics."""
    from gmaiou.training.trainer import RunOptions, train

    run_dir = spec.run_dir(root)
    data_root = spec.data.ensure(root)
    config = spec.config()
    n_train = _count_images(data_root)
    iters_per_epoch = math.ceil(n_train / config.train.batch_size)
    total = config.train.epochs * iters_per_epoch
    start = _resume_point(run_dir)
    _begin_segment(run_dir, start, device)
    curve = []
    for end in _chunk_ends(total, spec.curve_points, spec.max_iters):
        # Every chunk after the first resumes from the checkpoint the one before it left.
        resume = start is not None or bool(curve)
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
            eval_split=spec.data.eval_split,
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
        "segments": _segments(run_dir, curve[-1]["iteration"]),
    }


def _resume_point(run_dir: Path) -> int | None:
    """The iteration of the interrupted run in ``run_dir`` (``None``: nothing to resume).

    A finished run's weights whose record was deleted are trained again (deleting a record
    is how one asks for that run anew)."""
    from gmaiou.runs import CHECKPOINT_FILE, load_checkpoint
    from gmaiou.training.checkpoint import has_training_state

    checkpoint = run_dir / CHECKPOINT_FILE
    if not checkpoint.is_file():
        return None
    state = load_checkpoint(checkpoint)
    if has_training_state(state):
        return int(state["iteration"])
    warnings.warn(
        f"{run_dir} holds a finished run's weights but its record is gone: training it again",
        stacklevel=3,
    )
    return None


def _keep_weights_only(run_dir: Path) -> None:
    """Drop a finished run's optimizer state: it is never resumed (its record exists), and
    the analyses need only its weights; a grid's checkpoints then take a third of the disk."""
    from gmaiou.runs import CHECKPOINT_FILE
    from gmaiou.training.checkpoint import drop_training_state

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
    allow_dirty: bool | None = None,
    redo_dirty: bool = False,
) -> dict[str, Any]:
    """Train and evaluate ``spec`` unless its record exists (or ``force``); returns the record.

    ``root`` is the repository root (datasets under ``data/``, run folders under ``runs/``);
    ``figures`` the figures folder (default :func:`gmaiou.paper.paths.figures_dir` of the profile).
    An interrupted run resumes from its last checkpoint; ``force`` retrains from scratch.
    ``allow_dirty``: train from a checkout with modified tracked files, recording
    ``"dirty": true`` (``None``: only for profiles not in :data:`COMMITTED_PROFILES`).
    ``redo_dirty``: a record that exists but is dirty
    (:func:`~gmaiou.paper.experiments.records.is_dirty`) does not count: the run is retrained
    from scratch, as with ``force``.

    Raises:
        ValueError: the checkout is dirty and ``allow_dirty`` does not allow it.
    """
    from gmaiou.runs import jsonable

    root = Path(root) if root is not None else repo_root()
    path = record_path(spec, figures)
    if path.is_file() and not force:
        existing = json.loads(path.read_text())
        if not (redo_dirty and is_dirty(existing)):
            return existing
        force = True  # the dirty run's folder holds weights only: it starts again
    source = _check_source([spec], allow_dirty)
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
        "spec": spec.to_dict(),
        "grid": spec.grid,
        "profile": spec.profile,
        "preset": spec.preset,
        "label": spec.label or spec.preset,
        "variant": spec.variant,
        "seed": spec.seed,
        "data": dataclasses.asdict(spec.data),
        "data_seed": spec.data.seed,
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
        "segments": outcome["segments"],
        "commit": source.commit,
        "dirty": source.dirty,
        "command": spec.commands(device),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(jsonable(record), indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)
    _keep_weights_only(run_dir)
    return record


def _force_from_env() -> bool:
    """``GMAIOU_FORCE=1`` (``make reproduce FORCE=1``): notebooks retrain runs whose record exists."""
    return os.environ.get("GMAIOU_FORCE", "").strip().lower() in ("1", "true", "yes")


def _recorded_only_from_env() -> bool:
    """``GMAIOU_RECORDED_ONLY=1`` (``make reproduce RECORDED=1``): notebooks plot the runs
    that have a record and train nothing (a grid being completed over several days)."""
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
    allow_dirty: bool | None = None,
    redo_dirty: bool = False,
) -> list[dict[str, Any]]:
    """Run every spec (one at a time, or ``parallel`` subprocesses at once on a GPU machine).

    Records that exist are skipped unless ``force`` (``None``: the ``GMAIOU_FORCE``
    environment variable, which ``make reproduce FORCE=1`` sets). With ``parallel > 1`` each
    run is a ``gmaiou-paper experiment ... --only ID`` subprocess, so runs share nothing but the device.
    With ``recorded_only`` (``None``: the ``GMAIOU_RECORDED_ONLY`` environment variable) nothing
    is trained: the records that exist are returned and the missing runs are named on stderr.
    ``allow_dirty`` as in :func:`run_one`; a dirty checkout is refused before any run trains.
    ``redo_dirty``: the runs whose record is dirty are retrained too (:func:`run_one`), and only
    they among the recorded ones.
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
    todo = [s for s in specs if force or run_state(s, figures, redo_dirty) in _TO_TRAIN]
    _check_source(todo, allow_dirty)
    if parallel <= 1:
        return [
            run_one(s, root, figures, force, device, progress, allow_dirty, redo_dirty)
            for s in specs
        ]
    root_path = Path(root) if root is not None else repo_root()

    def launch(spec: RunSpec) -> int:
        cmd = [sys.executable, "-m", "gmaiou.paper", "experiment", "--grid", spec.grid,
               "--profile", spec.profile, "--only", spec.run_id, "--no-progress"]  # fmt: skip
        if force:
            cmd.append("--force")
        if allow_dirty:
            cmd.append("--allow-dirty")
        if redo_dirty:
            cmd.append("--redo-dirty")
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


#: The :func:`run_state` of a run that trains (unless forced, every other one is skipped).
_TO_TRAIN: tuple[str, ...] = ("to run", "dirty: to retrain")


def run_state(spec: RunSpec, figures: Path | None = None, redo_dirty: bool = False) -> str:
    """Whether ``spec`` still has to train: ``"to run"`` (no record), ``"done"``, or, where its
    record is dirty (:func:`~gmaiou.paper.experiments.records.is_dirty`), ``"dirty: to retrain"``
    with ``redo_dirty`` and ``"dirty"`` (done, but left out of the tables) without."""
    path = record_path(spec, figures)
    if not path.is_file():
        return "to run"
    if not is_dirty(json.loads(path.read_text())):
        return "done"
    return "dirty: to retrain" if redo_dirty else "dirty"


def _include_dirty(profile: str, include_dirty: bool | None) -> bool:
    """``include_dirty``, or where ``None`` whether ``profile``'s tables keep dirty records
    (those of profiles not in :data:`COMMITTED_PROFILES`, whose runs train from any checkout)."""
    return include_dirty if include_dirty is not None else profile not in COMMITTED_PROFILES


def load_grid(
    profile: str, grid: str, figures: Path | None = None, include_dirty: bool | None = None
) -> GridRecords:
    """Every record of ``grid`` under ``profile`` (sorted by id), split into the ones tables use
    and the dirty ones left out (:func:`~gmaiou.paper.experiments.records.split_dirty`); both
    empty if the grid has no record.

    Dirty records are left out unless ``include_dirty`` (``None``: kept only for profiles not
    in :data:`COMMITTED_PROFILES`). ``figures``: the figures folder holding ``runs/``
    (default: the profile's).
    """
    base = figures if figures is not None else figures_dir(profile)
    folder = base / "runs" / profile / grid
    records = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
    return split_dirty(records, grid, _include_dirty(profile, include_dirty))


def load_records(
    profile: str, grid: str, figures: Path | None = None, include_dirty: bool | None = None
) -> list[dict[str, Any]]:
    """The records of ``grid`` that tables use: :attr:`GridRecords.used` of :func:`load_grid`
    (same arguments; dirty records left out unless ``include_dirty``)."""
    return load_grid(profile, grid, figures, include_dirty).used


def grid_records(
    specs: Sequence[RunSpec],
    figures: Path | None = None,
    include_dirty: bool | None = None,
    **run: Any,
) -> GridRecords:
    """The records of ``specs`` (one grid) for a table: :func:`run_grid` (``run``: its other
    arguments; it trains the runs without a record unless recorded-only), then the dirty
    records left out unless ``include_dirty`` (``None``: as in :func:`load_grid`, by the
    specs' profile). No spec: an empty :class:`GridRecords`."""
    if not specs:
        return GridRecords("")
    grids = {s.grid for s in specs}
    grid = grids.pop() if len(grids) == 1 else ""
    records = run_grid(specs, figures=figures, **run)
    return split_dirty(records, grid, _include_dirty(specs[0].profile, include_dirty))
