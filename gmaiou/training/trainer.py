"""The training loop: SGD with warm-up and step/cosine decay, AMP, DDP, atomic checkpoints, resume.

One call, :func:`train`, runs a whole training job into a run directory::

    RUN_DIR/config.json     the resolved config, the CLI overrides and the run options
    RUN_DIR/metrics.jsonl   one JSON line per iteration: epoch, iter, lr, loss components, times
    RUN_DIR/checkpoint.pt   model, optimizer, scheduler, grad scaler, RNG states, position
    RUN_DIR/eval.json       COCO box/mask AP and oLRP on the evaluation split (at the end)
    RUN_DIR/detections.json the detections behind eval.json (COCO results format)

Resume is bit-exact on one process with ``num_workers=0``: the checkpoint holds the
position (epoch and the batch within it) and the RNG states of every process, and the
:class:`~gmaiou.training.distributed.ResumableSampler` replays the rest of the epoch in
the same order. With loader workers the sample order, model and optimizer still resume
exactly, but the augmentation draws inside the workers start from fresh seeds.

Ctrl-C (SIGINT) or SIGTERM asks the loop to stop at the end of the current iteration;
it writes a checkpoint and raises :class:`KeyboardInterrupt`. A second Ctrl-C stops at once.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from gmaiou.measure import MaskIntegrals, is_mask_measure
from gmaiou.training.batch import per_process_train
from gmaiou.training.checkpoint import (
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from gmaiou.training.distributed import (
    DistContext,
    ResumableSampler,
    all_reduce_mean,
    any_process,
    barrier,
)
from gmaiou.training.schedule import LrSchedule, build_scheduler, steps_to_iterations

__all__ = [
    "CONFIG_FILE",
    "CHECKPOINT_FILE",
    "EVAL_FILE",
    "METRICS_FILE",
    "RunOptions",
    "TrainResult",
    "TrainingDiverged",
    "apply_overrides",
    "prepare_run_dir",
    "resolve_data_root",
    "seed_everything",
    "train",
]

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_FILE = "checkpoint.pt"
EVAL_FILE = "eval.json"
DETECTIONS_FILE = "detections.json"


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last checkpoint is left as it was."""


@dataclass(frozen=True)
class RunOptions:
    """How to run a training job (what is not part of the model/training config).

    Attributes:
        out_dir: the run directory.
        data_root: a COCO-layout or synthetic dataset folder; ``None`` for the embedded synthetic default.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``None``/``"auto"``.
        seed: seeds Python, NumPy and torch (rank ``r`` uses ``seed + r`` for its data draws).
        resume: continue the run in ``out_dir`` from its checkpoint.
        overwrite: empty a non-empty ``out_dir`` first (otherwise it is refused).
        max_iters: stop after this many iterations in total (the schedule still spans all epochs).
        ckpt_every: write a checkpoint every this many iterations (and at every epoch end).
        num_workers: data-loader worker processes.
        train_split: the split trained on.
        eval_split: the split evaluated on at the end (``None``: no evaluation).
        deterministic: ``torch.use_deterministic_algorithms`` and no cuDNN benchmarking.
        progress: show a tqdm bar (rank 0 only).
        eval_batch_size: batch size of the final evaluation.
        synthetic_images: images of the embedded synthetic dataset when ``data_root`` is ``None``.
        synthetic_size: their side in pixels (default: the model's input size).
        weights: ``"none"``, ``"imagenet"``, a local ResNet state dict / model checkpoint,
            or ``None``: the config's ``model.backbone_weights``.
        augment: YOLACT's training augmentation (off: only resize and normalise, e.g. to
            overfit a few images).
    """

    out_dir: Path
    data_root: Path | None = None
    device: str | None = None
    seed: int = 0
    resume: bool = False
    overwrite: bool = False
    max_iters: int | None = None
    ckpt_every: int = 500
    num_workers: int = 2
    train_split: str = "train"
    eval_split: str | None = "val"
    deterministic: bool = False
    progress: bool = True
    eval_batch_size: int = 8
    synthetic_images: int = 64
    synthetic_size: int | None = None
    weights: str | Path | None = None
    augment: bool = True


