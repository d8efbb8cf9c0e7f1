"""Mask pixel counts and extents on the CPU (OpenCV, NumPy): ``|M|`` in one read of the masks
(``docs/spec.md`` section 1.5) and the crops that Alg. 1's tables span."""

from __future__ import annotations

import cv2
import numpy as np
import torch


def _count_pixels(mask: np.ndarray) -> int:
    """Pixels set in one ``[H, W]`` bool mask whose rows are contiguous.

    OpenCV's count is faster than ``np.count_nonzero``; reading every mask once is the
    floor of an exact raw-mask path, so this is its cost.
    """
    if mask.size < 2**31:  # OpenCV counts in an int
        return cv2.countNonZero(mask.view(np.uint8))
    return int(np.count_nonzero(mask))


#: Words per group in :func:`_count_bytes_torch`: a group's sum holds at most 255 in each byte.
_WORDS_PER_GROUP = 255


#: Masks of fewer bytes are counted on one thread: below this, a second thread's start costs
#: more than it reads.
_PARALLEL_COUNT_MIN_BYTES = 2**18


def _count_all(masks: np.ndarray) -> int:
    """Pixels set in all of ``masks [G, H, W]`` (C-contiguous bool): one streaming read.

    With more than one torch thread, torch's threads read bool masks
    (:func:`_count_bytes_torch`); one core's reads do not saturate the memory bus.
    Other dtypes (a byte may be any non-zero value) and read-only arrays (which torch
    would warn about wrapping) are counted by OpenCV.
    """
    g, h, w = masks.shape
    parallel = masks.dtype == np.bool_ and masks.flags.writeable and torch.get_num_threads() > 1
    if parallel and masks.size >= _PARALLEL_COUNT_MIN_BYTES:
        return _count_bytes_torch(masks.reshape(-1))
    return _count_pixels(masks.reshape(g * h, w))


def _count_bytes_torch(flat: np.ndarray) -> int:
    """The number of ``True`` in a 1-D bool array, on torch's threads.

    torch has no fast parallel count of bytes, but it sums int64 words in parallel at
    the speed of memory. A bool byte is 0 or 1 (as NumPy and torch store them), so each
    byte of a sum of 255 words is at most 255 and carries nothing into the next byte: the
    sum of the bytes of those group sums is the count. The bytes past the last whole
    group are counted by OpenCV.
    """
    step = 8 * _WORDS_PER_GROUP
    n = flat.size // step
    tail = flat[n * step :]
    count = _count_pixels(tail[None]) if tail.size else 0
    if n:
        words = torch.from_numpy(flat[: n * step].view(np.uint8)).view(torch.int64)
        sums = words.view(n, _WORDS_PER_GROUP).sum(dim=1)
        count += int(sums.numpy().view(np.uint8).sum())  # a few bytes: NumPy's fixed cost is lower
    return count


def _crop_areas(masks: np.ndarray, held: np.ndarray, total: int) -> tuple[np.ndarray, list[int]]:
    """The masks' pixel counts ``[G]`` and the masks whose crops missed some of their pixels.

    ``held [G]`` are the crops' totals (each table's last corner) and ``total`` the count
    of all the masks' pixels (:func:`_count_all`). No crop holds more than its mask, so
    they add up to ``total`` exactly when every crop holds its whole mask: the crops'
    totals are then the areas. Otherwise each mask is counted.
    """
    if int(held.sum()) == total:
        return held, []
    area = np.array([_count_pixels(m) for m in masks], dtype=np.int64)
    return area, np.flatnonzero(area != held).tolist()


def _hint_crops(
    boxes: np.ndarray, h: int, w: int, margin: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Box hints rounded outwards, grown by ``margin`` pixels and clamped: ``(origin, size)``, ``[G, 2]`` int64 (row, column).

    The margin catches the masks that stick out of their box by a rounding pixel
    (resized COCO annotations often do), so that fewer crops fall back to a full scan.
    """
    c = np.empty((boxes.shape[0], 4), dtype=np.float64)  # y1, x1, y2, x2
    np.floor(boxes[:, 1::-1], out=c[:, :2])
    np.ceil(boxes[:, :1:-1], out=c[:, 2:])
    c += (-margin, -margin, margin, margin)
    # ufuncs, not np.clip, whose Python wrapper costs more than the clamping here
    np.maximum(c, 0, out=c)
    np.minimum(c, (h, w, h, w), out=c)
    np.maximum(c[:, 2:], c[:, :2], out=c[:, 2:])  # boxes here are hints, not checked
    c = c.astype(np.int64)
    return c[:, :2], c[:, 2:] - c[:, :2]


def _crops_numpy(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per mask: the tight extent's origin ``(r0, c0)`` and size ``(h, w)`` (0 if empty), and its pixel count."""
    g = masks.shape[0]
    origin = np.zeros((g, 2), dtype=np.int64)
    size = np.zeros((g, 2), dtype=np.int64)
    area = np.zeros(g, dtype=np.int64)
    for i in range(g):
        m = masks[i]
        area[i] = _count_pixels(m)
        if area[i] == 0:
            continue
        rows = np.flatnonzero(m.any(axis=1))
        r0, r1 = rows[0], rows[-1] + 1
        cols = np.flatnonzero(m[r0:r1].any(axis=0))
        origin[i] = r0, cols[0]
        size[i] = r1 - r0, cols[-1] + 1 - cols[0]
    return origin, size, area
