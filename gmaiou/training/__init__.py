"""Training: the loop (:func:`train`), LR schedule, atomic checkpoints, DDP plumbing and ``gmaiou train``."""

from gmaiou.training.checkpoint import (
    capture_rng_state,
    drop_training_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from gmaiou.training.distributed import (
    DistContext,
    ResumableSampler,
    init_distributed,
    resolve_device,
)
from gmaiou.training.schedule import LrSchedule, build_scheduler
from gmaiou.training.trainer import RunOptions, TrainingDiverged, TrainResult, train

__all__ = [
    "DistContext",
    "LrSchedule",
    "ResumableSampler",
    "RunOptions",
    "TrainResult",
    "TrainingDiverged",
    "build_scheduler",
    "capture_rng_state",
    "drop_training_state",
    "init_distributed",
    "load_checkpoint",
    "resolve_device",
    "restore_rng_state",
    "save_checkpoint",
    "train",
]