@dataclass(frozen=True)
class TrainResult:
    """What a finished (or stopped) :func:`train` call reports.

    Attributes:
        iterations: optimizer steps done in total (across resumes).
        finished: all epochs done (not stopped by ``max_iters``).
        metrics: the evaluation metrics (``{"bbox": ..., "segm": ...}``) or ``None``.
        run_dir: the run directory.
        model: the trained model (unwrapped from DDP), on the training device.
    """

    iterations: int
    finished: bool
    metrics: dict[str, Any] | None
    run_dir: Path
    model: nn.Module


# --------------------------------------------------------------------------- setup helpers


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (all CUDA devices too)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextmanager
def _determinism(on: bool) -> Iterator[None]:
    """Deterministic algorithms (and no cuDNN autotuning) inside, the previous settings after."""
    previous = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
    )
    if on:
        # cuBLAS needs this for reproducible matmuls on CUDA; harmless on the CPU.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = not on
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.backends.cudnn.benchmark = previous[2]


def resolve_data_root(
    data_root: str | os.PathLike | None, synthetic_images: int = 64, synthetic_size: int = 256
) -> Path:
    """The dataset folder to use: the given one (checked), or the embedded synthetic default.

    The default is generated once (``synthetic_images`` images of ``synthetic_size`` pixels)
    and cached, see :func:`gmaiou.data.synthetic.ensure_synthetic`.
    """
    if data_root is None:
        from gmaiou.data.synthetic import ensure_synthetic

        return Path(ensure_synthetic(num_images=synthetic_images, size=synthetic_size))
    root = Path(data_root).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"data folder not found: {root}")
    if not root.is_dir():
        raise ValueError(f"--data must be a dataset folder, got a file: {root}")
    return root.resolve()


def prepare_run_dir(out_dir: Path, resume: bool, overwrite: bool) -> None:
    """Create ``out_dir``; refuse a non-empty one unless resuming or told to overwrite."""
    if resume and overwrite:
        raise ValueError("--resume and --overwrite contradict each other; choose one")
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"run directory {out_dir} exists and is a file")
    non_empty = out_dir.is_dir() and any(out_dir.iterdir())
    if resume:
        if not (out_dir / CHECKPOINT_FILE).is_file():
            raise FileNotFoundError(f"cannot resume: no checkpoint at {out_dir / CHECKPOINT_FILE}")
        return
    if non_empty:
        if not overwrite:
            raise FileExistsError(
                f"run directory {out_dir} is not empty; pass --resume to continue it "
                "or --overwrite to replace it"
            )
        for name in (CONFIG_FILE, METRICS_FILE, CHECKPOINT_FILE, EVAL_FILE, DETECTIONS_FILE):
            (out_dir / name).unlink(missing_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)


