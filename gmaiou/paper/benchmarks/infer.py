"""``gmaiou-paper bench infer``: inference speed of fixed-IoU vs ATSS YOLACT, and training-iteration
time of GmaIoU-ATSS vs IoU-ATSS, side by side in one run.

Inference: the two models share the image size and backbone (random initialisation is
fine for speed) and differ in their anchors: 3 per location for YOLACT's fixed-IoU rule
(19,248 at 550) and 1 for ATSS (6,416 at 550), hence 3x fewer head outputs to predict,
decode and rank. Times are split into the network (forward in eval mode) and the
post-processing (class scores and thresholding over all anchors, box decoding, Fast NMS,
mask assembly) at the configs' own score threshold (0.05, ``--score-thr`` to change it).
The record gives the candidates that pass the threshold and the detections kept per
image: how much work post-processing did. On random weights and random images the
candidates are whatever the random network scores highly; a trained YOLACT at 0.05 also
fills its 100 detections per image on COCO.

Training: ATSS with GmaIoU (P = M) against ATSS with IoU, the same weights and the same
batches from the training data loader with the GmaIoU tables prepared in it (as
``gmaiou train`` does), so the difference is the assignment. Both the whole iteration
(forward, assignment, loss, backward, SGD step) and the assignment alone are timed.

Measurements alternate between the two models, after warm-up, and report the median.

Trained weights (``--run DIR``, several allowed; a run directory or its ``checkpoint.pt``):
random weights fill every image with 100 detections, so Table 4's inference is also
timed on trained models, on their run's own val split: the network
(forward in eval mode), then the post-processing at each image's original size (as
``gmaiou eval`` does), with each mask assembled inside its box (the default) and by
upsampling every mask over the whole image (the former assembly), side by side on the
same network outputs. Both sets of detections are scored, so the record also shows
that the mask AP did not move. Results go to ``--out`` (JSON; with ``--run``, by default
``figures/timings/trained_inference_<device>.json``) and, with ``--markdown``, a table.
:func:`format_trained_inference`, :func:`plot_trained_inference` and
:func:`trained_inference_findings` fold several such records (devices) into one of each.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from gmaiou.paper.benchmarks import device_name, write_record

__all__ = [
    "assembly_findings",
    "bench_config",
    "format_trained_inference",
    "format_trained_table",
    "model_label",
    "register",
    "run",
    "plot_trained_inference",
    "run_infer_benchmark",
    "trained_inference_findings",
    "training_batches",
    "versus_cpu_findings",
]


def bench_config(assigner: str, backbone: str, size: int, score_thr: float | None = None):
    """The YOLACT preset ``yolact-<assigner>-<backbone>-*`` at image size ``size``.

    The presets of a backbone share everything but the size, so the first preset of the
    backbone is taken and its ``model.image_size`` replaced.
    """
    from gmaiou.configs import get_config, list_configs

    prefix = f"yolact-{assigner}-{backbone}-"
    names = [n for n in list_configs() if n.startswith(prefix)]
    if not names:
        raise ValueError(f"no preset named {prefix}<size>; backbones are r18, r34, r50, r101")
    exact = f"{prefix}{size}"
    config = get_config(exact if exact in names else names[0])
    config = dataclasses.replace(
        config, name=f"{prefix}{size}", model=dataclasses.replace(config.model, image_size=size)
    )
    if score_thr is not None:
        config = dataclasses.replace(
            config, postprocess=dataclasses.replace(config.postprocess, score_thr=score_thr)
        )
    return config


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    _sync(device)
    tic = time.perf_counter()
    out = fn()
    _sync(device)
    return time.perf_counter() - tic, out


def timed_inference(
    model: Any, images: torch.Tensor, device: torch.device
) -> tuple[float, float, Any, Any]:
    """One timed forward pass and its post-processing: ``(network s, post s, outputs, detections)``."""
    from gmaiou.models import postprocess

    net_s, outputs = _timed(lambda: model(images), device)
    post_s, dets = _timed(
        lambda: postprocess(
            outputs, model.anchor_boxes, model.config.postprocess, model.image_size
        ),
        device,
    )
    return net_s, post_s, outputs, dets


def _median_ms(values: list[float], per: int = 1) -> float:
    return 1000.0 * statistics.median(values) / per


def _inference(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    from gmaiou.models import build_model
    from gmaiou.models.postprocess import class_scores

    torch.manual_seed(args.seed)
    models = {}
    for key, assigner in (("fixed", "fixed"), ("atss", "atss-iou")):
        config = bench_config(assigner, args.backbone, args.size, args.score_thr)
        models[key] = build_model(config).to(device).eval()
    images = torch.randn(args.batch_size, 3, args.size, args.size, device=device)
    times: dict[str, dict[str, list[float]]] = {
        k: {"network": [], "post": [], "dets": [], "candidates": []} for k in models
    }
    rounds = args.warmup + args.iters
    with torch.inference_mode():
        for r in tqdm(range(rounds), desc="bench infer", disable=args.no_progress):
            for key, model in models.items():
                net_s, post_s, outputs, dets = timed_inference(model, images, device)
                if r >= args.warmup:
                    times[key]["network"].append(net_s)
                    times[key]["post"].append(post_s)
                    times[key]["dets"].append(sum(d["boxes"].shape[0] for d in dets) / len(dets))
                    scores = class_scores(
                        outputs["cls_logits"].float(), model.config.postprocess.score_activation
                    )
                    passing = (scores.max(dim=2).values > model.config.postprocess.score_thr).sum()
                    times[key]["candidates"].append(float(passing) / images.shape[0])
    result: dict[str, Any] = {}
    for key, model in models.items():
        net = _median_ms(times[key]["network"], args.batch_size)
        post = _median_ms(times[key]["post"], args.batch_size)
        result[key] = {
            "config": model.config.name,
            "anchors": int(model.anchor_boxes.shape[0]),
            "score_thr": model.config.postprocess.score_thr,
            "network_ms_per_image": net,
            "post_ms_per_image": post,
            "total_ms_per_image": net + post,
            "images_per_s": 1000.0 / (net + post),
            "network_images_per_s": 1000.0 / net,
            "candidates_per_image": statistics.mean(times[key]["candidates"]),
            "detections_per_image": statistics.mean(times[key]["dets"]),
        }
    fixed, atss = result["fixed"], result["atss"]
    result["ratio_total_atss_over_fixed"] = atss["total_ms_per_image"] / fixed["total_ms_per_image"]
    result["ratio_network_atss_over_fixed"] = (
        atss["network_ms_per_image"] / fixed["network_ms_per_image"]
    )
    result["ratio_post_atss_over_fixed"] = atss["post_ms_per_image"] / fixed["post_ms_per_image"]
    result["time_saved_percent"] = 100.0 * (1.0 - result["ratio_total_atss_over_fixed"])
    return result


def training_batches(
    root: str | Path, size: int, batch_size: int, count: int, seed: int = 0
) -> tuple[list[dict[str, Any]], int]:
    """``count`` batches of ``root``'s train split from the training loader.

    Each batch is what ``gmaiou train`` feeds the model (:class:`TrainTransform` at
    ``size``, the GmaIoU tables prepared in the loader); batches without a ground truth
    are skipped. Returns the batches and the dataset's number of classes.
    """
    from gmaiou.data import CocoInstances, find_split, make_loader
    from gmaiou.data.transforms import TrainTransform

    dataset = CocoInstances(*find_split(Path(root), "train"), transform=TrainTransform(size))
    loader = make_loader(
        dataset, batch_size, shuffle=True, num_workers=0, build_integrals=True, seed=seed
    )
    batches = []
    torch.manual_seed(seed)
    for batch in loader:
        if sum(b.shape[0] for b in batch["boxes"]) == 0:
            continue
        batches.append(batch)
        if len(batches) == count:
            break
    return batches, dataset.num_classes


def _training_batches(args: argparse.Namespace, size: int) -> tuple[list[dict[str, Any]], str, int]:
    """``args.train_batches`` batches from the training loader, GmaIoU tables built in it."""
    from gmaiou.data.synthetic import ensure_synthetic
    from gmaiou.paper.paths import coco_sample_dir

    if args.data is not None:
        root = Path(args.data)
    else:
        root = coco_sample_dir() or ensure_synthetic(num_images=64, size=size, progress=False)
    batches, num_classes = training_batches(
        root, size, args.batch_size, args.train_batches, args.seed
    )
    return batches, str(root), num_classes


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    out = dict(batch)
    for key in ("images",):
        out[key] = batch[key].to(device)
    for key in ("boxes", "labels", "masks", "crowd_boxes"):
        out[key] = [t.to(device) for t in batch[key]]
    if device.type != "cpu" and batch.get("mask_integrals") is not None:
        out["mask_integrals"] = [m.to(device) for m in batch["mask_integrals"]]
    return out


def _training(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    from gmaiou.models import build_model

    batches, root, num_classes = _training_batches(args, args.size)
    if not batches:
        raise ValueError(f"no training batch with ground truth under {root}")
    torch.manual_seed(args.seed)
    models, optimizers = {}, {}
    for key, assigner in (("iou", "atss-iou"), ("gmaiou", "atss-gmaiou")):
        config = bench_config(assigner, args.backbone, args.size)
        models[key] = build_model(config.with_num_classes(num_classes)).to(device).train()
    # Same weights: only the assignment differs.
    models["gmaiou"].load_state_dict(models["iou"].state_dict())
    for key, model in models.items():
        optimizers[key] = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    batches = [_to_device(b, device) for b in batches]
    times: dict[str, dict[str, list[float]]] = {k: {"iteration": [], "assign": []} for k in models}
    rounds = args.warmup + args.train_iters

    def step(model: torch.nn.Module, opt: torch.optim.Optimizer, batch: dict[str, Any]) -> None:
        losses = model.loss(model(batch["images"]), batch)
        opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 35.0)
        opt.step()

    for r in tqdm(range(rounds), desc="bench train", disable=args.no_progress):
        batch = batches[r % len(batches)]
        for key, model in models.items():
            it_s, _ = _timed(lambda m=model, o=optimizers[key], b=batch: step(m, o, b), device)
            with torch.no_grad():
                as_s, _ = _timed(lambda m=model, b=batch: m.assign(b), device)
            if r >= args.warmup:
                times[key]["iteration"].append(it_s)
                times[key]["assign"].append(as_s)
    result: dict[str, Any] = {"data": root, "batches": len(batches)}
    for key, model in models.items():
        result[key] = {
            "config": model.config.name,
            "iteration_ms": _median_ms(times[key]["iteration"]),
            "assign_ms_per_batch": _median_ms(times[key]["assign"]),
        }
    result["ratio_iteration_gmaiou_over_iou"] = (
        result["gmaiou"]["iteration_ms"] / result["iou"]["iteration_ms"]
    )
    result["ratio_assign_gmaiou_over_iou"] = (
        result["gmaiou"]["assign_ms_per_batch"] / result["iou"]["assign_ms_per_batch"]
    )
    return result


def _run_dir(path: str) -> Path:
    """A run directory from ``--run``: the directory itself, or the folder of its checkpoint file."""
    p = Path(path)
    if p.is_file():
        p = p.parent
    if not p.is_dir():
        raise FileNotFoundError(f"--run {path}: no such run directory or checkpoint")
    return p


def model_label(config: Any) -> str:
    """What a run's model is in the paper's words: YOLACT (fixed IoU), ATSS-YOLACT, GmaYOLACT."""
    from gmaiou.measure import canonical_measure

    names = {"iou": "IoU", "giou": "GIoU", "diou": "DIoU", "ciou": "CIoU"}
    names.update({"gmaiou-box": "maIoU", "gmaiou-mask": "GmaIoU"})
    measure = names[canonical_measure(config.assigner.measure)]
    if config.model.arch == "gmayolact" or config.name.startswith("gmayolact"):
        return f"GmaYOLACT (ATSS, {measure})"
    if config.assigner.kind == "fixed":
        return f"YOLACT (fixed {measure})"
    return f"ATSS-YOLACT ({measure})"


def _trained_one(run_dir: Path, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Time one trained run on its val split and score both mask assemblies."""
    from gmaiou.data import CocoInstances, find_split
    from gmaiou.data.transforms import TestTransform
    from gmaiou.evaluation.coco import coco_metrics
    from gmaiou.evaluation.results import detections_to_coco
    from gmaiou.evaluation.run import load_run
    from gmaiou.models import postprocess
    from gmaiou.runs import resolve_data_root

    model, config, record = load_run(run_dir, device)
    model.eval()
    data = args.data if args.data is not None else record["data_root"]
    image_dir, ann_file = find_split(resolve_data_root(data), args.split)
    dataset = CocoInstances(image_dir, ann_file, transform=TestTransform(config.model.image_size))
    count = len(dataset) if args.eval_images is None else min(args.eval_images, len(dataset))
    if count == 0:
        raise ValueError(f"the {args.split} split of {data} has no images")
    times: dict[str, list[float]] = {"network": [], "post": [], "post_full": [], "dets": []}
    detections: dict[str, list[dict[str, Any]]] = {"paste": [], "full": []}
    image_ids = []
    with torch.inference_mode():
        for index in tqdm(range(args.warmup + count), desc=config.name, disable=args.no_progress):
            i = index % count
            item = dataset[i]
            image_id = int(item["image_id"])
            info = dataset.coco.imgs[image_id]
            size = (info["height"], info["width"])
            images = item["image"][None].to(device)
            net_s, outputs = _timed(lambda x=images: model(x), device)
            post = {}
            timed = {}
            for key, paste in (("paste", True), ("full", False)):
                timed[key], post[key] = _timed(
                    lambda p=paste, o=outputs, s=size: postprocess(
                        o,
                        model.anchor_boxes,
                        config.postprocess,
                        model.image_size,
                        s,
                        paste_in_box=p,
                    )[0],
                    device,
                )
            if index < args.warmup:
                continue
            image_ids.append(image_id)
            times["network"].append(net_s)
            times["post"].append(timed["paste"])
            times["post_full"].append(timed["full"])
            times["dets"].append(float(post["paste"]["boxes"].shape[0]))
            for key, pred in post.items():
                detections[key].extend(
                    detections_to_coco(
                        image_id,
                        pred["boxes"].cpu(),
                        pred["scores"].float().cpu(),
                        pred["labels"].cpu(),
                        pred["masks"].cpu(),
                        dataset.cat_ids,
                    )
                )
    metrics = {
        key: coco_metrics(dataset.coco, dets, img_ids=image_ids) for key, dets in detections.items()
    }
    net, post_ms = _median_ms(times["network"]), _median_ms(times["post"])
    full_ms = _median_ms(times["post_full"])
    return {
        "run": str(run_dir),
        "data": Path(str(data)).name,
        "config": config.name,
        "model": model_label(config),
        "anchors": int(model.anchor_boxes.shape[0]),
        "image_size": config.model.image_size,
        "images": len(image_ids),
        "split": args.split,
        "detections_per_image": statistics.mean(times["dets"]),
        "network_ms_per_image": net,
        "post_ms_per_image": post_ms,
        "post_full_upsampling_ms_per_image": full_ms,
        "images_per_s": 1000.0 / (net + post_ms),
        "images_per_s_full_upsampling": 1000.0 / (net + full_ms),
        "mask_ap": metrics["paste"]["segm"]["AP"],
        "mask_ap_full_upsampling": metrics["full"]["segm"]["AP"],
        "mask_ap_difference": metrics["paste"]["segm"]["AP"] - metrics["full"]["segm"]["AP"],
        "box_ap": metrics["paste"]["bbox"]["AP"],
    }


