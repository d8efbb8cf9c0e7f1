"""``gmaiou bench infer``: inference speed of fixed-IoU vs ATSS YOLACT, and training-iteration
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
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from gmaiou.benchmarks import device_name, write_record

__all__ = ["bench_config", "register", "run", "run_infer_benchmark"]


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


def _median_ms(values: list[float], per: int = 1) -> float:
    return 1000.0 * statistics.median(values) / per


def _inference(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    from gmaiou.models import build_model, postprocess
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
                net_s, outputs = _timed(lambda m=model: m(images), device)
                post_s, dets = _timed(
                    lambda m=model, o=outputs: postprocess(
                        o, m.anchor_boxes, m.config.postprocess, m.image_size
                    ),
                    device,
                )
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


def _training_batches(args: argparse.Namespace, size: int) -> tuple[list[dict[str, Any]], str, int]:
    """``args.train_batches`` batches from the training loader, GmaIoU tables built in it."""
    from gmaiou.data import CocoInstances, find_split, make_loader
    from gmaiou.data.synthetic import ensure_synthetic
    from gmaiou.data.transforms import TrainTransform
    from gmaiou.paths import coco_sample_dir

    if args.data is not None:
        root = Path(args.data)
    else:
        root = coco_sample_dir() or ensure_synthetic(num_images=64, size=size, progress=False)
    dataset = CocoInstances(*find_split(root, "train"), transform=TrainTransform(size))
    loader = make_loader(
        dataset, args.batch_size, shuffle=True, num_workers=0, build_integrals=True, seed=args.seed
    )
    batches = []
    torch.manual_seed(args.seed)
    for batch in loader:
        if sum(b.shape[0] for b in batch["boxes"]) == 0:
            continue
        batches.append(batch)
        if len(batches) == args.train_batches:
            break
    return batches, str(root), dataset.num_classes


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


def run_infer_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Both benchmarks; returns the JSON-ready record (also written to ``args.out``)."""
    from gmaiou.training.distributed import resolve_device

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
    }
    if not args.skip_inference:
        record["inference"] = _inference(args, device)
    if not args.skip_training:
        record["training"] = _training(args, device)
    return record


def _print(record: dict[str, Any]) -> None:
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
    record = run_infer_benchmark(args)
    _print(record)
    out = write_record(args.out, record)
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
        "--data", default=None, help="training-batch dataset (default: COCO sample, else synthetic)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-inference", action="store_true")
    p.add_argument("--skip-training", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument(
        "--out", default="runs/bench/infer.json", help="JSON output (default runs/bench/infer.json)"
    )
    p.set_defaults(func=run)
