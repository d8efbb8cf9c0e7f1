"""``gmaiou-paper bench assign``: the cost of mask-aware overlaps and assignment, side by side.

On real COCO masks (the bundled sample's val split, resized to each image size)
and on synthetic irregular masks, one run times, image by image and interleaved:

* the overlap matrix of every GT with YOLACT's 19,248 anchors (at 550) by
  box IoU (torchvision), by GmaIoU brute force (pixel counting pair by pair), by
  full-image integral images with a Python loop over GTs (as the public maIoU
  code does), and by :func:`gmaiou.gmaiou` (Alg. 1 with cropped tables);
* assignment per image by every assigner: fixed IoU (YOLACT) and ATSS with IoU,
  GIoU, DIoU, maIoU (P = B) and GmaIoU (P = M), the mask-aware ones from raw
  masks and with tables prepared ahead (as the training data loader does);
* the floor of a raw-mask ATSS-GmaIoU: ATSS with its candidates' overlaps looked up
  (what ATSS costs without a measure), then one read of every mask (``|M|`` counts
  every pixel), timed apart and as one sequence per image.

Times are in ms per image, each image's best of ``repeats`` passes over the images. The record
gives the torch thread count and the CPU cores the process may run on (pin it, e.g.
``taskset -c 1`` with ``OMP_NUM_THREADS=1``, for stable numbers; ``--threads`` sets torch's
count, one by default), and
:meth:`AssignBenchmark.ratios` the three ratios with a goal (:data:`GOALS`) and three more
(:data:`EXTRA_RATIOS`).

Timings on a shared machine move with its other tenants' load from minute to minute.
:func:`run_goal_rounds` (``--rounds N``) times only what the goals compare, ``N`` rounds in
a row. Runs of several settings (thread counts, devices) and rounds fold into two tables,
each with a figure and sentences computed from it: :func:`format_assignment_cost` (ms per
image of every method: the median over the runs of a setting and their range) and
:func:`format_assignment_goals` (every ratio: median, range, runs that met its goal).
:func:`assignment_record` and :func:`load_runs` keep runs as one JSON record.
"""

from __future__ import annotations

import argparse
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from statistics import median

import numpy as np
import torch
from torch import Tensor

from gmaiou.anchors import atss_anchors, yolact_anchors
from gmaiou.assigners import ATSSAssigner, MaxIoUAssigner
from gmaiou.measure import (
    MaskIntegrals,
    box_union,
    gmaiou,
    gmaiou_bruteforce,
    gmaiou_from_counts,
    pairwise_overlaps,
)
from gmaiou.measure.pixel_counts import _count_all
from gmaiou.paper.analysis.instances import Instances, coco_instances, synthetic_instances
from gmaiou.paper.benchmarks import device_name, torch_threads, write_record
from gmaiou.paper.paths import coco_sample_dir
from gmaiou.paper.profiles import Profile, get_profile

__all__ = [
    "EXTRA_RATIOS",
    "FLOOR",
    "GOALS",
    "AssignBenchmark",
    "assignment_cost_findings",
    "assignment_goals_findings",
    "assignment_record",
    "describe_runs",
    "format_assignment_cost",
    "format_assignment_goals",
    "gmaiou_full_image",
    "load_runs",
    "plot_assignment_cost",
    "plot_assignment_goals",
    "run",
    "run_assign_benchmark",
    "run_goal_rounds",
]

_ATSS_GMA, _ATSS_IOU = "ATSS GmaIoU (P=M)", "ATSS IoU"
_ALG1, _FULL = "GmaIoU matrix, Alg. 1 (ours)", "GmaIoU matrix, full-image tables (public maIoU)"
_BOX, _BRUTE = "box IoU matrix", "GmaIoU matrix, brute force"

_READ = "reading every mask once (counting its pixels: the least an exact raw-mask path does)"
_GIVEN = "ATSS with its candidates' overlaps given (ATSS's cost without a measure)"
_GIVEN_READ = "ATSS without a measure, then reading every mask once (the two in turn, per image)"

#: The least ATSS-GmaIoU from raw masks can cost against ATSS-IoU: ATSS without its
#: measure, then one read of every mask (``|M|`` counts every pixel), timed as one
#: sequence per image: the read evicts ATSS's own data from the cache, so the two
#: timed apart and added understate it.
FLOOR = "(ATSS without a measure, then reading the masks) / ATSS IoU"
_PREPARED = f"{_ATSS_GMA}, tables prepared"
#: The ratios reported beside :data:`GOALS`: ``name -> (numerator, denominator)``.
_EXTRA: dict[str, tuple[str, str]] = {
    FLOOR: (_GIVEN_READ, _ATSS_IOU),
    "ATSS GmaIoU, tables prepared / ATSS IoU": (_PREPARED, _ATSS_IOU),
    "brute force / Alg. 1": (_BRUTE, _ALG1),
}
#: The names of the ratios reported beside :data:`GOALS`.
EXTRA_RATIOS = tuple(_EXTRA)


def _read_masks(masks: Tensor) -> object:
    """Count the masks' pixels, the fastest way on their device: one read of the masks.

    On the CPU this is the count the raw-mask path itself makes (one count of all the
    masks: OpenCV's on one thread, torch's threads on more), so the floor it gives is
    one that path can reach.
    """
    if masks.device.type == "cpu":
        return _count_all(np.ascontiguousarray(masks.numpy()))
    return torch.count_nonzero(masks, dim=(1, 2))


#: The ratios with a goal: ``name -> (numerator, denominator, "<=" or ">=", goal)``.
GOALS: dict[str, tuple[str, str, str, float]] = {
    "ATSS GmaIoU / ATSS IoU": (_ATSS_GMA, _ATSS_IOU, "<=", 1.1),
    "full-image / Alg. 1": (_FULL, _ALG1, ">=", 15.0),
    "Alg. 1 / box IoU": (_ALG1, _BOX, "<=", 2.0),
}


