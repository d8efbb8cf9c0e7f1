"""YOLACT / GmaYOLACT: output shapes, training on one synthetic batch, predict, weights loading."""

from __future__ import annotations

import dataclasses
import math
import urllib.error

import numpy as np
import pytest
import torch
import torchvision

from gmaiou.anchors import atss_anchors, feature_map_sizes, yolact_anchors
from gmaiou.assigners import IGNORED, ATSSAssigner, MaxIoUAssigner
from gmaiou.configs import Config, get_config
from gmaiou.measure import MaskIntegrals
from gmaiou.models import YOLACT, build_model, resolve_weights
from gmaiou.models.backbone import IMAGENET_WEIGHTS, ModulatedDeformConv2d
from gmaiou.models.carafe import CARAFE, carafe_reassemble, carafe_reassemble_shifted
from gmaiou.models.fpn import FPN
from gmaiou.models.heads import SemanticHead
from gmaiou.models.postprocess import top_k_per_level
from gmaiou.models.yolact import _downsample_masks
from gmaiou.shapes import random_shape, tight_box

SIZE = 96
NUM_CLASSES = 3


def small_config(name: str, size: int = SIZE, num_classes: int = NUM_CLASSES) -> Config:
    cfg = get_config(name).with_num_classes(num_classes)
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, image_size=size))


def synthetic_batch(
    num_images: int = 2, per_image: int = 3, size: int = SIZE, seed: int = 0, integrals: bool = True
) -> dict:
    """Irregular shapes from :mod:`gmaiou.shapes`, with the keys of ``collate_instances``."""
    rng = np.random.default_rng(seed)
    boxes, labels, masks = [], [], []
    for _ in range(num_images):
        shapes = []
        while len(shapes) < per_image:
            m = random_shape(
                (size, size),
                rng,
                size=float(rng.uniform(0.25, 0.6) * size),
                centre=(float(rng.uniform(0.3, 0.7) * size), float(rng.uniform(0.3, 0.7) * size)),
            )
            if m.sum() >= 16:
                shapes.append(m)
        masks.append(torch.from_numpy(np.stack(shapes)))
        boxes.append(torch.from_numpy(np.stack([tight_box(m) for m in shapes])))
        labels.append(torch.from_numpy(rng.integers(0, NUM_CLASSES, per_image)).long())
    generator = torch.Generator().manual_seed(seed)
    return {
        "images": torch.randn(num_images, 3, size, size, generator=generator),
        "boxes": boxes,
        "labels": labels,
        "masks": masks,
        "crowd_boxes": [torch.zeros(0, 4) for _ in range(num_images)],
        "image_ids": list(range(num_images)),
        "mask_integrals": [MaskIntegrals(m, b) for m, b in zip(masks, boxes)]
        if integrals
        else None,
    }


@pytest.mark.parametrize(
    "name, anchors_per_location, outputs",
    [
        ("yolact-fixed-r18-160", 3, NUM_CLASSES + 1),
        ("yolact-atss-gmaiou-r34-160", 1, NUM_CLASSES + 1),
        ("gmayolact-atss-gmaiou-r18-160", 2, NUM_CLASSES),
    ],
)
def test_output_shapes(name, anchors_per_location, outputs):
    torch.manual_seed(0)
    config = small_config(name)
    model = build_model(config)
    assert isinstance(model, YOLACT)
    sides = feature_map_sizes(SIZE)
    num_anchors = anchors_per_location * sum(s * s for s in sides)
    assert (
        len(model.anchors) == num_anchors
        and model.anchors.anchors_per_location == anchors_per_location
    )
    images = torch.randn(2, 3, SIZE, SIZE)
    out = model(images)
    assert out["cls_logits"].shape == (2, num_anchors, outputs)
    assert out["box_deltas"].shape == (2, num_anchors, 4)
    assert out["coeffs"].shape == (2, num_anchors, 32)
    assert out["coeffs"].abs().max() <= 1  # tanh
    scale = config.model.proto_scale  # CPU presets: 8 (prototypes at stride 1)
    assert out["protos"].shape == (2, scale * sides[0], scale * sides[0], 32)
    assert out["protos"].min() >= 0  # ReLU
    assert out["semantic"].shape == (2, NUM_CLASSES, sides[0], sides[0])
    model.eval()
    with torch.no_grad():
        assert "semantic" not in model(images)


