"""The device a command runs on, from its ``--device`` option."""

from __future__ import annotations

import torch

__all__ = ["resolve_device"]


def resolve_device(name: str | None, local_rank: int = 0) -> torch.device:
    """``None``/``"auto"``: CUDA where available, else CPU; ``"cuda"`` picks ``cuda:LOCAL_RANK``.

    A CUDA device asked for on a machine without one is a clear error, not a silent CPU run.
    """
    if name is None or name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"unknown device {name!r} ({err}); use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {name!r} was asked for but CUDA is not available on this machine"
            )
        if device.index is None:
            device = torch.device("cuda", local_rank)
        if device.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {device} does not exist; this machine has {torch.cuda.device_count()} GPUs"
            )
    return device
