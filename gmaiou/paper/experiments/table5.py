"""Table 5, our side at CPU scale: the accuracy of YOLACT, ATSS-YOLACT (GmaIoU) and GmaYOLACT
as trained by the CPU recipe, from the committed run records.

These are **synthetic 160-px CPU-recipe numbers** (ResNet-18, the synthetic set's val split),
not COCO results: notebook 07 shows them in their own table, apart from the cited COCO
numbers of :mod:`gmaiou.paper.sota`. Nothing is trained here; a model without records is listed as
such.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from gmaiou.paper.experiments.runner import load_records
from gmaiou.paper.experiments.stats import format_mean_std

__all__ = ["CPU_MODELS", "GRIDS", "cpu_accuracy_table", "pick_records"]

#: The three models of Table 5's CPU-scale rows: preset -> label.
CPU_MODELS: dict[str, str] = {
    "yolact-fixed-r18-160": "YOLACT (fixed IoU)",
    "yolact-atss-gmaiou-r18-160": "ATSS-YOLACT (GmaIoU)",
    "gmayolact-atss-gmaiou-r18-160": "GmaYOLACT (ATSS, GmaIoU)",
}

#: Grids searched for each model, in order of preference (the current CPU recipe first).
GRIDS: tuple[str, ...] = ("table2", "table3", "table2-recipe1")


def _records_in(
    records: Sequence[Mapping[str, Any]], preset: str, mix: str
) -> tuple[str, list[Mapping[str, Any]]]:
    """``preset``'s records on the ``mix`` set in one grid: the runs without a variant (the
    recipe's own preset) if any, else the variant with the most seeds among those that train
    the preset's own model, assigner, losses and post-processing (its schedule and
    augmentation may differ; a Table 3 step named after a preset but adding CARAFE or DCN
    is another model)."""
    own = [r for r in records if r.get("preset") == preset and r.get("data", {}).get("mix") == mix]
    parts = _model_parts(preset) if any(r.get("variant") for r in own) else {}
    matching = [r for r in own if not r.get("variant") or _trains(r, parts)]
    if not matching:
        return "", []
    variants: dict[str, list[Mapping[str, Any]]] = {}
    for r in matching:
        variants.setdefault(r.get("variant", "") or "", []).append(r)
    variant = "" if "" in variants else max(variants, key=lambda v: (len(variants[v]), v))
    return variant, sorted(variants[variant], key=lambda r: r["seed"])


#: The parts of a config that make the model what it is (not its schedule or augmentation).
_MODEL_PARTS: tuple[str, ...] = ("model", "assigner", "loss", "postprocess")


def _model_parts(preset: str) -> dict[str, Any]:
    from gmaiou.configs import get_config

    config = get_config(preset).to_dict()
    return {k: config[k] for k in _MODEL_PARTS}


def _trains(record: Mapping[str, Any], parts: Mapping[str, Any]) -> bool:
    """Whether ``record`` trained the model ``parts`` describe; a record without its config
    is taken at its preset's word."""
    config = record.get("config")
    return config is None or all(config.get(k) == parts[k] for k in _MODEL_PARTS)


def pick_records(
    records_by_grid: Mapping[str, Sequence[Mapping[str, Any]]],
    presets: Sequence[str],
    mix: str = "uniform",
    grids: Sequence[str] = GRIDS,
) -> dict[str, tuple[str, str, list[Mapping[str, Any]]]]:
    """For each preset, ``(grid, variant, records)`` of the ``mix`` set; ``("", "", [])`` if none.

    Models that can be compared come from the same grid: the grid holding the most of the
    presets still unplaced is taken first (ties: the earlier in ``grids``), so two models of
    one grid are never split across recipes because one grid is still being completed.
    """
    found = {
        g: {p: _records_in(records_by_grid.get(g, ()), p, mix) for p in presets} for g in grids
    }
    out: dict[str, tuple[str, str, list[Mapping[str, Any]]]] = {}
    remaining = list(presets)
    while remaining:
        counts = [
            (sum(bool(found[g][p][1]) for p in remaining), -i, g) for i, g in enumerate(grids)
        ]
        best, _, grid = max(counts) if counts else (0, 0, "")
        if best == 0:
            break
        for p in [p for p in remaining if found[grid][p][1]]:
            variant, records = found[grid][p]
            out[p] = (grid, variant, records)
            remaining.remove(p)
    for p in remaining:
        out[p] = ("", "", [])
    return out


def cpu_accuracy_table(
    profile: str = "default",
    figures: Path | None = None,
    grids: Sequence[str] = GRIDS,
    models: Mapping[str, str] = CPU_MODELS,
    mix: str = "uniform",
) -> pd.DataFrame:
    """Mask and box AP (mean ± std over seeds) of each model at CPU scale, from run records.

    Args:
        profile: the records' profile (``figures/runs/<profile>/<grid>/``).
        figures: the figures folder holding ``runs/`` (default: the profile's).
        grids: grids searched, in order of preference (:func:`pick_records`).
        models: preset -> label.
        mix: the synthetic set's class mix.

    Returns:
        One row per model: label, preset, grid (and variant), seeds, mask AP, mask AP50,
        box AP, mask oLRP, training minutes and devices; ``no record`` where the model has
        none in any grid.
    """
    if not models:
        raise ValueError("no model to tabulate")
    by_grid = {g: load_records(profile, g, figures) for g in grids}
    picked = pick_records(by_grid, list(models), mix, grids)
    rows = []
    for preset, label in models.items():
        grid, variant, records = picked[preset]
        if not records:
            rows.append(
                {
                    "model": label,
                    "preset": preset,
                    "grid": f"no record in {', '.join(grids)}",
                    "seeds": 0,
                    "mask AP": "no record",
                    "mask AP50": "no record",
                    "box AP": "no record",
                    "mask oLRP": "no record",
                    "train minutes": "no record",
                    "trained on": "–",
                }
            )
            continue
        segm = [r["metrics"]["segm"] for r in records]
        bbox = [r["metrics"]["bbox"] for r in records]
        rows.append(
            {
                "model": label,
                "preset": preset,
                "grid": grid + (f" (+{variant})" if variant else ""),
                "seeds": len(records),
                "mask AP": format_mean_std([m.get("AP") for m in segm]),
                "mask AP50": format_mean_std([m.get("AP50") for m in segm]),
                "box AP": format_mean_std([m.get("AP") for m in bbox]),
                "mask oLRP": format_mean_std([m.get("oLRP") for m in segm]),
                "train minutes": format_mean_std([r["train_seconds"] / 60 for r in records]),
                "trained on": ", ".join(sorted({r.get("device_name", "?") for r in records})),
            }
        )
    return pd.DataFrame(rows)
