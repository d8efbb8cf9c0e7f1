"""``gmaiou-paper bench data``: data-loading throughput (images/s) with YOLACT's training transform.

For the real COCO sample (when present) and the synthetic dataset, one run times a
shuffled DataLoader of :class:`gmaiou.data.CocoInstances` with
:class:`gmaiou.data.TrainTransform` at the given size (decode, augmentation, resize,
normalisation, collation), in the main process (0 workers) and with N workers, each
with and without building the GmaIoU summed-area tables in the loader
(``build_integrals``). The first batch of each run (worker start-up) is not timed.
The main process runs with ``--threads`` torch threads (default 1, as each worker
has): on a shared machine more threads than free cores make loading far slower.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from gmaiou.data.coco import CocoInstances
from gmaiou.data.loader import make_loader
from gmaiou.data.synthetic import ensure_synthetic
from gmaiou.data.transforms import TrainTransform
from gmaiou.paper.benchmarks import cpu_name, write_record
from gmaiou.paper.paths import coco_sample_dir

__all__ = ["DataBenchmark", "format_table", "register", "run", "time_loader"]


@dataclass
class DataBenchmark:
    """One run's settings and its rows (one per dataset, worker count and integrals flag)."""

    size: int
    batch_size: int
    images_timed: int
    cpu_count: int
    torch_threads: int
    cpu: str
    torch_version: str
    rows: list[dict] = field(default_factory=list)


def time_loader(
    dataset: CocoInstances,
    batch_size: int,
    num_workers: int,
    images: int,
    build_integrals: bool,
    seed: int = 0,
) -> dict:
    """Images/s of a shuffled loader over ``dataset``, timing about ``images`` images after one warm-up batch."""
    if images < 1:
        raise ValueError(f"images must be >= 1, got {images}")
    if len(dataset) == 0:
        raise ValueError(f"{dataset.ann_file} has no images to time")
    loader = make_loader(
        dataset,
        batch_size,
        shuffle=True,
        num_workers=num_workers,
        build_integrals=build_integrals,
        seed=seed,
    )
    counted, start, first = 0, 0.0, True
    try:
        while counted < images:
            for batch in loader:
                if first:  # worker start-up and first decode: not timed
                    first, start = False, time.perf_counter()
                    continue
                counted += batch["images"].shape[0]
                if counted >= images:
                    break
    finally:
        elapsed = time.perf_counter() - start
        del loader  # stops persistent workers
    return {
        "workers": num_workers,
        "integrals": build_integrals,
        "images": counted,
        "seconds": elapsed,
        "images_per_s": counted / elapsed if elapsed > 0 else float("nan"),
    }


def format_table(result: DataBenchmark) -> str:
    """A Markdown table of the rows."""
    lines = [
        "| dataset | workers | GmaIoU tables | images/s | ms/image |",
        "|---|---:|---|---:|---:|",
    ]
    for r in result.rows:
        lines.append(
            f"| {r['dataset']} | {r['workers']} | {'yes' if r['integrals'] else 'no'} | "
            f"{r['images_per_s']:.1f} | {1000.0 / r['images_per_s']:.1f} |"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    workers = args.workers if args.workers is not None else max(1, min(4, os.cpu_count() or 1))
    datasets: list[tuple[str, CocoInstances]] = []
    transform = TrainTransform(args.size)
    coco_root = None if args.no_coco else (args.coco or coco_sample_dir())
    if coco_root is not None:
        datasets.append(
            (
                "coco-sample" if args.coco is None else str(coco_root),
                CocoInstances.from_root(coco_root, "train", transform),
            )
        )
    else:
        print("no COCO sample found (../shared/data/coco-sample); timing the synthetic set only")
    synth_root = ensure_synthetic(args.synthetic_images, args.size, seed=0)
    datasets.append(
        (
            f"synthetic ({args.synthetic_images} images)",
            CocoInstances.from_root(synth_root, "train", transform),
        )
    )

    result = DataBenchmark(
        size=args.size,
        batch_size=args.batch_size,
        images_timed=args.images,
        cpu_count=os.cpu_count() or 1,
        torch_threads=torch.get_num_threads(),
        cpu=cpu_name(),
        torch_version=torch.__version__,
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    result.torch_threads = args.threads
    configs = [
        (name, ds, w, integrals)
        for name, ds in datasets
        for w in sorted({0, workers})
        for integrals in (False, True)
    ]
    for name, ds, w, integrals in tqdm(configs, desc="bench data", unit="run"):
        row = time_loader(ds, args.batch_size, w, args.images, integrals, seed=args.seed)
        result.rows.append({"dataset": name, "dataset_images": len(ds), **row})
    torch.set_num_threads(threads)

    print(
        f"{result.cpu}, {result.cpu_count} CPUs, torch {result.torch_version}, "
        f"{result.torch_threads} thread(s) in the main process; "
        f"TrainTransform({args.size}), batch {args.batch_size}, {args.images} images timed per row"
    )
    print(format_table(result))
    out = write_record(args.out, asdict(result))
    print(f"written {out}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "data",
        help="data-loading images/s with the training transform (coco-sample and synthetic)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--size", type=int, default=550, help="training image side (default 550)")
    p.add_argument("--images", type=int, default=96, help="images timed per row (default 96)")
    p.add_argument("--batch-size", type=int, default=8, help="images per batch (default 8)")
    p.add_argument(
        "--workers", type=int, help="worker processes of the N-worker rows (default min(4, CPUs))"
    )
    p.add_argument(
        "--synthetic-images", type=int, default=50, help="size of the synthetic set (default 50)"
    )
    p.add_argument(
        "--coco", type=Path, help="COCO-layout root to time instead of the bundled sample"
    )
    p.add_argument("--no-coco", action="store_true", help="time the synthetic set only")
    p.add_argument(
        "--threads", type=int, default=1, help="torch threads of the main process (default 1)"
    )
    p.add_argument("--seed", type=int, default=0, help="shuffling and augmentation seed")
    p.add_argument(
        "--out", default="runs/bench/data.json", help="JSON output (default runs/bench/data.json)"
    )
    p.set_defaults(func=run)
