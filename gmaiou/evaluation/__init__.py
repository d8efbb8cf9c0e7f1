"""COCO evaluation: pycocotools' AP and our optimal LRP (oLRP), and model outputs as COCO results.

* :func:`coco_metrics` -- ``{"bbox": {...}, "segm": {...}}`` with AP, AP50, AP75, APs, APm, APl,
  oLRP, oLRP_loc, oLRP_FP, oLRP_FN, all in percent;
* :mod:`gmaiou.evaluation.lrp` -- the oLRP definitions and the per-class computation;
* :mod:`gmaiou.evaluation.results` -- tensors to COCO results, and results files.
"""

from gmaiou.evaluation.coco import (
    AP_KEYS,
    IOU_TYPES,
    LRP_KEYS,
    coco_class_lrp,
    coco_metrics,
    run_cocoeval,
    validate_detections,
)
from gmaiou.evaluation.lrp import (
    LRP_TAU,
    ClassLRP,
    LRPCurve,
    lrp_curve,
    lrp_error,
    mean_optimal_lrp,
    optimal_lrp,
)
from gmaiou.evaluation.results import detections_to_coco, load_results, save_results

__all__ = [
    "AP_KEYS",
    "IOU_TYPES",
    "LRP_KEYS",
    "LRP_TAU",
    "ClassLRP",
    "LRPCurve",
    "coco_class_lrp",
    "coco_metrics",
    "detections_to_coco",
    "load_results",
    "lrp_curve",
    "lrp_error",
    "mean_optimal_lrp",
    "optimal_lrp",
    "run_cocoeval",
    "save_results",
    "validate_detections",
]