def apply_overrides(config: Any, overrides: dict[str, Any]) -> Any:
    """``config`` with ``config.train`` fields replaced by ``overrides`` (``None`` values ignored).

    Overriding ``epochs`` rescales the step-decay epochs in proportion (a preset's steps at
    16 and 20 of 24 epochs become 2 and 2.5 of 3), unless ``steps`` is overridden too.
    An overridden ``lr`` is the rate for the (overridden) batch; overriding ``batch_size``
    alone keeps ``lr_batch``, so the preset's rate is scaled linearly to the new batch.
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    if not given:
        return config
    unknown = sorted(set(given) - {f.name for f in dataclasses.fields(config.train)})
    if unknown:
        raise ValueError(f"unknown training settings {unknown}")
    train = config.train
    if "lr" in given and "lr_batch" not in given:  # a given rate is meant for the given batch
        given["lr_batch"] = given.get("batch_size", train.batch_size)
    if "epochs" in given and "steps" not in given and given["epochs"] != train.epochs:
        given["steps"] = tuple(s * given["epochs"] / train.epochs for s in train.steps)
    return dataclasses.replace(config, train=dataclasses.replace(train, **given))


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None  # e.g. an AP that COCO cannot define; JSON has no NaN
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)


def _write_json(path: Path, payload: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(_jsonable(payload), indent=2) + "\n")
    os.replace(tmp, path)


# --------------------------------------------------------------------------- batches


def _to_device(value: Any, device: torch.device) -> Any:
    """Move tensors (and MaskIntegrals) in a nested batch to ``device``."""
    if isinstance(value, Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, dict):
        return {k: _to_device(v, device) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_device(v, device) for v in value)
    if isinstance(value, MaskIntegrals):
        return value if value.device == device else value.to(device)
    return value


def _to_float(value: Any) -> Any:
    """Half-precision outputs of an autocast forward as float32, so the losses run in float32."""
    if isinstance(value, Tensor):
        return value.float() if value.dtype in (torch.float16, torch.bfloat16) else value
    if isinstance(value, dict):
        return {k: _to_float(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_float(v) for v in value)
    return value


# --------------------------------------------------------------------------- stop requests


class _StopFlag:
    """Set by SIGINT/SIGTERM; the loop checks it between iterations. A second SIGINT raises at once."""

    def __init__(self) -> None:
        self.requested = False

    def handler(self, signum: int, frame: Any) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True


@contextmanager
def _stop_on_signals(flag: _StopFlag) -> Iterator[None]:
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, flag.handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# --------------------------------------------------------------------------- the loop


def _build_datasets(config: Any, options: RunOptions, data_root: Path):
    from gmaiou.data import CocoInstances, find_split
    from gmaiou.data.transforms import TestTransform, TrainTransform

    size = config.model.image_size
    image_dir, ann_file = find_split(data_root, options.train_split)
    antialias, swap = config.model.resize_antialias, config.train.channel_swap
    if options.augment:
        transform = TrainTransform(size, channel_swap=swap, antialias=antialias)
    else:
        transform = TrainTransform(
            size, photometric=False, expand=False, crop=False, flip=False, antialias=antialias
        )
    train_set = CocoInstances(image_dir, ann_file, transform=transform)
    return train_set, TestTransform(size, antialias=antialias)


def _loader_seed(seed: int, rank: int, epoch: int) -> int:
    return int(
        np.random.SeedSequence([seed, rank, epoch]).generate_state(1, dtype=np.uint64)[0] >> 1
    )


def _state(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    rng_states: list[dict[str, Any]],
    epoch: int,
    batch_in_epoch: int,
    iteration: int,
    finished: bool,
    world_size: int,
) -> dict[str, Any]:
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "rng": rng_states,
        "epoch": epoch,
        "batch_in_epoch": batch_in_epoch,
        "iteration": iteration,
        "finished": finished,
        "world_size": world_size,
    }


def _gather_rng(ctx: DistContext) -> list[dict[str, Any]]:
    """Every process's RNG state, indexed by rank (collective: all ranks must call it)."""
    mine = capture_rng_state()
    if not ctx.is_distributed:
        return [mine]
    import torch.distributed as dist

    states: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(states, mine)
    return states


def _truncate_metrics(path: Path, iteration: int) -> None:
    """Drop metric lines past the checkpoint's iteration (written before a crash)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["iteration"] <= iteration:
                kept.append(line)
        except (ValueError, KeyError):
            break  # a half-written last line
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(f"{line}\n" for line in kept))
    os.replace(tmp, path)


def train(
    config: Any,
    options: RunOptions,
    ctx: DistContext | None = None,
    config_name: str | None = None,
    overrides: dict[str, Any] | None = None,
    on_iteration: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train ``config`` as ``options`` say; returns when done, stopped by ``max_iters`` or interrupted.

    Args:
        config: a :class:`gmaiou.configs.Config` (its ``num_classes`` is set from the data).
        options: run directory, data, device and loop options.
        ctx: the process's distributed context (default: one process on ``options.device``).
        config_name: the preset name recorded in ``config.json`` (so ``gmaiou eval`` rebuilds it).
        overrides: the CLI overrides of ``config.train`` recorded in ``config.json``.
        on_iteration: called on every process after each iteration with ``(iteration, losses)``.

    Raises:
        FileExistsError: a non-empty run directory without ``resume``/``overwrite``.
        FileNotFoundError: a missing dataset folder, split or checkpoint.
        TrainingDiverged: a non-finite loss.
        KeyboardInterrupt: after Ctrl-C, once the checkpoint is written.
    """
    with _determinism(options.deterministic):
        return _train(config, options, ctx, config_name, overrides, on_iteration)


