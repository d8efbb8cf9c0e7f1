"""The CPU recipe's learning curve and search: their tables and the numbers their findings state."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import numbers_in

from gmaiou.paper.experiments.recipe import (
    CURVE_COLUMNS,
    SEARCH_COLUMNS,
    curve_findings,
    curve_points,
    recipe_search_findings,
    recipe_search_table,
    recipe_seeds,
    seeds_findings,
)
from gmaiou.paper.experiments.runner import RunSpec, SyntheticData
from gmaiou.paper.experiments.stats import records_frame


def _curve_record(label, variant, device, points):
    return {
        "label": label,
        "variant": variant,
        "device_name": device,
        "curve": [
            {"iteration": it, "train_seconds": 60 * m, "segm": {"AP": ap}, "bbox": {"AP": ap + 5}}
            for it, m, ap in points
        ],
    }


def test_curve_points_are_one_row_per_point_in_the_records_order():
    records = [
        _curve_record("A", "", "cpu", [(10, 1.0, 10.0), (20, 2.004, 20.123)]),
        {"label": "no curve", "device_name": "cpu", "curve": []},
        _curve_record("A", "recipe1", "gpu", [(15, 0.5, 5.0)]),
    ]
    points = curve_points(records)
    assert list(points.columns) == list(CURVE_COLUMNS)
    assert points["run"].tolist() == ["A", "A", "A, recipe1"]
    assert points["minutes"].tolist() == [1.0, 2.0, 0.5]
    assert points["mask AP"].tolist() == [10.0, 20.12, 5.0]
    assert points["box AP"].tolist() == [15.0, 25.12, 10.0]
    assert curve_points([]).empty


@pytest.mark.parametrize(
    ("aps", "short"),
    [((12.0, 31.0, 33.0), None), ((12.0, 27.5, 33.0), 2.5)],  # the last point is past 6 min
)
def test_curve_findings_judge_the_first_run_against_the_target(aps, short):
    first = _curve_record("A", "", "cpu", list(zip((100, 200, 300), (3.0, 5.5, 7.0), aps)))
    other = _curve_record("A", "recipe1", "cpu (1 thread)", [(100, 4.0, 8.0), (200, 8.0, 9.0)])
    lines, headline = curve_findings(curve_points([first, other]), 30.0, 6.0)
    # best within 6 min, the target, [the shortfall], the end: AP, iterations, minutes
    expected = [aps[1], 6, 30] + ([short] if short else []) + [aps[2], 300, 7.0]
    assert numbers_in(lines[0]) == pytest.approx(expected)
    # "recipe1", "1 thread", then best within 6 min and the end
    assert numbers_in(lines[1]) == pytest.approx([1, 1, 8.0, 6, 9.0, 200, 8.0])
    assert len(lines) == 3 and "A, recipe1" in lines[1]  # the devices differ: a third line
    assert numbers_in(headline) == pytest.approx([aps[1], 6, 30] + ([short] if short else []))
    assert ("not met" in headline) == bool(short)
    lines, headline = curve_findings(curve_points([_curve_record("B", "", "x", [(9, 7.0, 1.0)])]))
    assert "not met" in headline and numbers_in(headline) == [6, 30]
    with pytest.raises(ValueError, match="no learning-curve point"):
        curve_findings(curve_points([]))


def _search_record(label, preset, mask_ap, device="cpu", minutes=4.0):
    metrics = {"AP": mask_ap, "oLRP": 100 - mask_ap}
    return {
        "label": label, "preset": preset, "data": {"mix": "uniform"}, "seed": 0,
        "train_seconds": 60 * minutes, "iterations": 1200, "device_name": device,
        "metrics": {"segm": metrics, "bbox": dict(metrics, AP=mask_ap + 10)},
    }  # fmt: skip


def test_recipe_search_table_and_findings():
    records = [
        _search_record("a", "p-iou", 20.004),
        _search_record("b", "p-iou", 36.25, "cpu2", 8.94),
        _search_record("c", "p-gma", 21.3),
        _search_record("d", "p-iou", 0.0),
        _search_record("e", "p-fixed", 0.0),
    ]
    table = recipe_search_table(records_frame(records))
    assert list(table.columns) == list(SEARCH_COLUMNS)
    assert table["label"].tolist() == ["b", "c", "a", "d", "e"]
    assert table["mask AP"].tolist() == [36.25, 21.3, 20.0, 0.0, 0.0]
    lines, headline = recipe_search_findings(table)
    # 5 variants; the best: its mask AP, box AP, iterations, minutes
    assert numbers_in(lines[0]) == pytest.approx([5, 36.25, 46.25, 1200, 8.94, 2])  # "cpu2"
    assert "b" in lines[0] and "p-iou" in lines[0]
    # best per preset, in order of mask AP
    assert numbers_in(lines[1]) == pytest.approx([36.25, 21.3, 0.0])
    assert numbers_in(lines[2]) == [2, 5, 0]  # 2 of the 5 at 0 mask AP
    assert numbers_in(lines[3]) == [1, 2, 4]  # 1 on cpu2, 4 on cpu
    assert numbers_in(headline) == pytest.approx([5, 36.25, 8.94, 2, 0])
    none_zero, one_device = table.iloc[:3], table.iloc[1:3]
    assert "0 mask AP" not in recipe_search_findings(none_zero)[1]
    assert len(recipe_search_findings(one_device)[0]) == 3  # no line on devices
    with pytest.raises(ValueError):
        recipe_search_findings(pd.DataFrame(columns=list(SEARCH_COLUMNS)))
    with pytest.raises(ValueError):
        recipe_search_table(records_frame([]))


def _seed_record(seed, ap, wall, train, threads, mix="uniform", preset="p"):
    return {
        "seed": seed,
        "preset": preset,
        "data": {"mix": mix},
        "metrics": {"segm": {"AP": ap}},
        "wall_seconds": 60 * wall,
        "train_seconds": 60 * train,
        "torch_threads": threads,
        "device_name": f"cpu ({threads} threads)",
        "spec": RunSpec(
            "table2", "default", preset, seed, SyntheticData(1000, 160, 0, mix)
        ).to_dict(),
    }


def test_recipe_seeds_and_their_findings_state_mean_sd_range_and_minutes_per_thread_count():
    records = [
        _seed_record(1, 29.0, 9.5, 9.0, 1),
        _seed_record(0, 31.0, 9.0, 8.5, 1),
        _seed_record(2, 30.0, 6.0, 5.5, 2),
        _seed_record(3, 99.0, 1.0, 1.0, 2, mix="coco"),
        _seed_record(4, 99.0, 1.0, 1.0, 2, preset="other"),
    ]
    seeds = recipe_seeds(records, "p", "uniform")
    assert seeds["seed"].tolist() == [0, 1, 2]
    assert seeds["mask AP"].tolist() == [31.0, 29.0, 30.0]
    assert seeds["minutes with evaluation"].tolist() == [9.0, 9.5, 6.0]
    lines, headline = seeds_findings(seeds, "ATSS IoU")
    # 3 seeds: mean 30.0 ± sd 1.0, range 29.0-31.0; minutes with evaluation at 2 threads
    assert numbers_in(headline) == [3, 30.0, 1.0, 29.0, 31.0, 6.0, 6.0, 2]
    # seeds 0, 1, 2; 30.0 ± 1.0; 29.0 to 31.0; 2 of 3 at 30 or above
    assert numbers_in(lines[0])[:10] == [3, 0, 1, 2, 30.0, 1.0, 29.0, 31.0, 2, 3]
    assert numbers_in(lines[1]) == [1, 1, 0, 1, 9.0, 9.5, 8.5, 9.0]  # 1 thread
    assert numbers_in(lines[2]) == [2, 2, 2, 6.0, 6.0, 5.5, 5.5]  # 2 threads
    with pytest.raises(ValueError, match="no record of preset 'q'"):
        recipe_seeds(records, "q")
