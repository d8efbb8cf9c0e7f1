"""gmaiou: Generalized Mask-aware IoU for anchor assignment in instance segmentation."""

from gmaiou.measure import (
    MEASURES,
    MaskIntegrals,
    gmaiou,
    gmaiou_bruteforce,
    maiou,
    mob_ratio,
    pairwise_overlaps,
)

__version__ = "0.1.0"

__all__ = [
    "MEASURES",
    "MaskIntegrals",
    "__version__",
    "gmaiou",
    "gmaiou_bruteforce",
    "maiou",
    "mob_ratio",
    "pairwise_overlaps",
]
