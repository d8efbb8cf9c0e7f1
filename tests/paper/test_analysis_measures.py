"""Notebook 01's analyses: pixel weights, overlap pairs and the Corollary 1 check."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import random_instances

from gmaiou import gmaiou, maiou
from gmaiou.anchors import yolact_anchors
from gmaiou.paper.analysis.measures import (
    IOU_VARIANTS,
    corollary_1_check,
    overlap_pairs,
    pixel_weights,
)
from gmaiou.shapes import l_shape


def test_pixel_weights_sum_to_the_intersections():
    mask = torch.from_numpy(l_shape((16, 16), 2.0, 2.0, 12.0, 4.0))
    box = torch.tensor([2.0, 2.0, 14.0, 14.0])
    anchor = torch.tensor([[2.0, 2.0, 8.0, 14.0]])
    x1, y1, x2, y2 = 2, 2, 8, 14
    iou_w = pixel_weights(mask, box, "iou")
    assert iou_w.sum() == pytest.approx(144.0)  # every box pixel weighs 1
    assert iou_w[y1:y2, x1:x2].sum() == pytest.approx(72.0)  # |A ∩ B|
    ma_w = pixel_weights(mask, box, "gmaiou-box")
    assert ma_w.sum() == pytest.approx(144.0)  # the box's energy moved onto the mask
    # maIoU = GMI / |A ∪ B| with GMI the weights under the anchor and |A ∪ B| = |B| here
    assert float(ma_w[y1:y2, x1:x2].sum()) / 144.0 == pytest.approx(
        maiou(box[None], mask[None], anchor).item()
    )
    gm_w = pixel_weights(mask, box, "gmaiou-mask")
    assert gm_w.sum() == mask.sum()
    inter = float(gm_w[y1:y2, x1:x2].sum())
    assert inter / (72 + float(mask.sum()) - inter) == pytest.approx(
        gmaiou(box[None], mask[None], anchor).item()
    )
    with pytest.raises(ValueError, match="pixel weights are defined"):
        pixel_weights(mask, box, "giou")


def test_table1_rows():
    names = [row["IoU variant"] for row in IOU_VARIANTS]
    assert names[0] == "IoU" and names[-1].startswith("Generalized Mask-aware IoU")
    assert len(names) == 7


def test_overlap_pairs_and_corollary(rng):
    instances = [random_instances(rng, 4, 96, 96) for _ in range(2)] + [
        random_instances(rng, 0, 96, 96)
    ]
    pairs = overlap_pairs(instances, 96)
    assert len(pairs) > 0 and pairs.num_gts == 8 and pairs.num_images == 3
    assert ((pairs.iou > 0) | (pairs.maiou > 0) | (pairs.gmaiou > 0)).all()
    assert np.isfinite(pairs.gmaiou).all()
    check = corollary_1_check(instances, 96)
    assert check["integer anchors, tight boxes: pairs with GmaIoU_M > GmaIoU_B"] == 0
    assert check["integer anchors, tight boxes: pairs"] == 8 * len(yolact_anchors(96))
