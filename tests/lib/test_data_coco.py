"""CocoInstances: items, masks equal to pycocotools' annToMask, degenerate annotations, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from gmaiou.data import CocoInstances, find_split
from gmaiou.data.coco import check_image_files, xywh_to_xyxy

H, W = 30, 40


def _rect_rle(y0: int, y1: int, x0: int, x1: int) -> dict:
    m = np.zeros((H, W), dtype=np.uint8)
    m[y0:y1, x0:x1] = 1
    rle = mask_utils.encode(np.asfortranarray(m))
    return {"size": [H, W], "counts": rle["counts"].decode("ascii")}


def write_tiny_coco(root: Path, split: str = "val2017") -> tuple[Path, Path]:
    """Two images: one with a polygon, an RLE, a crowd, and three degenerate annotations; one empty."""
    (root / split).mkdir(parents=True)
    (root / "annotations").mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png"):
        Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(root / split / name)
    anns = [
        # a square polygon, category 3
        {
            "id": 1,
            "image_id": 1,
            "category_id": 3,
            "iscrowd": 0,
            "area": 100.0,
            "bbox": [5.0, 5.0, 10.0, 10.0],
            "segmentation": [[5, 5, 15, 5, 15, 15, 5, 15]],
        },
        # a compressed RLE rectangle, category 9
        {
            "id": 2,
            "image_id": 1,
            "category_id": 9,
            "iscrowd": 0,
            "area": 80.0,
            "bbox": [20.0, 20.0, 16.0, 5.0],
            "segmentation": _rect_rle(20, 25, 20, 36),
        },
        # a crowd region
        {
            "id": 3,
            "image_id": 1,
            "category_id": 3,
            "iscrowd": 1,
            "area": 100.0,
            "bbox": [0.0, 0.0, 10.0, 10.0],
            "segmentation": _rect_rle(0, 10, 0, 10),
        },
        # degenerate: zero width
        {
            "id": 4,
            "image_id": 1,
            "category_id": 3,
            "iscrowd": 0,
            "area": 0.0,
            "bbox": [1.0, 1.0, 0.0, 3.0],
            "segmentation": [[1, 1, 1, 4, 1, 4]],
        },
        # degenerate: a 2-point "polygon" (pycocotools would read it as a box)
        {
            "id": 5,
            "image_id": 1,
            "category_id": 7,
            "iscrowd": 0,
            "area": 4.0,
            "bbox": [30.0, 2.0, 2.0, 2.0],
            "segmentation": [[30, 2, 32, 4]],
        },
        # degenerate: a 2 x 2 pixel square, under the 4-pixel minimum
        {
            "id": 6,
            "image_id": 1,
            "category_id": 7,
            "iscrowd": 0,
            "area": 4.0,
            "bbox": [30.0, 10.0, 2.0, 2.0],
            "segmentation": [[30, 10, 32, 10, 32, 12, 30, 12]],
        },
    ]
    data = {
        "images": [
            {"id": 1, "file_name": "a.png", "height": H, "width": W},
            {"id": 2, "file_name": "b.png", "height": H, "width": W},
        ],
        "annotations": anns,
        "categories": [
            {"id": 3, "name": "three"},
            {"id": 7, "name": "seven"},
            {"id": 9, "name": "nine"},
        ],
    }
    ann_file = root / "annotations" / f"instances_{split}.json"
    ann_file.write_text(json.dumps(data))
    return root / split, ann_file


@pytest.fixture
def tiny(tmp_path: Path) -> tuple[Path, Path]:
    return write_tiny_coco(tmp_path / "tiny")


def test_item_keys_types_and_shapes(tiny):
    ds = CocoInstances(*tiny)
    assert len(ds) == 2
    item = ds[0]
    assert set(item) == {"image", "boxes", "labels", "masks", "image_id", "crowd_boxes"}
    assert item["image"].dtype == torch.float32 and item["image"].shape == (3, H, W)
    assert 0.0 <= float(item["image"].min()) and float(item["image"].max()) <= 1.0
    assert item["boxes"].dtype == torch.float32 and item["boxes"].shape == (2, 4)
    assert item["labels"].dtype == torch.int64
    assert item["masks"].dtype == torch.bool and item["masks"].shape == (2, H, W)
    assert item["crowd_boxes"].dtype == torch.float32
    assert item["image_id"] == 1


def test_labels_are_contiguous_and_map_back_to_category_ids(tiny):
    ds = CocoInstances(*tiny)
    assert ds.num_classes == 3
    assert ds.cat_ids == [3, 7, 9]
    assert ds.class_names == ["three", "seven", "nine"]
    item = ds[0]
    assert item["labels"].tolist() == [0, 2]
    assert [ds.cat_ids[label] for label in item["labels"].tolist()] == [3, 9]


def test_boxes_masks_and_crowds_match_the_annotations(tiny):
    ds = CocoInstances(*tiny)
    item = ds[0]
    assert item["boxes"].tolist() == [[5.0, 5.0, 15.0, 15.0], [20.0, 20.0, 36.0, 25.0]]
    # the RLE rectangle: exactly rows 20-24, columns 20-35
    expected = torch.zeros(H, W, dtype=torch.bool)
    expected[20:25, 20:36] = True
    assert torch.equal(item["masks"][1], expected)
    # the polygon square through pycocotools
    polygon = ds.coco.anns[1]
    assert torch.equal(item["masks"][0], torch.from_numpy(ds.coco.annToMask(polygon)).bool())
    assert item["crowd_boxes"].tolist() == [[0.0, 0.0, 10.0, 10.0]]


def test_degenerate_annotations_are_dropped_and_counted(tiny):
    ds = CocoInstances(*tiny)
    assert ds.dropped["zero_area"] == 1
    assert ds.dropped["invalid_segmentation"] == 1
    ds[0]
    assert ds.dropped["too_small"] == 1  # the 2 x 2 square, found at load time
    loose = CocoInstances(*tiny, min_box_size=1.0)
    assert loose[0]["boxes"].shape[0] == 3


def test_image_without_instances_and_skip_empty(tiny):
    ds = CocoInstances(*tiny)
    empty = ds[1]
    assert empty["boxes"].shape == (0, 4)
    assert empty["labels"].shape == (0,)
    assert empty["masks"].shape == (0, H, W)
    assert empty["crowd_boxes"].shape == (0, 4)
    assert len(CocoInstances(*tiny, skip_empty=True)) == 1


def test_transform_is_applied_then_small_boxes_dropped(tiny):
    def halve(item):
        out = dict(item)
        out["boxes"] = item["boxes"] / 2  # the 2 x 2 ... and the 10 x 10 square shrinks too
        return out

    ds = CocoInstances(*tiny, transform=halve, min_box_size=4.0)
    item = ds[0]
    # halved: the square is 5 x 5, the RLE rectangle 8 x 2.5 (dropped), the tiny one 1 x 1 (dropped)
    assert item["boxes"].tolist() == [[2.5, 2.5, 7.5, 7.5]]
    assert ds.dropped["too_small"] == 2


def test_missing_annotation_file_names_it(tmp_path):
    (tmp_path / "images").mkdir()
    missing = tmp_path / "annotations" / "instances_val2017.json"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        CocoInstances(tmp_path / "images", missing)


def test_missing_image_folder_names_it(tiny):
    image_dir, ann_file = tiny
    with pytest.raises(FileNotFoundError, match="nowhere"):
        CocoInstances(image_dir.parent / "nowhere", ann_file)


def test_missing_image_file_names_it(tiny):
    image_dir, ann_file = tiny
    (image_dir / "b.png").unlink()
    ds = CocoInstances(image_dir, ann_file)
    with pytest.raises(FileNotFoundError, match="b.png"):
        ds[1]


def test_malformed_json_names_the_file(tmp_path):
    bad = tmp_path / "instances.json"
    bad.write_text('{"images": [')
    with pytest.raises(ValueError, match="instances.json.*not valid JSON"):
        CocoInstances(tmp_path, bad)


def test_json_that_is_not_coco_names_the_missing_keys(tmp_path):
    bad = tmp_path / "instances.json"
    bad.write_text(json.dumps({"images": []}))
    with pytest.raises(ValueError, match="annotations, categories"):
        CocoInstances(tmp_path, bad)


def test_annotation_of_unknown_image_is_an_error(tiny):
    image_dir, ann_file = tiny
    data = json.loads(ann_file.read_text())
    data["annotations"][0]["image_id"] = 99
    ann_file.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="image 99"):
        CocoInstances(image_dir, ann_file)


def test_image_size_differing_from_json_names_the_file(tiny):
    image_dir, ann_file = tiny
    Image.fromarray(np.zeros((H + 1, W, 3), dtype=np.uint8)).save(image_dir / "a.png")
    ds = CocoInstances(image_dir, ann_file)
    with pytest.raises(ValueError, match=r"a\.png.*40x31.*40x30"):
        ds[0]


def test_undecodable_image_names_the_file(tiny):
    image_dir, ann_file = tiny
    (image_dir / "a.png").write_bytes(b"not a png")
    ds = CocoInstances(image_dir, ann_file)
    with pytest.raises(ValueError, match=r"a\.png"):
        ds[0]


def test_index_out_of_range(tiny):
    with pytest.raises(IndexError):
        CocoInstances(*tiny)[2]


def test_find_split_resolves_both_layouts(tmp_path):
    coco_root = tmp_path / "coco"
    write_tiny_coco(coco_root, "val2017")
    assert find_split(coco_root, "val") == (
        coco_root / "val2017",
        coco_root / "annotations" / "instances_val2017.json",
    )
    synth_root = tmp_path / "synth"
    write_tiny_coco(synth_root, "train")
    assert find_split(synth_root, "train") == (
        synth_root / "train",
        synth_root / "annotations" / "instances_train.json",
    )
    assert len(CocoInstances.from_root(synth_root, "train")) == 2


def test_find_split_errors_name_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_split(tmp_path / "absent", "train")
    with pytest.raises(FileNotFoundError, match="instances_train2017.json"):
        find_split(tmp_path, "train")
    with pytest.raises(ValueError, match="unknown split"):
        find_split(tmp_path, "minival")
    root = tmp_path / "r"
    write_tiny_coco(root, "val2017")
    (root / "val2017" / "a.png").unlink()
    (root / "val2017" / "b.png").unlink()
    (root / "val2017").rmdir()
    with pytest.raises(FileNotFoundError, match="image folder"):
        find_split(root, "val")


def test_xywh_to_xyxy():
    assert xywh_to_xyxy([1, 2, 3, 4]) == [1.0, 2.0, 4.0, 6.0]


def test_masks_equal_ann_to_mask_on_coco_sample(coco_sample):
    root, coco = coco_sample
    ds = CocoInstances.from_root(root, "val", min_box_size=0.0)
    assert ds.num_classes == 80
    checked = 0
    for index in range(12):
        item = ds[index]
        image_id = item["image_id"]
        info = coco.imgs[image_id]
        assert item["image"].shape == (3, info["height"], info["width"])
        anns = [
            a
            for a in coco.loadAnns(coco.getAnnIds(imgIds=image_id))
            if not a["iscrowd"] and a["area"] > 0
        ]
        expected = [coco.annToMask(a) for a in anns]
        kept = [(a, m) for a, m in zip(anns, expected) if m.any()]
        assert item["masks"].shape[0] == len(kept)
        for g, (ann, mask) in enumerate(kept):
            assert torch.equal(item["masks"][g], torch.from_numpy(mask).bool())
            assert item["boxes"][g].tolist() == pytest.approx(xywh_to_xyxy(ann["bbox"]))
            assert ds.cat_ids[int(item["labels"][g])] == ann["category_id"]
            checked += 1
        crowds = [a for a in coco.loadAnns(coco.getAnnIds(imgIds=image_id)) if a["iscrowd"]]
        assert item["crowd_boxes"].shape == (len(crowds), 4)
    assert checked > 50


def test_coco_sample_loads_both_splits_with_crowds(coco_sample):
    root, _ = coco_sample
    for split in ("train", "val"):
        ds = CocoInstances.from_root(root, split)
        assert len(ds) > 150
        assert sum(len(v) for v in ds._crowds.values()) > 0


def test_annotation_file_without_categories_names_the_file(tiny):
    image_dir, ann_file = tiny
    data = json.loads(ann_file.read_text())
    data["categories"], data["annotations"] = [], []
    ann_file.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=f"{ann_file}.*no categories"):
        CocoInstances(image_dir, ann_file)


def test_dropped_summary_counts_reasons(tiny):
    ds = CocoInstances(*tiny)
    # 6 annotations: one zero-area box and one 2-point polygon are dropped when the file is read
    assert ds.dropped_summary() == (
        "dropped 2 of 6 annotations: 1 invalid segmentations (polygons of < 3 points), "
        "1 zero-area boxes"
    )
    ds[0]  # the 2 x 2 square is dropped at load time
    assert ds.dropped_summary().startswith("dropped 3 of 6 annotations: ")
    assert "1 boxes under min_box_size" in ds.dropped_summary()


def _all_invalid(tiny, empty_masks: bool) -> CocoInstances:
    """The tiny set with every usable annotation made invalid (empty RLEs, or zero-area boxes)."""
    image_dir, ann_file = tiny
    data = json.loads(ann_file.read_text())
    for ann in data["annotations"]:
        if ann["id"] in (1, 2, 6):
            if empty_masks:
                ann["segmentation"] = _rect_rle(0, 0, 0, 0)
            else:
                ann["bbox"][2] = 0.0
    ann_file.write_text(json.dumps(data))
    return CocoInstances(image_dir, ann_file)


@pytest.mark.parametrize("empty_masks", [True, False])
def test_dataset_of_only_invalid_annotations_is_refused(tiny, empty_masks):
    ds = _all_invalid(tiny, empty_masks)
    with pytest.raises(ValueError, match="no usable instance: dropped 5 of 6 annotations") as err:
        ds.check_instances()
    assert ("3 empty masks" if empty_masks else "4 zero-area boxes") in str(err.value)
    assert str(tiny[1]) in str(err.value)


def test_usable_dataset_passes_the_instance_check(tiny):
    ds = CocoInstances(*tiny)
    ds.check_instances()
    assert "empty_mask" not in ds.dropped  # a usable set costs one decode and counts nothing


def test_image_file_check_names_the_file_and_both_sizes(tiny):
    image_dir, ann_file = tiny
    assert check_image_files(CocoInstances(image_dir, ann_file)) == 2
    Image.fromarray(np.zeros((H, W + 3, 3), dtype=np.uint8)).save(image_dir / "b.png")
    with pytest.raises(
        ValueError, match=rf"b\.png is 43x30 \(WxH\) but {ann_file.name} says 40x30"
    ):
        check_image_files(CocoInstances(image_dir, ann_file))
    (image_dir / "b.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"b\.png \(image 2 of .*\) does not exist"):
        check_image_files(CocoInstances(image_dir, ann_file))
    (image_dir / "a.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"cannot read image file .*a\.png"):
        check_image_files(CocoInstances(image_dir, ann_file))