def test_anchor_grids_match_the_config():
    fixed = build_model(get_config("yolact-fixed-r50-550"))
    assert len(fixed.anchors) == 19248
    assert torch.equal(fixed.anchors.anchors, yolact_anchors(550).anchors)
    atss = build_model(get_config("yolact-atss-iou-r18-320"))
    assert torch.equal(atss.anchors.anchors, atss_anchors(320).anchors)
    gma = build_model(get_config("gmayolact-atss-gmaiou-r18-160"))
    assert torch.equal(gma.anchors.anchors, atss_anchors(160, scales_per_octave=2).anchors)


def test_paper_presets_use_the_maiou_code_anchors():
    fixed = build_model(get_config("yolact-fixed-r50-700"))
    assert torch.equal(fixed.anchors.anchors, yolact_anchors(700, reference_size=550).anchors)
    atss = build_model(get_config("yolact-atss-gmaiou-r50-400"))
    expected = atss_anchors(400, offset=0.0, strides="exact")
    assert torch.equal(atss.anchors.anchors, expected.anchors)
    # CPU presets: the 550 sides at the image's own strides (docs/recipe.md).
    cpu = build_model(get_config("yolact-fixed-r18-320"))
    assert torch.equal(cpu.anchors.anchors, yolact_anchors(320, base_size=24 * 550 / 320).anchors)


def test_head_init_follows_the_config():
    torch.manual_seed(0)
    paper = build_model(small_config("yolact-atss-gmaiou-r50-550"))
    cpu = build_model(small_config("yolact-atss-gmaiou-r18-160"))
    # Xavier-uniform bound sqrt(6 / (fan_in + fan_out)) for the 3x3 class conv
    conv = paper.head.cls
    weight = conv.weight.detach()
    fan_in, fan_out = conv.in_channels * 9, conv.out_channels * 9
    bound = (6 / (fan_in + fan_out)) ** 0.5
    assert 0.9 * bound < float(weight.abs().max()) <= bound
    assert float(paper.semantic_head.conv.bias.detach().abs().max()) == 0.0
    assert float(cpu.head.cls.weight.detach().std()) == pytest.approx(0.01, rel=0.1)
    assert float(cpu.semantic_head.conv.bias.detach()[0]) == pytest.approx(-math.log(99), rel=1e-6)
    with pytest.raises(ValueError, match="init"):
        SemanticHead(8, 3, init="kaiming")


