"""Table 5, our side at CPU scale: the accuracy of YOLACT, ATSS-YOLACT (GmaIoU) and GmaYOLACT
as trained by the CPU recipe, from the committed run records.

These are **synthetic 160-px CPU-recipe numbers** (ResNet-18, the synthetic set's val split),
not COCO results: notebook 07 shows them in their own table, apart from the cited COCO
numbers of :mod:`gmaiou.paper.sota`. Nothing is trained here; a model without records is listed as
such. Records trained from a checkout with uncommitted changes are left out
(:func:`gmaiou.paper.experiments.runner.load_grid`), and the footer names those of the models
tabulated (:func:`dirty_records`).

:func:`write_cpu_accuracy` writes the table under one stem, :data:`NAME`: ``table5_cpu_accuracy.md``,
its figure (mask and box AP per model, seeds as dots; PNG and PDF) and its findings, headed by
:func:`cpu_accuracy_headline`.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from gmaiou.paper.experiments.records import GridRecords
from gmaiou.paper.experiments.runner import load_grid
from gmaiou.paper.experiments.stats import dirty_note, format_mean_std

__all__ = [
    "CPU_MODELS",
    "GRIDS",
    "NAME",
    "accuracy_source",
    "cpu_accuracy",
    "cpu_accuracy_findings",
    "cpu_accuracy_headline",
    "cpu_accuracy_table",
    "dirty_records",
    "load_grids",
    "pick_records",
    "plot_cpu_accuracy",
    "write_cpu_accuracy",
]

#: The stem of the outputs: ``table5_cpu_accuracy.md``, ``.png``, ``.pdf``, ``_findings.md``.
NAME = "table5_cpu_accuracy"

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
    matching = _candidates(records, preset, mix)
    if not matching:
        return "", []
    variants: dict[str, list[Mapping[str, Any]]] = {}
    for r in matching:
        variants.setdefault(r.get("variant", "") or "", []).append(r)
    variant = "" if "" in variants else max(variants, key=lambda v: (len(variants[v]), v))
    return variant, sorted(variants[variant], key=lambda r: r["seed"])


def _candidates(
    records: Sequence[Mapping[str, Any]], preset: str, mix: str
) -> list[Mapping[str, Any]]:
    """``preset``'s records on the ``mix`` set that train its model: without a variant, or
    with one that keeps the preset's model, assigner, losses and post-processing."""
    own = [r for r in records if r.get("preset") == preset and r.get("data", {}).get("mix") == mix]
    parts = _model_parts(preset) if any(r.get("variant") for r in own) else {}
    return [r for r in own if not r.get("variant") or _trains(r, parts)]


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


def load_grids(
    profile: str = "default", figures: Path | None = None, grids: Sequence[str] = GRIDS
) -> dict[str, GridRecords]:
    """Each grid of ``grids`` read once (:func:`~gmaiou.paper.experiments.runner.load_grid`):
    grid -> its used and left-out records, for :func:`cpu_accuracy` and :func:`dirty_records`
    to share."""
    return {g: load_grid(profile, g, figures) for g in grids}


def cpu_accuracy(
    profile: str = "default",
    figures: Path | None = None,
    grids: Sequence[str] = GRIDS,
    models: Mapping[str, str] = CPU_MODELS,
    mix: str = "uniform",
    loaded: Mapping[str, GridRecords] | None = None,
) -> list[dict[str, Any]]:
    """Each model's runs at CPU scale, from run records: one dict per model of ``models`` with
    ``model`` (its label), ``preset``, ``grid``, ``variant`` and ``records`` (empty where the
    model has none in any grid; :func:`pick_records`).

    Args:
        profile: the records' profile (``figures/runs/<profile>/<grid>/``).
        figures: the figures folder holding ``runs/`` (default: the profile's).
        grids: grids searched, in order of preference (:func:`pick_records`).
        models: preset -> label.
        mix: the synthetic set's class mix.
        loaded: the grids' records already read (:func:`load_grids`); read here if ``None``.
    """
    if not models:
        raise ValueError("no model to tabulate")
    loaded = load_grids(profile, figures, grids) if loaded is None else loaded
    by_grid = {g: loaded[g].used for g in grids}
    picked = pick_records(by_grid, list(models), mix, grids)
    return [
        {"model": label, "preset": preset, "grid": picked[preset][0],
         "variant": picked[preset][1], "records": list(picked[preset][2])}
        for preset, label in models.items()
    ]  # fmt: skip


