"""ONNX export of a model's forward (``gmaiou export``); onnxruntime runs the result.

The exported graph is :meth:`gmaiou.models.YOLACT.forward` in eval mode: input
``images [B, 3, S, S]`` (normalised), outputs ``cls_logits``, ``box_deltas``, ``coeffs``
and ``protos``, with a dynamic batch axis. Post-processing stays in Python
(:func:`gmaiou.models.postprocess.postprocess`). GmaYOLACT's deformable convs map to
ONNX ``DeformConv`` (opset 19), which onnxruntime implements.

Writing the graph needs the ``onnx`` package and checking it ``onnxruntime``: the ``onnx``
extra, ``pip install 'gmaiou[onnx]'``. Without it, both say so in a one-line
:class:`ModuleNotFoundError`.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import pickle
import tempfile
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from gmaiou.models import YOLACT, build_model, load_state
from gmaiou.runs import CHECKPOINT_FILE, CONFIG_FILE, load_checkpoint, read_record

__all__ = ["ONNX_EXTRA", "OUTPUT_NAMES", "export_onnx", "register", "require_onnx"]

#: Output order of the exported graph.
OUTPUT_NAMES: tuple[str, ...] = ("cls_logits", "box_deltas", "coeffs", "protos")
OPSET = 19
#: The checkpoint ``gmaiou train`` writes into its run directory (weights under key ``"model"``).
RUN_CHECKPOINT = CHECKPOINT_FILE
#: Packages of the ``onnx`` extra: ``onnx`` writes the graph, ``onnxruntime`` checks it.
ONNX_EXTRA: tuple[str, ...] = ("onnx", "onnxruntime")
_SYMBOLIC_REGISTERED = False


def _is_installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def require_onnx(*, runtime: bool = False) -> None:
    """Check that ``onnx`` (and with ``runtime``, ``onnxruntime``) can be imported.

    Raises:
        ModuleNotFoundError: one line naming the missing packages and the ``onnx`` extra.
    """
    missing = [name for name in ONNX_EXTRA[: 2 if runtime else 1] if not _is_installed(name)]
    if missing:
        raise ModuleNotFoundError(
            f"ONNX export needs the 'onnx' extra (missing: {', '.join(missing)}); install it "
            "with: pip install 'gmaiou[onnx]'",
            name=missing[0],
        )


def check_output_path(path: Path, overwrite: bool) -> None:
    """Refuse an output path that cannot be written, before any work is done.

    Raises:
        FileExistsError: ``path`` is an existing file and ``overwrite`` is false.
        ValueError: ``path`` is a folder, a folder above it is a file, or it is not writable;
            the message names the path.
    """
    if path.is_dir():
        raise ValueError(f"cannot write {path}: it is an existing folder; give a file name")
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"{path} exists; pass overwrite=True (gmaiou export --force) to replace it"
        )
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"cannot write {path}: {parent} is a file, not a folder")
            if not os.access(parent, os.W_OK):
                raise ValueError(f"cannot write {path}: {parent} is not writable")
            break


def _temporary_beside(path: Path) -> Path:
    """A fresh empty file in ``path``'s folder (created with it), to be renamed onto ``path``."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise ValueError(f"cannot write {path}: {err.strerror or err}") from None
    os.close(fd)
    return Path(name)


