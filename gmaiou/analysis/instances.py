"""GT boxes and masks of whole datasets, resized to a square size, for analyses and benchmarks."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from gmaiou.paths import coco_sample_dir
from gmaiou.shapes import random_shape, tight_box

__all__ = ["Instances", "coco_instances", "default_instances", "synthetic_instances"]

Instances = list[tuple[Tensor, Tensor]]  # per image: boxes [G, 4], masks [G, S, S]


def coco_instances(root: Path, size: int, num_images: int, split: str = "val") -> Instances:
    """Non-crowd GT boxes and masks of COCO images, resized to ``size x size`` without keeping the aspect.

    Boxes are the annotated boxes scaled; masks are rasterised by pycocotools at full
    resolution and resized with nearest neighbour (as mmdetection's pipeline does).
    Images without instances are skipped.
    """
    from pycocotools.coco import COCO

    ann_file = Path(root) / "annotations" / f"instances_{split}2017.json"
    if not ann_file.is_file():
        raise FileNotFoundError(f"COCO annotation file not found: {ann_file}")
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(ann_file))
    out: Instances = []
    for image_id in sorted(coco.getImgIds()):
        anns = [
            a
            for a in coco.loadAnns(coco.getAnnIds(imgIds=image_id, iscrowd=False))
            if a["area"] > 0
        ]
        if not anns:
            continue
        info = coco.loadImgs(image_id)[0]
        masks = torch.from_numpy(np.stack([coco.annToMask(a) for a in anns]))
        masks = F.interpolate(masks[None].float(), size=(size, size), mode="nearest")[0] > 0.5
        boxes = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32)
        boxes[:, 2:] += boxes[:, :2]
        boxes[:, 0::2] *= size / info["width"]
        boxes[:, 1::2] *= size / info["height"]
        out.append((boxes, masks))
        if len(out) == num_images:
            break
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
