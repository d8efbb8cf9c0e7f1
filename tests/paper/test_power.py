"""Power of the paired t-test, pairs needed, and Holm's adjustment, against published values."""

from __future__ import annotations

import pytest

from gmaiou.paper.experiments.power import holm_adjust, paired_power, pairs_needed


@pytest.mark.parametrize(
    ("pairs", "effect", "expected"),
    # Cohen's d = delta / sd; reference values of the two-sided 5% paired t-test (G*Power).
    [(5, 1.0, 0.4013), (10, 1.0, 0.8031), (20, 0.5, 0.5645)],
)
def test_power_matches_reference_values(pairs, effect, expected):
    assert paired_power(pairs, effect * 2.0, 2.0) == pytest.approx(expected, abs=2e-3)


def test_power_without_an_effect_is_the_test_size():
    assert paired_power(8, 0.0, 1.0) == pytest.approx(0.05, abs=1e-3)


def test_power_grows_with_pairs_and_is_symmetric_in_the_sign():
    powers = [paired_power(n, 1.0, 1.0) for n in range(2, 12)]
    assert powers == sorted(powers)
    assert paired_power(6, -0.7, 1.0) == pytest.approx(paired_power(6, 0.7, 1.0))


def test_the_pooled_primary_test_is_sized_for_the_planning_sd():
    from gmaiou.paper.experiments.grids import PLANNING_SD, PRIMARY_MIXES, PRIMARY_PAIRS

    assert pairs_needed(1.0, PLANNING_SD) == len(PRIMARY_MIXES) * PRIMARY_PAIRS == 10


def test_pairs_needed_is_the_first_count_that_reaches_the_power():
    n = pairs_needed(1.0, 1.0)
    assert n == 10
    assert paired_power(n - 1, 1.0, 1.0) < 0.8 <= paired_power(n, 1.0, 1.0)


@pytest.mark.parametrize(
    "call",
    [
        lambda: paired_power(1, 1.0, 1.0),
        lambda: paired_power(5, 1.0, 0.0),
        lambda: paired_power(5, float("nan"), 1.0),
        lambda: pairs_needed(1.0, 1.0, power=1.0),
        lambda: pairs_needed(0.01, 10.0, most=5),
        lambda: holm_adjust([0.2, 1.5]),
    ],
)
def test_bad_arguments_raise(call):
    with pytest.raises(ValueError):
        call()


def test_holm_hand_computed():
    # Sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1 -> monotone 0.06.
    assert holm_adjust([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm_adjust([0.5, 0.6]) == [1.0, 1.0]
    assert holm_adjust([]) == []