# ----------------------------------------------------------------------------- the public maIoU approach


def gmaiou_full_image(
    gt_boxes: Tensor, gt_masks: Tensor, anchors: Tensor, polygon: str = "box"
) -> Tensor:
    """GmaIoU the way the public maIoU code computes it: ``[G, A]``.

    Follows that code's steps: one summed-area table per GT over the whole image
    (``[G, H+1, W+1]``, a cumulative sum of the bool masks, hence int64, then cast to
    float32), then a Python loop over GTs that rounds and clamps the anchors whose box
    IoU is positive and reads the four corners through Python lists of coordinates.
    Kept here, outside the package API, as the benchmark's baseline; it is exact
    whenever every mask pixel lies inside its GT box (it looks at IoU > 0 only).
    """
    g, h, w = gt_masks.shape
    ious = pairwise_overlaps("iou", gt_boxes, anchors)
    out = torch.zeros_like(ious)
    if g == 0 or anchors.shape[0] == 0:
        return out
    padded = torch.zeros(g, h + 1, w + 1, dtype=torch.bool, device=gt_masks.device)
    padded[:, 1:, 1:] = gt_masks
    tables = padded.cumsum(1).cumsum(2).float()
    mask_area = tables[:, -1, -1]
    gt_area = (gt_boxes[:, 2] - gt_boxes[:, 0]) * (gt_boxes[:, 3] - gt_boxes[:, 1])
    anchor_area = (anchors[:, 2] - anchors[:, 0]) * (anchors[:, 3] - anchors[:, 1])
    union = box_union(gt_boxes, anchors)
    for i in range(g):
        keep = ious[i] > 0
        b = anchors[keep].round().int()
        b[:, 0::2] = b[:, 0::2].clamp(0, w)
        b[:, 1::2] = b[:, 1::2].clamp(0, h)
        x1, y1, x2, y2 = (b[:, k].tolist() for k in range(4))
        t = tables[i]
        inter = t[y2, x2] + t[y1, x1] - t[y1, x2] - t[y2, x1]
        out[i, keep] = gmaiou_from_counts(
            inter, mask_area[i], gt_area[i], anchor_area[keep], union[i, keep], polygon
        )
    return out


# ----------------------------------------------------------------------------- timing


class _OverlapsGiven(ATSSAssigner):
    """ATSS whose candidates' overlaps are looked up, computed ahead by box IoU per image.

    Times what ATSS costs apart from its measure (candidates by centre distance, the
    threshold, the centre test, ties), which ATSS with any measure pays.
    """

    def __init__(self) -> None:
        super().__init__(measure="iou")
        # Keyed by the GT boxes tensor itself (hashed by identity), which the key keeps alive.
        self._given: dict[Tensor, Tensor] = {}

    def prepare(self, anchors: Tensor, num_level_anchors: Sequence[int], images: Instances) -> None:
        """Compute and keep every image's candidate overlaps."""
        for boxes, masks in images:
            self.assign(anchors, boxes, masks, num_level_anchors=num_level_anchors)

    def _candidate_overlaps(self, cand, anchors, gt_boxes, gt_masks):  # type: ignore[override]
        if gt_boxes not in self._given:
            self._given[gt_boxes] = super()._candidate_overlaps(cand, anchors, gt_boxes, gt_masks)
        return self._given[gt_boxes]


@dataclass
class AssignBenchmark:
    """Results of one benchmark run: ms per image for each (dataset, size, method).

    ``device_type`` is ``cpu`` or ``cuda``; :func:`load_runs` tells it from the device's name
    for records written before it was kept.
    """

    device: str
    torch_version: str
    threads: int
    repeats: int
    rows: list[dict] = field(default_factory=list)
    cpu_affinity: list[int] | None = None
    device_type: str = "cpu"

    def table(self) -> list[dict]:
        return self.rows

    @property
    def setting(self) -> str:
        """What the times depend on besides the code: ``CPU, N torch thread(s)``, or the GPU."""
        return f"CPU, {_threads(self.threads)}" if self.device_type == "cpu" else self.device

    def times(self, dataset: str, size: int) -> dict[str, float]:
        """ms per image of every method timed on ``dataset`` at ``size``."""
        return {
            r["method"]: r["ms_per_image"]
            for r in self.rows
            if r["dataset"] == dataset and r["size"] == size
        }

    def ratio(self, dataset: str, size: int, numerator: str, denominator: str) -> float:
        times = self.times(dataset, size)
        return times[numerator] / times[denominator]

    def goal_ratios(self) -> list[dict]:
        """Per dataset and size: the ratios of :data:`GOALS`, each with whether it is met."""
        out = []
        for dataset, size in sorted({(r["dataset"], r["size"]) for r in self.rows}):
            row: dict = {"dataset": dataset, "size": size}
            for name, (num, den, sense, goal) in GOALS.items():
                value = self.ratio(dataset, size, num, den)
                row[name] = value
                row[f"{name} goal"] = f"{sense} {goal:g}"
                row[f"{name} met"] = value <= goal if sense == "<=" else value >= goal
            out.append(row)
        return out

    def ratios(self) -> list[dict]:
        """Per dataset and size: the goal ratios (with whether each is met) and those of
        :data:`EXTRA_RATIOS` whose two methods this run timed."""
        out = []
        for row in self.goal_ratios():
            times = self.times(row["dataset"], row["size"])
            for name, (num, den) in _EXTRA.items():
                if num in times and den in times:
                    row[name] = times[num] / times[den]
            out.append(row)
        return out


