"""YOLACT's augmentation on tensors: box-mask consistency after every step, crops that drop instances,
hand-computed geometry, items without instances, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gmaiou.data.transforms import (
    IMAGE_MEAN,
    TestTransform,
    TrainTransform,
    Window,
    crop_window,
    denormalize,
    distort_photometric,
    hflip,
    mask_tight_boxes,
    normalize,
    resize,
    sample_expand,
    sample_min_iou_crop,
)
from gmaiou.shapes import SHAPE_KINDS, random_shape, tight_box


def make_item(
    masks: list[np.ndarray],
    labels: list[int] | None = None,
    crowd: list[list[float]] | None = None,
    seed: int = 0,
) -> dict:
    """An item whose boxes are the tight boxes of its masks."""
    h, w = masks[0].shape if masks else (48, 64)
    g = len(masks)
    boxes = torch.from_numpy(np.stack([tight_box(m) for m in masks])) if g else torch.zeros(0, 4)
    return {
        "image": torch.rand(3, h, w, generator=torch.Generator().manual_seed(seed)),
        "boxes": boxes.float(),
        "labels": torch.tensor(labels if labels is not None else list(range(g)), dtype=torch.int64),
        "masks": torch.from_numpy(np.stack(masks)) if g else torch.zeros(0, h, w, dtype=torch.bool),
        "image_id": 7,
        "crowd_boxes": torch.tensor(crowd, dtype=torch.float32) if crowd else torch.zeros(0, 4),
    }


def random_item(seed: int, h: int = 120, w: int = 160, num: int = 5) -> dict:
    """Irregular shapes of every kind (bars, rings, L/U, stick figures, ...), none empty."""
    rng = np.random.default_rng(seed)
    kinds = list(SHAPE_KINDS)
    masks = []
    while len(masks) < num:
        m = random_shape(
            (h, w), rng, kind=kinds[len(masks) % len(kinds)], size=float(rng.uniform(12, 80))
        )
        if m.sum() >= 4:
            masks.append(m)
    return make_item(masks, crowd=[[10.0, 10.0, 50.0, 40.0]], seed=seed)


def assert_boxes_tight(item: dict, allow_empty: bool = False) -> None:
    """Each box is the tight box of its mask; no mask is empty unless ``allow_empty``
    (a resize may sample a tiny mask away; the dataset then drops the instance)."""
    masks, boxes = item["masks"], item["boxes"]
    assert masks.shape[0] == boxes.shape[0] == item["labels"].shape[0]
    assert masks.shape[1:] == item["image"].shape[1:]
    nonempty = masks.flatten(1).any(dim=1)
    if not allow_empty:
        assert bool(nonempty.all()), "an instance with an empty mask was kept"
    if not bool(nonempty.any()):
        return
    dev = (boxes[nonempty] - mask_tight_boxes(masks[nonempty])).abs().max()
    assert float(dev) == 0.0, f"box deviates from its mask's tight box by {float(dev)} px"


def test_mask_tight_boxes_hand_computed():
    masks = torch.zeros(3, 5, 6, dtype=torch.bool)
    masks[0, 1:3, 2:5] = True
    masks[1, 4, 0] = True
    boxes = mask_tight_boxes(masks)
    assert boxes.tolist() == [[2, 1, 5, 3], [0, 4, 1, 5], [0, 0, 0, 0]]
    assert mask_tight_boxes(torch.zeros(0, 5, 6, dtype=torch.bool)).shape == (0, 4)


def test_hflip_hand_computed():
    m = np.zeros((6, 10), dtype=bool)
    m[2:5, 1:4] = True
    item = make_item([m], crowd=[[0.0, 0.0, 2.0, 3.0]])
    out = hflip(item)
    assert out["boxes"].tolist() == [[6.0, 2.0, 9.0, 5.0]]
    assert out["crowd_boxes"].tolist() == [[8.0, 0.0, 10.0, 3.0]]
    assert torch.equal(out["image"], item["image"].flip(-1))
    assert_boxes_tight(out)


def test_resize_hand_computed_upscale():
    m = np.zeros((10, 20), dtype=bool)
    m[2:6, 5:10] = True  # box (5, 2, 10, 6)
    out = resize(make_item([m], crowd=[[0.0, 0.0, 10.0, 5.0]]), 40)
    assert out["image"].shape == (3, 40, 40)
    assert out["masks"].shape == (1, 40, 40)
    assert out["boxes"].tolist() == [[10.0, 8.0, 20.0, 24.0]]  # x * 2, y * 4
    assert out["crowd_boxes"].tolist() == [[0.0, 0.0, 20.0, 20.0]]
    assert int(out["masks"].sum()) == 10 * 16


def test_crop_keeps_instances_by_centre_and_cuts_boxes_to_their_masks():
    h, w = 40, 60
    a = np.zeros((h, w), dtype=bool)
    a[5:15, 5:25] = True  # centre (15, 10): inside the window
    b = np.zeros((h, w), dtype=bool)
    b[20:38, 40:58] = True  # centre (49, 29): outside, though it overlaps the window
    c = np.zeros((h, w), dtype=bool)
    c[2:4, 10:12] = True  # centre inside, whole mask inside
    item = make_item(
        [a, b, c], labels=[4, 5, 6], crowd=[[0.0, 0.0, 12.0, 12.0], [50.0, 30.0, 60.0, 40.0]]
    )
    out = crop_window(item, Window(top=0, left=10, height=30, width=35))
    assert out["labels"].tolist() == [4, 6]
    # a is cut at x = 10: its box becomes the tight box of what is left, in window coordinates
    assert out["boxes"].tolist() == [[0.0, 5.0, 15.0, 15.0], [0.0, 2.0, 2.0, 4.0]]
    assert out["crowd_boxes"].tolist() == [[0.0, 0.0, 2.0, 12.0]]  # the second crowd box is outside
    assert torch.equal(out["image"], item["image"][:, 0:30, 10:45])
    assert_boxes_tight(out)


def test_crop_drops_an_instance_whose_mask_leaves_the_window():
    # A ring's centre is in its hole: a window inside the hole keeps the centre but no pixel.
    h = w = 80
    ring = SHAPE_KINDS["ring"]((h, w), 40.0, 40.0, 60.0, np.random.default_rng(0))
    item = make_item([ring])
    out = crop_window(item, Window(top=35, left=35, height=10, width=10))
    assert out["boxes"].shape == (0, 4)
    assert out["masks"].shape == (0, 10, 10)
    assert out["labels"].shape == (0,)


def test_expand_window_fills_the_mean_and_shifts_boxes():
    m = np.zeros((8, 10), dtype=bool)
    m[1:3, 2:6] = True
    item = make_item([m])
    out = crop_window(item, Window(top=-4, left=-6, height=20, width=30), drop_by_centre=False)
    assert out["image"].shape == (3, 20, 30)
    assert torch.equal(out["image"][:, 4:12, 6:16], item["image"])
    assert torch.allclose(out["image"][:, 0, 0], torch.tensor(IMAGE_MEAN))
    assert out["boxes"].tolist() == [[8.0, 5.0, 12.0, 7.0]]
    assert int(out["masks"].sum()) == int(m.sum())
    assert_boxes_tight(out)


def test_window_without_area_is_an_error():
    with pytest.raises(ValueError, match="no area"):
        crop_window(random_item(0), Window(0, 0, 0, 10))


def test_every_step_keeps_boxes_tight_on_irregular_shapes():
    gen = torch.Generator().manual_seed(0)
    for seed in range(12):
        item = random_item(seed)
        assert_boxes_tight(item)
        _, h, w = item["image"].shape
        canvas = sample_expand(h, w, gen, prob=1.0)
        expanded = crop_window(item, canvas, drop_by_centre=False)
        assert_boxes_tight(expanded)
        patch = sample_min_iou_crop(expanded["boxes"], canvas.height, canvas.width, gen)
        cropped = crop_window(expanded, patch) if patch is not None else expanded
        assert_boxes_tight(cropped)
        flipped = hflip(cropped)
        assert_boxes_tight(flipped)
        for size in (64, 550):  # down and up
            assert_boxes_tight(resize(flipped, size), allow_empty=True)
        photometric = distort_photometric(item["image"], gen)
        assert photometric.shape == item["image"].shape
        assert 0.0 <= float(photometric.min()) and float(photometric.max()) <= 1.0


def test_train_transform_keeps_boxes_tight_and_drops_cropped_instances():
    gen = torch.Generator().manual_seed(1)
    transform = TrainTransform(96)
    fewer = 0
    for seed in range(40):
        item = random_item(seed)
        out = transform(item, gen)
        assert out["image"].shape == (3, 96, 96) and out["image"].dtype == torch.float32
        assert out["masks"].dtype == torch.bool and out["boxes"].dtype == torch.float32
        assert_boxes_tight(out, allow_empty=True)
        assert set(out["labels"].tolist()) <= set(item["labels"].tolist())
        assert out["image_id"] == item["image_id"]
        fewer += out["labels"].numel() < item["labels"].numel()
    assert fewer > 0, "no crop removed any instance in 40 draws"


def test_transforms_work_without_instances():
    gen = torch.Generator().manual_seed(2)
    item = make_item([])
    for _ in range(20):
        out = TrainTransform(64)(item, gen)
        assert out["boxes"].shape == (0, 4) and out["masks"].shape == (0, 64, 64)
        assert out["labels"].shape == (0,)
    out = TestTransform(64)(item)
    assert out["image"].shape == (3, 64, 64) and out["masks"].shape == (0, 64, 64)


def test_train_transform_is_deterministic_given_a_generator():
    item = random_item(3)
    a = TrainTransform(80)(item, torch.Generator().manual_seed(5))
    b = TrainTransform(80)(item, torch.Generator().manual_seed(5))
    for key in ("image", "boxes", "labels", "masks", "crowd_boxes"):
        assert torch.equal(a[key], b[key]), key
    outputs = [
        TrainTransform(80)(item, torch.Generator().manual_seed(s))["image"] for s in range(4)
    ]
    assert any(not torch.equal(outputs[0], o) for o in outputs[1:])


def test_train_transform_with_every_step_off_is_resize_and_normalise():
    item = random_item(4)
    plain = TrainTransform(100, photometric=False, expand=False, crop=False, flip=False)(item)
    assert torch.equal(plain["image"], TestTransform(100)(item)["image"])


def test_test_transform_normalises_with_yolact_statistics():
    item = make_item([])
    item["image"] = torch.ones(3, 48, 64) * torch.tensor(IMAGE_MEAN)[:, None, None]
    out = TestTransform(32)(item)
    assert torch.allclose(out["image"], torch.zeros(3, 32, 32), atol=1e-5)
    x = torch.rand(3, 8, 8)
    assert torch.allclose(denormalize(normalize(x)), x, atol=1e-6)


def test_min_iou_crop_patches_respect_their_constraints():
    gen = torch.Generator().manual_seed(0)
    boxes = torch.tensor([[10.0, 10.0, 60.0, 50.0], [70.0, 20.0, 90.0, 80.0]])
    crops = 0
    for _ in range(100):
        patch = sample_min_iou_crop(boxes, 100, 120, gen)
        if patch is None:
            continue
        crops += 1
        assert 0.3 * 100 - 1 <= patch.height <= 100 and 0.3 * 120 - 1 <= patch.width <= 120
        assert patch.top >= 0 and patch.left >= 0
        assert patch.top + patch.height <= 100 and patch.left + patch.width <= 120
        assert 0.5 - 0.05 <= patch.height / patch.width <= 2.0 + 0.05
        cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
        inside = (
            (cx > patch.left)
            & (cx < patch.left + patch.width)
            & (cy > patch.top)
            & (cy < patch.top + patch.height)
        )
        assert bool(inside.any())
    assert 30 < crops < 100  # "no crop" is one mode in seven
    # without boxes any patch of valid shape is taken, except in the "no crop" mode
    no_box = [sample_min_iou_crop(torch.zeros(0, 4), 50, 50, gen) for _ in range(70)]
    assert 0 < sum(p is None for p in no_box) < 30


def test_sample_expand_probability_and_range():
    gen = torch.Generator().manual_seed(0)
    draws = [sample_expand(40, 60, gen) for _ in range(200)]
    expanded = [d for d in draws if d is not None]
    assert 60 < len(expanded) < 140
    for d in expanded:
        assert 40 <= d.height <= 160 and 60 <= d.width <= 240
        assert -d.top + 40 <= d.height and -d.left + 60 <= d.width  # the image lies on the canvas
    assert sample_expand(40, 60, gen, prob=0.0) is None


def test_malformed_items_are_rejected():
    item = random_item(0)
    with pytest.raises(ValueError, match="masks"):
        hflip({**item, "masks": item["masks"][:, :10]})
    with pytest.raises(ValueError, match="missing key"):
        resize({k: v for k, v in item.items() if k != "labels"}, 32)
    with pytest.raises(ValueError, match="size"):
        TrainTransform(0)
