"""Generalized mask-aware IoU (GmaIoU), the mask-over-box ratio, and the box IoU family.

Conventions (``docs/spec.md`` section 1, followed to the letter):

* boxes are ``(x1, y1, x2, y2)`` in continuous pixel coordinates; pixel ``(r, c)``
  covers ``[c, c+1) x [r, r+1)``;
* ``|A ∩ M|`` counts the mask pixels with ``round(x1) <= c < round(x2)`` and
  ``round(y1) <= r < round(y2)``, the rounded coordinates clamped to ``[0, W]`` and
  ``[0, H]`` (``round`` is :func:`torch.round`, half to even, like Python's);
* ``|A|``, ``|B|`` and ``|A ∪ B|`` are continuous box areas, ``|M|`` a pixel count;
* an empty mask gives 0 for every anchor.

Then, with polygon ``P`` holding the ground truth's "energy",
``GmaIoU_P = (|A ∩ M| / |M|) * |P| / |A ∪ P|``:

* ``P = B`` (``polygon="box"``, the BMVC maIoU): ``|A∩M| |B| / (|M| |A ∪ B|)``;
* ``P = M`` (``polygon="mask"``): ``|A∩M| / (|A| + |M| - |A∩M|)``.

Both lie in [0, 1] and ``GmaIoU_M <= GmaIoU_B`` (Corollary 1) for anchors with
integer coordinates. With fractional coordinates the rounding in ``|A ∩ M|`` can
count slightly more pixels than the continuous ``|A|``, so ``GmaIoU_M`` may exceed
1 by that rounding; the contract keeps it, since every implementation must agree.

The efficient path (Alg. 1 of the paper) builds one summed-area table per mask,
cropped to the mask's own extent, so memory is O(sum of mask extents) rather than
O(G * H * W), and each anchor-GT count is four look-ups.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import cv2
import numpy as np
import torch
import torchvision.ops as tvops
from torch import Tensor

from gmaiou._validation import (
    NUMPY_FLOATS,
    check_boxes,
    check_masks,
    check_same_device,
    widened,
)
from gmaiou.anchors import AnchorGrid

Polygon = Literal["mask", "box"]

__all__ = [
    "MaskIntegrals",
    "MEASURES",
    "box_area",
    "box_union",
    "gmaiou",
    "gmaiou_bruteforce",
    "gmaiou_from_counts",
    "is_mask_measure",
    "maiou",
    "mob_ratio",
    "pairwise_overlaps",
]


def box_area(boxes: Tensor) -> Tensor:
    """Continuous areas of ``[N, 4]`` boxes, shape ``[N]``."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def box_union(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Continuous union areas ``|b1 ∪ b2|`` of ``[N, 4]`` and ``[M, 4]`` boxes, shape ``[N, M]``."""
    lt = torch.maximum(boxes1[:, None, :2], boxes2[None, :, :2])
    rb = torch.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return box_area(boxes1)[:, None] + box_area(boxes2)[None, :] - inter


def _rounded_pixel_bounds(boxes: Tensor, height: int, width: int) -> Tensor:
    """Integer pixel bounds ``[N, 4]`` (c1, r1, c2, r2) of boxes under the spec's rounding and clamping."""
    r = boxes.round().clamp_(min=0)
    if height == width:  # one clamp over the whole contiguous tensor
        return r.clamp_(max=width).long()
    return torch.minimum(r, r.new_tensor([width, height, width, height]), out=r).long()


def _pixel_corners(boxes: Tensor, extent: int, dtype: torch.dtype) -> Tensor:
    """``boxes [..., 4]`` rounded (half to even) and clamped to ``[0, extent]``, as ``dtype``.

    ``extent`` is the image's larger side: the look-ups clamp again to each mask's crop,
    which lies inside the image, so clamping x to ``H`` rather than ``W`` changes no count
    (one scalar clamp over the whole tensor, no per-axis limits to copy to the device).
    """
    return boxes.round().clamp_(min=0, max=extent).to(dtype)


def _make_lookup_frame(
    origin: Tensor, size: Tensor, offset: Tensor, table_numel: int, height: int, width: int
) -> Tensor:
    """Per mask, what a torch look-up reads, as one ``[G, 10]`` integer tensor.

    Columns 0-3: the crop's low corner ``(c0, r0, c0, r0)``; 4-7: its high corner
    ``(c0 + w, r0 + h, c0 + w, r0 + h)``; 8: a table column's stride ``h + 1``; 9:
    ``offset - c0 * (h + 1) - r0``, so that the image corner ``(x, y)``, once clamped to
    the crop, sits at ``column 9 + x * column 8 + y`` of the flat table buffer.

    int32 (half the memory traffic) when every position, and every partial sum on the
    way to one (``x * (h + 1)`` with ``x <= W``), fits; else int64.
    """
    small = table_numel < 2**31 and (height + 1) * (width + 1) < 2**31
    lo = origin.flip(1)  # (c0, r0)
    stride = size[:, :1] + 1
    base = torch.addcmul(offset[:, None] - lo[:, 1:], lo[:, :1], stride, value=-1)
    hi = lo + size.flip(1)
    frame = torch.cat([lo, lo, hi, hi, stride, base], dim=1)  # [G, 10]
    return frame.to(torch.int32 if small else torch.int64)


def _frame_counts(table: Tensor, frame: Tensor, corners: Tensor) -> Tensor:
    """Mask pixels inside integer pixel bounds: four reads of the flat ``table`` each.

    Args:
        table: the tables' flat buffer (:class:`MaskIntegrals`).
        frame: ``[..., 10]`` look-up rows (:func:`_make_lookup_frame`) of the masks.
        corners: ``[..., 4]`` integer bounds ``(c1, r1, c2, r2)`` of the frame's dtype,
            broadcastable against ``frame``: ``[A, 4]`` with ``[G, 1, 10]`` counts every
            pair, ``[G, K, 4]`` with ``[G, 1, 10]`` K boxes per mask.

    Returns:
        The counts, of the broadcast shape, in the table's dtype.
    """
    b = torch.clamp(corners, min=frame[..., 0:4], max=frame[..., 4:8])  # clamped to the crop
    cols = torch.addcmul(frame[..., 9:10], b[..., 0::2], frame[..., 8:9])  # [..., 2]: x1, x2
    flat = cols[..., :, None] + b[..., None, 1::2]  # [..., 2 (x1, x2), 2 (y1, y2)]
    v = table.index_select(0, flat.view(-1)).view(flat.shape)
    d = v[..., 1, :] - v[..., 0, :]  # [..., 2]: T[x2, y] - T[x1, y] at y1 and y2
    return d[..., 1] - d[..., 0]


