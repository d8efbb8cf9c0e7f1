"""``gmaiou data``: write the synthetic dataset (``synth``), summarise a dataset's instances
(``stats``) and check its files before a long run (``check``)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from gmaiou.data.coco import SPLITS

__all__ = ["register", "run_check", "run_stats", "run_synth"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``data`` with the sub-subcommands ``synth``, ``stats`` and ``check``."""
    data = subparsers.add_parser(
        "data", help="datasets: generate the synthetic set, summarise instances, check files"
    )
    sub = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND")
    sub.required = True

    synth = sub.add_parser(
        "synth",
        help="write the synthetic COCO-format dataset",
        description="Write the deterministic synthetic dataset (PNG images, RLE masks, train/val "
        "splits; a fifth of the images is val; optionally a held-out test split). The same "
        "arguments give byte-identical files, and train and val do not change with --test-images.",
    )
    synth.add_argument("--out", type=Path, required=True, help="output folder (empty or absent)")
    synth.add_argument(
        "--images", type=int, default=400, help="images in all, train + val (default 400)"
    )
    synth.add_argument(
        "--size", type=int, default=550, help="square image side in pixels (default 550)"
    )
    synth.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    synth.add_argument(
        "--test-images",
        type=int,
        default=0,
        metavar="K",
        help="also write K held-out test images to test/ (default 0: none)",
    )
    synth.add_argument(
        "--mix",
        type=_class_mix,
        default="uniform",
        help="class odds: uniform (default; most boxes have MOB < 0.5), coco (about COCO's "
        "share of such boxes) or mob<NN> (a target share of NN%% of such boxes, e.g. mob30, "
        "changing only how often the low-MOB classes are drawn); `gmaiou data stats` measures "
        "a set's share",
    )
    synth.add_argument(
        "--force",
        action="store_true",
        help="replace annotations/, train/, val/ and test/ in a non-empty --out",
    )
    synth.set_defaults(func=run_synth)

    stats = sub.add_parser(
        "stats",
        help="per-class counts, COCO size ranges and GT MOB ratios of a dataset split",
        description="Summarise a dataset split: instances per class, shares of small / medium / "
        "large objects (COCO area ranges) and of GT boxes with MOB ratio |M|/|B| < 0.5.",
    )
    source = stats.add_mutually_exclusive_group(required=True)
    source.add_argument("--root", type=Path, help="dataset root in the COCO or synthetic layout")
    source.add_argument(
        "--synthetic", type=int, metavar="N", help="the cached synthetic set of N images"
    )
    stats.add_argument("--size", type=int, default=550, help="synthetic image side (default 550)")
    stats.add_argument("--seed", type=int, default=0, help="synthetic seed (default 0)")
    stats.add_argument("--split", choices=SPLITS, default="train")
    stats.add_argument(
        "--max-images", type=int, default=None, help="analyse only the first M images"
    )
    stats.add_argument("--out", type=Path, default=None, help="also write the numbers as JSON here")
    stats.set_defaults(func=run_stats)

    check = sub.add_parser(
        "check",
        help="check a dataset's files: every image exists and has its JSON size",
        description="The pre-flight check `gmaiou train` and `gmaiou eval` run: every image file "
        "of each split exists and its size (read from the file header, not the pixels) equals "
        "its annotation entry; the split has at least one usable instance. Stops at the first "
        "problem, naming the file.",
    )
    check.add_argument(
        "--data", type=Path, required=True, help="dataset root (COCO or synthetic layout)"
    )
    check.add_argument(
        "--split",
        choices=SPLITS,
        action="append",
        default=None,
        help="split to check (repeatable; default: every split present)",
    )
    check.set_defaults(func=run_check)


def _class_mix(name: str) -> str:
    """A ``--mix`` value: a named class mix or ``mob<NN>`` within reach."""
    from gmaiou.data.synthetic import _mix_odds

    try:
        _mix_odds(name)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return name


def run_synth(args: argparse.Namespace) -> int:
    from gmaiou.data.synthetic import generate, split_sizes
    from gmaiou.paths import check_writable_folder

    out: Path = check_writable_folder(args.out, "dataset folder")
    if out.is_dir() and any(out.iterdir()) and not args.force:
        raise FileExistsError(
            f"{out} is not empty; choose another --out or pass --force to replace it"
        )
    generate(
        out,
        args.images,
        args.size,
        args.seed,
        overwrite=args.force,
        mix=args.mix,
        test_images=args.test_images,
    )
    num_train, num_val = split_sizes(args.images)
    test = f" + {args.test_images} test" if args.test_images else ""
    print(
        f"wrote {num_train} train + {num_val} val{test} images of {args.size}x{args.size} to {out}"
    )
    return 0


def run_stats(args: argparse.Namespace) -> int:
    from gmaiou.data.coco import CocoInstances
    from gmaiou.data.stats import dataset_statistics, statistics_markdown
    from gmaiou.data.synthetic import ensure_synthetic

    root = (
        args.root
        if args.root is not None
        else ensure_synthetic(args.synthetic, args.size, args.seed)
    )
    dataset = CocoInstances.from_root(root, args.split)
    stats = dataset_statistics(dataset, max_images=args.max_images)
    print(f"{root} ({args.split}): {stats['images']} images, {stats['instances']} instances")
    print(dataset.dropped_summary())
    print(statistics_markdown(stats))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(stats, indent=2, sort_keys=True) + "\n")
        print(f"wrote {args.out}")
    return 0


def run_check(args: argparse.Namespace) -> int:
    from gmaiou.data.coco import CocoInstances, check_image_files, find_split

    root: Path = args.data
    if args.split:
        splits = list(dict.fromkeys(args.split))
    else:
        splits = [s for s in SPLITS if _has_split(root, s)]
        if not splits:
            find_split(root, SPLITS[0])  # raises, naming the files looked for
    for split in splits:
        dataset = CocoInstances.from_root(root, split)
        tic = time.perf_counter()
        count = check_image_files(dataset)
        seconds = time.perf_counter() - tic
        dataset.check_instances()
        per_image = 1000 * seconds / max(count, 1)
        print(
            f"{split}: {count:,} image files present with their JSON sizes "
            f"({seconds:.2f} s, {per_image:.3f} ms per image); {dataset.dropped_summary()}"
        )
    return 0


def _has_split(root: Path, split: str) -> bool:
    from gmaiou.data.coco import find_split

    try:
        find_split(root, split)
    except FileNotFoundError as err:
        if "does not exist or is not a folder" in str(err):
            raise
        return False
    return True
