"""The assignment benchmark: its baseline is exact, and the command runs end to end."""

from __future__ import annotations

import json
from dataclasses import asdict

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
    assignment_cost_findings,
    assignment_goals_findings,
    assignment_record,
    format_assignment_cost,
    format_assignment_goals,
    gmaiou_full_image,
    load_runs,
    plot_assignment_cost,
    plot_assignment_goals,
    run_assign_benchmark,
    run_goal_rounds,
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
    (run,) = json.loads(out.read_text())["runs"]
    assert run["rows"] and run["device"] and run["rows"][0]["size"] == 96
    assert run["threads"] == 2 and run["device_type"] == "cpu"
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


def _fake_run(
    threads: int, atss_ratio: dict[int, float], device_type: str = "cpu", full: bool = True
) -> AssignBenchmark:
    """A record on 'coco' whose ATSS GmaIoU / ATSS IoU is ``atss_ratio[size]``; other goals met.

    ``full``: every method timed, not only those the goals compare (as a round times).
    """
    device = "cpu" if device_type == "cpu" else "GPU X"
    result = AssignBenchmark(device, "x", threads, 1, device_type=device_type)
    for size, ratio in atss_ratio.items():
        times = {
            "ATSS IoU": 2.0,
            "ATSS GmaIoU (P=M)": 2.0 * ratio,
            "GmaIoU matrix, full-image tables (public maIoU)": 40.0,
            "GmaIoU matrix, Alg. 1 (ours)": 2.0,  # 20x faster: met
            "box IoU matrix": 1.0,  # Alg. 1 at 2x: met (the goal is inclusive)
        }
        if full:
            times |= {
                "GmaIoU matrix, brute force": 400.0,
                "ATSS GmaIoU (P=M), tables prepared": 1.5,
                "ATSS without a measure, then reading every mask once (the two in turn, per "
                "image)": 1.6,
            }
        result.rows += [
            {"dataset": "coco", "size": size, "method": m, "ms_per_image": t}
            for m, t in times.items()
        ]
    return result


def test_runs_round_trip_through_one_record_and_older_records_load():
    runs = [_fake_run(1, {400: 1.0}), _fake_run(2, {400: 1.2}, full=False)]
    record = json.loads(json.dumps(assignment_record(runs, "50 images")))
    assert record["benchmark"] == "assign" and record["source"] == "50 images"
    assert load_runs(record) == runs
    # One run as the command wrote it before: its fields and ratios, no device type.
    for device, kind in (
        ("NVIDIA H100 80GB HBM3", "cuda"),
        ("Intel(R) Xeon(R) (2 threads)", "cpu"),
    ):
        old = {**asdict(runs[0]), "device": device, "ratios": runs[0].ratios()}
        del old["device_type"]
        (run,) = load_runs(old)
        assert run.device_type == kind and run.rows == runs[0].rows


def test_settings_are_the_cpu_thread_count_or_the_gpu():
    assert _fake_run(1, {400: 1.0}).setting == "CPU, 1 torch thread"
    assert _fake_run(2, {400: 1.0}).setting == "CPU, 2 torch threads"
    assert _fake_run(1, {400: 1.0}, device_type="cuda").setting == "GPU X"


def test_cost_table_gives_the_median_and_range_of_each_setting():
    runs = [
        _fake_run(1, {400: 1.0, 550: 0.9}),
        _fake_run(2, {400: 1.05, 550: 1.0}),
        _fake_run(2, {400: 1.2, 550: 1.0}, full=False),
        _fake_run(1, {400: 1.25, 550: 1.1}, device_type="cuda"),
    ]
    lines = format_assignment_cost(runs).splitlines()
    assert lines[2:5] == [
        "- CPU, 1 torch thread: cpu, torch x; 1 run of every method",
        "- CPU, 2 torch threads: cpu, torch x; 1 run of every method, 1 run of the methods "
        "the goals compare",
        "- GPU X: torch x; 1 run of every method",
    ]
    table = lines[lines.index("| method | setting | coco 400 | coco 550 |") :]
    rows = {tuple(line.split(" | ")[:2]): line.split(" | ")[2:] for line in table[2:]}
    assert rows[("| ATSS GmaIoU (P=M)", "CPU, 1 torch thread")] == ["2", "1.8 |"]
    # two runs: the median and, as they differ, the lowest-highest
    assert rows[("| ATSS GmaIoU (P=M)", "CPU, 2 torch threads")] == ["2.25 (2.1-2.4)", "2 |"]
    assert rows[("| GmaIoU matrix, brute force", "GPU X")] == ["400", "400 |"]
    assert ("| GmaIoU matrix, brute force", "CPU, 2 torch threads") in rows  # the full run's
    methods = list(dict.fromkeys(key[0] for key in rows))
    assert methods[:2] == ["| ATSS IoU", "| ATSS GmaIoU (P=M)"] and len(methods) == 8


