"""COCO evaluation: AP equal to pycocotools, oLRP on hand-computed cases, results files, errors."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math

import numpy as np
import pycocotools.mask as mask_utils
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from gmaiou.evaluation import (
    AP_KEYS,
    coco_class_lrp,
    coco_metrics,
    detections_to_coco,
    load_results,
    run_cocoeval,
    save_results,
)
from gmaiou.paths import coco_sample_dir

H = W = 100


def rect_rle(x: int, y: int, w: int, h: int, height: int = H, width: int = W) -> dict:
    """Compressed RLE (counts as str) of an axis-aligned rectangle of pixels."""
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[y : y + h, x : x + w] = 1
    rle = mask_utils.encode(np.asfortranarray(mask))
    return {"size": [height, width], "counts": rle["counts"].decode("ascii")}


def make_coco(images: list[dict], anns: list[dict], num_cats: int) -> COCO:
    coco = COCO()
    coco.dataset = {
        "images": images,
        "categories": [
            {"id": c, "name": f"c{c}", "supercategory": "x"} for c in range(1, num_cats + 1)
        ],
        "annotations": anns,
    }
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def gt_ann(ann_id: int, image_id: int, cat: int, box: list[int], crowd: int = 0) -> dict:
    x, y, w, h = box
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": cat,
        "bbox": [float(v) for v in box],
        "area": float(w * h),
        "iscrowd": crowd,
        "segmentation": rect_rle(x, y, w, h),
    }


def det(image_id: int, cat: int, box: list[int], score: float) -> dict:
    return {
        "image_id": image_id,
        "category_id": cat,
        "bbox": [float(v) for v in box],
        "score": score,
        "segmentation": rect_rle(*box),
    }


# --------------------------------------------------------------------------------------------
# (1) hand-computed oLRP through COCO's matching
# --------------------------------------------------------------------------------------------
# Two 100x100 images, masks are the boxes' pixels (so mask IoU = box IoU). Classes:
#   1: GTs g1 [0,0,10,10] img1, g2 [20,0,10,10] img1, g3 [0,0,10,10] img2, and a crowd region
#      [50,50,40,40] img1 listed first (so COCO reorders its GT columns). Detections:
#        0.9 img1 [0,0,10,8]  -> g1, IoU 80/100 = 0.8          TP
#        0.85 img1 [50,50,40,40] -> the crowd region            ignored (neither TP nor FP)
#        0.8 img1 [20,0,10,6] -> g2, IoU 0.6                    TP
#        0.7 img2 [80,80,10,10] -> nothing                      FP
#        0.6 img2 [0,0,10,9]  -> g3, IoU 0.9                    TP
#        0.5 img1 [0,0,10,10] -> g1 again (taken at 0.9)       FP (duplicate)
#      curve (N_GT = 3): 0.9: (0.4+0+2)/3 = .8; 0.8: (1.2+0+1)/3 = .733; 0.7: (1.2+1+1)/4 = .8;
#      0.6: (1.4+1+0)/4 = .6 (optimum); 0.5: (1.4+2)/5 = .68.  loc = 0.7/3, FP = 1/4, FN = 0.
#      (Were the crowd detection an FP, the optimum would be 3.4/5 = 0.68 at 0.6.)
#   2: GT [0,30,10,10] img1; detections only FPs: 0.95 [0,30,10,4] (IoU 0.4 < 0.5), 0.3 elsewhere
#      -> oLRP 1, FN 1, loc/FP undefined.
#   3: GT [30,30,10,10] img2, one exact detection at 0.3 -> oLRP 0.
#   4: no GT, one detection -> skipped (as COCO skips it for AP).
#   5: GT [60,60,10,10] img2, no detection -> oLRP 1.
# Means: oLRP = (0.6 + 1 + 0 + 1)/4 = 0.65; FN = (0 + 1 + 0 + 1)/4 = 0.5;
#        loc = (0.7/3 + 0)/2 and FP = (0.25 + 0)/2 over the classes with a TP (1 and 3).
HAND_IMAGES = [{"id": i, "height": H, "width": W, "file_name": f"{i}.jpg"} for i in (1, 2)]
HAND_GT = [
    gt_ann(1, 1, 1, [50, 50, 40, 40], crowd=1),
    gt_ann(2, 1, 1, [0, 0, 10, 10]),
    gt_ann(3, 1, 1, [20, 0, 10, 10]),
    gt_ann(4, 2, 1, [0, 0, 10, 10]),
    gt_ann(5, 1, 2, [0, 30, 10, 10]),
    gt_ann(6, 2, 3, [30, 30, 10, 10]),
    gt_ann(7, 2, 5, [60, 60, 10, 10]),
]
HAND_DETS = [  # not in score order, to exercise COCO's sorting and our IoU look-up
    det(1, 1, [0, 0, 10, 10], 0.5),
    det(1, 1, [0, 0, 10, 8], 0.9),
    det(1, 1, [50, 50, 40, 40], 0.85),
    det(1, 1, [20, 0, 10, 6], 0.8),
    det(2, 1, [80, 80, 10, 10], 0.7),
    det(2, 1, [0, 0, 10, 9], 0.6),
    det(1, 2, [70, 0, 10, 10], 0.3),
    det(1, 2, [0, 30, 10, 4], 0.95),
    det(2, 3, [30, 30, 10, 10], 0.3),
    det(1, 4, [0, 0, 5, 5], 0.9),
]


@pytest.fixture
def hand_coco() -> COCO:
    return make_coco(copy.deepcopy(HAND_IMAGES), copy.deepcopy(HAND_GT), num_cats=5)


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_hand_computed_per_class(hand_coco, iou_type):
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = run_cocoeval(hand_coco, HAND_DETS, iou_type)
    per_class = coco_class_lrp(evaluator)
    assert sorted(per_class) == [1, 2, 3, 5]  # class 4 has no GT
    c1 = per_class[1]
    assert c1.olrp == pytest.approx(0.6)
    assert c1.loc == pytest.approx(0.7 / 3)
    assert c1.fp == pytest.approx(0.25)
    assert c1.fn == 0.0
    assert c1.threshold == 0.6
    assert (c1.num_gt, c1.num_tp, c1.num_fp) == (3, 3, 1)
    for no_tp in (per_class[2], per_class[5]):
        assert no_tp.olrp == 1.0 and no_tp.fn == 1.0 and not no_tp.has_tp
    assert per_class[3].olrp == pytest.approx(0.0, abs=1e-12)
    assert per_class[3].threshold == 0.3


def test_hand_computed_means_in_percent(hand_coco):
    metrics = coco_metrics(hand_coco, HAND_DETS)
    assert set(metrics) == {"bbox", "segm"}
    for iou_type in ("bbox", "segm"):
        m = metrics[iou_type]
        assert m["oLRP"] == pytest.approx(65.0)
        assert m["oLRP_FN"] == pytest.approx(50.0)
        assert m["oLRP_loc"] == pytest.approx(100 * (0.7 / 3) / 2)
        assert m["oLRP_FP"] == pytest.approx(12.5)


def test_only_the_top_100_detections_per_image_and_class_count(hand_coco):
    # 100 FPs outscore the exact detection of class 3: COCO keeps 100, so class 3 loses its TP.
    far = [det(2, 3, [90, 90, 5, 5], 0.9) for _ in range(100)]
    exact = det(2, 3, [30, 30, 10, 10], 0.1)
    with contextlib.redirect_stdout(io.StringIO()):
        kept = coco_class_lrp(run_cocoeval(hand_coco, far[:99] + [exact], "bbox"))
        cut = coco_class_lrp(run_cocoeval(hand_coco, far + [exact], "bbox"))
    assert kept[3].has_tp and kept[3].olrp == pytest.approx(99 / 100)  # (0 + 99 + 0) / (1 + 99)
    assert cut[3].olrp == 1.0 and not cut[3].has_tp


def test_inputs_are_not_modified(hand_coco):
    dets = copy.deepcopy(HAND_DETS)
    gt_before = copy.deepcopy(hand_coco.dataset["annotations"])
    coco_metrics(hand_coco, dets)
    assert dets == HAND_DETS
    assert hand_coco.dataset["annotations"] == gt_before


# --------------------------------------------------------------------------------------------
# (2) AP equal to a direct pycocotools run
# --------------------------------------------------------------------------------------------
def _crafted_case(seed: int = 0):
    """Three images: small/medium/large objects, a crowd region, jittered and false detections."""
    rng = np.random.default_rng(seed)
    height, width = 240, 320
    images = [
        {"id": i, "height": height, "width": width, "file_name": f"{i}.jpg"} for i in (7, 8, 9)
    ]
    anns, dets = [], []
    ann_id = 1
    for image in images:
        for _ in range(6):
            side = int(rng.choice([12, 24, 50, 80, 120]))
            w, h = side, max(4, int(side * rng.uniform(0.5, 1.5)))
            x, y = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
            cat = int(rng.integers(1, 4))
            crowd = int(ann_id == 5)
            ann = gt_ann(ann_id, image["id"], cat, [x, y, w, h], crowd=crowd)
            ann["segmentation"] = rect_rle(x, y, w, h, height, width)
            anns.append(ann)
            ann_id += 1
            for _ in range(int(rng.integers(0, 3))):  # 0-2 detections per object
                dx, dy = (int(v) for v in rng.normal(0, 0.15 * side, 2))
                bx = int(np.clip(x + dx, 0, width - w))
                by = int(np.clip(y + dy, 0, height - h))
                dets.append(
                    {
                        "image_id": image["id"],
                        "category_id": cat if rng.random() < 0.85 else int(rng.integers(1, 4)),
                        "bbox": [float(bx), float(by), float(w), float(h)],
                        "score": float(rng.random()),
                        "segmentation": rect_rle(bx, by, w, h, height, width),
                    }
                )
        for _ in range(3):  # background false positives
            bx, by = int(rng.integers(0, width - 30)), int(rng.integers(0, height - 30))
            dets.append(
                {
                    "image_id": image["id"],
                    "category_id": int(rng.integers(1, 4)),
                    "bbox": [float(bx), float(by), 30.0, 20.0],
                    "score": float(rng.random()),
                    "segmentation": rect_rle(bx, by, 30, 20, height, width),
                }
            )
    return make_coco(images, anns, num_cats=3), dets


def _pycocotools_stats(coco_gt: COCO, dets: list[dict], iou_type: str) -> np.ndarray:
    gt = COCO()
    gt.dataset = copy.deepcopy(coco_gt.dataset)
    results = copy.deepcopy(dets)
    if iou_type == "segm":
        for r in results:  # mask areas for APs/m/l, as coco_metrics documents
            r.pop("bbox")
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        evaluator = COCOeval(gt, gt.loadRes(results), iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator.stats


@pytest.mark.parametrize("seed", [0, 1])
def test_ap_equals_pycocotools(seed):
    coco_gt, dets = _crafted_case(seed)
    metrics = coco_metrics(coco_gt, dets)
    for iou_type in ("bbox", "segm"):
        expected = _pycocotools_stats(coco_gt, dets, iou_type)
        for key, value in zip(AP_KEYS, expected[: len(AP_KEYS)]):
            got = metrics[iou_type][key]
            if value < 0:
                assert math.isnan(got), (iou_type, key)
            else:
                assert got == pytest.approx(100 * value, abs=1e-9), (iou_type, key)
        assert 0 < metrics[iou_type]["AP"] < 100  # a non-trivial case
        assert 0 < metrics[iou_type]["oLRP"] < 100


def test_lrp_recall_agrees_with_cocoeval_when_scores_tie():
    # With one score for all detections there is a single cut-off, so oLRP's FN error must be
    # exactly 1 - COCO's recall at IoU 0.5 (area "all", 100 detections) for every class.
    coco_gt, dets = _crafted_case(3)
    for d in dets:
        d["score"] = 1.0
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = run_cocoeval(coco_gt, dets, "bbox")
    per_class = coco_class_lrp(evaluator)
    recall = evaluator.eval["recall"][0, :, 0, -1]
    assert per_class
    for k, cat in enumerate(evaluator.params.catIds):
        if cat in per_class and per_class[cat].has_tp:
            assert per_class[cat].fn == pytest.approx(1 - recall[k])


# --------------------------------------------------------------------------------------------
# (3) the real COCO sample
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def coco_val() -> COCO:
    root = coco_sample_dir()
    if root is None:
        pytest.skip(
            "the COCO sample is absent (set GMAIOU_COCO_SAMPLE or add ../shared/data/coco-sample)"
        )
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(root / "annotations" / "instances_val2017.json"))


def _gt_as_detections(coco: COCO) -> list[dict]:
    dets = []
    for ann in coco.dataset["annotations"]:
        if ann["iscrowd"]:
            continue
        rle = coco.annToRLE(ann)
        dets.append(
            {
                "image_id": ann["image_id"],
                "category_id": ann["category_id"],
                "bbox": list(ann["bbox"]),
                "score": 1.0,
                "segmentation": {"size": rle["size"], "counts": rle["counts"].decode("ascii")},
            }
        )
    return dets


def test_real_gt_as_detections_is_perfect(coco_val):
    metrics = coco_metrics(coco_val, _gt_as_detections(coco_val))
    for iou_type in ("bbox", "segm"):
        m = metrics[iou_type]
        for key in AP_KEYS:
            assert m[key] == pytest.approx(100.0), (iou_type, key)
        for key in ("oLRP", "oLRP_loc", "oLRP_FP", "oLRP_FN"):
            assert m[key] == pytest.approx(0.0, abs=1e-9), (iou_type, key)


def test_real_jittered_boxes_get_worse_with_the_jitter(coco_val):
    dets = _gt_as_detections(coco_val)
    noise = np.random.default_rng(0).normal(size=(len(dets), 2))
    results = {}
    for scale in (0.05, 0.15):
        jittered = copy.deepcopy(dets)
        for d, (nx, ny) in zip(jittered, noise):
            x, y, w, h = d["bbox"]
            d["bbox"] = [x + scale * nx * w, y + scale * ny * h, w, h]
        results[scale] = coco_metrics(coco_val, jittered)
    small, large = results[0.05], results[0.15]
    # Boxes move, masks do not: segm stays perfect, bbox degrades more with more jitter.
    for m in (small, large):
        assert m["segm"]["AP"] == pytest.approx(100.0) and m["segm"]["oLRP"] == pytest.approx(0.0)
    assert large["bbox"]["AP"] < small["bbox"]["AP"] < 100.0
    assert large["bbox"]["AP75"] < small["bbox"]["AP75"]
    assert 0.0 < small["bbox"]["oLRP"] < large["bbox"]["oLRP"] < 100.0
    assert 0.0 < small["bbox"]["oLRP_loc"] < large["bbox"]["oLRP_loc"] <= 50.0
    assert small["bbox"]["oLRP_FN"] <= large["bbox"]["oLRP_FN"]


# --------------------------------------------------------------------------------------------
# (4) bad inputs, (5) empty detections
# --------------------------------------------------------------------------------------------
def _with(index: int, **changes) -> list[dict]:
    dets = copy.deepcopy(HAND_DETS)
    for key, value in changes.items():
        if value is None:
            del dets[index][key]
        else:
            dets[index][key] = value
    return dets


@pytest.mark.parametrize(
    "dets, match",
    [
        (_with(2, image_id=999), r"detections\[2\]\['image_id'\] = 999"),
        (_with(3, category_id=77), r"detections\[3\]\['category_id'\] = 77"),
        (_with(1, bbox=None), r"detections\[1\] has no 'bbox'"),
        (_with(4, score=None), r"detections\[4\] has no 'score'"),
        (_with(0, segmentation=None), r"detections\[0\] has no 'segmentation'"),
        (_with(5, bbox=[0.0, 0.0, -3.0, 4.0]), r"detections\[5\]\['bbox'\].*negative width"),
        (_with(5, bbox=[0.0, 0.0, 3.0]), r"detections\[5\]\['bbox'\] must be \[x, y, w, h\]"),
        (_with(6, score=float("nan")), r"detections\[6\]\['score'\]"),
        (
            _with(7, segmentation=rect_rle(0, 0, 5, 5, 50, 50)),
            r"detections\[7\]\['segmentation'\]\['size'\]",
        ),
        (
            _with(8, segmentation=[[0, 0, 5, 0, 5, 5]]),
            r"detections\[8\]\['segmentation'\] must be an RLE",
        ),
        (HAND_DETS[:2] + ["not a dict"], r"detections\[2\] must be a dict"),
    ],
    ids=[
        "unknown-image",
        "unknown-category",
        "no-bbox",
        "no-score",
        "no-segmentation",
        "negative-width",
        "short-bbox",
        "nan-score",
        "mask-size",
        "polygon",
        "not-a-dict",
    ],
)
def test_bad_detections_raise_naming_index_and_field(hand_coco, dets, match):
    with pytest.raises(ValueError, match=match):
        coco_metrics(hand_coco, dets)


def test_segmentation_not_needed_for_box_only_evaluation(hand_coco):
    dets = copy.deepcopy(HAND_DETS)
    for d in dets:
        del d["segmentation"]
    metrics = coco_metrics(hand_coco, dets, iou_types=("bbox",))
    assert set(metrics) == {"bbox"} and metrics["bbox"]["oLRP"] == pytest.approx(65.0)


def test_other_bad_arguments(hand_coco):
    with pytest.raises(ValueError, match="iou_types"):
        coco_metrics(hand_coco, HAND_DETS, iou_types=("keypoints",))
    with pytest.raises(ValueError, match=r"img_ids \[42\]"):
        coco_metrics(hand_coco, HAND_DETS, img_ids=[1, 42])
    with pytest.raises(ValueError, match="list of dicts"):
        coco_metrics(hand_coco, HAND_DETS[0])
    no_gt = make_coco(copy.deepcopy(HAND_IMAGES), [], num_cats=5)
    with pytest.raises(ValueError, match="no non-crowd ground truth"):
        coco_metrics(no_gt, HAND_DETS)


def test_img_ids_restricts_the_evaluation(hand_coco):
    # Image 2 alone: class 1 has g3 (TP 0.6 IoU 0.9) and the FP at 0.7:
    #   cut-off 0.7: (0 + 1 + 1) / 2 = 1; cut-off 0.6: (0.2 + 1 + 0) / 2 = 0.6.
    # class 3 perfect (0), class 5 missed (1); classes 2 and 4 have no GT there.
    per_class = coco_metrics(hand_coco, HAND_DETS, img_ids=[2], iou_types=("bbox",))["bbox"]
    assert per_class["oLRP"] == pytest.approx(100 * (0.6 + 0 + 1) / 3)


def test_empty_detections(hand_coco):
    metrics = coco_metrics(hand_coco, [])
    for iou_type in ("bbox", "segm"):
        m = metrics[iou_type]
        assert m["AP"] == 0.0 and m["AP50"] == 0.0 and m["AP75"] == 0.0
        assert m["APs"] == 0.0  # every GT here is small
        assert math.isnan(m["APm"]) and math.isnan(m["APl"])  # no GT in those ranges (COCO: -1)
        assert m["oLRP"] == 100.0 and m["oLRP_FN"] == 100.0
        assert math.isnan(m["oLRP_loc"]) and math.isnan(m["oLRP_FP"])


def test_quiet_unless_verbose(hand_coco, capsys):
    coco_metrics(hand_coco, HAND_DETS)
    assert capsys.readouterr().out == ""
    coco_metrics(hand_coco, HAND_DETS, verbose=True)
    out = capsys.readouterr().out
    assert "Average Precision" in out and "oLRP" in out


# --------------------------------------------------------------------------------------------
# results helpers
# --------------------------------------------------------------------------------------------
def _hand_tensors():
    """The non-crowd GT of image 1 as model outputs (labels contiguous over cat ids 1..5)."""
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 0.0, 30.0, 10.0], [0.0, 30.0, 10.0, 40.0]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    labels = torch.tensor([0, 0, 1])
    masks = torch.zeros(3, H, W, dtype=torch.bool)
    for n, (x1, y1, x2, y2) in enumerate(boxes.long().tolist()):
        masks[n, y1:y2, x1:x2] = True
    return boxes, scores, labels, masks


def test_detections_to_coco_round_trip(hand_coco, tmp_path):
    boxes, scores, labels, masks = _hand_tensors()
    results = detections_to_coco(1, boxes, scores, labels, masks, cat_ids=[1, 2, 3, 4, 5])
    assert [r["category_id"] for r in results] == [1, 1, 2]
    assert results[1]["bbox"] == [20.0, 0.0, 10.0, 10.0]
    assert results[0]["score"] == pytest.approx(0.9)
    for r, m in zip(results, masks):
        assert isinstance(r["segmentation"]["counts"], str)
        decoded = mask_utils.decode(
            {"size": r["segmentation"]["size"], "counts": r["segmentation"]["counts"].encode()}
        )
        np.testing.assert_array_equal(decoded.astype(bool), m.numpy())
    path = save_results(tmp_path / "sub" / "results.json", results)
    assert load_results(path) == json.loads(json.dumps(results))
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_results(path, results)
    save_results(path, results[:1], overwrite=True)
    assert len(load_results(path)) == 1
    # evaluated on image 1 only: classes 1 (2 GTs) and 2 (1 GT) found exactly
    metrics = coco_metrics(hand_coco, results, img_ids=[1])
    for iou_type in ("bbox", "segm"):
        assert metrics[iou_type]["AP"] == pytest.approx(100.0)
        assert metrics[iou_type]["oLRP"] == pytest.approx(0.0, abs=1e-9)


def test_detections_to_coco_without_masks_and_empty():
    boxes, scores, labels, _ = _hand_tensors()
    results = detections_to_coco(3, boxes, scores, labels, None, cat_ids=[4, 9])
    assert [r["category_id"] for r in results] == [4, 4, 9]
    assert all("segmentation" not in r for r in results)
    empty = detections_to_coco(
        3,
        torch.zeros(0, 4),
        torch.zeros(0),
        torch.zeros(0, dtype=torch.long),
        torch.zeros(0, H, W, dtype=torch.bool),
        cat_ids=[1],
    )
    assert empty == []


@pytest.mark.parametrize(
    "change, error, match",
    [
        (dict(labels=torch.tensor([0, 0, 5])), ValueError, r"labels must lie in \[0, 5\)"),
        (dict(labels=torch.tensor([0.0, 0.0, 1.0])), TypeError, "integer"),
        (dict(scores=torch.tensor([0.9, 0.8])), ValueError, r"scores must have shape \[3\]"),
        (dict(boxes=torch.tensor([[0.0, 0.0, -1.0, 10.0]] * 3)), ValueError, "x2 < x1"),
        (dict(masks=torch.zeros(2, H, W, dtype=torch.bool)), ValueError, "2 masks but there are 3"),
        (dict(image_id="1"), TypeError, "image_id"),
    ],
)
def test_detections_to_coco_bad_inputs(change, error, match):
    boxes, scores, labels, masks = _hand_tensors()
    args = dict(
        image_id=1, boxes=boxes, scores=scores, labels=labels, masks=masks, cat_ids=[1, 2, 3, 4, 5]
    )
    args.update(change)
    with pytest.raises(error, match=match):
        detections_to_coco(**args)


def test_load_results_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no results file"):
        load_results(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"image_id": 1}')
    with pytest.raises(ValueError, match="JSON list"):
        load_results(bad)
