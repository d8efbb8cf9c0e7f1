"""``gmaiou-paper bench train``: the speed side of Table 4, and our own fps for Table 5.

For YOLACT (fixed IoU rule), ATSS-YOLACT (GmaIoU) and GmaYOLACT (ATSS, GmaIoU) at the
same backbone and image size, side by side in ONE process, rounds alternating between
the models after warm-up (medians reported):

* **anchors per image** of each model;
* **training s/iteration**: forward, assignment, loss, backward and the preset's optimizer
  step on a fixed set of batches from the training loader, the GmaIoU tables prepared in
  the loader as ``gmaiou train`` does. With ``--trainer-settings`` (the default on CUDA)
  each step is the trainer's own (:func:`gmaiou.training.trainer._iteration`: the batch
  moved to the device inside it, float16 autocast where the preset's ``train.amp``, the
  gradient scaler, clipping, the schedule, the loss logged) under ``cudnn.benchmark`` and
  TF32 per ``train.tf32``, and the record adds per model images/s, the peak of allocated
  GPU memory (reset before each step), the host-device syncs of one step (CUDA's sync
  debug mode; ``None`` on the CPU), the steps the gradient scaler skipped, and an
  *estimate* of minutes per COCO epoch (118,287 images at the batch timed, data loading
  not counted); then ``--trained-in-iters`` iterations of real training (the trainer's
  loader with its augmentation, on the scale's data) and the same timing again
  (``trained_in``: the step once the scores are no longer those of random weights, fewer
  negatives ranking near the positives, and the gradient scaler past its first overflows),
  that training stopped early after ``--trained-in-seconds``. Without it (the CPU's default) the
  step is float32 at the optimizer's first warm-up rate, the batches already on the device;
* **inference**, batch 1: the network (forward in eval mode) and the post-processing
  (scores, box decoding, NMS, masks assembled at the input's ``S x S``), per image, and
  the fps of both together. Random weights fill every image with up to 100 detections,
  so the detections per image are reported beside the post-processing time.

Scales (``--scale``): ``cpu`` — the CPU recipe's ResNet-18 at 160 px, on the synthetic set,
with trained weights from run folders when ``--run`` names them (random otherwise);
``paper`` — ResNet-50 at 550 px on the COCO sample (random weights, few iterations);
``table5`` — ResNet-50 at the paper's 400, 550 and 700 px, inference only (our fps for
Table 5). ``--profile smoke`` shrinks any scale to ResNet-18 at 160 px and one iteration,
for tests. The record (JSON) goes to ``figures/timings/model_speed_<scale>_<device>.json``
(``--out``; the ``cpu`` scale's name there is ``recipe``), its Markdown table to ``--markdown``
when given: CPU name, torch version, threads and pinned cores, or the GPU's name, are in both.
Inference is float32 throughout. :func:`format_model_speed`, :func:`plot_speed` and
:func:`model_speed_findings` fold several records (devices, scales) into one table, figure and
list of sentences.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import math
import os
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from gmaiou.paper.benchmarks import device_name, write_record
from gmaiou.paper.benchmarks.infer import (
    _median_ms,
    _run_dir,
    _timed,
    _to_device,
    timed_inference,
    training_batches,
)

__all__ = [
    "MODELS",
    "SCALES",
    "SpeedSettings",
    "default_out",
    "describe_data",
    "find_trained_runs",
    "format_model_speed",
    "model_speed_findings",
    "PAPER_CLAIMS",
    "plot_speed",
    "speed_findings",
    "format_speed_table",
    "preset_at",
    "register",
    "run",
    "run_speed_benchmark",
    "speed_frame",
    "speed_settings",
]

#: The three models of Table 4's speed side: preset prefix -> label in the paper's words.
MODELS: dict[str, str] = {
    "yolact-fixed": "YOLACT (fixed IoU)",
    "yolact-atss-gmaiou": "ATSS-YOLACT (GmaIoU)",
    "gmayolact-atss-gmaiou": "GmaYOLACT (ATSS, GmaIoU)",
}


@dataclasses.dataclass(frozen=True)
class Scale:
    """A named scale: backbone, image sizes, whether training is timed, its data, its cost."""

    backbone: str
    sizes: tuple[int, ...]
    train: bool
    data: str  # "synthetic" or "coco" (the COCO sample when present, else synthetic)
    description: str
    heavy: bool = False  # ResNet-50 at the paper's sizes: fewer iterations on the CPU profiles


SCALES: dict[str, Scale] = {
    "cpu": Scale("r18", (160,), True, "synthetic", "the CPU recipe's scale (ResNet-18, 160 px)"),
    "paper": Scale("r50", (550,), True, "coco", "the paper's scale (ResNet-50, 550 px)", True),
    "table5": Scale(
        "r50",
        (400, 550, 700),
        False,
        "coco",
        "Table 5's sizes (ResNet-50 at 400, 550, 700 px)",
        True,
    ),
}

#: Iterations per profile: (batch size, training iterations, inference images, warm-up rounds).
_ITERATIONS: dict[str, tuple[int, int, int, int]] = {
    "smoke": (1, 1, 1, 1),
    "quick": (2, 2, 3, 1),
    "default": (2, 5, 10, 2),
    "paper": (2, 10, 20, 3),
}
#: Iterations of training before the trained-in timing, per profile (trainer settings only).
_TRAINED_IN: dict[str, int] = {"smoke": 2, "quick": 20, "default": 200, "paper": 200}
#: The same for the heavy scales (ResNet-50 at 400-700 px; minutes per iteration on one core).
_ITERATIONS_HEAVY: dict[str, tuple[int, int, int, int]] = {
    **_ITERATIONS,
    "quick": (1, 1, 2, 1),
    "default": (2, 3, 5, 1),
}


@dataclasses.dataclass(frozen=True)
class SpeedSettings:
    """What one ``bench train`` run measures.

    Attributes:
        scale: the scale's name, for the record (``cpu``, ``paper``, ``table5`` or custom).
        backbone: ``r18``, ``r34``, ``r50`` or ``r101``.
        sizes: square image sides; each is measured in turn, the models side by side.
        models: preset prefixes (keys of :data:`MODELS`).
        train: time training iterations (else inference only).
        batch_size: images per training batch (inference is always batch 1).
        train_iters: timed training iterations per model (after ``warmup``).
        infer_iters: timed inference images per model (after ``warmup``).
        warmup: untimed rounds first.
        runs: trained run folders (or their ``checkpoint.pt``); a run replaces the random
            model of its preset prefix. Runs need a single size, their own.
        data: dataset root for the batches (default: the scale's; with runs, the first
            run's own data).
        device: ``cpu``, ``cuda``, ``cuda:N`` (``None``: CUDA when available).
        seed: seed of the random weights and of the batch order.
        profile: the profile the settings came from (recorded).
        trainer_settings: time each training step as ``gmaiou train`` takes it (the
            trainer's own step: float16 autocast where the preset's ``train.amp``, gradient
            scaler, TF32 per ``train.tf32``, cuDNN autotuning, the batch moved to the
            device inside the step) and count GPU memory and host-device syncs; off: the
            float32 step. ``None``: on for CUDA, off elsewhere.
        trained_in_iters: with the trainer settings, iterations of real training (the
            trainer's loader and step) after the first timing, then the timing again
            (0: none).
        trained_in_seconds: stop that training after this many seconds (``None``: no limit);
            the record says how many iterations were done.
    """

    scale: str
    backbone: str
    sizes: tuple[int, ...]
    models: tuple[str, ...] = tuple(MODELS)
    train: bool = True
    batch_size: int = 2
    train_iters: int = 5
    infer_iters: int = 10
    warmup: int = 2
    runs: tuple[str, ...] = ()
    data: str | None = None
    data_kind: str = "synthetic"
    device: str | None = "cpu"
    seed: int = 0
    profile: str = "default"
    trainer_settings: bool | None = None
    trained_in_iters: int = 0
    trained_in_seconds: float | None = None

    def __post_init__(self) -> None:
        if not self.sizes:
            raise ValueError("sizes must name at least one image size")
        for size in self.sizes:
            if size < 32:
                raise ValueError(f"image size must be >= 32, got {size}")
        for name in ("batch_size", "train_iters", "infer_iters"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {self.warmup}")
        if self.trained_in_iters < 0:
            raise ValueError(f"trained_in_iters must be >= 0, got {self.trained_in_iters}")
        if self.trained_in_seconds is not None and not self.trained_in_seconds > 0:
            raise ValueError(f"trained_in_seconds must be > 0, got {self.trained_in_seconds}")
        unknown = [m for m in self.models if m not in MODELS]
        if unknown or not self.models:
            raise ValueError(
                f"unknown model(s) {', '.join(unknown) or '(none given)'}; "
                f"choose from {', '.join(MODELS)}"
            )
        if self.runs and len(self.sizes) != 1:
            raise ValueError("trained runs (--run) are timed at one size, their own; give one size")
        if self.data_kind not in ("synthetic", "coco"):
            raise ValueError(f"data_kind must be synthetic or coco, got {self.data_kind!r}")


def speed_settings(scale: str, profile: str = "default", **overrides: Any) -> SpeedSettings:
    """The settings of ``scale`` (a key of :data:`SCALES`) at ``profile``, with ``overrides``.

    ``smoke`` shrinks every scale to ResNet-18 at 160 px, batch 1, one iteration (tests and
    the notebooks' smoke runs); the other profiles keep the scale and set the iterations.
    """
    from gmaiou.paper.profiles import get_profile

    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; choose from {', '.join(SCALES)}")
    get_profile(profile)  # a clear error for an unknown profile
    sc = SCALES[scale]
    batch, train_iters, infer_iters, warmup = (_ITERATIONS_HEAVY if sc.heavy else _ITERATIONS)[
        profile
    ]
    backbone, sizes = ("r18", (160,)) if profile == "smoke" else (sc.backbone, sc.sizes)
    base = SpeedSettings(
        scale=scale,
        backbone=backbone,
        sizes=sizes,
        train=sc.train,
        batch_size=batch,
        train_iters=train_iters,
        infer_iters=infer_iters,
        warmup=warmup,
        data_kind=sc.data,
        profile=profile,
        trained_in_iters=_TRAINED_IN.get(profile, 0),
    )
    overrides = {k: v for k, v in overrides.items() if v is not None}
    for key in ("sizes", "models", "runs"):
        if key in overrides:
            overrides[key] = tuple(overrides[key])
    return dataclasses.replace(base, **overrides)


def preset_at(model: str, backbone: str, size: int):
    """The preset ``<model>-<backbone>-<size>``; at other sizes, the backbone's first preset
    of that model with ``model.image_size`` replaced (anchors follow the image size).

    Raises:
        ValueError: no preset of ``model`` with ``backbone`` exists.
    """
    from gmaiou.configs import get_config, list_configs

    prefix = f"{model}-{backbone}-"
    names = [n for n in list_configs() if n.startswith(prefix)]
    if not names:
        raise ValueError(
            f"unknown preset {prefix}{size}: no preset named {prefix}<size>; "
            "`gmaiou configs` lists them (backbones r18, r34, r50, r101)"
        )
    exact = f"{prefix}{size}"
    if exact in names:
        return get_config(exact)
    config = get_config(names[0])
    return dataclasses.replace(
        config, name=exact, model=dataclasses.replace(config.model, image_size=size)
    )


def find_trained_runs(
    profile: str = "default",
    grids: Sequence[str] = ("table2", "table3"),
    folders: Sequence[str | Path] = (),
    backbone: str = "r18",
    size: int = 160,
    seed: int = 0,
) -> dict[str, Path]:
    """Finished run folders of the benchmarked models at ``backbone``/``size``, by preset prefix.

    Looks in ``runs/<profile>/<grid>/`` of this checkout for each grid in turn, then in
    ``folders``, for ``<preset>-synth-uniform-*-seed<seed>`` (the current recipe: no
    ``+variant``) holding ``checkpoint.pt`` and ``eval.json`` (a finished run). Models
    without one are left out (the benchmark then times them with random weights).
    """
    from gmaiou.paper.paths import repo_root

    places = [repo_root() / "runs" / profile / g for g in grids] + [Path(f) for f in folders]
    found: dict[str, Path] = {}
    for key in MODELS:
        preset = f"{key}-{backbone}-{size}"
        for place in places:
            hits = (
                sorted(place.glob(f"{preset}-synth-uniform-*-seed{seed}")) if place.is_dir() else []
            )
            hits = [
                h for h in hits if (h / "checkpoint.pt").is_file() and (h / "eval.json").is_file()
            ]
            if hits:
                found[key] = hits[0]
                break
    return found


def _model_key(config_name: str) -> str | None:
    for key in MODELS:
        if config_name.startswith(f"{key}-"):
            return key
    return None


def _load_runs(
    settings: SpeedSettings, device: torch.device
) -> dict[str, tuple[torch.nn.Module, Any, dict]]:
    """The trained runs, by preset prefix; errors name the run that does not fit."""
    from gmaiou.evaluation.run import load_run

    loaded: dict[str, tuple[torch.nn.Module, Any, dict]] = {}
    for path in settings.runs:
        run_dir = _run_dir(path)
        model, config, record = load_run(run_dir, device)
        key = _model_key(config.name)
        if key is None or key not in settings.models:
            raise ValueError(
                f"--run {path}: its config {config.name} is none of the benchmarked models "
                f"({', '.join(settings.models)})"
            )
        if key in loaded:
            raise ValueError(f"--run {path}: a second run of {key}; give one run per model")
        if config.model.backbone != settings.backbone or config.model.image_size not in (
            settings.sizes
        ):
            raise ValueError(
                f"--run {path}: {config.name} is {config.model.backbone} at "
                f"{config.model.image_size} px, not the benchmark's {settings.backbone} at "
                f"{', '.join(map(str, settings.sizes))} px"
            )
        loaded[key] = (model, config, {**record, "run": str(run_dir)})
    return loaded


def _data_root(settings: SpeedSettings, size: int, runs: dict[str, tuple]) -> Path:
    from gmaiou.data.synthetic import ensure_synthetic
    from gmaiou.paper.paths import coco_sample_dir
    from gmaiou.runs import resolve_data_root

    if settings.data is not None:
        root = Path(settings.data)
        if not root.is_dir():
            raise FileNotFoundError(f"--data {settings.data}: no such dataset folder")
        return root
    if runs:
        first = next(iter(runs.values()))[2]
        return Path(resolve_data_root(first["data_root"]))
    if settings.data_kind == "coco":
        sample = coco_sample_dir()
        if sample is not None:
            return sample
    return ensure_synthetic(num_images=64, size=size, progress=False)


def _train_step(model: torch.nn.Module, optimizer, batch: dict[str, Any], clip: float | None):
    losses = model.loss(model(batch["images"]), batch)
    optimizer.zero_grad(set_to_none=True)
    losses["loss"].backward()
    if clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()
    return float(losses["loss"].detach())


#: Images of COCO 2017's train split: the estimate of minutes per epoch is at this many.
COCO_TRAIN_IMAGES = 118_287
_MIB = 2**20


@dataclasses.dataclass
class _Stepper:
    """One model's training step for the timing rounds.

    Attributes:
        step: one step on the ``r``-th batch (cycling through the fixed batches); the loss.
        scale: the gradient scaler's scale, read between steps to count the steps it
            skipped (``None``: no scaler in use).
    """

    step: Callable[[int], float]
    scale: Callable[[], float] | None = None


def _count_syncs(fn: Callable[[], Any], device: torch.device) -> int | None:
    """Host-device synchronisations during ``fn()``: the warnings CUDA's sync debug mode
    raises (``torch.cuda.set_sync_debug_mode("warn")``). ``None`` (and ``fn`` not run) on
    other devices."""
    if device.type != "cuda":
        return None
    previous = torch.cuda.get_sync_debug_mode()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode(previous)
            torch.cuda.synchronize(device)
    return sum("synchroniz" in str(w.message) for w in caught)


def _time_rounds(
    steppers: dict[str, _Stepper],
    settings: SpeedSettings,
    device: torch.device,
    progress: bool,
    desc: str,
    failed: dict[str, str],
) -> dict[str, dict[str, Any]]:
    """``settings.warmup`` untimed rounds, then ``settings.train_iters`` timed ones, each round
    one step of every model in turn; then one more step each with the syncs counted.

    Per model: the median s/iteration and every timed one, images/s, the estimate of minutes
    per COCO epoch at ``settings.batch_size``, whether every loss was finite, the peak of
    allocated GPU memory during its steps (reset before each step: it includes what the
    other models keep resident) and what its step added to what was allocated before it,
    the host-device syncs of one step and the steps the gradient scaler skipped (GPU and
    scaler figures ``None`` where they do not apply). A model whose step raises
    :class:`~gmaiou.training.trainer.TrainingDiverged` is left out from then on; its message
    goes to ``failed``.
    """
    from gmaiou.training.trainer import TrainingDiverged

    cuda = device.type == "cuda"
    times: dict[str, list[float]] = {k: [] for k in steppers}
    losses: dict[str, list[float]] = {k: [] for k in steppers}
    peaks: dict[str, list[int]] = {k: [] for k in steppers}
    added: dict[str, list[int]] = {k: [] for k in steppers}
    skipped = dict.fromkeys(steppers, 0)
    rounds = settings.warmup + settings.train_iters
    for r in tqdm(range(rounds), desc=desc, disable=not progress):
        for key, stepper in steppers.items():
            if key in failed:
                continue
            if cuda:
                torch.cuda.reset_peak_memory_stats(device)
                resident = torch.cuda.memory_allocated(device)
            scale = stepper.scale() if stepper.scale is not None else None
            try:
                seconds, loss = _timed(lambda s=stepper, i=r: s.step(i), device)
            except TrainingDiverged as err:
                failed[key] = str(err)
                continue
            if r < settings.warmup:
                continue
            times[key].append(seconds)
            losses[key].append(loss)
            if cuda:
                peak = torch.cuda.max_memory_allocated(device)
                peaks[key].append(peak)
                added[key].append(peak - resident)
            if stepper.scale is not None and stepper.scale() < scale:
                skipped[key] += 1
    syncs: dict[str, int | None] = {}
    for key, stepper in steppers.items():
        if key in failed:
            continue
        try:
            syncs[key] = _count_syncs(lambda s=stepper: s.step(rounds), device)
        except TrainingDiverged as err:
            failed[key] = str(err)
    out: dict[str, dict[str, Any]] = {}
    iters_per_epoch = math.ceil(COCO_TRAIN_IMAGES / settings.batch_size)
    for key, stepper in steppers.items():
        median = statistics.median(times[key]) if times[key] else None
        out[key] = {
            "s_per_iter": median,
            "s_per_iter_all": times[key],
            "images_per_s": None if median is None else settings.batch_size / median,
            "coco_epoch_minutes_estimate": None
            if median is None
            else iters_per_epoch * median / 60.0,
            "loss_finite": bool(losses[key]) and all(math.isfinite(v) for v in losses[key]),
            "peak_gpu_memory_mib": max(peaks[key]) / _MIB if peaks[key] else None,
            "step_gpu_memory_mib": max(added[key]) / _MIB if added[key] else None,
            "host_syncs_per_step": syncs.get(key),
            "skipped_steps": skipped[key] if stepper.scale is not None else None,
        }
        if key in failed:
            out[key]["error"] = failed[key]
    return out


def _prefixed(values: dict[str, Any]) -> dict[str, Any]:
    """A model's first training timing as row columns (``train_...``)."""
    return {f"train_{k}": v for k, v in values.items()}


def _float32_training(
    settings: SpeedSettings,
    models: dict[str, torch.nn.Module],
    batches: list[dict[str, Any]],
    device: torch.device,
    progress: bool,
    rows: dict[str, dict[str, Any]],
) -> None:
    """The float32 steps (``--no-trainer-settings``): forward, loss, backward, clipping and the
    preset's optimizer at its first warm-up rate, the batches already on the device."""
    from gmaiou.training.schedule import build_optimizer

    steppers = {}
    for key, model in models.items():
        tc = model.config.train
        first_lr = tc.lr * (tc.warmup_ratio if tc.warmup_iters > 0 else 1.0)
        optimizer = build_optimizer(list(model.parameters()), dataclasses.replace(tc, lr=first_lr))
        model.train()
        steppers[key] = _Stepper(
            step=lambda r, m=model, o=optimizer: _train_step(
                m, o, batches[r % len(batches)], m.config.train.grad_clip
            )
        )
    size = models[next(iter(models))].image_size
    timed = _time_rounds(steppers, settings, device, progress, f"train {size}px", {})
    for key, values in timed.items():
        rows[key].update(_prefixed(values), amp=False, amp_dtype=None, tf32=None)


def _trainer_job(model: torch.nn.Module, batch_size: int, device: torch.device):
    """The trainer's job state around ``model`` for :func:`gmaiou.training.trainer._iteration`:
    the preset's optimizer at ``batch_size`` (its rate scaled as ``--batch-size`` scales it),
    its schedule over a COCO epoch of that batch, the gradient scaler, mixed precision where
    ``gmaiou train`` uses it. Nothing of it is written anywhere."""
    from gmaiou.training.batch import per_process_train
    from gmaiou.training.distributed import DistContext
    from gmaiou.training.schedule import build_optimizer, build_scheduler
    from gmaiou.training.trainer import RunOptions, _Job, _lr_schedule, _use_amp

    config = model.config
    tc = per_process_train(dataclasses.replace(config.train, batch_size=batch_size), 1)
    iters_per_epoch = math.ceil(COCO_TRAIN_IMAGES / batch_size)
    optimizer = build_optimizer([p for p in model.parameters() if p.requires_grad], tc)
    use_amp = _use_amp(tc, device)
    nowhere = Path(os.devnull)
    return _Job(
        config=config,
        process_batch=batch_size,
        options=RunOptions(out_dir=nowhere, progress=False),
        ctx=DistContext(device=device),
        out_dir=nowhere,
        data_root=nowhere,
        train_set=None,
        test_transform=None,
        model=model,
        net=model,
        optimizer=optimizer,
        scheduler=build_scheduler(optimizer, _lr_schedule(tc, iters_per_epoch)),
        scaler=torch.amp.GradScaler(device.type, enabled=use_amp),
        sampler=None,  # type: ignore[arg-type]
        loader=None,
        iters_per_epoch=iters_per_epoch,
        total_iters=tc.epochs * iters_per_epoch,
        max_iters=tc.epochs * iters_per_epoch,
        use_amp=use_amp,
        resuming=False,
    )


def _trainer_step(job: Any, batch: dict[str, Any]) -> float:
    """One step exactly as ``gmaiou train`` takes it (:func:`~gmaiou.training.trainer._iteration`:
    the batch to the device, autocast forward, float32 losses, their logging, backward through
    the gradient scaler, clipping, the optimizer and the schedule), under the preset's TF32
    setting; the loss."""
    from gmaiou.training.trainer import _iteration, _tf32_policy

    with _tf32_policy(job.config.train.tf32, job.device):
        logged, _, _ = _iteration(job, batch)
    return logged["loss"]


def _as_loaded_for(model: torch.nn.Module, batch: dict[str, Any]) -> dict[str, Any]:
    """``batch`` as the trainer's loader gives it to ``model``: the GmaIoU tables only for a
    mask-aware assigner (the trainer builds none for the others)."""
    from gmaiou.measure import is_mask_measure

    if is_mask_measure(model.config.assigner.measure):
        return batch
    return {**batch, "mask_integrals": None}


def _loader_workers(device: torch.device) -> int:
    """Loader processes of the trained-in phase: 4 beside a GPU (at most the cores), none on the CPU."""
    return 0 if device.type == "cpu" else max(0, min(4, (os.cpu_count() or 1) - 1))


def _train_in(
    settings: SpeedSettings,
    models: dict[str, torch.nn.Module],
    jobs: dict[str, Any],
    root: Path,
    device: torch.device,
    progress: bool,
    failed: dict[str, str],
) -> dict[str, Any]:
    """``settings.trained_in_iters`` rounds of real training, each model one step on the same
    batch from the trainer's loader (its dataset, the first model's augmentation, the GmaIoU
    tables built in the workers), until ``settings.trained_in_seconds`` have passed."""
    from gmaiou.data.loader import make_loader
    from gmaiou.measure import is_mask_measure
    from gmaiou.training.trainer import RunOptions, TrainingDiverged, _build_datasets

    first = next(iter(models.values())).config
    train_set, _ = _build_datasets(first, RunOptions(out_dir=Path(os.devnull)), root)
    workers = _loader_workers(device)
    loader = make_loader(
        train_set,
        batch_size=settings.batch_size,
        shuffle=True,
        num_workers=workers,
        build_integrals=any(is_mask_measure(m.config.assigner.measure) for m in models.values()),
        seed=settings.seed,
    )
    wanted, limit = settings.trained_in_iters, settings.trained_in_seconds
    done, stopped_by_time, fresh = 0, False, True
    batches = iter(loader)
    bar = tqdm(total=wanted, desc="training in", disable=not progress)
    tic = time.perf_counter()
    while done < wanted:
        if limit is not None and time.perf_counter() - tic >= limit:
            stopped_by_time = True
            break
        try:
            batch = next(batches)
        except StopIteration:
            if fresh:
                raise ValueError(f"no training batch under {root}") from None
            batches, fresh = iter(loader), True
            continue
        fresh = False
        for key, job in jobs.items():
            if key not in failed:
                try:
                    _trainer_step(job, _as_loaded_for(models[key], batch))
                except TrainingDiverged as err:
                    failed[key] = str(err)
        done += 1
        bar.update(1)
    bar.close()
    seconds = time.perf_counter() - tic
    del batches, loader
    return {
        "iterations": done,
        "requested": wanted,
        "seconds": seconds,
        "seconds_limit": limit,
        "stopped_by_time": stopped_by_time,
        "loader_workers": workers,
        "data": str(root),
        "augmentation_of": first.name,
    }


def _trainer_training(
    settings: SpeedSettings,
    models: dict[str, torch.nn.Module],
    host_batches: list[dict[str, Any]],
    root: Path,
    device: torch.device,
    progress: bool,
) -> tuple[dict[str, dict[str, Any]], dict[str, Any] | None]:
    """Each model's step as ``gmaiou train`` takes it, timed round by round; then, with
    ``trained_in_iters``, real training and the same timing again.

    Returns per model the row columns (``train_...``; ``trained_in``: the second timing)
    and the trained-in phase's account (``None`` when it is off).
    """
    from gmaiou.training.trainer import _AMP_DTYPE, _determinism

    jobs = {key: _trainer_job(model, settings.batch_size, device) for key, model in models.items()}
    fed = {key: [_as_loaded_for(models[key], b) for b in host_batches] for key in models}
    steppers = {
        key: _Stepper(
            step=lambda r, j=job, bs=fed[key]: _trainer_step(j, bs[r % len(bs)]),
            scale=job.scaler.get_scale if job.scaler.is_enabled() else None,
        )
        for key, job in jobs.items()
    }
    size = models[next(iter(models))].image_size
    failed: dict[str, str] = {}
    rows: dict[str, dict[str, Any]] = {}
    with _determinism(False):  # cuDNN autotuning on, as in a run that is not deterministic
        for model in models.values():
            model.train()
        first = _time_rounds(steppers, settings, device, progress, f"train {size}px", failed)
        for key, job in jobs.items():
            rows[key] = {
                **_prefixed(first[key]),
                "amp": job.use_amp,
                "amp_dtype": str(_AMP_DTYPE).removeprefix("torch.") if job.use_amp else None,
                "tf32": bool(job.config.train.tf32) if device.type == "cuda" else None,
            }
        account: dict[str, Any] | None = None
        if settings.trained_in_iters > 0:
            account = _train_in(settings, models, jobs, root, device, progress, failed)
            before = {key: job.iteration for key, job in jobs.items()}
            again = _time_rounds(steppers, settings, device, progress, "trained in", failed)
            for key in jobs:
                rows[key]["trained_in"] = {**again[key], "iterations_before": before[key]}
    del jobs, steppers
    return rows, account


def _measure_size(
    settings: SpeedSettings,
    size: int,
    device: torch.device,
    runs: dict[str, tuple[torch.nn.Module, Any, dict]],
    progress: bool,
) -> dict[str, Any]:
    """Every model at ``size``, side by side: anchors, training s/iteration, inference fps."""
    from gmaiou.models import build_model

    root = _data_root(settings, size, runs)
    count = max(1, min(settings.train_iters + settings.warmup, 4))
    batches, num_classes = training_batches(root, size, settings.batch_size, count, settings.seed)
    if not batches:
        raise ValueError(f"no training batch with ground truth under {root}")
    host_batches = batches  # what the loader gives: the trainer's step moves it to the device
    batches = [_to_device(b, device) for b in batches]
    models: dict[str, torch.nn.Module] = {}
    weights: dict[str, str] = {}
    for key in settings.models:
        if key in runs:
            model, config, record = runs[key]
            weights[key] = f"trained: {Path(record['run']).name}"
            if config.model.num_classes < num_classes:
                raise ValueError(
                    f"{record['run']} predicts {config.model.num_classes} classes, the data "
                    f"under {root} has {num_classes}; pass --data with the run's own dataset"
                )
        else:
            config = preset_at(key, settings.backbone, size).with_num_classes(num_classes)
            torch.manual_seed(settings.seed)
            model = build_model(config)
            weights[key] = "random"
        models[key] = model.to(device)

    rows: dict[str, dict[str, Any]] = {}
    for key, model in models.items():
        rows[key] = {
            "key": key,
            "model": MODELS[key],
            "config": model.config.name,
            "weights": weights[key],
            "anchors": int(model.anchor_boxes.shape[0]),
            "num_classes": model.config.model.num_classes,
            "score_thr": model.config.postprocess.score_thr,
        }

    if settings.train:
        # Training steps change the weights (and BatchNorm statistics): put them back for the
        # inference timing, so trained runs are timed with their own weights.
        saved = {k: copy.deepcopy(m.state_dict()) for k, m in models.items()}
        if settings.trainer_settings:
            columns, trained_in = _trainer_training(
                settings, models, host_batches, root, device, progress
            )
            for key, values in columns.items():
                rows[key].update(values)
        else:
            _float32_training(settings, models, batches, device, progress, rows)
            trained_in = None
        for key, model in models.items():
            model.load_state_dict(saved[key])
        del saved

    images = [b["images"][i : i + 1] for b in batches for i in range(b["images"].shape[0])]
    timing: dict[str, dict[str, list[float]]] = {
        k: {"network": [], "post": [], "dets": []} for k in models
    }
    with torch.inference_mode():
        for model in models.values():
            model.eval()
        rounds = settings.warmup + settings.infer_iters
        for r in tqdm(range(rounds), desc=f"infer {size}px", disable=not progress):
            x = images[r % len(images)]
            for key, model in models.items():
                net_s, post_s, _, dets = timed_inference(model, x, device)
                if r >= settings.warmup:
                    timing[key]["network"].append(net_s)
                    timing[key]["post"].append(post_s)
                    timing[key]["dets"].append(float(dets[0]["boxes"].shape[0]))
    for key in models:
        net = _median_ms(timing[key]["network"])
        post = _median_ms(timing[key]["post"])
        rows[key].update(
            network_ms_per_image=net,
            post_ms_per_image=post,
            total_ms_per_image=net + post,
            fps=1000.0 / (net + post),
            network_fps=1000.0 / net,
            detections_per_image=statistics.mean(timing[key]["dets"]),
            network_ms_all=[1000.0 * v for v in timing[key]["network"]],
            post_ms_all=[1000.0 * v for v in timing[key]["post"]],
        )
    block: dict[str, Any] = {
        "size": size,
        "data": str(root),
        "num_classes": num_classes,
        "batches": len(batches),
        "models": [rows[k] for k in models],
    }
    if settings.train and settings.trainer_settings:
        block["trained_in"] = trained_in
    return block


def _precision(settings: SpeedSettings, device: torch.device) -> str:
    """The record's words for the arithmetic of the timed steps."""
    if not (settings.train and settings.trainer_settings):
        return "float32"
    if device.type != "cuda":
        return "training as gmaiou train runs it on the CPU (float32); inference float32"
    return (
        "training as gmaiou train runs it (float16 autocast where the preset's train.amp, "
        "gradient scaler, TF32 per train.tf32, cudnn.benchmark); inference float32"
    )


def run_speed_benchmark(settings: SpeedSettings, progress: bool = False) -> dict[str, Any]:
    """Measure ``settings``; return the JSON-ready record (one block per image size).

    Raises:
        ValueError: an unknown preset, a run that is none of the models or of another scale.
        FileNotFoundError: a missing run folder, checkpoint or dataset.
    """
    from gmaiou.devices import resolve_device

    device = resolve_device(settings.device)
    if settings.trainer_settings is None:
        settings = dataclasses.replace(settings, trainer_settings=device.type == "cuda")
    for size in settings.sizes:  # fail on an unknown preset before any timing
        for key in settings.models:
            preset_at(key, settings.backbone, size)
    runs = _load_runs(settings, device)
    record: dict[str, Any] = {
        "benchmark": "train",
        "settings": {**dataclasses.asdict(settings), "sizes": list(settings.sizes)},
        "device": device_name(device),
        "device_type": device.type,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_affinity": sorted(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else None,
        "trainer_settings": bool(settings.trainer_settings and settings.train),
        "precision": _precision(settings, device),
        "scales": [],
    }
    for size in settings.sizes:
        record["scales"].append(_measure_size(settings, size, device, runs, progress))
    return record


def speed_frame(record: dict[str, Any]):
    """One row per model and size: the columns of :func:`format_speed_table`, as numbers."""
    import pandas as pd

    rows = []
    for block in record["scales"]:
        for r in block["models"]:
            rows.append(
                {
                    "model": r["model"],
                    "config": r["config"],
                    "size": block["size"],
                    "weights": r["weights"],
                    "anchors": r["anchors"],
                    "train s/iter": r.get("train_s_per_iter", float("nan")),
                    "network ms/img": r["network_ms_per_image"],
                    "post ms/img": r["post_ms_per_image"],
                    "dets/img": r["detections_per_image"],
                    "fps": r["fps"],
                }
            )
    return pd.DataFrame(rows)


def _where(record: dict[str, Any]) -> str:
    where = record["device"]
    pinned = record.get("cpu_affinity")
    if record.get("device_type") == "cpu":
        if pinned is not None:
            where += f", pinned to core(s) {','.join(map(str, pinned))}"
    return where


#: The trainer-settings columns beside ``train s/iter``: (header, row key, format).
_TRAINER_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("train img/s", "train_images_per_s", ".3g"),
    ("peak GPU MiB", "train_peak_gpu_memory_mib", ".0f"),
    ("syncs/step", "train_host_syncs_per_step", "d"),
    ("COCO epoch min (estimate)", "train_coco_epoch_minutes_estimate", ".0f"),
)


def _cell(value: Any, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def _has_trainer_columns(record: dict[str, Any]) -> bool:
    return bool(record.get("trainer_settings")) and record["settings"]["train"]


def _trained_in_iterations(record: dict[str, Any]) -> list[int]:
    """The iterations of training before the trained-in timing, per size that has one."""
    return [b["trained_in"]["iterations"] for b in record["scales"] if b.get("trained_in")]


def _trainer_heads(trained_in: bool) -> list[str]:
    return [h for h, _, _ in _TRAINER_COLUMNS] + (["trained-in s/iter"] if trained_in else [])


def _trainer_cells(r: dict[str, Any], trained_in: bool) -> list[str]:
    cells = [_cell(r.get(key), spec) for _, key, spec in _TRAINER_COLUMNS]
    if trained_in:
        cells.append(_cell((r.get("trained_in") or {}).get("s_per_iter"), ".3g"))
    return cells


def _trainer_sentence(records: Sequence[dict[str, Any]]) -> str:
    """What the trainer-settings columns mean."""
    batches = sorted({r["settings"]["batch_size"] for r in records})
    iterations = sorted({n for r in records for n in _trained_in_iterations(r)})
    text = (
        " Trainer settings: each step is gmaiou train's own (the loader's batch moved to the "
        "device inside it; on CUDA float16 autocast where the preset's train.amp, gradient "
        "scaler, TF32 per train.tf32, cudnn.benchmark); img/s is the batch over the median s/iter; peak GPU "
        "MiB is the most allocated during the model's steps (the other models' weights "
        "included); syncs/step are the host-device synchronisations of one step (CUDA's sync "
        f"debug mode); the COCO epoch is an estimate: {COCO_TRAIN_IMAGES:,} images at batch "
        f"{', '.join(map(str, batches))} at the median s/iter, data loading not counted"
    )
    if iterations:
        text += (
            "; trained-in s/iter: the median again after "
            f"{', '.join(map(str, iterations))} iterations of training"
        )
    return text + "."


def format_speed_table(record: dict[str, Any]) -> str:
    """Markdown: the device line, then one row per model and size."""
    s = record["settings"]
    trained = s["train"]
    extended = _has_trainer_columns(record)
    trained_in = extended and bool(_trained_in_iterations(record))
    head = "| model | config | size | weights | anchors |"
    rule = "|---|---|---:|---|---:|"
    if trained:
        head += " train s/iter |"
        rule += "---:|"
    if extended:
        heads = _trainer_heads(trained_in)
        head += "".join(f" {h} |" for h in heads)
        rule += "---:|" * len(heads)
    head += " network ms/img | post ms/img | dets/img | fps |"
    rule += "---:|---:|---:|---:|"
    lines = [
        f"Side by side in one process on {_where(record)} (torch {record['torch']}, "
        f"{record['precision']}); {s['backbone']} at {', '.join(map(str, s['sizes']))} px; "
        + (
            f"training: batch {s['batch_size']}, median of {s['train_iters']} iterations "
            f"(forward, assignment, loss, backward, the preset's optimizer step) after "
            f"{s['warmup']} warm-up; "
            if trained
            else ""
        )
        + f"inference: batch 1, median of {s['infer_iters']} images, network in eval mode, then "
        "post-processing (NMS and masks at the input size) of every detection above the "
        "preset's score threshold (random weights fill images with detections: see dets/img)."
        + (_trainer_sentence([record]) if extended else ""),
        "",
        head,
        rule,
    ]
    for block in record["scales"]:
        for r in block["models"]:
            cells = [
                r["model"],
                r["config"],
                str(block["size"]),
                r["weights"],
                str(r["anchors"]),
            ]
            if trained:
                cells.append(_cell(r.get("train_s_per_iter"), ".3g"))
            cells += _speed_cells(r, extended, trained_in)
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def describe_data(record: dict[str, Any]) -> str:
    """The stamp's data part: the dataset folder(s) the images came from."""
    names = sorted({Path(b["data"]).name for b in record["scales"]})
    return f"images of {', '.join(names)} (train split, training transform)"


#: What the paper says of these speeds (``docs/spec.md`` section 5; paper sections 4.3-4.4), for the sentences.
PAPER_CLAIMS: dict[str, str] = {
    "yolact-atss-gmaiou": "about 25% less inference time than YOLACT (fewer anchors; abstract)",
    "gmayolact-atss-gmaiou": "about the same inference time as YOLACT-550 (section 4.3)",
}


def _trainer_clause(
    record: dict[str, Any], block: dict[str, Any], r: dict[str, Any], ref: dict[str, Any]
) -> str:
    """With the trainer settings: the trained-in ratio and the estimated COCO epochs."""
    if not _has_trainer_columns(record):
        return ""
    parts = []
    mine, theirs = (r.get("trained_in") or {}), (ref.get("trained_in") or {})
    if mine.get("s_per_iter") and theirs.get("s_per_iter"):
        ratio = mine["s_per_iter"] / theirs["s_per_iter"]
        parts.append(
            f"{ratio:.2f}x after {block['trained_in']['iterations']} iterations of training"
        )
    epoch = "train_coco_epoch_minutes_estimate"
    if r.get(epoch) is not None and ref.get(epoch) is not None:
        parts.append(
            f"an estimated COCO epoch at batch {record['settings']['batch_size']}: "
            f"{r[epoch]:.0f} against {ref[epoch]:.0f} minutes"
        )
    return f" ({'; '.join(parts)})" if parts else ""


def speed_findings(record: dict[str, Any], reference: str = "yolact-fixed") -> list[str]:
    """One sentence per size and model: anchors, inference and training time against
    ``reference``, computed from the record (ratios of medians), with the paper's claim."""
    out = []
    for block in record["scales"]:
        rows = {r["key"]: r for r in block["models"]}
        if reference not in rows:
            continue
        ref = rows[reference]
        for key, r in rows.items():
            if key == reference:
                continue
            total = r["total_ms_per_image"] / ref["total_ms_per_image"]
            network = r["network_ms_per_image"] / ref["network_ms_per_image"]
            change = "less" if total < 1 else "more"
            text = (
                f"At {block['size']} px, {r['model']} has {r['anchors']:,} anchors against "
                f"{ref['model']}'s {ref['anchors']:,} ({r['anchors'] / ref['anchors']:.2f}x); "
                f"its inference takes {total:.2f}x the time per image ({abs(1 - total):.0%} "
                f"{change}; network alone {network:.2f}x, at {r['detections_per_image']:.0f} "
                f"against {ref['detections_per_image']:.0f} detections per image)"
            )
            if r.get("train_s_per_iter") and ref.get("train_s_per_iter"):
                ratio = r["train_s_per_iter"] / ref["train_s_per_iter"]
                text += f", and a training iteration {ratio:.2f}x"
                text += _trainer_clause(record, block, r, ref)
            if "random" in (r["weights"], ref["weights"]):
                text += (
                    " (random weights: the detection counts, hence the post-processing, "
                    "are arbitrary)"
                )
            claim = PAPER_CLAIMS.get(key)
            text += f". The paper: {claim}." if claim else "."
            out.append(text)
    return out


def _device_label(record: dict[str, Any]) -> str:
    """``CPU`` or the GPU's name: the rows' device in the folded table and figure."""
    return "CPU" if record.get("device_type") == "cpu" else record["device"]


def _record_order(record: dict[str, Any]) -> tuple:
    """CPU records first, then each GPU; within a device, the scales in :data:`SCALES`' order."""
    scales = list(SCALES)
    scale = record["settings"]["scale"]
    return (
        record.get("device_type") != "cpu",
        record["device"],
        scales.index(scale) if scale in scales else len(scales),
    )


def _record_line(record: dict[str, Any]) -> str:
    """One record's settings: device, torch, threads, batches and iterations."""
    s = record["settings"]
    where = f"{_where(record)}, " if record.get("device_type") == "cpu" else ""
    if record.get("device_type") == "cpu":
        where += f"{record['threads']} torch thread(s), "
    training = (
        f"training batch {s['batch_size']}, median of {s['train_iters']} iterations after "
        f"{s['warmup']} warm-up; "
        if s["train"]
        else ""
    )
    if _has_trainer_columns(record):
        dtypes = sorted(
            {r.get("amp_dtype") or "float32" for b in record["scales"] for r in b["models"]}
        )
        training = f"training as gmaiou train ({', '.join(dtypes)}), " + training
        iterations = _trained_in_iterations(record)
        if iterations:
            training += f"trained-in after {', '.join(map(str, iterations))} iterations; "
    return (
        f"- {_device_label(record)}, {s['backbone']} at {', '.join(map(str, s['sizes']))} px "
        f"({s['scale']} scale): {where}torch {record['torch']}; {training}inference median of "
        f"{s['infer_iters']} images"
    )


def _speed_cells(r: dict[str, Any], extended: bool, trained_in: bool) -> list[str]:
    """A model's cells after its training time: the trainer's columns where the table has
    them, then network and post-processing ms, detections per image and fps."""
    cells = _trainer_cells(r, trained_in) if extended else []
    return cells + [
        f"{r['network_ms_per_image']:.1f}",
        f"{r['post_ms_per_image']:.1f}",
        f"{r['detections_per_image']:.0f}",
        f"{r['fps']:.2f}",
    ]


def format_model_speed(records: Sequence[dict[str, Any]]) -> str:
    """Markdown: one row per record, size and model, the records' settings above the table.

    Training s/iteration is the forward, assignment, loss, backward and the preset's
    optimizer step; inference is batch 1, the network in eval mode then the post-processing
    (NMS and masks at the input size) of every detection above the preset's score threshold.
    """
    records = sorted(records, key=_record_order)
    extended = any(_has_trainer_columns(r) for r in records)
    trained_in = extended and any(_trained_in_iterations(r) for r in records)
    extra = _trainer_heads(trained_in) if extended else []
    head = (
        "| device | backbone | size | model | weights | anchors | train s/iter "
        + "".join(f"| {h} " for h in extra)
        + "| network ms/img | post ms/img | dets/img | fps |"
    )
    precision = "float32 unless trained with the trainer settings" if extended else "float32"
    lines = [
        f"The three models side by side in one process per record, {precision}; training: median "
        "s/iteration (forward, assignment, loss, backward, the preset's optimizer step); "
        "inference: batch 1, median ms per image of the network in eval mode and of the "
        "post-processing (NMS and masks at the input size) of every detection above the "
        "preset's score threshold (random weights fill images with detections: see dets/img)."
        + (_trainer_sentence([r for r in records if _has_trainer_columns(r)]) if extended else ""),
        "",
        *(_record_line(r) for r in records),
        "",
        head,
        "|---|---|---:|---|---|---:|---:|" + "---:|" * len(extra) + "---:|---:|---:|---:|",
    ]
    for record in records:
        for block in record["scales"]:
            for r in block["models"]:
                train = r.get("train_s_per_iter")
                weights = "trained" if r["weights"].startswith("trained") else r["weights"]
                cells = [
                    _device_label(record),
                    record["settings"]["backbone"],
                    str(block["size"]),
                    r["model"],
                    weights,
                    str(r["anchors"]),
                    "–" if train is None else f"{train:.3g}",
                ]
                cells += _speed_cells(r, extended, trained_in)
                lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def model_speed_findings(records: Sequence[dict[str, Any]]) -> list[str]:
    """:func:`speed_findings` of every record, each sentence headed by its device and backbone."""
    return [
        f"{_device_label(r)}, {r['settings']['backbone']}: {line}"
        for r in sorted(records, key=_record_order)
        for line in speed_findings(r)
    ]


def plot_speed(records: Sequence[dict[str, Any]]):
    """Bars per model: one column per device and scale (backbone and size), rows training
    s/iteration (when timed) and inference fps, each panel on its own y scale."""
    import matplotlib.pyplot as plt
    import pandas as pd

    records = sorted(records, key=_record_order)
    frames = [
        speed_frame(r).assign(
            column=f"{_device_label(r)}\n{r['settings']['backbone']}, {{}} px "
            f"({r['settings']['scale']} scale)"
        )
        for r in records
    ]
    if not frames:
        raise ValueError("no speed record to plot")
    frame = pd.concat(frames, ignore_index=True)
    frame["scale"] = [c.format(s) for c, s in zip(frame["column"], frame["size"])]
    scales = list(dict.fromkeys(frame["scale"]))
    metrics = [c for c in ("train s/iter", "fps") if frame[c].notna().any()]
    titles = {"train s/iter": "training: s / iteration", "fps": "inference: fps (batch 1)"}
    fig, axes = plt.subplots(
        len(metrics), len(scales), figsize=(3.4 * len(scales), 3.2 * len(metrics)), squeeze=False
    )
    colors = dict(zip(MODELS.values(), ("C0", "C1", "C2")))
    for j, scale in enumerate(scales):
        sub = frame[frame["scale"] == scale].groupby("model", sort=False).mean(numeric_only=True)
        sub = sub.loc[[m for m in MODELS.values() if m in sub.index]]
        for i, metric in enumerate(metrics):
            ax = axes[i, j]
            values = sub[metric]
            if values.isna().all():  # e.g. training not timed at this scale
                ax.axis("off")
                ax.set_title(f"{scale}: {titles[metric]}\nnot timed", fontsize=8)
                continue
            ax.bar(range(len(values)), values, color=[colors[m] for m in values.index])
            ax.set_xticks(range(len(values)), [m.replace(" (", "\n(") for m in values.index])
            ax.tick_params(axis="x", labelsize=6)
            ax.set_title(f"{scale}: {titles[metric]}", fontsize=8)
            for k, v in enumerate(values):
                if v == v:
                    ax.annotate(f"{v:.3g}", (k, v), ha="center", va="bottom", fontsize=7)
    devices = list(dict.fromkeys(_where(r) for r in records))
    fig.suptitle("; ".join(devices), fontsize=8)
    fig.tight_layout()
    return fig


#: The file name of a scale's record: ``model_speed_<name>_<device>.json``.
SCALE_FILE_NAMES: dict[str, str] = {"cpu": "recipe", "paper": "paper", "table5": "table5"}


def default_out(settings: SpeedSettings, device_type: str, profile: str) -> Path:
    """``figures/timings/`` (``figures/<profile>/timings/`` but for default)
    ``model_speed_<scale>_<device>.json``, the ``cpu`` scale named ``recipe``."""
    from gmaiou.paper.paths import timings_dir

    name = SCALE_FILE_NAMES.get(settings.scale, settings.scale)
    return timings_dir(profile) / f"model_speed_{name}_{device_type}.json"


def run(args: argparse.Namespace) -> int:
    settings = speed_settings(
        args.scale,
        args.profile,
        backbone=args.backbone,
        sizes=args.sizes,
        batch_size=args.batch_size,
        train_iters=args.train_iters,
        infer_iters=args.infer_iters,
        warmup=args.warmup,
        runs=args.run or None,
        data=args.data,
        device=args.device,
        seed=args.seed,
        train=False if args.skip_training else None,
        trainer_settings=args.trainer_settings,
        trained_in_iters=args.trained_in_iters,
        trained_in_seconds=args.trained_in_seconds,
    )
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    record = run_speed_benchmark(settings, progress=not args.no_progress)
    table = format_speed_table(record)
    print(table)
    for line in speed_findings(record):
        print(line)
    out = Path(args.out) if args.out else default_out(settings, record["device_type"], args.profile)
    write_record(out, record)
    if args.markdown:
        from gmaiou.paper.figures import provenance

        md = Path(args.markdown)
        md.parent.mkdir(parents=True, exist_ok=True)
        md.write_text(f"{table}\n\n*{provenance(args.profile, describe_data(record))}*\n")
        print(f"written to {out} and {md}")
    else:
        print(f"written to {out}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="Table 4 speed side: anchors, training s/iteration and inference fps of YOLACT, "
        "ATSS-YOLACT (GmaIoU) and GmaYOLACT side by side",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--scale", default="cpu", choices=sorted(SCALES), help="default: cpu")
    p.add_argument(
        "--profile",
        default="default",
        help="smoke | quick | default | paper: iterations (smoke also shrinks to r18 at 160 px)",
    )
    p.add_argument("--backbone", default=None, help="override the scale's backbone")
    p.add_argument("--sizes", type=int, nargs="+", default=None, help="override its image sizes")
    p.add_argument(
        "--batch-size", type=int, default=None, help="training batch (default: profile's)"
    )
    p.add_argument("--train-iters", type=int, default=None, help="timed training iterations")
    p.add_argument("--infer-iters", type=int, default=None, help="timed inference images")
    p.add_argument("--warmup", type=int, default=None, help="untimed rounds first")
    p.add_argument("--skip-training", action="store_true", help="time inference only")
    p.add_argument(
        "--trainer-settings",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="time the training step exactly as gmaiou train takes it (autocast and gradient "
        "scaler where the preset's train.amp, TF32 per train.tf32, cudnn.benchmark), with GPU "
        "memory and host-device syncs (default: on for CUDA, off on the CPU: float32)",
    )
    p.add_argument(
        "--trained-in-iters",
        type=int,
        default=None,
        help="with the trainer settings: iterations of real training before timing again "
        "(default: the profile's, 200; smoke 2; 0: none)",
    )
    p.add_argument(
        "--trained-in-seconds",
        type=float,
        default=None,
        help="stop that training after this many seconds (default: no limit)",
    )
    p.add_argument(
        "--run",
        action="append",
        default=[],
        metavar="DIR",
        help="a trained run folder or its checkpoint.pt (repeat, one per model): its weights "
        "replace the random ones of its model",
    )
    p.add_argument(
        "--data", default=None, help="dataset root for the batches (default: the scale's)"
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N (default cpu)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument(
        "--out",
        default=None,
        help="JSON output (default figures/timings/model_speed_<scale>_<device>.json, the cpu "
        "scale named recipe; figures/<profile>/timings/ for other profiles than default)",
    )
    p.add_argument("--markdown", default=None, help="also write the table as Markdown here")
    p.set_defaults(func=run)