def test_cost_findings_state_each_factor_over_the_sizes():
    runs = [_fake_run(1, {400: 1.0, 550: 0.9}), _fake_run(2, {400: 1.2}, full=False)]
    findings = assignment_cost_findings(runs)
    assert findings == [
        "coco, CPU, 1 torch thread (400, 550 px, medians): Alg. 1 builds the GmaIoU matrix "
        "200x faster than brute force; 20.0x faster than the public maIoU code's full-image "
        "tables; in 2.00x the time of a box IoU matrix of the same pairs; ATSS GmaIoU (P=M) "
        "from raw masks takes 0.90-1.00x the time of ATSS IoU; 0.75x with its tables prepared "
        "in the loader; the floor (ATSS without a measure, then reading the masks) is 0.80x.",
        "coco, CPU, 2 torch threads (400 px, medians): 20.0x faster than the public maIoU "
        "code's full-image tables; in 2.00x the time of a box IoU matrix of the same pairs; "
        "ATSS GmaIoU (P=M) from raw masks takes 1.20x the time of ATSS IoU.",
    ]


def test_goals_table_and_findings_give_median_range_and_runs_met():
    runs = [
        _fake_run(2, {400: 1.05, 550: 0.95}),
        _fake_run(2, {400: 1.15, 550: 1.0}, full=False),
        _fake_run(2, {400: 1.08, 550: 0.9}, full=False),
    ]
    lines = format_assignment_goals(runs).splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("| dataset"))
    assert lines[head].startswith("| dataset | size | setting | runs | ATSS GmaIoU / ATSS IoU")
    assert [line.split(" | ")[1:5] for line in lines[head + 2 :]] == [
        ["400", "CPU, 2 torch threads", "3", "1.08 (1.05-1.15), met in 2/3"],
        ["550", "CPU, 2 torch threads", "3", "0.95 (0.90-1.00), met in 3/3"],
    ]
    # goals with ranges of one value; the other ratios from the one run that timed them
    assert lines[head + 2].endswith("| 20.00, met in 3/3 | 2.00, met in 3/3 | 0.80 | 0.75 | 200 |")
    findings = assignment_goals_findings(runs)
    assert findings[0] == (
        "coco, CPU, 2 torch threads, ATSS GmaIoU / ATSS IoU (goal <= 1.1), 3 runs: "
        "not met in every run at every size; 400 px: met in 2 of 3 (median 1.08, 1.05-1.15); "
        "550 px: met in 3 of 3 (median 0.95, 0.90-1.00)."
    )
    assert findings[1].startswith(
        "coco, CPU, 2 torch threads, full-image / Alg. 1 (goal >= 15), 3 runs: "
        "met in every run at every size; "
    )
    assert findings[3] == (
        "coco, CPU, 2 torch threads, the floor (ATSS without a measure, then reading the "
        "masks) / ATSS IoU: 0.80."
    )
    assert len(findings) == len(GOALS) + 1
    one = assignment_goals_findings([_fake_run(1, {400: 1.05, 550: 1.2})])
    assert one[0] == (
        "coco, CPU, 1 torch thread, ATSS GmaIoU / ATSS IoU (goal <= 1.1), 1 run: met at some "
        "sizes; 400 px: 1.05, met; 550 px: 1.20, missed."
    )
    # A range that two decimals would round onto the goal keeps a third.
    near = [_fake_run(1, {400: 1.104}), _fake_run(1, {400: 1.096})]
    assert "1.10 (1.096-1.104), met in 1/2" in format_assignment_goals(near)


