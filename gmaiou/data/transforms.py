"""YOLACT's training augmentation and the test-time resize, on tensors, for image, boxes and masks.

The training pipeline follows YOLACT's ``SSDAugmentation`` (and mmdet's YOLACT config):

1. photometric distortion (random brightness, contrast before or after saturation and
   hue), on the image only, before anything is padded so that padding keeps the mean colour;
2. expand: with probability 1/2, place the image at a random spot of a canvas 1-4 times
   its size filled with the mean colour;
3. min-IoU random crop (SSD, as mmdet's ``MinIoURandomCrop``): a mode is drawn from
   {no crop, 0.1, 0.3, 0.5, 0.7, 0.9, any}; a patch of 0.3-1 of each side with aspect
   ratio in [0.5, 2] whose IoU with every ground-truth box reaches the mode and that
   holds at least one box centre; instances whose box centre falls outside are removed;
4. horizontal flip with probability 1/2;
5. square resize to ``S x S`` without keeping the aspect ratio (bilinear image, nearest masks);
6. normalisation with YOLACT's ImageNet mean and std (RGB).

Expand and crop are applied as one window (the crop of the expanded canvas, mapped
back onto the original image), which gives the same result without building the canvas.

Every step keeps each box the tight box of its mask up to rounding: boxes that a crop
cuts are recomputed from the cropped masks, instances whose mask leaves the crop are
removed, and the resize takes the tight boxes of the resized masks (so ``M ⊆ B``). Items with no instance (``G = 0``) pass through every step.

Randomness comes from a ``torch.Generator`` passed to the call (the global torch
generator when none is given: DataLoader workers seed it from the loader's seed),
so augmentation is reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torchvision.transforms.v2.functional as TF
from torch import Tensor
from torchvision.ops import box_iou

from gmaiou.data.coco import Item

__all__ = [
    "IMAGE_MEAN",
    "IMAGE_STD",
    "TestTransform",
    "TrainTransform",
    "Window",
    "crop_window",
    "denormalize",
    "distort_photometric",
    "hflip",
    "mask_tight_boxes",
    "normalize",
    "resize",
    "sample_expand",
    "sample_min_iou_crop",
    "sample_scale_window",
]

#: YOLACT's ImageNet statistics (its ``MEANS``/``STD`` in RGB order), for images in [0, 1].
IMAGE_MEAN: tuple[float, float, float] = (123.68 / 255, 116.78 / 255, 103.94 / 255)
IMAGE_STD: tuple[float, float, float] = (58.40 / 255, 57.12 / 255, 57.38 / 255)


@dataclass(frozen=True)
class Window:
    """A rectangle ``[top, top + height) x [left, left + width)`` in image pixels; may exceed the image."""

    top: int
    left: int
    height: int
    width: int


# ----------------------------------------------------------------------------- random draws


def _uniform(generator: torch.Generator | None, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def _coin(generator: torch.Generator | None) -> bool:
    return bool(torch.rand((), generator=generator) < 0.5)


# ----------------------------------------------------------------------------- helpers


def mask_tight_boxes(masks: Tensor) -> Tensor:
    """Tight ``(x1, y1, x2, y2)`` pixel-edge boxes of ``[G, H, W]`` masks, float32 ``[G, 4]``.

    ``x2``/``y2`` are one past the last mask column/row (pixel ``c`` covers ``[c, c + 1)``);
    an empty mask gives a zero box.
    """
    g, h, w = masks.shape
    if g == 0:
        return torch.zeros(0, 4, dtype=torch.float32, device=masks.device)
    rows = masks.any(dim=2)  # [G, H]
    cols = masks.any(dim=1)  # [G, W]
    nonempty = rows.any(dim=1)
    y1 = rows.to(torch.uint8).argmax(dim=1)
    y2 = h - rows.flip(1).to(torch.uint8).argmax(dim=1)
    x1 = cols.to(torch.uint8).argmax(dim=1)
    x2 = w - cols.flip(1).to(torch.uint8).argmax(dim=1)
    boxes = torch.stack([x1, y1, x2, y2], dim=1).float()
    return boxes * nonempty[:, None]


def _check_item(item: Item) -> None:
    missing = [k for k in ("image", "boxes", "labels", "masks", "crowd_boxes") if k not in item]
    if missing:
        raise ValueError(f"item is missing key(s) {', '.join(missing)}")
    image, boxes, masks = item["image"], item["boxes"], item["masks"]
    if image.dim() != 3 or image.shape[0] != 3 or not image.is_floating_point():
        raise ValueError(
            f"item['image'] must be a float [3, H, W] tensor, got {image.dtype} {list(image.shape)}"
        )
    g = boxes.shape[0]
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"item['boxes'] must have shape [G, 4], got {list(boxes.shape)}")
    if tuple(masks.shape) != (g, *image.shape[1:]):
        raise ValueError(
            f"item['masks'] must have shape [{g}, {image.shape[1]}, {image.shape[2]}] "
            f"(one mask per box, at image size), got {list(masks.shape)}"
        )
    if item["labels"].shape != (g,):
        raise ValueError(f"item['labels'] must have shape [{g}], got {list(item['labels'].shape)}")


# ----------------------------------------------------------------------------- the steps


def distort_photometric(
    image: Tensor, generator: torch.Generator | None = None, channel_swap: bool = False
) -> Tensor:
    """YOLACT's photometric distortion of a float ``[3, H, W]`` image in [0, 1]; returns a new image.

    Each with probability 1/2: brightness shift in ±32/255; contrast scale in [0.5, 1.5]
    (before the colour steps or, with probability 1/2, after them); saturation factor in
    [0.5, 1.5]; hue shift in ±18°. Saturation and hue use torchvision's kernels; values
    are clipped to [0, 1] before them (they need it) and at the end. ``channel_swap``:
    last, with probability 1/2, a random permutation of the channels (mmdetection's
    ``PhotoMetricDistortion``; the draws happen only when it is on).
    """
    if _coin(generator):
        image = image + _uniform(generator, -32.0, 32.0) / 255.0
    contrast_first = _coin(generator)
    if contrast_first and _coin(generator):
        image = image * _uniform(generator, 0.5, 1.5)
    image = image.clamp(0.0, 1.0)
    if _coin(generator):
        image = TF.adjust_saturation(image, _uniform(generator, 0.5, 1.5))
    if _coin(generator):
        image = TF.adjust_hue(image, _uniform(generator, -18.0, 18.0) / 360.0)
    if not contrast_first and _coin(generator):
        image = (image * _uniform(generator, 0.5, 1.5)).clamp(0.0, 1.0)
    if channel_swap and _coin(generator):
        image = image[torch.randperm(3, generator=generator, device="cpu").to(image.device)]
    return image


def sample_expand(
    height: int,
    width: int,
    generator: torch.Generator | None = None,
    ratio_range: tuple[float, float] = (1.0, 4.0),
    prob: float = 0.5,
) -> Window | None:
    """YOLACT's expand: with probability ``prob`` a canvas ``ratio`` times the image, ``ratio`` in ``ratio_range``.

    Returns the canvas as a window in image coordinates (``top``/``left`` are minus the
    image's offset on the canvas), or ``None`` for no expansion.
    """
    if float(torch.rand((), generator=generator)) >= prob:
        return None
    ratio = _uniform(generator, *ratio_range)
    off_x = int(_uniform(generator, 0.0, width * ratio - width))
    off_y = int(_uniform(generator, 0.0, height * ratio - height))
    return Window(-off_y, -off_x, int(height * ratio), int(width * ratio))


def sample_scale_window(
    height: int,
    width: int,
    generator: torch.Generator | None = None,
    scale_range: tuple[float, float] = (0.75, 1.25),
) -> Window:
    """Mild scale jitter: the window that shows the image zoomed by ``s``, log-uniform in ``scale_range``.

    ``s > 1`` zooms in (a window ``1/s`` of each side, placed at random inside the image);
    ``s < 1`` zooms out (a window ``1/s`` times each side, the image placed at random in
    it, the rest filled by :func:`crop_window`). After the square resize, objects appear
    ``s`` times their size. Unlike YOLACT's expand (up to 4x) and min-IoU crop, objects
    stay within a factor ``scale_range`` of their size, which suits small images.
    """
    low, high = scale_range
    if not 0.0 < low <= high:
        raise ValueError(f"scale_range must satisfy 0 < low <= high, got {scale_range}")
    u = torch.rand(3, generator=generator, dtype=torch.float64)
    scale = math.exp(math.log(low) + (math.log(high) - math.log(low)) * float(u[0]))
    out_h, out_w = max(1, round(height / scale)), max(1, round(width / scale))
    # Zoom in: the window lies inside the image; zoom out: the image inside the window.
    top = (
        int(float(u[1]) * (height - out_h))
        if out_h <= height
        else -int(float(u[1]) * (out_h - height))
    )
    left = (
        int(float(u[2]) * (width - out_w))
        if out_w <= width
        else -int(float(u[2]) * (out_w - width))
    )
    return Window(top, left, out_h, out_w)


def sample_min_iou_crop(
    boxes: Tensor,
    height: int,
    width: int,
    generator: torch.Generator | None = None,
    min_ious: Sequence[float] = (0.1, 0.3, 0.5, 0.7, 0.9),
    min_crop_size: float = 0.3,
    trials: int = 50,
    max_rounds: int = 50,
) -> Window | None:
    """SSD's min-IoU random crop of an ``height x width`` image with ``[G, 4]`` boxes; ``None`` for no crop.

    A mode is drawn from ``(no crop, *min_ious, any)``; then ``trials`` patches are drawn
    for it (sides in ``[min_crop_size, 1]`` of the image's, height/width in [0.5, 2]), and
    the first whose IoU with every box reaches the mode and that holds at least one box
    centre strictly inside is taken. Without boxes, the first patch of valid shape is
    taken. After ``max_rounds`` modes without a patch, no crop.
    """
    modes = (1.0, *min_ious, 0.0)
    boxes = boxes.float()
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    for _ in range(max_rounds):
        mode = modes[int(torch.randint(len(modes), (), generator=generator))]
        if mode >= 1.0:
            return None
        # All trials at once; the first valid one is the one a sequential loop would keep.
        u = torch.rand(4, trials, generator=generator, dtype=torch.float64)
        new_w = (min_crop_size + (1.0 - min_crop_size) * u[0]) * width
        new_h = (min_crop_size + (1.0 - min_crop_size) * u[1]) * height
        left = u[2] * (width - new_w)
        top = u[3] * (height - new_h)
        patch = torch.stack(
            [left, top, left + new_w, top + new_h], dim=1
        ).floor()  # int() of positives
        aspect = new_h / new_w
        valid = (
            (aspect >= 0.5)
            & (aspect <= 2.0)
            & (patch[:, 2] > patch[:, 0])
            & (patch[:, 3] > patch[:, 1])
        )
        if boxes.shape[0]:
            patch32 = patch.float()
            valid &= box_iou(patch32, boxes).min(dim=1).values >= mode
            inside = (
                (cx[None] > patch32[:, 0:1])
                & (cx[None] < patch32[:, 2:3])
                & (cy[None] > patch32[:, 1:2])
                & (cy[None] < patch32[:, 3:4])
            )
            valid &= inside.any(dim=1)
        hits = valid.nonzero()
        if hits.numel():
            x1, y1, x2, y2 = (int(v) for v in patch[int(hits[0, 0])])
            return Window(y1, x1, y2 - y1, x2 - x1)
    return None


def crop_window(
    item: Item, window: Window, fill: Sequence[float] = IMAGE_MEAN, drop_by_centre: bool = True
) -> Item:
    """Cut ``window`` out of the item; parts outside the image are ``fill`` (image) and 0 (masks).

    This is both YOLACT's expand (a window larger than the image) and its crop.
    With ``drop_by_centre`` the instances whose box centre is not strictly inside the
    window are removed (SSD's rule); instances left with an empty mask are removed too.
    Boxes the window cuts become the tight boxes of their cropped masks; crowd boxes
    are clipped to the window and dropped when nothing is left.
    """
    _check_item(item)
    image, boxes, masks = item["image"], item["boxes"], item["masks"]
    _, h, w = image.shape
    top, left, out_h, out_w = window.top, window.left, window.height, window.width
    if out_h <= 0 or out_w <= 0:
        raise ValueError(f"window {window} has no area")
    if (top, left, out_h, out_w) == (0, 0, h, w):
        return dict(item)
    y0, y1 = max(top, 0), min(top + out_h, h)
    x0, x1 = max(left, 0), min(left + out_w, w)
    src = (slice(y0, y1), slice(x0, x1))
    dst = (slice(y0 - top, y1 - top), slice(x0 - left, x1 - left))
    has_overlap = y1 > y0 and x1 > x0

    if drop_by_centre and boxes.shape[0]:
        cx = (boxes[:, 0] + boxes[:, 2]) / 2
        cy = (boxes[:, 1] + boxes[:, 3]) / 2
        inside = (cx > left) & (cx < left + out_w) & (cy > top) & (cy < top + out_h)
        boxes, masks, labels = boxes[inside], masks[inside], item["labels"][inside]
    else:
        labels = item["labels"]

    new_image = torch.empty(3, out_h, out_w, dtype=image.dtype, device=image.device)
    new_image[:] = torch.tensor(fill, dtype=image.dtype, device=image.device)[:, None, None]
    new_masks = torch.zeros(masks.shape[0], out_h, out_w, dtype=torch.bool, device=masks.device)
    if has_overlap:
        new_image[:, dst[0], dst[1]] = image[:, src[0], src[1]]
        new_masks[:, dst[0], dst[1]] = masks[:, src[0], src[1]]

    shift = torch.tensor([left, top, left, top], dtype=boxes.dtype, device=boxes.device)
    new_boxes = boxes - shift
    cut = (
        (new_boxes[:, 0] < 0)
        | (new_boxes[:, 1] < 0)
        | (new_boxes[:, 2] > out_w)
        | (new_boxes[:, 3] > out_h)
    )
    if bool(cut.any()):
        new_boxes[cut] = mask_tight_boxes(new_masks[cut])
    keep = new_masks.flatten(1).any(dim=1)
    crowd = item["crowd_boxes"] - shift
    crowd[:, 0::2] = crowd[:, 0::2].clamp(0, out_w)
    crowd[:, 1::2] = crowd[:, 1::2].clamp(0, out_h)
    crowd = crowd[(crowd[:, 2] > crowd[:, 0]) & (crowd[:, 3] > crowd[:, 1])]
    return {
        **item,
        "image": new_image,
        "boxes": new_boxes[keep],
        "labels": labels[keep],
        "masks": new_masks[keep],
        "crowd_boxes": crowd,
    }


def _flip_boxes(boxes: Tensor, width: int) -> Tensor:
    return torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1)


def hflip(item: Item) -> Item:
    """Mirror the item left-right."""
    _check_item(item)
    width = item["image"].shape[-1]
    return {
        **item,
        "image": item["image"].flip(-1),
        "masks": item["masks"].flip(-1),
        "boxes": _flip_boxes(item["boxes"], width),
        "crowd_boxes": _flip_boxes(item["crowd_boxes"], width),
    }


def resize(item: Item, size: int, antialias: bool = True) -> Item:
    """Resize to ``size x size`` without keeping the aspect ratio: bilinear image, nearest masks.

    ``antialias=False`` is plain bilinear interpolation of the image, as YOLACT (OpenCV)
    and mmdetection (mmcv) resize; ``True`` low-pass filters it when shrinking.

    Each box becomes the tight box of its resized mask, so that the mask stays inside
    its box (``M ⊆ B``, which GmaIoU assumes): sampling can drop the thin tip of a
    shape, which a scaled box would still reach. A box whose mask the resize empties
    is scaled (the dataset then drops the instance). Crowd boxes are scaled.
    """
    _check_item(item)
    image, masks = item["image"], item["masks"]
    _, h, w = image.shape
    if (h, w) == (size, size):
        return dict(item)
    scale = torch.tensor([size / w, size / h, size / w, size / h], dtype=torch.float32)
    boxes = item["boxes"] * scale.to(item["boxes"].device)
    if masks.shape[0]:
        new_masks = TF.resize_mask(masks.view(torch.uint8), [size, size]).bool()
        tight = mask_tight_boxes(new_masks)
        nonempty = tight[:, 2] > tight[:, 0]
        boxes = torch.where(nonempty[:, None], tight, boxes)
    else:
        new_masks = masks.new_zeros(0, size, size)
    return {
        **item,
        "image": TF.resize_image(image, [size, size], antialias=antialias),
        "masks": new_masks,
        "boxes": boxes,
        "crowd_boxes": item["crowd_boxes"] * scale.to(item["crowd_boxes"].device),
    }


def normalize(
    image: Tensor, mean: Sequence[float] = IMAGE_MEAN, std: Sequence[float] = IMAGE_STD
) -> Tensor:
    """``(image - mean) / std`` per channel for a float ``[3, H, W]`` image in [0, 1]."""
    return TF.normalize_image(image, list(mean), list(std))


def denormalize(
    image: Tensor, mean: Sequence[float] = IMAGE_MEAN, std: Sequence[float] = IMAGE_STD
) -> Tensor:
    """Undo :func:`normalize` (for display): a ``[3, H, W]`` image back in [0, 1]."""
    m = torch.tensor(mean, dtype=image.dtype, device=image.device)[:, None, None]
    s = torch.tensor(std, dtype=image.dtype, device=image.device)[:, None, None]
    return (image * s + m).clamp(0.0, 1.0)


# ----------------------------------------------------------------------------- pipelines


class TrainTransform:
    """YOLACT's training augmentation to ``size x size`` (see the module docstring).

    Args:
        size: output side ``S``.
        photometric, expand, crop, flip: switch each random step on or off.
        scale_range: mild scale jitter (see :func:`sample_scale_window`) after the expand
            and crop, ``None`` for none (YOLACT has none; the CPU recipe uses it instead of
            expand and crop, which leave the objects of small images too small to learn).
        expand_ratio: range of the expand canvas side relative to the image.
        min_ious: IoU modes of the min-IoU crop (besides "no crop" and "any").
        min_crop_size: smallest crop side relative to the (expanded) image.
        mean, std: normalisation (also the expand fill, ``mean``).
        channel_swap: the photometric step's random channel permutation (mmdetection).
        antialias: antialiased image resize (``False``: plain bilinear, as the references).

    Call with ``(item, generator=None)``; returns a new item with a normalised
    ``[3, S, S]`` image and masks ``[G, S, S]``.
    """

    def __init__(
        self,
        size: int,
        photometric: bool = True,
        expand: bool = True,
        crop: bool = True,
        flip: bool = True,
        scale_range: tuple[float, float] | None = None,
        expand_ratio: tuple[float, float] = (1.0, 4.0),
        min_ious: Sequence[float] = (0.1, 0.3, 0.5, 0.7, 0.9),
        min_crop_size: float = 0.3,
        mean: Sequence[float] = IMAGE_MEAN,
        std: Sequence[float] = IMAGE_STD,
        channel_swap: bool = False,
        antialias: bool = True,
    ) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be a positive integer, got {size!r}")
        self.channel_swap, self.antialias = channel_swap, antialias
        if not 1.0 <= expand_ratio[0] <= expand_ratio[1]:
            raise ValueError(f"expand_ratio must satisfy 1 <= low <= high, got {expand_ratio}")
        if not 0.0 < min_crop_size <= 1.0:
            raise ValueError(f"min_crop_size must be in (0, 1], got {min_crop_size}")
        self.size = size
        if scale_range is not None and not 0.0 < scale_range[0] <= scale_range[1]:
            raise ValueError(f"scale_range must satisfy 0 < low <= high, got {scale_range}")
        self.photometric, self.expand, self.crop, self.flip = photometric, expand, crop, flip
        self.scale_range = None if scale_range is None else tuple(scale_range)
        self.expand_ratio = tuple(expand_ratio)
        self.min_ious = tuple(min_ious)
        self.min_crop_size = min_crop_size
        self.mean, self.std = tuple(mean), tuple(std)

    def __repr__(self) -> str:
        steps = [n for n in ("photometric", "expand", "crop", "flip") if getattr(self, n)]
        if self.scale_range is not None:
            steps.insert(
                len(steps) - self.flip, f"scale{self.scale_range[0]:g}-{self.scale_range[1]:g}"
            )
        return f"TrainTransform(size={self.size}, steps={'+'.join(steps) or 'none'})"

    def __call__(self, item: Item, generator: torch.Generator | None = None) -> Item:
        _check_item(item)
        item = dict(item)
        if self.photometric:
            item["image"] = distort_photometric(item["image"], generator, self.channel_swap)
        _, h, w = item["image"].shape
        canvas = sample_expand(h, w, generator, self.expand_ratio) if self.expand else None
        canvas = canvas or Window(0, 0, h, w)
        patch = None
        if self.crop:
            offset = torch.tensor([canvas.left, canvas.top] * 2, dtype=item["boxes"].dtype)
            patch = sample_min_iou_crop(
                item["boxes"] - offset,
                canvas.height,
                canvas.width,
                generator,
                self.min_ious,
                self.min_crop_size,
            )
        if patch is not None:  # the crop of the canvas, in image coordinates
            window = Window(
                canvas.top + patch.top, canvas.left + patch.left, patch.height, patch.width
            )
            item = crop_window(item, window, self.mean, drop_by_centre=True)
        elif canvas != Window(0, 0, h, w):
            item = crop_window(item, canvas, self.mean, drop_by_centre=False)
        if self.scale_range is not None:
            _, h, w = item["image"].shape
            window = sample_scale_window(h, w, generator, self.scale_range)
            item = crop_window(item, window, self.mean, drop_by_centre=False)
        if self.flip and _coin(generator):
            item = hflip(item)
        item = resize(item, self.size, self.antialias)
        item["image"] = normalize(item["image"], self.mean, self.std)
        return item


class TestTransform:
    """Test-time transform: resize to ``size x size`` (aspect ratio not kept) and normalise."""

    __test__ = False  # not a pytest test class, despite its name

    def __init__(
        self,
        size: int,
        mean: Sequence[float] = IMAGE_MEAN,
        std: Sequence[float] = IMAGE_STD,
        antialias: bool = True,
    ) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be a positive integer, got {size!r}")
        self.size, self.antialias = size, antialias
        self.mean, self.std = tuple(mean), tuple(std)

    def __repr__(self) -> str:
        return f"TestTransform(size={self.size})"

    def __call__(self, item: Item, generator: torch.Generator | None = None) -> Item:
        item = resize(item, self.size, self.antialias)
        item["image"] = normalize(item["image"], self.mean, self.std)
        return item
