"""GT MOB ratios and dataset statistics (:mod:`gmaiou.data.stats`, ``gmaiou data stats``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import write_l_dataset

from gmaiou.cli import main
from gmaiou.data import CocoInstances, generate
from gmaiou.data.stats import (
    GT_COLUMNS,
    SIZE_RANGES,
    dataset_statistics,
    gt_mob_ratios,
    mob_summary,
    size_name,
    statistics_markdown,
)


@pytest.fixture(scope="module")
def l_dataset(tmp_path_factory) -> CocoInstances:
    return CocoInstances.from_root(write_l_dataset(tmp_path_factory.mktemp("stats") / "l"), "val")


def test_size_names_follow_coco_ranges():
    assert [name for name, _, _ in SIZE_RANGES] == ["small", "medium", "large"]
    assert size_name(0) == size_name(1023) == "small"
    assert size_name(1024) == size_name(9215) == "medium"
    assert size_name(9216) == "large"
    with pytest.raises(ValueError, match="area must be >= 0, got -1"):
        size_name(-1)


def test_mob_summary_hand_computed():
    s = mob_summary(np.array([0.2, 0.4, 0.6, 0.8]))
    assert s == {
        "count": 4,
        "share_below": 0.5,
        "threshold": 0.5,
        "mean": pytest.approx(0.5),
        "median": pytest.approx(0.5),
    }
    assert mob_summary(torch.tensor([0.5, 0.7]))["share_below"] == 0.0
    assert mob_summary([0.1, 0.3, 0.9], threshold=0.3)["share_below"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="no MOB ratios"):
        mob_summary(np.array([]))


def test_gt_mob_ratios_are_plain_rows_hand_computed(l_dataset):
    rows = gt_mob_ratios(l_dataset)
    assert [tuple(row) for row in rows] == [GT_COLUMNS, GT_COLUMNS]
    assert [row["class_name"] for row in rows] == ["ell", "box"]
    assert [row["label"] for row in rows] == [0, 1]
    assert [row["mob"] for row in rows] == pytest.approx([1500 / 6400, 1.0])
    assert [row["area"] for row in rows] == [1500, 200]
    assert [row["box_area"] for row in rows] == [6400.0, 200.0]
    assert [row["size"] for row in rows] == ["medium", "small"]
    assert gt_mob_ratios(l_dataset, max_images=0) == []


def test_dataset_statistics_and_markdown_hand_computed(l_dataset):
    stats = dataset_statistics(l_dataset)
    assert stats["images"] == 1 and stats["instances"] == 2
    assert stats["size_shares"] == {"small": 0.5, "medium": 0.5, "large": 0.0}
    assert stats["mob"]["share_below"] == 0.5
    assert stats["mob"]["mean"] == pytest.approx((1500 / 6400 + 1.0) / 2)
    assert stats["classes"] == [
        {
            "name": "ell",
            "instances": 1,
            "share": 0.5,
            "size_shares": {"small": 0.0, "medium": 1.0, "large": 0.0},
            "mob_mean": pytest.approx(1500 / 6400),
            "mob_share_below": 1.0,
        },
        {
            "name": "box",
            "instances": 1,
            "share": 0.5,
            "size_shares": {"small": 1.0, "medium": 0.0, "large": 0.0},
            "mob_mean": 1.0,
            "mob_share_below": 0.0,
        },
    ]
    assert json.loads(json.dumps(stats)) == stats  # plain numbers only
    assert statistics_markdown(stats).splitlines() == [
        "| class | instances | share | small | medium | large | mean MOB | MOB < 0.5 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        "| ell | 1 | 50.0% | 0.0% | 100.0% | 0.0% | 0.23 | 100.0% |",
        "| box | 1 | 50.0% | 100.0% | 0.0% | 0.0% | 1.00 | 0.0% |",
        "| **all** | 2 | 100% | 50.0% | 50.0% | 0.0% | 0.62 | 50.0% |",
    ]
    with pytest.raises(ValueError, match="no ground-truth instances in its first 0 images"):
        dataset_statistics(l_dataset, max_images=0)


def test_data_stats_command_prints_the_table_and_writes_json(tmp_path, capsys):
    root = generate(tmp_path / "ds", 8, 128, seed=1, progress=False)
    out = tmp_path / "stats.json"
    assert main(["data", "stats", "--root", str(root), "--split", "train", "--out", str(out)]) == 0
    stats = dataset_statistics(CocoInstances.from_root(root, "train"))
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == f"{root} (train): 6 images, {stats['instances']} instances"
    assert "\n".join(printed[2:-1]) == statistics_markdown(stats)
    assert printed[-1] == f"wrote {out}"
    assert json.loads(out.read_text()) == stats
    assert stats["instances"] == sum(c["instances"] for c in stats["classes"])
