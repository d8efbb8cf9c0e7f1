"""Evaluate a model on a dataset split: predictions at the network's square input size,
mapped back to each image's original size, scored with pycocotools (AP) and oLRP.

``evaluate_model`` works on any model with ``predict(images)``; ``evaluate_run`` rebuilds
a trained model from a run directory (``config.json`` + ``checkpoint.pt``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

__all__ = ["evaluate_model", "evaluate_run", "load_run"]


@torch.no_grad()
def evaluate_model(
    model: nn.Module,
    dataset: Any,
    device: torch.device | str,
    batch_size: int = 8,
    num_workers: int = 0,
    progress: bool = True,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Predict on every image of ``dataset`` and score the predictions against its annotations.

    Args:
        model: a :class:`gmaiou.models.YOLACT`; its eval-mode forward runs once per batch and
            :func:`gmaiou.models.postprocess` once per image, at that image's original size
            (the test transform resizes to a square without keeping the aspect ratio).
        dataset: a :class:`gmaiou.data.CocoInstances` built with the test transform
            (it supplies ``coco`` for the ground truth and ``cat_ids`` for the category ids).
        device: where the model runs.

    Returns:
        the detections in COCO results format and ``{"bbox": {...}, "segm": {...}}`` metrics.
    """
    from gmaiou.data.loader import make_loader
    from gmaiou.evaluation.coco import coco_metrics
    from gmaiou.evaluation.results import detections_to_coco
    from gmaiou.models import postprocess

    device = torch.device(device)
    was_training = model.training
    model.eval()
    loader = make_loader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    detections: list[dict[str, Any]] = []
    try:
        for batch in tqdm(loader, desc="evaluate", disable=not progress, dynamic_ncols=True):
            images = batch["images"].to(device)
            outputs = model(images)
            for b, image_id in enumerate(batch["image_ids"]):
                info = dataset.coco.imgs[int(image_id)]
                one = {k: v[b : b + 1] for k, v in outputs.items()}
                pred = postprocess(
                    one,
                    model.anchor_boxes,
                    model.config.postprocess,
                    model.image_size,
                    (info["height"], info["width"]),
                )[0]
                detections.extend(
                    detections_to_coco(
                        int(image_id),
                        pred["boxes"].cpu(),
                        pred["scores"].float().cpu(),
                        pred["labels"].cpu(),
                        pred["masks"].cpu(),
                        dataset.cat_ids,
                    )
                )
    finally:
        model.train(was_training)
    metrics = coco_metrics(dataset.coco, detections)
    return detections, metrics


def load_run(
    run_dir: str | os.PathLike, device: torch.device | str = "cpu"
) -> tuple[nn.Module, Any, dict]:
    """The trained model of a run directory, its config and the ``config.json`` record.

    Raises:
        FileNotFoundError: ``run_dir``, its ``config.json`` or its ``checkpoint.pt`` is missing.
    """
    from gmaiou.configs import Config
    from gmaiou.models import build_model
    from gmaiou.runs import CHECKPOINT_FILE, CONFIG_FILE, load_checkpoint, read_record

    run_dir = Path(run_dir)
    record = read_record(run_dir)
    if "config" not in record:
        raise ValueError(
            f"{run_dir / CONFIG_FILE} holds no resolved config; cannot rebuild the model"
        )
    config = Config.from_dict(record["config"])
    ckpt = load_checkpoint(run_dir / CHECKPOINT_FILE, map_location="cpu")
    model = build_model(config)
    model.load_state_dict(ckpt["model"])
    return model.to(device), config, record


def evaluate_run(
    run_dir: str | os.PathLike,
    data_root: str | os.PathLike | None = None,
    split: str = "val",
    device: torch.device | str = "cpu",
    batch_size: int = 8,
    num_workers: int = 0,
    progress: bool = True,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Reload a run's model and evaluate it on ``split`` of ``data_root`` (default: the run's data)."""
    from gmaiou.data import CocoInstances, find_split
    from gmaiou.data.transforms import TestTransform
    from gmaiou.runs import resolve_data_root

    model, config, record = load_run(run_dir, device)
    root = resolve_data_root(data_root if data_root is not None else record["data_root"])
    image_dir, ann_file = find_split(root, split)
    dataset = CocoInstances(
        image_dir,
        ann_file,
        transform=TestTransform(config.model.image_size, antialias=config.model.resize_antialias),
    )
    if list(dataset.cat_ids) != list(record["cat_ids"]):
        raise ValueError(
            f"the categories of {root} ({len(dataset.cat_ids)}) differ from those the run was trained on "
            f"({len(record['cat_ids'])}); evaluate on a dataset with the same categories"
        )
    return evaluate_model(model, dataset, device, batch_size, num_workers, progress)
