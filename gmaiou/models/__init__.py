"""YOLACT / GmaYOLACT: :func:`build_model` from a config, optionally with weights.

``weights`` is ``None`` or ``"none"`` (random initialisation), ``"imagenet"``
(torchvision's ImageNet ResNet through its weights API, cached in the torch hub folder),
or a local file: a torchvision ResNet ``state_dict`` (loaded into the backbone) or a
full model checkpoint (a ``state_dict`` of this model, or a dictionary holding one under
``"model"`` or ``"state_dict"``, as ``RUN_DIR/checkpoint.pt``). :func:`resolve_weights`
gives a config's default (``model.backbone_weights``: ImageNet for the paper presets).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from gmaiou.configs import Config
from gmaiou.models.backbone import imagenet_state_dict
from gmaiou.models.postprocess import fast_nms, postprocess
from gmaiou.models.yolact import YOLACT

__all__ = [
    "YOLACT",
    "WEIGHT_KEYWORDS",
    "build_model",
    "fast_nms",
    "load_state",
    "postprocess",
    "resolve_weights",
]

#: The ``weights`` values that name no file.
WEIGHT_KEYWORDS: tuple[str, ...] = ("none", "imagenet")

_MODEL_PREFIXES = ("backbone.", "fpn.", "head.", "protonet.", "semantic_head.")


def load_state(path: str | Path) -> dict[str, Tensor]:
    """The ``state_dict`` stored in ``path`` (bare, or under ``"model"`` / ``"state_dict"``).

    Raises ``FileNotFoundError`` naming a missing file and ``ValueError`` for a file
    that cannot be read (truncated, corrupt) or holds no state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    try:
        try:
            obj: Any = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            # A checkpoint of this package may also carry plain Python objects (run metadata).
            obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - a damaged pickle may raise anything
        raise ValueError(
            f"weights file {path} could not be read ({err}); it may be corrupt"
        ) from err
    if isinstance(obj, dict):
        for key in ("model", "state_dict"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ValueError(f"{path} holds no state dict (a mapping of parameter names to tensors)")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_weights(model: YOLACT, path: str | Path) -> YOLACT:
    """Load a full model checkpoint or a torchvision ResNet state dict from ``path`` into ``model``."""
    state = load_state(path)
    if any(k.startswith(_MODEL_PREFIXES) for k in state):
        own = model.state_dict()
        shapes = [k for k in state if k in own and own[k].shape != state[k].shape]
        if shapes:
            k = shapes[0]
            raise ValueError(
                f"{path}: {k} has shape {list(state[k].shape)} but this config ({model.config.name}, "
                f"{model.config.model.num_classes} classes) needs {list(own[k].shape)}"
            )
        result = model.load_state_dict(state, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise ValueError(
                f"{path} does not match {model.config.name}: missing {result.missing_keys[:5]}, "
                f"unexpected {result.unexpected_keys[:5]}"
            )
    else:
        try:
            model.backbone.load_torchvision_state_dict(state)
        except ValueError as err:
            raise ValueError(
                f"{path}: neither a checkpoint of this model nor a ResNet state dict ({err})"
            ) from None
    return model


def resolve_weights(config: Config, requested: str | Path | None) -> str | Path:
    """What to start training from: ``requested`` (``"none"``, ``"imagenet"`` or a path)
    or, when it is ``None``, the config's ``model.backbone_weights``."""
    if requested is None:
        return config.model.backbone_weights
    return requested


def build_model(config: Config, weights: str | Path | None = None) -> YOLACT:
    """The model of ``config`` with ``weights`` (see the module docstring; default: random)."""
    if not isinstance(config, Config):
        raise TypeError(f"config must be a gmaiou.configs.Config, got {type(config).__name__}")
    model = YOLACT(config)
    if weights is None or str(weights) == "none":
        return model
    if str(weights) == "imagenet":
        model.backbone.load_torchvision_state_dict(imagenet_state_dict(config.model.backbone))
        return model
    load_weights(model, weights)
    return model
