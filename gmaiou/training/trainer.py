"""The training loop: SGD with warm-up and step/cosine decay, AMP, DDP, atomic checkpoints, resume.

One call, :func:`train`, runs a whole training job into a run directory::

    RUN_DIR/config.json     the resolved config, the CLI overrides and the run options
    RUN_DIR/metrics.jsonl   one JSON line per iteration: epoch, iter, lr, loss components, times
    RUN_DIR/checkpoint.pt   model, optimizer, scheduler, grad scaler, RNG states, position
    RUN_DIR/eval.json       COCO box/mask AP and oLRP on the evaluation split (at the end)
    RUN_DIR/detections.json the detections behind eval.json (COCO results format)
    RUN_DIR/metrics.csv     one row per iteration, AP at each evaluation; curves.png plots
                            them (and tensorboard/, with the package): gmaiou.training.curves

Resume is bit-exact on one process with ``num_workers=0``: the checkpoint holds the
position (epoch and the batch within it) and the RNG states of every process, and the
:class:`~gmaiou.training.distributed.ResumableSampler` replays the rest of the epoch in
the same order. With loader workers the sample order, model and optimizer still resume
exactly, but the augmentation draws inside the workers start from fresh seeds.

Ctrl-C (SIGINT) or SIGTERM asks the loop to stop at the end of the current iteration;
it writes a checkpoint and raises :class:`KeyboardInterrupt`. A second Ctrl-C stops at once.
An exception inside an iteration (an unreadable image, a non-finite loss, out of memory)
writes a checkpoint of the last completed iteration before it propagates, so ``resume``
continues from there. A run directory left with only ``config.json`` (and
``metrics.jsonl``) by a run that never checkpointed resumes from scratch.

Precision on CUDA: with ``train.amp`` the forward runs under float16 autocast (the losses
and the assigner in float32) with a gradient scaler; with ``train.tf32`` (the default)
float32 matrix products use TF32 as cuDNN's float32 convolutions already do by default
(``torch.backends.cuda.matmul.allow_tf32`` and ``torch.backends.cudnn.allow_tf32`` are both
set to ``train.tf32`` for the run and restored after). The backbone's deformable
convolutions (torchvision's ``deform_conv2d``: im2col, then a matrix product) follow the
matmul flag, so without it they would run in full float32 beside TF32 convolutions.
``train.tf32=false`` gives full float32 in both. cuDNN autotuning (``cudnn.benchmark``) is
on unless ``deterministic``; a deterministic run keeps ``train.tf32`` as configured. On the
CPU none of these flags is touched and training is float32.
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
from typing import IO, Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from gmaiou.measure import MaskIntegrals, is_mask_measure
from gmaiou.paths import check_writable_folder
from gmaiou.runs import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    DETECTIONS_FILE,
    EVAL_FILE,
    METRICS_FILE,
    RUN_FILE_PATTERNS,
    load_checkpoint,
    prepare_run_dir,
    resolve_data_root,
    save_checkpoint,
)
from gmaiou.runs import write_json as _write_json
from gmaiou.training.batch import per_process_train
from gmaiou.training.checkpoint import (
    capture_rng_state,
    has_training_state,
    restore_rng_state,
)
from gmaiou.training.curves import write_curves
from gmaiou.training.distributed import (
    DistContext,
    ResumableSampler,
    all_reduce_mean,
    any_process,
    barrier,
)
from gmaiou.training.schedule import (
    LrSchedule,
    build_optimizer,
    build_scheduler,
    steps_to_iterations,
)

__all__ = [
    "CONFIG_FILE",
    "CHECKPOINT_FILE",
    "EVAL_FILE",
    "METRICS_FILE",
    "RUN_FILE_PATTERNS",
    "RunOptions",
    "TrainResult",
    "TrainingDiverged",
    "prepare_run_dir",
    "resolve_data_root",
    "seed_everything",
    "train",
]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; raised before that step, after a checkpoint of the last one."""


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
        check_data: before training, check that every image file of the train and eval
            splits exists with its annotated size (file headers only; see
            :func:`gmaiou.data.coco.check_image_files`).
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
    check_data: bool = True


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


