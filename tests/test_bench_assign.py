"""The assignment benchmark: its baseline is exact, and the command runs end to end."""

from __future__ import annotations

import json

import torch
from conftest import random_anchors, random_instances

from gmaiou import gmaiou
from gmaiou.benchmarks.assign import gmaiou_full_image, run_assign_benchmark
from gmaiou.cli import main


def test_full_image_baseline_equals_alg1_when_masks_lie_in_their_boxes(rng):
    boxes, masks = random_instances(rng, 6, 64, 64)  # tight boxes: every pixel inside
    anchors = random_anchors(rng, 300, 64, 64)
    for polygon in ("box", "mask"):
        torch.testing.assert_close(
            gmaiou_full_image(boxes, masks, anchors, polygon),
            gmaiou(boxes, masks, anchors, polygon),
        )


def test_benchmark_rows_and_ratios():
    result = run_assign_benchmark(
        sizes=(96,),
        num_images=2,
        bruteforce_images=1,
        repeats=1,
        datasets=("synthetic",),
        progress=False,
    )
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
        ]
    )
    assert code == 0
    data = json.loads(out.read_text())
    assert data["rows"] and data["device"]
    assert "ATSS GmaIoU / ATSS IoU" in capsys.readouterr().out
