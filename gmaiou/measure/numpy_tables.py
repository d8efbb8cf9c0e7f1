"""Alg. 1 on the CPU: summed-area tables of mask crops by OpenCV, and their look-ups in NumPy
(``docs/spec.md`` section 1.6, Algorithm 1), for prepared tables and for raw masks."""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import Tensor

from gmaiou.measure.pixel_counts import (
    _count_all,
    _crop_areas,
    _crops_numpy,
    _hint_crops,
)

#: Tables of images or crops with fewer pixels are int32 (OpenCV's CV_32S); larger ones are wider
#: (int64 for the stored tables, float64 from OpenCV, exact below 2**53).
_INT32_PIXELS = 2**31


def _table_dtype(h: int, w: int) -> type:
    return np.int32 if h * w < _INT32_PIXELS else np.int64


def _cv_depth(dtype: np.dtype) -> int:
    """OpenCV's depth for a table of ``dtype``: int32, or float64 (exact below 2**53)."""
    return cv2.CV_32S if dtype == np.int32 else cv2.CV_64F


def _integral(pixels: np.ndarray, out: np.ndarray, depth: int) -> np.ndarray:
    """OpenCV's summed-area table of a ``[hh, ww]`` uint8 crop, written into ``out [hh + 1, ww + 1]``
    (row 0 and column 0 zero) of OpenCV's ``depth`` (:func:`_cv_depth` of its dtype)."""
    if cv2.integral(pixels, out, depth) is not out:
        # OpenCV reallocates a mismatched destination instead of failing
        raise RuntimeError(f"OpenCV did not write the {list(out.shape)} table in place")
    return out


def _fill_table(t: np.ndarray, crop: np.ndarray) -> None:
    """Write the transposed summed-area table ``t [ww + 1, hh + 1]`` of ``crop [hh, ww]`` (row 0, column 0: 0)."""
    if t.dtype == np.int32:
        # The table of the transposed crop is the transposed table: transposing the crop's
        # bytes costs a quarter of transposing the table's int32 entries.
        _integral(cv2.transpose(crop.view(np.uint8)), t, cv2.CV_32S)
        return
    hh, ww = crop.shape  # int64 tables: OpenCV writes float64 (exact below 2**53), copied in
    out = np.empty((hh + 1, ww + 1), dtype=np.float64)
    t[:] = _integral(crop.view(np.uint8), out, cv2.CV_64F).T


def _fill_tables(
    table: np.ndarray,
    masks: np.ndarray,
    index: list[int],
    origin: np.ndarray,
    size: np.ndarray,
    offset: np.ndarray,
) -> None:
    """Write the transposed tables of masks ``index`` (their crops ``origin``, ``size``) at ``offset``."""
    for i in index:
        (r0, c0), (hh, ww) = origin[i].tolist(), size[i].tolist()
        t = table[offset[i] : offset[i] + (hh + 1) * (ww + 1)].reshape(ww + 1, hh + 1)
        if hh == 0 or ww == 0:
            t[:] = 0
        else:
            _fill_table(t, masks[i, r0 : r0 + hh, c0 : c0 + ww])


