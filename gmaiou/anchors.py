"""Anchor grids for YOLACT (fixed-IoU assignment) and ATSS, for any square image size.

Feature maps P3-P7 of a ResNet + FPN have sides ``ceil(S / 2^k)`` for ``k = 3..7``
(every stride-2 convolution with padding rounds up): 69, 35, 18, 9, 5 at 550.
By default anchor centres sit at the centres of the feature-map cells,
``(j + 0.5) * S / f``; the paper presets follow the maIoU code instead (mmdetection's
AnchorGenerator): YOLACT anchors keep the 550 strides ``550 / f_550`` and sides at every
image size (``reference_size=550``), ATSS anchors sit at ``j * 2^k`` (``offset=0``,
``strides="exact"``).
Within a level, anchors are ordered row-major over the cells and then by shape, the
layout a head's ``[B, A_loc * C, f, f]`` output has after
``permute(0, 2, 3, 1).reshape(B, -1, C)``.

* YOLACT: 3 anchors per cell (aspect ratios h/w of 0.5, 1, 2, area preserved),
  side ``24 * 2^(k-3) * S / 550`` (YOLACT scales its anchors with the image: 24 ... 384
  at 550). 19,248 anchors at 550.
* ATSS: 1 square anchor per cell of side ``4 * stride`` (stride ``2^k``: 32 ... 512), or
  several scales per octave, ``4 * 2^(i / n) * stride`` (GmaYOLACT: 4 and 4·√2).
  6,416 anchors at 550.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["AnchorGrid", "atss_anchors", "feature_map_sizes", "grid_anchors", "yolact_anchors"]

#: Pyramid levels P3-P7 used by YOLACT and ATSS.
LEVELS: tuple[int, ...] = (3, 4, 5, 6, 7)


@dataclass(frozen=True)
class AnchorGrid:
    """Anchors of all pyramid levels of one image size.

    Attributes:
        anchors: ``[A, 4]`` boxes ``(x1, y1, x2, y2)`` in pixels, level after level.
        num_level_anchors: anchors per level; they sum to ``A``.
        feature_sizes: side of each level's square feature map.
        anchors_per_location: anchors per feature-map cell.
        image_size: the square image side ``S``.
    """

    anchors: Tensor
    num_level_anchors: tuple[int, ...]
    feature_sizes: tuple[int, ...]
    anchors_per_location: int
    image_size: int

    def __len__(self) -> int:
        return int(self.anchors.shape[0])

    def to(self, device: torch.device | str) -> AnchorGrid:
        """The same grid with its anchors on ``device``."""
        return AnchorGrid(
            self.anchors.to(device),
            self.num_level_anchors,
            self.feature_sizes,
            self.anchors_per_location,
            self.image_size,
        )


def _check_image_size(image_size: int) -> int:
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 32:
        raise ValueError(f"image_size must be an integer of at least 32 pixels, got {image_size!r}")
    return image_size


def feature_map_sizes(image_size: int, levels: Sequence[int] = LEVELS) -> tuple[int, ...]:
    """Sides of the square feature maps at ``levels`` (stride ``2^level``): ``ceil`` halving."""
    _check_image_size(image_size)
    sizes = []
    for level in levels:
        side = image_size
        for _ in range(level):
            side = -(-side // 2)
        sizes.append(side)
    return tuple(sizes)


def grid_anchors(
    image_size: int,
    shapes_per_level: Sequence[Sequence[tuple[float, float]]],
    levels: Sequence[int] = LEVELS,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    steps: Sequence[float] | None = None,
    offset: float = 0.5,
) -> AnchorGrid:
    """Anchors with the given ``(width, height)`` shapes at every cell of every level.

    Args:
        image_size: square image side ``S``.
        shapes_per_level: for each level, the ``(w, h)`` of the anchors at one cell
            (the same count at every level).
        levels: pyramid levels; the feature map of level ``k`` has side ``ceil(S / 2^k)``.
        steps: distance between neighbouring centres per level (default ``S / f``).
        offset: centres at ``(j + offset) * step`` for cell ``j``.
    """
    sizes = feature_map_sizes(image_size, levels)
    if len(shapes_per_level) != len(sizes):
        raise ValueError(
            f"got anchor shapes for {len(shapes_per_level)} levels but {len(sizes)} levels"
        )
    if steps is None:
        steps = [image_size / side for side in sizes]
    if len(steps) != len(sizes):
        raise ValueError(f"got {len(steps)} steps for {len(sizes)} levels")
    per_loc = {len(s) for s in shapes_per_level}
    if len(per_loc) != 1 or 0 in per_loc:
        raise ValueError("every level needs the same, non-zero number of anchor shapes")
    all_anchors, counts = [], []
    for side, step, shapes in zip(sizes, steps, shapes_per_level):
        centres = (torch.arange(side, dtype=torch.float64) + offset) * step
        cy, cx = torch.meshgrid(centres, centres, indexing="ij")
        wh = torch.tensor(shapes, dtype=torch.float64)  # [n, 2]
        ctr = torch.stack([cx, cy], -1).reshape(-1, 1, 2)  # [f*f, 1, 2]
        boxes = torch.cat([ctr - wh / 2, ctr + wh / 2], dim=-1).reshape(-1, 4)
        all_anchors.append(boxes)
        counts.append(boxes.shape[0])
    anchors = torch.cat(all_anchors).to(device=device, dtype=dtype)
    return AnchorGrid(anchors, tuple(counts), sizes, per_loc.pop(), image_size)


def yolact_anchors(
    image_size: int = 550,
    ratios: Sequence[float] = (0.5, 1.0, 2.0),
    base_size: float = 24.0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    reference_size: int | None = None,
) -> AnchorGrid:
    """YOLACT's anchors for fixed-IoU assignment: ``len(ratios)`` per cell.

    Args:
        image_size: square image side; the sides scale with it (24 ... 384 at 550).
        ratios: aspect ratios ``h / w``; each anchor keeps the area of its level's square.
        base_size: side of the level-3 square anchor at 550 pixels.
        reference_size: ``None`` (sides and strides scale with the image, as dbolya/yolact)
            or the size whose sides and strides ``reference_size / f_ref`` are kept at every
            image size (550 in the maIoU configs: 24 ... 384 at 400 and 700 too).
    """
    _check_image_size(image_size)
    if not ratios or any(r <= 0 for r in ratios):
        raise ValueError(f"ratios must be positive, got {tuple(ratios)}")
    steps = None
    scale_to = image_size
    if reference_size is not None:
        _check_image_size(reference_size)
        steps = [reference_size / f for f in feature_map_sizes(reference_size)]
        scale_to = reference_size
    shapes = []
    for k in range(len(LEVELS)):
        side = base_size * 2**k * scale_to / 550.0
        shapes.append([(side / math.sqrt(r), side * math.sqrt(r)) for r in ratios])
    return grid_anchors(image_size, shapes, device=device, dtype=dtype, steps=steps)


def atss_anchors(
    image_size: int = 550,
    scales_per_octave: int = 1,
    octave_base_scale: float = 4.0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    offset: float = 0.5,
    strides: str = "image",
) -> AnchorGrid:
    """Square ATSS anchors: ``scales_per_octave`` per cell, sides ``octave_base_scale * 2^(i/n) * stride``.

    With the defaults, one anchor of side ``4 * stride`` (32 ... 512); GmaYOLACT uses
    ``scales_per_octave=2`` (4 and 4·√2 times the stride). Centres at
    ``(j + offset) * step`` with step ``S / f`` (``strides="image"``) or ``2^k``
    (``strides="exact"``; with ``offset=0``, mmdetection's AnchorGenerator).
    """
    if strides not in ("image", "exact"):
        raise ValueError(f"strides must be 'image' or 'exact', got {strides!r}")
    _check_image_size(image_size)
    if scales_per_octave < 1:
        raise ValueError(f"scales_per_octave must be >= 1, got {scales_per_octave}")
    shapes = []
    for level in LEVELS:
        stride = 2**level
        sides = [
            octave_base_scale * 2 ** (i / scales_per_octave) * stride
            for i in range(scales_per_octave)
        ]
        shapes.append([(s, s) for s in sides])
    steps = [float(2**level) for level in LEVELS] if strides == "exact" else None
    return grid_anchors(image_size, shapes, device=device, dtype=dtype, steps=steps, offset=offset)
