"""Per-anchor losses of a trained YOLACT against the mask-over-box ratio of their GT (Fig. 2).

The paper's Observation 1: under IoU-based assignment, the losses of anchors with similar
IoUs depend on their GT's MOB: positives in a fixed IoU band carry higher classification, box
and mask losses the lower the MOB, while the classification loss of negatives in a fixed IoU
band rises with the MOB (Fig. 2(a) and (b) of the paper).

* :func:`anchor_loss_table`: one row per (image, anchor): assignment under the model's own
  assigner, the GT it refers to, IoU and GmaIoU (P = M) with that GT, the GT's MOB and each
  task's loss (:func:`anchor_losses`).
* :func:`anchor_losses`: each anchor's share of the YOLACT loss terms of a batch, from the
  model's outputs, its assignment (:meth:`gmaiou.models.YOLACT.assign`) and anchors.
* :func:`bin_by_mob`: mean losses and counts per MOB bin of the anchors in an IoU band.
* :func:`fig2_record` / :func:`run_fig2_record`: those bins as a small JSON record per run,
  ``figures/runs/<profile>/fig2/<run id>.json``, so the figure is re-plotted without checkpoints.
* :func:`records_frame` and :func:`mob_trends`: the records as one table and the slope of each
  loss against MOB, per seed.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gmaiou.assigners import IGNORED
from gmaiou.losses import mask_bce_loss
from gmaiou.measure import gmaiou, mob_ratio, pairwise_overlaps
from gmaiou.models.box_coder import encode_boxes
from gmaiou.models.postprocess import crop_masks

__all__ = [
    "ASSIGNMENT_NAMES",
    "Fig2Bands",
    "TASKS",
    "anchor_loss_table",
    "anchor_losses",
    "bin_by_mob",
    "collect_fig2_records",
    "fig2_record",
    "fig2_record_path",
    "find_finished_run",
    "load_trained_model",
    "upgrade_config",
    "mob_trends",
    "records_frame",
    "run_fig2_record",
    "trained_by",
    "trained_note",
]

#: Loss columns of :func:`anchor_loss_table`.
TASKS: tuple[str, ...] = ("cls", "box", "mask")
ASSIGNMENT_NAMES: tuple[str, ...] = ("positive", "negative", "ignored")
RECORD_VERSION = 1


@dataclass(frozen=True)
class Fig2Bands:
    """Which anchors Fig. 2 looks at.

    Attributes:
        negative: ``[lo, hi)`` IoU band of the negatives (classification loss against MOB).
        positive: ``[lo, hi)`` IoU band of the positives (every task's loss against MOB).
        mob_edges: MOB bin edges (increasing; the last bin includes its right edge).
        min_count: a bin with fewer anchors has no mean (NaN).
    """

    negative: tuple[float, float] = (0.3, 0.4)
    positive: tuple[float, float] = (0.5, 0.6)
    mob_edges: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    min_count: int = 5

    def __post_init__(self) -> None:
        for name in ("negative", "positive"):
            lo, hi = getattr(self, name)
            if not 0.0 <= lo < hi <= 1.0:
                raise ValueError(f"{name} band must satisfy 0 <= lo < hi <= 1, got {(lo, hi)}")
        edges = self.mob_edges
        if len(edges) < 2 or any(b <= a for a, b in zip(edges, edges[1:])):
            raise ValueError(f"mob_edges must be at least 2 increasing values, got {edges}")
        if self.min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {self.min_count}")


def anchor_losses(
    model: nn.Module, outputs: dict[str, Tensor], batch: dict[str, Any]
) -> dict[str, Tensor]:
    """Each anchor's share of the YOLACT loss terms, before OHEM selection and reduction.

    The terms of :meth:`gmaiou.models.YOLACT.loss` per anchor, with every positive's mask
    term (no ``max_masks`` subsampling). ``outputs`` may come from either mode (the semantic
    map is not used).

    Args:
        model: a :class:`gmaiou.models.YOLACT` with ``loss.kind == "yolact"``.
        outputs: its forward output for the images of ``batch``.
        batch: a collated batch (``"boxes"``, ``"labels"``, ``"masks"`` at ``S x S``).

    Returns:
        ``gt_inds [B, A]`` (the model's assignment), ``cls [B, A]`` softmax cross-entropy with
        the anchor's target (its class for positives, background for negatives; NaN where
        ignored), ``box [B, A]`` SmoothL1 summed over the four deltas and ``mask [B, A]``
        cropped BCE over the GT box area (NaN but at positives).
    """
    loss = model.config.loss
    if loss.kind != "yolact":
        raise ValueError(
            f"anchor_losses needs loss.kind='yolact' (softmax CE, SmoothL1, mask BCE), "
            f"got {loss.kind!r}"
        )
    cls_logits, deltas = outputs["cls_logits"].float(), outputs["box_deltas"].float()
    bsz, num_anchors, k = cls_logits.shape
    if len(batch["boxes"]) != bsz:
        raise ValueError(f"batch holds {len(batch['boxes'])} images, outputs {bsz}")
    device = cls_logits.device
    gt_inds = model.assign(batch)
    pos = gt_inds >= 0
    nan = torch.full((bsz, num_anchors), float("nan"), device=device)
    cls_targets = torch.zeros_like(gt_inds)
    box, mask = nan.clone(), nan.clone()
    protos, coeffs = outputs["protos"].float(), outputs["coeffs"].float()
    hp, wp = protos.shape[1:3]
    scale = protos.new_tensor([wp / model.image_size, hp / model.image_size] * 2)
    for b in range(bsz):
        idx = pos[b].nonzero().squeeze(1)
        if idx.numel() == 0:
            continue
        gt = gt_inds[b, idx]
        boxes = batch["boxes"][b].to(device=device, dtype=torch.float32)[gt]
        cls_targets[b, idx] = batch["labels"][b].to(device=device, dtype=torch.long)[gt] + 1
        box[b, idx] = F.smooth_l1_loss(
            deltas[b, idx],
            encode_boxes(model.anchor_boxes[idx], boxes),
            beta=loss.smooth_l1_beta,
            reduction="none",
        ).sum(dim=1)
        logits = (protos[b] @ coeffs[b, idx].t()).permute(2, 0, 1)  # [P, hp, wp]
        small = model.mask_targets(batch["masks"][b].to(device), (hp, wp))[gt]
        proto_boxes = boxes * scale
        areas = (proto_boxes[:, 2] - proto_boxes[:, 0]) * (proto_boxes[:, 3] - proto_boxes[:, 1])
        mask[b, idx] = mask_bce_loss(logits, small, crop_masks(proto_boxes, hp, wp), areas)
    ce = F.cross_entropy(cls_logits.reshape(-1, k), cls_targets.reshape(-1), reduction="none")
    cls = torch.where(gt_inds == IGNORED, nan, ce.view(bsz, num_anchors))
    return {"gt_inds": gt_inds, "cls": cls, "box": box, "mask": mask}


@torch.no_grad()
def anchor_loss_table(
    model: nn.Module,
    dataset: Any,
    device: torch.device | str = "cpu",
    batch_size: int = 8,
    max_images: int | None = None,
) -> pd.DataFrame:
    """One row per (image, anchor) of ``dataset``: assignment, GT, overlaps, MOB and losses.

    Args:
        model: a :class:`gmaiou.models.YOLACT` with ``loss.kind == "yolact"``; run in eval mode.
        dataset: a :class:`gmaiou.data.CocoInstances` with the test transform (``S x S``).
        device: where the model runs.
        max_images: only the first ``max_images`` images.

    Returns:
        ``N x A`` rows (``N`` images, ``A`` anchors): ``image_id``, ``anchor`` (index in
        ``[0, A)``), ``assignment`` (``positive`` / ``negative`` / ``ignored``), ``gt`` (the
        matched GT for positives, the GT of highest IoU otherwise; -1 on an image without GT),
        ``iou`` and ``gmaiou`` with that GT, ``mob`` (that GT's mask area over its box area),
        ``cls`` (cross-entropy before OHEM; NaN where ignored), ``box`` and ``mask`` (NaN but
        at positives). On an image without GT, ``iou = gmaiou = 0`` and ``mob`` is NaN.
    """
    from gmaiou.data.loader import make_loader

    if len(dataset) == 0:
        raise ValueError("the dataset holds no image")
    if max_images is not None and max_images < 1:
        raise ValueError(f"max_images must be >= 1, got {max_images}")
    device = torch.device(device)
    was_training = model.training
    model.eval()
    loader = make_loader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    frames, seen = [], 0
    try:
        for batch in loader:
            if max_images is not None and seen >= max_images:
                break
            outputs = model(batch["images"].to(device))
            losses = {k: v.cpu() for k, v in anchor_losses(model, outputs, batch).items()}
            for b, image_id in enumerate(batch["image_ids"]):
                if max_images is not None and seen >= max_images:
                    break
                frames.append(
                    _image_rows(
                        image_id,
                        model.anchor_boxes.cpu(),
                        batch["boxes"][b].float(),
                        batch["masks"][b],
                        {k: v[b] for k, v in losses.items()},
                    )
                )
                seen += 1
    finally:
        model.train(was_training)
    return pd.concat(frames, ignore_index=True)


def _image_rows(
    image_id: int, anchors: Tensor, boxes: Tensor, masks: Tensor, losses: dict[str, Tensor]
) -> pd.DataFrame:
    """Rows of one image: ``anchors [A, 4]``, ``boxes [G, 4]``, ``masks [G, S, S]``, losses ``[A]``."""
    gt_inds = losses["gt_inds"]
    num_anchors = anchors.shape[0]
    assignment = np.full(num_anchors, "negative", dtype=object)
    assignment[(gt_inds >= 0).numpy()] = "positive"
    assignment[(gt_inds == -2).numpy()] = "ignored"
    if boxes.shape[0] == 0:
        gt = torch.full((num_anchors,), -1, dtype=torch.long)
        iou = overlap = torch.zeros(num_anchors)
        mob = torch.full((num_anchors,), float("nan"))
    else:
        ious = pairwise_overlaps("iou", boxes, anchors)  # [G, A]
        gt = torch.where(gt_inds >= 0, gt_inds, ious.argmax(dim=0))
        cols = torch.arange(num_anchors)
        iou = ious[gt, cols]
        overlap = gmaiou(boxes, masks, anchors, polygon="mask")[gt, cols]
        mob = mob_ratio(boxes, masks).diagonal()[gt]
    return pd.DataFrame(
        {
            "image_id": int(image_id),
            "anchor": np.arange(num_anchors),
            "assignment": assignment,
            "gt": gt.numpy(),
            "iou": iou.double().numpy(),
            "gmaiou": overlap.double().numpy(),
            "mob": mob.double().numpy(),
            **{task: losses[task].double().numpy() for task in TASKS},
        }
    )


def bin_by_mob(
    table: pd.DataFrame,
    assignment: str,
    band: tuple[float, float],
    edges: Sequence[float],
    min_count: int = 1,
) -> pd.DataFrame:
    """Mean losses per MOB bin of the ``assignment`` anchors with ``band[0] <= iou < band[1]``.

    Args:
        table: :func:`anchor_loss_table` rows.
        edges: MOB bin edges; the last bin includes its right edge.
        min_count: bins with fewer anchors get NaN means.

    Returns:
        One row per bin: ``mob_lo``, ``mob_hi``, ``count``, and the mean ``cls``, ``box``, ``mask``.
    """
    if assignment not in ASSIGNMENT_NAMES:
        raise ValueError(f"assignment must be one of {ASSIGNMENT_NAMES}, got {assignment!r}")
    missing = {"assignment", "iou", "mob", *TASKS} - set(table.columns)
    if missing:
        raise ValueError(f"table lacks columns {sorted(missing)}; build it with anchor_loss_table")
    lo, hi = band
    rows = table[(table["assignment"] == assignment) & (table["iou"] >= lo) & (table["iou"] < hi)]
    rows = rows[rows["mob"].notna()]
    which = np.digitize(rows["mob"].to_numpy(), edges[1:-1], right=False)
    inside = (rows["mob"].to_numpy() >= edges[0]) & (rows["mob"].to_numpy() <= edges[-1])
    out = []
    for i, (a, b) in enumerate(zip(edges, edges[1:])):
        part = rows[(which == i) & inside]
        means = {t: float(part[t].mean()) if len(part) >= min_count else math.nan for t in TASKS}
        out.append({"mob_lo": float(a), "mob_hi": float(b), "count": len(part), **means})
    return pd.DataFrame(out)


def fig2_record(
    table: pd.DataFrame,
    run_id: str,
    label: str,
    seed: int,
    bands: Fig2Bands = Fig2Bands(),
    source: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The binned statistics of one trained run (JSON-ready).

    Returns:
        ``{"version", "id", "label", "seed", "bands", "images", "anchors", "negative",
        "positive", "source"}``: ``negative`` and ``positive`` are :func:`bin_by_mob` rows of
        the two bands, ``anchors`` the number of anchors per assignment over all images.
    """
    if len(table) == 0:
        raise ValueError("the anchor table is empty")

    def rows(assignment: str, band: tuple[float, float]) -> list[dict[str, Any]]:
        frame = bin_by_mob(table, assignment, band, bands.mob_edges, bands.min_count)
        return [
            {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
            for r in frame.to_dict("records")
        ]

    counts = table["assignment"].value_counts()
    return {
        "version": RECORD_VERSION,
        "id": run_id,
        "label": label,
        "seed": int(seed),
        "bands": asdict(bands),
        "images": int(table["image_id"].nunique()),
        "anchors": {name: int(counts.get(name, 0)) for name in ASSIGNMENT_NAMES},
        "negative": rows("negative", bands.negative),
        "positive": rows("positive", bands.positive),
        "source": source or {},
    }


def fig2_record_path(profile: str, run_id: str, figures: Path | None = None) -> Path:
    """``<figures>/runs/<profile>/fig2/<run_id>.json`` (default figures folder of the profile)."""
    from gmaiou.paper.paths import figures_dir

    base = figures if figures is not None else figures_dir(profile)
    return base / "runs" / profile / "fig2" / f"{run_id}.json"


def find_finished_run(run_id: str, folders: Sequence[str | os.PathLike]) -> Path | None:
    """The first ``<folder>/<run_id>/`` holding ``checkpoint.pt`` and ``eval.json`` (a finished
    run: the trainer writes ``eval.json`` after its last iteration), or ``None``."""
    for folder in folders:
        run_dir = Path(folder) / run_id
        if (run_dir / "checkpoint.pt").is_file() and (run_dir / "eval.json").is_file():
            return run_dir
    return None


#: Config fields that older runs recorded and the current schema no longer has, with the
#: recorded value under which dropping the field keeps the model the same.
_RETIRED_FIELDS: dict[tuple[str, str], tuple[str, str]] = {
    # Only YOLACT's own anchors were ever scaled; ATSS anchors ignore the field.
    ("model", "anchors_scale_with_image"): ("anchors", "atss"),
}


def upgrade_config(saved: dict[str, Any], preset: str) -> Any:
    """A :class:`~gmaiou.configs.Config` from a run's recorded config written by older code.

    Fields the record lacks take the preset's current values (CPU presets keep their
    behaviour when fields are added); retired fields are dropped where they had no effect.

    Raises:
        ValueError: a field is unknown, or retired with an effect (named).
    """
    from gmaiou.configs import Config, get_config

    merged = get_config(preset).to_dict()
    for section, values in saved.items():
        if not isinstance(values, dict):
            merged[section] = values
            continue
        for key, value in values.items():
            needs = _RETIRED_FIELDS.get((section, key))
            if needs is not None:
                field_name, wanted = needs
                if values.get(field_name) != wanted:
                    raise ValueError(
                        f"config.{section}.{key} is retired and only droppable with "
                        f"{section}.{field_name}={wanted!r}, got {values.get(field_name)!r}"
                    )
                continue
            if section not in merged or key not in merged[section]:
                raise ValueError(f"unknown config field {section}.{key} in the run's record")
            merged[section][key] = value
    return Config.from_dict(merged)


def load_trained_model(
    run_dir: str | os.PathLike, device: torch.device | str = "cpu"
) -> tuple[nn.Module, Any, dict[str, Any]]:
    """:func:`gmaiou.evaluation.run.load_run`, or for a run recorded by older code, its model
    rebuilt from :func:`upgrade_config` (the preset's current values for missing fields)."""
    from gmaiou.evaluation.run import load_run
    from gmaiou.models import build_model
    from gmaiou.runs import load_checkpoint

    try:
        return load_run(run_dir, device)
    except ValueError as err:
        if "unknown keys" not in str(err):
            raise
    info = json.loads((Path(run_dir) / "config.json").read_text())
    config = upgrade_config(info["config"], info["config_name"])
    model = build_model(config)
    model.load_state_dict(load_checkpoint(Path(run_dir) / "checkpoint.pt")["model"])
    return model.to(device), config, info


def run_fig2_record(
    run_dir: str | os.PathLike,
    label: str,
    seed: int,
    bands: Fig2Bands = Fig2Bands(),
    split: str = "val",
    device: torch.device | str = "cpu",
    max_images: int | None = None,
) -> dict[str, Any]:
    """Rebuild a run's model, tabulate its anchors on ``split`` of its dataset, bin them."""
    from gmaiou.data import CocoInstances, find_split
    from gmaiou.data.transforms import TestTransform
    from gmaiou.runs import load_checkpoint, resolve_data_root

    run_dir = Path(run_dir)
    model, config, info = load_trained_model(run_dir, device)
    root = resolve_data_root(info["data_root"])
    image_dir, ann_file = find_split(root, split)
    dataset = CocoInstances(
        image_dir,
        ann_file,
        transform=TestTransform(config.model.image_size, antialias=config.model.resize_antialias),
    )
    table = anchor_loss_table(model, dataset, device, max_images=max_images)
    iteration = load_checkpoint(run_dir / "checkpoint.pt", map_location="cpu").get("iteration")
    source = {
        "run_dir": str(run_dir),
        "checkpoint_iteration": iteration,
        "preset": info.get("config_name"),
        "data_root": str(root),
        "split": split,
    }
    return fig2_record(table, run_dir.name, label, seed, bands, source)


def records_frame(records: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Fig. 2 records as one long table: ``label``, ``seed``, ``id``, ``group`` (negative /
    positive), ``mob_lo``, ``mob_hi``, ``count``, ``cls``, ``box``, ``mask``."""
    if not records:
        raise ValueError("no Fig. 2 record given")
    rows = []
    for rec in records:
        for group in ("negative", "positive"):
            for r in rec[group]:
                rows.append({"label": rec["label"], "seed": rec["seed"], "id": rec["id"],
                             "group": group, **r})  # fmt: skip
    frame = pd.DataFrame(rows)
    for task in TASKS:
        frame[task] = frame[task].astype(float)
    return frame


def mob_trends(frame: pd.DataFrame, min_bins: int = 2) -> pd.DataFrame:
    """Slope of each loss against MOB (bin centres, least squares weighted by anchor counts).

    Args:
        frame: :func:`records_frame` output.
        min_bins: a seed needs this many bins with a mean to get a slope.

    Returns:
        One row per (label, group, task, seed): ``slope`` (loss per unit of MOB; Observation
        1 has it positive for the negatives, negative for the positives) and ``bins``.
        The negatives carry only ``cls``.
    """
    if len(frame) == 0:
        raise ValueError("the Fig. 2 frame is empty")
    out = []
    for (label, group, seed), part in frame.groupby(["label", "group", "seed"], sort=True):
        for task in TASKS if group == "positive" else ("cls",):
            ok = part[part[task].notna() & (part["count"] > 0)]
            slope = math.nan
            if len(ok) >= min_bins:
                x = ((ok["mob_lo"] + ok["mob_hi"]) / 2).to_numpy()
                w = np.sqrt(ok["count"].to_numpy(dtype=float))
                slope = float(np.polyfit(x, ok[task].to_numpy(), 1, w=w)[0])
            out.append({"label": label, "group": group, "task": task, "seed": seed,
                        "slope": slope, "bins": len(ok)})  # fmt: skip
    return pd.DataFrame(out)


#: What a Fig. 2 record keeps, under ``trained``, of the run record whose checkpoint it read.
TRAINED_FIELDS: tuple[str, ...] = (
    "commit", "dirty", "device_name", "torch_threads", "torch_version", "finished_at",
)  # fmt: skip


def _read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def trained_by(run_dir: str | os.PathLike, record: dict[str, Any] | None) -> dict[str, Any] | None:
    """``record``'s :data:`TRAINED_FIELDS` if the finished run in ``run_dir`` is the run it
    records (its ``eval.json`` holds the record's box and mask metrics), else ``None``."""
    if record is None:
        return None
    evaluation = json.loads((Path(run_dir) / "eval.json").read_text())
    metrics = record.get("metrics") or {}
    if any(evaluation.get(kind) != metrics.get(kind) for kind in ("segm", "bbox")):
        return None
    return {k: record.get(k) for k in TRAINED_FIELDS}


def _is_current(stored: dict[str, Any], record: dict[str, Any] | None) -> bool:
    """Whether a Fig. 2 record was computed from the run that ``record`` (the table's run
    record) describes: same commit and finishing time."""
    trained = stored.get("trained")
    return bool(trained and record) and all(
        trained.get(k) == record.get(k) for k in ("commit", "finished_at")
    )


def _checkpoint_of(
    run_id: str, folders: Sequence[Path], record: dict[str, Any] | None, records_of
) -> tuple[Path | None, dict[str, Any] | None]:
    """The finished run folder among ``folders`` whose run ``record`` describes, with its
    provenance (:func:`trained_by`). Without ``record``: the first finished folder, with the
    provenance of the record its own checkout wrote (``records_of(run_dir)``) if one matches."""
    for folder in folders:
        run_dir = find_finished_run(run_id, [folder])
        if run_dir is None:
            continue
        if record is None:
            found = (trained_by(run_dir, r) for r in records_of(run_dir))
            return run_dir, next((t for t in found if t is not None), None)
        if (trained := trained_by(run_dir, record)) is not None:
            return run_dir, trained
    return None, None


def collect_fig2_records(
    specs: Sequence[Any],
    folders: Sequence[str | os.PathLike] = (),
    bands: Fig2Bands = Fig2Bands(),
    train_missing: bool = False,
    figures: Path | None = None,
    device: torch.device | str = "cpu",
    force: bool = False,
) -> tuple[list[dict[str, Any]], list[str]]:
    """The Fig. 2 record of every run of ``specs`` that has one or a finished checkpoint.

    For each :class:`~gmaiou.paper.experiments.RunSpec`: its record under
    :func:`fig2_record_path` if it was computed from the run that the spec's run record
    (``record_path``) describes (its ``trained`` commit and finishing time; unless
    ``force``). Else it is computed, and written, from that run's checkpoint: the finished
    run folder among ``runs/<profile>/<grid>/`` of the repository and ``folders`` whose
    ``eval.json`` holds the run record's metrics (:func:`trained_by`); the record keeps the
    run's provenance under ``trained``. Else, with ``train_missing`` (the smoke profile), the
    run is trained with :func:`gmaiou.paper.experiments.run_one` first. A stored record whose
    run cannot be checked (no ``trained``, or its run retrained) is kept when no checkpoint
    of the current run is found.

    Returns:
        the records (in ``specs`` order) and the ids of the runs with neither record nor
        finished checkpoint.
    """
    from gmaiou.paper.experiments import run_one
    from gmaiou.paper.experiments.runner import record_path
    from gmaiou.paper.paths import repo_root

    def records_of(run_dir: Path) -> list[dict[str, Any]]:
        # the record the checkout that trained run_dir wrote: <root>/runs/<profile>/<grid>/<id>
        root, (profile, grid) = run_dir.parents[3], run_dir.parts[-3:-1]
        beside = root / "figures" / "runs" / profile / grid / f"{run_dir.name}.json"
        return [r for r in [_read_json(beside)] if r is not None]

    records, missing = [], []
    for spec in specs:
        path = fig2_record_path(spec.profile, spec.run_id, figures)
        stored = _read_json(path)
        trained = _read_json(record_path(spec, figures))
        if stored is not None and not force and _is_current(stored, trained):
            records.append(stored)
            continue
        where = [spec.run_dir(repo_root()).parent, *map(Path, folders)]
        run_dir, provenance = _checkpoint_of(spec.run_id, where, trained, records_of)
        if run_dir is None and stored is None and train_missing:
            run_one(spec, force=trained is not None, device=device, progress=False)
            trained = _read_json(record_path(spec, figures))
            run_dir, provenance = _checkpoint_of(spec.run_id, where, trained, records_of)
        if run_dir is None:
            if stored is not None and not force:
                records.append(stored)
            else:
                missing.append(spec.run_id)
            continue
        record = run_fig2_record(
            run_dir, spec.label or spec.preset, spec.seed, bands, device=device
        )
        record["trained"] = provenance
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
        records.append(record)
    return records, missing


def trained_note(records: Sequence[dict[str, Any]]) -> str:
    """The footer's words on the runs whose checkpoints Fig. 2 records were computed from:
    ``all 10 records from runs trained at commit dbc1351``, or each commit with its count,
    the records that do not name their run (computed before records kept it) counted apart."""
    counts: dict[str, int] = {}
    for r in records:
        trained = r.get("trained") or {}
        commit = str(trained.get("commit") or "")
        dirty = commit.endswith("-dirty") or bool(trained.get("dirty"))
        key = commit.removesuffix("-dirty")[:7] + (" (dirty)" if commit and dirty else "")
        counts[key] = counts.get(key, 0) + 1
    unknown = counts.pop("", 0)
    if not unknown and len(counts) == 1:
        what = "the record" if len(records) == 1 else f"all {len(records)} records"
        return f"{what} from runs trained at commit {next(iter(counts))}"
    if not counts:
        what = (
            "the record does not name its run's commit"
            if unknown == 1
            else f"the {unknown} records do not name their runs' commits"
        )
        return f"{what} (computed before records kept it)"
    parts = [f"{n} at commit {commit}" for commit, n in sorted(counts.items())]
    if unknown:
        parts.append(f"{unknown} not naming their run's commit (computed before records kept it)")
    return "records from runs trained: " + ", ".join(parts)
