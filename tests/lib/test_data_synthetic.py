"""The synthetic dataset: valid COCO for pycocotools, byte-reproducible, occlusion-consistent, its MOB share."""

from __future__ import annotations

import contextlib
import hashlib
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
from gmaiou.data.stats import dataset_statistics
from gmaiou.data.synthetic import (
    CLASS_MIXES,
    CLASSES,
    HIGH_MOB_SHARE_BELOW,
    LOW_MOB_SHARE_BELOW,
    mob_mix_name,
    render_scene,
    split_sizes,
)
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


# ----------------------------------------------------------------------------- held-out test split


def _digest(root: Path, splits: tuple[str, ...]) -> dict[str, str]:
    """sha256 of every file of ``splits`` (images and annotation files), by relative path."""
    out = {}
    for split in splits:
        for path in [root / "annotations" / f"instances_{split}.json", *(root / split).iterdir()]:
            out[path.relative_to(root).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def test_test_images_leave_train_and_val_byte_identical(tmp_path):
    plain = generate(tmp_path / "plain", 6, 64, seed=2, progress=False)
    with_test = generate(tmp_path / "with", 6, 64, seed=2, progress=False, test_images=3)
    assert _digest(plain, ("train", "val")) == _digest(with_test, ("train", "val"))
    assert not (plain / "test").exists()
    image_dir, ann_file = find_split(with_test, "test")
    assert image_dir == with_test / "test"
    data = json.loads(ann_file.read_text())
    assert [im["id"] for im in data["images"]] == [7, 8, 9]
    assert data["info"]["split"] == "test" and data["info"]["test_images"] == 3
    assert len(CocoInstances.from_root(with_test, "test")) == 3
    ann_ids = [
        a["id"]
        for split in ("train", "val", "test")
        for a in json.loads((with_test / "annotations" / f"instances_{split}.json").read_text())[
            "annotations"
        ]
    ]
    assert len(ann_ids) == len(set(ann_ids))
    pixels = set(_digest(with_test, ("train", "val")).values())
    assert not pixels & set(_digest(with_test, ("test",)).values())


def test_overwrite_replaces_an_old_test_split(tmp_path):
    out = generate(tmp_path / "ds", 3, 64, seed=1, progress=False, test_images=2)
    generate(out, 3, 64, seed=1, progress=False, overwrite=True)
    assert not (out / "test").exists()
    assert not (out / "annotations" / "instances_test.json").exists()
    with pytest.raises(ValueError, match="test_images"):
        generate(tmp_path / "bad", 3, 64, progress=False, test_images=-1)


def test_ensure_synthetic_keeps_sets_with_test_images_apart(tmp_path, monkeypatch):
    monkeypatch.setenv("GMAIOU_CACHE", str(tmp_path / "cache"))
    root = ensure_synthetic(3, 64, seed=1, progress=False, test_images=2)
    assert root.name.endswith("-seed1-test2")
    assert len(CocoInstances.from_root(root, "test")) == 2


#: sha256 (first 16 hex digits) of a 6-image 64 px set with seed 2, over its annotation files
#: and the decoded pixels of its images, as written before the mob mixes and test images existed.
_REFERENCE_DIGESTS = {"uniform": "2a0fdf8f32be8984", "coco": "3b04e663c988f6fe"}


@pytest.mark.parametrize("mix", ["uniform", "coco"])
def test_named_mixes_write_the_same_sets_as_before(tmp_path, mix):
    from PIL import Image

    root = generate(tmp_path / mix, 6, 64, seed=2, progress=False, mix=mix)
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode())
        data = np.asarray(Image.open(path)).tobytes() if path.suffix == ".png" else None
        digest.update(data if data is not None else path.read_bytes())
    assert digest.hexdigest()[:16] == _REFERENCE_DIGESTS[mix]


# ----------------------------------------------------------------------------- mob<NN> mixes


def test_mob_mix_odds_change_only_the_low_mob_share():
    for name in ("mob10", "mob30", "mob70"):
        odds = CLASS_MIXES[name]
        assert name in CLASS_MIXES and len(odds) == len(CLASSES) == 8
        assert sum(odds) == pytest.approx(1.0)
        assert len(set(odds[:6])) == 1 and len(set(odds[6:])) == 1  # equal within each group
        w = sum(odds[:6])
        share = w * LOW_MOB_SHARE_BELOW + (1 - w) * HIGH_MOB_SHARE_BELOW
        assert share == pytest.approx(int(name[3:]) / 100)
    assert (LOW_MOB_SHARE_BELOW, HIGH_MOB_SHARE_BELOW) == (0.796, 0.011)
    assert sum(CLASS_MIXES["mob30"][:6]) == pytest.approx((0.30 - 0.011) / (0.796 - 0.011))
    assert list(CLASS_MIXES) == ["uniform", "coco"]
    assert mob_mix_name(0.3) == "mob30"


@pytest.mark.parametrize("name", ["mob0", "mob1", "mob80", "mob100"])
def test_mob_mixes_out_of_reach_are_refused_in_one_line(tmp_path, name):
    assert name not in CLASS_MIXES
    with pytest.raises(ValueError, match="out of reach") as err:
        generate(tmp_path / "x", 2, 64, mix=name, progress=False)
    assert "\n" not in str(err.value) and "0.011" in str(err.value) and "0.796" in str(err.value)


@pytest.mark.parametrize("name", ["mob05", "mob", "mob30.5", "MOB30"])
def test_malformed_mob_names_are_unknown_mixes(name):
    assert name not in CLASS_MIXES
    with pytest.raises(ValueError, match="unknown class mix"):
        synthetic._mix_odds(name)


def test_mob_levels_move_the_realised_share(tmp_path):
    shares = {}
    for name in ("mob10", "mob70"):
        root = generate(tmp_path / name, 12, 96, seed=0, progress=False, mix=name)
        stats = dataset_statistics(CocoInstances.from_root(root, "train"))
        assert stats["instances"] > 30
        shares[name] = stats["mob"]["share_below"]
        info = json.loads((root / "annotations" / "instances_train.json").read_text())["info"]
        assert info["mix"] == name
    assert shares["mob10"] < 0.3 < 0.5 < shares["mob70"]


def test_cli_synth_test_images_and_mob_mix(tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["data", "synth", "--out", str(out), "--images", "3", "--size", "64"]
    assert gmaiou_main([*args, "--test-images", "2", "--mix", "mob30"]) == 0
    assert "2 train + 1 val + 2 test" in capsys.readouterr().out
    data = json.loads((out / "annotations" / "instances_test.json").read_text())
    assert len(data["images"]) == 2 and data["info"]["mix"] == "mob30"
    with pytest.raises(SystemExit) as exit_info:
        gmaiou_main([*args, "--mix", "mob90", "--force"])
    assert exit_info.value.code == 2
    assert "out of reach" in capsys.readouterr().err
