"""``gmaiou eval --run RUN_DIR [--data DIR] [--split val] [--detections results.json]``.

Reloads a training run (``config.json`` + ``checkpoint.pt``), checks the split's image
files, predicts on it, writes the detections (COCO results format) and their metrics
beside them (``results.metrics.json``), and prints box and mask AP and oLRP.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate a trained run: detections + COCO AP and oLRP",
        description="Evaluate the model of a training run on a dataset split.",
    )
    parser.add_argument(
        "--run", type=Path, required=True, help="run directory written by `gmaiou train`"
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="dataset root (default: the data the run was trained on)",
    )
    parser.add_argument("--split", default="val", help="split to evaluate (default: val)")
    parser.add_argument(
        "--detections",
        "--out",
        dest="detections",
        type=Path,
        default=None,
        metavar="FILE.json",
        help="where to write the detections (COCO results format); the metrics go beside it as "
        "FILE.metrics.json (default: RUN_DIR/detections_SPLIT.json). --out is the old name",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing --detections file"
    )
    parser.add_argument(
        "--device", default=None, help="cpu, cuda, cuda:N (default: CUDA if available)"
    )
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=0, help="data-loader worker processes")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gmaiou.devices import resolve_device
    from gmaiou.evaluation.results import save_results
    from gmaiou.evaluation.run import evaluate_run
    from gmaiou.paths import check_writable_folder

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.workers < 0:
        raise ValueError(f"--workers must be >= 0, got {args.workers}")
    given = args.detections
    out = given if given is not None else args.run / f"detections_{args.split}.json"
    if given is not None and out.exists() and not args.overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    check_writable_folder(out.parent, "detections folder")  # before the model runs
    _preflight(args)
    detections, metrics = evaluate_run(
        args.run,
        data_root=args.data,
        split=args.split,
        device=resolve_device(args.device),
        batch_size=args.batch_size,
        num_workers=args.workers,
        progress=not args.no_progress,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    save_results(out, detections, overwrite=True)
    metrics_path = out.with_name(f"{out.stem}.metrics.json")
    payload = {"split": args.split, **metrics}
    metrics_path.write_text(json.dumps(_finite_or_none(payload), indent=2) + "\n")
    print(f"{len(detections)} detections written to {out}; metrics to {metrics_path}")
    for kind in ("segm", "bbox"):
        values = metrics.get(kind, {})
        shown = ", ".join(f"{k} {v:.1f}" for k, v in values.items() if isinstance(v, (int, float)))
        print(f"{kind}: {shown}")
    return 0


def _preflight(args: argparse.Namespace) -> None:
    """Check the split's image files (existence, sizes) before the model runs; print what was dropped."""
    from gmaiou.data import CocoInstances
    from gmaiou.data.coco import check_image_files
    from gmaiou.runs import CONFIG_FILE, resolve_data_root

    record_path = args.run / CONFIG_FILE
    if args.data is None and not record_path.is_file():
        return  # evaluate_run names the missing run or record
    root = args.data
    if root is None:
        try:
            root = json.loads(record_path.read_text())["data_root"]
        except (json.JSONDecodeError, KeyError):
            raise ValueError(f"{record_path} names no data_root; pass --data") from None
    dataset = CocoInstances.from_root(resolve_data_root(root), args.split)
    check_image_files(dataset)
    print(f"{args.split} split: {len(dataset):,} images; {dataset.dropped_summary()}")


def _finite_or_none(value):
    """NaN metrics (undefined APs) as JSON null."""
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