def test_bilinear_target_downsampling_thresholds_at_half():
    # One 4x4 mask, a 2x2 block on at the top-left: bilinear to 2x2 samples the centre of
    # each 2x2 quarter, so only the top-left quarter is on; a 1-pixel line is dropped.
    mask = torch.zeros(2, 4, 4, dtype=torch.bool)
    mask[0, :2, :2] = True
    mask[1, 1, :] = True
    small = _downsample_masks(mask, (2, 2), "bilinear")
    assert small.tolist() == [[[1.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]]
    # area agrees here: the block fills its cell, the line covers half of two cells
    assert _downsample_masks(mask, (2, 2), "area").tolist() == small.tolist()
    odd = torch.zeros(1, 5, 5, dtype=torch.bool)
    odd[0, :3, :3] = True
    assert _downsample_masks(odd, (2, 2), "bilinear").tolist() == [[[1.0, 0.0], [0.0, 0.0]]]
    assert _downsample_masks(odd[:0], (2, 2), "bilinear").shape == (0, 2, 2)
    with pytest.raises(ValueError, match="mode"):
        _downsample_masks(odd, (2, 2), "nearest")


def test_top_k_per_level_keeps_each_levels_best():
    size = 64  # levels of 8, 4, 2, 1, 1 cells a side: 64, 16, 4, 1, 1 anchors (one per cell)
    scores = torch.arange(86, dtype=torch.float32).flip(0)  # decreasing
    keep = top_k_per_level(scores, size, 2)
    starts = [0, 64, 80, 84, 85]
    expected = torch.zeros(86, dtype=torch.bool)
    for start, count in zip(starts, (64, 16, 4, 1, 1)):
        expected[start : start + min(2, count)] = True
    assert torch.equal(keep, expected)
    assert top_k_per_level(scores, size, 1000).all()
    with pytest.raises(ValueError, match="tile"):
        top_k_per_level(scores[:-1], size, 2)


def test_paper_model_feature_maps_at_550():
    model = build_model(get_config("yolact-fixed-r50-550")).eval()
    with torch.no_grad():
        levels = model.fpn(model.backbone(torch.zeros(1, 3, 550, 550)))
    assert [tuple(p.shape[-2:]) for p in levels] == [(s, s) for s in (69, 35, 18, 9, 5)]
    assert all(p.shape[1] == 256 for p in levels)


def test_wrong_image_size_is_a_clear_error():
    model = build_model(small_config("yolact-fixed-r18-160"))
    with pytest.raises(ValueError, match=r"\[B, 3, 96, 96\]"):
        model(torch.zeros(1, 3, 64, 64))


def _train_losses(
    cfg: Config, batch: dict, steps: int = 6, lr: float = 4e-3
) -> list[dict[str, float]]:
    """A few SGD steps (momentum 0.9, gradient clipping at 35 as in training) on one batch."""
    torch.manual_seed(0)
    model = build_model(cfg)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    history = []
    for _ in range(steps):
        losses = model.loss(model(batch["images"]), batch)
        assert set(losses) == {"loss", "cls", "box", "mask", "semantic"}
        assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
        opt.zero_grad()
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 35.0)
        opt.step()
        history.append({k: float(v.detach()) for k, v in losses.items()})
    return history


@pytest.mark.parametrize(
    "name",
    [
        "yolact-fixed-r18-160",
        "yolact-atss-iou-r18-160",
        "yolact-atss-giou-r18-160",
        "yolact-atss-diou-r18-160",
        "yolact-atss-maiou-r18-160",
        "yolact-atss-gmaiou-r18-160",
        "gmayolact-atss-gmaiou-r18-160",
    ],
)
def test_loss_decreases_on_one_batch(name):
    history = _train_losses(small_config(name), synthetic_batch(), steps=6)
    first, last = history[0], history[-1]
    assert last["loss"] < 0.8 * first["loss"], [h["loss"] for h in history]
    assert last["cls"] < first["cls"]


@pytest.mark.parametrize(
    "name",
    ["yolact-fixed-r50-700", "yolact-atss-gmaiou-r50-400", "gmayolact-atss-gmaiou-r50-550"],
)
def test_paper_presets_train_a_step_with_finite_losses(name):
    # The paper settings together (FPN_CARAFE, Xavier heads, anchors at j * stride that
    # reach outside the image, bilinear targets) on a small image.
    history = _train_losses(small_config(name), synthetic_batch(), steps=2)
    assert all(math.isfinite(v) for h in history for v in h.values())
    model = build_model(small_config(name)).eval()
    detections = model.predict(synthetic_batch()["images"])
    assert len(detections) == 2 and all(d["boxes"].shape[1] == 4 for d in detections)


# --------------------------------------------------------------------------- assignment inside the loss


def test_assignment_follows_the_configured_assigner_and_measure():
    batch = synthetic_batch(num_images=2, per_image=5, size=160, seed=0)
    results = {}
    for name in ("fixed", "atss-iou", "atss-giou", "atss-diou", "atss-maiou", "atss-gmaiou"):
        model = build_model(small_config(f"yolact-{name}-r18-160", size=160))
        got = model.assign(batch)
        grid = model.anchors
        if name == "fixed":
            assigner = MaxIoUAssigner(0.5, 0.4, 0.0)
        else:
            assigner = ATSSAssigner(9, model.config.assigner.measure)
        for i in range(2):
            ref = assigner.assign(grid, batch["boxes"][i], batch["masks"][i])
            assert torch.equal(got[i], ref.gt_inds)
        results[name] = got
    # on irregular shapes the measures pick different positives
    assert not torch.equal(results["atss-iou"], results["atss-gmaiou"])
    assert not torch.equal(results["atss-maiou"], results["atss-gmaiou"])


