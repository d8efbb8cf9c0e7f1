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
    AssignBenchmark,
    _OverlapsGiven,
    format_thread_comparison,
    gmaiou_full_image,
    run_assign_benchmark,
    thread_findings,
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
    both = [r for r in result.rows if r["method"].startswith("ATSS without a measure, then")]
    assert len(read) == len(given) == len(both) == 1
    # The floor is the two timed in turn, image by image, not their separate times added.
    assert row[FLOOR] == pytest.approx(both[0]["ms_per_image"] / _ms(result, "ATSS IoU"))
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
            "--threads",
            "2",
            "--out",
            str(out),
            "--markdown",
            str(tmp_path / "assign.md"),
        ]
    )
    assert code == 0
    data = json.loads(out.read_text())
    assert data["rows"] and data["device"] and data["ratios"][0]["size"] == 96
    assert data["threads"] == 2
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


def _fake_run(threads: int, atss_ratio: dict[int, float]) -> AssignBenchmark:
    """A record on 'coco' whose ATSS GmaIoU / ATSS IoU is ``atss_ratio[size]``; other goals met."""
    result = AssignBenchmark(device="cpu", torch_version="x", threads=threads, repeats=1)
    for size, ratio in atss_ratio.items():
        times = {
            "ATSS IoU": 2.0,
            "ATSS GmaIoU (P=M)": 2.0 * ratio,
            "GmaIoU matrix, full-image tables (public maIoU)": 40.0,
            "GmaIoU matrix, Alg. 1 (ours)": 2.0,  # 20x faster: met
            "box IoU matrix": 1.0,  # Alg. 1 at 2x: met (the goal is inclusive)
            "GmaIoU matrix, brute force": 400.0,
            "ATSS GmaIoU (P=M), tables prepared": 1.5,
            "ATSS without a measure, then reading every mask once (the two in turn, per image)": 1.6,
        }
        result.rows += [
            {"dataset": "coco", "size": size, "method": m, "ms_per_image": t}
            for m, t in times.items()
        ]
    return result


def test_thread_comparison_and_findings_name_where_each_run_misses():
    one = _fake_run(1, {400: 1.0, 550: 0.9})
    two = _fake_run(2, {400: 1.05, 550: 1.2})
    table = format_thread_comparison([two, one])
    lines = table.splitlines()
    assert lines[0].startswith(
        "| dataset | size | torch threads | ATSS GmaIoU / ATSS IoU (goal <= 1.1)"
    )
    assert [line.split(" | ")[1:4] for line in lines[2:]] == [
        ["400", "1", "1.00 ✓"],
        ["400", "2", "1.05 ✓"],
        ["550", "1", "0.90 ✓"],
        ["550", "2", "1.20 ✗"],
    ]
    assert lines[2].endswith("| 0.80 |")  # the floor: 1.6 / 2.0
    findings = thread_findings([one, two])
    assert findings[0] == (
        "coco, ATSS GmaIoU / ATSS IoU (goal <= 1.1): with 1 torch thread met at every size "
        "(1.00, 0.90 at 400, 550 px); with 2 torch threads missed at 550 px, met at 400 px "
        "(1.05, 1.20 at 400, 550 px)."
    )
    assert "full-image / Alg. 1 (goal >= 15): with 1 torch thread met at every size" in findings[1]
    assert "Alg. 1 / box IoU (goal <= 2): with 1 torch thread met at every size" in findings[2]
    assert findings[3] == (
        "coco, the floor (ATSS without a measure, then reading the masks) / ATSS IoU: "
        "0.80 with 1 torch thread; 0.80 with 2 torch threads."
    )
    assert thread_findings([]) == [] and len(format_thread_comparison([]).splitlines()) == 2


def test_a_ratio_that_rounds_onto_its_goal_shows_a_third_decimal():
    run = _fake_run(1, {400: 1.104, 550: 1.1, 700: 1.0951})
    cells = [line.split(" | ")[3] for line in format_thread_comparison([run]).splitlines()[2:]]
    assert cells == ["1.104 ✗", "1.10 ✓", "1.095 ✓"]
