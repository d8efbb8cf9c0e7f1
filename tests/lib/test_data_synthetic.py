"""The synthetic dataset: valid COCO for pycocotools, byte-reproducible, occlusion-consistent, its MOB share."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO

from gmaiou import mob_ratio
from gmaiou.cli import main as gmaiou_main
from gmaiou.data import CocoInstances, ensure_synthetic, find_split, generate, synthetic
from gmaiou.data.synthetic import CLASSES, render_scene, split_sizes
from gmaiou.shapes import tight_box


@pytest.fixture(scope="module")
def small_set(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("synth") / "ds", 10, 160, seed=3, progress=False)


def _load_coco(path: Path) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def test_split_sizes():
    assert split_sizes(10) == (8, 2)
    assert split_sizes(2) == (1, 1)
    assert split_sizes(400) == (320, 80)
    with pytest.raises(ValueError, match=">= 2"):
        split_sizes(1)


def test_layout_and_pycocotools_reads_it(small_set):
    for split, count in (("train", 8), ("val", 2)):
        image_dir, ann_file = find_split(small_set, split)
        assert image_dir == small_set / split
        coco = _load_coco(ann_file)
        assert len(coco.imgs) == count
        assert sorted(coco.cats) == list(range(1, len(CLASSES) + 1))
        assert [coco.cats[i + 1]["name"] for i in range(len(CLASSES))] == [c.name for c in CLASSES]
        assert len(list(image_dir.glob("*.png"))) == count
        for ann in coco.anns.values():
            mask = coco.annToMask(ann).astype(bool)
            assert mask.sum() == ann["area"] > 0
            x1, y1, x2, y2 = tight_box(mask)
            assert ann["bbox"] == [x1, y1, x2 - x1, y2 - y1]
            assert ann["iscrowd"] == 0 and isinstance(ann["segmentation"]["counts"], str)
    train = _load_coco(small_set / "annotations" / "instances_train.json")
    val = _load_coco(small_set / "annotations" / "instances_val.json")
    assert not set(train.imgs) & set(val.imgs)
    assert not set(train.anns) & set(val.anns)


def test_same_arguments_give_byte_identical_files(small_set, tmp_path):
    again = generate(tmp_path / "again", 10, 160, seed=3, progress=False)
    files = sorted(p.relative_to(small_set) for p in small_set.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert len(files) == 12
    for rel in files:
        assert (small_set / rel).read_bytes() == (again / rel).read_bytes(), rel


def test_another_seed_gives_other_scenes(small_set, tmp_path):
    other = generate(tmp_path / "other", 10, 160, seed=4, progress=False)
    assert (small_set / "train" / "000001.png").read_bytes() != (
        other / "train" / "000001.png"
    ).read_bytes()


def test_scenes_are_seeded_per_image():
    a_img, a_inst = render_scene(128, np.random.default_rng(np.random.SeedSequence([0, 5])))
    b_img, b_inst = render_scene(128, np.random.default_rng(np.random.SeedSequence([0, 5])))
    assert np.array_equal(a_img, b_img) and len(a_inst) == len(b_inst)
    assert a_img.dtype == np.uint8 and a_img.shape == (128, 128, 3)


def test_occlusion_leaves_disjoint_masks():
    for index in range(15):
        _, instances = render_scene(200, np.random.default_rng(np.random.SeedSequence([1, index])))
        if len(instances) < 2:
            continue
        stack = np.stack([m for _, m in instances]).astype(np.int32)
        assert stack.sum(axis=0).max() <= 1, "a pixel belongs to two instances"
        assert all(m.sum() >= 20 for _, m in instances)


def test_loads_as_coco_instances(small_set):
    ds = CocoInstances.from_root(small_set, "train")
    assert ds.num_classes == len(CLASSES)
    item = ds[0]
    assert item["image"].shape == (3, 160, 160)
    assert item["masks"].shape[0] == item["boxes"].shape[0] > 0
    assert sum(ds.dropped.values()) == 0


def test_default_dataset_has_low_mob_share_and_all_sizes():
    """The embedded default (550 px) dataset: >= 25% of GT boxes with MOB < 0.5 (COCO: ~28%)."""
    root = ensure_synthetic(24, 550, seed=0, progress=False)
    ds = CocoInstances.from_root(root, "train")
    ratios, areas, labels = [], [], []
    for index in range(len(ds)):
        t = ds.get_targets(index)
        ratios.append(mob_ratio(t["boxes"], t["masks"]).diagonal())
        areas.append(t["masks"].flatten(1).sum(dim=1))
        labels.append(t["labels"])
    ratios, areas, labels = torch.cat(ratios), torch.cat(areas), torch.cat(labels)
    assert ratios.numel() > 60
    share = float((ratios < 0.5).float().mean())
    assert share >= 0.25, f"only {100 * share:.1f}% of GT boxes have MOB < 0.5"
    assert float((ratios >= 0.5).float().mean()) >= 0.1  # blobs and rectangles are there too
    assert (
        (areas < 32**2).any()
        and ((areas >= 32**2) & (areas < 96**2)).any()
        and (areas >= 96**2).any()
    )
    assert len(set(labels.tolist())) == len(CLASSES)


def test_ensure_synthetic_caches_and_is_atomic(tmp_path, monkeypatch):
    monkeypatch.setenv("GMAIOU_CACHE", str(tmp_path / "cache"))
    root = ensure_synthetic(3, 96, seed=1, progress=False)
    stamp = (root / "annotations" / "instances_train.json").stat().st_mtime_ns
    assert ensure_synthetic(3, 96, seed=1, progress=False) == root
    assert (root / "annotations" / "instances_train.json").stat().st_mtime_ns == stamp

    def crash(out_dir, *args, **kwargs):
        (Path(out_dir) / "annotations").mkdir(parents=True)
        raise RuntimeError("interrupted")

    monkeypatch.setattr(synthetic, "generate", crash)
    with pytest.raises(RuntimeError, match="interrupted"):
        ensure_synthetic(3, 96, seed=2, progress=False)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [root.name]


def test_generate_refuses_a_non_empty_folder(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not empty"):
        generate(out, 2, 64, progress=False)
    generate(out, 2, 64, overwrite=True, progress=False)
    assert (out / "notes.txt").read_text() == "keep me"
    assert (out / "annotations" / "instances_val.json").is_file()


@pytest.mark.parametrize(
    "kwargs, message",
    [({"num_images": 1}, "num_images"), ({"size": 32}, "size"), ({"seed": -1}, "seed")],
)
def test_bad_arguments_are_named(tmp_path, kwargs, message):
    args = {"num_images": 2, "size": 64, "seed": 0, **kwargs}
    with pytest.raises(ValueError, match=message):
        generate(tmp_path / "x", progress=False, **args)


def test_cli_synth_writes_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "cli"
    assert (
        gmaiou_main(
            ["data", "synth", "--out", str(out), "--images", "3", "--size", "64", "--seed", "2"]
        )
        == 0
    )
    assert "2 train + 1 val" in capsys.readouterr().out
    data = json.loads((out / "annotations" / "instances_train.json").read_text())
    assert data["info"]["seed"] == 2 and len(data["images"]) == 2
    before = (out / "train" / "000001.png").read_bytes()
    assert (
        gmaiou_main(
            ["data", "synth", "--out", str(out), "--images", "3", "--size", "64", "--seed", "5"]
        )
        == 2
    )
    assert "--force" in capsys.readouterr().err
    assert (out / "train" / "000001.png").read_bytes() == before
    assert (
        gmaiou_main(
            [
                "data",
                "synth",
                "--out",
                str(out),
                "--images",
                "3",
                "--size",
                "64",
                "--seed",
                "5",
                "--force",
            ]
        )
        == 0
    )
    assert (out / "train" / "000001.png").read_bytes() != before