def test_masks_or_prebuilt_integrals_give_the_same_assignment():
    model = build_model(small_config("yolact-atss-gmaiou-r18-160"))
    with_integrals = synthetic_batch(integrals=True)
    with_masks = synthetic_batch(integrals=False)
    assert torch.equal(model.assign(with_integrals), model.assign(with_masks))
    del with_masks["masks"]
    with pytest.raises(ValueError, match="needs GT masks"):
        model.assign(with_masks)


def test_anchors_mostly_inside_a_crowd_box_are_ignored():
    model = build_model(small_config("yolact-fixed-r18-160"))
    batch = synthetic_batch(num_images=1)
    plain = model.assign(batch)[0]
    batch["crowd_boxes"] = [torch.tensor([[0.0, 0.0, 40.0, 40.0]])]
    crowded = model.assign(batch)[0]
    anchors = model.anchors.anchors
    inside = (
        (anchors[:, 0] >= 0) & (anchors[:, 1] >= 0) & (anchors[:, 2] <= 40) & (anchors[:, 3] <= 40)
    )
    assert bool((inside & (plain < 0)).any())
    assert (crowded[inside & (plain < 0)] == IGNORED).all()
    assert torch.equal(crowded[plain >= 0], plain[plain >= 0])  # positives stay positive
    # anchors with at most 70% of their area in the crowd box keep their label
    crowd = torch.tensor([0.0, 0.0, 40.0, 40.0])
    wh = (
        torch.minimum(anchors[:, 2:], crowd[2:]) - torch.maximum(anchors[:, :2], crowd[:2])
    ).clamp(min=0)
    iof = wh.prod(1) / (anchors[:, 2:] - anchors[:, :2]).prod(1)
    assert torch.equal(crowded[iof <= 0.7], plain[iof <= 0.7])
    assert bool((crowded != plain).any())


@pytest.mark.parametrize(
    "name", ["yolact-fixed-r18-160", "yolact-atss-gmaiou-r18-160", "gmayolact-atss-gmaiou-r18-160"]
)
def test_images_without_objects(name):
    model = build_model(small_config(name))
    batch = synthetic_batch()
    batch["boxes"][1] = torch.zeros(0, 4)
    batch["labels"][1] = torch.zeros(0, dtype=torch.long)
    batch["masks"][1] = torch.zeros(0, SIZE, SIZE, dtype=torch.bool)
    batch["mask_integrals"][1] = MaskIntegrals(batch["masks"][1])
    losses = model.loss(model(batch["images"]), batch)
    assert all(torch.isfinite(v) for v in losses.values()) and losses["loss"] > 0
    empty = {
        **batch,
        "boxes": [batch["boxes"][1]] * 2,
        "labels": [batch["labels"][1]] * 2,
        "masks": [batch["masks"][1]] * 2,
        "mask_integrals": [batch["mask_integrals"][1]] * 2,
    }
    losses = model.loss(model(batch["images"]), empty)
    assert losses["cls"] == 0 and losses["box"] == 0 and losses["mask"] == 0
    losses["loss"].backward()  # still a graph: the semantic head learns "nothing here"
    assert model.semantic_head.conv.weight.grad.abs().sum() > 0


def test_bad_batches_are_clear_errors():
    model = build_model(small_config("yolact-fixed-r18-160"))
    batch = synthetic_batch()
    out = model(batch["images"])
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        model.loss(out, {**batch, "labels": [lab + 3 for lab in batch["labels"]]})
    with pytest.raises(ValueError, match="masks"):
        model.loss(out, {**batch, "masks": [m[:, :50] for m in batch["masks"]]})
    with pytest.raises(ValueError, match="box lists"):
        model.loss(out, {**batch, "boxes": batch["boxes"][:1]})
    model.eval()
    with torch.no_grad(), pytest.raises(ValueError, match="training-mode"):
        model.loss(model(batch["images"]), batch)