def _time_methods(
    methods: dict[str, Callable[[Tensor, Tensor], object]], images: Instances, repeats: int
) -> dict[str, float]:
    """ms per image of each method: per image, the best of ``repeats`` passes; interleaved.

    Every pass runs each method over all the images in turn (so a method meets the
    images' masks as they come, not still in the cache from another method), and each
    image's time is its best over the passes: a burst of load from another process
    spoils one image of one pass, not a method's whole pass.
    """
    best = {name: [float("inf")] * len(images) for name in methods}
    for fn in methods.values():  # warm-up (allocator, lazy imports)
        fn(*images[0])
    clock = time.perf_counter
    for _ in range(repeats):
        for name, fn in methods.items():
            times = best[name]
            for i, (boxes, masks) in enumerate(images):
                start = clock()
                fn(boxes, masks)
                times[i] = min(times[i], clock() - start)
    return {name: sum(times) * 1e3 / len(images) for name, times in best.items()}


def _synchronizer(dev: torch.device) -> Callable[[object], object]:
    """Identity that first waits for ``dev`` (CUDA runs asynchronously), so times are whole."""

    def sync(x: object) -> object:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        return x

    return sync


def _matrix_methods(anchors: Tensor, sync: Callable) -> dict[str, Callable]:
    """The three overlap matrices of every GT with ``anchors`` that :data:`GOALS` compares."""
    return {
        _BOX: lambda b, m: sync(pairwise_overlaps("iou", b, anchors)),
        _FULL: lambda b, m: sync(gmaiou_full_image(b, m, anchors, "box")),
        _ALG1: lambda b, m: sync(gmaiou(b, m, anchors, "box")),
    }


def _assign_methods(assigners: dict[str, tuple], sync: Callable) -> dict[str, Callable]:
    """``label -> (assigner, anchors, num_level_anchors)`` as timeable ``(boxes, masks)`` calls."""
    return {
        label: (
            lambda b, m, a=asg, anc=anchors, n=nl: sync(a.assign(anc, b, m, num_level_anchors=n))
        )
        for label, (asg, anchors, nl) in assigners.items()
    }


def _bench_one(
    images: Instances, size: int, dev: torch.device, repeats: int, bruteforce_images: int
) -> dict:
    """ms per image of every method on one list of images at one size."""
    yolact = yolact_anchors(size, device=dev)
    atss = atss_anchors(size, device=dev)
    ya, yn = yolact.anchors, yolact.num_level_anchors
    aa, an = atss.anchors, atss.num_level_anchors
    sync = _synchronizer(dev)
    times = _time_methods(_matrix_methods(ya, sync), images, repeats)
    times.update(
        _time_methods(
            {"GmaIoU matrix, brute force": lambda b, m: gmaiou_bruteforce(b, m, ya, "box")},
            images[: max(1, bruteforce_images)],
            1,
        )
    )
    assigners = {
        "fixed IoU (YOLACT)": (MaxIoUAssigner(), ya, yn),
        _ATSS_IOU: (ATSSAssigner(measure="iou"), aa, an),
        "ATSS GIoU": (ATSSAssigner(measure="giou"), aa, an),
        "ATSS DIoU": (ATSSAssigner(measure="diou"), aa, an),
        "ATSS maIoU (P=B)": (ATSSAssigner(measure="gmaiou-box"), aa, an),
        _ATSS_GMA: (ATSSAssigner(measure="gmaiou-mask"), aa, an),
    }
    times.update(_time_methods(_assign_methods(assigners, sync), images, repeats))
    given = _OverlapsGiven()
    given.prepare(aa, an, images)
    times.update(
        _time_methods(
            {
                _GIVEN: lambda b, m: sync(given.assign(aa, b, m, num_level_anchors=an)),
                _GIVEN_READ: lambda b, m: (
                    sync(given.assign(aa, b, m, num_level_anchors=an)),
                    sync(_read_masks(m)),
                ),
            },
            images,
            repeats,
        )
    )
    # Tables prepared ahead (in the data-loader workers during training): look-up and build apart.
    prepared = [(b, MaskIntegrals(m, b).build()) for b, m in images]
    gma = ATSSAssigner(measure="gmaiou-mask")
    times.update(
        _time_methods(
            {
                "ATSS GmaIoU (P=M), tables prepared": lambda b, t: sync(
                    gma.assign(aa, b, t, num_level_anchors=an)
                )
            },
            prepared,
            repeats,
        )
    )
    times.update(
        _time_methods(
            {
                "GmaIoU tables, built in the loader": lambda b, m: MaskIntegrals(m, b).build(),
                _READ: lambda b, m: sync(_read_masks(m)),
            },
            images,
            repeats,
        )
    )
    return {"times": times, "anchors_yolact": len(yolact), "anchors_atss": len(atss)}


def run_assign_benchmark(
    sizes: Sequence[int] = (400, 550, 700),
    num_images: int = 40,
    bruteforce_images: int = 2,
    repeats: int = 3,
    datasets: Sequence[str] = ("coco", "synthetic"),
    device: str = "cpu",
    progress: bool = True,
    threads: int | None = 1,
) -> AssignBenchmark:
    """Time every method on each dataset and size; see the module docstring.

    ``threads``: torch's CPU threads while timing, restored afterwards (``None``: as set).
    One by default: assignment runs image by image in a data-loader worker, which has one
    thread, and the ratios move with the setting (small ops pay for a second thread).
    """
    for d in datasets:
        _check_dataset(d)
    with torch_threads(threads):
        return _run_assign_benchmark(
            sizes, num_images, bruteforce_images, repeats, datasets, device, progress
        )


def _check_dataset(name: str) -> None:
    if name not in ("coco", "synthetic"):
        raise ValueError(f"unknown dataset {name!r}; choose 'coco' or 'synthetic'")


