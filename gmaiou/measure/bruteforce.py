"""The brute-force reference for the tests: GmaIoU (``docs/spec.md`` section 1.4) by counting the mask
pixels under every anchor, one pair at a time, under the same discretization."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from gmaiou.anchors import AnchorGrid
from gmaiou.measure.integrals import MaskIntegrals
from gmaiou.measure.mask_aware import Polygon, _check_measure_inputs
from gmaiou.measure.torch_tables import _rounded_pixel_bounds


def gmaiou_bruteforce(
    gt_boxes: Tensor,
    gt_masks: Tensor,
    anchors: Tensor | AnchorGrid,
    polygon: Polygon = "mask",
) -> Tensor:
    """Reference GmaIoU: counts the mask pixels under every anchor one pair at a time.

    O(G * A * anchor area); same signature and result as :func:`~gmaiou.measure.gmaiou`, which
    the tests compare against this. Runs on the CPU and returns on the inputs' device.
    """
    if isinstance(gt_masks, MaskIntegrals):
        raise TypeError("gmaiou_bruteforce needs the masks themselves, not MaskIntegrals")
    gt_boxes, gt_masks, anchors = _check_measure_inputs(gt_boxes, gt_masks, anchors, polygon)
    device = anchors.device
    g, h, w = gt_masks.shape
    masks = gt_masks.cpu().numpy()
    boxes_np = gt_boxes.detach().cpu().double().numpy()
    anchors_np = anchors.detach().cpu().double().numpy()
    bounds = _rounded_pixel_bounds(anchors.detach().cpu().double(), h, w).numpy()
    out = np.zeros((g, anchors_np.shape[0]), dtype=np.float64)
    a_area = (anchors_np[:, 2] - anchors_np[:, 0]) * (anchors_np[:, 3] - anchors_np[:, 1])
    for i in range(g):
        m = masks[i]
        mask_pixels = int(m.sum())
        if mask_pixels == 0:
            continue
        bx1, by1, bx2, by2 = boxes_np[i]
        b_area = (bx2 - bx1) * (by2 - by1)
        for j, (c1, r1, c2, r2) in enumerate(bounds):
            inter = int(m[r1:r2, c1:c2].sum())
            if inter == 0:
                continue
            if polygon == "mask":
                den = a_area[j] + mask_pixels - inter
                out[i, j] = inter / den
            else:
                ax1, ay1, ax2, ay2 = anchors_np[j]
                iw = max(0.0, min(ax2, bx2) - max(ax1, bx1))
                ih = max(0.0, min(ay2, by2) - max(ay1, by1))
                union = a_area[j] + b_area - iw * ih
                out[i, j] = inter * b_area / (mask_pixels * union) if union > 0 else 0.0
    return torch.from_numpy(out).to(device=device, dtype=anchors.dtype)
