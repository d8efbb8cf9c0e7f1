"""Where things live: the COCO sample and the cache of generated data; whether an output
folder can be written.

Every location can be overridden by an environment variable so that a user's
machine (no ``../shared``) and CI (with it) both work without code changes.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir", "check_writable_folder", "coco_sample_dir", "repo_root"]


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


def check_writable_folder(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Refuse, before any work, a folder that cannot be created or written into.

    ``path`` itself need not exist: its nearest existing ancestor must be a writable
    folder. Nothing is created.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        NotADirectoryError: ``path`` or an ancestor of it is a file, named.
        PermissionError: naming ``path`` and the folder that is not writable.
    """
    path = Path(path)
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise NotADirectoryError(f"cannot write {what} {path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write {what} {path}: {existing} is not writable")
    return path
