"""Table 4's anchor counts: the anchors of each assigner's grid at the paper's image sizes.

Counted from the anchor grids (:func:`gmaiou.anchors.yolact_anchors`,
:func:`gmaiou.anchors.atss_anchors`), no image and no timing, so the outputs live outside
``timings/``: ``table4_anchors_per_scale.md``, its picture (the table drawn, PNG and PDF) and
its findings. Notebook 03 writes them; ``python -m gmaiou.paper.benchmarks.anchors`` writes them
alone, without the notebook's timings.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

__all__ = [
    "ANCHOR_COLUMNS",
    "NAME",
    "SIZES",
    "SOURCE",
    "anchors_findings",
    "anchors_headline",
    "anchors_per_scale",
    "main",
    "write_anchors_per_scale",
]

#: The output stem: ``table4_anchors_per_scale.md``, ``.png``, ``.pdf``, ``_findings.md``.
NAME = "table4_anchors_per_scale"
#: The paper's image sizes (YOLACT-400, -550, -700).
SIZES: tuple[int, ...] = (400, 550, 700)
#: The stamp's data part.
SOURCE = "anchor grids only (no images)"
#: The table's columns after ``image size``: the reference (YOLACT's grid) first.
ANCHOR_COLUMNS: tuple[str, ...] = (
    "fixed IoU (YOLACT, 3 per location)",
    "ATSS (1 per location)",
    "GmaYOLACT ATSS (2 scales)",
)


def anchors_per_scale(sizes: Sequence[int] = SIZES) -> pd.DataFrame:
    """One row per image size: the anchors of YOLACT's grid (3 aspect ratios per location),
    ATSS's (one per location) and GmaYOLACT's ATSS (two scales per octave)."""
    from gmaiou.anchors import atss_anchors, yolact_anchors

    if not sizes:
        raise ValueError("give at least one image size")
    yolact, atss, two = ANCHOR_COLUMNS
    return pd.DataFrame(
        [
            {
                "image size": size,
                yolact: len(yolact_anchors(size)),
                atss: len(atss_anchors(size)),
                two: len(atss_anchors(size, scales_per_octave=2)),
            }
            for size in sizes
        ]
    )


def _sizes(values: Sequence[int]) -> str:
    values = [str(v) for v in values]
    return values[0] if len(values) == 1 else f"{', '.join(values[:-1])} and {values[-1]}"


def _shares(frame: pd.DataFrame, column: str) -> str:
    """``column``'s anchors as a share of YOLACT's: one percentage where every size agrees
    (at 0.1%), else one per size."""
    shares = [f"{100 * a / y:.1f}%" for a, y in zip(frame[column], frame[ANCHOR_COLUMNS[0]])]
    if len(set(shares)) == 1:
        return shares[0]
    return ", ".join(f"{s} at {size} px" for s, size in zip(shares, frame["image size"]))


def anchors_headline(frame: pd.DataFrame) -> str:
    """The anchors of ATSS and of GmaYOLACT's ATSS as shares of YOLACT's, in one sentence."""
    _, atss, two = ANCHOR_COLUMNS
    return (
        f"ATSS has {_shares(frame, atss)} of YOLACT's anchors and GmaYOLACT's two-scale ATSS "
        f"{_shares(frame, two)} ({_sizes(list(frame['image size']))} px)"
    )


def anchors_findings(frame: pd.DataFrame) -> list[str]:
    """One sentence per image size: each grid's anchors and their share of YOLACT's."""
    yolact, atss, two = ANCHOR_COLUMNS
    lines = []
    for _, row in frame.iterrows():
        y, a, t = int(row[yolact]), int(row[atss]), int(row[two])
        lines.append(
            f"At {int(row['image size'])} px, YOLACT's grid has {y:,} anchors, ATSS's {a:,} "
            f"({a / y:.2f}x YOLACT's) and GmaYOLACT's two-scale ATSS {t:,} ({t / y:.2f}x YOLACT's, "
            f"{t / a:.2f}x ATSS's)."
        )
    return lines


def write_anchors_per_scale(profile: str = "default", sizes: Sequence[int] = SIZES) -> list[Path]:
    """Write :data:`NAME`'s table (Markdown), the table drawn (PNG and PDF) and its findings."""
    import matplotlib.pyplot as plt

    from gmaiou.paper.figures import save_figure, save_findings, save_table, table_figure

    frame = anchors_per_scale(sizes)
    paths = [save_table(frame, NAME, profile, source=SOURCE)]
    # every count with a thousands separator (the table's cells would give one from 10,000 on)
    drawn = frame.astype(str).assign(**{c: [f"{v:,}" for v in frame[c]] for c in ANCHOR_COLUMNS})
    fig = table_figure(drawn, "Table 4: anchors per image of each assigner's grid", wrap=20)
    paths += save_figure(fig, NAME, profile, source=SOURCE)
    plt.close(fig)
    paths.append(
        save_findings(
            anchors_findings(frame), NAME, profile, source=SOURCE, headline=anchors_headline(frame)
        )
    )
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gmaiou.paper.benchmarks.anchors",
        description=f"Write {NAME} (table, picture, findings) from the anchor grids.",
    )
    parser.add_argument("--profile", default="default", help="default: %(default)s")
    args = parser.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    for path in write_anchors_per_scale(args.profile):
        print(f"written {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
