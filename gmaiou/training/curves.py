"""A run's training curves: ``metrics.csv``, ``curves.png`` and, where installed, TensorBoard.

:func:`write_curves` (called by the trainer after each evaluation and when a call of
:func:`~gmaiou.training.trainer.train` ends) writes into the run directory::

    RUN_DIR/metrics.csv   one row per logged iteration: iteration, epoch, lr, the total loss
                          and each loss component (loss_<name>), seconds (that iteration's
                          wall time); the AP columns (mask_AP, box_AP, ...) are filled on
                          the rows of the iterations where the run was evaluated
    RUN_DIR/curves.png    losses, learning rate and mask and box AP at each evaluation,
                          against iterations
    RUN_DIR/tensorboard/  the same scalars as TensorBoard event files, when the ``tensorboard``
                          package is installed (the ``tensorboard`` extra); nothing otherwise

Everything is rebuilt from ``metrics.jsonl`` (which a resume truncates to its checkpoint)
and the AP columns of the previous ``metrics.csv``, so a resumed run's files hold each
iteration once. ``curves.png`` is drawn with matplotlib when it can be imported and with
Pillow (a dependency of the library) as simple line panels otherwise.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "AP_COLUMNS",
    "CSV_FILE",
    "PNG_FILE",
    "TENSORBOARD_DIR",
    "read_metrics_csv",
    "write_curves",
]

CSV_FILE = "metrics.csv"
PNG_FILE = "curves.png"
TENSORBOARD_DIR = "tensorboard"
_JSONL_FILE = "metrics.jsonl"
#: ``metrics.jsonl`` fields that are not loss components.
_NOT_LOSSES = frozenset({"epoch", "iter", "iteration", "lr", "grad_norm", "data_time", "time"})
#: AP columns of an evaluation: ``(column, iou type, key of the metrics dict)``.
_AP = tuple(
    (f"{name}_{key}", kind, key)
    for name, kind in (("mask", "segm"), ("box", "bbox"))
    for key in ("AP", "AP50", "AP75")
)
AP_COLUMNS: tuple[str, ...] = tuple(column for column, _, _ in _AP)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    records = []
    if not path.is_file():
        return records
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            break  # a half-written last line
    return records


def read_metrics_csv(path: str | os.PathLike) -> list[dict[str, float | None]]:
    """The rows of a ``metrics.csv`` as dicts of floats (``None`` for an empty cell)."""
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        return [
            {k: (float(v) if v not in ("", None) else None) for k, v in row.items()}
            for row in csv.DictReader(handle)
        ]


def _loss_column(name: str) -> str:
    return name if name == "loss" else f"loss_{name}"


def _rows(
    run_dir: Path, iteration: int | None, metrics: dict[str, Any] | None
) -> tuple[list[str], list[dict[str, Any]]]:
    """The columns and rows of ``metrics.csv``: the iterations of ``metrics.jsonl``, the AP
    of earlier evaluations kept from the previous file, and ``metrics`` at ``iteration``."""
    records = _read_jsonl(run_dir / _JSONL_FILE)
    losses: list[str] = []
    for record in records:
        losses += [k for k in record if k not in _NOT_LOSSES and k not in losses]
    columns = ["iteration", "epoch", "lr", *map(_loss_column, losses), "seconds", *AP_COLUMNS]
    rows: dict[int, dict[str, Any]] = {}
    for record in records:
        row = {
            "iteration": record["iteration"],
            "epoch": record.get("epoch"),
            "lr": record.get("lr"),
            "seconds": record.get("time"),
        }
        row.update({_loss_column(k): record.get(k) for k in losses})
        rows[int(record["iteration"])] = row
    last = max(rows, default=0)
    try:
        previous = read_metrics_csv(run_dir / CSV_FILE)
    except (ValueError, csv.Error):
        previous = []  # not a file this module wrote: its evaluations are not kept
    evaluations: dict[int, dict[str, Any]] = {}
    for old in previous:
        aps = {c: old.get(c) for c in AP_COLUMNS if old.get(c) is not None}
        # An evaluation past the last logged iteration (a run resumed from before it) goes.
        if aps and old.get("iteration") is not None and int(old["iteration"]) <= last:
            evaluations[int(old["iteration"])] = aps
    if metrics is not None and iteration is not None:
        evaluations[int(iteration)] = {
            column: metrics.get(kind, {}).get(key) for column, kind, key in _AP
        }
    for at, aps in evaluations.items():
        rows.setdefault(at, {"iteration": at}).update(aps)
    return columns, [rows[i] for i in sorted(rows)]


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return repr(value) if isinstance(value, float) else str(value)


def _write_csv(path: Path, columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])
    _replace(path, buffer.getvalue().encode())


def _replace(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary beside it: never a half-written file."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# --------------------------------------------------------------------------- the panels


def _series(rows: Sequence[dict[str, Any]], column: str) -> tuple[list[float], list[float]]:
    points = [
        (float(r["iteration"]), float(r[column]))
        for r in rows
        if r.get(column) is not None and math.isfinite(float(r[column]))
    ]
    return [x for x, _ in points], [y for _, y in points]


def _panels(columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> list[tuple[str, dict]]:
    """``(title, {label: (xs, ys)})`` of each panel that has something to draw."""
    losses = [c for c in columns if c == "loss" or c.startswith("loss_")]
    panels = [
        ("loss", {c: _series(rows, c) for c in losses}),
        ("learning rate", {"lr": _series(rows, "lr")}),
        ("AP at each evaluation (%)", {c: _series(rows, c) for c in ("mask_AP", "box_AP")}),
    ]
    return [
        (title, {k: v for k, v in lines.items() if v[0]})
        for title, lines in panels
        if any(xs for xs, _ in lines.values())
    ]


def _draw_matplotlib(panels: list[tuple[str, dict]], title: str) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.0 * len(panels), 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    for i, (name, lines) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for label, (xs, ys) in lines.items():
            ax.plot(xs, ys, marker="o" if len(xs) < 20 else None, ms=3, lw=1.2, label=label)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
        if len(lines) > 1:
            ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    return buffer.getvalue()


_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
            (140, 86, 75), (227, 119, 194), (127, 127, 127)]  # fmt: skip


def _draw_pillow(panels: list[tuple[str, dict]], title: str) -> bytes:
    """The panels as plain line plots with Pillow: a frame, the lines, min/max of each axis."""
    from PIL import Image, ImageDraw

    width, height, top, margin = 420, 300, 28, 60
    image = Image.new("RGB", (width * len(panels), height + top), "white")
    draw = ImageDraw.Draw(image)
    draw.text((8, 6), title, fill="black")
    for i, (name, lines) in enumerate(panels):
        left, upper = i * width + margin, top + 22
        right, lower = (i + 1) * width - 12, top + height - 30
        xs = [x for line_xs, _ in lines.values() for x in line_xs]
        ys = [y for _, line_ys in lines.values() for y in line_ys]
        x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
        draw.rectangle((left, upper, right, lower), outline="black")
        draw.text((left, upper - 16), name, fill="black")
        draw.text((left - margin + 2, upper), f"{y1:.3g}", fill="black")
        draw.text((left - margin + 2, lower - 10), f"{y0:.3g}", fill="black")
        draw.text((left, lower + 4), f"iteration {x0:.0f}", fill="black")
        if x1 > x0:
            draw.text((right - 50, lower + 4), f"{x1:.0f}", fill="black")
        # A single value is drawn in the middle of its axis.
        x0, x1 = (x0, x1) if x1 > x0 else (x0 - 1, x1 + 1)
        y0, y1 = (y0, y1) if y1 > y0 else (y0 - abs(y0) * 0.1 - 1e-12, y1 + abs(y1) * 0.1 + 1e-12)
        for j, (label, (line_xs, line_ys)) in enumerate(lines.items()):
            colour = _COLOURS[j % len(_COLOURS)]
            points = [
                (
                    left + (x - x0) / (x1 - x0) * (right - left),
                    lower - (y - y0) / (y1 - y0) * (lower - upper),
                )
                for x, y in zip(line_xs, line_ys)
            ]
            if len(points) > 1:
                draw.line(points, fill=colour, width=2)
            for px, py in points if len(points) < 20 else points[-1:]:
                draw.ellipse((px - 2, py - 2, px + 2, py + 2), fill=colour)
            draw.text((right - 110, upper + 4 + 12 * j), label, fill=colour)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _draw(panels: list[tuple[str, dict]], title: str) -> bytes:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return _draw_pillow(panels, title)
    return _draw_matplotlib(panels, title)


def _write_tensorboard(folder: Path, columns: Sequence[str], rows: Sequence[dict]) -> bool:
    """Every scalar as a TensorBoard event file in ``folder`` (rewritten); ``False`` without
    the ``tensorboard`` package."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return False
    if folder.is_dir():
        shutil.rmtree(folder)  # rebuilt whole, so that a resume leaves no duplicate steps
    writer = SummaryWriter(log_dir=str(folder))
    try:
        for row in rows:
            step = int(row["iteration"])
            for column in columns:
                value = row.get(column)
                if column not in ("iteration", "epoch") and value is not None:
                    tag = f"eval/{column}" if column in AP_COLUMNS else f"train/{column}"
                    writer.add_scalar(tag, float(value), step)
    finally:
        writer.close()
    return True


