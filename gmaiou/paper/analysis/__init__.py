"""Analyses behind the figures: GT MOB ratios (Fig. 3(a)) and IoU/GmaIoU disagreements (Fig. 1)."""

from gmaiou.paper.analysis.examples import atss_positives, gt_disagreements, select_examples
from gmaiou.paper.analysis.mob import dataset_statistics, ecdf, gt_mob_ratios, mob_summary

__all__ = [
    "atss_positives",
    "dataset_statistics",
    "ecdf",
    "gt_disagreements",
    "gt_mob_ratios",
    "mob_summary",
    "select_examples",
]