def _register_deform_conv_symbolic() -> None:
    """Map ``torchvision::deform_conv2d`` to ONNX ``DeformConv`` (same offset layout as torchvision)."""
    global _SYMBOLIC_REGISTERED
    if _SYMBOLIC_REGISTERED:
        return
    from torch.onnx import register_custom_op_symbolic
    from torch.onnx import symbolic_helper as sym

    @sym.parse_args("v", "v", "v", "v", "v", "i", "i", "i", "i", "i", "i", "i", "i", "b")
    def deform_conv2d(
        g,
        x,
        weight,
        offset,
        mask,
        bias,
        stride_h,
        stride_w,
        pad_h,
        pad_w,
        dil_h,
        dil_w,
        groups,
        offset_groups,
        use_mask,
    ):
        kernel = sym._get_tensor_sizes(weight)[-2:]
        inputs = [x, weight, offset, bias] + ([mask] if use_mask else [])
        return g.op(
            "DeformConv",
            *inputs,
            dilations_i=[dil_h, dil_w],
            group_i=groups,
            offset_group_i=offset_groups,
            kernel_shape_i=kernel,
            pads_i=[pad_h, pad_w, pad_h, pad_w],
            strides_i=[stride_h, stride_w],
        )

    register_custom_op_symbolic("torchvision::deform_conv2d", deform_conv2d, OPSET)
    _SYMBOLIC_REGISTERED = True


class _TupleOutputs(nn.Module):
    """The model's forward with its dictionary flattened in :data:`OUTPUT_NAMES` order."""

    def __init__(self, model: YOLACT) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        out = self.model(images)
        return tuple(out[k] for k in OUTPUT_NAMES)


def export_onnx(
    model: YOLACT, path: str | Path, image_size: int, *, overwrite: bool = False
) -> Path:
    """Write ``model``'s eval-mode forward to ``path`` as ONNX (opset 19, dynamic batch).

    Args:
        model: a :class:`~gmaiou.models.YOLACT`; exported on the CPU, in eval mode, and
            left as it was.
        path: the ``.onnx`` file to write; an existing file is kept unless ``overwrite``.
        image_size: the input side; must be the model's ``config.model.image_size``.

    Returns:
        The written path.
    """
    path = Path(path)
    if not isinstance(model, YOLACT):
        raise TypeError(f"model must be a gmaiou.models.YOLACT, got {type(model).__name__}")
    if image_size != model.image_size:
        raise ValueError(
            f"image_size {image_size} differs from the model's {model.image_size}: its anchors are built for "
            f"{model.image_size} x {model.image_size} inputs"
        )
    check_output_path(path, overwrite)
    require_onnx()
    _register_deform_conv_symbolic()
    was_training = model.training
    device = next(model.parameters()).device
    model.eval().cpu()
    tmp = _temporary_beside(path)
    try:
        dummy = torch.zeros(1, 3, image_size, image_size)
        dynamic = {name: {0: "batch"} for name in ("images", *OUTPUT_NAMES)}
        with warnings.catch_warnings():
            # The TorchScript-based exporter is deprecated in favour of dynamo (which needs
            # onnxscript); it still handles this model, custom DeformConv symbolic included.
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", message="Constant folding", category=UserWarning)
            torch.onnx.export(
                _TupleOutputs(model),
                (dummy,),
                str(tmp),
                input_names=["images"],
                output_names=list(OUTPUT_NAMES),
                dynamic_axes=dynamic,
                opset_version=OPSET,
                dynamo=False,
            )
        os.replace(tmp, path)
    finally:
        # A failed export leaves neither a temporary nor a half-written target behind.
        tmp.unlink(missing_ok=True)
        model.to(device).train(was_training)
    return path


def compare_with_onnxruntime(
    model: YOLACT, path: str | Path, batch_size: int = 2, seed: int = 0
) -> dict[str, float]:
    """Largest absolute difference per output between onnxruntime on ``path`` and torch on the CPU."""
    require_onnx(runtime=True)
    import onnxruntime as ort

    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(batch_size, 3, model.image_size, model.image_size, generator=generator)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval().cpu()
    try:
        with torch.no_grad():
            expected = model(images)
    finally:
        model.to(device).train(was_training)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(list(OUTPUT_NAMES), {"images": images.numpy()})
    return {
        k: float((torch.from_numpy(g) - expected[k]).abs().max()) for k, g in zip(OUTPUT_NAMES, got)
    }


# --------------------------------------------------------------------------- CLI


