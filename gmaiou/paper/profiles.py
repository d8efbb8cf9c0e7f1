"""Run profiles shared by the notebooks and the benchmarks.

``smoke`` runs in seconds (CI), ``quick`` in a minute or two, ``default`` is what
``make reproduce`` uses on a laptop CPU, ``paper`` is the paper's settings (COCO, GPU).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PROFILES", "Profile", "get_profile"]


@dataclass(frozen=True)
class Profile:
    """Sizes of the work a notebook or benchmark does.

    Attributes:
        name: profile name.
        num_images: real or synthetic images analysed.
        image_sizes: square image sides to evaluate.
        repeats: timing repetitions (best of).
        synthetic_images: images in the generated synthetic dataset.
        sittings: how many times the benchmarks' goal ratios are measured over, to show
            how far they move between sittings on a shared machine.
    """

    name: str
    num_images: int
    image_sizes: tuple[int, ...]
    repeats: int
    synthetic_images: int
    sittings: int


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        "smoke", num_images=6, image_sizes=(550,), repeats=1, synthetic_images=12, sittings=2
    ),
    "quick": Profile(
        "quick",
        num_images=40,
        image_sizes=(400, 550, 700),
        repeats=3,
        synthetic_images=100,
        sittings=3,
    ),
    "default": Profile(
        "default",
        num_images=150,
        image_sizes=(400, 550, 700),
        repeats=5,
        synthetic_images=400,
        sittings=5,
    ),
    "paper": Profile(
        "paper",
        num_images=5000,
        image_sizes=(400, 550, 700),
        repeats=5,
        synthetic_images=5000,
        sittings=5,
    ),
}


def get_profile(name: str) -> Profile:
    """The named profile; a clear error for an unknown name."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}") from None
