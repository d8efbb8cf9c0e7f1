"""CUDA against the CPU: the measure's raw-mask path, half precision, training and inference.

Skipped on a machine without a GPU (CI's); run on a lent GPU with ``pytest -m cuda``.
TF32 is switched off in these tests so that the GPU's float32 convolutions and matrix
products are compared with the CPU's at float32 tolerance.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import random_anchors, random_instances
from test_models import small_config, synthetic_batch

from gmaiou.assigners import ATSSAssigner
from gmaiou.measure import gmaiou, gmaiou_bruteforce, grouped_gmaiou, mob_ratio
from gmaiou.models import build_model
from gmaiou.models.postprocess import assemble_masks
from gmaiou.training.trainer import _to_device

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine"),
]

CUDA = torch.device("cuda")


@pytest.fixture(autouse=True)
def no_tf32():
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.mark.parametrize("polygon", ["mask", "box"])
@pytest.mark.parametrize("seed", range(3))
def test_grouped_gmaiou_from_raw_masks_on_cuda_equals_bruteforce(polygon, seed):
    rng = np.random.default_rng(seed)
    g, k, h, w = 12, 9, 120, 150
    boxes, masks = random_instances(rng, g, h, w)
    candidates = random_anchors(rng, g * k, h, w).view(g, k, 4)
    got = grouped_gmaiou(boxes.to(CUDA), masks.to(CUDA), candidates.to(CUDA), polygon)
    assert got.device.type == "cuda" and got.shape == (g, k)
    expected = torch.stack(
        [gmaiou_bruteforce(boxes, masks, candidates[i], polygon)[i] for i in range(g)]
    )
    torch.testing.assert_close(got.cpu(), expected, atol=1e-6, rtol=0)


def test_half_precision_on_cuda_is_computed_in_float32(rng):
    h, w = 400, 500  # anchors larger than 256 px: float16 areas would overflow
    boxes, masks = random_instances(rng, 8, h, w)
    anchors = random_anchors(rng, 600, h, w)
    for dtype in (torch.float16, torch.bfloat16):
        narrow_boxes, narrow_anchors = boxes.to(dtype), anchors.to(dtype)
        got = gmaiou(narrow_boxes.to(CUDA), masks.to(CUDA), narrow_anchors.to(CUDA))
        assert got.dtype == dtype
        expected = gmaiou(narrow_boxes.float(), masks, narrow_anchors.float())
        torch.testing.assert_close(got.float().cpu(), expected, atol=4e-3, rtol=0)
        ratio = mob_ratio(narrow_boxes.to(CUDA), masks.to(CUDA))
        torch.testing.assert_close(
            ratio.float().cpu(), mob_ratio(narrow_boxes.float(), masks), atol=4e-3, rtol=0
        )


@pytest.mark.parametrize("measure", ["gmaiou-mask", "diou"])
def test_atss_on_cuda_in_float16_assigns_as_float32_on_cpu(measure):
    from gmaiou.anchors import atss_anchors

    grid = atss_anchors(400)
    boxes, masks = random_instances(np.random.default_rng(7), 10, 400, 400)
    levels = grid.num_level_anchors
    half = ATSSAssigner(measure=measure).assign(
        grid.anchors.half().to(CUDA),
        boxes.half().to(CUDA),
        masks.to(CUDA),
        num_level_anchors=levels,
    )
    full = ATSSAssigner(measure=measure).assign(
        grid.anchors.half().float(), boxes.half().float(), masks, num_level_anchors=levels
    )
    assert torch.equal(half.gt_inds.cpu(), full.gt_inds)


@pytest.mark.parametrize(
    "name",
    ["yolact-fixed-r18-160", "yolact-atss-gmaiou-r18-160", "gmayolact-atss-gmaiou-r18-160"],
)
def test_training_step_and_predict_on_cuda_match_the_cpu(name):
    """Forward, assignment and losses equal the CPU's; a step trains; predict stays on CUDA."""
    torch.manual_seed(0)
    cpu_model = build_model(small_config(name))
    gpu_model = copy.deepcopy(cpu_model).to(CUDA)
    batch = synthetic_batch()
    gpu_batch = _to_device(batch, CUDA)

    cpu_losses = cpu_model.loss(cpu_model(batch["images"]), batch)
    gpu_losses = gpu_model.loss(gpu_model(gpu_batch["images"]), gpu_batch)
    assert torch.equal(cpu_model.assign(batch)[0], gpu_model.assign(gpu_batch)[0].cpu())
    for key, value in cpu_losses.items():
        torch.testing.assert_close(gpu_losses[key].cpu(), value, rtol=2e-3, atol=1e-4)

    optimizer = torch.optim.SGD(gpu_model.parameters(), lr=1e-3, momentum=0.9)
    gpu_losses["loss"].backward()
    optimizer.step()
    assert all(p.isfinite().all() for p in gpu_model.parameters())

    detections = gpu_model.predict(gpu_batch["images"], out_size=(97, 131))
    assert len(detections) == 2
    for d in detections:
        assert d["masks"].device.type == "cuda" and d["masks"].shape[1:] == (97, 131)
        assert d["boxes"].shape == (len(d["scores"]), 4)