def _train(
    config: Any,
    options: RunOptions,
    ctx: DistContext | None,
    config_name: str | None,
    overrides: dict[str, Any] | None,
    on_iteration: Callable[[int, dict[str, float]], None] | None,
) -> TrainResult:
    from gmaiou.models import build_model, resolve_weights

    if ctx is None:
        from gmaiou.training.distributed import resolve_device

        ctx = DistContext(device=resolve_device(options.device))
    out_dir = Path(options.out_dir)
    seed_everything(options.seed)
    # The data is checked before the run directory is touched.
    data_root = resolve_data_root(
        options.data_root,
        options.synthetic_images,
        options.synthetic_size or config.model.image_size,
    )
    train_set, test_transform = _build_datasets(config, options, data_root)
    if options.eval_split is not None:
        from gmaiou.data import find_split

        find_split(data_root, options.eval_split)
    if ctx.is_main:
        prepare_run_dir(out_dir, options.resume, options.overwrite)
    barrier(ctx)
    config = config.with_num_classes(train_set.num_classes)
    tc = per_process_train(config.train, ctx.world_size, announce=ctx.is_main)
    device = ctx.device

    # None: the preset's start (ImageNet for the paper presets); a resumed run's comes from its checkpoint.
    weights = resolve_weights(config, "none" if options.resume else options.weights)
    model = build_model(config, weights=weights).to(device)
    net: nn.Module = (
        DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        if ctx.is_distributed
        else model
    )
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(
        params, lr=tc.lr, momentum=tc.momentum, weight_decay=tc.weight_decay
    )

    sampler = ResumableSampler(
        train_set, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=options.seed
    )
    from gmaiou.data.loader import make_loader

    loader = make_loader(
        train_set,
        batch_size=tc.batch_size,
        shuffle=False,
        num_workers=options.num_workers,
        build_integrals=is_mask_measure(config.assigner.measure),
        sampler=sampler,
        seed=options.seed + ctx.rank,
    )
    iters_per_epoch = math.ceil(sampler.num_samples / tc.batch_size)
    total_iters = tc.epochs * iters_per_epoch
    schedule = LrSchedule(
        total_iters=total_iters,
        warmup_iters=min(tc.warmup_iters, total_iters),
        warmup_ratio=tc.warmup_ratio,
        kind=tc.schedule,
        step_iters=steps_to_iterations(tc.steps, iters_per_epoch) if tc.schedule == "step" else (),
        gamma=tc.gamma,
        min_ratio=tc.min_lr_ratio,
    )
    scheduler = build_scheduler(optimizer, schedule)
    use_amp = bool(tc.amp) and device.type == "cuda"
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp)

    start_epoch, start_batch, iteration, finished = 0, 0, 0, False
    rng_to_restore: dict[str, Any] | None = None
    if options.resume:
        ckpt = load_checkpoint(out_dir / CHECKPOINT_FILE, map_location="cpu")
        if ckpt["world_size"] != ctx.world_size:
            raise ValueError(
                f"the checkpoint in {out_dir} was written by {ckpt['world_size']} processes; "
                f"resume it with the same number (got {ctx.world_size})"
            )
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        start_epoch, start_batch = ckpt["epoch"], ckpt["batch_in_epoch"]
        iteration, finished = ckpt["iteration"], ckpt["finished"]
        rng_to_restore = ckpt["rng"][ctx.rank]
        if ctx.is_main:
            _truncate_metrics(out_dir / METRICS_FILE, iteration)
    else:
        # Model initialisation used ``seed``; the data draws of rank r use ``seed + r``.
        seed_everything(options.seed + ctx.rank)

    if ctx.is_main:
        _write_json(
            out_dir / CONFIG_FILE,
            {
                "config_name": config_name,
                "overrides": overrides or {},
                "config": config.to_dict(),
                "data_root": str(data_root),
                "num_classes": train_set.num_classes,
                "cat_ids": list(train_set.cat_ids),
                "class_names": list(train_set.class_names),
                "world_size": ctx.world_size,
                "effective_batch_size": tc.batch_size * ctx.world_size,
                "iters_per_epoch": iters_per_epoch,
                "options": {
                    k: v
                    for k, v in dataclasses.asdict(options).items()
                    if k not in ("resume", "overwrite")
                },
            },
        )

    def checkpoint(epoch: int, batch_in_epoch: int, done: bool) -> None:
        if batch_in_epoch >= iters_per_epoch:
            epoch, batch_in_epoch = epoch + 1, 0
        rng_states = _gather_rng(ctx)
        if ctx.is_main:
            save_checkpoint(
                out_dir / CHECKPOINT_FILE,
                _state(
                    model,
                    optimizer,
                    scheduler,
                    scaler,
                    rng_states,
                    epoch,
                    batch_in_epoch,
                    iteration,
                    done,
                    ctx.world_size,
                ),
            )
        barrier(ctx)

    max_iters = options.max_iters if options.max_iters is not None else total_iters
    stop = _StopFlag()
    metrics_handle = open(out_dir / METRICS_FILE, "a") if ctx.is_main else None  # noqa: SIM115
    bar = tqdm(
        total=min(max_iters, total_iters),
        initial=iteration,
        desc=f"train {config_name or ''}".strip(),
        disable=not (ctx.is_main and options.progress),
        dynamic_ncols=True,
    )
    interrupted = False
    try:
        with _stop_on_signals(stop):
            net.train()
            epoch = start_epoch
            while not finished and epoch < tc.epochs and iteration < max_iters:
                first = start_batch if epoch == start_epoch else 0
                sampler.set_epoch(epoch, start=first * tc.batch_size)
                # The workers' seeds come from the loader's generator: a function of
                # (seed, rank, epoch), so a resumed epoch seeds its workers as the original did.
                loader.generator.manual_seed(_loader_seed(options.seed, ctx.rank, epoch))
                batches = iter(loader)
                if rng_to_restore is not None:
                    # After the iterator drew its base seed, so that the next augmentation
                    # draws are exactly those of the uninterrupted run.
                    restore_rng_state(rng_to_restore)
                    rng_to_restore = None
                batch_in_epoch = first
                tic = time.perf_counter()
                for batch in batches:
                    data_time = time.perf_counter() - tic
                    losses, grad_norm = _step(
                        net, model, batch, optimizer, scaler, device, use_amp, tc.grad_clip
                    )
                    lr = optimizer.param_groups[0]["lr"]
                    scheduler.step()
                    iteration += 1
                    batch_in_epoch += 1
                    values = torch.stack([losses[k].detach().float() for k in losses])
                    values = all_reduce_mean(values, ctx).tolist()
                    logged = dict(zip(losses, values))
                    if not all(math.isfinite(v) for v in values):
                        raise TrainingDiverged(
                            f"non-finite loss at iteration {iteration} (epoch {epoch}): {logged}; "
                            f"the last checkpoint in {out_dir} is unchanged — lower --lr or check the data"
                        )
                    step_time = time.perf_counter() - tic
                    if metrics_handle is not None:
                        record = {
                            "epoch": epoch,
                            "iter": batch_in_epoch,
                            "iteration": iteration,
                            "lr": lr,
                            **logged,
                            "grad_norm": grad_norm,
                            "data_time": data_time,
                            "time": step_time,
                        }
                        metrics_handle.write(json.dumps(record) + "\n")
                        metrics_handle.flush()
                    bar.update(1)
                    bar.set_postfix(
                        epoch=epoch, loss=f"{logged['loss']:.3f}", lr=f"{lr:.2e}", refresh=False
                    )
                    if on_iteration is not None:
                        on_iteration(iteration, logged)
                    stop_now = any_process(stop.requested, ctx)
                    if stop_now:
                        checkpoint(epoch, batch_in_epoch, False)
                        interrupted = True
                        break
                    if iteration >= max_iters:
                        break
                    if (
                        options.ckpt_every > 0
                        and iteration % options.ckpt_every == 0
                        and batch_in_epoch < iters_per_epoch  # the epoch-end checkpoint follows
                    ):
                        checkpoint(epoch, batch_in_epoch, False)
                    tic = time.perf_counter()
                if interrupted:
                    break
                if batch_in_epoch >= iters_per_epoch:
                    finished = epoch + 1 >= tc.epochs
                    checkpoint(epoch, batch_in_epoch, finished)  # stored as (epoch + 1, 0)
                    epoch += 1
                elif iteration >= max_iters:
                    checkpoint(epoch, batch_in_epoch, False)
                if finished or iteration >= max_iters:
                    break
    finally:
        bar.close()
        if metrics_handle is not None:
            metrics_handle.close()
    if interrupted:
        raise KeyboardInterrupt(
            f"training stopped at iteration {iteration}; checkpoint written to {out_dir}"
        )
    if ctx.is_distributed:
        # DDP hands rank 0's buffers (BatchNorm statistics) to every rank before each forward;
        # after the last step each rank holds its own, so hand them over once more.
        import torch.distributed as dist

        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)

    metrics = None
    if (finished or iteration >= max_iters) and options.eval_split is not None:
        if ctx.is_main:
            metrics = _final_evaluation(
                model, config, options, data_root, test_transform, out_dir, device
            )
        barrier(ctx)
    return TrainResult(
        iterations=iteration, finished=finished, metrics=metrics, run_dir=out_dir, model=model
    )


