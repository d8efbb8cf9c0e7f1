"""GT boxes and masks of whole datasets, resized to a square size, for analyses and benchmarks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from gmaiou.paper.paths import coco_sample_dir
from gmaiou.shapes import random_shape, tight_box

__all__ = ["Instances", "coco_instances", "default_instances", "synthetic_instances"]

Instances = list[tuple[Tensor, Tensor]]  # per image: boxes [G, 4], masks [G, S, S]


def coco_instances(root: Path, size: int, num_images: int, split: str = "val") -> Instances:
    """Non-crowd GT boxes and masks of COCO images, resized to ``size x size`` without keeping the aspect.

    Read through :class:`gmaiou.data.CocoInstances` (no image decoding). Boxes are the
    annotated boxes scaled and masks are resized with nearest neighbour, as
    mmdetection's pipeline does; unlike our training transform, the boxes are not
    replaced by the masks' tight boxes, so the box-mask mismatch of real annotations
    is kept. Images without instances are skipped.
    """
    from gmaiou.data import CocoInstances

    dataset = CocoInstances.from_root(root, split, skip_empty=True)
    out: Instances = []
    for index in range(min(num_images, len(dataset))):
        item = dataset.get_targets(index)
        if item["boxes"].shape[0] == 0:  # every mask was empty
            continue
        height, width = item["size"]
        masks = (
            F.interpolate(item["masks"][None].float(), size=(size, size), mode="nearest")[0] > 0.5
        )
        scale = torch.tensor([size / width, size / height, size / width, size / height])
        out.append((item["boxes"] * scale, masks))
    return out


def synthetic_instances(size: int, num_images: int, per_image: int = 8, seed: int = 0) -> Instances:
    """Scenes of random irregular shapes (bars, rings, L/U shapes, figures, ...) with tight boxes."""
    rng = np.random.default_rng(seed)
    out: Instances = []
    while len(out) < num_images:
        masks = []
        for _ in range(per_image):
            m = random_shape((size, size), rng, size=float(rng.uniform(0.05, 0.6) * size))
            if m.sum() >= 16:
                masks.append(m)
        if masks:
            boxes = torch.from_numpy(np.stack([tight_box(m) for m in masks]))
            out.append((boxes, torch.from_numpy(np.stack(masks))))
    return out


def default_instances(size: int, num_images: int) -> tuple[str, Instances]:
    """Real COCO masks from the bundled sample when present, else synthetic ones: ``(source, instances)``."""
    root = coco_sample_dir()
    if root is not None:
        return "COCO val sample", coco_instances(root, size, num_images)
    return "synthetic", synthetic_instances(size, num_images)
