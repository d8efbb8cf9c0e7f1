"""The CPU recipe's two questions, from run records: its learning curve against the target
(stem ``recipe_learning_curve``) and the search that chose it (stem ``recipe_search``).

Each question has a table, a figure (:mod:`gmaiou.paper.experiments.plots`) and findings whose
numbers are read from the table; notebook 04 writes them with :func:`write_learning_curve` and
:func:`write_recipe_search`, from the clean records only
(:class:`~gmaiou.paper.experiments.records.GridRecords`): a dirty record is left out and named
in the footers, and a question without a clean record says so instead of keeping an older result.
"""

from __future__ import annotations

import math
import textwrap
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from gmaiou.paper.experiments.records import GridRecords

__all__ = [
    "CURVE",
    "CURVE_COLUMNS",
    "SEARCH",
    "SEARCH_COLUMNS",
    "curve_findings",
    "curve_points",
    "curve_run_name",
    "recipe_search_findings",
    "recipe_search_table",
    "recipe_seeds",
    "seeds_findings",
    "synthetic_sets",
    "write_learning_curve",
    "write_recipe_search",
]

#: The stems of the two questions' outputs.
CURVE = "recipe_learning_curve"
SEARCH = "recipe_search"

#: Columns of :func:`curve_points`.
CURVE_COLUMNS: tuple[str, ...] = ("run", "device", "iteration", "minutes", "mask AP", "box AP")
#: Columns of :func:`recipe_seeds`.
SEEDS_COLUMNS: tuple[str, ...] = (
    "seed", "mask AP", "minutes with evaluation", "train minutes", "threads", "device", "split",
)  # fmt: skip
#: Columns of :func:`recipe_search_table`.
SEARCH_COLUMNS: tuple[str, ...] = (
    "label", "preset", "mask AP", "box AP", "mask oLRP", "iterations", "train minutes", "device",
)  # fmt: skip


def curve_run_name(record: Mapping[str, Any]) -> str:
    """A curve's name: the record's label, and its variant where it has one (as the figure's legend)."""
    variant = record.get("variant")
    return f"{record['label']}, {variant}" if variant else str(record["label"])


def curve_points(records: Sequence[Mapping[str, Any]], decimals: int = 2) -> pd.DataFrame:
    """The evaluated points of every record with a learning curve, in the records' order.

    One row per point: ``run`` (:func:`curve_run_name`), ``device`` (the record's device
    name), ``iteration``, ``minutes`` (the iterations' wall time up to it, evaluation
    excluded), ``mask AP`` and ``box AP`` on the val split; numbers to ``decimals`` places
    (the table as shown, which :func:`curve_findings` reads).
    """
    rows = [
        {
            "run": curve_run_name(r),
            "device": r["device_name"],
            "iteration": p["iteration"],
            "minutes": p["train_seconds"] / 60,
            "mask AP": p["segm"]["AP"],
            "box AP": p["bbox"]["AP"],
        }
        for r in records
        for p in r.get("curve") or ()
    ]
    return pd.DataFrame(rows, columns=list(CURVE_COLUMNS)).round(decimals)


def _within(part: pd.DataFrame, budget_minutes: float) -> float:
    """The best mask AP of a run's points within the budget; NaN without such a point."""
    inside = part.loc[part["minutes"] <= budget_minutes, "mask AP"]
    return float(inside.max()) if len(inside) else math.nan


def curve_findings(
    points: pd.DataFrame,
    target_ap: float = 30.0,
    budget_minutes: float = 6.0,
    first_is_recipe: bool = True,
) -> tuple[list[str], str]:
    """Sentences and a headline on :func:`curve_points`: the first run against the target
    (``target_ap`` mask AP within ``budget_minutes`` of training), then every other run's best
    mask AP within the budget and at the end of its schedule. With ``first_is_recipe=False``
    (the recipe's own curve has no clean record) no run is held to the target and the
    headline is ``""``.

    Returns ``(lines, headline)``, each line one sentence.
    """
    if points.empty:
        raise ValueError("no learning-curve point to describe")
    runs = list(dict.fromkeys(points["run"]))
    lines, headline = [], ""
    for i, run in enumerate(runs):
        part = points[points["run"] == run]
        best = _within(part, budget_minutes)
        last = part.iloc[-1]
        reached = (
            f"reached {best:.1f} mask AP within {budget_minutes:g} minutes of training"
            if best == best
            else f"has no evaluation within {budget_minutes:g} minutes of training"
        )
        end = (
            f"{last['mask AP']:.1f} mask AP after its whole schedule "
            f"({int(last['iteration'])} iterations, {last['minutes']:.1f} min)"
        )
        if i == 0 and first_is_recipe:
            if best != best:
                verdict, short = "not met: no evaluation within the budget", "not met"
            elif best >= target_ap:
                verdict = short = "met"
            else:
                verdict = f"not met: {target_ap - best:.1f} mask AP short"
                short = f"not met ({target_ap - best:.1f} short)"
            lines.append(
                f"{run}, on {last['device']}, {reached} (target {target_ap:g}: {verdict}); {end}."
            )
            within = (
                f"{best:.1f} mask AP within {budget_minutes:g} min of training"
                if best == best
                else f"no evaluation within {budget_minutes:g} min of training"
            )
            headline = f"CPU recipe ({run}): {within}, target {target_ap:g} {short}"
        else:
            lines.append(f"{run}, on {last['device']}, {reached}; {end}.")
    devices = list(dict.fromkeys(points["device"]))
    if len(devices) > 1:
        lines.append(
            "The runs' minutes were measured on different devices or thread counts "
            f"({', '.join(devices)}): they compare within a run, not across runs."
        )
    return lines, headline


