"""Detections from the network's tensors: box decoding, Fast NMS, mask assembly, crop, upsample, threshold.

Kept out of :meth:`YOLACT.forward` so that the forward stays a pure, traceable tensor
function (exported to ONNX) and this data-dependent part runs in Python.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor

from gmaiou.anchors import feature_map_sizes
from gmaiou.configs import PostprocessConfig
from gmaiou.models.box_coder import decode_boxes

__all__ = [
    "assemble_masks",
    "crop_masks",
    "fast_nms",
    "pastes_in_box",
    "postprocess",
    "top_k_per_level",
]

_batched_box_iou = torch.vmap(torchvision.ops.box_iou)


def crop_masks(boxes: Tensor, height: int, width: int, padding: float = 1.0) -> Tensor:
    """Which pixels of an ``height x width`` map each box covers, widened by ``padding`` pixels.

    YOLACT's crop: pixel ``(r, c)`` is inside when ``x1 - padding <= c < x2 + padding`` and
    likewise for rows, the bounds clamped to the map.

    Args:
        boxes: ``[N, 4]`` boxes ``(x1, y1, x2, y2)`` in the map's pixel units.

    Returns:
        ``[N, height, width]`` bool.
    """
    x1 = (torch.minimum(boxes[:, 0], boxes[:, 2]) - padding).clamp(min=0)
    x2 = (torch.maximum(boxes[:, 0], boxes[:, 2]) + padding).clamp(max=width)
    y1 = (torch.minimum(boxes[:, 1], boxes[:, 3]) - padding).clamp(min=0)
    y2 = (torch.maximum(boxes[:, 1], boxes[:, 3]) + padding).clamp(max=height)
    cols = torch.arange(width, device=boxes.device, dtype=boxes.dtype)[None, None, :]
    rows = torch.arange(height, device=boxes.device, dtype=boxes.dtype)[None, :, None]
    inside_x = (cols >= x1[:, None, None]) & (cols < x2[:, None, None])
    inside_y = (rows >= y1[:, None, None]) & (rows < y2[:, None, None])
    return inside_x & inside_y


def fast_nms(
    boxes: Tensor,
    scores: Tensor,
    iou_threshold: float,
    top_k: int,
    score_threshold: float = 0.0,
    max_dets: int | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """YOLACT's Fast NMS, every class at once.

    Per class, the ``top_k`` highest-scoring boxes; a box is kept if its IoU with every
    higher-scored box of its class is ``<= iou_threshold`` -- even one that was itself
    suppressed (so Fast NMS removes a little more than greedy NMS) -- and its score is
    ``> score_threshold``. Then the ``max_dets`` best detections over all classes.

    Args:
        boxes: ``[N, 4]`` boxes shared by all classes.
        scores: ``[N, C]`` per-class scores.

    Returns:
        ``(indices [K], scores [K], labels [K])`` sorted by decreasing score: ``indices``
        into the ``N`` boxes, ``labels`` in ``[0, C)``.
    """
    if boxes.dim() != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must have shape [N, 4], got {list(boxes.shape)}")
    if scores.dim() != 2 or scores.shape[0] != boxes.shape[0]:
        raise ValueError(f"scores must have shape [{boxes.shape[0]}, C], got {list(scores.shape)}")
    n, num_classes = scores.shape
    k = min(top_k, n)
    if k == 0 or num_classes == 0:
        empty = torch.zeros(0, dtype=torch.long, device=boxes.device)
        return empty, scores.new_zeros(0), empty.clone()
    class_scores, order = scores.t().sort(dim=1, descending=True)  # [C, N]
    class_scores, order = class_scores[:, :k], order[:, :k]
    class_boxes = boxes[order]  # [C, k, 4]
    iou = _batched_box_iou(class_boxes, class_boxes).triu(diagonal=1)  # [C, k, k], i < j only
    max_iou = iou.max(dim=1).values  # each box's largest IoU with a higher-scored one
    keep = (max_iou <= iou_threshold) & (class_scores > score_threshold)
    labels = torch.arange(num_classes, device=boxes.device)[:, None].expand_as(keep)[keep]
    kept_scores, kept_idx = class_scores[keep], order[keep]
    kept_scores, rank = kept_scores.sort(descending=True)
    if max_dets is not None:
        rank, kept_scores = rank[:max_dets], kept_scores[:max_dets]
    return kept_idx[rank], kept_scores, labels[rank]


def assemble_masks(
    protos: Tensor,
    coeffs: Tensor,
    boxes: Tensor,
    image_size: int,
    out_size: tuple[int, int] | None = None,
    threshold: float = 0.5,
    paste_in_box: bool | None = None,
) -> Tensor:
    """Instance masks: ``sigmoid(protos @ coeffs)``, cropped by the boxes, upsampled, thresholded.

    The crop (YOLACT's, one prototype pixel of padding) is taken at prototype
    resolution; the cropped map is upsampled bilinearly (``align_corners=False``) to the
    output size and thresholded. With ``paste_in_box`` only the output pixels that the
    crop can reach are computed, one detection at a time, and pasted into an empty
    mask (as torchvision's and detectron2's paste-in-image do); elsewhere the
    upsampled map is 0, below any threshold ``>= 0``. The values are the same
    interpolation written as two small matrix products, so a pixel whose probability
    sits on the threshold may round the other way. ``paste_in_box=False`` upsamples
    every detection's whole map. ``None`` (the default) picks by device: inside the boxes
    on the CPU, where it saves most of the work, and the whole map elsewhere, where one
    batched kernel beats a few small launches per detection (measured side by side on
    an H100 in ``figures/timings/trained_inference.md``).

    Args:
        protos: ``[Hp, Wp, P]`` prototypes of one image.
        coeffs: ``[N, P]`` coefficients of the detections.
        boxes: ``[N, 4]`` their boxes in input pixels (``image_size`` square).
        out_size: ``(height, width)`` of the output masks; ``None``: ``(image_size, image_size)``.
        threshold: probability above which a pixel is in the mask.
        paste_in_box: compute each mask inside its crop's reach only; ``None``: on the CPU only.

    Returns:
        ``[N, height, width]`` bool.
    """
    height, width = (image_size, image_size) if out_size is None else out_size
    n = coeffs.shape[0]
    if n == 0:
        return torch.zeros(0, height, width, dtype=torch.bool, device=protos.device)
    if paste_in_box is None:
        paste_in_box = pastes_in_box(protos.device)
    hp, wp = protos.shape[:2]
    probs = torch.sigmoid(protos @ coeffs.t()).permute(2, 0, 1)  # [N, Hp, Wp]
    scale = boxes.new_tensor([wp / image_size, hp / image_size, wp / image_size, hp / image_size])
    proto_boxes = boxes * scale
    if not paste_in_box or threshold < 0:
        probs = probs * crop_masks(proto_boxes, hp, wp)
        probs = F.interpolate(
            probs[None], size=(height, width), mode="bilinear", align_corners=False
        )[0]
        return probs > threshold
    return _paste_in_box(probs, proto_boxes, (height, width), threshold)


def pastes_in_box(device: torch.device | str) -> bool:
    """The default of ``paste_in_box`` on ``device``: inside the boxes on the CPU only."""
    return torch.device(device).type == "cpu"


def _bilinear_weights(out_len: int, in_len: int, like: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``F.interpolate``'s bilinear resampling (``align_corners=False``) along one axis as a matrix.

    Returns:
        ``(weights [out_len, in_len], first [out_len], last [out_len])``: output pixel ``i``
        reads input pixels ``first[i]`` and ``last[i]`` (``last = first + 1`` but clamped).
    """
    # In float32 as F.interpolate computes it: scale = in / out, source = scale * (i + 0.5) - 0.5.
    scale = torch.tensor(float(in_len), dtype=torch.float32, device=like.device) / float(out_len)
    index = torch.arange(out_len, device=like.device, dtype=torch.float32)
    pos = ((index + 0.5) * scale - 0.5).clamp(min=0)
    first = pos.floor().long().clamp(max=in_len - 1)
    last = (first + 1).clamp(max=in_len - 1)
    frac = (pos - first).to(like.dtype)
    rows = torch.arange(out_len, device=like.device)
    weights = torch.zeros(out_len, in_len, device=like.device, dtype=like.dtype)
    weights.index_put_((rows, first), 1 - frac, accumulate=True)
    weights.index_put_((rows, last), frac, accumulate=True)
    return weights, first, last


def _paste_in_box(
    probs: Tensor, proto_boxes: Tensor, out_size: tuple[int, int], threshold: float
) -> Tensor:
    """:func:`assemble_masks` computed inside each crop's reach: ``[N, Hp, Wp]`` -> ``[N, H, W]`` bool."""
    n, hp, wp = probs.shape
    height, width = out_size
    wy, y_first, y_last = _bilinear_weights(height, hp, probs)
    wx, x_first, x_last = _bilinear_weights(width, wp, probs)
    # The crop's prototype pixels, exactly as crop_masks(padding=1) selects them:
    # c >= x1 - 1 and c < x2 + 1, i.e. c in [ceil(x1 - 1), ceil(x2 + 1)), clamped.
    x1 = (torch.minimum(proto_boxes[:, 0], proto_boxes[:, 2]) - 1).clamp(min=0)
    x2 = (torch.maximum(proto_boxes[:, 0], proto_boxes[:, 2]) + 1).clamp(max=wp)
    y1 = (torch.minimum(proto_boxes[:, 1], proto_boxes[:, 3]) - 1).clamp(min=0)
    y2 = (torch.maximum(proto_boxes[:, 1], proto_boxes[:, 3]) + 1).clamp(max=hp)
    c0, c1 = x1.ceil().long(), x2.ceil().long().clamp(max=wp)
    r0, r1 = y1.ceil().long(), y2.ceil().long().clamp(max=hp)
    # Output pixels whose two input pixels meet the crop (both index sequences are sorted).
    oy0 = torch.searchsorted(y_last, r0)
    oy1 = torch.searchsorted(y_first, r1 - 1, right=True)
    ox0 = torch.searchsorted(x_last, c0)
    ox1 = torch.searchsorted(x_first, c1 - 1, right=True)
    spans = torch.stack([r0, r1, c0, c1, oy0, oy1, ox0, ox1], dim=1).tolist()  # one host sync
    out = torch.zeros(n, height, width, dtype=torch.bool, device=probs.device)
    for i, (ra, rb, ca, cb, ya, yb, xa, xb) in enumerate(spans):
        if ra >= rb or ca >= cb or ya >= yb or xa >= xb:
            continue
        region = wy[ya:yb, ra:rb] @ probs[i, ra:rb, ca:cb] @ wx[xa:xb, ca:cb].t()
        out[i, ya:yb, xa:xb] = region > threshold
    return out


def class_scores(cls_logits: Tensor, activation: str) -> Tensor:
    """Foreground class probabilities ``[..., C]`` from the logits (softmax: drops background index 0)."""
    if activation == "softmax":
        return cls_logits.softmax(dim=-1)[..., 1:]
    if activation == "sigmoid":
        return cls_logits.sigmoid()
    raise ValueError(f"score activation must be 'softmax' or 'sigmoid', got {activation!r}")


def top_k_per_level(max_scores: Tensor, image_size: int, k: int) -> Tensor:
    """``[A]`` bool: the ``k`` best-scoring anchors of each pyramid level (mmdetection's ``nms_pre``).

    Args:
        max_scores: ``[A]`` each anchor's best class score, anchors level after level as
            in :mod:`gmaiou.anchors` (levels P3-P7 of ``image_size``, the same number of
            anchors at every cell).
        image_size: the square input side ``S``.
        k: anchors kept per level (all of a level with fewer).
    """
    cells = [f * f for f in feature_map_sizes(image_size)]
    per_cell, rest = divmod(max_scores.shape[0], sum(cells))
    if rest or per_cell == 0:
        raise ValueError(
            f"{max_scores.shape[0]} anchors do not tile the P3-P7 grids of a {image_size} image"
        )
    keep = torch.zeros_like(max_scores, dtype=torch.bool)
    start = 0
    for count in (c * per_cell for c in cells):
        level = max_scores[start : start + count]
        keep[start + level.topk(min(k, count)).indices] = True
        start += count
    return keep


@torch.no_grad()
def postprocess(
    outputs: dict[str, Tensor],
    anchors: Tensor,
    config: PostprocessConfig,
    image_size: int,
    out_size: tuple[int, int] | None = None,
    paste_in_box: bool | None = None,
) -> list[dict[str, Tensor]]:
    """Detections of every image in a batch.

    Args:
        outputs: the model's ``cls_logits [B, A, K]``, ``box_deltas [B, A, 4]``,
            ``coeffs [B, A, P]`` and ``protos [B, Hp, Wp, P]``.
        anchors: ``[A, 4]`` the model's anchors.
        config: thresholds; ``score_thr`` also drops anchors before NMS, and so does
            ``pre_nms_per_level`` (only each level's best anchors stay candidates).
        image_size: the square input side ``S``.
        out_size: ``(height, width)`` to report boxes and masks in (e.g. the original
            image); ``None``: the input's ``S x S`` pixels.
        paste_in_box: assemble each mask inside its box only (see :func:`assemble_masks`);
            ``False``: upsample every detection's whole map (the former assembly);
            ``None``: inside the box on the CPU, the whole map on other devices.

    Returns:
        Per image ``{"boxes" [N, 4] xyxy, "scores" [N], "labels" [N] in [0, C), "masks" [N, H, W] bool}``,
        by decreasing score.
    """
    for key in ("cls_logits", "box_deltas", "coeffs", "protos"):
        if key not in outputs:
            raise ValueError(f"outputs lacks {key!r}; expected the model's forward() dictionary")
    cls_logits, deltas = outputs["cls_logits"], outputs["box_deltas"]
    coeffs, protos = outputs["coeffs"], outputs["protos"]
    if anchors.shape != (cls_logits.shape[1], 4):
        raise ValueError(
            f"anchors must have shape [{cls_logits.shape[1]}, 4], got {list(anchors.shape)}"
        )
    height, width = (image_size, image_size) if out_size is None else out_size
    to_out = deltas.new_tensor([width / image_size, height / image_size] * 2)
    results = []
    for b in range(cls_logits.shape[0]):
        scores = class_scores(cls_logits[b].float(), config.score_activation)  # [A, C]
        best = scores.max(dim=1).values
        keep = best > config.score_thr
        if config.pre_nms_per_level is not None:
            keep &= top_k_per_level(best, image_size, config.pre_nms_per_level)
        candidates = keep.nonzero().squeeze(1)
        boxes = decode_boxes(
            anchors[candidates], deltas[b, candidates].float(), max_shape=image_size
        )
        idx, det_scores, labels = fast_nms(
            boxes,
            scores[candidates],
            config.nms_iou,
            config.top_k,
            config.score_thr,
            config.max_dets,
        )
        det_boxes = boxes[idx]
        masks = assemble_masks(
            protos[b].float(),
            coeffs[b, candidates[idx]].float(),
            det_boxes,
            image_size,
            out_size,
            config.mask_thr,
            paste_in_box,
        )
        results.append(
            {"boxes": det_boxes * to_out, "scores": det_scores, "labels": labels, "masks": masks}
        )
    return results