class MaskIntegrals:
    """Summed-area tables of ``G`` binary masks, each cropped to a region holding the whole mask.

    Build once per image, then count mask pixels under any number of boxes with
    four look-ups per (mask, box) pair. The tables live on the masks' device.

    Memory is O(sum of crop areas), not O(G * H * W). With the NumPy backend each
    mask's crop is its box hint rounded outwards, when a hint is given and the crop
    holds every pixel of the mask (checked by counting); otherwise the mask's own tight
    extent. Annotated boxes do not always hold every pixel of their rasterised polygon,
    so a hint never changes a result, only the time to build. The torch backend (the
    GPU's) crops to the tight extents, cut out of whole-image tables by one gather.

    Args:
        masks: ``[G, H, W]`` binary masks: bool, or integers holding only 0 and 1
            (checked exactly as :func:`gmaiou` checks its ``gt_masks``).
        boxes: optional ``[G, 4]`` boxes ``(x1, y1, x2, y2)`` expected to hold the masks.
        backend: ``"auto"`` (NumPy on the CPU, torch elsewhere), ``"numpy"`` or ``"torch"``.

    Attributes:
        mask_area: ``[G]`` pixel counts ``|M|`` (int64).
        height, width: the image size ``H``, ``W``.
    """

    def __init__(self, masks: Tensor, boxes: Tensor | None = None, backend: str = "auto") -> None:
        if not isinstance(masks, Tensor) or masks.dim() != 3:
            shape = list(masks.shape) if isinstance(masks, Tensor) else type(masks).__name__
            raise ValueError(f"masks must have shape [G, H, W], got {shape}")
        masks = check_masks(masks, masks.shape[0], "masks")
        if boxes is not None and tuple(boxes.shape) != (masks.shape[0], 4):
            raise ValueError(
                f"boxes must have shape [{masks.shape[0]}, 4], got {list(boxes.shape)}"
            )
        if backend == "auto":
            backend = "numpy" if masks.device.type == "cpu" else "torch"
        if backend not in ("numpy", "torch"):
            raise ValueError(f"backend must be 'auto', 'numpy' or 'torch', got {backend!r}")
        g, h, w = masks.shape
        if backend == "numpy":
            if masks.device.type != "cpu":
                raise ValueError("the numpy backend needs masks on the CPU")
            hint = None if boxes is None else boxes.detach().cpu().double().numpy()
            built = tuple(map(torch.from_numpy, _build_tables_numpy(masks.numpy(), hint)))
        else:
            built = _build_tables_torch(masks)
        self._adopt(built, h, w, numpy_lookups=backend == "numpy")

    def _adopt(
        self,
        tables: tuple[Tensor, Tensor, Tensor, Tensor, Tensor],
        height: int,
        width: int,
        numpy_lookups: bool,
    ) -> None:
        """Take built ``(table, origin, size, offset, area)``; look-up parameters come later.

        The device is the tables' own, as tensors report it (``"cuda"`` -> ``cuda:0``).
        """
        self._table, self._origin, self._size, self._offset, self.mask_area = tables
        self.height, self.width = height, width
        self.device = self._table.device
        self._numpy_lookups = numpy_lookups
        self._params: Tensor | None = None
        self._np_params: np.ndarray | None = None
        self._frame: Tensor | None = None

    def __len__(self) -> int:
        return int(self._origin.shape[0])

    def build(self) -> MaskIntegrals:
        """Prepare the look-up parameters now (the tables themselves are built on construction).

        Returns ``self``, so that ``MaskIntegrals(masks, boxes).build()`` reads as the
        preparation it is, e.g. in a data-loader worker.
        """
        if self._params is None:
            # int32 look-up arithmetic (half the memory traffic) whenever every index fits.
            small = self._table.numel() < 2**31 and max(self.height, self.width) < 2**30
            if self._numpy_lookups:  # NumPy: torch's small operations cost ~10 us each
                columns = (self._origin.numpy(), self._size.numpy(), self._offset.numpy()[:, None])
                params = np.concatenate(columns, axis=1)
                self._params = torch.from_numpy(params.astype(np.int32) if small else params)
            else:
                params = torch.cat([self._origin, self._size, self._offset[:, None]], dim=1)
                self._params = params.to(torch.int32) if small else params
        if not self._numpy_lookups:
            self._lookup_frame()
        return self

    def _lookup_frame(self) -> Tensor:
        """The torch look-ups' ``[G, 10]`` parameters (:func:`_make_lookup_frame`), made once."""
        if self._frame is None:
            self._frame = _make_lookup_frame(
                self._origin, self._size, self._offset, self._table.numel(), self.height, self.width
            )
        return self._frame

    def _torch_counts(self, boxes: Tensor, frame: Tensor) -> Tensor:
        """Mask pixels inside ``boxes [..., 4]`` (continuous) of the masks whose look-up rows
        ``frame [..., 10]`` broadcast against them; in the tables' integer dtype."""
        q = _pixel_corners(boxes, max(self.height, self.width), frame.dtype)
        return _frame_counts(self._table, frame, q)

    def _numpy_params(self) -> np.ndarray:
        """The look-up parameters as a ``[5, G]`` NumPy array: rows r0, c0, h, w, offset."""
        if self._np_params is None:
            self.build()
            self._np_params = np.ascontiguousarray(self._params.numpy().T)
        return self._np_params

    def to(self, device: torch.device | str) -> MaskIntegrals:
        """The same tables on ``device`` (e.g. built in a data-loader worker, used on the GPU)."""
        self.build()
        out = object.__new__(MaskIntegrals)
        tables = (self._table, self._origin, self._size, self._offset, self.mask_area)
        numpy_lookups = self._numpy_lookups and torch.device(device).type == "cpu"
        out._adopt(tuple(t.to(device) for t in tables), self.height, self.width, numpy_lookups)
        out._params = self._params.to(device)
        # Made here, where the tables are prepared, not in the look-ups' hot path.
        out._frame = None if out._numpy_lookups else self._lookup_frame().to(device)
        return out

    def _count(self, gt_index: Tensor, bounds: Tensor) -> Tensor:
        """Mask pixels of masks ``gt_index [P]`` inside integer pixel ``bounds [P, 4]`` (c1, r1, c2, r2).

        Tables are stored transposed, ``T[x, y] = sum_{c < x, r < y} m[r, c]``, so the
        corner ``(x, y)`` of mask ``g`` sits at ``offset[g] + x * (h_g + 1) + y``.
        """
        if self._numpy_lookups and gt_index.device.type == "cpu":
            params = self._numpy_params()
            columns = bounds.numpy().T.astype(params.dtype)  # [4, P]
            return torch.from_numpy(
                _counts_numpy(self._table.numpy(), params, gt_index.numpy(), columns)
            )
        frame = self._lookup_frame().index_select(0, gt_index)  # [P, 10]
        return _frame_counts(self._table, frame, bounds.to(frame.dtype)).long()

    def intersection(self, boxes: Tensor) -> Tensor:
        """``|box ∩ M|`` for every mask and box: ``[N, 4]`` boxes -> ``[G, N]`` int64 counts."""
        boxes = check_boxes(boxes, "boxes")
        if not self._numpy_lookups:  # every pair at once: no host synchronisation
            frame = self._lookup_frame()[:, None]  # [G, 1, 10]
            return self._torch_counts(boxes, frame).long()
        gi, bi, counts = self.sparse_intersection(boxes)
        out = torch.zeros(len(self), boxes.shape[0], dtype=torch.long, device=self.device)
        out[gi, bi] = counts
        return out

    def sparse_intersection(self, boxes: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The (mask, box) pairs whose count can be non-zero, and their counts.

        A box that misses a mask's crop holds none of its pixels, so only the pairs
        where the rounded box meets the crop are looked up: a small share of a
        dense anchor grid for most objects.

        Args:
            boxes: ``[N, 4]`` boxes.

        Returns:
            ``(mask_index [P], box_index [P], counts [P])``; every other pair counts 0.
        """
        g, n = len(self), boxes.shape[0]
        if g == 0 or n == 0:
            empty = torch.zeros(0, dtype=torch.long, device=self.device)
            return empty, empty.clone(), empty.clone()
        bounds = _rounded_pixel_bounds(boxes, self.height, self.width)  # [N, 4]
        if self._numpy_lookups:  # NumPy: ~3x faster than torch on vectors this short
            _, gi_np, bi_np, counts, _ = self._sparse_counts_numpy(bounds.numpy().T)
            return (
                torch.from_numpy(gi_np).long(),
                torch.from_numpy(bi_np).long(),
                torch.from_numpy(counts),
            )
        else:
            b32 = bounds.to(torch.int32).t()
            lo = self._origin.to(torch.int32)  # [G, 2] (r0, c0)
            hi = lo + self._size.to(torch.int32)
            hit = b32[0][None] < hi[:, 1:2]
            hit &= b32[2][None] > lo[:, 1:2]
            hit &= b32[1][None] < hi[:, 0:1]
            hit &= b32[3][None] > lo[:, 0:1]
            hit &= (self.mask_area > 0)[:, None]
            gi, bi = hit.nonzero(as_tuple=True)
        return gi, bi, self._count(gi, bounds.index_select(0, bi))

    def _sparse_counts_numpy(
        self, bounds: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`sparse_intersection` in NumPy on integer pixel bounds, ``[4, N]`` columns (c1, r1, c2, r2).

        Returns ``(flat, mask_index, box_index, counts, pairs_per_mask)``, ``flat`` being
        each pair's position in a row-major ``[G, N]`` matrix; the pairs come mask by mask,
        ``pairs_per_mask [G]`` of each, so that per-mask values reach them by ``repeat``
        (a copy per run, several times cheaper than a gather per pair).
        """
        params = self._numpy_params()
        g, n = params.shape[1], bounds.shape[1]
        flat, per = _hits_numpy(
            self._origin.numpy(),
            self._size.numpy(),
            self.mask_area.numpy(),
            bounds,
            max(self.height, self.width),
        )
        # flat is sorted: each mask's pairs are one run, reached by repeat (no division per pair).
        gi = np.repeat(np.arange(g, dtype=params.dtype), per)
        bi = (flat - np.repeat(np.arange(g, dtype=np.int64) * n, per)).astype(params.dtype)
        bounds = bounds.astype(params.dtype, copy=False)
        pair_params = params.repeat(per, axis=1)
        counts = _pair_counts_numpy(self._table.numpy(), pair_params, bounds.take(bi, axis=1))
        return flat, gi, bi, counts, per

    def grouped_intersection(self, boxes: Tensor) -> Tensor:
        """``|box ∩ M_g|`` for ``K`` boxes per mask: ``[G, K, 4]`` -> ``[G, K]`` int64 counts."""
        g = len(self)
        if boxes.dim() != 3 or boxes.shape[0] != g or boxes.shape[-1] != 4:
            raise ValueError(f"boxes must have shape [{g}, K, 4], got {list(boxes.shape)}")
        if boxes.shape[1] == 0 or g == 0:
            return torch.zeros(g, boxes.shape[1], dtype=torch.long, device=self.device)
        if not self._numpy_lookups:
            return self._torch_counts(boxes, self._lookup_frame()[:, None]).long()
        bounds = _rounded_pixel_bounds(boxes.reshape(-1, 4), self.height, self.width).view(g, -1, 4)
        k = boxes.shape[1]
        gi = torch.arange(g, device=self.device).repeat_interleave(k)
        return self._count(gi, bounds.view(-1, 4)).view(g, k)

    def paired_intersection(self, gt_index: Tensor, boxes: Tensor) -> Tensor:
        """``|box_k ∩ M_{gt_index[k]}|`` for ``K`` pairs: ``[K]`` indices and ``[K, 4]`` boxes -> ``[K]``."""
        if gt_index.shape[0] != boxes.shape[0]:
            raise ValueError(
                f"gt_index has {gt_index.shape[0]} entries but boxes has {boxes.shape[0]}; they must pair up"
            )
        if boxes.shape[0] == 0:
            return torch.zeros(0, dtype=torch.long, device=self.device)
        bounds = _rounded_pixel_bounds(boxes, self.height, self.width)
        return self._count(gt_index.long().reshape(-1), bounds)


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


def _counts_numpy(
    table: np.ndarray, params: np.ndarray, gt_index: np.ndarray, bounds: np.ndarray
) -> np.ndarray:
    """Mask pixels of masks ``gt_index [P]`` inside integer pixel bounds: ``[P]`` int64.

    ``bounds`` is ``[4, P]`` (rows c1, r1, c2, r2; overwritten) and ``params`` the
    ``[5, G]`` rows of :meth:`MaskIntegrals._numpy_params`, of one integer dtype.
    """
    return _pair_counts_numpy(table, params.take(gt_index, axis=1), bounds)


def _pair_counts_numpy(
    table: np.ndarray, pair_params: np.ndarray, bounds: np.ndarray
) -> np.ndarray:
    """:func:`_counts_numpy` given each pair's own ``[5, P]`` parameters (overwritten).

    Same arithmetic as :meth:`MaskIntegrals._count`, on stacked NumPy rows: a dozen
    operations whose fixed cost is a microsecond each, not torch's ten.
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


def _count_pixels(mask: np.ndarray) -> int:
    """Pixels set in one ``[H, W]`` bool mask whose rows are contiguous.

    OpenCV's count is faster than ``np.count_nonzero``; reading every mask once is the
    floor of an exact raw-mask path, so this is its cost.
    """
    if mask.size < 2**31:  # OpenCV counts in an int
        return cv2.countNonZero(mask.view(np.uint8))
    return int(np.count_nonzero(mask))


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


def grouped_gmaiou(
    gt_boxes: Tensor,
    gt_masks: Tensor | MaskIntegrals,
    boxes: Tensor,
    polygon: Polygon = "mask",
) -> Tensor:
    """GmaIoU of each ground truth with ``K`` boxes of its own (e.g. its ATSS candidates).

    Args:
        gt_boxes: ``[G, 4]``.
        gt_masks: ``[G, H, W]`` binary masks or their :class:`MaskIntegrals`.
        boxes: ``[G, K, 4]``: row ``g`` holds the boxes to compare with GT ``g``.
        polygon: ``"mask"`` or ``"box"``, as in :func:`gmaiou`.

    Returns:
        ``[G, K]``, equal to ``gmaiou(gt_boxes, gt_masks, boxes[g])[g]`` row by row. Raw
        masks on the CPU take a NumPy path: OpenCV's tables of the box-hint crops, in one
        buffer, and one gather for every box's four corners.
    """
    gt_boxes = check_boxes(gt_boxes, "gt_boxes")
    g = gt_boxes.shape[0]
    if boxes.dim() != 3 or boxes.shape[0] != g or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must have shape [{g}, K, 4], got {list(boxes.shape)}")
    if polygon not in ("mask", "box"):
        raise ValueError(f"polygon must be 'mask' or 'box', got {polygon!r}")
    masks = check_mask_input(gt_masks, g)
    return _grouped_gmaiou(widened(gt_boxes), masks, widened(boxes), polygon).to(boxes.dtype)


def _grouped_gmaiou(
    gt_boxes: Tensor, gt_masks: Tensor | MaskIntegrals, boxes: Tensor, polygon: Polygon
) -> Tensor:
    """:func:`grouped_gmaiou` on validated inputs, half precision already widened (the
    assigners check and widen theirs once)."""
    if (
        isinstance(gt_masks, Tensor)
        and gt_masks.device.type == "cpu"
        and boxes.dtype in NUMPY_FLOATS
        and gt_boxes.dtype in NUMPY_FLOATS
    ):
        return torch.from_numpy(_grouped_gmaiou_numpy(gt_boxes, gt_masks, boxes, polygon))
    integrals = as_integrals(gt_masks, gt_boxes)
    if not integrals._numpy_lookups:
        if boxes.shape[1] == 0 or gt_boxes.shape[0] == 0:
            return boxes.new_zeros(boxes.shape[:2])
        inter = integrals._torch_counts(boxes, integrals._lookup_frame()[:, None])  # [G, K]
        return _gmaiou_torch(inter, integrals.mask_area, gt_boxes, boxes, polygon)
    # NumPy tables on the CPU: their look-ups, then the same formula.
    inter = integrals.grouped_intersection(boxes)
    return _gmaiou_torch(inter, integrals.mask_area, gt_boxes, boxes, polygon)


def _grouped_gmaiou_numpy(
    gt_boxes: Tensor, masks: Tensor, boxes: Tensor, polygon: str
) -> np.ndarray:
    """:func:`grouped_gmaiou` on raw CPU masks, in NumPy (a few microseconds per operation, not ten)."""
    b = boxes.detach().numpy()
    hint = gt_boxes.detach().numpy()
    area, counts = _grouped_counts_from_masks_numpy(masks.numpy(), hint, b)
    dtype = b.dtype
    inter = counts.astype(dtype)
    m = area.astype(dtype)[:, None]
    a_area = b[..., 2] - b[..., 0]
    a_area *= b[..., 3] - b[..., 1]
    if polygon == "mask":
        num = inter
        den = a_area + m
        den -= inter
    else:
        gt = hint.astype(dtype, copy=False)
        gt_area = ((gt[:, 2] - gt[:, 0]) * (gt[:, 3] - gt[:, 1]))[:, None]
        iw = np.minimum(gt[:, None, 2], b[..., 2]) - np.maximum(gt[:, None, 0], b[..., 0])
        ih = np.minimum(gt[:, None, 3], b[..., 3]) - np.maximum(gt[:, None, 1], b[..., 1])
        union = gt_area + a_area - np.maximum(iw, 0) * np.maximum(ih, 0)
        num, den = inter * gt_area, m * union
    return _divide_where_defined(num, den)


def _divide_where_defined(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """GmaIoU values ``num / den``, written into ``num`` where ``den > 0``; elsewhere ``num``
    stays, and is 0 there: never 0/0.

    ``den > 0`` is :func:`gmaiou_from_counts`'s ``(|M| > 0) & (den > 0)``. With P = B,
    ``num = |A ∩ M| |B|`` and ``den = |M| |A ∪ B|``: ``den = 0`` means ``|M| = 0`` (so
    ``|A ∩ M| = 0``) or an empty union (so ``|B| = 0``). With P = M, ``den = |A| + |M| -
    |A ∩ M| = 0`` forces ``|A ∩ M| = 0``, and ``|M| = 0`` gives 0 over a positive ``den``.
    """
    return np.divide(num, den, out=num, where=den > 0)


#: Largest ``G * (H + 1) * (W + 1)`` for which the torch backend stacks whole-image
#: tables (256 MiB in int32; 100 masks of 700 x 700 take 49M entries). Larger stacks are
#: built mask by mask.
_STACK_MAX_NUMEL = 2**26


def _fits_stack(masks: Tensor) -> bool:
    g, h, w = masks.shape
    return g * (h + 1) * (w + 1) <= _STACK_MAX_NUMEL


def _whole_image_tables(masks: Tensor) -> Tensor:
    """Transposed summed-area tables of whole masks, ``[G, W + 1, H + 1]``:
    ``T[g, x, y] = sum_{c < x, r < y} masks[g, r, c]``; two prefix sums over the stack.

    Every size is known to the host, so no kernel waits on the device.
    """
    g, h, w = masks.shape
    dtype = torch.int32 if h * w < _INT32_PIXELS else torch.int64
    table = torch.zeros(g, w + 1, h + 1, dtype=dtype, device=masks.device)
    table[:, 1:, 1:] = masks.transpose(1, 2).cumsum(2, dtype=dtype).cumsum_(1)
    return table


def _whole_image_integrals(masks: Tensor) -> MaskIntegrals:
    """:class:`MaskIntegrals` whose every crop is the whole image, without a host
    synchronisation: for one call on raw masks on a GPU (``masks [G, H, W]`` bool, with
    :func:`_fits_stack`), where a cropped build waits on the device for its buffer's size.
    Memory O(G * H * W) while the call lasts; counts as the cropped tables'.
    """
    g, h, w = masks.shape
    device = masks.device
    table = _whole_image_tables(masks)
    numel = (h + 1) * (w + 1)
    origin = torch.zeros(g, 2, dtype=torch.long, device=device)
    size = torch.full((g, 2), h, dtype=torch.long, device=device)
    if w != h:
        size[:, 1] = w
    offset = torch.arange(0, g * numel, numel, dtype=torch.long, device=device)
    area = table[:, w, h].long()  # each table's last corner: the whole mask
    out = object.__new__(MaskIntegrals)
    out._adopt((table.view(-1), origin, size, offset, area), h, w, numpy_lookups=False)
    # The look-up rows of _make_lookup_frame, written directly (fewer kernels in this
    # per-call path): low corners 0, high (W, H), stride H + 1, base the offset.
    index = torch.int32 if g * numel < 2**31 else torch.int64
    frame = torch.zeros(g, 10, dtype=index, device=device)
    frame[:, 4:8:2] = w
    frame[:, 5:8:2] = h
    frame[:, 8] = h + 1
    frame[:, 9] = offset
    out._frame = frame
    return out


def _occupied(cum: Tensor, total: Tensor) -> tuple[Tensor, Tensor]:
    """Start and stop ``[G]`` of the occupied lines from cumulative counts ``cum [G, L + 1]``
    (``cum[:, i]``: pixels before line ``i``) and ``total [G]``; an empty mask gives (L, 0)."""
    start = (cum == 0).sum(1) - 1  # the last line with nothing before it
    stop = cum.shape[1] - (cum == total[:, None]).sum(1)  # the first with everything before it
    return start, stop


def _build_tables_torch(masks: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Tables cropped to the masks' tight extents, on the masks' device:
    ``(table, origin [G, 2], size [G, 2], offset [G], area [G])`` as :func:`_build_tables_numpy`.

    Cut out of whole-image tables (:func:`_whole_image_tables`) by one gather: no
    pixel lies above or left of a tight crop, so its table is the whole one's, shifted.
    The buffer's size is the one host synchronisation. Stacks too large to build whole
    are built mask by mask.
    """
    g, h, w = masks.shape
    if g == 0 or not _fits_stack(masks):
        return _build_tables_torch_per_mask(masks)
    device = masks.device
    whole = _whole_image_tables(masks)
    area = whole[:, w, h]
    r0, r1 = _occupied(whole[:, w, :], area)
    c0, c1 = _occupied(whole[:, :, h], area)
    origin = torch.stack([r0, c0], dim=1)
    size = torch.stack([r1 - r0, c1 - c0], dim=1).clamp_(min=0)
    stride = size[:, 0] + 1  # a table column's length
    numel = stride * (size[:, 1] + 1)
    ends = numel.cumsum(0)
    total = int(ends[-1])  # the one host synchronisation
    offset = ends - numel
    # Entry (x, y) of mask g's crop is whole[g, c0 + x, r0 + y]. Positions in int32 (they
    # are below _STACK_MAX_NUMEL): the per-entry vectors are the build's largest buffers.
    first = torch.arange(0, g * (h + 1) * (w + 1), (h + 1) * (w + 1), device=device)
    first = torch.add(first, c0, alpha=h + 1).add_(r0)
    per = torch.stack([offset, stride, first], dim=1).to(torch.int32)  # [G, 3]
    owner = torch.repeat_interleave(numel.to(torch.int32), output_size=total)  # each entry's mask
    per = per.index_select(0, owner)  # [N, 3]
    local = torch.arange(total, dtype=torch.int32, device=device) - per[:, 0]
    x = local.div(per[:, 1], rounding_mode="floor")
    y = local.remainder(per[:, 1])
    table = whole.view(-1).index_select(0, torch.add(per[:, 2], x, alpha=h + 1).add_(y))
    return table, origin, size, offset, area.long()


def _build_tables_torch_per_mask(
    masks: Tensor,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """:func:`_build_tables_torch` for stacks too large to build whole: extents from two
    reductions over the stack, one host synchronisation, then a loop over masks."""
    g, h, w = masks.shape
    device = masks.device
    dtype = torch.int32 if h * w < _INT32_PIXELS else torch.int64
    if g == 0:
        z = torch.zeros(0, 2, dtype=torch.long, device=device)
        return (
            torch.zeros(0, dtype=dtype, device=device),
            z,
            z.clone(),
            z[:, 0].clone(),
            z[:, 0].clone(),
        )
    u8 = masks.view(torch.uint8)
    rows = u8.amax(dim=2)  # [G, H]
    cols = u8.amax(dim=1)  # [G, W]
    nonempty = rows.amax(dim=1) > 0
    r0 = rows.argmax(dim=1)
    r1 = torch.where(nonempty, h - rows.flip(1).argmax(dim=1), r0)
    c0 = cols.argmax(dim=1)
    c1 = torch.where(nonempty, w - cols.flip(1).argmax(dim=1), c0)
    origin = torch.stack([r0, c0], dim=1)
    size = torch.stack([r1 - r0, c1 - c0], dim=1)
    numel = (size[:, 0] + 1) * (size[:, 1] + 1)
    offset = torch.cumsum(numel, 0) - numel
    extents = torch.cat(
        [origin, size, offset[:, None], numel[:, None]], 1
    ).tolist()  # one host sync
    table = torch.zeros(int(numel.sum()), dtype=dtype, device=device)
    for i, (ry, cx, hh, ww, off, n) in enumerate(extents):
        if hh == 0 or ww == 0:
            continue
        crop = masks[i, ry : ry + hh, cx : cx + ww]
        t = table[off : off + n].view(ww + 1, hh + 1)
        t[1:, 1:] = crop.cumsum(0, dtype=dtype).cumsum(1).T
    area = table[offset + numel - 1].long()
    return table, origin, size, offset, area


def gmaiou_from_counts(
    inter: Tensor,
    mask_area: Tensor,
    gt_area: Tensor | None,
    anchor_area: Tensor,
    union_box: Tensor | None,
    polygon: Polygon,
) -> Tensor:
    """GmaIoU from its ingredients; all arguments broadcast to a common shape.

    Args:
        inter: ``|A ∩ M|`` pixel counts.
        mask_area: ``|M|`` pixel counts.
        gt_area: ``|B|``, continuous (only read for ``polygon="box"``).
        anchor_area: ``|A|``, continuous.
        union_box: ``|A ∪ B|``, continuous (only read for ``polygon="box"``).
        polygon: ``"box"`` (P = B, maIoU) or ``"mask"`` (P = M).
    """
    dtype = anchor_area.dtype if anchor_area.is_floating_point() else torch.float32
    # Integer counts are converted where they meet a float operand (type promotion: the
    # same cast inside that kernel, one kernel fewer each).
    if inter.is_floating_point():
        inter = inter.to(dtype)
    m = mask_area.to(dtype) if mask_area.is_floating_point() else mask_area
    if polygon == "box":
        assert gt_area is not None and union_box is not None
        num = inter * gt_area.to(dtype)
        den = m * union_box.to(dtype)
    elif polygon == "mask":
        num = inter
        den = anchor_area.to(dtype) + m - inter
    else:
        raise ValueError(f"polygon must be 'mask' or 'box', got {polygon!r}")
    # |M| = 0 forces |A ∩ M| = 0: the value is 0, never 0/0 (computed, then not selected).
    valid = (m > 0) & (den > 0)
    return torch.where(valid, num / den, 0.0)


def anchor_boxes(anchors: Tensor | AnchorGrid) -> Tensor:
    """The ``[A, 4]`` boxes of an :class:`~gmaiou.anchors.AnchorGrid`, or ``anchors`` itself."""
    return anchors.anchors if isinstance(anchors, AnchorGrid) else anchors


def _check_measure_inputs(
    gt_boxes: Tensor,
    gt_masks: Tensor | MaskIntegrals,
    anchors: Tensor | AnchorGrid,
    polygon: str,
) -> tuple[Tensor, Tensor | MaskIntegrals, Tensor]:
    if polygon not in ("mask", "box"):
        raise ValueError(f"polygon must be 'mask' or 'box', got {polygon!r}")
    gt_boxes = check_boxes(gt_boxes, "gt_boxes")
    anchors = check_boxes(anchor_boxes(anchors), "anchors")
    gt_masks = check_mask_input(gt_masks, gt_boxes.shape[0])
    check_same_device(gt_boxes=gt_boxes, anchors=anchors)
    if gt_masks.device != anchors.device:
        raise ValueError(
            f"gt_masks is on {gt_masks.device} but anchors are on {anchors.device}; move them to one device"
        )
    return gt_boxes, gt_masks, anchors


def check_mask_input(gt_masks: Tensor | MaskIntegrals, num_boxes: int) -> Tensor | MaskIntegrals:
    """Validate masks given as a ``[G, H, W]`` tensor or as prebuilt :class:`MaskIntegrals`."""
    if isinstance(gt_masks, MaskIntegrals):
        if len(gt_masks) != num_boxes:
            raise ValueError(
                f"gt_masks holds {len(gt_masks)} masks but there are {num_boxes} boxes; "
                "give exactly one mask per ground-truth box"
            )
        return gt_masks
    return check_masks(gt_masks, num_boxes)


def as_integrals(gt_masks: Tensor | MaskIntegrals, gt_boxes: Tensor | None = None) -> MaskIntegrals:
    """``gt_masks`` itself if it is already :class:`MaskIntegrals`, else tables built from it
    for this call (on a GPU, whole-image ones when they fit: :func:`_whole_image_integrals`)."""
    if isinstance(gt_masks, MaskIntegrals):
        return gt_masks
    if gt_masks.device.type != "cpu" and _fits_stack(gt_masks):
        return _whole_image_integrals(gt_masks)
    return MaskIntegrals(gt_masks, gt_boxes)


def gmaiou(
    gt_boxes: Tensor,
    gt_masks: Tensor | MaskIntegrals,
    anchors: Tensor | AnchorGrid,
    polygon: Polygon = "mask",
) -> Tensor:
    """Generalized mask-aware IoU between every ground truth and every anchor (Alg. 1).

    Args:
        gt_boxes: ``[G, 4]`` ground-truth boxes ``(x1, y1, x2, y2)``.
        gt_masks: ``[G, H, W]`` bool or uint8 ground-truth masks at image resolution,
            or their prebuilt :class:`MaskIntegrals`.
        anchors: ``[A, 4]`` anchor boxes, or an :class:`~gmaiou.anchors.AnchorGrid`; they
            may lie partly or wholly off the image.
        polygon: ``"mask"`` for P = M (the IoU of the anchor box and the mask) or
            ``"box"`` for P = B (maIoU).

    Returns:
        ``[G, A]`` tensor in the anchors' floating dtype.
    """
    gt_boxes, gt_masks, anchors = _check_measure_inputs(gt_boxes, gt_masks, anchors, polygon)
    integrals = as_integrals(gt_masks, gt_boxes)
    out = _gmaiou_dense(integrals, widened(gt_boxes), widened(anchors), polygon)
    return out.to(anchors.dtype)


def _gmaiou_torch(
    inter: Tensor, mask_area: Tensor, gt_boxes: Tensor, boxes: Tensor, polygon: Polygon
) -> Tensor:
    """GmaIoU of GT ``g`` and ``boxes[..., k, :]`` from the counts of torch look-ups: the
    areas and, for P = B, the box union, then :func:`gmaiou_from_counts`.

    Args:
        inter: ``[G, K]`` counts ``|A ∩ M|`` (integers).
        mask_area: ``[G]`` pixel counts ``|M|``.
        gt_boxes: ``[G, 4]``.
        boxes: ``[K, 4]`` (every GT with every box) or ``[G, K, 4]`` (K boxes per GT).

    Returns:
        ``[G, K]`` in ``boxes``' dtype, bit for bit the NumPy tables' values on the pairs
        that path evaluates, and 0 on those it skips (their count is 0).
    """
    wh = boxes[..., 2:] - boxes[..., :2]
    anchor_area = wh[..., 0] * wh[..., 1]  # [K] or [G, K]
    gt_area = union = None
    if polygon == "box":
        gt_wh = gt_boxes[:, 2:] - gt_boxes[:, :2]
        gt_area = (gt_wh[:, 0] * gt_wh[:, 1])[:, None]  # [G, 1]
        gt = gt_boxes[:, None, :]
        overlap = torch.minimum(boxes[..., 2:], gt[..., 2:]) - torch.maximum(
            boxes[..., :2], gt[..., :2]
        )
        overlap = overlap.clamp_(min=0)  # [G, K, 2]
        union = anchor_area + gt_area - overlap[..., 0] * overlap[..., 1]
    return gmaiou_from_counts(inter, mask_area[:, None], gt_area, anchor_area, union, polygon)


def _gmaiou_dense(
    integrals: MaskIntegrals, gt_boxes: Tensor, anchors: Tensor, polygon: Polygon
) -> Tensor:
    # GmaIoU is 0 wherever |A ∩ M| is: on the CPU, evaluate the formula on the pairs that
    # meet a mask only; on a GPU, every pair (cheaper than finding those pairs).
    if (
        integrals._numpy_lookups
        and anchors.device.type == "cpu"
        and len(integrals)
        and anchors.dtype in NUMPY_FLOATS
        and gt_boxes.dtype == anchors.dtype
    ):
        return torch.from_numpy(_gmaiou_dense_numpy(integrals, gt_boxes, anchors, polygon))
    if not integrals._numpy_lookups:  # every pair: no host synchronisation, no scatter
        inter = integrals._torch_counts(anchors, integrals._lookup_frame()[:, None])  # [G, A]
        return _gmaiou_torch(inter, integrals.mask_area, gt_boxes, anchors, polygon)
    # NumPy tables with mixed dtypes or no GTs: the pairs that meet a crop only.
    gi, ai, inter = integrals.sparse_intersection(anchors)
    ax1, ay1, ax2, ay2 = anchors.index_select(0, ai).unbind(1)  # [P] each: 1-D ops are faster
    a_area, b_area = (ax2 - ax1) * (ay2 - ay1), box_area(gt_boxes).index_select(0, gi)
    union = None
    if polygon == "box":
        bx1, by1, bx2, by2 = gt_boxes.index_select(0, gi).unbind(1)
        iw = (torch.minimum(ax2, bx2) - torch.maximum(ax1, bx1)).clamp_(min=0)
        ih = (torch.minimum(ay2, by2) - torch.maximum(ay1, by1)).clamp_(min=0)
        union = a_area + b_area - iw * ih
    values = gmaiou_from_counts(
        inter, integrals.mask_area.index_select(0, gi), b_area, a_area, union, polygon
    )
    out = anchors.new_zeros(gt_boxes.shape[0], anchors.shape[0])
    out[gi, ai] = values
    return out


def _gmaiou_dense_numpy(
    integrals: MaskIntegrals, gt_boxes: Tensor, anchors: Tensor, polygon: Polygon
) -> np.ndarray:
    """:func:`_gmaiou_dense` in NumPy: the same operations in the same order, hence equal values.

    For float32 or float64 boxes and anchors of one dtype (others take the torch path).

    The pairs come as flat positions in the ``[G, A]`` output, so that the values are
    written with one ``put``; per-anchor quantities are computed once and gathered.
    """
    g, n = gt_boxes.shape[0], anchors.shape[0]
    a = np.ascontiguousarray(anchors.detach().numpy().T)  # [4, A]
    b = np.ascontiguousarray(gt_boxes.detach().numpy().T, dtype=a.dtype)  # [4, G]
    flat, _, ai, counts, per = integrals._sparse_counts_numpy(
        _rounded_pixel_bounds_numpy(a, integrals.height, integrals.width)
    )
    a_area = ((a[2] - a[0]) * (a[3] - a[1])).take(ai)
    b_area = ((b[2] - b[0]) * (b[3] - b[1])).repeat(per)  # the pairs come GT by GT
    inter = counts.astype(a.dtype)
    m = integrals.mask_area.numpy().astype(a.dtype).repeat(per)
    if polygon == "box":
        pa, pb = a.take(ai, axis=1), b.repeat(per, axis=1)  # [4, P] each
        lo = np.maximum(pa[:2], pb[:2])
        wh = np.minimum(pa[2:], pb[2:], out=pa[2:])
        wh -= lo
        np.maximum(wh, 0, out=wh)
        union = a_area + b_area
        union -= wh[0] * wh[1]
        num, den = inter * b_area, m * union
    else:
        num, den = inter, a_area + m - inter
    values = _divide_where_defined(num, den)
    out = np.zeros(g * n, dtype=a.dtype)
    out.put(flat, values)
    return out.reshape(g, n)


def _rounded_pixel_bounds_numpy(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """:func:`_rounded_pixel_bounds` of ``[4, N]`` box columns, as ``[4, N]`` int32 (or int64) rows.

    The rows the NumPy look-ups index directly: going through the torch version's int64
    ``[N, 4]`` costs a transposing copy, ~45 us per image at 10k anchors.
    """
    r = np.rint(boxes)  # half to even, as torch.round
    np.maximum(r, 0, out=r)
    np.minimum(r[0::2], width, out=r[0::2])
    np.minimum(r[1::2], height, out=r[1::2])
    return r.astype(np.int32 if max(height, width) < 2**30 else np.int64)


def maiou(
    gt_boxes: Tensor, gt_masks: Tensor | MaskIntegrals, anchors: Tensor | AnchorGrid
) -> Tensor:
    """Mask-aware IoU of the BMVC paper: :func:`gmaiou` with ``polygon="box"``; ``[G, A]``."""
    return gmaiou(gt_boxes, gt_masks, anchors, polygon="box")


def mob_ratio(boxes: Tensor | AnchorGrid, gt_masks: Tensor | MaskIntegrals) -> Tensor:
    """Mask-over-box ratio ``|box ∩ M| / |box|`` for every mask and box.

    Arguments in the package's order, boxes then masks.

    Args:
        boxes: ``[N, 4]`` boxes (anchors, an :class:`~gmaiou.anchors.AnchorGrid`, or the
            GTs' own boxes).
        gt_masks: ``[G, H, W]`` binary masks, or their :class:`MaskIntegrals`.

    Returns:
        ``[G, N]`` ratios; 0 where a box has zero area. For a GT's own (tight) box
        the diagonal is ``|M| / |B|``.
    """
    boxes = check_boxes(anchor_boxes(boxes), "boxes")
    if isinstance(gt_masks, MaskIntegrals):
        integrals = gt_masks
    else:
        if not isinstance(gt_masks, Tensor) or gt_masks.dim() != 3:
            shape = (
                list(gt_masks.shape) if isinstance(gt_masks, Tensor) else type(gt_masks).__name__
            )
            raise ValueError(f"gt_masks must have shape [G, H, W], got {shape}")
        integrals = MaskIntegrals(check_masks(gt_masks, gt_masks.shape[0]))
    check_same_device(boxes=boxes, gt_masks=integrals.mask_area)
    wide = widened(boxes)
    inter = integrals.intersection(wide).to(wide.dtype)
    area = box_area(wide)[None, :].expand_as(inter)
    ratio = torch.where(
        area > 0, inter / area.clamp(min=torch.finfo(wide.dtype).tiny), torch.zeros_like(inter)
    )
    return ratio.to(boxes.dtype)


def gmaiou_bruteforce(
    gt_boxes: Tensor,
    gt_masks: Tensor,
    anchors: Tensor | AnchorGrid,
    polygon: Polygon = "mask",
) -> Tensor:
    """Reference GmaIoU: counts the mask pixels under every anchor one pair at a time.

    O(G * A * anchor area); same signature and result as :func:`gmaiou`, which
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


# --------------------------------------------------------------------------- box measures


def _hull_and_centres(gt: Tensor, anchors: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Hull area ``[G, A]``, squared hull diagonal and squared centre distance."""
    lt = torch.minimum(gt[:, None, :2], anchors[None, :, :2])
    rb = torch.maximum(gt[:, None, 2:], anchors[None, :, 2:])
    wh = rb - lt
    hull = wh[..., 0] * wh[..., 1]
    diag2 = wh[..., 0] ** 2 + wh[..., 1] ** 2
    cg = (gt[:, :2] + gt[:, 2:]) / 2
    ca = (anchors[:, :2] + anchors[:, 2:]) / 2
    dist2 = ((cg[:, None, :] - ca[None, :, :]) ** 2).sum(-1)
    return hull, diag2, dist2


def _degenerate_box_measure(name: str, gt: Tensor, anchors: Tensor) -> Tensor:
    """Value for pairs where torchvision divides 0 by 0 (zero-area boxes).

    The overlap term of such a pair is 0 (no area in common); a penalty whose
    denominator is 0 is 0; CIoU's aspect term is undefined for a point and
    counts 0. So GIoU is -1 for separate hulls, DIoU and CIoU keep their
    centre-distance penalty (with torchvision's eps).
    """
    hull, diag2, dist2 = _hull_and_centres(gt, anchors)
    if name == "iou":
        return torch.zeros_like(hull)
    if name == "giou":
        union = box_union(gt, anchors)
        return -torch.where(
            hull > 0, (hull - union) / hull.clamp(min=1e-12), torch.zeros_like(hull)
        )
    iou = tvops.box_iou(gt, anchors).nan_to_num(0.0)
    return iou - dist2 / (diag2 + 1e-7)


_BOX_FUNCTIONS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "iou": tvops.box_iou,
    "giou": tvops.generalized_box_iou,
    "diou": tvops.distance_box_iou,
    "ciou": tvops.complete_box_iou,
}

#: Measures accepted by :func:`pairwise_overlaps` and the assigners, with aliases.
MEASURES: dict[str, str] = {
    "iou": "iou",
    "giou": "giou",
    "diou": "diou",
    "ciou": "ciou",
    "gmaiou-box": "gmaiou-box",
    "maiou": "gmaiou-box",
    "gmaiou-mask": "gmaiou-mask",
    "gmaiou": "gmaiou-mask",
}


def canonical_measure(measure: str) -> str:
    """Resolve an alias (``"maiou"`` -> ``"gmaiou-box"``); raise for an unknown name."""
    try:
        return MEASURES[measure]
    except (KeyError, TypeError):
        raise ValueError(f"unknown measure {measure!r}; choose one of {sorted(MEASURES)}") from None


def is_mask_measure(measure: str) -> bool:
    """Whether ``measure`` needs ground-truth masks."""
    return canonical_measure(measure).startswith("gmaiou")


def polygon_of(measure: str) -> Polygon:
    """The GmaIoU polygon of a mask-aware measure (``"box"`` or ``"mask"``)."""
    name = canonical_measure(measure)
    if not name.startswith("gmaiou"):
        raise ValueError(f"{measure!r} is a box measure, not a mask-aware one")
    return "box" if name == "gmaiou-box" else "mask"


def box_overlaps(measure: str, gt_boxes: Tensor, anchors: Tensor) -> Tensor:
    """A torchvision box measure for every GT and anchor, ``[G, A]``; finite for zero-area boxes."""
    fn = _BOX_FUNCTIONS[measure]
    if gt_boxes.shape[0] == 0 or anchors.shape[0] == 0:
        return anchors.new_zeros(gt_boxes.shape[0], anchors.shape[0])
    dtype = anchors.dtype
    gt_boxes, anchors = widened(gt_boxes), widened(anchors)
    out = fn(gt_boxes, anchors)
    bad = ~torch.isfinite(out)
    if bool(bad.any()):
        out = torch.where(bad, _degenerate_box_measure(measure, gt_boxes, anchors), out)
    return out.to(dtype)


def pairwise_overlaps(
    measure: str,
    gt_boxes: Tensor,
    anchors: Tensor | AnchorGrid,
    gt_masks: Tensor | MaskIntegrals | None = None,
) -> Tensor:
    """Overlap of every ground truth with every anchor under a named measure.

    Args:
        measure: ``"iou"``, ``"giou"``, ``"diou"``, ``"ciou"`` (torchvision), or
            ``"gmaiou-box"`` (alias ``"maiou"``), ``"gmaiou-mask"`` (alias ``"gmaiou"``).
        gt_boxes: ``[G, 4]``.
        anchors: ``[A, 4]``, or an :class:`~gmaiou.anchors.AnchorGrid`.
        gt_masks: ``[G, H, W]`` masks or their :class:`MaskIntegrals`; required by the
            mask-aware measures.

    Returns:
        ``[G, A]``.
    """
    name = canonical_measure(measure)
    if name.startswith("gmaiou"):
        if gt_masks is None:
            raise ValueError(
                f"measure {measure!r} is mask-aware and needs gt_masks [G, H, W]; none were given"
            )
        return gmaiou(gt_boxes, gt_masks, anchors, polygon=polygon_of(name))
    gt_boxes = check_boxes(gt_boxes, "gt_boxes")
    anchors = check_boxes(anchor_boxes(anchors), "anchors")
    check_same_device(gt_boxes=gt_boxes, anchors=anchors)
    return box_overlaps(name, gt_boxes, anchors)