def _build_tables_numpy(
    masks: np.ndarray, boxes: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """All masks' tables in one flat buffer: ``(table, origin [G, 2], size [G, 2], offset [G], area [G])``.

    With box hints, the tables of the hint crops, then one count of all the masks'
    pixels: no crop holds more than its mask, so the crops' totals (each table's
    last corner) add up to it exactly when every crop holds its whole mask. If they
    do not, each mask is counted, and those whose crops missed pixels get tables of
    their own extents, appended to the buffer.
    """
    masks = np.ascontiguousarray(masks)  # OpenCV reads rows
    g, h, w = masks.shape
    dtype = _table_dtype(h, w)
    if boxes is None:
        origin, size, area = _crops_numpy(masks)
    else:
        origin, size = _hint_crops(boxes, h, w)
    numel = (size[:, 0] + 1) * (size[:, 1] + 1)
    offset = np.cumsum(numel) - numel
    # One streaming read of all the masks first: their crops are then read from the cache.
    total = None if boxes is None else _count_all(masks)
    # np.empty: every table is written below (zeroed pages would cost a fault each).
    table = np.empty(int(numel.sum()), dtype=dtype)
    _fill_tables(table, masks, list(range(g)), origin, size, offset)
    if boxes is None:
        return table, origin, size, offset, area
    area, missed = _crop_areas(masks, table[offset + numel - 1].astype(np.int64), total)
    if not missed:
        return table, origin, size, offset, area
    origin[missed], size[missed], _ = _crops_numpy(masks[missed])
    numel = (size[missed, 0] + 1) * (size[missed, 1] + 1)
    offset[missed] = table.size + np.cumsum(numel) - numel
    table = np.concatenate([table, np.empty(int(numel.sum()), dtype=dtype)])
    _fill_tables(table, masks, missed, origin, size, offset)
    return table, origin, size, offset, area


def _rounded_pixel_bounds_numpy(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """:func:`~gmaiou.measure.torch_tables._rounded_pixel_bounds` of ``[4, N]`` box columns,
    as ``[4, N]`` int32 (or int64) rows.

    The rows the NumPy look-ups index directly: going through the torch version's int64
    ``[N, 4]`` costs a transposing copy, ~45 us per image at 10k anchors.
    """
    r = np.rint(boxes)  # half to even, as torch.round
    np.maximum(r, 0, out=r)
    np.minimum(r[0::2], width, out=r[0::2])
    np.minimum(r[1::2], height, out=r[1::2])
    return r.astype(np.int32 if max(height, width) < 2**30 else np.int64)


def _hits_numpy(
    origin: np.ndarray, size: np.ndarray, area: np.ndarray, bounds: np.ndarray, extent: int
) -> tuple[np.ndarray, np.ndarray]:
    """Flat positions ``g * N + n``, in increasing order, of the (mask, box) pairs where box
    ``n``'s pixel bounds (``bounds [4, N]``: c1, r1, c2, r2) meet non-empty mask ``g``'s crop,
    and how many pairs each mask has, ``[G]``.

    ``extent`` bounds every coordinate (the image's larger side: bounds are clamped to it).
    """
    dtype = np.int16 if extent < 2**15 else np.int64
    b = np.ascontiguousarray(bounds, dtype=dtype)  # [4, N]
    lo = origin.astype(dtype)
    hi = lo + size.astype(dtype)
    empty = area == 0
    lo[empty], hi[empty] = 2**15 - 1 if dtype is np.int16 else 2**62, -1  # meets no box
    hit = b[0][None] < hi[:, 1:2]
    hit &= b[2][None] > lo[:, 1:2]
    hit &= b[1][None] < hi[:, 0:1]
    hit &= b[3][None] > lo[:, 0:1]
    return np.flatnonzero(hit), np.count_nonzero(hit, axis=1)


def _pair_counts_numpy(
    table: np.ndarray, pair_params: np.ndarray, bounds: np.ndarray
) -> np.ndarray:
    """Mask pixels of ``P`` (mask, box) pairs inside integer pixel bounds: ``[P]`` int64.

    ``bounds`` is ``[4, P]`` (rows c1, r1, c2, r2; overwritten) and ``pair_params`` each
    pair's mask's ``[5, P]`` rows r0, c0, h, w, offset (overwritten), of one integer dtype.
    Same arithmetic as the torch look-ups (:func:`~gmaiou.measure.torch_tables._frame_counts`),
    on stacked NumPy rows: a dozen operations whose fixed cost is a microsecond each, not
    torch's ten.
    """
    r0, c0, hh, ww, base = pair_params  # [P] each
    xs, ys = bounds[0::2], bounds[1::2]  # [2, P] each: (c1, c2), (r1, r2)
    xs -= c0  # crop-local, clamped to the crop
    ys -= r0
    np.maximum(bounds, 0, out=bounds)
    np.minimum(xs, ww, out=xs)
    np.minimum(ys, hh, out=ys)
    hh += 1  # a column's stride
    xs *= hh
    xs += base  # the first entry of columns x1, x2
    v = table.take(xs[:, None, :] + ys[None, :, :])  # [2 (x1, x2), 2 (y1, y2), P]
    out = v[1, 1].astype(np.int64)
    out -= v[1, 0]
    out -= v[0, 1]
    out += v[0, 0]
    return out


def _local_bounds(query: np.ndarray, origin: np.ndarray, size: np.ndarray) -> np.ndarray:
    """Pixel bounds ``(c1, r1, c2, r2)`` of ``[G, K, 4]`` boxes in their mask's crop: ``[G, K, 4]`` int64.

    ``round`` then clamp to the crop; clamping to the image first would change
    nothing, the crop lying inside it.
    """
    g, k = query.shape[:2]
    q = np.rint(query).reshape(g, k, 2, 2)  # half to even, as torch.round; corners (x, y)
    # (r0, c0) read backwards is (x, y): a view, where a fancy index would copy
    q -= origin[:, None, None, ::-1]
    np.maximum(q, 0, out=q)
    np.minimum(q, size[:, None, None, ::-1], out=q)
    return q.reshape(g, k, 4).astype(np.int64)


def _grouped_counts_numpy(
    masks: np.ndarray,
    origin: np.ndarray,
    size: np.ndarray,
    query: np.ndarray,
    area: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """``|box ∩ M_g|`` for ``[G, K, 4]`` boxes ``query``, from the masks' crops directly.

    Per mask: OpenCV's summed-area table of its crop, written into one buffer that
    holds every crop's table; then one gather reads the four corners of every box.

    ``area`` gives each mask's pixel count when the crops are known to hold their
    masks. Without it, one count of all the masks' pixels checks the crops: no crop
    holds more than its mask, so the crops' totals add up to it exactly when each
    crop holds its whole mask (then they are the masks' areas). Otherwise each mask
    is counted on its own.

    Returns:
        ``(counts [G, K], area [G], missed)``: int64 counts and pixel counts, and the
        indices of the masks whose crops missed some of their pixels (their counts are
        then not valid).
    """
    g, h, w = masks.shape
    b = _local_bounds(query, origin, size)
    stride = size[:, 1] + 1  # row-major tables [hh + 1, ww + 1]
    numel = (size[:, 0] + 1) * stride
    end = numel.cumsum()
    offset = end - numel
    rows = b[..., 1::2] * stride[:, None, None] + offset[:, None, None]  # [G, K, 2]: y1, y2
    flat = rows[..., :, None] + b[..., None, 0::2]  # [G, K, 2 (y1, y2), 2 (x1, x2)]
    # A table entry is at most its crop's area, which is at most the image's.
    tables = np.empty(int(end[-1]), dtype=np.int32 if h * w < _INT32_PIXELS else np.float64)
    # One streaming read of all the masks first: their crops are then read from the cache.
    total = None if area is not None else _count_all(masks)
    # Python ints: indexing NumPy arrays by scalars costs a microsecond a time.
    origins, sizes, offsets = origin.tolist(), size.tolist(), offset.tolist()
    pixels, depth = masks.view(np.uint8), _cv_depth(tables.dtype)
    for i, ((r0, c0), (hh, ww)) in enumerate(zip(origins, sizes)):
        t = tables[offsets[i] : offsets[i] + (hh + 1) * (ww + 1)]
        if hh == 0 or ww == 0:
            t[:] = 0
        else:
            _integral(pixels[i, r0 : r0 + hh, c0 : c0 + ww], t.reshape(hh + 1, ww + 1), depth)
    missed: list[int] = []
    if area is None:
        area, missed = _crop_areas(masks, tables.take(end - 1).astype(np.int64), total)
    v = tables.take(flat).astype(np.int64)
    return v[..., 1, 1] - v[..., 1, 0] - v[..., 0, 1] + v[..., 0, 0], area, missed


def grouped_counts_from_masks(
    masks: Tensor, boxes: Tensor | None, query: Tensor
) -> tuple[Tensor, Tensor]:
    """``|M|`` and ``|box ∩ M_g|`` for ``K`` boxes per mask, in one read of raw CPU masks.

    What ATSS needs from masks it has not seen before (no tables prepared): one count
    of all the masks' pixels, and a summed-area table of each crop (the box hint,
    checked by that count to hold every pixel, else the mask's tight extent), read
    again from the cache.

    Args:
        masks: ``[G, H, W]`` bool masks on the CPU.
        boxes: ``[G, 4]`` box hints, or ``None``.
        query: ``[G, K, 4]`` boxes, ``K`` per mask.

    Returns:
        ``(mask_area [G], counts [G, K])``, int64.
    """
    hint = None if boxes is None else boxes.detach().cpu().double().numpy()
    area, counts = _grouped_counts_from_masks_numpy(masks.numpy(), hint, query.detach().numpy())
    return torch.from_numpy(area), torch.from_numpy(counts)


def _grouped_counts_from_masks_numpy(
    masks: np.ndarray, hint: np.ndarray | None, query: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    masks = np.ascontiguousarray(masks)  # OpenCV reads rows
    g, h, w = masks.shape
    k = query.shape[1]
    if g == 0:
        return np.zeros(0, dtype=np.int64), np.zeros((0, k), dtype=np.int64)
    if hint is None or k == 0:
        origin, size, area = _crops_numpy(masks)
        if k == 0:
            return area, np.zeros((g, 0), dtype=np.int64)
        return area, _grouped_counts_numpy(masks, origin, size, query, area)[0]
    origin, size = _hint_crops(hint, h, w)
    counts, area, bad = _grouped_counts_numpy(masks, origin, size, query)
    if bad:  # crops that miss mask pixels: the masks' own extents
        origin, size, _ = _crops_numpy(masks[bad])
        counts[bad] = _grouped_counts_numpy(masks[bad], origin, size, query[bad], area[bad])[0]
    return area, counts
