"""Learning-rate schedule: linear warm-up, then step or cosine decay, per iteration.

The schedule is a pure function of the iteration (``LrSchedule.__call__``), wrapped in
torch's :class:`~torch.optim.lr_scheduler.LambdaLR` so that its position is part of the
scheduler's ``state_dict`` and a resumed run continues on the same curve.

Warm-up follows mmdetection's linear rule: the factor grows from ``warmup_ratio`` at
iteration 0 to 1 at ``warmup_iters`` and multiplies the decay factor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR

__all__ = ["LrSchedule", "build_optimizer", "build_scheduler", "steps_to_iterations"]

SCHEDULES = ("step", "cosine")


@dataclass(frozen=True)
class LrSchedule:
    """The factor that multiplies the base learning rate at each iteration.

    Attributes:
        total_iters: iterations of the whole run (cosine reaches ``min_ratio`` there).
        warmup_iters: iterations of linear warm-up (0: none).
        warmup_ratio: factor at iteration 0 of the warm-up, in (0, 1].
        kind: ``"step"`` or ``"cosine"``.
        step_iters: iterations at which a step schedule multiplies the rate by ``gamma``.
        gamma: step decay factor.
        min_ratio: the cosine schedule's final factor.
    """

    total_iters: int
    warmup_iters: int = 0
    warmup_ratio: float = 0.001
    kind: str = "step"
    step_iters: tuple[int, ...] = ()
    gamma: float = 0.1
    min_ratio: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise ValueError(
                f"unknown learning-rate schedule {self.kind!r}; choose one of {SCHEDULES}"
            )
        if self.total_iters < 1:
            raise ValueError(f"total_iters must be >= 1, got {self.total_iters}")
        if self.warmup_iters < 0:
            raise ValueError(f"warmup_iters must be >= 0, got {self.warmup_iters}")
        if not 0.0 < self.warmup_ratio <= 1.0:
            raise ValueError(f"warmup_ratio must lie in (0, 1], got {self.warmup_ratio}")

    def decay(self, iteration: int) -> float:
        """The decay factor alone (no warm-up) after ``iteration`` optimizer steps."""
        if self.kind == "step":
            return self.gamma ** sum(1 for s in self.step_iters if iteration >= s)
        progress = min(max(iteration, 0) / self.total_iters, 1.0)
        return self.min_ratio + 0.5 * (1.0 - self.min_ratio) * (1.0 + math.cos(math.pi * progress))

    def __call__(self, iteration: int) -> float:
        factor = self.decay(iteration)
        if iteration < self.warmup_iters:
            factor *= 1.0 - (1.0 - iteration / self.warmup_iters) * (1.0 - self.warmup_ratio)
        return factor


def steps_to_iterations(step_epochs: Sequence[float], iters_per_epoch: int) -> tuple[int, ...]:
    """Step-decay epochs (e.g. 20, 42, 49, 52) as iteration indices for ``iters_per_epoch``."""
    return tuple(int(round(e * iters_per_epoch)) for e in step_epochs)


def build_scheduler(optimizer: torch.optim.Optimizer, schedule: LrSchedule) -> LambdaLR:
    """A ``LambdaLR`` that sets ``lr = base_lr * schedule(iteration)``; call ``step()`` per iteration."""
    return LambdaLR(optimizer, lr_lambda=schedule)


def build_optimizer(params: list[torch.nn.Parameter], train: Any) -> torch.optim.Optimizer:
    """The optimizer ``train`` (a :class:`~gmaiou.configs.TrainConfig`) names, over ``params``.

    ``sgd``: SGD with momentum (the paper's); ``adamw``: AdamW with PyTorch's default betas.
    Both decay every parameter by ``weight_decay``, as the reference configs do.
    """
    if train.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=train.lr, momentum=train.momentum, weight_decay=train.weight_decay
        )
    if train.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=train.lr, weight_decay=train.weight_decay)
    raise ValueError(f"unknown optimizer {train.optimizer!r}; choose sgd or adamw")