def _step(
    net: nn.Module,
    model: nn.Module,
    batch: dict[str, Any],
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    device: torch.device,
    use_amp: bool,
    grad_clip: float | None,
) -> tuple[dict[str, Tensor], float | None]:
    """One optimizer step; returns the loss components and the gradient norm before clipping."""
    batch = _to_device(batch, device)
    with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
        outputs = net(batch["images"])
    losses = model.loss(_to_float(outputs), batch)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(losses["loss"]).backward()
    grad_norm: float | None = None
    if grad_clip:
        scaler.unscale_(optimizer)
        params = [p for g in optimizer.param_groups for p in g["params"]]
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, grad_clip))
    scaler.step(optimizer)
    scaler.update()
    return losses, grad_norm


def _final_evaluation(
    model: nn.Module,
    config: Any,
    options: RunOptions,
    data_root: Path,
    test_transform: Any,
    out_dir: Path,
    device: torch.device,
) -> dict[str, Any]:
    from gmaiou.data import CocoInstances, find_split
    from gmaiou.evaluation.results import save_results
    from gmaiou.evaluation.run import evaluate_model

    assert options.eval_split is not None
    image_dir, ann_file = find_split(data_root, options.eval_split)
    dataset = CocoInstances(image_dir, ann_file, transform=test_transform)
    detections, metrics = evaluate_model(
        model,
        dataset,
        device,
        batch_size=options.eval_batch_size,
        num_workers=options.num_workers,
        progress=options.progress,
    )
    save_results(out_dir / DETECTIONS_FILE, detections, overwrite=True)
    _write_json(
        out_dir / EVAL_FILE, {"split": options.eval_split, "data_root": str(data_root), **metrics}
    )
    return metrics