def _new_record(dev: torch.device, repeats: int) -> AssignBenchmark:
    """An empty record naming the device, torch, its thread count and the process's cores."""
    return AssignBenchmark(
        device=device_name(dev),
        torch_version=torch.__version__,
        threads=torch.get_num_threads(),
        repeats=repeats,
        cpu_affinity=sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        device_type=dev.type,
    )


def _load_images(dataset: str, size: int, num_images: int, dev: torch.device) -> Instances:
    """``num_images`` images of ``dataset`` at ``size`` px, on ``dev``."""
    if dataset == "coco":
        root = coco_sample_dir()
        if root is None:
            raise FileNotFoundError(
                "the COCO sample is not here (see gmaiou.paths.coco_sample_dir); "
                "time on dataset 'synthetic' instead"
            )
        images = coco_instances(root, size, num_images)
    else:
        images = synthetic_instances(size, num_images)
    return [(b.to(dev), m.to(dev)) for b, m in images]


def _add_rows(
    record: AssignBenchmark, dataset: str, size: int, images: Instances, times: dict, **extra
) -> None:
    """One row per timed method of ``dataset`` at ``size``."""
    gts = float(np.mean([b.shape[0] for b, _ in images]))
    for method, ms in times.items():
        record.rows.append(
            {
                "dataset": dataset,
                "size": size,
                "method": method,
                "ms_per_image": ms,
                "images": len(images),
                "gts_per_image": gts,
                **extra,
            }
        )


def _run_assign_benchmark(
    sizes: Sequence[int],
    num_images: int,
    bruteforce_images: int,
    repeats: int,
    datasets: Sequence[str],
    device: str,
    progress: bool,
) -> AssignBenchmark:
    from tqdm.auto import tqdm

    dev = torch.device(device)
    result = _new_record(dev, repeats)
    coco_root = coco_sample_dir()
    jobs = [(d, s) for d in datasets for s in sizes if d != "coco" or coco_root is not None]
    for dataset, size in tqdm(jobs, desc="bench assign", disable=not progress):
        images = _load_images(dataset, size, num_images, dev)
        one = _bench_one(images, size, dev, repeats, bruteforce_images)
        anchors = {"anchors_yolact": one["anchors_yolact"], "anchors_atss": one["anchors_atss"]}
        _add_rows(result, dataset, size, images, one["times"], **anchors)
    return result


def run_goal_rounds(
    rounds: int,
    sizes: Sequence[int] = (400, 550, 700),
    num_images: int = 50,
    repeats: int = 5,
    dataset: str = "coco",
    device: str = "cpu",
    threads: int | None = 2,
    progress: bool = True,
) -> list[AssignBenchmark]:
    """The ratios of :data:`GOALS` measured ``rounds`` times in a row: one record per round.

    A round times what the goals compare, as :func:`run_assign_benchmark` does (the
    three overlap matrices, then ATSS with IoU and with GmaIoU from raw masks; each
    image's best of ``repeats`` passes), on each size in turn. The rounds follow one
    another, so the spread of a ratio over them is how far it moves with the machine's
    state from minute to minute: on a shared machine, one record's ratio near its goal
    can land on either side of it.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    _check_dataset(dataset)
    from tqdm.auto import tqdm

    dev = torch.device(device)
    with torch_threads(threads):
        images = {size: _load_images(dataset, size, num_images, dev) for size in sizes}
        records = []
        jobs = [(i, size) for i in range(rounds) for size in sizes]
        for i, size in tqdm(jobs, desc="goal rounds", disable=not progress):
            if i == len(records):
                records.append(_new_record(dev, repeats))
            times = _bench_goals(images[size], size, dev, repeats)
            _add_rows(records[i], dataset, size, images[size], times, round=i)
    return records


def _bench_goals(images: Instances, size: int, dev: torch.device, repeats: int) -> dict:
    """ms per image of the methods :data:`GOALS` compares, timed as :func:`_bench_one` does."""
    ya = yolact_anchors(size, device=dev).anchors
    atss = atss_anchors(size, device=dev)
    sync = _synchronizer(dev)
    times = _time_methods(_matrix_methods(ya, sync), images, repeats)
    aa, an = atss.anchors, atss.num_level_anchors
    assigners = {
        _ATSS_IOU: (ATSSAssigner(measure="iou"), aa, an),
        _ATSS_GMA: (ATSSAssigner(measure="gmaiou-mask"), aa, an),
    }
    times.update(_time_methods(_assign_methods(assigners, sync), images, repeats))
    return times


def summarise(result: AssignBenchmark) -> list[str]:
    """Human-readable ratios for each dataset and size, each goal marked met or missed."""
    lines = []
    for row in result.ratios():
        parts = [
            f"{name} = {row[name]:.2f}x ({row[f'{name} goal']}: {'met' if row[f'{name} met'] else 'MISSED'})"
            for name in GOALS
        ]
        parts.append(
            "tables prepared: "
            f"{row['ATSS GmaIoU, tables prepared / ATSS IoU']:.2f}x; "
            f"brute force / Alg. 1 = {row['brute force / Alg. 1']:.0f}x"
        )
        lines.append(f"{row['dataset']} @ {row['size']}: " + "; ".join(parts))
    return lines


def describe(result: AssignBenchmark) -> str:
    """Where the numbers come from: device, torch, threads and the cores the process was pinned to."""
    cores = result.cpu_affinity
    pinned = "" if cores is None else f", on core(s) {','.join(map(str, cores))}"
    return (
        f"{result.device}, torch {result.torch_version}, {result.threads} torch thread(s){pinned}; "
        f"ms per image, each image's best of {result.repeats} passes"
    )


def format_ratios(result: AssignBenchmark) -> str:
    """A Markdown table of :meth:`AssignBenchmark.ratios`: the goal ratios, then the three others."""
    names = [*GOALS, *EXTRA_RATIOS]
    head = "| dataset | size | " + _ratio_headers(names)
    lines = [head + " |", "|---|---:|" + "---:|" * len(names)]
    for row in result.ratios():
        cells = [_ratio_cell(row, n) for n in names]
        lines.append(f"| {row['dataset']} | {row['size']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _ratio_headers(names: Sequence[str]) -> str:
    """Column headers of ratio ``names``, each goal ratio with its goal."""
    return " | ".join(
        f"{n} (goal {GOALS[n][2]} {GOALS[n][3]:g})" if n in GOALS else n for n in names
    )


def _ratio_cell(row: dict, name: str) -> str:
    """A ratio to 2 decimals, marked met or missed if it has a goal; 3 decimals where 2 would
    round it onto its goal (a miss of 1.104 against 1.1 would read "1.10 ✗")."""
    value = row[name]
    if name not in GOALS:
        return f"{value:.2f}"
    return _ratio_text(value, name) + (" ✓" if row[f"{name} met"] else " ✗")


def _ratio_text(value: float, name: str) -> str:
    """``value`` of goal ratio ``name`` to 2 decimals, or 3 where 2 would round it onto its goal."""
    goal = GOALS[name][3]
    text = f"{value:.2f}"
    if float(text) == goal and value != goal:
        text = f"{value:.3f}"
    return text


def _threads(n: int) -> str:
    return f"{n} torch thread{'s' if n != 1 else ''}"


def _span(values: Sequence[float], text: Callable[[float], str] = "{:.2f}".format) -> str:
    """``values``' lowest-highest as ``text`` writes them; one value where the two read alike."""
    low, high = text(min(values)), text(max(values))
    return low if low == high else f"{low}-{high}"