@pytest.mark.parametrize("paste_in_box", [True, False])
def test_mask_assembly_on_cuda_equals_the_cpu(paste_in_box):
    g = torch.Generator().manual_seed(0)
    protos = torch.randn(40, 40, 8, generator=g) * 2
    coeffs = torch.randn(30, 8, generator=g)
    xy = torch.rand(30, 2, generator=g) * 150
    boxes = torch.cat([xy, xy + torch.rand(30, 2, generator=g) * 100], dim=1)
    cpu = assemble_masks(protos, coeffs, boxes, 160, (300, 400), paste_in_box=paste_in_box)
    gpu = assemble_masks(
        protos.to(CUDA), coeffs.to(CUDA), boxes.to(CUDA), 160, (300, 400), paste_in_box=paste_in_box
    )
    assert gpu.device.type == "cuda"
    if not paste_in_box:  # the default on CUDA: the whole map, one batched kernel
        default = assemble_masks(protos.to(CUDA), coeffs.to(CUDA), boxes.to(CUDA), 160, (300, 400))
        assert torch.equal(default, gpu)
    # bilinear weights may round differently on the GPU: ties on the threshold only
    assert (gpu.cpu() ^ cpu).sum() <= max(1, cpu.sum() // 10_000)
    assert cpu.any()


def _train_on_cuda(
    out_dir: Path, max_iters: int, resume: bool = False, **overrides: object
) -> tuple[object, list[dict]]:
    """``gmaiou train`` of GmaYOLACT (r18, 160 px) on 10 synthetic images on CUDA, with
    ``overrides`` of its training settings: the result and the metrics lines."""
    from gmaiou.configs import apply_overrides, get_config
    from gmaiou.data.synthetic import ensure_synthetic
    from gmaiou.training.trainer import RunOptions, train

    name = "gmayolact-atss-gmaiou-r18-160"
    root = ensure_synthetic(num_images=10, size=160, progress=False)
    config = apply_overrides(get_config(name), {"epochs": 1, "batch_size": 2, **overrides})
    options = RunOptions(
        out_dir=out_dir,
        data_root=root,
        device="cuda",
        num_workers=0,
        max_iters=max_iters,
        progress=False,
        eval_batch_size=2,
        resume=resume,
    )
    result = train(config, options, config_name=name)
    rows = [json.loads(r) for r in (out_dir / "metrics.jsonl").read_text().splitlines()]
    return result, rows


def test_a_training_run_on_cuda_trains_evaluates_and_resumes(tmp_path):
    """The trainer end to end on CUDA: loader, GmaIoU tables, steps, checkpoint, evaluation."""
    assert _train_on_cuda(tmp_path / "run", 2)[0].iterations == 2
    result, rows = _train_on_cuda(tmp_path / "run", 3, resume=True)
    assert result.iterations == 3
    assert [r["iteration"] for r in rows] == [1, 2, 3]
    assert all(math.isfinite(r["loss"]) for r in rows)
    assert math.isfinite(result.metrics["segm"]["oLRP"])


@pytest.mark.parametrize(
    "name",
    ["yolact-fixed-r50-550", "yolact-atss-gmaiou-r50-550", "gmayolact-atss-gmaiou-r50-550"],
)
def test_paper_presets_train_under_mixed_precision_on_cuda(name):
    """The trainer's AMP step (float16 autocast, grad scaler) on the paper models: DCN,
    CARAFE and the heads in half precision, losses in float32 and finite, weights updated."""
    from gmaiou.training.trainer import _backward_and_step, _losses

    torch.manual_seed(0)
    model = build_model(small_config(name, size=128)).to(CUDA)
    batch = synthetic_batch(size=128)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    scaler = torch.amp.GradScaler("cuda")
    before = [p.detach().clone() for p in model.parameters()]
    # The scaler skips the steps whose float16 gradients overflow, halving its scale each
    # time: from random weights the H100 took 6 (GmaYOLACT) to 11 (YOLACT) steps to update.
    for _ in range(20):
        losses = _losses(model, model, batch, CUDA, True)
        assert all(v.dtype == torch.float32 and v.isfinite() for v in losses.values())
        _backward_and_step(losses["loss"], optimizer, scaler, 35.0)
        if any(not torch.equal(a, p) for a, p in zip(before, model.parameters())):
            break
    else:
        pytest.fail(
            f"20 steps skipped: every float16 gradient overflowed (scale {scaler.get_scale()})"
        )
    assert all(p.isfinite().all() for p in model.parameters())


def test_an_amp_training_run_on_cuda(tmp_path):
    result, rows = _train_on_cuda(tmp_path / "run", 3, amp=True)
    assert len(rows) == 3 and all(math.isfinite(r["loss"]) for r in rows)
    assert math.isfinite(result.metrics["segm"]["oLRP"])
