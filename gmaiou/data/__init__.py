"""Data: COCO-format instance datasets, the synthetic dataset, YOLACT's augmentation, loaders.

* :class:`CocoInstances` / :func:`find_split`: any COCO ``instances`` file (real COCO,
  ``coco-sample``, the synthetic set) as a torch ``Dataset`` of item dicts.
* :mod:`gmaiou.data.synthetic`: :func:`ensure_synthetic` / :func:`generate`, the embedded
  default dataset.
* :mod:`gmaiou.data.transforms`: :class:`TrainTransform`, :class:`TestTransform`.
* :mod:`gmaiou.data.loader`: :func:`collate_instances`, :func:`make_loader`.
"""

from gmaiou.data.coco import CocoInstances, find_split, read_image
from gmaiou.data.loader import collate_instances, make_loader
from gmaiou.data.synthetic import ensure_synthetic, generate
from gmaiou.data.transforms import TestTransform, TrainTransform

__all__ = [
    "CocoInstances",
    "TestTransform",
    "TrainTransform",
    "collate_instances",
    "ensure_synthetic",
    "find_split",
    "generate",
    "make_loader",
    "read_image",
]
