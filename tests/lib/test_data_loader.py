"""collate_instances, seeded loaders with workers, prebuilt GmaIoU tables, and their options."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gmaiou import gmaiou
from gmaiou.data import (
    CocoInstances,
    TestTransform,
    TrainTransform,
    collate_instances,
    generate,
    make_loader,
)
from gmaiou.measure import MaskIntegrals


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("loader") / "ds", 10, 128, seed=0, progress=False)


def _item(g: int, size: int = 16, image_id: int = 1) -> dict:
    masks = torch.zeros(g, size, size, dtype=torch.bool)
    boxes = torch.zeros(g, 4)
    for i in range(g):
        masks[i, i : i + 4, 2 : 2 + 3 + i] = True
        boxes[i] = torch.tensor([2.0, i, 5.0 + i, i + 4.0])
    return {
        "image": torch.rand(3, size, size),
        "boxes": boxes,
        "labels": torch.arange(g),
        "masks": masks,
        "image_id": image_id,
        "crowd_boxes": torch.zeros(0, 4),
    }


def test_collate_stacks_images_and_lists_targets():
    batch = collate_instances([_item(2, image_id=4), _item(0, image_id=9)])
    assert batch["images"].shape == (2, 3, 16, 16)
    assert [b.shape[0] for b in batch["boxes"]] == [2, 0]
    assert [m.shape for m in batch["masks"]] == [(2, 16, 16), (0, 16, 16)]
    assert [lab.tolist() for lab in batch["labels"]] == [[0, 1], []]
    assert len(batch["crowd_boxes"]) == 2
    assert batch["image_ids"] == [4, 9]
    assert batch["mask_integrals"] is None


def test_collate_builds_integrals_that_give_the_same_gmaiou():
    items = [_item(3), _item(0)]
    batch = collate_instances(items, build_integrals=True)
    tables = batch["mask_integrals"]
    assert [type(t) for t in tables] == [MaskIntegrals, MaskIntegrals]
    assert [len(t) for t in tables] == [3, 0]
    anchors = torch.tensor([[0.0, 0.0, 8.0, 8.0], [2.0, 1.0, 6.0, 5.0], [-4.0, -4.0, 30.0, 30.0]])
    direct = gmaiou(items[0]["boxes"], items[0]["masks"], anchors)
    assert torch.allclose(gmaiou(items[0]["boxes"], tables[0], anchors), direct)
    assert tables[0].mask_area.tolist() == [12, 16, 20]


def test_collate_rejects_mixed_sizes_and_empty_batches():
    with pytest.raises(ValueError, match="one size"):
        collate_instances([_item(1, 16), _item(1, 20)])
    with pytest.raises(ValueError, match="empty batch"):
        collate_instances([])


def test_make_loader_argument_errors(root):
    ds = CocoInstances.from_root(root, "train", TestTransform(64))
    with pytest.raises(ValueError, match="batch_size"):
        make_loader(ds, 0, shuffle=False, num_workers=0)
    with pytest.raises(ValueError, match="num_workers"):
        make_loader(ds, 2, shuffle=False, num_workers=-1)
    with pytest.raises(ValueError, match="sampler"):
        make_loader(
            ds, 2, shuffle=True, num_workers=0, sampler=torch.utils.data.SequentialSampler(ds)
        )


def test_shuffling_follows_the_seed(root):
    ds = CocoInstances.from_root(root, "train", TestTransform(64))

    def order(seed: int) -> list[int]:
        return [
            i
            for b in make_loader(ds, 3, shuffle=True, num_workers=0, seed=seed)
            for i in b["image_ids"]
        ]

    assert order(1) == order(1)
    assert sorted(order(1)) == sorted(ds.image_ids)
    assert any(order(1) != order(s) for s in (2, 3, 4))
    plain = [i for b in make_loader(ds, 3, shuffle=False, num_workers=0) for i in b["image_ids"]]
    assert plain == ds.image_ids


def test_workers_give_reproducible_augmented_batches_with_tables(root):
    ds = CocoInstances.from_root(root, "train", TrainTransform(96))

    def run(seed: int) -> list[dict]:
        loader = make_loader(
            ds, 4, shuffle=True, num_workers=2, build_integrals=True, seed=seed, drop_last=True
        )
        return list(loader)

    a, b = run(7), run(7)
    assert len(a) == 2
    for x, y in zip(a, b):
        assert x["image_ids"] == y["image_ids"]
        assert torch.equal(x["images"], y["images"])
        for key in ("boxes", "labels", "masks"):
            assert all(torch.equal(p, q) for p, q in zip(x[key], y[key])), key
        assert x["images"].shape == (4, 3, 96, 96)
        for tables, boxes, masks in zip(x["mask_integrals"], x["boxes"], x["masks"]):
            assert torch.equal(tables.mask_area, masks.flatten(1).sum(dim=1))
            assert torch.allclose(gmaiou(boxes, tables, boxes), gmaiou(boxes, masks, boxes))
    c = run(8)
    assert any(not torch.equal(x["images"], z["images"]) for x, z in zip(a, c))