def test_a_ratio_that_rounds_onto_its_goal_shows_a_third_decimal():
    run = _fake_run(1, {400: 1.104, 550: 1.1, 700: 1.0951})
    lines = format_assignment_goals([run]).splitlines()
    cells = [line.split(" | ")[4] for line in lines if line.startswith("| coco")]
    assert cells == ["1.104, met in 0/1", "1.10, met in 1/1", "1.095, met in 1/1"]


def test_goal_rounds_time_only_what_the_goals_compare():
    before = torch.get_num_threads()
    records = run_goal_rounds(
        2, sizes=(64, 80), num_images=2, repeats=1, dataset="synthetic", progress=False, threads=2
    )
    assert torch.get_num_threads() == before
    assert len(records) == 2 and all(r.threads == 2 for r in records)
    needed = {name for num, den, _, _ in GOALS.values() for name in (num, den)}
    for i, record in enumerate(records):
        assert {r["method"] for r in record.rows} == needed
        assert {(r["size"], r["round"]) for r in record.rows} == {(64, i), (80, i)}
        assert [(row["dataset"], row["size"]) for row in record.goal_ratios()] == [
            ("synthetic", 64),
            ("synthetic", 80),
        ]
    with pytest.raises(ValueError, match="rounds must be at least 1"):
        run_goal_rounds(0)
    with pytest.raises(ValueError, match="unknown dataset 'voc'"):
        run_goal_rounds(1, dataset="voc")


def test_bench_assign_rounds_command(tmp_path, capsys):
    out, md = tmp_path / "rounds.json", tmp_path / "rounds.md"
    args = ["bench", "assign", "--profile", "smoke", "--sizes", "64", "--images", "1"]
    args += ["--datasets", "synthetic", "--rounds", "2", "--out", str(out), "--markdown", str(md)]
    assert main(args) == 0
    data = json.loads(out.read_text())
    assert len(data["runs"]) == 2 and data["runs"][1]["rows"][0]["round"] == 1
    printed = capsys.readouterr().out
    assert "| synthetic | 64 | CPU, 1 torch thread | 2 |" in printed and "met in" in printed
    assert "CPU, 1 torch thread, ATSS GmaIoU / ATSS IoU (goal <= 1.1), 2 runs" in md.read_text()


def test_plots_draw_every_setting_and_goal():
    import matplotlib

    matplotlib.use("Agg")
    runs = [
        _fake_run(2, {400: 1.05, 550: 0.95}),
        _fake_run(2, {400: 1.15, 550: 1.0}),
        _fake_run(1, {400: 1.2, 550: 1.1}, device_type="cuda"),
    ]
    fig = plot_assignment_goals(runs)
    axes = fig.axes
    assert len(axes) == len(GOALS)
    for ax, (_, _, _, goal) in zip(axes, GOALS.values()):
        assert [t.get_text() for t in ax.get_xticklabels()] == ["400 px", "550 px"]
        assert any(list(line.get_ydata()) == [goal, goal] for line in ax.get_lines())
    dots = [line for line in axes[0].get_lines() if line.get_marker() == "o"]
    assert sorted(dots[0].get_ydata()) == pytest.approx([1.05, 1.15])
    legend = [t.get_text() for t in axes[0].get_legend().get_texts()]
    assert legend == ["coco, CPU, 2 torch threads", "coco, GPU X", "goal <= 1.1"]
    cost = plot_assignment_cost(runs)
    assert [ax.get_title() for ax in cost.axes] == ["coco, 400 px", "coco, 550 px"]
    assert all(ax.get_xscale() == "log" for ax in cost.axes)
    # one bar per method and setting with a time at that size
    assert len(cost.axes[0].patches) == 8 * 2
    for make in (plot_assignment_goals, plot_assignment_cost):
        with pytest.raises(ValueError, match="no run to plot"):
            make([])