@contextmanager
def _tf32_policy(enabled: bool, device: torch.device) -> Iterator[None]:
    """On CUDA: TF32 for float32 matrix products and cuDNN convolutions alike (``enabled``) or
    for neither, inside; the previous flags after. On other devices nothing changes."""
    if device.type != "cuda":
        yield
        return
    previous = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = bool(enabled)
    torch.backends.cudnn.allow_tf32 = bool(enabled)
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = previous


#: The autocast dtype of the forward when ``train.amp`` is on (CUDA only).
_AMP_DTYPE = torch.float16


def _use_amp(train_config: Any, device: torch.device) -> bool:
    """Mixed precision: ``train.amp`` on a CUDA device."""
    return bool(train_config.amp) and device.type == "cuda"


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
    antialias = config.model.resize_antialias
    if options.augment:
        transform = config.augment.transform(size, antialias=antialias)
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


@dataclass
class _Job:
    """The live state of one training job: what the loop reads and advances.

    Mutable on purpose (``epoch``, ``batch_in_epoch``, ``iteration``, ``finished`` and the
    RNG bookkeeping move with every iteration); built by :func:`_setup`.
    """

    config: Any
    #: this process's share of the global batch (``config.train.batch_size / world size``)
    process_batch: int
    options: RunOptions
    ctx: DistContext
    out_dir: Path
    data_root: Path
    train_set: Any
    test_transform: Any
    model: nn.Module
    net: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    sampler: ResumableSampler
    loader: Any
    iters_per_epoch: int
    total_iters: int
    max_iters: int
    use_amp: bool
    resuming: bool
    start_epoch: int = 0
    start_batch: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    iteration: int = 0
    finished: bool = False
    #: this process's RNG state from the checkpoint, restored once the first loader iterator exists
    rng_to_restore: dict[str, Any] | None = None
    #: this process's RNG state before the batch being drawn; ``None`` once its iteration completed
    rng_at_boundary: dict[str, Any] | None = None

    @property
    def device(self) -> torch.device:
        return self.ctx.device


def _state(job: _Job, rng_states: list[dict[str, Any]], done: bool) -> dict[str, Any]:
    """The checkpoint dictionary at the job's current position."""
    epoch, batch_in_epoch = job.epoch, job.batch_in_epoch
    if batch_in_epoch >= job.iters_per_epoch:
        epoch, batch_in_epoch = epoch + 1, 0
    return {
        "model": job.model.state_dict(),
        "optimizer": job.optimizer.state_dict(),
        "scheduler": job.scheduler.state_dict(),
        "scaler": job.scaler.state_dict(),
        "rng": rng_states,
        "epoch": epoch,
        "batch_in_epoch": batch_in_epoch,
        "iteration": job.iteration,
        "finished": done,
        "world_size": job.ctx.world_size,
    }


