"""Model outputs to COCO results (the list of dicts pycocotools and :func:`coco_metrics` read).

A COCO result is ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}`` plus, for
instance segmentation, ``"segmentation": {"size": [H, W], "counts": str}`` (compressed RLE from
``pycocotools.mask.encode``, its bytes decoded to ASCII so that the list is JSON-ready).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pycocotools.mask as mask_utils
import torch
from torch import Tensor

from gmaiou._validation import check_boxes, check_masks

__all__ = ["detections_to_coco", "load_results", "save_results"]


def detections_to_coco(
    image_id: int,
    boxes: Tensor,
    scores: Tensor,
    labels: Tensor,
    masks: Tensor | None,
    cat_ids: Sequence[int],
) -> list[dict[str, Any]]:
    """One image's detections as COCO results.

    Args:
        image_id: the COCO image id.
        boxes: ``[N, 4]`` ``(x1, y1, x2, y2)`` in pixels of the original image.
        scores: ``[N]`` confidences.
        labels: ``[N]`` contiguous class indices in ``[0, len(cat_ids))``.
        masks: ``[N, H, W]`` bool (or 0/1 integer) masks at the original image size, or
            ``None`` for box-only results (then no ``segmentation`` field).
        cat_ids: the COCO category id of each contiguous label.

    Returns:
        ``N`` dicts with plain Python numbers (JSON-serialisable), in the input order.
        Any device is accepted; the tensors are copied to the CPU.
    """
    if isinstance(image_id, bool) or not isinstance(image_id, (int, np.integer)):
        raise TypeError(f"image_id must be an int, got {type(image_id).__name__}")
    boxes = check_boxes(boxes, "boxes")
    num = boxes.shape[0]
    for name, value in (("scores", scores), ("labels", labels)):
        if not isinstance(value, Tensor):
            raise TypeError(
                f"{name} must be a torch.Tensor of shape [N], got {type(value).__name__}"
            )
        if value.shape != (num,):
            raise ValueError(
                f"{name} must have shape [{num}] (one per box), got {list(value.shape)}"
            )
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise TypeError(f"labels must be an integer tensor, got {labels.dtype}")
    if num and not bool(torch.isfinite(scores).all()):
        raise ValueError("scores must be finite")
    cat_ids = [int(c) for c in cat_ids]
    if num and (int(labels.min()) < 0 or int(labels.max()) >= len(cat_ids)):
        raise ValueError(
            f"labels must lie in [0, {len(cat_ids)}) (one per entry of cat_ids); "
            f"got values in [{int(labels.min())}, {int(labels.max())}]"
        )
    rles: list[dict[str, Any]] | None = None
    if masks is not None:
        masks = check_masks(masks, num, "masks")
        rles = _encode(masks)

    xyxy = boxes.detach().to("cpu", torch.float64).tolist()
    score_list = scores.detach().to("cpu", torch.float64).tolist()
    label_list = labels.detach().cpu().tolist()
    results = []
    for n in range(num):
        x1, y1, x2, y2 = xyxy[n]
        result: dict[str, Any] = {
            "image_id": int(image_id),
            "category_id": cat_ids[label_list[n]],
            "bbox": [x1, y1, x2 - x1, y2 - y1],
            "score": score_list[n],
        }
        if rles is not None:
            result["segmentation"] = rles[n]
        results.append(result)
    return results


def save_results(
    path: str | Path, detections: Sequence[dict[str, Any]], *, overwrite: bool = False
) -> Path:
    """Write COCO results to a JSON file; returns the path.

    Raises ``FileExistsError`` when ``path`` exists and ``overwrite`` is false. Parent folders
    are created. RLE ``counts`` given as bytes are written as ASCII text; NumPy scalars as numbers.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w") as f:
        json.dump(list(detections), f, default=_json_default, allow_nan=False)
    tmp.replace(path)
    return path


def load_results(path: str | Path) -> list[dict[str, Any]]:
    """Read COCO results written by :func:`save_results` (or any COCO results JSON)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no results file at {path}")
    with path.open() as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
        raise ValueError(f"{path} must hold a JSON list of detection objects (COCO results)")
    return data


def _encode(masks: Tensor) -> list[dict[str, Any]]:
    """Compressed RLEs of ``[N, H, W]`` bool masks, counts as ASCII text."""
    if masks.shape[0] == 0:
        return []
    array = np.asfortranarray(masks.detach().cpu().numpy().astype(np.uint8).transpose(1, 2, 0))
    rles = mask_utils.encode(array)
    return [
        {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}
        for rle in rles
    ]


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("ascii")
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        if not math.isfinite(float(value)):
            raise ValueError(f"cannot write the non-finite number {value} to a results file")
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write a {type(value).__name__} to a results file")