def _ms_text(value: float) -> str:
    """ms to 3 significant digits, whole numbers from 1,000 on (never an exponent)."""
    return f"{value:,.0f}" if value >= 999.5 else f"{value:.3g}"


def _factor_text(value: float) -> str:
    """A ratio to at most 3 significant digits: 245, 22.1, 1.06."""
    if value >= 99.95:
        return f"{value:.0f}"
    return f"{value:.1f}" if value >= 9.995 else f"{value:.2f}"


def _spread_text(values: Sequence[float], text: Callable[[float], str]) -> str:
    """``median`` and, where the values differ, ``(lowest-highest)``."""
    mid, span = text(median(values)), _span(values, text)
    return mid if span == mid else f"{mid} ({span})"


# ----------------------------------------------------------------------------- runs as one record


def assignment_record(results: Sequence[AssignBenchmark], source: str | None = None) -> dict:
    """Runs as one JSON-ready record: ``{"benchmark": "assign", "source": ..., "runs": [...]}``.

    ``source`` says which data the runs timed (the tables' stamp); :func:`load_runs` reads the
    record back.
    """
    record: dict = {"benchmark": "assign"}
    if source:
        record["source"] = source
    record["runs"] = [asdict(r) for r in results]
    return record


def _device_type(device: str) -> str:
    """``cpu`` for a name :func:`gmaiou.paper.benchmarks.device_name` gave a CPU, else ``cuda``."""
    return "cpu" if re.search(r"\(\d+ threads\)$", device) else "cuda"


def load_runs(record: dict) -> list[AssignBenchmark]:
    """The runs of a record of :func:`assignment_record`, or of one run's record as
    ``gmaiou-paper bench assign`` wrote it before (the run's fields and its ratios)."""
    items = record.get("runs", [record])
    names = {f.name for f in fields(AssignBenchmark)}
    runs = []
    for item in items:
        kwargs = {k: v for k, v in item.items() if k in names}
        kwargs.setdefault("device_type", _device_type(item["device"]))
        runs.append(AssignBenchmark(**kwargs))
    return runs


# ----------------------------------------------------------------------------- settings and cells


def _settings(results: Sequence[AssignBenchmark]) -> list[str]:
    """The runs' settings in table order: the CPU's by thread count, then each other device."""
    keys = {
        r.setting: (r.device_type != "cpu", r.threads if r.device_type == "cpu" else 0)
        for r in results
    }
    return sorted(keys, key=lambda s: (*keys[s], s))


def _is_full(result: AssignBenchmark) -> bool:
    """Whether the run timed every method (:func:`run_assign_benchmark`), not only the goals'."""
    return any(r["method"] == _PREPARED for r in result.rows)


def _methods(results: Sequence[AssignBenchmark]) -> list[str]:
    """Every method timed, in the order of the first run that timed every method."""
    ordered = sorted(results, key=lambda r: not _is_full(r))
    return list(dict.fromkeys(row["method"] for r in ordered for row in r.rows))


def _columns(results: Sequence[AssignBenchmark]) -> list[tuple[str, int]]:
    return sorted({(row["dataset"], row["size"]) for r in results for row in r.rows})


def _ms_values(results: Sequence[AssignBenchmark]) -> dict[tuple[str, str, int, str], list[float]]:
    """ms per image of every (method, dataset, size, setting): one value per run that timed it."""
    values: dict[tuple[str, str, int, str], list[float]] = {}
    for result in results:
        for row in result.rows:
            key = (row["method"], row["dataset"], row["size"], result.setting)
            values.setdefault(key, []).append(row["ms_per_image"])
    return values


def _ratio_rows(results: Sequence[AssignBenchmark]) -> dict[tuple[str, int, str], list[dict]]:
    """:meth:`AssignBenchmark.ratios` rows by (dataset, size, setting), in table order."""
    order = {s: i for i, s in enumerate(_settings(results))}
    groups: dict[tuple[str, int, str], list[dict]] = {}
    for result in results:
        for row in result.ratios():
            groups.setdefault((row["dataset"], row["size"], result.setting), []).append(row)
    return dict(sorted(groups.items(), key=lambda item: (*item[0][:2], order[item[0][2]])))


