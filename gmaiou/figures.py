"""Saving figures and tables the way every notebook does: PNG and PDF, named after the paper."""

from __future__ import annotations

from pathlib import Path

from gmaiou.paths import figures_dir

__all__ = ["save_figure", "save_table", "table_figure"]


def save_figure(fig, name: str, profile: str = "default", dpi: int = 150) -> list[Path]:
    """Write ``fig`` as ``<name>.png`` and ``<name>.pdf`` into the profile's figure folder."""
    out = figures_dir(profile)
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    fig.savefig(paths[0], dpi=dpi, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight")
    return paths


def save_table(frame_or_text, name: str, profile: str = "default") -> Path:
    """Write a table as Markdown (``<name>.md``); accepts a pandas DataFrame or a string."""
    out = figures_dir(profile) / f"{name}.md"
    text = (
        frame_or_text if isinstance(frame_or_text, str) else frame_or_text.to_markdown(index=False)
    )
    out.write_text(text + "\n")
    return out


def table_figure(frame, title: str | None = None, col_width: float = 1.9, row_height: float = 0.42):
    """Render a DataFrame as a matplotlib table figure (for tables saved as PNG and PDF)."""
    import matplotlib.pyplot as plt

    nrows, ncols = frame.shape
    fig, ax = plt.subplots(figsize=(max(4.0, col_width * ncols), row_height * (nrows + 1.5)))
    ax.axis("off")
    cells = [[str(v) for v in row] for row in frame.itertuples(index=False)]
    table = ax.table(
        cellText=cells, colLabels=[str(c) for c in frame.columns], loc="center", cellLoc="center"
    )
    table.auto_set_font_size(False)
    table.set_fontsize(9)
    table.scale(1.0, 1.3)
    for (row, _), cell in table.get_celld().items():
        if row == 0:
            cell.set_text_props(weight="bold")
            cell.set_facecolor("#e8e8e8")
    if title:
        ax.set_title(title, fontsize=11)
    return fig