def _read_state(path: Path) -> dict[str, Tensor]:
    """The state dict in ``path``; a file that cannot be read (truncated, not a checkpoint)
    is the one-line ``ValueError`` that :func:`gmaiou.runs.load_checkpoint` gives."""
    try:
        return load_state(path)
    except (RuntimeError, EOFError, pickle.UnpicklingError) as err:
        raise ValueError(f"checkpoint {path} could not be read ({err}); it may be corrupt") from err


def _num_classes_of(state: dict[str, Tensor]) -> int | None:
    weight = state.get("semantic_head.conv.weight")
    return None if weight is None else int(weight.shape[0])


def _run_config(run_dir: Path, config_name: str | None):
    """The config a run was trained with (its ``config.json``); ``config_name`` must agree with it."""
    from gmaiou.configs import Config

    record_path = run_dir / CONFIG_FILE
    record = read_record(run_dir)
    try:
        config = Config.from_dict(record["config"])
    except (KeyError, TypeError) as err:
        raise ValueError(f"{record_path} is not a gmaiou run record ({err})") from None
    trained_as = record.get("config_name") or config.name
    if config_name is not None and config_name != trained_as:
        raise ValueError(
            f"--config {config_name} disagrees with {record_path}, which was trained as "
            f"{trained_as} ({config.model.image_size} px); leave --config out to use the run's own"
        )
    return config


def run(args: argparse.Namespace) -> int:
    from gmaiou.configs import get_config

    out = Path(args.onnx)
    check_output_path(out, args.force)
    require_onnx(runtime=args.check)
    weights: Path | None = None
    if args.run is not None:
        run_dir = Path(args.run)
        config = _run_config(run_dir, args.config)
        weights = run_dir / RUN_CHECKPOINT
        if not weights.is_file():
            raise FileNotFoundError(
                f"no checkpoint in run directory {args.run}: {weights} is missing"
            )
    else:
        if args.config is None:
            raise ValueError("--config is required unless --run names a training run")
        config = get_config(args.config)
        if args.weights is not None:
            weights = Path(args.weights)
    if weights is not None:
        # A model trained on a dataset with other classes carries them in its semantic head.
        # A run's checkpoint is read as train and eval read it (one line if truncated).
        state = load_checkpoint(weights)["model"] if args.run is not None else _read_state(weights)
        num_classes = _num_classes_of(state)
        if num_classes is not None and num_classes != config.model.num_classes:
            config = config.with_num_classes(num_classes)
    model = build_model(config, weights)
    export_onnx(model, out, config.model.image_size, overwrite=args.force)
    print(
        f"wrote {out} ({config.name}, {config.model.num_classes} classes, input [B, 3, "
        f"{config.model.image_size}, {config.model.image_size}])"
    )
    if args.check:
        diffs = compare_with_onnxruntime(model, out)
        print(
            "onnxruntime vs torch, max |diff|: "
            + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items())
        )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``gmaiou export``."""
    parser = subparsers.add_parser(
        "export",
        help="export a model's forward to ONNX",
        description="Export the network's forward (eval mode) to ONNX; post-processing stays in Python.",
    )
    parser.add_argument(
        "--config",
        default=None,
        metavar="NAME",
        help="preset name (`gmaiou configs` lists them); with --run it defaults to the run's own "
        "config.json and, when given, must agree with it",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--run",
        metavar="RUN_DIR",
        help="a training run: its config.json and checkpoint.pt (key 'model')",
    )
    source.add_argument(
        "--weights", metavar="PATH", help="a model checkpoint or a torchvision ResNet state dict"
    )
    parser.add_argument("--onnx", required=True, metavar="OUT.onnx", help="file to write")
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace OUT.onnx if it exists (written beside it and renamed: a failure keeps the old file)",
    )
    parser.add_argument(
        "--no-check",
        dest="check",
        action="store_false",
        help="skip the onnxruntime-vs-torch comparison",
    )
    parser.set_defaults(func=run)