def _series(results: Sequence[AssignBenchmark], groups: dict) -> list[tuple[str, str]]:
    """The (dataset, setting) pairs of :func:`_ratio_rows` ``groups``: by dataset, then setting."""
    pairs = {(d, t) for d, _, t in groups}
    datasets = dict.fromkeys(d for d, _, _ in groups)
    return [(d, t) for d in datasets for t in _settings(results) if (d, t) in pairs]


def describe_runs(results: Sequence[AssignBenchmark]) -> str:
    """One line per setting: its device, torch version, cores (CPU) and how many runs it has."""
    lines = []
    for setting in _settings(results):
        runs = [r for r in results if r.setting == setting]
        first = runs[0]
        device = re.sub(r" \(\d+ threads\)$", "", first.device)
        torch_versions = ", ".join(sorted({r.torch_version for r in runs}))
        cores = ""
        if first.device_type == "cpu" and first.cpu_affinity is not None:
            cores = f", on core(s) {','.join(map(str, first.cpu_affinity))}"
        full = sum(_is_full(r) for r in runs)
        count = f"{_runs(full)} of every method"
        if len(runs) > full:
            count += f", {_runs(len(runs) - full)} of the methods the goals compare"
        device = "" if device == setting else f"{device}, "
        lines.append(f"- {setting}: {device}torch {torch_versions}{cores}; {count}")
    return "\n".join(lines)


def _runs(n: int) -> str:
    return f"{n} run{'s' if n != 1 else ''}"


def _passes(results: Sequence[AssignBenchmark]) -> str:
    return ", ".join(str(n) for n in sorted({r.repeats for r in results}))


# ----------------------------------------------------------------------------- assignment cost


def format_assignment_cost(results: Sequence[AssignBenchmark]) -> str:
    """Markdown: ms per image of every method, per (dataset, size) and setting.

    A cell is the median over the runs of its setting that timed the method, and, where they
    differ, their lowest-highest; above the table, each setting's device and runs.
    """
    columns, values = _columns(results), _ms_values(results)
    head = "| method | setting | " + " | ".join(f"{d} {s}" for d, s in columns) + " |"
    lines = [
        f"ms per image, each image's best of {_passes(results)} passes over the images; a cell "
        "is the median over the runs of its setting, with their lowest-highest where they differ.",
        "",
        describe_runs(results),
        "",
        head,
        "|---|---|" + "---:|" * len(columns),
    ]
    for method in _methods(results):
        for setting in _settings(results):
            cells = [values.get((method, d, s, setting)) for d, s in columns]
            if not any(cells):
                continue
            text = [_spread_text(c, _ms_text) if c else "–" for c in cells]
            lines.append(f"| {method} | {setting} | " + " | ".join(text) + " |")
    return "\n".join(lines)


#: Shorter method names for the figure's axis.
_SHORT = {
    _FULL: "GmaIoU matrix, full-image tables",
    _ALG1: "GmaIoU matrix, Alg. 1",
    _GIVEN: "ATSS without a measure",
    _GIVEN_READ: "ATSS without a measure, then reading the masks",
    _READ: "reading every mask once",
}


def plot_assignment_cost(results: Sequence[AssignBenchmark]):
    """One panel per (dataset, size): a bar per method and setting at the median ms per image
    over the runs, a line from the lowest to the highest, on a log scale."""
    import matplotlib.pyplot as plt

    if not results:
        raise ValueError("no run to plot")
    columns, values = _columns(results), _ms_values(results)
    datasets = list(dict.fromkeys(d for d, _ in columns))
    sizes = sorted({s for _, s in columns})
    methods, settings = _methods(results), _settings(results)
    height = 0.8 / len(settings)
    fig, axes = plt.subplots(
        len(datasets),
        len(sizes),
        figsize=(
            3.6 * len(sizes) + 3.2,
            0.28 * len(methods) * len(settings) ** 0.5 * len(datasets) + 1.6,
        ),
        squeeze=False,
        sharey=True,
    )
    for i, dataset in enumerate(datasets):
        for j, size in enumerate(sizes):
            ax = axes[i, j]
            for k, setting in enumerate(settings):
                offset = (k - (len(settings) - 1) / 2) * height
                ys, mids, lows, highs = [], [], [], []
                for m, method in enumerate(methods):
                    v = values.get((method, dataset, size, setting))
                    if v:
                        ys.append(m + offset)
                        mids.append(median(v))
                        lows.append(median(v) - min(v))
                        highs.append(max(v) - median(v))
                label = setting if (i, j) == (0, 0) else None
                ax.barh(ys, mids, height, xerr=[lows, highs], color=f"C{k}", label=label)
            ax.set_xscale("log")
            ax.set_title(f"{dataset}, {size} px", fontsize=9)
            ax.set_xlabel("ms per image (log)", fontsize=8)
            ax.tick_params(labelsize=7)
    axes[0, 0].set_yticks(range(len(methods)), [_SHORT.get(m, m) for m in methods])
    axes[0, 0].invert_yaxis()
    fig.legend(loc="upper center", ncol=len(settings), fontsize=8, bbox_to_anchor=(0.5, 1.0))
    fig.suptitle(
        "Overlap matrix and assignment time per image: median over the runs, lines from the "
        "lowest to the highest",
        fontsize=9,
        y=1.04,
    )
    fig.tight_layout()
    return fig


