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
:meth:`AssignBenchmark.ratios` the three ratios the issue sets goals for (:data:`GOALS`)
and three more (:data:`EXTRA_RATIOS`).

Timings on a shared machine move with its other tenants' load from minute to minute.
:func:`run_goal_sittings` (``--sittings N``) times only what the goals compare, ``N``
times over, and :func:`format_sittings` gives each goal ratio's median, range and the
sittings that met it.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
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
from gmaiou.paper.benchmarks import device_name, write_record
from gmaiou.paper.paths import coco_sample_dir
from gmaiou.paper.profiles import Profile, get_profile

__all__ = [
    "EXTRA_RATIOS",
    "FLOOR",
    "GOALS",
    "AssignBenchmark",
    "format_sittings",
    "format_thread_comparison",
    "gmaiou_full_image",
    "plot_sittings",
    "run",
    "run_assign_benchmark",
    "run_goal_sittings",
    "sittings_findings",
    "thread_findings",
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
#: The ratios reported beside :data:`GOALS`.
EXTRA_RATIOS = (FLOOR, "ATSS GmaIoU, tables prepared / ATSS IoU", "brute force / Alg. 1")


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
    """Results of one benchmark run: ms per image for each (dataset, size, method)."""

    device: str
    torch_version: str
    threads: int
    repeats: int
    rows: list[dict] = field(default_factory=list)
    cpu_affinity: list[int] | None = None

    def table(self) -> list[dict]:
        return self.rows

    def ratio(self, dataset: str, size: int, numerator: str, denominator: str) -> float:
        times = {
            r["method"]: r["ms_per_image"]
            for r in self.rows
            if r["dataset"] == dataset and r["size"] == size
        }
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
        """Per dataset and size: the goal ratios (with whether each is met) and :data:`EXTRA_RATIOS`."""
        out = []
        for row in self.goal_ratios():
            dataset, size = row["dataset"], row["size"]
            row["brute force / Alg. 1"] = self.ratio(dataset, size, _BRUTE, _ALG1)
            row[FLOOR] = self.ratio(dataset, size, _GIVEN_READ, _ATSS_IOU)
            row["ATSS GmaIoU, tables prepared / ATSS IoU"] = self.ratio(
                dataset, size, f"{_ATSS_GMA}, tables prepared", _ATSS_IOU
            )
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
    with _torch_threads(threads):
        return _run_assign_benchmark(
            sizes, num_images, bruteforce_images, repeats, datasets, device, progress
        )


def _check_dataset(name: str) -> None:
    if name not in ("coco", "synthetic"):
        raise ValueError(f"unknown dataset {name!r}; choose 'coco' or 'synthetic'")


@contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """torch's CPU thread count set to ``threads`` (``None``: left as set), restored after."""
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be at least 1 (or None), got {threads}")
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _new_record(dev: torch.device, repeats: int) -> AssignBenchmark:
    """An empty record naming the device, torch, its thread count and the process's cores."""
    return AssignBenchmark(
        device=device_name(dev),
        torch_version=torch.__version__,
        threads=torch.get_num_threads(),
        repeats=repeats,
        cpu_affinity=sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
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


def run_goal_sittings(
    sittings: int,
    sizes: Sequence[int] = (400, 550, 700),
    num_images: int = 50,
    repeats: int = 5,
    dataset: str = "coco",
    device: str = "cpu",
    threads: int | None = 2,
    progress: bool = True,
) -> list[AssignBenchmark]:
    """The ratios of :data:`GOALS` measured ``sittings`` times over: one record per sitting.

    A sitting times what the goals compare, as :func:`run_assign_benchmark` does (the
    three overlap matrices, then ATSS with IoU and with GmaIoU from raw masks; each
    image's best of ``repeats`` passes), on each size in turn. The sittings follow one
    another, so the spread of a ratio over them is how far it moves with the machine's
    state from minute to minute: on a shared machine, one record's ratio near its goal
    can land on either side of it.
    """
    if sittings < 1:
        raise ValueError(f"sittings must be at least 1, got {sittings}")
    _check_dataset(dataset)
    from tqdm.auto import tqdm

    dev = torch.device(device)
    with _torch_threads(threads):
        images = {size: _load_images(dataset, size, num_images, dev) for size in sizes}
        records = []
        jobs = [(i, size) for i in range(sittings) for size in sizes]
        for i, size in tqdm(jobs, desc="goal sittings", disable=not progress):
            if i == len(records):
                records.append(_new_record(dev, repeats))
            times = _bench_goals(images[size], size, dev, repeats)
            _add_rows(records[i], dataset, size, images[size], times, sitting=i)
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


def format_thread_comparison(results: Sequence[AssignBenchmark]) -> str:
    """A Markdown table of the goal ratios and the floor of runs with different thread counts.

    One row per (dataset, size, torch threads), from every run in ``results``.
    """
    names = [*GOALS, FLOOR]
    head = "| dataset | size | torch threads | " + _ratio_headers(names)
    rows = sorted(
        ((row, result.threads) for result in results for row in result.ratios()),
        key=lambda item: (item[0]["dataset"], item[0]["size"], item[1]),
    )
    lines = [head + " |", "|---|---:|---:|" + "---:|" * len(names)]
    for row, threads in rows:
        cells = [_ratio_cell(row, n) for n in names]
        lines.append(
            f"| {row['dataset']} | {row['size']} | {threads} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


def thread_findings(results: Sequence[AssignBenchmark]) -> list[str]:
    """Per dataset and goal, where each run met it and where it missed, with the values.

    Sentences computed from the records (for the README), one per dataset and goal, then
    one per dataset for the floor (:data:`FLOOR`).
    """
    lines = []
    ratios = [(result.threads, result.ratios()) for result in results]
    for dataset in sorted({r["dataset"] for _, rows in ratios for r in rows}):
        runs = [(t, [r for r in rows if r["dataset"] == dataset]) for t, rows in ratios]
        runs = [(threads, rows) for threads, rows in runs if rows]
        for name, (_, _, sense, goal) in GOALS.items():
            parts = []
            for threads, rows in runs:
                met = [str(r["size"]) for r in rows if r[f"{name} met"]]
                missed = [str(r["size"]) for r in rows if not r[f"{name} met"]]
                if not missed:
                    verdict = "met at every size"
                elif not met:
                    verdict = "missed at every size"
                else:
                    verdict = f"missed at {', '.join(missed)} px, met at {', '.join(met)} px"
                values = ", ".join(f"{r[name]:.2f}" for r in rows)
                sizes = ", ".join(str(r["size"]) for r in rows)
                parts.append(f"with {_threads(threads)} {verdict} ({values} at {sizes} px)")
            lines.append(f"{dataset}, {name} (goal {sense} {goal:g}): " + "; ".join(parts) + ".")
        floors = [
            f"{_span([r[FLOOR] for r in rows])} with {_threads(threads)}" for threads, rows in runs
        ]
        lines.append(f"{dataset}, the floor {FLOOR}: " + "; ".join(floors) + ".")
    return lines


def _by_setting(results: Sequence[AssignBenchmark]) -> dict[tuple, list[dict]]:
    """Goal-ratio rows of ``results`` grouped by (dataset, size, torch threads), in record order."""
    groups: dict[tuple, list[dict]] = {}
    for result in results:
        for row in result.goal_ratios():
            groups.setdefault((row["dataset"], row["size"], result.threads), []).append(row)
    return dict(sorted(groups.items()))


def _spread(rows: Sequence[dict], name: str) -> tuple[str, str, int]:
    """Goal ratio ``name`` over ``rows``: its median, its range (one value if all agree), and
    how many rows met it."""
    values = [row[name] for row in rows]
    span = _span(values, lambda v: _ratio_text(v, name))
    return _ratio_text(median(values), name), span, sum(row[f"{name} met"] for row in rows)


def format_sittings(results: Sequence[AssignBenchmark]) -> str:
    """A Markdown table of the goal ratios over sittings (:func:`run_goal_sittings`).

    One row per (dataset, size, torch threads); each goal's cell is its median over the
    sittings, its lowest-highest, and in how many sittings it was met.
    """
    names = list(GOALS)
    head = "| dataset | size | torch threads | sittings | " + _ratio_headers(names) + " |"
    lines = [head, "|---|---:|---:|---:|" + "---:|" * len(names)]
    for (dataset, size, threads), rows in _by_setting(results).items():
        cells = []
        for name in names:
            mid, span, met = _spread(rows, name)
            spread = "" if span == mid else f" ({span})"
            cells.append(f"{mid}{spread}, met in {met}/{len(rows)}")
        lines.append(
            f"| {dataset} | {size} | {threads} | {len(rows)} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


def sittings_findings(results: Sequence[AssignBenchmark]) -> list[str]:
    """Per dataset, thread count and goal: in how many sittings it was met at each size.

    Sentences computed from the records (for the README).
    """
    groups = _by_setting(results)
    lines = []
    for dataset, threads in dict.fromkeys((d, t) for d, _, t in groups):
        sizes = {s: rows for (d, s, t), rows in groups.items() if (d, t) == (dataset, threads)}
        n = max(len(rows) for rows in sizes.values())
        for name, (_, _, sense, goal) in GOALS.items():
            parts, everywhere = [], True
            for size, rows in sizes.items():
                mid, span, met = _spread(rows, name)
                spread = "" if span == mid else f", {span}"
                parts.append(f"{size} px: met in {met} of {len(rows)} (median {mid}{spread})")
                everywhere &= met == len(rows)
            verdict = (
                "met in every sitting at every size" if everywhere else "not met in every sitting"
            )
            lines.append(
                f"{dataset}, {name} (goal {sense} {goal:g}), {n} sittings with {_threads(threads)}: "
                f"{verdict}; " + "; ".join(parts) + "."
            )
    return lines


def plot_sittings(results: Sequence[AssignBenchmark]):
    """One panel per goal ratio: each sitting's value at each size (dots), their median
    (a bar) and the goal (dashed), per (dataset, torch threads)."""
    import matplotlib.pyplot as plt

    groups = _by_setting(results)
    if not groups:
        raise ValueError("no sitting to plot")
    series = list(dict.fromkeys((d, t) for d, _, t in groups))
    fig, axes = plt.subplots(1, len(GOALS), figsize=(4.4 * len(GOALS), 3.2), squeeze=False)
    for ax, (name, (_, _, sense, goal)) in zip(axes[0], GOALS.items()):
        for j, (dataset, threads) in enumerate(series):
            sizes = [s for d, s, t in groups if (d, t) == (dataset, threads)]
            for k, size in enumerate(sizes):
                values = [row[name] for row in groups[(dataset, size, threads)]]
                x = k + 0.15 * (j - (len(series) - 1) / 2)
                label = f"{dataset}, {_threads(threads)}" if k == 0 else None
                ax.plot([x] * len(values), values, "o", color=f"C{j}", alpha=0.6, label=label)
                ax.plot([x - 0.06, x + 0.06], [median(values)] * 2, color=f"C{j}", lw=2)
            ax.set_xticks(range(len(sizes)), [f"{s} px" for s in sizes])
            ax.set_xlim(-0.5, len(sizes) - 0.5)
        ax.axhline(goal, color="k", ls="--", lw=1, label=f"goal {sense} {goal:g}")
        ax.set_title(name, fontsize=9)
        ax.legend(fontsize=7)
    sittings = max(len(rows) for rows in groups.values())
    fig.suptitle(f"Goal ratios over {sittings} sittings on {results[0].device}", fontsize=9)
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
    if args.sittings is not None:
        return _run_sittings(args, profile, sizes)
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
    _write_outputs(args, {**asdict(result), "ratios": result.ratios()}, markdown)
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


def _run_sittings(args: argparse.Namespace, profile: Profile, sizes: tuple[int, ...]) -> int:
    """``--sittings N``: the goal ratios only, ``N`` times over, per dataset."""
    records: list[AssignBenchmark] = []
    for dataset in args.datasets:
        if dataset == "coco" and coco_sample_dir() is None:
            print("the COCO sample is not here: dataset 'coco' skipped")
            continue
        records += run_goal_sittings(
            args.sittings,
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
    text = f"{describe(records[0])}\n\n{format_sittings(records)}"
    print(text)
    print()
    findings = sittings_findings(records)
    print("\n".join(findings))
    bullets = "\n".join(f"- {line}" for line in findings)
    _write_outputs(args, {"sittings": [asdict(r) for r in records]}, f"{text}\n\n{bullets}\n")
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
        "--sittings",
        type=int,
        help="time only the goal ratios, this many times over, and report their spread "
        "(median, lowest-highest, sittings that met each goal)",
    )
    p.add_argument("--out", default="runs/bench/assign.json", help="JSON output file")
    p.add_argument("--markdown", default=None, help="also write the tables as Markdown here")
    p.set_defaults(func=run)
