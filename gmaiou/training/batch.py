"""The global batch: each of ``N`` processes takes ``batch_size / N`` images, and a batch
other than the one the learning rate was set for scales the rate linearly.

``TrainConfig.batch_size`` is the global batch of an optimizer step (the paper presets:
the reference runs' 32 = 4 GPUs x 8, or 8 for GmaYOLACT's single-GPU training), and
``TrainConfig.lr`` is the rate for ``TrainConfig.lr_batch`` images (the preset's batch;
``gmaiou train --batch-size`` changes the batch but not ``lr_batch``). So ``torchrun``
with any ``N`` that divides the batch reproduces the reference optimisation, and the
warm-up, counted in iterations of the global batch, stays that of the reference run.
"""

from __future__ import annotations

import dataclasses
import sys

from gmaiou.configs import TrainConfig

__all__ = ["batch_message", "per_process_train", "scaled_lr", "split_batch"]


def split_batch(global_batch: int, world_size: int) -> int:
    """Images per process: ``global_batch / world_size``; an error when it does not divide."""
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    if global_batch % world_size:
        raise ValueError(
            f"the global batch ({global_batch}) is not divisible by the {world_size} processes; "
            f"choose --batch-size as a multiple of {world_size} or another --nproc_per_node"
        )
    return global_batch // world_size


def scaled_lr(lr: float, lr_batch: int, global_batch: int) -> float:
    """The linear scaling rule (Goyal et al., 2017): ``lr x global_batch / lr_batch``."""
    return lr * global_batch / lr_batch


def batch_message(train: TrainConfig, world_size: int) -> str | None:
    """One line announcing a rescaled learning rate (``None`` when the batch is ``lr_batch``)."""
    if train.batch_size == train.lr_batch:
        return None
    lr = scaled_lr(train.lr, train.lr_batch, train.batch_size)
    return (
        f"global batch {train.batch_size} ({world_size} x {split_batch(train.batch_size, world_size)}) "
        f"instead of {train.lr_batch}: learning rate scaled linearly from {train.lr:g} to {lr:g}"
    )


def per_process_train(train: TrainConfig, world_size: int, announce: bool = False) -> TrainConfig:
    """The settings one of ``world_size`` processes runs with: ``batch_size`` per process and
    the learning rate of the global batch; ``announce`` prints :func:`batch_message` to stderr."""
    per_process = split_batch(train.batch_size, world_size)
    message = batch_message(train, world_size)
    if announce and message:
        print(f"gmaiou train: {message}", file=sys.stderr, flush=True)
    return dataclasses.replace(
        train,
        batch_size=per_process,
        lr=scaled_lr(train.lr, train.lr_batch, train.batch_size),
        lr_batch=per_process,
    )
