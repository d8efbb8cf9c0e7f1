"""The assignment benchmark: its baseline is exact, and the command runs end to end."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import random_anchors, random_instances

from gmaiou import gmaiou
from gmaiou.paper.benchmarks.assign import (
    EXTRA_RATIOS,
    FLOOR,
    GOALS,
    AssignBenchmark,
    _OverlapsGiven,
    format_sittings,
    format_thread_comparison,
    gmaiou_full_image,
    plot_sittings,
    run_assign_benchmark,
    run_goal_sittings,
    sittings_findings,
    thread_findings,
)
from gmaiou.paper.cli import main


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


def test_goal_sittings_time_only_what_the_goals_compare():
    before = torch.get_num_threads()
    records = run_goal_sittings(
        2, sizes=(64, 80), num_images=2, repeats=1, dataset="synthetic", progress=False, threads=2
    )
    assert torch.get_num_threads() == before
    assert len(records) == 2 and all(r.threads == 2 for r in records)
    needed = {name for num, den, _, _ in GOALS.values() for name in (num, den)}
    for i, record in enumerate(records):
        assert {r["method"] for r in record.rows} == needed
        assert {(r["size"], r["sitting"]) for r in record.rows} == {(64, i), (80, i)}
        assert [(row["dataset"], row["size"]) for row in record.goal_ratios()] == [
            ("synthetic", 64),
            ("synthetic", 80),
        ]
    with pytest.raises(ValueError, match="sittings must be at least 1"):
        run_goal_sittings(0)
    with pytest.raises(ValueError, match="unknown dataset 'voc'"):
        run_goal_sittings(1, dataset="voc")


def test_sittings_table_and_findings_give_median_range_and_sittings_met():
    runs = [
        _fake_run(2, {400: 1.05, 550: 0.95}),
        _fake_run(2, {400: 1.15, 550: 1.0}),
        _fake_run(2, {400: 1.08, 550: 0.9}),
    ]
    lines = format_sittings(runs).splitlines()
    assert lines[0].startswith("| dataset | size | torch threads | sittings | ATSS GmaIoU / ATSS")
    assert [line.split(" | ")[1:5] for line in lines[2:]] == [
        ["400", "2", "3", "1.08 (1.05-1.15), met in 2/3"],
        ["550", "2", "3", "0.95 (0.90-1.00), met in 3/3"],
    ]
    assert lines[2].endswith("| 20.00, met in 3/3 | 2.00, met in 3/3 |")  # ranges of one value
    findings = sittings_findings(runs)
    assert findings[0] == (
        "coco, ATSS GmaIoU / ATSS IoU (goal <= 1.1), 3 sittings with 2 torch threads: "
        "not met in every sitting; 400 px: met in 2 of 3 (median 1.08, 1.05-1.15); "
        "550 px: met in 3 of 3 (median 0.95, 0.90-1.00)."
    )
    assert findings[1].startswith(
        "coco, full-image / Alg. 1 (goal >= 15), 3 sittings with 2 torch threads: "
        "met in every sitting at every size; "
    )
    assert len(findings) == len(GOALS)
    # A range that two decimals would round onto the goal keeps a third.
    near = [_fake_run(1, {400: 1.104}), _fake_run(1, {400: 1.096})]
    assert "1.10 (1.096-1.104), met in 1/2" in format_sittings(near)


def test_bench_assign_sittings_command(tmp_path, capsys):
    out, md = tmp_path / "sittings.json", tmp_path / "sittings.md"
    args = ["bench", "assign", "--profile", "smoke", "--sizes", "64", "--images", "1"]
    args += ["--datasets", "synthetic", "--sittings", "2", "--out", str(out), "--markdown", str(md)]
    assert main(args) == 0
    data = json.loads(out.read_text())
    assert len(data["sittings"]) == 2 and data["sittings"][1]["rows"][0]["sitting"] == 1
    printed = capsys.readouterr().out
    assert "| synthetic | 64 | 1 | 2 |" in printed and "met in" in printed
    assert "2 sittings with 1 torch thread" in md.read_text()


def test_plot_sittings_draws_each_goal_with_its_line():
    import matplotlib

    matplotlib.use("Agg")
    runs = [_fake_run(2, {400: 1.05, 550: 0.95}), _fake_run(2, {400: 1.15, 550: 1.0})]
    fig = plot_sittings(runs)
    axes = fig.axes
    assert len(axes) == len(GOALS)
    for ax, (_, _, _, goal) in zip(axes, GOALS.values()):
        assert [t.get_text() for t in ax.get_xticklabels()] == ["400 px", "550 px"]
        assert any(list(line.get_ydata()) == [goal, goal] for line in ax.get_lines())
    dots = [line for line in axes[0].get_lines() if line.get_marker() == "o"]
    assert sorted(dots[0].get_ydata()) == pytest.approx([1.05, 1.15])
    with pytest.raises(ValueError, match="no sitting to plot"):
        plot_sittings([])