def _ap(model: Mapping[str, Any], kind: str = "segm", key: str = "AP") -> list[float]:
    """One metric of a model's runs (``segm`` or ``bbox``), the runs without it left out."""
    values = [r["metrics"][kind].get(key) for r in model["records"]]
    return [float(v) for v in values if v is not None]


def cpu_accuracy_table(
    profile: str = "default",
    figures: Path | None = None,
    grids: Sequence[str] = GRIDS,
    models: Mapping[str, str] = CPU_MODELS,
    mix: str = "uniform",
    loaded: Mapping[str, GridRecords] | None = None,
) -> pd.DataFrame:
    """Mask and box AP (mean ± std over seeds) of each model at CPU scale, from run records
    (:func:`cpu_accuracy`, same arguments).

    Returns:
        One row per model: label, preset, grid (and variant), seeds, mask AP, mask AP50,
        box AP, mask oLRP, training minutes and devices; ``no record`` where the model has
        none in any grid.
    """
    rows = []
    for model in cpu_accuracy(profile, figures, grids, models, mix, loaded):
        records = model["records"]
        if not records:
            rows.append(
                {
                    "model": model["model"],
                    "preset": model["preset"],
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
        variant = model["variant"]
        rows.append(
            {
                "model": model["model"],
                "preset": model["preset"],
                "grid": model["grid"] + (f" (+{variant})" if variant else ""),
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


def _short(label: str) -> str:
    """``ATSS-YOLACT (GmaIoU)`` -> ``ATSS-YOLACT``."""
    return label.split(" (")[0]


def _seeds(models: Sequence[Mapping[str, Any]]) -> str:
    counts = [len(_ap(m)) for m in models]
    if len(set(counts)) == 1:
        return f"{counts[0]} seed{'s' if counts[0] != 1 else ''} each"
    return f"{', '.join(map(str, counts))} seeds"


def cpu_accuracy_headline(models: Sequence[Mapping[str, Any]]) -> str:
    """Each model's mean mask AP, the later ones' difference from the first (YOLACT), and the
    seeds, in one sentence (:func:`cpu_accuracy`'s models)."""
    found = [m for m in models if _ap(m)]
    if not found:
        return "no run record of any model yet"
    first = statistics.fmean(_ap(found[0]))
    parts = []
    for k, m in enumerate(found):
        mean = statistics.fmean(_ap(m))
        parts.append(f"{_short(m['model'])} {mean:.1f}" + (f" ({mean - first:+.1f})" if k else ""))
    missing = [_short(m["model"]) for m in models if not _ap(m)]
    text = f"Mask AP {', '.join(parts)}, {_seeds(found)}"
    if missing:
        text += f"; no record of {', '.join(missing)}"
    return text + " (synthetic, not COCO)"


def _mean_sd(values: Sequence[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.1f} (one seed)"
    return f"{statistics.fmean(values):.1f} ± {statistics.stdev(values):.1f}"


def cpu_accuracy_findings(models: Sequence[Mapping[str, Any]]) -> list[str]:
    """Sentences computed from :func:`cpu_accuracy`'s models: each one's mask and box AP over
    its seeds and grid, each later model's difference from the first, and what the numbers
    are (synthetic CPU-recipe data, not COCO)."""
    lines = []
    found = [m for m in models if _ap(m)]
    for m in models:
        mask, box = _ap(m), _ap(m, "bbox")
        if not mask:
            lines.append(f"{m['model']} ({m['preset']}) has no run record in the grids searched.")
            continue
        variant = f" (variant {m['variant']})" if m["variant"] else ""
        lines.append(
            f"{m['model']}: mask AP {_mean_sd(mask)}, box AP {_mean_sd(box)} over "
            f"{len(mask)} seed{'s' if len(mask) != 1 else ''} of grid {m['grid']}{variant}."
        )
    if found:
        ref = found[0]
        for m in found[1:]:
            d_mask = statistics.fmean(_ap(m)) - statistics.fmean(_ap(ref))
            d_box = statistics.fmean(_ap(m, "bbox")) - statistics.fmean(_ap(ref, "bbox"))
            lines.append(
                f"{m['model']} minus {ref['model']}: {d_mask:+.1f} mask AP and {d_box:+.1f} box AP "
                "(difference of the means over seeds)."
            )
    lines.append(
        "These are numbers of the CPU recipe (ResNet-18 at 160 px on a synthetic set, its val "
        "split), not COCO results, and cannot be set beside the cited table."
    )
    return lines


def plot_cpu_accuracy(models: Sequence[Mapping[str, Any]]):
    """Mask and box AP of each model, bars at the mean over seeds, the seeds as dots; a model
    without records is named under an empty slot."""
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    x = np.arange(len(models))
    for dx, (kind, metric, colour) in zip(
        (-0.18, 0.18), (("segm", "mask AP", "tab:blue"), ("bbox", "box AP", "tab:orange"))
    ):
        means = [statistics.fmean(_ap(m, kind)) if _ap(m, kind) else np.nan for m in models]
        ax.bar(x + dx, means, width=0.34, color=colour, alpha=0.55, label=f"{metric} (mean)")
        for i, m in enumerate(models):
            values = _ap(m, kind)
            ax.plot([i + dx] * len(values), values, ".", color=colour, markersize=7)
            if values:  # the mean above the bar and its highest seed
                ax.annotate(f"{means[i]:.1f}", (i + dx, max(means[i], *values)), ha="center",
                            va="bottom", xytext=(0, 4), textcoords="offset points",
                            fontsize=8)  # fmt: skip
    ax.set_xticks(x)
    ax.set_xticklabels(
        [m["model"] + ("" if m["records"] else "\n(no record)") for m in models], fontsize=8
    )
    ax.set_ylabel("COCO-style AP on the synthetic val split")
    ax.set_title("Table 5, ours: accuracy at CPU scale (synthetic, 160 px, not COCO)", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_ylim(0, ax.get_ylim()[1] * 1.08)  # room for the labels above the highest seeds
    fig.tight_layout()
    return fig


def dirty_records(
    profile: str = "default",
    figures: Path | None = None,
    grids: Sequence[str] = GRIDS,
    models: Mapping[str, str] = CPU_MODELS,
    mix: str = "uniform",
    loaded: Mapping[str, GridRecords] | None = None,
) -> list[GridRecords]:
    """Per grid of ``grids``, the dirty records left out of :func:`cpu_accuracy` that it would
    have considered: runs of the model of one of ``models``' presets on the ``mix`` set
    (``left_out``; ``used`` is empty). ``loaded``: the grids already read (:func:`load_grids`)."""
    loaded = load_grids(profile, figures, grids) if loaded is None else loaded
    out = []
    for grid in grids:
        dirty = loaded[grid].left_out
        left_out = [r for preset in models for r in _candidates(dirty, preset, mix)]
        out.append(GridRecords(grid, left_out=[dict(r) for r in left_out]))
    return out


def accuracy_source(
    grids: Sequence[str] = GRIDS, profile: str = "default", left_out: Sequence[GridRecords] = ()
) -> str:
    """The stamp's data part: the grids read, what the runs trained on, and the dirty records
    left out of each grid of ``left_out`` (:func:`dirty_records`)."""
    notes = "".join(f"; {note}" for g in left_out if (note := dirty_note(g)))
    return (
        f"committed run records of grids {', '.join(grids)} (profile {profile}): "
        "synthetic 1000 images at 160 px, uniform class mix, val split; ResNet-18; not COCO" + notes
    )


def write_cpu_accuracy(
    profile: str = "default",
    records_profile: str = "default",
    figures: Path | None = None,
    grids: Sequence[str] = GRIDS,
) -> list[Path]:
    """Write :data:`NAME`: the table (Markdown), the figure (:func:`plot_cpu_accuracy`, PNG and
    PDF) and the findings with their headline, into ``profile``'s figures folder, from the run
    records of ``records_profile`` (under ``figures``, default: that profile's folder)."""
    import textwrap

    import matplotlib.pyplot as plt

    from gmaiou.paper.figures import save_figure, save_findings, save_table
    from gmaiou.paper.paths import figures_dir

    figures = figures_dir(records_profile) if figures is None else figures
    loaded = load_grids(records_profile, figures, grids)
    left_out = dirty_records(records_profile, figures, grids, loaded=loaded)
    source = accuracy_source(grids, records_profile, left_out)
    table = cpu_accuracy_table(records_profile, figures, grids, loaded=loaded)
    models = cpu_accuracy(records_profile, figures, grids, loaded=loaded)
    paths = [save_table(table, NAME, profile, source=source)]
    fig = plot_cpu_accuracy(models)
    paths += save_figure(fig, NAME, profile, source=textwrap.fill(source, 100))
    plt.close(fig)
    paths.append(
        save_findings(
            cpu_accuracy_findings(models),
            NAME,
            profile,
            source=source,
            headline=cpu_accuracy_headline(models),
        )
    )
    return paths