def write_curves(
    run_dir: str | os.PathLike,
    iteration: int | None = None,
    metrics: dict[str, Any] | None = None,
    title: str | None = None,
) -> Path:
    """Rewrite ``metrics.csv``, ``curves.png`` (and ``tensorboard/``) of ``run_dir``.

    Args:
        run_dir: the run directory (its ``metrics.jsonl`` holds the logged iterations).
        iteration: the iteration of an evaluation that just ended.
        metrics: its metrics, ``{"segm": {"AP": ...}, "bbox": {...}}``; its AP columns
            go on the row of ``iteration``.
        title: the figure's title (default: the folder's name).

    Returns:
        The path of ``metrics.csv``. A figure that cannot be drawn is a warning, not an
        error: the curves never cost a trained run.
    """
    run_dir = Path(run_dir)
    columns, rows = _rows(run_dir, iteration, metrics)
    csv_path = run_dir / CSV_FILE
    _write_csv(csv_path, columns, rows)
    panels = _panels(columns, rows)
    if panels:
        try:
            _replace(run_dir / PNG_FILE, _draw(panels, title or run_dir.name))
        except Exception as err:  # noqa: BLE001 - a figure must not end a run
            warnings.warn(f"could not draw {run_dir / PNG_FILE}: {err}", stacklevel=2)
    try:
        _write_tensorboard(run_dir / TENSORBOARD_DIR, columns, rows)
    except Exception as err:  # noqa: BLE001 - nor must an optional logger
        warnings.warn(f"could not write {run_dir / TENSORBOARD_DIR}: {err}", stacklevel=2)
    return csv_path
