"""``gmaiou-paper bench tvmatch``: a torchvision Mask R-CNN's matching by GmaIoU vs box IoU, one thread.

Per image, the matching a Mask R-CNN training step does (:mod:`gmaiou.torchvision`):

* RPN: the quality matrix of every GT with the FPN anchors of ``maskrcnn_resnet50_fpn``
  (sizes 32-512, ratios 0.5 / 1 / 2, strides 4-64, the image padded to a multiple of 32:
  25,575 anchors at 320, 82,863 at 550),
  then torchvision's ``Matcher(0.7, 0.3, allow_low_quality_matches=True)``;
* RoI heads: the same for 2,000 proposals (the training ``post_nms_top_n``: anchors drawn at
  random and jittered by a pixel) with the GT boxes appended, then ``Matcher(0.5, 0.5)``.

By box IoU (``torchvision.ops.box_iou``, what the stock model runs) and by each mask measure,
whose time includes building the masks' summed-area tables once per image (shared by the two
stages, as in the model). Masks: the bundled COCO sample's when present, else synthetic scenes
(:func:`gmaiou.paper.analysis.instances.default_instances`). Times are ms per image: each
image's best of ``repeats`` passes, averaged over the images; the measures alternate within a
pass. The goal: GmaIoU's matching within 2x of box IoU's.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from gmaiou.paper.benchmarks import device_name, timing_record_path, write_outputs

__all__ = ["GOAL_RATIO", "markdown_table", "maskrcnn_anchors", "register", "run", "run_tvmatch"]

#: GmaIoU's matching time over box IoU's that the benchmark checks against.
GOAL_RATIO = 2.0
_STRIDES = (4, 8, 16, 32, 64)


def maskrcnn_anchors(size: int) -> Tensor:
    """``maskrcnn_resnet50_fpn``'s anchors of one ``size x size`` image (padded to 32, as it is)."""
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.image_list import ImageList

    generator = AnchorGenerator(((32,), (64,), (128,), (256,), (512,)), ((0.5, 1.0, 2.0),) * 5)
    padded = -(-size // 32) * 32
    features = [torch.zeros(1, 1, -(-padded // s), -(-padded // s)) for s in _STRIDES]
    images = ImageList(torch.zeros(1, 3, padded, padded), [(size, size)])
    return generator(images, features)[0]


def _proposals(anchors: Tensor, count: int, generator: torch.Generator) -> Tensor:
    picked = anchors[torch.randperm(anchors.shape[0], generator=generator)[:count]]
    moved = picked + torch.randn(picked.shape, generator=generator)
    return torch.cat([moved[:, :2].minimum(moved[:, 2:]), moved[:, :2].maximum(moved[:, 2:])], 1)


def _match_once(target: dict[str, Tensor], anchors: Tensor, proposals: Tensor, measure: str):
    """One image's RPN and RoI matching; ``(build, rpn, roi)`` seconds."""
    from torchvision.models.detection._utils import Matcher

    from gmaiou.measure import is_mask_measure
    from gmaiou.torchvision import MaskTableCache, match_quality

    rpn_matcher = Matcher(0.7, 0.3, allow_low_quality_matches=True)
    roi_matcher = Matcher(0.5, 0.5, allow_low_quality_matches=False)
    cache = MaskTableCache()
    t0 = t1 = time.perf_counter()
    if is_mask_measure(measure):
        cache.integrals(target["masks"], target["boxes"])
        t1 = time.perf_counter()
    rpn_matcher(match_quality(target, anchors, measure, cache=cache))
    t2 = time.perf_counter()  # box IoU: t1 = t0, no tables
    with_gt = torch.cat([proposals, target["boxes"]])
    roi_matcher(match_quality(target, with_gt, measure, cache=cache))
    t3 = time.perf_counter()
    return t1 - t0, t2 - t1, t3 - t2


def run_tvmatch(
    sizes: tuple[int, ...] = (320, 416, 550),
    images: int = 8,
    repeats: int = 5,
    proposals: int = 2000,
    measures: tuple[str, ...] = ("iou", "maiou", "gmaiou"),
    threads: int = 1,
    seed: int = 0,
) -> dict[str, Any]:
    """Time the matching at each size; see the module docstring. Returns the record."""
    from gmaiou.paper.analysis.instances import default_instances

    if images < 1 or repeats < 1 or proposals < 1:
        raise ValueError(
            f"need images, repeats, proposals >= 1, got {images}, {repeats}, {proposals}"
        )
    if "iou" not in measures:
        raise ValueError("measures must include 'iou', the baseline")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        device = device_name("cpu")
        rows, source = [], None
        for size in sizes:
            source, instances = default_instances(size, images)
            anchors = maskrcnn_anchors(size)
            g = torch.Generator().manual_seed(seed)
            targets = [{"boxes": b.float(), "masks": m} for b, m in instances]
            props = [_proposals(anchors, proposals, g) for _ in targets]
            for t, p in zip(targets, props):  # warm-up
                for m in measures:
                    _match_once(t, anchors, p, m)
            # per measure, per phase, per image: the best of the passes so far
            best = {m: [[float("inf")] * 3 for _ in targets] for m in measures}
            for r in range(repeats):
                order = measures if r % 2 == 0 else tuple(reversed(measures))
                for i, (t, p) in enumerate(zip(targets, props)):
                    for m in order:
                        phases = _match_once(t, anchors, p, m)
                        best[m][i] = [min(a, b) for a, b in zip(best[m][i], phases)]
            row: dict[str, Any] = {
                "size": size,
                "anchors": int(anchors.shape[0]),
                "proposals": proposals,
                "gts_per_image": statistics.fmean(len(t["boxes"]) for t in targets),
                "ms": {},
            }
            for m in measures:
                per_phase = [statistics.fmean(b[k] for b in best[m]) * 1e3 for k in range(3)]
                row["ms"][m] = {
                    "tables": per_phase[0],
                    "rpn": per_phase[1],
                    "roi": per_phase[2],
                    "total": sum(per_phase),
                }
            base = row["ms"]["iou"]["total"]
            row["ratio"] = {m: row["ms"][m]["total"] / base for m in measures if m != "iou"}
            rows.append(row)
    finally:
        torch.set_num_threads(before)
    return {
        "benchmark": "tvmatch",
        "device": device,
        "torch": torch.__version__,
        "source": source,
        "images": images,
        "repeats": repeats,
        "goal_ratio": GOAL_RATIO,
        "rows": rows,
        "goal_met": all(r["ratio"].get("gmaiou", 0.0) <= GOAL_RATIO for r in rows),
    }


def markdown_table(record: dict[str, Any]) -> str:
    """The record as a Markdown table: ms per image by phase and the ratio to box IoU."""
    lines = [
        f"Mask R-CNN matching per image (RPN anchors + {record['rows'][0]['proposals']:,} "
        f"proposals), {record['source']} masks, {record['images']} images; {record['device']}, "
        f"torch {record['torch']}; each image's best of {record['repeats']} passes.",
        "",
        "| size | anchors | GTs | measure | tables (ms) | RPN (ms) | RoI (ms) | total (ms) "
        "| / box IoU |",
        "|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for row in record["rows"]:
        for m, t in row["ms"].items():
            ratio = "1" if m == "iou" else f"{row['ratio'][m]:.2f}"
            lines.append(
                f"| {row['size']} | {row['anchors']:,} | {row['gts_per_image']:.1f} | {m} | "
                f"{t['tables']:.2f} | {t['rpn']:.2f} | {t['roi']:.2f} | {t['total']:.2f} | {ratio} |"
            )
    verdict = "met at every size" if record["goal_met"] else "not met at every size"
    lines += ["", f"Goal: GmaIoU within {record['goal_ratio']:g}x of box IoU: {verdict}."]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    record = run_tvmatch(
        sizes=tuple(args.sizes),
        images=args.images,
        repeats=args.repeats,
        proposals=args.proposals,
        threads=args.threads,
        seed=args.seed,
    )
    out = args.out if args.out is not None else timing_record_path("tvmatch", "cpu")
    write_outputs(out, record, markdown_table(record))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "tvmatch",
        help="torchvision Mask R-CNN matching: GmaIoU (tables included) vs box IoU, one thread",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--sizes", type=int, nargs="+", default=[320, 416, 550], help="image sides")
    p.add_argument("--images", type=int, default=8, help="images per size (default 8)")
    p.add_argument("--repeats", type=int, default=5, help="timed passes (default 5)")
    p.add_argument("--proposals", type=int, default=2000, help="RoI proposals (default 2000)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON output (default figures/timings/<bench>_<cpu|cuda>.json); the Markdown table goes next to it (.md)",
    )
    p.set_defaults(func=run)
