"""The references' input pipeline options: random channel swap and resizing without antialiasing."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gmaiou.configs import get_config
from gmaiou.data.transforms import TestTransform, TrainTransform, distort_photometric, resize


def _item(h: int = 40, w: int = 60) -> dict:
    return {
        "image": torch.rand(3, h, w, generator=torch.Generator().manual_seed(0)),
        "boxes": torch.zeros(0, 4),
        "labels": torch.zeros(0, dtype=torch.int64),
        "masks": torch.zeros(0, h, w, dtype=torch.bool),
        "image_id": 1,
        "crowd_boxes": torch.zeros(0, 4),
    }


def test_channel_swap_permutes_the_channels_about_half_the_time():
    image = torch.stack([torch.full((2, 2), v) for v in (0.1, 0.5, 0.9)])
    off = [distort_photometric(image, torch.Generator().manual_seed(s)) for s in range(40)]
    swapped = 0
    for seed in range(40):
        with_swap = distort_photometric(image, torch.Generator().manual_seed(seed), True)
        # the same draws come first: the result is a channel permutation of the result without
        perms = [p for p in ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))]
        assert any(torch.equal(with_swap, off[seed][list(p)]) for p in perms)
        swapped += not torch.equal(with_swap, off[seed])
    assert 10 <= swapped <= 30  # p = 1/2 of a swap, 5/6 of it a real permutation


def test_resize_without_antialias_is_plain_bilinear():
    item = _item()
    plain = resize(item, 20, antialias=False)["image"]
    expected = F.interpolate(
        item["image"][None], size=(20, 20), mode="bilinear", align_corners=False
    )
    assert torch.allclose(plain, expected[0], atol=1e-6)
    assert not torch.allclose(resize(item, 20)["image"], plain, atol=1e-3)  # antialias smooths
    test = TestTransform(20, antialias=False)(item)["image"]
    train = TrainTransform(
        20, photometric=False, expand=False, crop=False, flip=False, antialias=False
    )(item)["image"]
    assert torch.equal(test, train)


def test_paper_presets_turn_both_on_and_cpu_presets_keep_them_off():
    paper = get_config("yolact-atss-gmaiou-r50-550")
    assert paper.augment.channel_swap and not paper.model.resize_antialias
    assert get_config("gmayolact-atss-gmaiou-r101-700").augment.channel_swap
    cpu = get_config("gmayolact-atss-gmaiou-r18-160")
    assert not cpu.augment.channel_swap and cpu.model.resize_antialias
