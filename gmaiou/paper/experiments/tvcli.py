"""``gmaiou-paper tv-compare``: train the paired torchvision Mask R-CNN comparison (box IoU
against GmaIoU in the RPN and RoI heads, :func:`gmaiou.paper.torchvision_demo.tv_grid`), one
run at a time, writing each finished run's record.

    gmaiou-paper tv-compare --profile default --threads 1       # skips runs whose record exists
    gmaiou-paper tv-compare --profile default --list            # the runs: done, to resume or to train

Records go to ``figures/runs/<profile>/torchvision/<id>.json``. A run takes about fifteen
minutes on one CPU core and checkpoints every 50 iterations to
``runs/<profile>/torchvision/<id>/checkpoint.pt``: an interrupted run resumes from its last
checkpoint (exactly: the same batches and draws), its record lists the stretches in
``segments``, and the checkpoint is deleted once the record is written. The ``default``
profile trains only from a checkout without modified tracked files (outside ``figures/``)
unless ``--allow-dirty``, whose records say ``"dirty": true`` and stay out of the table.
"""

from __future__ import annotations

import argparse

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "tv-compare",
        help="train the paired torchvision Mask R-CNN comparison (box IoU vs GmaIoU)",
        description="Train the runs of the paired torchvision Mask R-CNN comparison one at a "
        "time; a run whose record exists is skipped.",
    )
    parser.add_argument("--profile", default="default", help="smoke, quick or default")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--allow-dirty",
        action="store_true",
        help="train from a checkout with modified tracked files; the records say dirty: true",
    )
    parser.add_argument(
        "--list", action="store_true", help="list the runs and their state, train nothing"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress lines")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from gmaiou.paper.torchvision_demo import (
        checkpoint_file,
        paired_comparison,
        record_file,
        tv_grid,
    )

    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    if args.list:
        for tv_run in tv_grid(args.profile):
            if record_file(tv_run).is_file():
                state = "done"
            elif checkpoint_file(tv_run).is_file():
                state = "to resume from its checkpoint"
            else:
                state = "to train"
            print(f"{tv_run.run_id}: {state}")
        return 0
    records = paired_comparison(
        args.profile,
        train=True,
        progress=not args.no_progress,
        allow_dirty=True if args.allow_dirty else None,
    )
    print(f"{len(records)} of {len(tv_grid(args.profile))} runs recorded")
    return 0
