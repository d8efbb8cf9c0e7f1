"""COCO box and mask evaluation: pycocotools' AP plus our optimal LRP (``docs/spec.md`` section 4).

:func:`coco_metrics` runs pycocotools' ``COCOeval`` once per IoU type ("bbox", "segm"), reads
AP, AP50, AP75, APs, APm and APl from its summary, and computes oLRP from the same run's
matching: ``evaluateImg``'s ``dtMatches``, ``dtIgnore`` and ``gtIgnore`` at IoU 0.5, area range
"all" and 100 detections per image and class, so crowd regions and ignored ground truths are
handled exactly as COCO does (a detection matched to a crowd region is ignored, crowd ground
truths are not counted). The IoU of each matched pair is read from ``COCOeval.ious``.
See :mod:`gmaiou.evaluation.lrp` for the exact oLRP definitions.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Mapping, Sequence
from numbers import Real
from typing import Any

import numpy as np
import pycocotools.mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from gmaiou.evaluation.lrp import LRP_TAU, ClassLRP, mean_optimal_lrp, optimal_lrp

__all__ = [
    "AP_KEYS",
    "IOU_TYPES",
    "LRP_KEYS",
    "coco_class_lrp",
    "coco_metrics",
    "run_cocoeval",
    "validate_detections",
]

#: The evaluations :func:`coco_metrics` can run.
IOU_TYPES: tuple[str, ...] = ("bbox", "segm")
#: AP keys, in the order of ``COCOeval.stats[0:6]``.
AP_KEYS: tuple[str, ...] = ("AP", "AP50", "AP75", "APs", "APm", "APl")
#: Optimal LRP keys.
LRP_KEYS: tuple[str, ...] = ("oLRP", "oLRP_loc", "oLRP_FP", "oLRP_FN")


def coco_metrics(
    coco_gt: COCO,
    detections: Sequence[Mapping[str, Any]],
    *,
    iou_types: Sequence[str] = IOU_TYPES,
    img_ids: Sequence[int] | None = None,
    verbose: bool = False,
) -> dict[str, dict[str, float]]:
    """COCO AP and optimal LRP of detections, every number in percent.

    Args:
        coco_gt: the ground truth (its annotations are not modified: pycocotools rewrites the
            annotations it evaluates, so it works on a shallow copy).
        detections: COCO results, one dict per detection with ``image_id``, ``category_id``,
            ``score``, ``bbox`` ``[x, y, w, h]`` (needed for "bbox") and ``segmentation`` (an RLE
            dict ``{"size": [H, W], "counts": str | bytes | list}`` at the image's size, needed
            for "segm"). Not modified. May be empty.
        iou_types: which of "bbox" and "segm" to evaluate.
        img_ids: the images to evaluate (default: every image of ``coco_gt``); ground truths of
            an evaluated image without detections count as misses.
        verbose: let pycocotools print its progress and summary, and print the oLRP lines.

    Returns:
        ``{iou_type: {"AP", "AP50", "AP75", "APs", "APm", "APl", "oLRP", "oLRP_loc", "oLRP_FP",
        "oLRP_FN"}}``, all in percent (0-100). AP keys are pycocotools' ``stats[0:6]``
        times 100; one that COCO cannot define (it prints -1: no ground truth in that area
        range) is NaN. oLRP keys are :func:`~gmaiou.evaluation.lrp.mean_optimal_lrp` of
        :func:`coco_class_lrp` times 100: ``oLRP`` is never NaN (a class without a true
        positive scores 100), ``oLRP_loc`` and ``oLRP_FP`` average over the classes with a
        true positive and are NaN only when no class has one (e.g. no detections at all).
        For "segm" the ``bbox`` field of the detections is dropped before pycocotools reads
        them, so that object sizes (APs/m/l) are mask areas, not box areas (as Detectron2 does).

    Raises:
        ValueError: for a malformed detection (its index and field named), an unknown IoU type,
            an image id not in ``coco_gt``, or no non-crowd ground truth in the evaluated images.
    """
    iou_types = tuple(iou_types)
    unknown = [t for t in iou_types if t not in IOU_TYPES]
    if unknown or not iou_types:
        raise ValueError(f"iou_types must be a non-empty subset of {IOU_TYPES}, got {iou_types}")
    img_ids = _check_img_ids(coco_gt, img_ids)
    validate_detections(coco_gt, detections, iou_types)
    gt_anns = coco_gt.loadAnns(coco_gt.getAnnIds(imgIds=img_ids))
    if any(ann["id"] == 0 for ann in gt_anns):
        # COCOeval writes 0 for "unmatched" in dtMatches, so a match to id 0 would count as a miss.
        raise ValueError("coco_gt has an annotation with id 0; COCO annotation ids must be >= 1")
    if not any(not ann.get("iscrowd", 0) for ann in gt_anns):
        raise ValueError(
            f"the {len(img_ids)} evaluated images hold no non-crowd ground truth: "
            "AP and oLRP are undefined"
        )

    results: dict[str, dict[str, float]] = {}
    for iou_type in iou_types:
        stdout = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
        with stdout:
            evaluator = run_cocoeval(coco_gt, detections, iou_type, img_ids=img_ids)
        metrics = {
            key: (math.nan if value < 0 else 100.0 * float(value))
            for key, value in zip(AP_KEYS, evaluator.stats[: len(AP_KEYS)])
        }
        lrp = mean_optimal_lrp(coco_class_lrp(evaluator).values())
        metrics.update({key: 100.0 * lrp[key] for key in LRP_KEYS})
        if verbose:
            for key in LRP_KEYS:
                print(
                    f" {key:<9} ({iou_type}) @[ IoU=0.50 | area=   all | maxDets=100 ] = "
                    f"{metrics[key]:.2f}"
                )
        results[iou_type] = metrics
    return results


def run_cocoeval(
    coco_gt: COCO,
    detections: Sequence[Mapping[str, Any]],
    iou_type: str,
    *,
    img_ids: Sequence[int] | None = None,
) -> COCOeval:
    """A ``COCOeval`` after ``evaluate()``, ``accumulate()`` and ``summarize()`` (which print).

    Works on copies of ``coco_gt``'s annotations and of the detections, accepts an empty
    detection list (which pycocotools' ``loadRes`` rejects), and for "segm" drops the
    detections' ``bbox`` so that their area is the mask area. Call :func:`validate_detections`
    first; this function assumes valid input.
    """
    if iou_type not in IOU_TYPES:
        raise ValueError(f"iou_type must be one of {IOU_TYPES}, got {iou_type!r}")
    gt = _shallow_copy(coco_gt)
    coco_dt = _load_results(gt, detections, iou_type)
    evaluator = COCOeval(gt, coco_dt, iouType=iou_type)
    if img_ids is not None:
        evaluator.params.imgIds = sorted(img_ids)
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return evaluator


def coco_class_lrp(evaluator: COCOeval, tau: float = LRP_TAU) -> dict[int, ClassLRP]:
    """Optimal LRP of every category that has a non-ignored ground truth in the evaluated images.

    Reads an evaluated ``COCOeval`` (see :func:`run_cocoeval`): per category, over all
    images, the detections that are not ignored at IoU threshold ``tau`` (which must be one of
    ``params.iouThrs``), area range "all" and ``params.maxDets[-1]`` detections per image; a
    detection is a TP when ``dtMatches`` names a ground truth, with the IoU ``ious[img, cat]``
    gives that pair. Categories without a non-ignored ground truth are skipped, as COCO skips
    them for AP.

    Returns:
        ``{category_id: ClassLRP}``.
    """
    p = evaluator.params
    if not evaluator.evalImgs:
        raise ValueError("the COCOeval has not been evaluated: call evaluate() first")
    thr = np.flatnonzero(np.isclose(p.iouThrs, tau))
    if len(thr) != 1:
        raise ValueError(
            f"tau={tau} is not one of the evaluator's IoU thresholds {list(p.iouThrs)}"
        )
    t = int(thr[0])
    area = p.areaRngLbl.index("all")
    num_imgs, num_areas = len(p.imgIds), len(p.areaRng)
    max_det = p.maxDets[-1]

    per_class: dict[int, ClassLRP] = {}
    for k, cat_id in enumerate(p.catIds):
        scores: list[float] = []
        ious: list[float] = []
        is_tp: list[bool] = []
        num_gt = 0
        for i, img_id in enumerate(p.imgIds):
            result = evaluator.evalImgs[k * num_areas * num_imgs + area * num_imgs + i]
            if result is None:
                continue
            num_gt += int(np.count_nonzero(np.asarray(result["gtIgnore"]) == 0))
            pair_iou = None  # built on the first match: without GT or detections there is no matrix
            for dt_id, score, gt_id, ignored in zip(
                result["dtIds"], result["dtScores"], result["dtMatches"][t], result["dtIgnore"][t]
            ):
                if ignored:
                    continue
                scores.append(float(score))
                matched = gt_id > 0  # COCO annotation ids start at 1; 0 means unmatched
                is_tp.append(bool(matched))
                if matched and pair_iou is None:
                    pair_iou = _pair_iou_lookup(evaluator, img_id, cat_id, max_det)
                ious.append(pair_iou(dt_id, int(gt_id)) if matched else 0.0)
        if num_gt == 0:
            continue
        per_class[int(cat_id)] = optimal_lrp(
            np.asarray(scores, dtype=np.float64),
            np.asarray(ious, dtype=np.float64),
            np.asarray(is_tp, dtype=bool),
            num_gt,
            tau,
        )
    return per_class


def validate_detections(
    coco_gt: COCO, detections: Sequence[Mapping[str, Any]], iou_types: Sequence[str] = IOU_TYPES
) -> None:
    """Raise ``ValueError`` naming the first bad detection (its index and field), else return.

    Checks: a list of dicts; ``image_id`` an image of ``coco_gt``; ``category_id`` one of its
    categories; ``score`` a finite number; for "bbox" a ``bbox`` of four finite numbers with
    ``w, h >= 0``; for "segm" a ``segmentation`` RLE dict whose ``size`` is the image's
    ``[height, width]``.
    """
    if isinstance(detections, (str, bytes, Mapping)) or not isinstance(detections, Sequence):
        raise ValueError(
            f"detections must be a list of dicts (COCO results), got {type(detections).__name__}"
        )
    required = ["image_id", "category_id", "score"]
    if "bbox" in iou_types:
        required.append("bbox")
    if "segm" in iou_types:
        required.append("segmentation")
    for index, det in enumerate(detections):
        if not isinstance(det, Mapping):
            raise ValueError(f"detections[{index}] must be a dict, got {type(det).__name__}")
        for field in required:
            if field not in det:
                raise ValueError(
                    f"detections[{index}] has no '{field}' field (needed for {iou_types})"
                )
        image_id = det["image_id"]
        if not _is_int(image_id) or int(image_id) not in coco_gt.imgs:
            raise ValueError(
                f"detections[{index}]['image_id'] = {image_id!r} is not an image of coco_gt"
            )
        category_id = det["category_id"]
        if not _is_int(category_id) or int(category_id) not in coco_gt.cats:
            raise ValueError(
                f"detections[{index}]['category_id'] = {category_id!r} is not a category "
                "of coco_gt "
                f"(known: {sorted(coco_gt.cats)[:10]}{'...' if len(coco_gt.cats) > 10 else ''})"
            )
        score = det["score"]
        if not _is_real(score) or not math.isfinite(float(score)):
            raise ValueError(f"detections[{index}]['score'] = {score!r} must be a finite number")
        if "bbox" in required:
            _check_bbox(det["bbox"], index)
        if "segm" in iou_types:
            image = coco_gt.imgs[int(image_id)]
            _check_rle(det["segmentation"], index, (image["height"], image["width"]))


def _check_img_ids(coco_gt: COCO, img_ids: Sequence[int] | None) -> list[int]:
    if not isinstance(coco_gt, COCO):
        raise ValueError(f"coco_gt must be a pycocotools COCO object, got {type(coco_gt).__name__}")
    if img_ids is None:
        img_ids = coco_gt.getImgIds()
        if not img_ids:
            raise ValueError("coco_gt holds no image to evaluate")
        return sorted(img_ids)
    img_ids = [int(i) for i in img_ids]
    if not img_ids:
        raise ValueError("img_ids is empty: give at least one image to evaluate")
    missing = [i for i in img_ids if i not in coco_gt.imgs]
    if missing:
        raise ValueError(f"img_ids {missing[:10]} are not images of coco_gt")
    return sorted(set(img_ids))


def _check_bbox(bbox: Any, index: int) -> None:
    if (
        isinstance(bbox, (str, bytes))
        or not isinstance(bbox, (Sequence, np.ndarray))
        or len(bbox) != 4
    ):
        raise ValueError(
            f"detections[{index}]['bbox'] must be [x, y, w, h] (4 numbers), got {bbox!r}"
        )
    if not all(_is_real(v) and math.isfinite(float(v)) for v in bbox):
        raise ValueError(f"detections[{index}]['bbox'] = {list(bbox)} must hold 4 finite numbers")
    if bbox[2] < 0 or bbox[3] < 0:
        raise ValueError(
            f"detections[{index}]['bbox'] = {list(bbox)} has a negative width or height; "
            "COCO boxes are [x, y, w, h] with w, h >= 0 (not [x1, y1, x2, y2])"
        )


def _check_rle(segm: Any, index: int, image_size: tuple[int, int]) -> None:
    field = f"detections[{index}]['segmentation']"
    if not isinstance(segm, Mapping) or "size" not in segm or "counts" not in segm:
        raise ValueError(
            f"{field} must be an RLE dict {{'size': [H, W], 'counts': ...}} "
            f"(pycocotools.mask.encode), got {type(segm).__name__}"
        )
    size = segm["size"]
    if (
        isinstance(size, (str, bytes))
        or not isinstance(size, (Sequence, np.ndarray))
        or len(size) != 2
    ):
        raise ValueError(f"{field}['size'] must be [H, W], got {size!r}")
    if (int(size[0]), int(size[1])) != tuple(image_size):
        raise ValueError(
            f"{field}['size'] = {list(size)} differs from the image's [height, width] = "
            f"{list(image_size)}; masks must be at the original image resolution"
        )
    if not isinstance(segm["counts"], (str, bytes, list)):
        raise ValueError(
            f"{field}['counts'] must be str, bytes or a list, got {type(segm['counts']).__name__}"
        )


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, (Real, np.floating, np.integer)) and not isinstance(value, bool)


def _shallow_copy(coco_gt: COCO) -> COCO:
    """A COCO over copies of the annotation dicts: COCOeval rewrites the ones it evaluates."""
    copy = COCO()
    copy.dataset = {
        "images": list(coco_gt.dataset.get("images", [])),
        "categories": list(coco_gt.dataset.get("categories", [])),
        "annotations": [dict(ann) for ann in coco_gt.dataset.get("annotations", [])],
    }
    copy.createIndex()
    return copy


def _load_results(coco_gt: COCO, detections: Sequence[Mapping[str, Any]], iou_type: str) -> COCO:
    """The results as a COCO object, from copies of the detection dicts (loadRes edits them)."""
    anns = []
    for det in detections:
        ann = {key: value for key, value in det.items() if key not in ("bbox", "segmentation")}
        ann["image_id"] = int(det["image_id"])
        ann["category_id"] = int(det["category_id"])
        ann["score"] = float(det["score"])
        if iou_type == "bbox":
            ann["bbox"] = [float(v) for v in det["bbox"]]
        else:  # no bbox, so that loadRes takes the area from the mask
            ann["segmentation"] = _compressed_rle(det["segmentation"])
        anns.append(ann)
    if anns:
        return coco_gt.loadRes(anns)
    # loadRes fails on an empty list; an empty results set evaluates to AP 0 and oLRP 1.
    empty = COCO()
    empty.dataset = {
        "images": list(coco_gt.dataset["images"]),
        "categories": list(coco_gt.dataset["categories"]),
        "annotations": [],
    }
    empty.createIndex()
    return empty


def _compressed_rle(segm: Mapping[str, Any]) -> dict[str, Any]:
    height, width = (int(v) for v in segm["size"])
    if isinstance(segm["counts"], list):  # uncompressed RLE: loadRes only reads compressed RLE
        return mask_utils.frPyObjects(
            {"size": [height, width], "counts": segm["counts"]}, height, width
        )
    return {"size": [height, width], "counts": segm["counts"]}


def _pair_iou_lookup(evaluator: COCOeval, img_id: int, cat_id: int, max_det: int):
    """``(dt_id, gt_id) -> IoU`` from ``evaluator.ious[img_id, cat_id]``.

    That matrix is ``[D, G]``: rows are the image's detections of the class sorted by score
    (stable, as ``computeIoU`` sorts them) and cut to ``max_det``; columns the ground truths in
    their stored order.
    """
    matrix = np.asarray(evaluator.ious[img_id, cat_id])
    dts = evaluator._dts[img_id, cat_id]
    gts = evaluator._gts[img_id, cat_id]
    order = np.argsort([-d["score"] for d in dts], kind="mergesort")[:max_det]
    if matrix.shape != (len(order), len(gts)):
        raise RuntimeError(
            f"COCOeval.ious[{img_id}, {cat_id}] has shape {matrix.shape}, expected "
            f"{(len(order), len(gts))}: this pycocotools orders its IoU matrix differently"
        )
    row = {dts[r]["id"]: n for n, r in enumerate(order)}
    col = {g["id"]: n for n, g in enumerate(gts)}

    def lookup(dt_id: int, gt_id: int) -> float:
        return float(matrix[row[dt_id], col[gt_id]])

    return lookup
