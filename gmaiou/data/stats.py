"""Mask-over-box (MOB) ratios of ground truths and the statistics of a dataset split
(``gmaiou data stats``).

The MOB ratio of a GT is ``|M| / |B|``: the share of its box that its mask fills
(:func:`gmaiou.measure.mob_ratio` of the GT's mask with its own box). Sizes follow
COCO's area ranges on the mask's pixel count: small below 32², medium below 96²,
large from 96² on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from gmaiou.data.coco import CocoInstances
from gmaiou.measure import mob_ratio

__all__ = [
    "GT_COLUMNS",
    "SIZE_RANGES",
    "dataset_statistics",
    "gt_mob_ratios",
    "mob_summary",
    "size_name",
    "statistics_markdown",
]

#: COCO's object size ranges on area in pixels: (name, low inclusive, high exclusive).
SIZE_RANGES: tuple[tuple[str, float, float], ...] = (
    ("small", 0.0, 32.0**2),
    ("medium", 32.0**2, 96.0**2),
    ("large", 96.0**2, float("inf")),
)

#: The keys of a row of :func:`gt_mob_ratios`, in order.
GT_COLUMNS: tuple[str, ...] = (
    "image_id",
    "label",
    "class_name",
    "area",
    "box_area",
    "mob",
    "size",
)


def size_name(area: float) -> str:
    """COCO's size name of an object of ``area`` pixels."""
    for name, low, high in SIZE_RANGES:
        if low <= area < high:
            return name
    raise ValueError(f"area must be >= 0, got {area}")


def gt_mob_ratios(
    dataset: CocoInstances, max_images: int | None = None, progress: bool = False
) -> list[dict[str, Any]]:
    """One row per ground truth of ``dataset`` (at original size, no transform), in image order.

    Each row has the keys of :data:`GT_COLUMNS`: ``image_id``, ``label``, ``class_name``,
    ``area`` (mask pixels, int), ``box_area`` (float), ``mob`` (``|M| / |B|``, float) and
    ``size`` (small / medium / large).

    Args:
        dataset: any :class:`~gmaiou.data.CocoInstances`; its transform is not applied.
        max_images: only the first ``max_images`` images (all if ``None``).
        progress: show a progress bar.
    """
    count = len(dataset) if max_images is None else min(max_images, len(dataset))
    rows: list[dict[str, Any]] = []
    for index in tqdm(range(count), desc="GT MOB ratios", unit="img", disable=not progress):
        targets = dataset.get_targets(index)
        boxes, masks = targets["boxes"], targets["masks"]
        if boxes.shape[0] == 0:
            continue
        mob = mob_ratio(boxes, masks).diagonal()
        area = torch.count_nonzero(masks, dim=(1, 2))
        box_area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        for g in range(boxes.shape[0]):
            label = int(targets["labels"][g])
            rows.append(
                {
                    "image_id": targets["image_id"],
                    "label": label,
                    "class_name": dataset.class_names[label],
                    "area": int(area[g]),
                    "box_area": float(box_area[g]),
                    "mob": float(mob[g]),
                    "size": size_name(float(area[g])),
                }
            )
    return rows


def mob_summary(
    ratios: np.ndarray | torch.Tensor | Sequence[float], threshold: float = 0.5
) -> dict[str, float]:
    """Count, share below ``threshold``, mean and median of MOB ratios (any shape, flattened).

    Raises ``ValueError`` for no ratios (a share of nothing is undefined).
    """
    values = np.asarray(ratios, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("no MOB ratios to summarise (the dataset has no ground truths)")
    return {
        "count": int(values.size),
        "share_below": float((values < threshold).mean()),
        "threshold": float(threshold),
        "mean": float(values.mean()),
        "median": float(np.median(values)),
    }


def _size_shares(sizes: np.ndarray) -> dict[str, float]:
    return {name: float((sizes == name).mean()) for name, _, _ in SIZE_RANGES}


def dataset_statistics(
    dataset: CocoInstances, max_images: int | None = None, threshold: float = 0.5
) -> dict[str, Any]:
    """Instances per class, COCO size shares and MOB statistics of a dataset split, as plain numbers.

    Returns a dict with ``images``, ``instances``, ``size_shares`` (small/medium/large),
    ``mob`` (:func:`mob_summary`) and ``classes``: per class with instances, ``name``,
    ``instances``, ``share`` of all instances, ``size_shares``, ``mob_mean``,
    ``mob_share_below``.

    Raises:
        ValueError: the images looked at hold no ground truth.
    """
    rows = gt_mob_ratios(dataset, max_images=max_images)
    images = len(dataset) if max_images is None else min(max_images, len(dataset))
    if not rows:
        raise ValueError(
            f"{dataset.ann_file} has no ground-truth instances in its first {images} images"
        )
    labels = np.array([row["label"] for row in rows], dtype=np.int64)
    mob = np.array([row["mob"] for row in rows], dtype=np.float64)
    sizes = np.array([row["size"] for row in rows])
    classes = []
    for label, name in enumerate(dataset.class_names):
        part = labels == label
        count = int(part.sum())
        if count == 0:
            continue
        classes.append(
            {
                "name": name,
                "instances": count,
                "share": float(count / len(rows)),
                "size_shares": _size_shares(sizes[part]),
                "mob_mean": float(mob[part].mean()),
                "mob_share_below": float((mob[part] < threshold).mean()),
            }
        )
    return {
        "images": int(images),
        "instances": len(rows),
        "size_shares": _size_shares(sizes),
        "mob": mob_summary(mob, threshold),
        "classes": classes,
    }


def statistics_markdown(stats: Mapping[str, Any]) -> str:
    """A Markdown table of :func:`dataset_statistics` (one row per class and a total row)."""
    threshold = stats["mob"]["threshold"]
    lines = [
        f"| class | instances | share | small | medium | large | mean MOB | MOB < {threshold:g} |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def pct(x: float) -> str:
        return f"{100 * x:.1f}%"

    for c in stats["classes"]:
        s = c["size_shares"]
        lines.append(
            f"| {c['name']} | {c['instances']} | {pct(c['share'])} | {pct(s['small'])} | "
            f"{pct(s['medium'])} | {pct(s['large'])} | {c['mob_mean']:.2f} | {pct(c['mob_share_below'])} |"
        )
    s = stats["size_shares"]
    lines.append(
        f"| **all** | {stats['instances']} | 100% | {pct(s['small'])} | {pct(s['medium'])} | "
        f"{pct(s['large'])} | {stats['mob']['mean']:.2f} | {pct(stats['mob']['share_below'])} |"
    )
    return "\n".join(lines)