# --------------------------------------------------------------------------- inference


@pytest.mark.parametrize("name", ["yolact-fixed-r18-160", "gmayolact-atss-gmaiou-r18-160"])
def test_predict_returns_detections_per_image(name):
    cfg = small_config(name)
    cfg = dataclasses.replace(cfg, postprocess=dataclasses.replace(cfg.postprocess, score_thr=0.0))
    torch.manual_seed(0)
    model = build_model(cfg).train()
    images = torch.randn(2, 3, SIZE, SIZE)
    dets = model.predict(images)
    assert model.training  # restored
    assert len(dets) == 2
    for det in dets:
        n = det["boxes"].shape[0]
        assert 0 < n <= cfg.postprocess.max_dets
        assert det["scores"].shape == det["labels"].shape == (n,)
        assert det["masks"].shape == (n, SIZE, SIZE) and det["masks"].dtype == torch.bool
        assert (det["labels"] >= 0).all() and (det["labels"] < NUM_CLASSES).all()
        assert (det["boxes"] >= 0).all() and (det["boxes"] <= SIZE).all()
        assert torch.all(det["scores"][:-1] >= det["scores"][1:])
    big = model.predict(images[:1], out_size=(2 * SIZE, 3 * SIZE))[0]
    assert big["masks"].shape[1:] == (2 * SIZE, 3 * SIZE)


# --------------------------------------------------------------------------- weights


def test_weights_missing_file_is_named(tmp_path):
    missing = tmp_path / "nope.pt"
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        build_model(small_config("yolact-fixed-r18-160"), weights=missing)


def test_torchvision_resnet_weights_load_into_the_backbone(tmp_path):
    resnet = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(resnet.state_dict(), path)
    for name in ("yolact-fixed-r18-160", "gmayolact-atss-gmaiou-r18-160"):
        model = build_model(small_config(name), weights=path)
        assert torch.equal(model.backbone.layer3[1].conv2.weight, resnet.layer3[1].conv2.weight)
        assert torch.equal(model.backbone.conv1.weight, resnet.conv1.weight)
    with pytest.raises(ValueError, match="ResNet"):
        build_model(small_config("yolact-fixed-r50-550"), weights=path)  # r18 weights, r50 model


def test_full_checkpoint_round_trip(tmp_path):
    cfg = small_config("yolact-atss-gmaiou-r18-160")
    torch.manual_seed(1)
    model = build_model(cfg).eval()
    path = tmp_path / "checkpoint.pt"
    torch.save({"model": model.state_dict(), "iteration": 3}, path)
    torch.manual_seed(2)
    again = build_model(cfg, weights=path).eval()
    images = torch.randn(1, 3, SIZE, SIZE)
    with torch.no_grad():
        a, b = model(images), again(images)
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="classes"):
        build_model(cfg.with_num_classes(5), weights=path)
    garbage = tmp_path / "garbage.pt"
    torch.save({"model": [1, 2, 3]}, garbage)
    with pytest.raises(ValueError, match="no state dict"):
        build_model(cfg, weights=garbage)


def _cache_imagenet(torch_home, name: str, seed: int = 0) -> torch.nn.Module:
    """A random ResNet saved where torchvision's weights API looks for the ImageNet file."""
    torch.manual_seed(seed)
    resnet = getattr(torchvision.models, name)(weights=None)
    url = IMAGENET_WEIGHTS[{"resnet18": "r18", "resnet50": "r50"}[name]].url
    checkpoints = torch_home / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    torch.save(resnet.state_dict(), checkpoints / url.rsplit("/", 1)[-1])
    return resnet


def test_imagenet_weights_come_from_the_torch_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    resnet = _cache_imagenet(tmp_path, "resnet18")
    for name in ("yolact-fixed-r18-160", "gmayolact-atss-gmaiou-r18-160"):
        model = build_model(small_config(name), weights="imagenet")
        assert torch.equal(model.backbone.layer4[0].conv2.weight, resnet.layer4[0].conv2.weight)
        assert torch.equal(model.backbone.bn1.running_mean, resnet.bn1.running_mean)
    # "none" and None keep the random initialisation
    for weights in ("none", None):
        model = build_model(small_config("yolact-fixed-r18-160"), weights=weights)
        assert not torch.equal(model.backbone.conv1.weight, resnet.conv1.weight)


