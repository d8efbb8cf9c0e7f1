"""Anchor grids: counts, feature-map sizes, sizes and layout."""

from __future__ import annotations

import math

import pytest
import torch

from gmaiou.anchors import atss_anchors, feature_map_sizes, grid_anchors, yolact_anchors


def test_feature_map_sizes():
    assert feature_map_sizes(550) == (69, 35, 18, 9, 5)
    assert feature_map_sizes(400) == (50, 25, 13, 7, 4)
    assert feature_map_sizes(700) == (88, 44, 22, 11, 6)


def test_counts_at_550():
    y = yolact_anchors(550)
    a = atss_anchors(550)
    assert len(y) == 19248 and sum(y.num_level_anchors) == 19248
    assert len(a) == 6416 and a.num_level_anchors == (4761, 1225, 324, 81, 25)
    assert y.num_level_anchors == tuple(3 * n for n in a.num_level_anchors)
    assert y.anchors_per_location == 3 and a.anchors_per_location == 1
    assert len(atss_anchors(550, scales_per_octave=2)) == 2 * 6416


def test_yolact_sizes_and_ratios_at_550():
    y = yolact_anchors(550)
    start = 0
    for level, n in enumerate(y.num_level_anchors):
        first_cell = y.anchors[start : start + 3]
        w = first_cell[:, 2] - first_cell[:, 0]
        h = first_cell[:, 3] - first_cell[:, 1]
        side = 24 * 2**level
        torch.testing.assert_close(
            w * h, torch.full((3,), float(side * side)), rtol=1e-5, atol=1e-3
        )
        torch.testing.assert_close(h / w, torch.tensor([0.5, 1.0, 2.0]), rtol=1e-5, atol=0)
        start += n


def test_yolact_sizes_scale_with_the_image():
    y = yolact_anchors(400)
    w = y.anchors[1, 2] - y.anchors[1, 0]  # the square anchor of the first cell
    assert float(w) == pytest.approx(24 * 400 / 550, rel=1e-5)


def test_atss_sizes_and_centres():
    a = atss_anchors(550)
    start = 0
    for level, (n, f) in enumerate(zip(a.num_level_anchors, a.feature_sizes)):
        boxes = a.anchors[start : start + n]
        side = boxes[:, 2] - boxes[:, 0]
        assert torch.allclose(side, torch.full_like(side, 4.0 * 2 ** (level + 3)))
        ctr = (boxes[:, :2] + boxes[:, 2:]) / 2
        step = 550 / f
        # row-major: the second anchor is one cell to the right of the first
        assert ctr[0].tolist() == pytest.approx([step / 2, step / 2], rel=1e-5)
        assert ctr[1].tolist() == pytest.approx([1.5 * step, step / 2], rel=1e-5)
        assert ctr[f].tolist() == pytest.approx([step / 2, 1.5 * step], rel=1e-5)
        start += n


def test_two_scales_per_octave():
    a = atss_anchors(550, scales_per_octave=2)
    sides = (a.anchors[:2, 2] - a.anchors[:2, 0]).tolist()
    assert sides == pytest.approx([32.0, 32.0 * math.sqrt(2)], rel=1e-5)


def test_to_device_and_dtype():
    a = atss_anchors(256, dtype=torch.float64).to("cpu")
    assert a.anchors.dtype == torch.float64 and a.anchors.device.type == "cpu"


@pytest.mark.parametrize("bad", [0, 16, 31, 550.0, True, "550"])
def test_bad_image_size(bad):
    with pytest.raises(ValueError, match="image_size must be an integer"):
        atss_anchors(bad)


def test_bad_shapes():
    with pytest.raises(ValueError, match="ratios must be positive"):
        yolact_anchors(550, ratios=(0.0, 1.0))
    with pytest.raises(ValueError, match="scales_per_octave"):
        atss_anchors(550, scales_per_octave=0)
    with pytest.raises(ValueError, match="5 levels"):
        grid_anchors(550, [[(1.0, 1.0)]])
