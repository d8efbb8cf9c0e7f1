"""What a checkpoint holds for a resume: the random-number-generator states and the
optimizer, scheduler and grad-scaler states.

A checkpoint is one ``torch.save`` dict (model, optimizer, scheduler, grad scaler,
RNG states, counters), written atomically by :func:`gmaiou.runs.save_checkpoint` (also
importable from here): a crash or Ctrl-C while writing never leaves a truncated
``checkpoint.pt``, the previous one stays until the new one is complete.

RNG states are stored as tensors and plain Python values so that the file loads with
``torch.load(weights_only=True)`` (no pickled code).
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gmaiou.runs import load_checkpoint, save_checkpoint

__all__ = [
    "TRAINING_STATE_KEYS",
    "capture_rng_state",
    "drop_training_state",
    "has_training_state",
    "load_checkpoint",
    "restore_rng_state",
    "save_checkpoint",
]

# What only a resume needs: AdamW's two moments make two thirds of a CPU preset's checkpoint.
TRAINING_STATE_KEYS = ("optimizer", "scheduler", "scaler")


def capture_rng_state() -> dict[str, Any]:
    """The states of Python's, NumPy's and torch's global generators (CUDA's when present)."""
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "python": {"version": py_version, "internal": list(py_internal), "gauss": py_gauss},
        "numpy": {
            "kind": str(np_kind),
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "gauss": float(np_gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Set the global generators to a state from :func:`capture_rng_state`."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss"]))
    npy = state["numpy"]
    keys = npy["keys"].numpy().astype(np.uint32)
    np.random.set_state((npy["kind"], keys, npy["pos"], npy["has_gauss"], npy["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


def has_training_state(state: dict[str, Any]) -> bool:
    """Whether a loaded checkpoint can resume training (it keeps optimizer, scheduler and scaler)."""
    return all(state.get(key) is not None for key in TRAINING_STATE_KEYS)


def drop_training_state(path: str | os.PathLike) -> int:
    """Rewrite a finished run's checkpoint with its weights only; returns the bytes saved.

    The optimizer, scheduler and grad-scaler states are set to ``None`` (the keys stay, so
    a resume can tell why it cannot go on); weights, counters and RNG states are kept, so
    evaluation, export and the speed and loss analyses load it as before. Written atomically
    like :func:`save_checkpoint`; a checkpoint already without them is left untouched.
    """
    path = Path(path)
    state = load_checkpoint(path)
    if not any(state.get(key) is not None for key in TRAINING_STATE_KEYS):
        return 0
    before = path.stat().st_size
    save_checkpoint(path, {**state, **dict.fromkeys(TRAINING_STATE_KEYS)})
    return before - path.stat().st_size
