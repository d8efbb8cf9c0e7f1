"""``gmaiou train``: train a preset on a COCO-layout or synthetic dataset.

Multi-GPU (or multi-process CPU) with DDP::

    torchrun --nproc_per_node N -m gmaiou train --config NAME --data DIR --out RUN_DIR

The preset's batch (or ``--batch-size``) is the global batch: each of the N processes
loads 1/N of it (N must divide it), so the run reproduces the reference optimisation for
any N. A ``--batch-size`` other than the preset's scales its learning rate linearly (the
log says so). Only rank 0 writes files, logs and checkpoints.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model (SGD, warm-up, step/cosine decay, AMP on CUDA, DDP under torchrun)",
        description=(
            "Train a preset into RUN_DIR (config.json, metrics.jsonl, checkpoint.pt, eval.json, "
            "metrics.csv and curves.png). "
            "--batch-size is the global batch: under torchrun each of the N processes takes "
            "1/N of it; a batch other than the preset's scales the learning rate linearly."
        ),
    )
    parser.add_argument("--config", required=True, help="preset name (see `gmaiou configs`)")
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="dataset root: COCO layout (annotations/instances_*.json + train2017/ val2017/) or a "
        "synthetic dataset folder; default: the embedded synthetic dataset",
    )
    parser.add_argument("--out", type=Path, required=True, help="run directory")
    parser.add_argument("--epochs", type=int, default=None, help="override the preset's epochs")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="global batch (images per iteration over all processes); the preset's learning "
        "rate is scaled linearly to it",
    )
    parser.add_argument(
        "--lr",
        type=float,
        default=None,
        help="override the base learning rate (the rate for the global batch of this run)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="override any config setting, e.g. --set model.anchor_base_scale=2 "
        "--set augment.scale_range=[0.75,1.33] (repeatable; values are JSON or plain strings)",
    )
    parser.add_argument(
        "--device", default=None, help="cpu, cuda, cuda:N (default: CUDA if available)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its checkpoint (a run that never checkpointed "
        "starts again)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a non-empty --out: every file a previous run or `gmaiou eval` wrote there "
        "is removed",
    )
    parser.add_argument(
        "--max-iters", type=int, default=None, help="stop after this many iterations"
    )
    parser.add_argument(
        "--ckpt-every",
        type=int,
        default=500,
        help="checkpoint every N >= 1 iterations (and at every epoch end)",
    )
    parser.add_argument("--workers", type=int, default=2, help="data-loader worker processes")
    parser.add_argument("--train-split", default="train")
    parser.add_argument(
        "--eval-split", default="val", help="split evaluated at the end ('none': skip)"
    )
    parser.add_argument(
        "--weights",
        default=None,
        help="where to start from: 'imagenet' (torchvision's ImageNet ResNet, cached in "
        "$TORCH_HOME/hub/checkpoints), 'none' (random initialisation) or a local torchvision "
        "ResNet state dict or model checkpoint; default: the preset's model.backbone_weights "
        "(ImageNet for the paper presets, random for the CPU presets)",
    )
    parser.add_argument(
        "--no-augment", action="store_true", help="only resize and normalise (overfitting)"
    )
    parser.add_argument(
        "--deterministic", action="store_true", help="deterministic algorithms (slower)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gmaiou.training.distributed import init_distributed, shutdown_distributed
    from gmaiou.training.trainer import RunOptions, TrainingDiverged, train

    for name in ("epochs", "batch_size", "max_iters", "ckpt_every"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if args.workers < 0:
        raise ValueError(f"--workers must be >= 0, got {args.workers}")
    if args.lr is not None and not args.lr > 0:
        raise ValueError(f"--lr must be > 0, got {args.lr}")
    config, overrides = config_from_args(args)
    from gmaiou.models import WEIGHT_KEYWORDS

    weights = args.weights if args.weights in (None, *WEIGHT_KEYWORDS) else Path(args.weights)
    if isinstance(weights, Path) and not weights.is_file():
        raise FileNotFoundError(f"weights file not found: {weights}")  # before the data checks
    eval_split = None if args.eval_split.lower() == "none" else args.eval_split
    options = RunOptions(
        out_dir=args.out,
        data_root=args.data,
        device=args.device,
        seed=args.seed,
        resume=args.resume,
        overwrite=args.overwrite,
        max_iters=args.max_iters,
        ckpt_every=args.ckpt_every,
        num_workers=args.workers,
        train_split=args.train_split,
        eval_split=eval_split,
        deterministic=args.deterministic,
        weights=weights,
        augment=not args.no_augment,
        progress=not args.no_progress,
    )
    ctx = init_distributed(args.device)
    try:
        result = train(config, options, ctx=ctx, config_name=args.config, overrides=overrides)
    except TrainingDiverged as err:
        print(f"gmaiou train: error: {err}", file=sys.stderr)
        _print_notes(err, ctx.is_main)
        return 1
    except KeyboardInterrupt as err:
        if ctx.is_main and err.args:
            print(f"gmaiou train: {err}", file=sys.stderr)
        raise
    except Exception as err:
        _print_notes(err, ctx.is_main)  # where the checkpoint written on the way out is
        raise
    finally:
        shutdown_distributed()
    if ctx.is_main:
        if result.metrics is not None:
            _print_metrics(result.metrics)
        state = "finished" if result.finished else "stopped"
        print(f"{state} after {result.iterations} iterations; run directory: {result.run_dir}")
    return 0


def config_from_args(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """The run's config from ``gmaiou train``'s arguments (preset, overrides, ``--set``), and
    the overrides as the run record stores them; with ``--resume``, the run folder's own."""
    from gmaiou.configs import apply_overrides, apply_settings, get_config

    overrides = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if args.set:
        overrides["settings"] = list(args.set)
    if args.resume:
        overrides = _resume_overrides(args.out, args.config, overrides)
    train_overrides = {k: v for k, v in overrides.items() if k != "settings"}
    config = apply_settings(
        apply_overrides(get_config(args.config), train_overrides), overrides.get("settings", [])
    )
    return config, overrides


def _print_notes(err: BaseException, is_main: bool) -> None:
    for note in getattr(err, "__notes__", ()) if is_main else ():
        print(f"gmaiou train: {note}", file=sys.stderr)


def _resume_overrides(out_dir: Path, config_name: str, overrides: dict) -> dict:
    """The overrides a run was started with; a resumed run must not change them."""
    from gmaiou.runs import CONFIG_FILE

    record_path = Path(out_dir) / CONFIG_FILE
    if not record_path.is_file():
        return overrides
    record = json.loads(record_path.read_text())
    if record.get("config_name") != config_name:
        raise ValueError(
            f"{out_dir} was started with --config {record.get('config_name')}; resume it with the same config"
        )
    stored = record.get("overrides", {})
    for key, value in overrides.items():
        if stored.get(key) != value:
            raise ValueError(
                f"{out_dir} was started with {key}={stored.get(key)}; resume it without changing "
                f"--{key.replace('_', '-')}"
            )
    return stored


def _print_metrics(metrics: dict) -> None:
    for kind in ("segm", "bbox"):
        if kind not in metrics:
            continue
        values = metrics[kind]
        shown = ", ".join(f"{k} {v:.1f}" for k, v in values.items() if isinstance(v, (int, float)))
        print(f"{kind}: {shown}")
