"""Box coding, cropping, Fast NMS (vs torchvision's NMS) and the full post-processing."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import batched_nms

from gmaiou.configs import PostprocessConfig
from gmaiou.models.box_coder import MAX_LOG_RATIO, decode_boxes, encode_boxes
from gmaiou.models.postprocess import assemble_masks, crop_masks, fast_nms, postprocess

# --------------------------------------------------------------------------- box coder


def test_encode_hand_computed():
    anchor = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    box = torch.tensor([[5.0, 5.0, 15.0, 25.0]])
    # centre moves (5, 10) = (0.5, 1.0) anchor sides; width x1, height x2
    expected = torch.tensor([[0.5 / 0.1, 1.0 / 0.1, 0.0, torch.log(torch.tensor(2.0)) / 0.2]])
    assert torch.allclose(encode_boxes(anchor, box), expected)


def test_round_trip():
    g = torch.Generator().manual_seed(0)
    # side ratios within the decoder's clamp (1/62.5 ... 62.5)
    xy = torch.rand(500, 2, generator=g, dtype=torch.float64) * 500
    anchors = torch.cat(
        [xy, xy + 10 + torch.rand(500, 2, generator=g, dtype=torch.float64) * 300], 1
    )
    xy = torch.rand(500, 2, generator=g, dtype=torch.float64) * 500
    boxes = torch.cat([xy, xy + 10 + torch.rand(500, 2, generator=g, dtype=torch.float64) * 300], 1)
    assert torch.allclose(decode_boxes(anchors, encode_boxes(anchors, boxes)), boxes, atol=1e-9)
    deltas = torch.randn(500, 4, generator=g, dtype=torch.float64)
    assert torch.allclose(encode_boxes(anchors, decode_boxes(anchors, deltas)), deltas, atol=1e-9)
    f32 = decode_boxes(anchors.float(), encode_boxes(anchors.float(), boxes.float()))
    assert torch.allclose(f32, boxes.float(), atol=1e-2)


def test_decode_clamps_scales_and_clips_to_the_image():
    anchor = torch.tensor([[10.0, 10.0, 20.0, 20.0]])
    huge = decode_boxes(anchor, torch.tensor([[0.0, 0.0, 1e4, -1e4]]))
    assert torch.isfinite(huge).all()
    w, h = huge[0, 2] - huge[0, 0], huge[0, 3] - huge[0, 1]
    assert w == pytest.approx(10 * torch.exp(torch.tensor(MAX_LOG_RATIO)).item(), rel=1e-4)
    assert h == pytest.approx(10 * torch.exp(torch.tensor(-MAX_LOG_RATIO)).item(), rel=1e-4)
    clipped = decode_boxes(anchor, torch.tensor([[0.0, 0.0, 10.0, 10.0]]), max_shape=(30, 40))
    assert clipped.tolist() == [[0.0, 0.0, 40.0, 30.0]]
    with pytest.raises(ValueError, match=r"\[\.\.\., 4\]"):
        encode_boxes(torch.zeros(3, 4), torch.zeros(2, 4))


# --------------------------------------------------------------------------- cropping and masks


def test_crop_masks_hand_computed():
    crop = crop_masks(torch.tensor([[2.0, 1.0, 3.0, 2.0]]), height=5, width=6, padding=1)
    expected = torch.zeros(1, 5, 6, dtype=torch.bool)
    expected[0, 0:3, 1:4] = True  # rows [0, 3), cols [1, 4)
    assert torch.equal(crop, expected)
    edge = crop_masks(torch.tensor([[4.0, 3.0, 9.0, 9.0]]), height=5, width=6, padding=0)
    assert torch.equal(edge[0].nonzero().min(0).values, torch.tensor([3, 4]))
    assert edge.sum() == 2 * 2
    assert crop_masks(torch.zeros(0, 4), 5, 6).shape == (0, 5, 6)


def test_assemble_masks_crops_upsamples_and_thresholds():
    protos = torch.zeros(8, 8, 2)
    protos[:, :, 0] = 10.0  # prototype 0 is on everywhere
    coeffs = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    boxes = torch.tensor(
        [[0.0, 0.0, 16.0, 16.0], [0.0, 0.0, 32.0, 32.0]]
    )  # image 32 px, protos 8 px
    masks = assemble_masks(protos, coeffs, boxes, image_size=32, threshold=0.5)
    assert masks.shape == (2, 32, 32) and masks.dtype == torch.bool
    assert masks[0, :16, :16].all() and not masks[0, 24:, :].any() and not masks[0, :, 24:].any()
    assert not masks[1].any()  # negative coefficient: probabilities below 0.5
    out = assemble_masks(protos, coeffs[:1], boxes[:1], image_size=32, out_size=(64, 48))
    assert out.shape == (1, 64, 48)
    assert assemble_masks(protos, torch.zeros(0, 2), torch.zeros(0, 4), 32).shape == (0, 32, 32)


def _boundary(masks: torch.Tensor) -> torch.Tensor:
    """Pixels within one pixel (8-neighbourhood) of both a mask pixel and a background pixel."""
    m = masks[:, None].float()
    grown = torch.nn.functional.max_pool2d(m, 3, stride=1, padding=1)
    shrunk = -torch.nn.functional.max_pool2d(-m, 3, stride=1, padding=1)
    return (grown > shrunk)[:, 0]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("out_size", [None, (97, 131), (400, 300)])
def test_paste_in_box_equals_full_upsampling(seed, out_size):
    """Masks assembled inside their boxes equal the full-image upsampling up to the boundary."""
    g = torch.Generator().manual_seed(seed)
    size, hp, num = 160, 40, 30
    protos = torch.randn(hp, hp, 8, generator=g) * 2
    coeffs = torch.randn(num, 8, generator=g)
    xy = torch.rand(num, 2, generator=g) * size * 1.1 - 0.05 * size  # some boxes leave the image
    wh = torch.rand(num, 2, generator=g) * size * 0.7
    boxes = torch.cat([xy, xy + wh], dim=1)
    boxes[0] = torch.tensor([-5.0, -5.0, size + 5.0, size + 5.0])  # beyond every side
    boxes[1] = torch.tensor([50.0, 60.0, 50.0, 60.0])  # zero area
    full = assemble_masks(protos, coeffs, boxes, size, out_size, paste_in_box=False)
    pasted = assemble_masks(protos, coeffs, boxes, size, out_size, paste_in_box=True)
    assert pasted.shape == full.shape and pasted.dtype == torch.bool
    differ = pasted ^ full
    assert not (differ & ~_boundary(full)).any()
    assert differ.sum() <= max(1, full.sum() // 10_000)  # ties on the threshold only
    assert full.any()  # the comparison is not vacuous


def test_paste_in_box_hand_computed():
    """A constant prototype map cropped to a box: the mask is the box's upsampled crop."""
    protos = torch.full((8, 8, 1), 10.0)
    box = torch.tensor([[8.0, 8.0, 16.0, 16.0]])  # prototype pixels 2-3, padded to 1-4
    full = assemble_masks(protos, torch.ones(1, 1), box, 32, paste_in_box=False)
    pasted = assemble_masks(protos, torch.ones(1, 1), box, 32, paste_in_box=True)
    assert torch.equal(pasted, full)
    rows = pasted[0].any(1).nonzero()
    # crop [1, 5) at 8 px scale 4: pixels 4..19 read it with weight > 0.5 -> rows 4..19 (+/- half)
    assert rows.min().item() in (3, 4) and rows.max().item() in (19, 20)
    assert not pasted[0, :2].any() and not pasted[0, 24:].any()
    empty = assemble_masks(protos, torch.zeros(0, 1), torch.zeros(0, 4), 32, paste_in_box=True)
    assert empty.shape == (0, 32, 32)


