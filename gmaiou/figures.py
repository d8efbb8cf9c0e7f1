"""Saving figures and tables the way every notebook does: PNG and PDF, named after the paper."""

from __future__ import annotations

from pathlib import Path

from gmaiou.paths import figures_dir

__all__ = ["save_figure", "save_table"]


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
    text = frame_or_text if isinstance(frame_or_text, str) else frame_or_text.to_markdown(index=False)
    out.write_text(text + "\n")
    return out
