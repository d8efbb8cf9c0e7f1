"""Shared fixtures and helpers: random irregular masks, an L-shaped one-image dataset, the real
COCO sample (skipped where absent), the numbers a generated line states."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from gmaiou.paths import coco_sample_dir
from gmaiou.shapes import random_shape, tight_box


def random_instances(
    rng: np.random.Generator, num: int, height: int, width: int, kinds: list[str] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``num`` random irregular masks (bars, rings, L/U shapes, ...) and their tight boxes.

    Shapes may be cut by the image border; an instance that ends up empty keeps an
    empty mask and a zero-area box at its centre (a case the measures must handle).
    """
    masks, boxes = [], []
    for i in range(num):
        kind = None if kinds is None else kinds[i % len(kinds)]
        m = random_shape(
            (height, width),
            rng,
            kind=kind,
            size=float(rng.uniform(1.0, max(1.5, 0.8 * min(height, width)))),
        )
        masks.append(m)
        if m.any():
            boxes.append(tight_box(m))
        else:
            boxes.append(np.array([width / 2, height / 2, width / 2, height / 2], dtype=np.float32))
    if num == 0:
        return torch.zeros(0, 4), torch.zeros(0, height, width, dtype=torch.bool)
    return torch.from_numpy(np.stack(boxes)).float(), torch.from_numpy(np.stack(masks))


def random_anchors(
    rng: np.random.Generator, num: int, height: int, width: int, integer: bool = False
) -> torch.Tensor:
    """Anchors of random sizes, some partly or wholly off the image, some of zero width."""
    cx = rng.uniform(-0.3 * width, 1.3 * width, num)
    cy = rng.uniform(-0.3 * height, 1.3 * height, num)
    w = rng.uniform(0, 0.9 * width, num)
    h = rng.uniform(0, 0.9 * height, num)
    w[:: max(num // 10, 1)] = 0.0  # degenerate anchors
    a = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
    if integer:
        a = np.round(a)
    return torch.from_numpy(a).float()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def coco_sample():
    """(root, COCO val object) of the real COCO sample, or a skip where it is absent."""
    root = coco_sample_dir()
    if root is None:
        pytest.skip("the real COCO sample (../shared/data/coco-sample) is absent on this machine")
    import contextlib
    import io

    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(root / "annotations" / "instances_val2017.json"))
    return root, coco


def coco_image_instances(coco, image_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Boxes (xyxy) and masks of the non-crowd instances of one COCO image, at full resolution."""
    anns = [
        a for a in coco.loadAnns(coco.getAnnIds(imgIds=image_id, iscrowd=False)) if a["area"] > 0
    ]
    info = coco.loadImgs(image_id)[0]
    if not anns:
        return torch.zeros(0, 4), torch.zeros(0, info["height"], info["width"], dtype=torch.bool)
    masks = torch.from_numpy(np.stack([coco.annToMask(a) for a in anns])).bool()
    boxes = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32)
    boxes[:, 2:] += boxes[:, :2]
    return boxes, masks


def numbers_in(text: str) -> list[float]:
    """The signed decimal numbers of a generated line, in order (thousands separators
    dropped): findings are checked by the numbers they state, not by their wording."""
    import re

    return [float(x.replace(",", "")) for x in re.findall(r"[+-]?\d[\d,]*\.?\d*", text)]


def l_mask(h: int = 100, w: int = 100) -> torch.Tensor:
    """An L: a 10-wide vertical bar (x 10-20, y 10-90) and a 10-high foot (x 10-90, y 80-90); 1500 pixels."""
    m = torch.zeros(h, w, dtype=torch.bool)
    m[10:90, 10:20] = True
    m[80:90, 10:90] = True
    return m


def write_l_dataset(root: Path) -> Path:
    """One 100 x 100 image with the L (box 10..90, MOB 1500 / 6400) and a filled 20 x 10 rectangle (MOB 1)."""
    (root / "val").mkdir(parents=True)
    (root / "annotations").mkdir()
    Image.fromarray(np.full((100, 100, 3), 127, dtype=np.uint8)).save(root / "val" / "l.png")
    rect = torch.zeros(100, 100, dtype=torch.bool)
    rect[30:40, 50:70] = True
    anns = []
    for ann_id, (mask, cat) in enumerate(((l_mask(), 1), (rect, 2)), start=1):
        rle = mask_utils.encode(np.asfortranarray(mask.numpy().astype(np.uint8)))
        ys, xs = np.nonzero(mask.numpy())
        bbox = [
            float(xs.min()),
            float(ys.min()),
            float(xs.max() + 1 - xs.min()),
            float(ys.max() + 1 - ys.min()),
        ]
        anns.append(
            {
                "id": ann_id,
                "image_id": 1,
                "category_id": cat,
                "iscrowd": 0,
                "area": float(mask.sum()),
                "bbox": bbox,
                "segmentation": {"size": [100, 100], "counts": rle["counts"].decode()},
            }
        )
    data = {
        "images": [{"id": 1, "file_name": "l.png", "height": 100, "width": 100}],
        "annotations": anns,
        "categories": [{"id": 1, "name": "ell"}, {"id": 2, "name": "box"}],
    }
    (root / "annotations" / "instances_val.json").write_text(json.dumps(data))
    return root