def recipe_search_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The recipe search as shown: :data:`SEARCH_COLUMNS` of a
    :func:`~gmaiou.paper.experiments.stats.records_frame`, best mask AP first, 2 decimals."""
    if frame.empty:
        raise ValueError("no recipe-search records")
    return frame[list(SEARCH_COLUMNS)].sort_values("mask AP", ascending=False).round(2)


def recipe_search_findings(table: pd.DataFrame) -> tuple[list[str], str]:
    """Sentences and a headline on :func:`recipe_search_table` (its numbers as shown): the best
    variant, the best per preset, the variants that ended at 0 mask AP and the devices.

    Returns ``(lines, headline)``, each line one sentence.
    """
    if table.empty:
        raise ValueError("no recipe-search row to describe")
    table = table.sort_values("mask AP", ascending=False, kind="stable")
    n, top = len(table), table.iloc[0]
    zero = int((table["mask AP"] == 0).sum())
    lines = [
        f"Best of the {n} variants: {top['label']} ({top['preset']}), {top['mask AP']:.2f} mask "
        f"AP and {top['box AP']:.2f} box AP after {int(top['iterations'])} iterations "
        f"({top['train minutes']:.2f} training minutes on {top['device']})."
    ]
    best = table.drop_duplicates("preset")
    if len(best) > 1:
        lines.append(
            "Best mask AP per preset: "
            + "; ".join(
                f"{r['preset']} {r['mask AP']:.2f} ({r['label']})" for _, r in best.iterrows()
            )
            + "."
        )
    lines.append(
        f"{zero} of the {n} variants ended at 0 mask AP."
        if zero
        else f"Every one of the {n} variants learned something (mask AP above 0)."
    )
    devices = table["device"].value_counts(sort=False)
    if len(devices) > 1:
        lines.append(
            "Runs per device: "
            + ", ".join(f"{count} on {device}" for device, count in devices.items())
            + "; training minutes compare only runs on the same device."
        )
    headline = (
        f"Best of {n} recipe variants: {top['label']}, {top['mask AP']:.2f} mask AP in "
        f"{top['train minutes']:.2f} min" + (f"; {zero} ended at 0 mask AP" if zero else "")
    )
    return lines, headline


def recipe_seeds(
    records: Sequence[Mapping[str, Any]], preset: str, mix: str = "uniform", decimals: int = 2
) -> pd.DataFrame:
    """One row per seed of ``preset``'s runs on the ``mix`` set (e.g. Table 2's): final mask AP,
    minutes with evaluation (the run's wall time) and of training alone, torch threads, device
    and the split it was scored on; sorted by seed.

    Raises:
        ValueError: no record of ``preset`` on ``mix``.
    """
    from gmaiou.paper.experiments.runner import spec_from_record

    rows = [
        {
            "seed": int(r["seed"]),
            "mask AP": float(r["metrics"]["segm"]["AP"]),
            "minutes with evaluation": float(r["wall_seconds"]) / 60,
            "train minutes": float(r["train_seconds"]) / 60,
            "threads": int(r["torch_threads"]),
            "device": str(r["device_name"]),
            "split": spec_from_record(dict(r)).data.eval_split,
        }
        for r in records
        if r.get("preset") == preset and r.get("data", {}).get("mix") == mix
    ]
    if not rows:
        raise ValueError(f"no record of preset {preset!r} on the {mix!r} set")
    frame = pd.DataFrame(rows, columns=list(SEEDS_COLUMNS)).sort_values("seed")
    return frame.reset_index(drop=True).round(decimals)


def seeds_findings(seeds: pd.DataFrame, label: str) -> tuple[list[str], str]:
    """Sentences and a headline on :func:`recipe_seeds`: the recipe's mask AP as mean ± sd and
    range over seeds, and its minutes with evaluation per thread count (the numbers as shown).

    Returns ``(lines, headline)``, each line one sentence.
    """
    if seeds.empty:
        raise ValueError("no seed to describe")
    ap = seeds["mask AP"]
    sd = float(ap.std(ddof=1)) if len(ap) > 1 else math.nan
    spread = f"{ap.mean():.1f} ± {sd:.1f}" if sd == sd else f"{ap.mean():.1f}"
    splits = ", ".join(dict.fromkeys(seeds["split"]))
    # Minutes depend on the thread count: the headline gives those of the most threads.
    most = int(seeds["threads"].max())
    minutes = seeds.loc[seeds["threads"] == most, "minutes with evaluation"]
    headline = (
        f"CPU recipe ({label}), {len(seeds)} seeds: {spread} mask AP "
        f"({ap.min():.1f}–{ap.max():.1f}); {minutes.min():.1f}–{minutes.max():.1f} min with "
        f"evaluation at {most} thread{'' if most == 1 else 's'}"
    )
    lines = [
        f"{label} over {len(seeds)} seeds ({', '.join(str(s) for s in seeds['seed'])}): "
        f"{spread} mask AP (mean ± sd), {ap.min():.1f} to {ap.max():.1f}, "
        f"{int((ap >= 30).sum())} of {len(seeds)} at 30 or above, scored on the {splits} split "
        "the recipe was tuned on."
    ]
    for threads, part in seeds.groupby("threads", sort=True):
        lines.append(
            f"With {threads} torch thread{'' if threads == 1 else 's'} "
            f"({', '.join(dict.fromkeys(part['device']))}; seeds "
            f"{', '.join(str(s) for s in part['seed'])}): "
            f"{part['minutes with evaluation'].min():.1f} to "
            f"{part['minutes with evaluation'].max():.1f} min with evaluation, "
            f"{part['train minutes'].min():.1f} to {part['train minutes'].max():.1f} of training."
        )
    return lines, headline


def synthetic_sets(records: Sequence[Mapping[str, Any]]) -> str:
    """The synthetic sets of ``records`` in words, counted from them: ``synthetic 1000 images at
    160 px``, or with several sizes ``synthetic 1000 images at 160 px (3000 for 1 run)``."""
    counts = Counter((int(r["data"]["images"]), int(r["data"]["size"])) for r in records)
    if not counts:
        return "no synthetic set"
    ranked = counts.most_common()
    (images, size), _ = ranked[0]
    text = f"synthetic {images} images at {size} px"
    others = [
        f"{n} images at {px} px for {k} run{'s' if k != 1 else ''}"
        if px != size
        else f"{n} for {k} run{'s' if k != 1 else ''}"
        for (n, px), k in ranked[1:]
    ]
    return text + (f" ({', '.join(others)})" if others else "")


def _mix(record: Mapping[str, Any]) -> str:
    data = record.get("data")
    return str(data.get("mix", "")) if isinstance(data, Mapping) else ""


def _footer_notes(*grids: GridRecords) -> str:
    from gmaiou.paper.experiments.stats import dirty_note

    return "".join(f"; {note}" for g in grids if (note := dirty_note(g)))


def write_learning_curve(
    curve: GridRecords,
    earlier: GridRecords,
    seeds_from: GridRecords,
    recipe: Mapping[str, Any],
    data: str,
    profile: str = "default",
    target_ap: float = 30.0,
    budget_minutes: float = 6.0,
) -> tuple[list[str], str]:
    """Write :data:`CURVE`: the learning curves (figure), their points and the recipe over
    seeds (table), and the findings, from clean records only.

    Args:
        curve: the ``curve`` grid's records (the current recipe's curve).
        earlier: the ``curve-recipe1`` grid's (the first recipe's curve), shown beside it.
        seeds_from: the ``table2`` grid's, whose runs of the recipe's preset on the uniform
            set give the recipe over seeds (:func:`recipe_seeds`).
        recipe: the curve run's ``preset``, ``seed``, ``label`` and ``variant``
            (:meth:`~gmaiou.paper.experiments.runner.RunSpec.to_dict` of the grid's run), named
            where the curve has no clean record.
        data: the synthetic set in words, for the footer.
        profile: the figures folder written.

    Without a clean record of ``curve`` the findings say so
    (:func:`~gmaiou.paper.experiments.stats.no_clean_record`) and hold no run to the target;
    every footer names the dirty records left out. Returns ``(lines, headline)``.
    """
    import matplotlib.pyplot as plt

    from gmaiou.paper.experiments.plots import plot_learning_curve
    from gmaiou.paper.experiments.stats import no_clean_record
    from gmaiou.paper.figures import save_figure, save_findings, save_table, text_figure

    runs = curve.used + earlier.used
    preset = recipe["preset"]
    recipe_dirty = [
        r for r in seeds_from.left_out if r.get("preset") == preset and _mix(r) == "uniform"
    ]  # only the recipe's own runs would have been used
    notes = _footer_notes(curve, earlier, GridRecords(seeds_from.grid, left_out=recipe_dirty))
    if curve.used:
        r = curve.used[0]
        source = (
            f"{data}, {r['preset']}, seed {r['seed']}, {r['device_name']}, "
            f"{r['torch_threads']} torch thread(s)"
        )
    else:
        source = f"{data}, {recipe['preset']}, seed {recipe['seed']}: no clean record"
    missing_lines, missing_headline = no_clean_record(curve)
    if any(r.get("curve") for r in runs):
        fig = plot_learning_curve(runs, target_ap=target_ap, budget_minutes=budget_minutes)
    else:
        fig = text_figure(missing_headline)
    save_figure(fig, CURVE, profile, source=textwrap.fill(source + notes, 130))
    plt.close(fig)
    if earlier.used:  # the table and findings hold the first recipe's points too
        n = len(earlier.used)
        source += (
            f"; the first recipe's curve: {n} run{'s' if n != 1 else ''} of grid {earlier.grid}"
        )
    points = curve_points(runs)
    mine = [r for r in seeds_from.used if r.get("preset") == preset and _mix(r) == "uniform"]
    seeds = recipe_seeds(mine, preset, "uniform") if mine else None
    source += f"; over seeds: {0 if seeds is None else len(seeds)} runs of grid {seeds_from.grid}"
    source += notes
    over_seeds = (
        seeds.to_markdown(index=False)
        if seeds is not None
        else f"No clean run of {preset} on the uniform set in grid {seeds_from.grid} yet."
    )
    save_table(
        points.to_markdown(index=False)
        + f"\n\nThe recipe over seeds (its runs in grid {seeds_from.grid}, uniform set):\n\n"
        + over_seeds,
        CURVE,
        profile,
        source=source,
    )
    curve_lines, curve_headline = (
        curve_findings(points, target_ap, budget_minutes, first_is_recipe=bool(curve.used))
        if len(points)
        else ([], "")
    )
    if not curve.used:
        curve_lines = missing_lines + curve_lines
    name = curve_run_name(
        curve.used[0] if curve.used else {**recipe, "label": recipe.get("label") or preset}
    )
    seed_lines, headline = seeds_findings(seeds, name) if seeds is not None else ([], "")
    headline = headline or curve_headline or missing_headline
    lines = seed_lines + curve_lines
    save_findings(lines, CURVE, profile, source=source, headline=headline)
    return lines, headline


def write_recipe_search(search: GridRecords, profile: str = "default") -> tuple[list[str], str]:
    """Write :data:`SEARCH` (table, figure, findings) from the clean records of the
    ``recipe-search`` grid, or, where it has none, the files saying so
    (:func:`~gmaiou.paper.figures.save_no_result`); every footer names the dirty records left
    out. Nothing is written for a grid without any record. Returns ``(lines, headline)``."""
    import matplotlib.pyplot as plt

    from gmaiou.paper.experiments.plots import plot_recipe_search
    from gmaiou.paper.experiments.stats import no_clean_record, records_frame
    from gmaiou.paper.figures import save_figure, save_findings, save_no_result, save_table

    if not search.total:
        return [], ""
    notes = _footer_notes(search)
    if not search.used:
        lines, headline = no_clean_record(search)
        source = f"{search.total} runs of grid {search.grid}" + notes
        save_no_result(SEARCH, lines, headline, profile, source=source)
        return lines, headline
    frame = records_frame(search.used)
    source = (
        f"{synthetic_sets(search.used)}, {len(search.used)} runs on "
        + ", ".join(sorted(set(frame["device"])))
        + notes
    )
    fig = plot_recipe_search(frame)
    save_figure(fig, SEARCH, profile, source=textwrap.fill(source, 110))
    plt.close(fig)
    # minutes: the run's own; GPU-machine rows ran 12-14 at once on its CPU cores
    table = recipe_search_table(frame)
    save_table(table, SEARCH, profile, source=source)
    lines, headline = recipe_search_findings(table)
    save_findings(lines, SEARCH, profile, source=source, headline=headline)
    return lines, headline
