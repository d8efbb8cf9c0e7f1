"""Run profiles shared by the notebooks and the benchmarks.

``smoke`` runs in seconds (CI), ``quick`` in a minute or two, ``default`` is what
``make reproduce`` uses on a laptop CPU, ``paper`` is the paper's settings (COCO, GPU).

Each notebook's ``parameters`` cell ends with ``declared_names = set(globals())``, and the
cell after it (after papermill's injected one) calls :func:`check_parameters`, so that
``papermill -p profil quick`` or ``-p profile fast`` stops with one clear error instead of
running the default profile or failing deep inside the notebook.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["PROFILES", "Profile", "check_parameters", "get_profile"]


@dataclass(frozen=True)
class Profile:
    """Sizes of the work a notebook or benchmark does.

    Attributes:
        name: profile name.
        num_images: real or synthetic images analysed.
        image_sizes: square image sides to evaluate.
        repeats: timing repetitions (best of).
        synthetic_images: images in the generated synthetic dataset.
        rounds: how many times in a row the benchmarks' goal ratios are measured, to show
            how far they move between repeated runs on a shared machine.
    """

    name: str
    num_images: int
    image_sizes: tuple[int, ...]
    repeats: int
    synthetic_images: int
    rounds: int


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        "smoke", num_images=6, image_sizes=(550,), repeats=1, synthetic_images=12, rounds=2
    ),
    "quick": Profile(
        "quick",
        num_images=40,
        image_sizes=(400, 550, 700),
        repeats=3,
        synthetic_images=100,
        rounds=3,
    ),
    "default": Profile(
        "default",
        num_images=150,
        image_sizes=(400, 550, 700),
        repeats=5,
        synthetic_images=400,
        rounds=5,
    ),
    "paper": Profile(
        "paper",
        num_images=5000,
        image_sizes=(400, 550, 700),
        repeats=5,
        synthetic_images=5000,
        rounds=5,
    ),
}


def get_profile(name: str) -> Profile:
    """The named profile; a clear error for an unknown name."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}") from None


#: The types of the values papermill injects (``-p`` and ``-y`` give literals).
_PARAMETER_TYPES = (str, int, float, bool, list, dict, type(None))
#: Plain-data names IPython defines in every notebook's namespace.
_IPYTHON_NAMES = frozenset({"In", "Out"})


def check_parameters(namespace: Mapping[str, Any], known: Collection[str]) -> None:
    """Refuse papermill parameters a notebook cannot run with.

    Args:
        namespace: the notebook's ``globals()``, after papermill's injected cell.
        known: the names defined when the notebook's ``parameters`` cell ended
            (``set(globals())`` taken there). Papermill injects its cell right after that
            cell, so a parameter it defines whose name is not among them is one the
            notebook does not declare.

    Raises:
        ValueError: for an undeclared parameter name (a misspelled ``-p profil quick`` would
            otherwise leave the default profile running), naming it and the notebook's
            parameters, or for an unknown ``profile`` (see :func:`get_profile`).
    """
    known = set(known)
    undeclared = sorted(
        name
        for name, value in namespace.items()
        if name not in known and not name.startswith("_") and isinstance(value, _PARAMETER_TYPES)
    )
    if undeclared:
        declared = sorted(
            name
            for name in known
            if not name.startswith("_")
            and name not in _IPYTHON_NAMES
            and isinstance(namespace.get(name), _PARAMETER_TYPES)
        )
        hints = []
        for name in undeclared:
            close = difflib.get_close_matches(name, declared, n=1)
            hints.append(f"{name!r} (did you mean {close[0]!r}?)" if close else repr(name))
        raise ValueError(
            f"unknown notebook parameter{'s' if len(undeclared) > 1 else ''} "
            f"{', '.join(hints)}; this notebook takes: {', '.join(declared) or 'none'}"
        )
    if "profile" in namespace:
        get_profile(namespace["profile"])
