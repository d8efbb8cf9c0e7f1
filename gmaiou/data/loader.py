"""Batching instance-segmentation items and seeded DataLoaders.

A batch is a dict: ``images`` float ``[B, 3, S, S]``; per-image lists ``boxes``
(``[G_i, 4]``), ``labels`` (``[G_i]``), ``masks`` (``[G_i, S, S]``), ``crowd_boxes``
(``[K_i, 4]``); ``image_ids`` (``list[int]``); and ``mask_integrals``: per image the
GmaIoU summed-area tables (:class:`gmaiou.measure.MaskIntegrals`, built in the
worker so that the training step only looks them up), or ``None``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from gmaiou.data.coco import Item
from gmaiou.measure import MaskIntegrals

__all__ = ["collate_instances", "make_loader"]


def collate_instances(batch: Sequence[Item], build_integrals: bool = False) -> dict:
    """Stack the images of ``batch`` and list its per-image targets (see the module docstring).

    Args:
        batch: items of equal image size (use a transform that resizes to ``S x S``).
        build_integrals: also build each image's :class:`MaskIntegrals` (``mask_integrals``).

    Raises:
        ValueError: for an empty batch or images of different sizes.
    """
    if len(batch) == 0:
        raise ValueError("cannot collate an empty batch")
    shapes = {tuple(item["image"].shape) for item in batch}
    if len(shapes) != 1:
        raise ValueError(
            f"images in a batch must have one size, got {sorted(shapes)}; "
            "give the dataset a transform that resizes to S x S (TrainTransform or TestTransform)"
        )
    integrals = None
    if build_integrals:
        integrals = [MaskIntegrals(item["masks"], item["boxes"]).build() for item in batch]
    return {
        "images": torch.stack([item["image"] for item in batch]),
        "boxes": [item["boxes"] for item in batch],
        "labels": [item["labels"] for item in batch],
        "masks": [item["masks"] for item in batch],
        "crowd_boxes": [item["crowd_boxes"] for item in batch],
        "image_ids": [int(item["image_id"]) for item in batch],
        "mask_integrals": integrals,
    }


def make_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    num_workers: int,
    build_integrals: bool = False,
    sampler: Sampler | None = None,
    seed: int = 0,
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader of :func:`collate_instances` batches, reproducible given ``seed``.

    Shuffling uses a generator seeded with ``seed``; each worker's torch generator
    (which the random transforms draw from) is seeded from it too, so the same seed,
    batch size and worker count give the same batches and augmentations. With
    ``num_workers=0`` the transforms draw from the main process's global generator
    (seed it with ``torch.manual_seed``).

    Args:
        dataset: e.g. :class:`gmaiou.data.CocoInstances` with a resizing transform.
        batch_size: images per batch.
        shuffle: reshuffle every epoch (not together with ``sampler``).
        num_workers: loader processes (0: load in the main process).
        build_integrals: workers also build the GmaIoU summed-area tables.
        sampler: custom sampler (e.g. distributed); excludes ``shuffle``.
        seed: seed of the shuffling and of the workers' generators.
        drop_last: drop the last incomplete batch.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"num_workers must be a non-negative integer, got {num_workers!r}")
    if sampler is not None and shuffle:
        raise ValueError(
            "give either shuffle=True or a sampler, not both (the sampler decides the order)"
        )
    generator = torch.Generator()
    generator.manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle if sampler is None else False,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=functools.partial(collate_instances, build_integrals=build_integrals),
        generator=generator,
        drop_last=drop_last,
        persistent_workers=num_workers > 0,
        pin_memory=torch.cuda.is_available(),
    )
