"""Single-process and DDP plumbing: device choice, process group, a resumable sampler.

``torchrun --nproc_per_node N -m gmaiou train ...`` sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; :func:`init_distributed` reads them and joins a process group (``gloo``
on the CPU, ``nccl`` on CUDA). Without them the same code runs as one process, world
size 1. Each process loads its own shard of every epoch, so the effective batch is the
per-process batch times the world size.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sized
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import Tensor
from torch.utils.data import DistributedSampler

from gmaiou.devices import resolve_device

__all__ = [
    "DistContext",
    "ResumableSampler",
    "all_reduce_mean",
    "any_process",
    "barrier",
    "init_distributed",
    "resolve_device",
    "shutdown_distributed",
]


@dataclass(frozen=True)
class DistContext:
    """Where this process runs and who it is.

    Attributes:
        rank: global rank (0 writes files, logs and checkpoints).
        world_size: number of processes.
        local_rank: rank on this machine (selects the CUDA device).
        device: this process's device.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device_name: str | None = None) -> DistContext:
    """Read the torchrun environment, join the process group if ``WORLD_SIZE > 1``, pick the device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    if world_size > 1:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def shutdown_distributed() -> None:
    """Leave the process group, where one was joined."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    """Wait for every process (a no-op for one process)."""
    if ctx.is_distributed:
        dist.barrier()


def all_reduce_mean(values: Tensor, ctx: DistContext) -> Tensor:
    """The mean of ``values`` over processes (a copy; ``values`` itself is left alone)."""
    out = values.detach().clone()
    if ctx.is_distributed:
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        out /= ctx.world_size
    return out


def any_process(flag: bool, ctx: DistContext) -> bool:
    """Whether ``flag`` is true in any process (so that all stop at the same iteration)."""
    if not ctx.is_distributed:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


class ResumableSampler(DistributedSampler):
    """torch's ``DistributedSampler`` (one permutation per epoch, seeded by ``seed + epoch``,
    sharded by rank) that can start part-way through an epoch.

    ``set_epoch(epoch, start)`` skips the first ``start`` samples of this rank's shard, so
    a run resumed after ``k`` batches of an epoch sees the remaining batches in the same
    order as the uninterrupted run. Works for one process too (``num_replicas=1``).
    """

    def __init__(
        self,
        dataset: Sized,
        num_replicas: int = 1,
        rank: int = 0,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        super().__init__(
            dataset,
            num_replicas=num_replicas,
            rank=rank,
            shuffle=shuffle,
            seed=seed,
            drop_last=drop_last,
        )
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:  # type: ignore[override]
        if start < 0 or start > self.num_samples:
            raise ValueError(f"start must lie in [0, {self.num_samples}], got {start}")
        super().set_epoch(epoch)
        self.start = start

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        return iter(indices[self.start :])

    def __len__(self) -> int:
        return self.num_samples - self.start
