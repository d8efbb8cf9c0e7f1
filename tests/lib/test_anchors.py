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


def test_yolact_anchors_keep_the_550_sides_and_strides_when_asked():
    # The maIoU configs: sides 24 ... 384 and strides 550 / (69, 35, 18, 9, 5) at any size.
    for size in (400, 550, 700):
        grid = yolact_anchors(size, reference_size=550)
        assert grid.feature_sizes == feature_map_sizes(size)
        level3 = grid.anchors[: grid.num_level_anchors[0]].double()
        square = level3[1]  # ratio 1 at cell (0, 0)
        assert torch.allclose(
            square, torch.tensor([-12.0, -12, 12, 12], dtype=torch.float64) + 275 / 69, atol=1e-4
        )
        step = 550 / 69
        second_cell = level3[4]  # ratio 1 at cell (0, 1)
        assert second_cell[0] - square[0] == pytest.approx(step, abs=1e-4)
        p7 = grid.anchors[-3:].double()  # the last cell of P7
        assert p7[1, 2] - p7[1, 0] == pytest.approx(384.0, abs=1e-3)
    at550 = yolact_anchors(550)
    assert torch.equal(yolact_anchors(550, reference_size=550).anchors, at550.anchors)
    scaled = yolact_anchors(400).anchors[1]
    assert scaled[2] - scaled[0] == pytest.approx(24 * 400 / 550, abs=1e-4)


def test_atss_anchors_at_mmdetection_centres():
    grid = atss_anchors(550, offset=0.0, strides="exact")
    first = grid.anchors[:3].double()
    # j * 8 with side 32: cells (0, 0), (0, 1), (0, 2) of P3
    expected = torch.tensor(
        [[-16.0, -16, 16, 16], [-8, -16, 24, 16], [0, -16, 32, 16]], dtype=torch.float64
    )
    assert torch.allclose(first, expected)
    p7 = grid.anchors[-grid.num_level_anchors[-1] :].double()
    assert p7[-1].tolist() == pytest.approx([512 - 256, 512 - 256, 512 + 256, 512 + 256])
    default = atss_anchors(550).anchors[0].double()
    assert default.tolist() == pytest.approx(
        [550 / 138 - 16, 550 / 138 - 16, 550 / 138 + 16, 550 / 138 + 16]
    )
    with pytest.raises(ValueError, match="strides"):
        atss_anchors(550, strides="round")
