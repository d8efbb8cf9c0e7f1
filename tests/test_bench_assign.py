"""The assignment benchmark: its baseline is exact, and the command runs end to end."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import random_anchors, random_instances

from gmaiou import gmaiou
from gmaiou.benchmarks.assign import (
    EXTRA_RATIOS,
    FLOOR,
    GOALS,
    _OverlapsGiven,
    gmaiou_full_image,
    run_assign_benchmark,
)
from gmaiou.cli import main


def test_full_image_baseline_equals_alg1_when_masks_lie_in_their_boxes(rng):
    boxes, masks = random_instances(rng, 6, 64, 64)  # tight boxes: every pixel inside
    anchors = random_anchors(rng, 300, 64, 64)
    for polygon in ("box", "mask"):
        torch.testing.assert_close(
            gmaiou_full_image(boxes, masks, anchors, polygon),
            gmaiou(boxes, masks, anchors, polygon),
        )


def _ms(result, method: str) -> float:
    return next(r["ms_per_image"] for r in result.rows if r["method"] == method)


def test_benchmark_rows_and_ratios():
    result = run_assign_benchmark(
        sizes=(96,),
        num_images=2,
        bruteforce_images=1,
        repeats=1,
        datasets=("synthetic",),
        progress=False,
    )
    assert result.threads == 1  # timed with one thread by default, as in a loader worker
    methods = {r["method"] for r in result.rows}
    assert {
        "ATSS IoU",
        "ATSS GmaIoU (P=M)",
        "GmaIoU matrix, brute force",
        "fixed IoU (YOLACT)",
    } <= methods
    assert all(r["ms_per_image"] > 0 for r in result.rows)
    assert (
        result.ratio("synthetic", 96, "GmaIoU matrix, brute force", "GmaIoU matrix, Alg. 1 (ours)")
        > 1
    )
    (row,) = result.ratios()
    assert (row["dataset"], row["size"]) == ("synthetic", 96)
    for name, (num, den, sense, goal) in GOALS.items():
        assert row[name] == pytest.approx(result.ratio("synthetic", 96, num, den))
        assert row[f"{name} met"] == (row[name] <= goal if sense == "<=" else row[name] >= goal)
    assert set(GOALS) == {"ATSS GmaIoU / ATSS IoU", "full-image / Alg. 1", "Alg. 1 / box IoU"}
    read = [r for r in result.rows if r["method"].startswith("reading every mask once")]
    given = [r for r in result.rows if r["method"].startswith("ATSS with its candidates' overlaps")]
    assert len(read) == len(given) == 1
    assert row[FLOOR] == pytest.approx(
        (given[0]["ms_per_image"] + read[0]["ms_per_image"]) / _ms(result, "ATSS IoU")
    )
    assert set(EXTRA_RATIOS) <= set(row)
    assert result.threads >= 1 and result.cpu_affinity


def test_overlaps_given_assigns_as_atss_iou(rng):
    """The floor's 'ATSS without a measure' does ATSS-IoU's work, less computing the overlaps."""
    from gmaiou.anchors import atss_anchors
    from gmaiou.assigners import ATSSAssigner

    grid = atss_anchors(96)
    images = [random_instances(rng, n, 96, 96) for n in (3, 5)]
    given = _OverlapsGiven()
    given.prepare(grid.anchors, grid.num_level_anchors, images)
    for boxes, masks in images:
        ref = ATSSAssigner(measure="iou").assign(grid, gt_boxes=boxes)
        got = given.assign(grid, gt_boxes=boxes, gt_masks=masks)
        assert torch.equal(got.gt_inds, ref.gt_inds)
        assert torch.equal(got.max_overlaps, ref.max_overlaps)


def test_bench_assign_command(tmp_path, capsys):
    out = tmp_path / "assign.json"
    code = main(
        [
            "bench",
            "assign",
            "--profile",
            "smoke",
            "--sizes",
            "96",
            "--images",
            "2",
            "--datasets",
            "synthetic",
            "--out",
            str(out),
            "--markdown",
            str(tmp_path / "assign.md"),
        ]
    )
    assert code == 0
    data = json.loads(out.read_text())
    assert data["rows"] and data["device"] and data["ratios"][0]["size"] == 96
    printed = capsys.readouterr().out
    assert "ATSS GmaIoU / ATSS IoU" in printed and "torch thread" in printed
    markdown = (tmp_path / "assign.md").read_text()
    assert "| synthetic | 96 |" in markdown and "Alg. 1 / box IoU (goal <= 2)" in markdown


def test_benchmark_sets_its_thread_count_and_restores_it():
    before = torch.get_num_threads()
    result = run_assign_benchmark(
        sizes=(64,), num_images=1, bruteforce_images=0, repeats=1, datasets=("synthetic",),
        progress=False, threads=2,
    )  # fmt: skip
    assert result.threads == 2 and torch.get_num_threads() == before
    with pytest.raises(ValueError, match="threads must be at least 1"):
        run_assign_benchmark(threads=0)