def _trained(args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    return [_trained_one(_run_dir(path), args, device) for path in args.run]


def format_trained_table(record: dict[str, Any]) -> str:
    """Markdown: one row per trained run, times per image and mask AP of both assemblies."""
    from gmaiou.models.postprocess import pastes_in_box

    head = (
        "| model | config | anchors | network ms/img | post ms/img | fps "
        "| post ms/img, full upsampling | fps, full upsampling | dets/img "
        "| mask AP | mask AP, full upsampling | box AP |"
    )
    pinned = record.get("cpu_affinity")
    where = record["device"]
    if record.get("device_type") == "cpu" and pinned is not None:
        where += f", pinned to core(s) {','.join(map(str, pinned))}"
    lines = [
        f"Inference on {where} (torch {record['torch']}), trained weights; "
        f"batch 1, median over the {record['split']} images; post-processing at each image's "
        "original size, each mask assembled inside its box (post ms/img, fps) and by upsampling "
        "its whole map (full upsampling); the default on this device: "
        + ("inside the box." if pastes_in_box(record["device_type"]) else "the whole map."),
        "",
        head,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in record["trained"]:
        lines.append(
            f"| {r['model']} | {r['config']} | {r['anchors']} | {r['network_ms_per_image']:.1f} "
            f"| {r['post_ms_per_image']:.1f} | {r['images_per_s']:.2f} "
            f"| {r['post_full_upsampling_ms_per_image']:.1f} | {r['images_per_s_full_upsampling']:.2f} "
            f"| {r['detections_per_image']:.1f} | {r['mask_ap']:.2f} "
            f"| {r['mask_ap_full_upsampling']:.2f} | {r['box_ap']:.2f} |"
        )
    sets = sorted({f"{r.get('data', '?')} ({r['images']} images)" for r in record["trained"]})
    lines += [
        "",
        f"*data: the {record['split']} split of each run's own dataset: {', '.join(sets)}*",
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- trained runs folded


def _default_assembly(record: dict[str, Any]) -> tuple[str, str]:
    """The record's keys of post-processing ms and fps with its device's default mask assembly."""
    from gmaiou.models.postprocess import pastes_in_box

    if pastes_in_box(record["device_type"]):
        return "post_ms_per_image", "images_per_s"
    return "post_full_upsampling_ms_per_image", "images_per_s_full_upsampling"


def _ordered(records: Mapping[str, dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """CPU records first, then the others, each by name."""
    return sorted(records.items(), key=lambda kv: (kv[1]["device_type"] != "cpu", kv[0]))


def _where(record: dict[str, Any]) -> str:
    where = record["device"]
    pinned = record.get("cpu_affinity")
    if record.get("device_type") == "cpu" and pinned is not None:
        where += f", pinned to core(s) {','.join(map(str, pinned))}"
    return f"{where}, torch {record['torch']}"


def format_trained_inference(records: Mapping[str, dict[str, Any]]) -> str:
    """Markdown: every trained-weights record (``name -> record``) in one table, one row per
    record and model, each record's device and data above it."""
    head = (
        "| record | device | model | anchors | network ms/img | post ms/img, in box "
        "| post ms/img, whole map | fps | dets/img | mask AP | mask AP, whole map | box AP |"
    )
    lines = [
        "Trained weights, batch 1, median over the val images of each run's own dataset; "
        "post-processing at each image's original size with each mask assembled inside its box "
        "(in box) and by upsampling its whole map (whole map), both scored; fps with the "
        "device's default assembly (inside the box on the CPU, the whole map on a GPU).",
        "",
    ]
    for name, record in _ordered(records):
        sets = sorted({f"{r.get('data', '?')} ({r['images']} images)" for r in record["trained"]})
        lines.append(f"- `{name}`: {_where(record)}; {record['split']} split of {', '.join(sets)}")
    lines += ["", head, "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, record in _ordered(records):
        _, fps_key = _default_assembly(record)
        device = "CPU" if record["device_type"] == "cpu" else record["device"]
        for r in record["trained"]:
            lines.append(
                f"| `{name}` | {device} | {r['model']} | {r['anchors']} "
                f"| {r['network_ms_per_image']:.1f} | {r['post_ms_per_image']:.1f} "
                f"| {r['post_full_upsampling_ms_per_image']:.1f} | {r[fps_key]:.2f} "
                f"| {r['detections_per_image']:.1f} | {r['mask_ap']:.2f} "
                f"| {r['mask_ap_full_upsampling']:.2f} | {r['box_ap']:.2f} |"
            )
    return "\n".join(lines)


def assembly_findings(record: dict[str, Any]) -> list[str]:
    """Per model of ``record``: post-processing time and mask AP of both mask assemblies."""
    return [
        f"{r['model']} on {record['device']}: post-processing {r['post_ms_per_image']:.1f} ms "
        f"per image with each mask assembled inside its box against "
        f"{r['post_full_upsampling_ms_per_image']:.1f} ms with the whole maps upsampled "
        f"({r['detections_per_image']:.0f} detections per image); mask AP "
        f"{r['mask_ap']:.2f} against {r['mask_ap_full_upsampling']:.2f}."
        for r in record["trained"]
    ]


def versus_cpu_findings(record: dict[str, Any], cpu: dict[str, Any] | None) -> list[str]:
    """Each model of a GPU ``record`` against the same config in the ``cpu`` record, each at
    its device's default assembly."""
    if cpu is None:
        return []
    on_cpu = {r["config"]: r for r in cpu["trained"]}
    lines = []
    for r in record["trained"]:
        c = on_cpu.get(r["config"])
        if c is None:
            continue
        gpu_fps = r["images_per_s_full_upsampling"]  # the default off the CPU
        lines.append(
            f"{r['model']}: {gpu_fps:.0f} fps on {record['device']} "
            f"({r['network_ms_per_image']:.1f} ms network) against {c['images_per_s']:.1f} fps "
            f"on {cpu['device']} ({c['network_ms_per_image']:.1f} ms network); mask AP "
            f"{r['mask_ap_full_upsampling']:.2f} on the GPU, {c['mask_ap']:.2f} on the CPU "
            f"({r['mask_ap_full_upsampling'] - c['mask_ap']:+.2f})."
        )
    return lines


def _against_fixed(name: str, record: dict[str, Any]) -> list[str]:
    """Each model of ``record`` against its YOLACT (fixed IoU): time per image, anchors, AP."""
    from gmaiou.paper.benchmarks.train import PAPER_CLAIMS

    ref = next((r for r in record["trained"] if r["config"].startswith("yolact-fixed-")), None)
    if ref is None:
        return []
    post_key, _ = _default_assembly(record)
    ref_ms = ref["network_ms_per_image"] + ref[post_key]
    lines = []
    for r in record["trained"]:
        if r is ref:
            continue
        ratio = (r["network_ms_per_image"] + r[post_key]) / ref_ms
        network = r["network_ms_per_image"] / ref["network_ms_per_image"]
        claim = next((c for k, c in PAPER_CLAIMS.items() if r["config"].startswith(f"{k}-")), None)
        lines.append(
            f"`{name}`: {r['model']} takes {ratio:.2f}x the inference time per image of "
            f"{ref['model']} ({abs(1 - ratio):.0%} {'less' if ratio < 1 else 'more'}; network "
            f"alone {network:.2f}x) with {r['anchors']:,} anchors against {ref['anchors']:,}, at "
            f"{r['detections_per_image']:.1f} against {ref['detections_per_image']:.1f} "
            f"detections per image; mask AP {r['mask_ap']:.2f} against {ref['mask_ap']:.2f}"
            + (f". The paper: {claim}." if claim else ".")
        )
    return lines


def trained_inference_findings(records: Mapping[str, dict[str, Any]]) -> list[str]:
    """Sentences computed from the trained-weights records (``name -> record``): each model
    against YOLACT (fixed IoU) in its record; on a GPU, both assemblies and the CPU record
    ``cpu``; and a record ``cpu_float16_weights`` (float16 copies of the weights) against
    ``cpu``, the rounding's effect on the mask AP."""
    cpu = records.get("cpu")
    lines = []
    for name, record in _ordered(records):
        lines += _against_fixed(name, record)
        if record["device_type"] != "cpu":
            lines += assembly_findings(record) + versus_cpu_findings(record, cpu)
    half = records.get("cpu_float16_weights")
    if cpu is not None and half is not None:
        full = {r["config"]: r for r in cpu["trained"]}
        for r in half["trained"]:
            c = full.get(r["config"])
            if c is not None:
                lines.append(
                    f"{r['model']}, float16 copies of the weights on the CPU: mask AP "
                    f"{r['mask_ap']:.2f} against {c['mask_ap']:.2f} with the float32 weights "
                    f"({r['mask_ap'] - c['mask_ap']:+.2f})."
                )
    return lines


def plot_trained_inference(records: Mapping[str, dict[str, Any]]):
    """Two panels, fps (the device's default assembly) and mask AP: a bar per model and record."""
    import matplotlib.pyplot as plt

    ordered = _ordered(records)
    if not ordered:
        raise ValueError("no trained-weights record to plot")
    models = list(dict.fromkeys(r["model"] for _, rec in ordered for r in rec["trained"]))
    width = 0.8 / len(ordered)
    fig, axes = plt.subplots(1, 2, figsize=(5.5 + 1.2 * len(models), 3.6))
    for k, (name, record) in enumerate(ordered):
        _, fps_key = _default_assembly(record)
        rows = {r["model"]: r for r in record["trained"]}
        xs = [
            m + (k - (len(ordered) - 1) / 2) * width
            for m, model in enumerate(models)
            if model in rows
        ]
        for ax, key in zip(axes, (fps_key, "mask_ap")):
            values = [rows[model][key] for model in models if model in rows]
            ax.bar(xs, values, width, color=f"C{k}", label=name)
            for x, v in zip(xs, values):
                ax.annotate(f"{v:.3g}", (x, v), ha="center", va="bottom", fontsize=6)
    for ax, title in zip(
        axes, ("inference fps (batch 1, the device's default assembly)", "mask AP")
    ):
        ax.set_xticks(range(len(models)), [m.replace(" (", "\n(") for m in models])
        ax.tick_params(axis="x", labelsize=7)
        ax.set_title(title, fontsize=9)
    axes[0].legend(fontsize=7)
    devices = dict.fromkeys(f"{name}: {rec['device']}" for name, rec in ordered)
    fig.suptitle("Trained weights; " + "; ".join(devices), fontsize=8)
    fig.tight_layout()
    return fig


def run_infer_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Both benchmarks; returns the JSON-ready record (also written to ``args.out``)."""
    from gmaiou.devices import resolve_device

    device = resolve_device(args.device)
    record: dict[str, Any] = {
        "device": device_name(device),
        "device_type": device.type,
        "torch": torch.__version__,
        "size": args.size,
        "backbone": args.backbone,
        "batch_size": args.batch_size,
        "iters": args.iters,
        "train_iters": args.train_iters,
        "init": "random",
        "threads": torch.get_num_threads(),
        "cpu_affinity": sorted(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else None,
    }
    if args.run:
        record.update(init="trained", split=args.split, batch_size=1)
        record["trained"] = _trained(args, device)
        return record
    if not args.skip_inference:
        record["inference"] = _inference(args, device)
    if not args.skip_training:
        record["training"] = _training(args, device)
    return record


def _print(record: dict[str, Any]) -> None:
    if "trained" in record:
        print(format_trained_table(record))
        return
    print(
        f"device: {record['device']}; {record['backbone']} at {record['size']} px, batch {record['batch_size']}"
    )
    inf = record.get("inference")
    if inf:
        print(
            f"{'model':<28}{'anchors':>9}{'network ms/img':>16}{'post ms/img':>13}{'images/s':>10}"
            f"{'candidates':>12}{'dets':>6}"
        )
        for key in ("fixed", "atss"):
            r = inf[key]
            print(
                f"{r['config']:<28}{r['anchors']:>9}{r['network_ms_per_image']:>16.1f}"
                f"{r['post_ms_per_image']:>13.1f}{r['images_per_s']:>10.2f}"
                f"{r['candidates_per_image']:>12.0f}{r['detections_per_image']:>6.0f}"
            )
        print(
            f"ATSS / fixed-IoU time: total {inf['ratio_total_atss_over_fixed']:.3f} "
            f"({inf['time_saved_percent']:.1f}% less), network {inf['ratio_network_atss_over_fixed']:.3f}, "
            f"post-processing {inf['ratio_post_atss_over_fixed']:.3f}"
        )
    tr = record.get("training")
    if tr:
        for key in ("iou", "gmaiou"):
            r = tr[key]
            print(
                f"{r['config']:<28} iteration {r['iteration_ms']:.1f} ms, assignment {r['assign_ms_per_batch']:.1f} ms"
            )
        print(
            f"GmaIoU-ATSS / IoU-ATSS: iteration {tr['ratio_iteration_gmaiou_over_iou']:.3f}, "
            f"assignment {tr['ratio_assign_gmaiou_over_iou']:.3f}"
        )


def run(args: argparse.Namespace) -> int:
    for name in ("size", "iters", "batch_size", "train_iters", "train_batches"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.eval_images is not None and args.eval_images < 1:
        raise ValueError(f"--eval-images must be >= 1, got {args.eval_images}")
    record = run_infer_benchmark(args)
    _print(record)
    if args.run and args.out is None:
        from gmaiou.paper.paths import timings_dir

        args.out = str(timings_dir() / f"trained_inference_{record['device_type']}.json")
    out = write_record(args.out or "runs/bench/infer.json", record)
    if "trained" in record and args.markdown:
        md = Path(args.markdown)
        md.parent.mkdir(parents=True, exist_ok=True)
        md.write_text(format_trained_table(record) + "\n")
        print(f"written to {out} and {md}")
    else:
        print(f"written to {out}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "infer",
        help="fixed-IoU vs ATSS YOLACT inference speed; GmaIoU-ATSS vs IoU-ATSS training-iteration time",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--size", type=int, default=550, help="square image size (default 550)")
    p.add_argument(
        "--backbone", default="r18", help="r18, r34 (64-channel CPU heads), r50, r101 (paper)"
    )
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: CUDA if available)")
    p.add_argument("--iters", type=int, default=10, help="timed inference rounds per model")
    p.add_argument("--train-iters", type=int, default=6, help="timed training iterations per model")
    p.add_argument("--train-batches", type=int, default=3, help="distinct loader batches cycled")
    p.add_argument("--warmup", type=int, default=2, help="untimed rounds first")
    p.add_argument("--batch-size", type=int, default=2, help="images per forward / training batch")
    p.add_argument(
        "--score-thr",
        type=float,
        default=None,
        help="post-processing score threshold (default: the configs' 0.05; 0: every anchor a candidate)",
    )
    p.add_argument(
        "--data",
        default=None,
        help="training-batch dataset (default: COCO sample, else synthetic); with --run, the "
        "dataset to evaluate on (default: the run's own)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-inference", action="store_true")
    p.add_argument("--skip-training", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument(
        "--run",
        action="append",
        default=[],
        metavar="DIR",
        help="a trained run directory or its checkpoint.pt (repeat for several): time it on its "
        "val split and score both mask assemblies instead of the random-weight benchmarks",
    )
    p.add_argument("--split", default="val", help="split of the run's data for --run (default val)")
    p.add_argument(
        "--eval-images", type=int, default=None, help="images of the split for --run (default all)"
    )
    p.add_argument(
        "--out",
        default=None,
        help="JSON output (default runs/bench/infer.json; with --run "
        "figures/timings/trained_inference_<device>.json)",
    )
    p.add_argument(
        "--markdown", default=None, help="with --run, also write the table as Markdown here"
    )
    p.set_defaults(func=run)
