"""MaskIntegrals, Alg. 1's per-image state (``docs/spec.md`` section 1.6): one summed-area table per mask,
built by OpenCV on the CPU or by torch elsewhere, and ``|box ∩ M|`` from four look-ups."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from gmaiou._validation import check_boxes, check_masks
from gmaiou.measure.numpy_tables import _build_tables_numpy, _hits_numpy, _pair_counts_numpy
from gmaiou.measure.torch_tables import (
    _build_tables_torch,
    _fits_stack,
    _frame_counts,
    _make_lookup_frame,
    _pixel_corners,
    _rounded_pixel_bounds,
    _whole_image_tables,
)


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

    Look-ups run in torch, except where NumPy-built tables on the CPU meet a whole set
    of boxes (:meth:`intersection`, :meth:`sparse_intersection`,
    :func:`~gmaiou.measure.gmaiou`): there NumPy finds the pairs that meet a crop and
    reads those only.

    Args:
        masks: ``[G, H, W]`` binary masks: bool, or integers holding only 0 and 1
            (checked exactly as :func:`~gmaiou.measure.gmaiou` checks its ``gt_masks``).
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
        self._np_params: np.ndarray | None = None
        self._frame: Tensor | None = None

    def __len__(self) -> int:
        return int(self._origin.shape[0])

    def build(self) -> MaskIntegrals:
        """Prepare the look-up parameters now (the tables themselves are built on construction).

        Returns ``self``, so that ``MaskIntegrals(masks, boxes).build()`` reads as the
        preparation it is, e.g. in a data-loader worker.
        """
        self._lookup_frame()
        if self._numpy_lookups:
            self._numpy_params()
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
        """The NumPy look-ups' parameters as a ``[5, G]`` array: rows r0, c0, h, w, offset.

        int32 (half the memory traffic) whenever every index fits; made in NumPy, where
        torch's small operations cost ~10 us each.
        """
        if self._np_params is None:
            small = self._table.numel() < 2**31 and max(self.height, self.width) < 2**30
            rows = (self._origin.numpy().T, self._size.numpy().T, self._offset.numpy()[None])
            params = np.concatenate(rows, axis=0)
            self._np_params = params.astype(np.int32) if small else params
        return self._np_params

    def to(self, device: torch.device | str) -> MaskIntegrals:
        """The same tables on ``device`` (e.g. built in a data-loader worker, used on the GPU)."""
        self.build()
        out = object.__new__(MaskIntegrals)
        tables = (self._table, self._origin, self._size, self._offset, self.mask_area)
        numpy_lookups = self._numpy_lookups and torch.device(device).type == "cpu"
        out._adopt(tuple(t.to(device) for t in tables), self.height, self.width, numpy_lookups)
        # Made by build(), where the tables are prepared, not in the look-ups' hot path.
        out._frame = self._frame.to(device)
        out._np_params = self._np_params if numpy_lookups else None
        return out

    def _count(self, gt_index: Tensor, bounds: Tensor) -> Tensor:
        """Mask pixels of masks ``gt_index [P]`` inside integer pixel ``bounds [P, 4]`` (c1, r1, c2, r2).

        Tables are stored transposed, ``T[x, y] = sum_{c < x, r < y} m[r, c]``, so the
        corner ``(x, y)`` of mask ``g`` sits at ``offset[g] + x * (h_g + 1) + y``.
        """
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
        return self._torch_counts(boxes, self._lookup_frame()[:, None]).long()

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
