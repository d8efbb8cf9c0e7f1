"""``gmaiou-paper experiment``: train a grid of runs one at a time, keeping each finished run's record.

    gmaiou-paper experiment --grid table2 --profile default            # skips runs whose record exists
    gmaiou-paper experiment --grid table2 --profile default --force    # retrains every run
    gmaiou-paper experiment --grid table2 --profile default --list     # the runs and whether each is done
    gmaiou-paper experiment --grid table2 --profile default --redo-dirty  # retrains the dirty records

Records go to ``figures/runs/<profile>/<grid>/<id>.json``, run folders to ``runs/``;
an interrupted run resumes from its checkpoint the next time. The ``default`` profile trains
only from a checkout without modified tracked files (outside ``figures/``) unless
``--allow-dirty``, whose records say ``"dirty": true`` and stay out of the tables. A record
trained from a checkout with uncommitted changes (``"dirty": true``, or a ``commit`` ending in
``-dirty``) counts as done unless ``--redo-dirty``, which retrains exactly those runs (``--list``
shows them as ``dirty: to retrain``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "experiment",
        help="train a grid of presets x seeds, one run at a time, recording each under figures/runs/",
        description="Train the runs of a grid (see gmaiou.paper.experiments.grids) one at a time. A run "
        "whose record exists is skipped unless --force; an interrupted run resumes from its checkpoint.",
    )
    parser.add_argument("--grid", required=True, help="table2, table3, curve, recipe-search, ...")
    parser.add_argument("--profile", default="default", help="smoke, quick or default")
    parser.add_argument(
        "--only", action="append", default=[], metavar="ID", help="run only these ids"
    )
    parser.add_argument(
        "--shard", default=None, metavar="K/N", help="only the runs whose index i has i %% N == K"
    )
    parser.add_argument("--force", action="store_true", help="retrain runs whose record exists")
    parser.add_argument(
        "--allow-dirty",
        action="store_true",
        help="train from a checkout with modified tracked files; the records say dirty: true",
    )
    parser.add_argument(
        "--redo-dirty",
        action="store_true",
        help="retrain the runs whose record is dirty (trained from a checkout with uncommitted "
        "changes); the tables leave such records out",
    )
    parser.add_argument(
        "--list", action="store_true", help="list the runs and their state, train nothing"
    )
    parser.add_argument(
        "--device", default=None, help="cpu, cuda, cuda:N (default: CUDA if available)"
    )
    parser.add_argument(
        "--parallel",
        type=int,
        default=1,
        help="runs at once, as subprocesses (GPU machines; default 1)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads per run")
    parser.add_argument(
        "--root", type=Path, default=None, help="repository root (default: this checkout)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from gmaiou.paper.experiments.grids import get_grid
    from gmaiou.paper.experiments.runner import run_grid, run_state

    if args.parallel < 1:
        raise ValueError(f"--parallel must be >= 1, got {args.parallel}")
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    specs = get_grid(args.grid, args.profile)
    if args.only:
        known = {s.run_id for s in specs}
        unknown = [i for i in args.only if i not in known]
        if unknown:
            raise ValueError(
                f"no run {unknown[0]!r} in grid {args.grid!r} ({args.profile}); see --list"
            )
        specs = [s for s in specs if s.run_id in args.only]
    if args.shard is not None:
        try:
            k, n = (int(v) for v in args.shard.split("/"))
        except ValueError:
            raise ValueError(
                f"--shard must be K/N with integers 0 <= K < N, got {args.shard!r}"
            ) from None
        if not 0 <= k < n:
            raise ValueError(f"--shard must be K/N with 0 <= K < N, got {args.shard!r}")
        specs = specs[k::n]
    if args.redo_dirty and args.allow_dirty:
        raise ValueError(
            "--redo-dirty retrains dirty records: it needs a clean checkout, not --allow-dirty"
        )
    if args.list:
        states = [run_state(spec, redo_dirty=args.redo_dirty) for spec in specs]
        width = max((len(state) for state in states), default=0)
        for spec, state in zip(specs, states):
            print(f"{state:{width}s} {spec.run_id}")
        return 0
    records = run_grid(
        specs,
        root=args.root,
        force=args.force or None,  # None: GMAIOU_FORCE decides
        device=args.device,
        parallel=args.parallel,
        progress=not args.no_progress,
        allow_dirty=args.allow_dirty or None,  # None: the profile decides
        redo_dirty=args.redo_dirty,
    )
    for record in records:
        segm, bbox = record["metrics"]["segm"], record["metrics"]["bbox"]
        print(
            f"{record['id']}: mask AP {segm['AP']:.1f}, box AP {bbox['AP']:.1f}, "
            f"{record['iterations']} it in {record['train_seconds'] / 60:.1f} min ({record['device_name']})"
        )
    return 0
