"""YOLACT / GmaYOLACT: output shapes, training on one synthetic batch, predict, weights loading."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from gmaiou.anchors import atss_anchors, feature_map_sizes, yolact_anchors
from gmaiou.configs import Config, get_config
from gmaiou.measure import MaskIntegrals
from gmaiou.models import YOLACT, build_model
from gmaiou.shapes import random_shape, tight_box

SIZE = 96
NUM_CLASSES = 3


def small_config(name: str, size: int = SIZE, num_classes: int = NUM_CLASSES) -> Config:
    cfg = get_config(name).with_num_classes(num_classes)
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, image_size=size))


def synthetic_batch(
    num_images: int = 2, per_image: int = 3, size: int = SIZE, seed: int = 0, integrals: bool = True
) -> dict:
    """Irregular shapes from :mod:`gmaiou.shapes`, with the keys of ``collate_instances``."""
    rng = np.random.default_rng(seed)
    boxes, labels, masks = [], [], []
    for _ in range(num_images):
        shapes = []
        while len(shapes) < per_image:
            m = random_shape(
                (size, size), rng, size=float(rng.uniform(0.25, 0.6) * size),
                centre=(float(rng.uniform(0.3, 0.7) * size), float(rng.uniform(0.3, 0.7) * size)),
            )
            if m.sum() >= 16:
                shapes.append(m)
        masks.append(torch.from_numpy(np.stack(shapes)))
        boxes.append(torch.from_numpy(np.stack([tight_box(m) for m in shapes])))
        labels.append(torch.from_numpy(rng.integers(0, NUM_CLASSES, per_image)).long())
    generator = torch.Generator().manual_seed(seed)
    return {
        "images": torch.randn(num_images, 3, size, size, generator=generator),
        "boxes": boxes,
        "labels": labels,
        "masks": masks,
        "crowd_boxes": [torch.zeros(0, 4) for _ in range(num_images)],
        "image_ids": list(range(num_images)),
        "mask_integrals": [MaskIntegrals(m, b) for m, b in zip(masks, boxes)] if integrals else None,
    }


@pytest.mark.parametrize(
    "name, anchors_per_location, outputs",
    [
        ("yolact-fixed-r18-160", 3, NUM_CLASSES + 1),
        ("yolact-atss-gmaiou-r34-160", 1, NUM_CLASSES + 1),
        ("gmayolact-atss-gmaiou-r18-160", 2, NUM_CLASSES),
    ],
)
def test_output_shapes(name, anchors_per_location, outputs):
    torch.manual_seed(0)
    model = build_model(small_config(name))
    assert isinstance(model, YOLACT)
    sides = feature_map_sizes(SIZE)
    num_anchors = anchors_per_location * sum(s * s for s in sides)
    assert len(model.anchors) == num_anchors and model.anchors.anchors_per_location == anchors_per_location
    images = torch.randn(2, 3, SIZE, SIZE)
    out = model(images)
    assert out["cls_logits"].shape == (2, num_anchors, outputs)
    assert out["box_deltas"].shape == (2, num_anchors, 4)
    assert out["coeffs"].shape == (2, num_anchors, 32)
    assert out["coeffs"].abs().max() <= 1  # tanh
    assert out["protos"].shape == (2, 2 * sides[0], 2 * sides[0], 32)
    assert out["protos"].min() >= 0  # ReLU
    assert out["semantic"].shape == (2, NUM_CLASSES, sides[0], sides[0])
    model.eval()
    with torch.no_grad():
        assert "semantic" not in model(images)


def test_anchor_grids_match_the_config():
    fixed = build_model(get_config("yolact-fixed-r50-550"))
    assert len(fixed.anchors) == 19248
    assert torch.equal(fixed.anchors.anchors, yolact_anchors(550).anchors)
    atss = build_model(get_config("yolact-atss-iou-r18-320"))
    assert torch.equal(atss.anchors.anchors, atss_anchors(320).anchors)
    gma = build_model(get_config("gmayolact-atss-gmaiou-r18-160"))
    assert torch.equal(gma.anchors.anchors, atss_anchors(160, scales_per_octave=2).anchors)


def test_paper_model_feature_maps_at_550():
    model = build_model(get_config("yolact-fixed-r50-550")).eval()
    with torch.no_grad():
        levels = model.fpn(model.backbone(torch.zeros(1, 3, 550, 550)))
    assert [tuple(p.shape[-2:]) for p in levels] == [(s, s) for s in (69, 35, 18, 9, 5)]
    assert all(p.shape[1] == 256 for p in levels)


def test_wrong_image_size_is_a_clear_error():
    model = build_model(small_config("yolact-fixed-r18-160"))
    with pytest.raises(ValueError, match=r"\[B, 3, 96, 96\]"):
        model(torch.zeros(1, 3, 64, 64))
