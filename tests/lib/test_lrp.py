"""Optimal LRP of one class on hand-computed curves, and its class average."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gmaiou.evaluation.lrp import (
    LRP_TAU,
    ClassLRP,
    lrp_curve,
    lrp_error,
    mean_optimal_lrp,
    optimal_lrp,
)

# One class, 3 ground truths, 5 detections (tau = 0.5, so a TP costs (1 - IoU) / 0.5):
#   score 0.9 TP IoU 0.8 | 0.8 TP IoU 0.6 | 0.7 FP | 0.6 TP IoU 0.9 | 0.5 FP (a duplicate)
# cut-off 0.9: TP 1 (loc 0.2), FP 0, FN 2 -> (0.4 + 0 + 2) / 3         = 0.8
# cut-off 0.8: TP 2 (loc 0.6), FP 0, FN 1 -> (1.2 + 0 + 1) / 3         = 0.7333...
# cut-off 0.7: TP 2 (loc 0.6), FP 1, FN 1 -> (1.2 + 1 + 1) / 4         = 0.8
# cut-off 0.6: TP 3 (loc 0.7), FP 1, FN 0 -> (1.4 + 1 + 0) / 4         = 0.6   <- optimum
# cut-off 0.5: TP 3 (loc 0.7), FP 2, FN 0 -> (1.4 + 2 + 0) / 5         = 0.68
# components at 0.6: loc = 0.7 / 3 (mean 1 - IoU, not divided by 1 - tau), FP = 1/4, FN = 0/3.
HAND_SCORES = [0.7, 0.9, 0.5, 0.8, 0.6]  # deliberately not sorted
HAND_IOUS = [0.0, 0.8, 0.0, 0.6, 0.9]
HAND_TP = [False, True, False, True, True]


def test_hand_computed_curve():
    curve = lrp_curve(HAND_SCORES, HAND_IOUS, np.array(HAND_TP), num_gt=3)
    np.testing.assert_allclose(curve.thresholds, [0.9, 0.8, 0.7, 0.6, 0.5])
    np.testing.assert_allclose(curve.lrp, [0.8, 2.2 / 3, 0.8, 0.6, 0.68])
    np.testing.assert_array_equal(curve.num_tp, [1, 2, 2, 3, 3])
    np.testing.assert_array_equal(curve.num_fp, [0, 0, 1, 1, 2])
    np.testing.assert_allclose(curve.loc_sum, [0.2, 0.6, 0.6, 0.7, 0.7])


def test_hand_computed_optimum_and_components():
    result = optimal_lrp(HAND_SCORES, HAND_IOUS, np.array(HAND_TP), num_gt=3)
    assert result.olrp == pytest.approx(0.6)
    assert result.loc == pytest.approx(0.7 / 3)
    assert result.fp == pytest.approx(0.25)
    assert result.fn == 0.0
    assert result.threshold == 0.6
    assert (result.num_gt, result.num_tp, result.num_fp) == (3, 3, 1)


def test_lrp_error_single_cutoff():
    # 2 TPs (IoU 0.75, 1.0), 1 FP, 4 GTs: (0.25 / 0.5 + 1 + 2) / (4 + 1) = 3.5 / 5
    assert lrp_error([0.75, 1.0], num_fp=1, num_gt=4) == pytest.approx(0.7)
    assert lrp_error([], num_fp=0, num_gt=2) == 1.0
    assert lrp_error([], num_fp=3, num_gt=2) == 1.0
    assert lrp_error([1.0, 1.0], num_fp=0, num_gt=2) == 0.0
    # other tau: (0.1 / 0.75 + 0 + 1) / 2
    assert lrp_error([0.9], num_fp=0, num_gt=2, tau=0.25) == pytest.approx((0.1 / 0.75 + 1) / 2)


def test_perfect_detector_scores_zero():
    result = optimal_lrp([0.9, 0.3], [1.0, 1.0], np.array([True, True]), num_gt=2)
    assert (result.olrp, result.loc, result.fp, result.fn) == (0.0, 0.0, 0.0, 0.0)
    assert result.threshold == 0.3


def test_perfect_detector_then_false_positives_stops_before_them():
    # cut-off 0.8: LRP 0; cut-off 0.1 adds an FP: 1 / 3.
    result = optimal_lrp([0.9, 0.8, 0.1], [1.0, 1.0, 0.0], np.array([True, True, False]), num_gt=2)
    assert result.olrp == 0.0 and result.threshold == 0.8 and result.num_fp == 0


@pytest.mark.parametrize(
    "scores, is_tp",
    [([], []), ([0.9, 0.2], [False, False])],
    ids=["no-detections", "only-false-positives"],
)
def test_class_without_true_positive_scores_one(scores, is_tp):
    result = optimal_lrp(scores, np.zeros(len(scores)), np.array(is_tp, dtype=bool), num_gt=3)
    assert result.olrp == 1.0 and result.fn == 1.0
    assert math.isnan(result.loc) and math.isnan(result.fp) and math.isnan(result.threshold)
    assert not result.has_tp and result.num_tp == 0


def test_tied_scores_are_one_cutoff():
    # A TP and an FP tied at 0.5: the only cut-off keeps both, (0 + 1 + 0) / 2 = 0.5, whatever the
    # order. (Cutting between them, as a per-detection sweep would, gives 0 -- no threshold can.)
    for is_tp in ([True, False], [False, True]):
        ious = [1.0 if t else 0.0 for t in is_tp]
        result = optimal_lrp([0.5, 0.5], ious, np.array(is_tp), num_gt=1)
        assert result.olrp == pytest.approx(0.5)
        assert result.fp == pytest.approx(0.5)
    curve = lrp_curve([0.5, 0.5, 0.4], [1.0, 0.0, 1.0], np.array([True, False, True]), num_gt=2)
    np.testing.assert_allclose(curve.thresholds, [0.5, 0.4])


def test_minimum_of_one_with_true_positives_keeps_components():
    # Every TP at IoU exactly tau: every cut-off scores 1; the FP-only first cut-off is skipped.
    result = optimal_lrp([0.9, 0.8], [0.0, 0.5], np.array([False, True]), num_gt=1)
    assert result.olrp == pytest.approx(1.0)
    assert (
        result.num_tp == 1 and result.loc == pytest.approx(0.5) and result.fp == pytest.approx(0.5)
    )


def test_iou_rounding_above_one_is_clamped():
    result = optimal_lrp([0.9], [1.0 + 4e-16], np.array([True]), num_gt=1)
    assert result.olrp == 0.0 and result.loc == 0.0


def test_mean_over_classes():
    a = optimal_lrp(HAND_SCORES, HAND_IOUS, np.array(HAND_TP), num_gt=3)  # 0.6
    perfect = optimal_lrp([1.0], [1.0], np.array([True]), num_gt=1)  # 0
    missed = optimal_lrp([], [], np.array([], dtype=bool), num_gt=2)  # 1, no TP
    summary = mean_optimal_lrp([a, perfect, missed])
    assert summary["oLRP"] == pytest.approx((0.6 + 0 + 1) / 3)
    assert summary["oLRP_FN"] == pytest.approx((0 + 0 + 1) / 3)
    # loc and FP average over the classes with a TP only
    assert summary["oLRP_loc"] == pytest.approx((0.7 / 3 + 0) / 2)
    assert summary["oLRP_FP"] == pytest.approx((0.25 + 0) / 2)


def test_mean_without_any_true_positive():
    missed = optimal_lrp([], [], np.array([], dtype=bool), num_gt=2)
    summary = mean_optimal_lrp([missed, missed])
    assert summary["oLRP"] == 1.0 and summary["oLRP_FN"] == 1.0
    assert math.isnan(summary["oLRP_loc"]) and math.isnan(summary["oLRP_FP"])


def test_mean_of_nothing_raises():
    with pytest.raises(ValueError, match="no class"):
        mean_optimal_lrp([])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            dict(scores=[0.5, 0.4], ious=[1.0], is_tp=np.array([True, True]), num_gt=2),
            "one entry per",
        ),
        (dict(scores=[0.5], ious=[1.0], is_tp=np.array([True]), num_gt=0), "num_gt must be >= 1"),
        (
            dict(scores=[0.5, 0.4], ious=[1.0, 1.0], is_tp=np.array([True, True]), num_gt=1),
            "only 1",
        ),
        (dict(scores=[0.5], ious=[0.3], is_tp=np.array([True]), num_gt=1), "IoU 0.3"),
        (dict(scores=[0.5], ious=[1.0], is_tp=np.array([1]), num_gt=1), "bool"),
        (dict(scores=[float("nan")], ious=[1.0], is_tp=np.array([True]), num_gt=1), "finite"),
        (dict(scores=[[0.5]], ious=[1.0], is_tp=np.array([True]), num_gt=1), "1-D"),
        (dict(scores=[0.5], ious=[1.0], is_tp=np.array([True]), num_gt=1, tau=1.0), "tau"),
    ],
)
def test_bad_inputs_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        optimal_lrp(**kwargs)


def _brute_force_olrp(scores, ious, is_tp, num_gt):
    """min over distinct score thresholds of lrp_error on the detections kept."""
    best = 1.0
    for s in set(scores):
        kept = scores >= s
        best = min(best, lrp_error(ious[kept & is_tp], int((kept & ~is_tp).sum()), num_gt))
    return best


@settings(max_examples=60, deadline=None)
@given(
    data=st.lists(
        st.tuples(
            st.sampled_from([0.1, 0.2, 0.3, 0.5, 0.7, 0.9]),  # few values: ties are common
            st.floats(0.5, 1.0),
            st.booleans(),
        ),
        max_size=12,
    ),
    extra_gt=st.integers(0, 3),
)
def test_matches_brute_force_and_components_recompose(data, extra_gt):
    scores = np.array([d[0] for d in data], dtype=float)
    ious = np.array([d[1] for d in data], dtype=float)
    is_tp = np.array([d[2] for d in data], dtype=bool)
    num_gt = int(is_tp.sum()) + extra_gt
    if num_gt == 0:
        num_gt = 1
    result = optimal_lrp(scores, ious, is_tp, num_gt)
    assert isinstance(result, ClassLRP)
    assert 0.0 <= result.olrp <= 1.0
    assert result.olrp == pytest.approx(_brute_force_olrp(scores, ious, is_tp, num_gt))
    if result.has_tp:
        tp, fp = result.num_tp, result.num_fp
        recomposed = (tp * result.loc / (1 - LRP_TAU) + fp + (num_gt - tp)) / (num_gt + fp)
        assert result.olrp == pytest.approx(recomposed)
        assert result.fn == pytest.approx(1 - tp / num_gt)
        assert result.fp == pytest.approx(fp / (tp + fp))
        assert 0.0 <= result.loc <= 1 - LRP_TAU
    else:
        assert result.olrp == 1.0