def test_imagenet_weights_offline_error_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(FileNotFoundError, match="--weights none") as err:
        build_model(small_config("yolact-fixed-r18-160"), weights="imagenet")
    assert "resnet18-f37072fd.pth" in str(err.value) and "--weights PATH" in str(err.value)


def test_paper_presets_start_from_imagenet_and_cpu_presets_from_random():
    assert resolve_weights(get_config("gmayolact-atss-gmaiou-r50-550"), None) == "imagenet"
    assert resolve_weights(get_config("yolact-fixed-r101-700"), None) == "imagenet"
    assert resolve_weights(get_config("yolact-fixed-r18-160"), None) == "none"
    assert resolve_weights(get_config("yolact-fixed-r50-550"), "none") == "none"


# --------------------------------------------------------------------------- GmaYOLACT parts


def test_gmayolact_has_dcn_in_the_last_three_stages_and_carafe_in_the_fpn():
    model = build_model(small_config("gmayolact-atss-gmaiou-r18-160"))
    assert not any(isinstance(m, ModulatedDeformConv2d) for m in model.backbone.layer1.modules())
    for layer in (model.backbone.layer2, model.backbone.layer3, model.backbone.layer4):
        assert all(isinstance(block.conv2, ModulatedDeformConv2d) for block in layer)
    assert sum(isinstance(m, CARAFE) for m in model.fpn.modules()) == 2
    plain = build_model(small_config("yolact-atss-gmaiou-r18-160"))
    assert not any(isinstance(m, (ModulatedDeformConv2d, CARAFE)) for m in plain.modules())


def test_fpn_carafe_joins_p6_p7_to_the_top_down_path():
    # mmdetection's FPN_CARAFE (paper GmaYOLACT): 4 upsamplers, 5 output convs, and the
    # P6/P7 laterals feed the finer levels; the CPU layout keeps P6/P7 outside the path.
    torch.manual_seed(0)
    feats = [torch.randn(1, c, f, f) for c, f in ((8, 18), (16, 9), (32, 5))]  # P6 3, P7 2
    fused = FPN((8, 16, 32), 4, upsample="carafe", extras="top-down")
    separate = FPN((8, 16, 32), 4, upsample="carafe", extras="separate")
    assert (len(fused.carafe), len(fused.output)) == (4, 5)
    assert (len(separate.carafe), len(separate.output)) == (2, 3)
    for fpn in (fused, separate):
        outs = fpn(feats)
        assert [tuple(o.shape[-2:]) for o in outs] == [(18, 18), (9, 9), (5, 5), (3, 3), (2, 2)]
    with torch.no_grad():
        before = fused(feats)
        fused.p7.weight.add_(1.0)
        after = fused(feats)
        changed = [not torch.allclose(a, b) for a, b in zip(before, after)]
        assert changed == [True, True, True, True, True]
        before = separate(feats)
        separate.p7.weight.add_(1.0)
        after = separate(feats)
        changed = [not torch.allclose(a, b) for a, b in zip(before, after)]
        assert changed == [False, False, False, False, True]
    # Hand-built top-down pass with the module's own convs (bilinear upsampling).
    fpn = FPN((8, 16, 32), 4, upsample="bilinear", extras="top-down")
    with torch.no_grad():
        lat = [conv(f) for conv, f in zip(fpn.lateral, feats)]
        lat += [fpn.p6(feats[2])]
        lat += [fpn.p7(lat[3])]
        for i in (4, 3, 2, 1):
            lat[i - 1] = lat[i - 1] + torch.nn.functional.interpolate(
                lat[i], size=lat[i - 1].shape[-2:], mode="bilinear", align_corners=False
            )
        expected = [conv(x) for conv, x in zip(fpn.output, lat)]
        assert all(torch.allclose(a, b) for a, b in zip(fpn(feats), expected))
    with pytest.raises(ValueError, match="extras"):
        FPN((8, 16, 32), 4, extras="bottom-up")