# --------------------------------------------------------------------------- Fast NMS


def _boxes(*rows):
    return torch.tensor(rows, dtype=torch.float32)


def test_fast_nms_suppresses_chains_that_greedy_nms_keeps():
    # A overlaps B (IoU 0.6), B overlaps C (IoU 0.6), A and C barely (IoU 0.25)
    boxes = _boxes([0, 0, 10, 10], [2.5, 0, 12.5, 10], [5, 0, 15, 10])
    scores = torch.tensor([[0.9], [0.8], [0.7]])
    idx, kept_scores, labels = fast_nms(boxes, scores, iou_threshold=0.5, top_k=200)
    greedy = batched_nms(boxes, scores[:, 0], torch.zeros(3, dtype=torch.long), 0.5)
    assert greedy.tolist() == [0, 2]  # greedy NMS: B is gone, so C survives
    assert idx.tolist() == [0]  # Fast NMS: C is suppressed by the suppressed B
    assert kept_scores.tolist() == pytest.approx([0.9]) and labels.tolist() == [0]


def test_fast_nms_agrees_with_greedy_nms_without_chains():
    g = torch.Generator().manual_seed(0)
    # well-separated clusters of 3 heavily overlapping boxes each, 2 classes
    centres = torch.arange(8, dtype=torch.float32)[:, None] * 100
    jitter = torch.rand(8, 3, 2, generator=g) * 2
    xy = centres[:, None, :] + jitter
    boxes = torch.cat([xy, xy + 30], dim=2).reshape(-1, 4)
    scores = torch.rand(24, 2, generator=g)
    idx, kept, labels = fast_nms(boxes, scores, iou_threshold=0.5, top_k=200)
    n, c = scores.shape
    flat_boxes = boxes.repeat_interleave(c, dim=0)
    flat_scores, flat_labels = scores.reshape(-1), torch.arange(c).repeat(n)
    keep = batched_nms(flat_boxes, flat_scores, flat_labels, 0.5)
    expected = {(int(k) // c, int(k) % c) for k in keep}
    assert set(zip(idx.tolist(), labels.tolist())) == expected
    assert torch.all(kept[:-1] >= kept[1:])
    assert len(expected) == 16  # one box per cluster and class


def test_fast_nms_top_k_score_threshold_and_max_dets():
    boxes = torch.tensor([[i * 20.0, 0, i * 20.0 + 10, 10] for i in range(10)])
    scores = torch.linspace(0.1, 1.0, 10)[:, None].repeat(1, 3)
    idx, kept, labels = fast_nms(boxes, scores, 0.5, top_k=4)
    assert len(idx) == 12 and set(idx.tolist()) == {6, 7, 8, 9}
    idx, kept, _ = fast_nms(boxes, scores, 0.5, top_k=200, score_threshold=0.75)
    assert set(idx.tolist()) == {7, 8, 9} and (kept > 0.75).all()
    idx, kept, _ = fast_nms(boxes, scores, 0.5, top_k=200, max_dets=5)
    assert len(idx) == 5 and kept.min() == pytest.approx(0.9)
    empty = fast_nms(torch.zeros(0, 4), torch.zeros(0, 3), 0.5, 200)
    assert all(t.numel() == 0 for t in empty)
    with pytest.raises(ValueError, match="scores"):
        fast_nms(boxes, scores[:5], 0.5, 200)


# --------------------------------------------------------------------------- postprocess


def _outputs(num_anchors=3, num_logits=3, protos_side=8, num_protos=2):
    return {
        "cls_logits": torch.full((1, num_anchors, num_logits), -10.0),
        "box_deltas": torch.zeros(1, num_anchors, 4),
        "coeffs": torch.zeros(1, num_anchors, num_protos),
        "protos": torch.zeros(1, protos_side, protos_side, num_protos),
    }


def test_postprocess_softmax_picks_the_confident_anchor():
    anchors = _boxes([0, 0, 16, 16], [8, 8, 24, 24], [16, 16, 32, 32])
    out = _outputs()
    out["cls_logits"][0, :, 0] = 10.0  # background everywhere ...
    out["cls_logits"][0, 1] = torch.tensor([0.0, 0.0, 10.0])  # ... but anchor 1 is class index 2
    out["coeffs"][0, 1] = torch.tensor([1.0, 0.0])
    out["protos"][0, :, :, 0] = 10.0
    (det,) = postprocess(out, anchors, PostprocessConfig(), image_size=32)
    assert det["labels"].tolist() == [1]  # contiguous label: softmax index 2 minus background
    assert det["boxes"].tolist() == [[8.0, 8.0, 24.0, 24.0]]
    assert det["scores"].item() == pytest.approx(1.0, abs=1e-3)
    assert det["masks"].shape == (1, 32, 32)
    assert det["masks"][0, 8:24, 8:24].all() and not det["masks"][0, :4].any()
    (scaled,) = postprocess(out, anchors, PostprocessConfig(), image_size=32, out_size=(64, 96))
    assert scaled["boxes"].tolist() == [[24.0, 16.0, 72.0, 48.0]]
    assert scaled["masks"].shape == (1, 64, 96)


def test_postprocess_sigmoid_and_threshold():
    anchors = _boxes([0, 0, 16, 16], [8, 8, 24, 24], [16, 16, 32, 32])
    out = _outputs(num_logits=2)
    out["cls_logits"][0, 2, 0] = 0.0  # sigmoid 0.5
    cfg = PostprocessConfig(score_thr=0.4, score_activation="sigmoid")
    (det,) = postprocess(out, anchors, cfg, image_size=32)
    assert det["labels"].tolist() == [0] and det["scores"].tolist() == pytest.approx([0.5])
    (none,) = postprocess(
        out, anchors, PostprocessConfig(score_thr=0.6, score_activation="sigmoid"), 32
    )
    assert none["boxes"].shape == (0, 4) and none["masks"].shape == (0, 32, 32)


def test_postprocess_rejects_wrong_inputs():
    out = _outputs()
    with pytest.raises(ValueError, match="anchors"):
        postprocess(out, torch.zeros(5, 4), PostprocessConfig(), 32)
    del out["protos"]
    with pytest.raises(ValueError, match="protos"):
        postprocess(out, torch.zeros(3, 4), PostprocessConfig(), 32)


def test_mask_assembly_default_is_paste_in_box_on_the_cpu(monkeypatch):
    import importlib

    pp = importlib.import_module("gmaiou.models.postprocess")  # the module, not the function
    calls = []
    original = pp._paste_in_box
    monkeypatch.setattr(pp, "_paste_in_box", lambda *a: calls.append(1) or original(*a))
    g = torch.Generator().manual_seed(3)
    protos, coeffs = torch.randn(20, 20, 4, generator=g) * 3, torch.randn(5, 4, generator=g)
    boxes = torch.tensor([[10.0, 12.0, 50.0, 70.0]]).repeat(5, 1) + torch.arange(5.0)[:, None]
    default = assemble_masks(protos, coeffs, boxes, 80, (90, 110))
    assert calls == [1]
    assert torch.equal(
        default, assemble_masks(protos, coeffs, boxes, 80, (90, 110), paste_in_box=True)
    )
    assemble_masks(protos, coeffs, boxes, 80, (90, 110), paste_in_box=False)
    assert calls == [1, 1]  # the explicit paste above, not the whole-map assembly
