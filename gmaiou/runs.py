"""The run directory: what ``gmaiou train`` writes there, and how those files are read and written.

::

    RUN_DIR/config.json     the resolved config, the CLI overrides and the run options
    RUN_DIR/metrics.jsonl   one JSON line per iteration
    RUN_DIR/checkpoint.pt   model, optimizer, scheduler, grad scaler, RNG states, position
    RUN_DIR/eval.json       COCO box/mask AP and oLRP on the evaluation split
    RUN_DIR/detections.json the detections behind eval.json (COCO results format)

Training writes a run directory and evaluation and export read it; both use this module,
so neither needs the other for the file names. Checkpoints and JSON records are written
atomically: to a temporary file in the same folder, then moved into place with
:func:`os.replace`, so a crash while writing never leaves a truncated file behind.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "CHECKPOINT_FILE",
    "CONFIG_FILE",
    "DETECTIONS_FILE",
    "EVAL_FILE",
    "METRICS_FILE",
    "RUN_FILE_PATTERNS",
    "jsonable",
    "load_checkpoint",
    "prepare_run_dir",
    "read_record",
    "resolve_data_root",
    "save_checkpoint",
    "write_json",
]

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_FILE = "checkpoint.pt"
EVAL_FILE = "eval.json"
DETECTIONS_FILE = "detections.json"

#: What a run (and ``gmaiou eval`` into its folder) writes; ``overwrite`` removes all of it.
RUN_FILE_PATTERNS: tuple[str, ...] = (
    CONFIG_FILE,
    METRICS_FILE,
    CHECKPOINT_FILE,
    EVAL_FILE,
    "detections*.json",  # detections.json, gmaiou eval's detections_SPLIT[.metrics].json
    "metrics.csv",  # the curves of gmaiou.training.curves
    "curves.png",
    "tensorboard/*",
    ".*.tmp",  # temporaries of atomic writes left by a killed process
)


def resolve_data_root(
    data_root: str | os.PathLike | None, synthetic_images: int = 64, synthetic_size: int = 256
) -> Path:
    """The dataset folder to use: the given one (checked), or the embedded synthetic default.

    The default is generated once (``synthetic_images`` images of ``synthetic_size`` pixels)
    and cached, see :func:`gmaiou.data.synthetic.ensure_synthetic`.
    """
    if data_root is None:
        from gmaiou.data.synthetic import ensure_synthetic

        return Path(ensure_synthetic(num_images=synthetic_images, size=synthetic_size))
    root = Path(data_root).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"data folder not found: {root}")
    if not root.is_dir():
        raise ValueError(f"--data must be a dataset folder, got a file: {root}")
    return root.resolve()


def _run_files(out_dir: Path) -> list[Path]:
    return sorted(
        {p for pattern in RUN_FILE_PATTERNS for p in out_dir.glob(pattern) if p.is_file()}
    )


def prepare_run_dir(out_dir: Path, resume: bool, overwrite: bool) -> None:
    """Create ``out_dir``; refuse a non-empty one unless resuming or told to overwrite.

    ``overwrite`` removes every file a previous run wrote (:data:`RUN_FILE_PATTERNS`),
    and leaves other files alone. ``resume`` needs a checkpoint, except in a folder that
    holds only the ``config.json`` and ``metrics.jsonl`` of a run that never
    checkpointed: that run starts again from scratch.
    """
    if resume and overwrite:
        raise ValueError("--resume and --overwrite contradict each other; choose one")
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"run directory {out_dir} exists and is a file")
    non_empty = out_dir.is_dir() and any(out_dir.iterdir())
    if resume:
        if (out_dir / CHECKPOINT_FILE).is_file():
            return
        names = {p.name for p in out_dir.iterdir()} if out_dir.is_dir() else set()
        names = {n for n in names if not (n.startswith(".") and n.endswith(".tmp"))}
        if CONFIG_FILE in names and names <= {CONFIG_FILE, METRICS_FILE}:
            for path in _run_files(out_dir):  # never checkpointed: start again from scratch
                if path.name != CONFIG_FILE:
                    path.unlink()
            return
        raise FileNotFoundError(f"cannot resume: no checkpoint at {out_dir / CHECKPOINT_FILE}")
    if non_empty:
        if not overwrite:
            raise FileExistsError(
                f"run directory {out_dir} is not empty; pass --resume to continue it "
                "or --overwrite to replace it"
            )
        for path in _run_files(out_dir):
            path.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)


def read_record(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The ``config.json`` record of a run directory, as a dictionary.

    Raises:
        FileNotFoundError: ``run_dir`` or its ``config.json`` is missing.
        ValueError: ``config.json`` is not a JSON object.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory not found: {run_dir}")
    record_path = run_dir / CONFIG_FILE
    if not record_path.is_file():
        raise FileNotFoundError(f"{record_path} not found; is {run_dir} a gmaiou training run?")
    try:
        record = json.loads(record_path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{record_path} is not a gmaiou run record ({err})") from None
    if not isinstance(record, dict):
        raise ValueError(f"{record_path} is not a gmaiou run record (not a JSON object)")
    return record


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON types: dataclasses and dicts as objects, tuples as lists,
    paths as strings, non-finite floats as ``None`` (JSON has no NaN), anything else as its repr."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None  # e.g. an AP that COCO cannot define
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)


def write_json(path: Path, payload: Any) -> None:
    """Write :func:`jsonable` ``payload`` to ``path`` (indented), atomically."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(jsonable(payload), indent=2) + "\n")
    os.replace(tmp, path)


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file, fsync, ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        # Also on KeyboardInterrupt: never leave a half-written temporary behind.
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(
    path: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (``weights_only``: no pickled code).

    Raises:
        FileNotFoundError: ``path`` is not a file.
        ValueError: it cannot be read (truncated, not a checkpoint).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - a damaged pickle may raise anything
        raise ValueError(f"checkpoint {path} could not be read ({err}); it may be corrupt") from err
