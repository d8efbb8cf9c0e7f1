"""Input checks shared by the measures and the assigners.

Every public entry point validates its tensors here so that a wrong shape or a
reversed box fails with a message that names the argument, not with a NaN or an
index error deep inside a kernel.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

#: Float dtypes that CPU fast paths hand to NumPy (NumPy has no bfloat16).
NUMPY_FLOATS = (torch.float32, torch.float64)
#: Half-precision dtypes, which the measures and assigners compute in float32.
HALF_FLOATS = (torch.float16, torch.bfloat16)


def widened(boxes: Tensor) -> Tensor:
    """``boxes`` in float32 if half precision, else ``boxes`` itself.

    float16 overflows past 65,504: the area of a 256-pixel square, a mask's pixel count,
    a squared centre distance. bfloat16 keeps 8 bits, so a count of 300,001 pixels reads
    299,008. Values computed in float32 are then rounded once, to the caller's dtype.
    """
    return boxes.float() if boxes.dtype in HALF_FLOATS else boxes


def check_boxes(boxes: Tensor, name: str) -> Tensor:
    """Check an ``[N, 4]`` tensor of ``(x1, y1, x2, y2)`` boxes; return it as floating point.

    Raises ``TypeError`` for a non-tensor and ``ValueError`` for a wrong shape,
    a non-finite coordinate or a box with ``x2 < x1`` or ``y2 < y1``.
    """
    if not isinstance(boxes, Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor of shape [N, 4], got {type(boxes).__name__}"
        )
    if boxes.dim() != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"{name} must have shape [N, 4] (x1, y1, x2, y2), got {list(boxes.shape)}")
    if not boxes.is_floating_point():
        boxes = boxes.float()
    if boxes.numel() == 0:
        return boxes
    if boxes.device.type == "cpu" and boxes.dtype in NUMPY_FLOATS:
        # NumPy's checks take a tenth of torch's on a CPU anchor set (~100 us at 10k boxes).
        a = boxes.detach().numpy()
        if np.isfinite(a).all() and not ((a[:, 2] < a[:, 0]) | (a[:, 3] < a[:, 1])).any():
            return boxes
    if not bool(torch.isfinite(boxes).all()):
        bad = int((~torch.isfinite(boxes)).any(dim=1).nonzero()[0, 0])
        raise ValueError(f"{name}[{bad}] has a non-finite coordinate: {boxes[bad].tolist()}")
    reversed_ = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    if bool(reversed_.any()):
        bad = int(reversed_.nonzero()[0, 0])
        raise ValueError(
            f"{name}[{bad}] = {boxes[bad].tolist()} has x2 < x1 or y2 < y1; "
            "boxes must be (x1, y1, x2, y2) with x1 <= x2 and y1 <= y2"
        )
    return boxes


def check_masks(masks: Tensor, num_boxes: int, name: str = "gt_masks") -> Tensor:
    """Check a ``[G, H, W]`` stack of binary masks matching ``num_boxes`` boxes; return it as bool."""
    if not isinstance(masks, Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor of shape [G, H, W], got {type(masks).__name__}"
        )
    if masks.dim() != 3:
        raise ValueError(f"{name} must have shape [G, H, W], got {list(masks.shape)}")
    if masks.shape[0] != num_boxes:
        raise ValueError(
            f"{name} holds {masks.shape[0]} masks but there are {num_boxes} boxes; "
            "give exactly one mask per ground-truth box"
        )
    if masks.dtype == torch.bool:
        return masks
    if masks.is_floating_point() or masks.is_complex():
        raise TypeError(f"{name} must be bool or uint8 (binary masks), got {masks.dtype}")
    if masks.numel() and bool(((masks != 0) & (masks != 1)).any()):
        raise ValueError(f"{name} must be binary (0 or 1); found other values")
    return masks.bool()


def check_same_device(**tensors: Tensor) -> torch.device:
    """Return the common device of the named tensors, or raise naming the odd one out."""
    devices = {name: t.device for name, t in tensors.items() if t is not None}
    first_name, first = next(iter(devices.items()))
    for name, dev in devices.items():
        if dev != first:
            raise ValueError(
                f"{name} is on {dev} but {first_name} is on {first}; move them to one device"
            )
    return first
