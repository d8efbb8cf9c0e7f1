"""Where things live: the COCO sample and the cache of generated data.

Every location can be overridden by an environment variable so that a user's
machine (no ``../shared``) and CI (with it) both work without code changes.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir", "coco_sample_dir", "repo_root"]


def repo_root() -> Path:
    """The checkout that holds this package (the folder with ``pyproject.toml``)."""
    return Path(__file__).resolve().parent.parent


def coco_sample_dir() -> Path | None:
    """The 318-image real COCO sample, or ``None`` where it is absent.

    Looked up in ``$GMAIOU_COCO_SAMPLE``, then ``<repo>/../shared/data/coco-sample``.
    """
    env = os.environ.get("GMAIOU_COCO_SAMPLE")
    candidates = [Path(env)] if env else []
    candidates.append(repo_root().parent / "shared" / "data" / "coco-sample")
    for path in candidates:
        if (path / "annotations").is_dir():
            return path
    return None


def cache_dir() -> Path:
    """Folder for generated data (synthetic datasets): ``$GMAIOU_CACHE`` or ``~/.cache/gmaiou``."""
    path = Path(os.environ.get("GMAIOU_CACHE", Path.home() / ".cache" / "gmaiou"))
    path.mkdir(parents=True, exist_ok=True)
    return path