#: The sentences of :func:`assignment_cost_findings`: numerator, denominator, text.
_COST_SENTENCES = (
    (_BRUTE, _ALG1, "Alg. 1 builds the GmaIoU matrix {}x faster than brute force"),
    (_FULL, _ALG1, "{}x faster than the public maIoU code's full-image tables"),
    (_ALG1, _BOX, "in {}x the time of a box IoU matrix of the same pairs"),
    (_ATSS_GMA, _ATSS_IOU, "ATSS GmaIoU (P=M) from raw masks takes {}x the time of ATSS IoU"),
    (_PREPARED, _ATSS_IOU, "{}x with its tables prepared in the loader"),
    (_GIVEN_READ, _ATSS_IOU, "the floor (ATSS without a measure, then reading the masks) is {}x"),
)


def assignment_cost_findings(results: Sequence[AssignBenchmark]) -> list[str]:
    """Per dataset and setting, from the medians of :func:`format_assignment_cost`: Alg. 1
    against brute force, full-image tables and a box IoU matrix; ATSS-GmaIoU from raw masks,
    with tables prepared and the floor, against ATSS-IoU; each over the sizes timed."""
    values, columns = _ms_values(results), _columns(results)
    lines = []
    for dataset in dict.fromkeys(d for d, _ in columns):
        sizes = [s for d, s in columns if d == dataset]
        for setting in _settings(results):
            parts, measured = [], set()
            for num, den, text in _COST_SENTENCES:
                factors = {}
                for size in sizes:
                    a = values.get((num, dataset, size, setting))
                    b = values.get((den, dataset, size, setting))
                    if a and b:
                        factors[size] = median(a) / median(b)
                if factors:
                    parts.append(text.format(_span(list(factors.values()), _factor_text)))
                    measured |= set(factors)
            if parts:
                where = ", ".join(str(s) for s in sorted(measured))
                lines.append(
                    f"{dataset}, {setting} ({where} px, medians): " + "; ".join(parts) + "."
                )
    return lines


# ----------------------------------------------------------------------------- goal ratios


def _goal_cell(rows: Sequence[dict], name: str) -> tuple[str, str, int]:
    """Goal ratio ``name`` over ``rows``: its median, its range (one value if all agree), and
    how many rows met it."""
    values = [row[name] for row in rows]
    span = _span(values, lambda v: _ratio_text(v, name))
    return _ratio_text(median(values), name), span, sum(row[f"{name} met"] for row in rows)


