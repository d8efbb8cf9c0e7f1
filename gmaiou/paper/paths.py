"""Where the paper layer writes: the figures folder of a profile, beside the library's paths."""

from __future__ import annotations

import os
from pathlib import Path

from gmaiou.paths import cache_dir, coco_sample_dir, repo_root

__all__ = ["TIMINGS", "cache_dir", "coco_sample_dir", "figures_dir", "repo_root", "timings_dir"]


def figures_dir(profile: str = "default") -> Path:
    """Where notebooks write figures: ``$GMAIOU_FIGURES`` or ``<repo>/figures``.

    Only the ``default`` profile writes into that folder itself, whose files are committed;
    every other profile writes to a ``<profile>/`` subfolder (ignored by git), so that a
    smoke or quick run never replaces the committed figures.
    """
    base = Path(os.environ.get("GMAIOU_FIGURES", repo_root() / "figures"))
    path = base if profile == "default" else base / profile
    path.mkdir(parents=True, exist_ok=True)
    return path


#: The subfolder of a figures folder that holds every timing-dependent output: the speed
#: benchmarks' records (JSON, with the device and torch version) and the tables, figures and
#: findings made from them. Everything outside it is rewritten byte for byte by a re-run.
TIMINGS = "timings"


def timings_dir(profile: str = "default") -> Path:
    """``<figures of the profile>/timings``: where timing-dependent outputs go (created)."""
    path = figures_dir(profile) / TIMINGS
    path.mkdir(parents=True, exist_ok=True)
    return path
