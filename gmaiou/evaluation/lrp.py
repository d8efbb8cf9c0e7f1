"""Optimal Localisation-Recall-Precision error (oLRP) of one class, and its mean over classes.

Definitions (``docs/spec.md`` section 4; Oksuz et al., ECCV 2018 and TPAMI 2022), for one class
with ``N_GT >= 1`` non-ignored ground truths and the detections kept at a score cut-off ``s``
(every detection with ``score >= s``), matched to the ground truth greedily as COCO does at
IoU threshold ``tau`` (0.5):

* ``LRP(s) = [sum_TP (1 - IoU) / (1 - tau) + N_FP + N_FN] / (N_TP + N_FP + N_FN)``, which lies
  in [0, 1] because every TP has ``IoU >= tau``; ``N_TP + N_FN = N_GT``;
* ``oLRP = min_s LRP(s)`` over the distinct detection scores ``s`` (a cut-off keeps *all*
  detections tied at its score; where several cut-offs reach the minimum, the highest that
  keeps a true positive wins);
* the components at the optimal cut-off ``s*`` are **not** rescaled by ``1 / (1 - tau)``:

  - ``loc = sum_TP (1 - IoU) / N_TP``, the mean localisation error of the TPs, in [0, 1 - tau];
  - ``fp = N_FP / (N_TP + N_FP) = 1 - precision``;
  - ``fn = N_FN / N_GT = 1 - recall``.

  These are the definitions of the reference implementation (``kemaloksuz/LRP-Error``), so
  ``oLRP = (N_TP * loc / (1 - tau) + N_FP + N_FN) / (N_GT + N_FP)``.

A class without any true positive (no detection, or only false positives) scores ``oLRP = 1``
and ``fn = 1``; ``loc``, ``fp`` and the optimal threshold are undefined there and are NaN in
:class:`ClassLRP` (never in ``olrp``). :func:`mean_optimal_lrp` averages ``oLRP`` and ``fn`` over
every class and ``loc`` and ``fp`` over the classes with at least one true positive, as the
reference does.

One deliberate difference from the reference: it evaluates a cut-off after *every* detection in
score order, including positions inside a run of tied scores, which no score threshold can
produce and whose value depends on how the sort broke the tie. Here the cut-offs are the
distinct scores, so both agree whenever the scores are distinct.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "LRP_TAU",
    "ClassLRP",
    "LRPCurve",
    "lrp_curve",
    "lrp_error",
    "mean_optimal_lrp",
    "optimal_lrp",
]

#: The IoU threshold that makes a detection a true positive (``docs/spec.md`` section 4).
LRP_TAU = 0.5


@dataclass(frozen=True)
class ClassLRP:
    """Optimal LRP of one class, all errors as fractions in [0, 1].

    Attributes:
        olrp: the minimum LRP over score cut-offs; 1 for a class without a true positive.
        loc: mean ``1 - IoU`` of the TPs at the optimum (not divided by ``1 - tau``); NaN
            without TP.
        fp: ``N_FP / (N_TP + N_FP)`` at the optimum (1 - precision); NaN without TP.
        fn: ``N_FN / N_GT`` at the optimum (1 - recall); 1 without TP.
        threshold: the score cut-off that reaches the optimum (the LRP-optimal threshold); NaN
            without TP.
        num_gt: non-ignored ground truths of the class.
        num_tp: true positives at the optimum (0 without TP).
        num_fp: false positives at the optimum (0 without TP).
    """

    olrp: float
    loc: float
    fp: float
    fn: float
    threshold: float
    num_gt: int
    num_tp: int
    num_fp: int

    @property
    def has_tp(self) -> bool:
        """Whether the optimum has a true positive (``loc`` and ``fp`` are defined)."""
        return self.num_tp > 0


@dataclass(frozen=True)
class LRPCurve:
    """LRP at every distinct score cut-off of one class, highest cut-off first (``C`` entries).

    Attributes:
        thresholds: ``[C]`` the cut-offs (distinct scores, descending).
        lrp: ``[C]`` the LRP error at each cut-off.
        num_tp: ``[C]`` true positives kept.
        num_fp: ``[C]`` false positives kept.
        loc_sum: ``[C]`` ``sum_TP (1 - IoU)`` over the kept true positives.
        num_gt: non-ignored ground truths of the class.
    """

    thresholds: np.ndarray
    lrp: np.ndarray
    num_tp: np.ndarray
    num_fp: np.ndarray
    loc_sum: np.ndarray
    num_gt: int


def lrp_error(tp_ious: ArrayLike, num_fp: int, num_gt: int, tau: float = LRP_TAU) -> float:
    """LRP error of one set of detections: ``[sum (1-IoU)/(1-tau) + N_FP + N_FN] / (N_GT + N_FP)``.

    Args:
        tp_ious: ``[N_TP]`` IoUs of the true positives, each in ``[tau, 1]``.
        num_fp: number of false positives.
        num_gt: number of (non-ignored) ground truths, at least ``N_TP`` and at least 1.
        tau: the TP IoU threshold, in [0, 1).
    """
    ious = _as_1d_float(tp_ious, "tp_ious")
    _check_tau(tau)
    num_tp = len(ious)
    if num_fp < 0:
        raise ValueError(f"num_fp must be >= 0, got {num_fp}")
    _check_num_gt(num_gt, num_tp)
    _check_tp_ious(ious, tau)
    loc = float(np.sum(1.0 - np.minimum(ious, 1.0)))
    return (loc / (1.0 - tau) + num_fp + (num_gt - num_tp)) / (num_gt + num_fp)


def lrp_curve(
    scores: ArrayLike, ious: ArrayLike, is_tp: ArrayLike, num_gt: int, tau: float = LRP_TAU
) -> LRPCurve:
    """LRP error at every distinct score cut-off of one class.

    Args:
        scores: ``[D]`` detection confidences (the non-ignored detections of the class, over all
            images).
        ious: ``[D]`` IoU of each detection with the ground truth it was matched to; read only
            where ``is_tp`` (give anything, e.g. 0, for a false positive).
        is_tp: ``[D]`` bool, whether the detection was matched (a true positive at ``tau``).
        num_gt: non-ignored ground truths of the class (>= 1, >= the number of TPs).
        tau: the IoU threshold the matching used.

    Returns:
        An :class:`LRPCurve` with one entry per distinct score, highest first; empty when ``D = 0``.
    """
    scores_np = _as_1d_float(scores, "scores")
    ious_np = _as_1d_float(ious, "ious")
    tp_np = np.asarray(is_tp)
    if tp_np.ndim != 1 or tp_np.dtype != np.bool_:
        raise ValueError(
            f"is_tp must be a 1-D bool array, got dtype {tp_np.dtype} shape {tp_np.shape}"
        )
    if not (len(scores_np) == len(ious_np) == len(tp_np)):
        raise ValueError(
            f"scores, ious and is_tp must have one entry per detection; got lengths "
            f"{len(scores_np)}, {len(ious_np)}, {len(tp_np)}"
        )
    if not np.all(np.isfinite(scores_np)):
        raise ValueError("scores must be finite")
    _check_tau(tau)
    _check_num_gt(num_gt, int(tp_np.sum()))
    _check_tp_ious(ious_np[tp_np], tau)

    # Stable sort (as COCO's mergesort) so that equal inputs always give the same curve.
    order = np.argsort(-scores_np, kind="mergesort")
    sorted_scores = scores_np[order]
    tp_sorted = tp_np[order]
    tp_cum = np.cumsum(tp_sorted)
    fp_cum = np.cumsum(~tp_sorted)
    loc_cum = np.cumsum(np.where(tp_sorted, 1.0 - np.minimum(ious_np[order], 1.0), 0.0))
    # A cut-off keeps every detection tied at its score: the last position of each run of ties.
    last_of_run = np.ones(len(sorted_scores), dtype=bool)
    last_of_run[:-1] = sorted_scores[:-1] != sorted_scores[1:]
    num_tp = tp_cum[last_of_run]
    num_fp = fp_cum[last_of_run]
    loc_sum = loc_cum[last_of_run]
    num_fn = num_gt - num_tp
    lrp = (loc_sum / (1.0 - tau) + num_fp + num_fn) / (num_gt + num_fp)
    return LRPCurve(
        thresholds=sorted_scores[last_of_run],
        lrp=lrp,
        num_tp=num_tp,
        num_fp=num_fp,
        loc_sum=loc_sum,
        num_gt=num_gt,
    )


def optimal_lrp(
    scores: ArrayLike, ious: ArrayLike, is_tp: ArrayLike, num_gt: int, tau: float = LRP_TAU
) -> ClassLRP:
    """Optimal LRP of one class and its components at the optimal cut-off (module docstring).

    Args: as :func:`lrp_curve`.

    Returns:
        A :class:`ClassLRP`; ``olrp = 1``, ``fn = 1`` and NaN ``loc``, ``fp``, ``threshold``
        when no detection is a true positive (including ``D = 0``).
    """
    curve = lrp_curve(scores, ious, is_tp, num_gt, tau)
    if len(curve.lrp) == 0 or curve.num_tp[-1] == 0:
        nan = math.nan
        return ClassLRP(1.0, nan, nan, 1.0, nan, num_gt=num_gt, num_tp=0, num_fp=0)
    # A cut-off without TP scores exactly 1, the largest LRP possible, so leaving those out never
    # changes the minimum; it keeps the components defined when the minimum itself is 1.
    lrp = np.where(curve.num_tp > 0, curve.lrp, np.inf)
    best = int(np.argmin(lrp))  # first minimum: the highest cut-off among equal minima
    tp = int(curve.num_tp[best])
    fp = int(curve.num_fp[best])
    return ClassLRP(
        olrp=float(curve.lrp[best]),
        loc=float(curve.loc_sum[best]) / tp,
        fp=fp / (tp + fp),
        fn=(num_gt - tp) / num_gt,
        threshold=float(curve.thresholds[best]),
        num_gt=num_gt,
        num_tp=tp,
        num_fp=fp,
    )


def mean_optimal_lrp(per_class: Iterable[ClassLRP]) -> dict[str, float]:
    """Class-averaged optimal LRP and components, as fractions in [0, 1].

    ``oLRP`` and ``oLRP_FN`` average over every class given; ``oLRP_loc`` and ``oLRP_FP`` over
    the classes whose optimum has a true positive (the reference's convention), and are NaN only
    when no class has one (then ``oLRP = oLRP_FN = 1``).

    Raises:
        ValueError: for an empty collection (oLRP is undefined without a class to evaluate).
    """
    classes = list(per_class)
    if not classes:
        raise ValueError(
            "no class to average: oLRP needs at least one class with a non-ignored ground truth"
        )
    with_tp = [c for c in classes if c.has_tp]
    return {
        "oLRP": float(np.mean([c.olrp for c in classes])),
        "oLRP_loc": float(np.mean([c.loc for c in with_tp])) if with_tp else math.nan,
        "oLRP_FP": float(np.mean([c.fp for c in with_tp])) if with_tp else math.nan,
        "oLRP_FN": float(np.mean([c.fn for c in classes])),
    }


def _as_1d_float(values: ArrayLike, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one entry per detection), got shape {array.shape}")
    return array


def _check_tau(tau: float) -> None:
    if not 0.0 <= tau < 1.0:
        raise ValueError(f"tau must lie in [0, 1), got {tau}")


def _check_num_gt(num_gt: int, num_tp: int) -> None:
    if num_gt < 1:
        raise ValueError(
            f"num_gt must be >= 1 (LRP is undefined for a class without GT), got {num_gt}"
        )
    if num_tp > num_gt:
        raise ValueError(f"{num_tp} true positives but only {num_gt} ground truths")


#: Rounding slack for IoUs computed in floating point (e.g. 1.0000000000000004 for equal boxes).
_IOU_SLACK = 1e-9


def _check_tp_ious(tp_ious: np.ndarray, tau: float) -> None:
    bad = ~((tp_ious >= tau - _IOU_SLACK) & (tp_ious <= 1.0 + _IOU_SLACK))
    if bool(bad.any()):
        value = float(tp_ious[np.flatnonzero(bad)[0]])
        raise ValueError(
            f"a true positive has IoU {value}, outside [tau={tau}, 1]; a TP needs IoU >= tau"
        )