def format_assignment_goals(results: Sequence[AssignBenchmark]) -> str:
    """Markdown: every ratio of :data:`GOALS` and :data:`EXTRA_RATIOS` per (dataset, size, setting).

    A goal's cell is its median over the runs, their lowest-highest where they differ and in
    how many runs it was met; the other ratios' the same without the goal, over the runs that
    timed both their methods.
    """
    names = [*GOALS, *EXTRA_RATIOS]
    head = "| dataset | size | setting | runs | " + _ratio_headers(names) + " |"
    lines = [
        "Each ratio is of two methods' ms per image in one run (the assignment cost table); a "
        "cell is its median over the runs, with their lowest-highest where they differ, and for "
        "a ratio with a goal, in how many runs the goal was met.",
        "",
        describe_runs(results),
        "",
        head,
        "|---|---:|---|---:|" + "---:|" * len(names),
    ]
    for (dataset, size, setting), rows in _ratio_rows(results).items():
        cells = []
        for name in GOALS:
            mid, span, met = _goal_cell(rows, name)
            spread = "" if span == mid else f" ({span})"
            cells.append(f"{mid}{spread}, met in {met}/{len(rows)}")
        for name in EXTRA_RATIOS:
            got = [row[name] for row in rows if name in row]
            cells.append(_spread_text(got, _factor_text) if got else "–")
        lines.append(
            f"| {dataset} | {size} | {setting} | {len(rows)} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


def assignment_goals_findings(results: Sequence[AssignBenchmark]) -> list[str]:
    """Per dataset, setting and goal: where it was met and in how many runs, with the values;
    then the floor's range. Sentences computed from the records."""
    groups = _ratio_rows(results)
    lines = []
    for dataset, setting in _series(results, groups):
        sizes = {s: rows for (d, s, t), rows in groups.items() if (d, t) == (dataset, setting)}
        n = max(len(rows) for rows in sizes.values())
        for name, (_, _, sense, goal) in GOALS.items():
            parts, met_all, met_none = [], True, True
            for size, rows in sizes.items():
                mid, span, met = _goal_cell(rows, name)
                if len(rows) == 1:
                    parts.append(f"{size} px: {mid}, {'met' if met else 'missed'}")
                else:
                    spread = "" if span == mid else f", {span}"
                    parts.append(f"{size} px: met in {met} of {len(rows)} (median {mid}{spread})")
                met_all &= met == len(rows)
                met_none &= met == 0
            every = "in every run " if n > 1 else ""
            if met_all or met_none:
                verdict = f"{'met' if met_all else 'missed'} {every}at every size"
            else:
                verdict = "not met in every run at every size" if n > 1 else "met at some sizes"
            lines.append(
                f"{dataset}, {setting}, {name} (goal {sense} {goal:g}), {_runs(n)}: {verdict}; "
                + "; ".join(parts)
                + "."
            )
        floors = [row[FLOOR] for rows in sizes.values() for row in rows if FLOOR in row]
        if floors:
            lines.append(f"{dataset}, {setting}, the floor {FLOOR}: {_span(floors)}.")
    return lines


def plot_assignment_goals(results: Sequence[AssignBenchmark]):
    """One panel per goal ratio: each run's value at each size (dots), their median (a bar)
    and the goal (dashed), per (dataset, setting)."""
    import matplotlib.pyplot as plt

    groups = _ratio_rows(results)
    if not groups:
        raise ValueError("no run to plot")
    series = _series(results, groups)
    fig, axes = plt.subplots(1, len(GOALS), figsize=(4.6 * len(GOALS), 3.4), squeeze=False)
    for ax, (name, (_, _, sense, goal)) in zip(axes[0], GOALS.items()):
        sizes = sorted({s for _, s, _ in groups})
        for j, (dataset, setting) in enumerate(series):
            label: str | None = f"{dataset}, {setting}"  # on the series' first dots only
            for k, size in enumerate(sizes):
                rows = groups.get((dataset, size, setting))
                if not rows:
                    continue
                values = [row[name] for row in rows]
                x = k + 0.12 * (j - (len(series) - 1) / 2)
                ax.plot([x] * len(values), values, "o", color=f"C{j}", alpha=0.6, label=label)
                ax.plot([x - 0.05, x + 0.05], [median(values)] * 2, color=f"C{j}", lw=2)
                label = None
        ax.set_xticks(range(len(sizes)), [f"{s} px" for s in sizes])
        ax.set_xlim(-0.5, len(sizes) - 0.5)
        ax.axhline(goal, color="k", ls="--", lw=1, label=f"goal {sense} {goal:g}")
        ax.set_title(name, fontsize=9)
        ax.legend(fontsize=6)
    fig.suptitle("Goal ratios: one dot per run, a bar at their median", fontsize=9)
    fig.tight_layout()
    return fig


def format_table(result: AssignBenchmark) -> str:
    """A Markdown table: one row per method, one column per (dataset, size), ms per image."""
    cols = sorted({(r["dataset"], r["size"]) for r in result.rows})
    methods = list(dict.fromkeys(r["method"] for r in result.rows))
    times = {(r["method"], r["dataset"], r["size"]): r["ms_per_image"] for r in result.rows}
    head = "| method | " + " | ".join(f"{d} {s}" for d, s in cols) + " |"
    sep = "|---|" + "---:|" * len(cols)
    body = [
        f"| {m} | "
        + " | ".join(f"{times[(m, d, s)]:.3g}" if (m, d, s) in times else "" for d, s in cols)
        + " |"
        for m in methods
    ]
    return "\n".join([head, sep, *body])


def run(args: argparse.Namespace) -> int:
    profile = get_profile(args.profile)
    sizes = tuple(args.sizes) if args.sizes else profile.image_sizes
    if args.rounds is not None:
        return _run_rounds(args, profile, sizes)
    result = run_assign_benchmark(
        sizes=sizes,
        num_images=args.images or profile.num_images,
        bruteforce_images=args.bruteforce_images,
        repeats=args.repeats or profile.repeats,
        datasets=args.datasets,
        device=args.device,
        threads=args.threads,
    )
    print(describe(result))
    print(format_table(result))
    print()
    print(format_ratios(result))
    print()
    for line in summarise(result):
        print(line)
    markdown = f"{describe(result)}\n\n{format_table(result)}\n\n{format_ratios(result)}\n"
    _write_outputs(args, assignment_record([result]), markdown)
    return 0


def _write_outputs(args: argparse.Namespace, record: dict, markdown: str) -> None:
    """The JSON ``record`` to ``--out``, and ``markdown`` to ``--markdown`` if given."""
    out = write_record(args.out, record)
    if args.markdown:
        md = Path(args.markdown)
        md.parent.mkdir(parents=True, exist_ok=True)
        md.write_text(markdown)
        print(f"written {out} and {md}")
    else:
        print(f"written {out}")


def _run_rounds(args: argparse.Namespace, profile: Profile, sizes: tuple[int, ...]) -> int:
    """``--rounds N``: the goal ratios only, ``N`` rounds in a row, per dataset."""
    records: list[AssignBenchmark] = []
    for dataset in args.datasets:
        if dataset == "coco" and coco_sample_dir() is None:
            print("the COCO sample is not here: dataset 'coco' skipped")
            continue
        records += run_goal_rounds(
            args.rounds,
            sizes,
            num_images=args.images or profile.num_images,
            repeats=args.repeats or profile.repeats,
            dataset=dataset,
            device=args.device,
            threads=args.threads,
        )
    if not records:
        print("nothing timed: no dataset left")
        return 1
    text = format_assignment_goals(records)
    print(text)
    print()
    findings = assignment_goals_findings(records)
    print("\n".join(findings))
    bullets = "\n".join(f"- {line}" for line in findings)
    _write_outputs(args, assignment_record(records), f"{text}\n\n{bullets}\n")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "assign",
        help="GmaIoU and assignment speed: box IoU, brute force, full-image tables, Alg. 1, ATSS",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--profile", default="quick", help="smoke | quick | default | paper (default: quick)"
    )
    p.add_argument("--sizes", type=int, nargs="+", help="image sizes (default: the profile's)")
    p.add_argument(
        "--images", type=int, help="images per dataset and size (default: the profile's)"
    )
    p.add_argument("--repeats", type=int, help="timing passes, best kept (default: the profile's)")
    p.add_argument(
        "--bruteforce-images", type=int, default=2, help="images timed by brute force (slow)"
    )
    p.add_argument(
        "--datasets", nargs="+", default=["coco", "synthetic"], choices=["coco", "synthetic"]
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch's CPU threads while timing (default: 1, as in a data-loader worker; "
        "a detector assigning in its main process has torch's default, one per core)",
    )
    p.add_argument(
        "--rounds",
        type=int,
        help="time only the goal ratios, this many rounds in a row, and report their spread "
        "(median, lowest-highest, rounds that met each goal)",
    )
    p.add_argument("--out", default="runs/bench/assign.json", help="JSON output file")
    p.add_argument("--markdown", default=None, help="also write the tables as Markdown here")
    p.set_defaults(func=run)