def test_paper_gmayolact_uses_fpn_carafe_and_cpu_gmayolact_keeps_its_fpn():
    assert get_config("gmayolact-atss-gmaiou-r50-550").model.fpn_extras == "top-down"
    assert get_config("yolact-atss-gmaiou-r50-550").model.fpn_extras == "separate"
    model = build_model(small_config("gmayolact-atss-gmaiou-r18-160"))
    assert model.fpn.extras == "separate" and len(model.fpn.carafe) == 2


def test_dcn_starts_as_its_conv_with_half_modulation_and_learns_offsets():
    conv = torch.nn.Conv2d(8, 6, 3, stride=2, padding=1, bias=False)
    dcn = ModulatedDeformConv2d.from_conv(conv, offset_groups=2)
    x = torch.randn(2, 8, 11, 11)
    assert torch.allclose(dcn(x), 0.5 * conv(x), atol=1e-5)  # zero offsets, sigmoid(0) modulation
    dcn(x).square().sum().backward()
    assert dcn.offset_conv.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="offset_groups"):
        ModulatedDeformConv2d(6, 6, offset_groups=4)


def test_carafe_reassembly_matches_the_definition():
    g = torch.Generator().manual_seed(0)
    b, c, h, w, k, s = 1, 2, 3, 4, 3, 2
    x = torch.randn(b, c, h, w, generator=g)
    kernels = torch.rand(b, k * k, s * h, s * w, generator=g)
    got = carafe_reassemble(x, kernels, k, s)
    expected = torch.zeros(b, c, s * h, s * w)
    r = k // 2
    for i2 in range(s * h):
        for j2 in range(s * w):
            i, j = i2 // s, j2 // s
            for u in range(k):
                for v in range(k):
                    y, xx = i + u - r, j + v - r
                    if 0 <= y < h and 0 <= xx < w:
                        expected[:, :, i2, j2] += (
                            kernels[:, u * k + v, i2, j2, None] * x[:, :, y, xx]
                        )
    assert torch.allclose(got, expected, atol=1e-6)
    with pytest.raises(ValueError, match="kernels"):
        carafe_reassemble(x, kernels[:, :4], k, s)


@pytest.mark.parametrize("k, s, h, w", [(5, 2, 4, 6), (3, 2, 1, 1), (3, 3, 3, 2)])
def test_fused_carafe_matches_the_shifted_sum_in_values_and_gradients(k, s, h, w):
    g = torch.Generator().manual_seed(k + s)
    x = torch.randn(2, 3, h, w, generator=g, requires_grad=True)
    kernels = torch.rand(2, k * k, s * h, s * w, generator=g).softmax(1).requires_grad_()
    grad = torch.randn(2, 3, s * h, s * w, generator=g)
    results = []
    for fn in (carafe_reassemble, carafe_reassemble_shifted):
        out = fn(x, kernels, k, s)
        gx, gk = torch.autograd.grad(out, (x, kernels), grad)
        results.append((out, gx, gk))
    for fused, shifted in zip(*results):
        assert torch.allclose(fused, shifted, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="kernels"):
        carafe_reassemble(x, kernels[:, :4], k, s)


def test_carafe_module_upsamples_with_normalised_kernels():
    up = CARAFE(16, scale=2, up_kernel=5, encoder_kernel=3, compressed_channels=8)
    x = torch.randn(2, 16, 5, 7)
    kernels = up.kernels(x)
    assert kernels.shape == (2, 25, 10, 14)
    assert torch.allclose(kernels.sum(1), torch.ones(2, 10, 14), atol=1e-5)
    out = up(x)
    assert out.shape == (2, 16, 10, 14)
    const = torch.ones(1, 16, 6, 6)  # far from the border, near-uniform kernels keep a constant
    assert torch.allclose(up(const)[..., 4:8, 4:8], torch.ones(1, 16, 4, 4), atol=1e-3)