def _gather_rng(ctx: DistContext, mine: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every process's RNG state (``mine``, default: the current one), indexed by rank.

    Collective: all ranks must call it.
    """
    mine = capture_rng_state() if mine is None else mine
    if not ctx.is_distributed:
        return [mine]
    import torch.distributed as dist

    states: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(states, mine)
    return states


def _checkpoint(job: _Job, done: bool = False, rng: dict[str, Any] | None = None) -> None:
    """Write the job's checkpoint (rank 0) at its current position; collective."""
    rng_states = _gather_rng(job.ctx, rng)
    if job.ctx.is_main:
        save_checkpoint(job.out_dir / CHECKPOINT_FILE, _state(job, rng_states, done))
    barrier(job.ctx)


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
        FileNotFoundError: a missing dataset folder, split, image file or checkpoint.
        ValueError: an image whose size differs from its annotation entry, or a split
            without one usable instance (found before the run directory is touched).
        TrainingDiverged: a non-finite loss (a checkpoint of the last finite iteration is written).
        KeyboardInterrupt: after Ctrl-C, once the checkpoint is written.
    """
    if ctx is None:
        from gmaiou.devices import resolve_device

        ctx = DistContext(device=resolve_device(options.device))
    with _determinism(options.deterministic), _tf32_policy(config.train.tf32, ctx.device):
        return _train(config, options, ctx, config_name, overrides, on_iteration)


def _train(
    config: Any,
    options: RunOptions,
    ctx: DistContext,
    config_name: str | None,
    overrides: dict[str, Any] | None,
    on_iteration: Callable[[int, dict[str, float]], None] | None,
) -> TrainResult:
    new_folders = _missing_folders(Path(options.out_dir)) if ctx.is_main else []
    try:
        job = _setup(config, options, ctx)
        if job.resuming:
            _resume(job)
        else:
            # Model initialisation used ``seed``; the data draws of rank r use ``seed + r``.
            seed_everything(options.seed + ctx.rank)
        if ctx.is_main and not (options.resume and (job.out_dir / CONFIG_FILE).is_file()):
            _write_run_record(job, config_name, overrides)  # a resumed run keeps its record
    except BaseException:
        _remove_empty(new_folders)  # a run that fails before its first step leaves no folder
        raise
    interrupted = _run_loop(job, config_name, on_iteration)
    if interrupted:
        if ctx.is_main:
            write_curves(job.out_dir, title=_curves_title(job, config_name))
        raise KeyboardInterrupt(
            f"training stopped at iteration {job.iteration}; checkpoint written to {job.out_dir}"
        )
    if ctx.is_distributed:
        # DDP hands rank 0's buffers (BatchNorm statistics) to every rank before each forward;
        # after the last step each rank holds its own, so hand them over once more.
        import torch.distributed as dist

        for buffer in job.model.buffers():
            dist.broadcast(buffer, src=0)

    metrics = None
    if (job.finished or job.iteration >= job.max_iters) and options.eval_split is not None:
        if ctx.is_main:
            metrics = _final_evaluation(
                job.model,
                job.config,
                options,
                job.data_root,
                job.test_transform,
                job.out_dir,
                job.device,
            )
        barrier(ctx)
    if ctx.is_main:
        write_curves(job.out_dir, job.iteration, metrics, title=_curves_title(job, config_name))
    return TrainResult(
        iterations=job.iteration,
        finished=job.finished,
        metrics=metrics,
        run_dir=job.out_dir,
        model=job.model,
    )


def _missing_folders(path: Path) -> list[Path]:
    """``path`` and those of its parents that do not exist yet, deepest first."""
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing


def _remove_empty(folders: list[Path]) -> None:
    """Remove ``folders`` (deepest first) where this call created them and left them empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except FileNotFoundError:
            continue
        except OSError:
            return  # not empty: what is in it stays, and so do the folders above


def _check_resumed_data(out_dir: Path, data_root: Path) -> None:
    """A resumed run goes on with the data it was trained on (its ``config.json``'s)."""
    record_path = out_dir / CONFIG_FILE
    try:
        recorded = json.loads(record_path.read_text()).get("data_root")
    except (OSError, ValueError, AttributeError):
        return  # no readable record: prepare_run_dir says what is missing
    if recorded is not None and Path(recorded).resolve() != Path(data_root).resolve():
        raise ValueError(
            f"cannot resume {out_dir}: it was trained on the data in {recorded}, not "
            f"{data_root}; resume it with --data {recorded}"
        )


def _curves_title(job: _Job, config_name: str | None) -> str:
    return f"{config_name or job.config.name} · {job.out_dir.name}"


def _preflight(train_set: Any, options: RunOptions, data_root: Path, ctx: DistContext) -> None:
    """Check the data before the run directory is touched: files, sizes, usable instances.

    Prints (rank 0) one line per split with what was dropped from its annotations.
    """
    from gmaiou.data import CocoInstances
    from gmaiou.data.coco import check_image_files

    splits = [(options.train_split, train_set)]
    if options.eval_split is not None:
        splits.append((options.eval_split, CocoInstances.from_root(data_root, options.eval_split)))
    for split, dataset in splits:
        if options.check_data:
            check_image_files(dataset)
        if split == options.train_split:
            dataset.check_instances()
        if ctx.is_main:
            print(f"{split} split: {len(dataset):,} images; {dataset.dropped_summary()}")


def _setup(config: Any, options: RunOptions, ctx: DistContext) -> _Job:
    """Data, run directory, model, optimizer, loader and schedule of a job, before any step."""
    from gmaiou.data.loader import make_loader
    from gmaiou.models import build_model, resolve_weights

    out_dir = Path(options.out_dir)
    if ctx.is_main:
        check_writable_folder(out_dir, "run directory")
    seed_everything(options.seed)
    # The data is checked before the run directory is touched.
    data_root = resolve_data_root(
        options.data_root,
        options.synthetic_images,
        options.synthetic_size or config.model.image_size,
    )
    if options.resume:
        _check_resumed_data(out_dir, data_root)
    train_set, test_transform = _build_datasets(config, options, data_root)
    _preflight(train_set, options, data_root, ctx)
    if ctx.is_main:
        prepare_run_dir(out_dir, options.resume, options.overwrite)
    barrier(ctx)
    resuming = options.resume and (out_dir / CHECKPOINT_FILE).is_file()
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
    optimizer = build_optimizer(params, tc)
    sampler = ResumableSampler(
        train_set, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=options.seed
    )
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
    schedule = _lr_schedule(tc, iters_per_epoch)
    use_amp = _use_amp(tc, device)
    return _Job(
        config=config,
        process_batch=tc.batch_size,
        options=options,
        ctx=ctx,
        out_dir=out_dir,
        data_root=data_root,
        train_set=train_set,
        test_transform=test_transform,
        model=model,
        net=net,
        optimizer=optimizer,
        scheduler=build_scheduler(optimizer, schedule),
        scaler=torch.amp.GradScaler(device.type, enabled=use_amp),
        sampler=sampler,
        loader=loader,
        iters_per_epoch=iters_per_epoch,
        total_iters=total_iters,
        max_iters=options.max_iters if options.max_iters is not None else total_iters,
        use_amp=use_amp,
        resuming=resuming,
    )


def _lr_schedule(tc: Any, iters_per_epoch: int) -> LrSchedule:
    """The learning-rate schedule of ``tc`` (a per-process train config) over its epochs."""
    total_iters = tc.epochs * iters_per_epoch
    return LrSchedule(
        total_iters=total_iters,
        warmup_iters=min(tc.warmup_iters, total_iters),
        warmup_ratio=tc.warmup_ratio,
        kind=tc.schedule,
        step_iters=steps_to_iterations(tc.steps, iters_per_epoch) if tc.schedule == "step" else (),
        gamma=tc.gamma,
        min_ratio=tc.min_lr_ratio,
    )


def _resume(job: _Job) -> None:
    """Load the run directory's checkpoint into the job (weights, optimizer, position, RNG)."""
    ckpt = load_checkpoint(job.out_dir / CHECKPOINT_FILE, map_location="cpu")
    if ckpt["world_size"] != job.ctx.world_size:
        raise ValueError(
            f"the checkpoint in {job.out_dir} was written by {ckpt['world_size']} processes; "
            f"resume it with the same number (got {job.ctx.world_size})"
        )
    if not has_training_state(ckpt):
        raise ValueError(
            f"the checkpoint in {job.out_dir} holds the weights only (the experiment runner "
            "drops the optimizer state of a finished run), so training cannot resume from it; "
            "train again with --overwrite, or evaluate it as it is"
        )
    job.model.load_state_dict(ckpt["model"])
    job.optimizer.load_state_dict(ckpt["optimizer"])
    job.scheduler.load_state_dict(ckpt["scheduler"])
    job.scaler.load_state_dict(ckpt["scaler"])
    job.start_epoch, job.start_batch = ckpt["epoch"], ckpt["batch_in_epoch"]
    job.iteration, job.finished = ckpt["iteration"], ckpt["finished"]
    job.rng_to_restore = ckpt["rng"][job.ctx.rank]
    if job.ctx.is_main:
        _truncate_metrics(job.out_dir / METRICS_FILE, job.iteration)


def _write_run_record(job: _Job, config_name: str | None, overrides: dict[str, Any] | None) -> None:
    """``config.json``: the resolved config, the overrides, the data and the run options."""
    _write_json(
        job.out_dir / CONFIG_FILE,
        {
            "config_name": config_name,
            "overrides": overrides or {},
            "config": job.config.to_dict(),
            "data_root": str(job.data_root),
            "num_classes": job.train_set.num_classes,
            "cat_ids": list(job.train_set.cat_ids),
            "class_names": list(job.train_set.class_names),
            "world_size": job.ctx.world_size,
            "effective_batch_size": job.process_batch * job.ctx.world_size,
            "iters_per_epoch": job.iters_per_epoch,
            "options": {
                k: v
                for k, v in dataclasses.asdict(job.options).items()
                if k not in ("resume", "overwrite")
            },
        },
    )


def _run_loop(
    job: _Job,
    config_name: str | None,
    on_iteration: Callable[[int, dict[str, float]], None] | None,
) -> bool:
    """Epochs until done, ``max_iters`` or a stop request; returns whether it was interrupted.

    An exception inside an iteration (a bad image, a non-finite loss, out of memory) first
    writes a checkpoint of the last completed iteration, then propagates with a note
    saying so; on several processes only a non-finite loss (which all ranks see at once)
    can be checkpointed this way.
    """
    stop = _StopFlag()
    metrics_handle = open(job.out_dir / METRICS_FILE, "a") if job.ctx.is_main else None  # noqa: SIM115
    bar = tqdm(
        total=min(job.max_iters, job.total_iters),
        initial=job.iteration,
        desc=f"train {config_name or ''}".strip(),
        disable=not (job.ctx.is_main and job.options.progress),
        dynamic_ncols=True,
    )
    tc = job.config.train
    try:
        with _stop_on_signals(stop):
            job.net.train()
            job.epoch = job.start_epoch
            while not job.finished and job.epoch < tc.epochs and job.iteration < job.max_iters:
                ended = _run_epoch_guarded(job, stop, metrics_handle, bar, on_iteration)
                if ended == "interrupted":
                    return True
                if job.batch_in_epoch >= job.iters_per_epoch:
                    job.finished = job.epoch + 1 >= tc.epochs
                    _checkpoint(job, job.finished)  # stored as (epoch + 1, 0)
                    job.epoch += 1
                elif job.iteration >= job.max_iters:
                    _checkpoint(job)
                if job.finished or job.iteration >= job.max_iters:
                    break
    finally:
        bar.close()
        if metrics_handle is not None:
            metrics_handle.close()
    return False


_OnIteration = Callable[[int, dict[str, float]], None]


def _run_epoch_guarded(
    job: _Job,
    stop: _StopFlag,
    metrics_handle: IO[str] | None,
    bar: tqdm,
    on_iteration: _OnIteration | None,
) -> str:
    """:func:`_run_epoch`, checkpointing the last completed iteration if it raises."""
    try:
        return _run_epoch(job, stop, metrics_handle, bar, on_iteration)
    except Exception as err:
        if job.ctx.is_distributed and not isinstance(err, TrainingDiverged):
            raise  # the other ranks may be inside a collective: no collective checkpoint
        _checkpoint(job, rng=job.rng_at_boundary)
        err.add_note(
            f"checkpoint of iteration {job.iteration} written to {job.out_dir / CHECKPOINT_FILE}; "
            "--resume continues from it"
        )
        raise


def _run_epoch(
    job: _Job,
    stop: _StopFlag,
    metrics_handle: IO[str] | None,
    bar: tqdm,
    on_iteration: _OnIteration | None,
) -> str:
    """The rest of epoch ``job.epoch``: ``"interrupted"``, ``"max_iters"`` or ``"epoch_end"``."""
    first = job.start_batch if job.epoch == job.start_epoch else 0
    job.sampler.set_epoch(job.epoch, start=first * job.process_batch)
    # The workers' seeds come from the loader's generator: a function of
    # (seed, rank, epoch), so a resumed epoch seeds its workers as the original did.
    job.loader.generator.manual_seed(_loader_seed(job.options.seed, job.ctx.rank, job.epoch))
    batches = iter(job.loader)
    if job.rng_to_restore is not None:
        # After the iterator drew its base seed, so that the next augmentation
        # draws are exactly those of the uninterrupted run.
        restore_rng_state(job.rng_to_restore)
        job.rng_to_restore = None
    job.batch_in_epoch = first
    tic = time.perf_counter()
    while True:
        job.rng_at_boundary = capture_rng_state()  # what a checkpoint after a failure restores
        try:
            batch = next(batches)
        except StopIteration:
            return "epoch_end"
        data_time = time.perf_counter() - tic
        logged, grad_norm, lr = _iteration(job, batch)
        step_time = time.perf_counter() - tic
        if metrics_handle is not None:
            record = {
                "epoch": job.epoch,
                "iter": job.batch_in_epoch,
                "iteration": job.iteration,
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
            epoch=job.epoch, loss=f"{logged['loss']:.3f}", lr=f"{lr:.2e}", refresh=False
        )
        if on_iteration is not None:
            on_iteration(job.iteration, logged)
        if any_process(stop.requested, job.ctx):
            _checkpoint(job)
            return "interrupted"
        if job.iteration >= job.max_iters:
            return "max_iters"
        if (
            job.options.ckpt_every > 0
            and job.iteration % job.options.ckpt_every == 0
            and job.batch_in_epoch < job.iters_per_epoch  # the epoch-end checkpoint follows
        ):
            _checkpoint(job)
        tic = time.perf_counter()


def _iteration(job: _Job, batch: dict[str, Any]) -> tuple[dict[str, float], float | None, float]:
    """One optimizer step on ``batch``; advances the job's counters.

    Returns the loss components (mean over processes), the gradient norm before clipping
    and the learning rate used. A non-finite loss raises :class:`TrainingDiverged`
    before the weights change; on any exception before the optimizer step the model's
    buffers (BatchNorm statistics) are put back as they were.
    """
    tc = job.config.train
    # The forward updates BatchNorm statistics: keep them to undo a step that fails.
    buffers = [b.detach().clone() for b in job.model.buffers()]
    try:
        losses = _losses(job.net, job.model, batch, job.device, job.use_amp)
        values = all_reduce_mean(torch.stack([losses[k].detach().float() for k in losses]), job.ctx)
        logged = dict(zip(losses, values.tolist()))
        if not all(math.isfinite(v) for v in logged.values()):
            raise TrainingDiverged(
                f"non-finite loss at iteration {job.iteration + 1} (epoch {job.epoch}): {logged}; "
                "lower --lr or check the data"
            )
        grad_norm = _backward_and_step(losses["loss"], job.optimizer, job.scaler, tc.grad_clip)
    except BaseException:
        with torch.no_grad():
            for saved, buffer in zip(buffers, job.model.buffers()):
                buffer.copy_(saved)
        raise
    lr = job.optimizer.param_groups[0]["lr"]
    job.scheduler.step()
    job.iteration += 1
    job.batch_in_epoch += 1
    job.rng_at_boundary = None  # this iteration is complete: a checkpoint takes the current state
    return logged, grad_norm, lr


def _losses(
    net: nn.Module,
    model: nn.Module,
    batch: dict[str, Any],
    device: torch.device,
    use_amp: bool,
) -> dict[str, Tensor]:
    """The forward (under autocast when ``use_amp``) and the loss components, in float32."""
    batch = _to_device(batch, device)
    with torch.autocast(device_type=device.type, dtype=_AMP_DTYPE, enabled=use_amp):
        outputs = net(batch["images"])
    return model.loss(_to_float(outputs), batch)


def _backward_and_step(
    loss: Tensor,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    grad_clip: float | None,
) -> float | None:
    """Backward, optional clipping and the optimizer step; returns the norm before clipping."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    grad_norm: float | None = None
    if grad_clip:
        scaler.unscale_(optimizer)
        params = [p for g in optimizer.param_groups for p in g["params"]]
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, grad_clip))
    scaler.step(optimizer)
    scaler.update()
    return grad_norm


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
