"""Alg. 1 in torch (the GPU's path): summed-area tables of the masks' tight crops cut out of
whole-image prefix sums, and their look-ups, under the rounding of ``docs/spec.md`` section 1.5."""

from __future__ import annotations

import torch
from torch import Tensor

from gmaiou.measure.numpy_tables import _INT32_PIXELS


def _rounded_pixel_bounds(boxes: Tensor, height: int, width: int) -> Tensor:
    """Integer pixel bounds ``[N, 4]`` (c1, r1, c2, r2) of boxes under the rounding and clamping of ``docs/spec.md`` section 1.5."""
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
        table: the tables' flat buffer (:class:`~gmaiou.measure.MaskIntegrals`).
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


def _occupied(cum: Tensor, total: Tensor) -> tuple[Tensor, Tensor]:
    """Start and stop ``[G]`` of the occupied lines from cumulative counts ``cum [G, L + 1]``
    (``cum[:, i]``: pixels before line ``i``) and ``total [G]``; an empty mask gives (L, 0)."""
    start = (cum == 0).sum(1) - 1  # the last line with nothing before it
    stop = cum.shape[1] - (cum == total[:, None]).sum(1)  # the first with everything before it
    return start, stop


def _build_tables_torch(masks: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Tables cropped to the masks' tight extents, on the masks' device:
    ``(table, origin [G, 2], size [G, 2], offset [G], area [G])`` as
    :func:`~gmaiou.measure.numpy_tables._build_tables_numpy`.

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
