"""``gmaiou-paper bench infer --run``: trained runs timed on their val split, both mask assemblies scored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gmaiou.configs import get_config
from gmaiou.data.synthetic import ensure_synthetic
from gmaiou.paper.benchmarks.infer import model_label
from gmaiou.paper.cli import main


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    data = ensure_synthetic(num_images=10, size=160, progress=False)
    out = tmp_path_factory.mktemp("runs") / "fixed"
    args = ["train", "--config", "yolact-fixed-r18-160", "--data", str(data), "--out", str(out)]
    args += ["--epochs", "1", "--batch-size", "2", "--max-iters", "2", "--workers", "0"]
    assert main([*args, "--no-progress"]) == 0
    return out


def test_bench_infer_times_trained_runs_and_scores_both_assemblies(tiny_run, tmp_path, capsys):
    out = tmp_path / "table4_inference.json"
    args = ["bench", "infer", "--run", str(tiny_run), "--run", str(tiny_run / "checkpoint.pt")]
    args += ["--device", "cpu", "--eval-images", "3", "--warmup", "1", "--no-progress"]
    assert main([*args, "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["init"] == "trained" and len(record["trained"]) == 2
    for r in record["trained"]:
        assert r["config"] == "yolact-fixed-r18-160" and r["model"] == "YOLACT (fixed IoU)"
        assert 1 <= r["images"] <= 3 and r["anchors"] > 0
        assert r["network_ms_per_image"] > 0 and r["post_ms_per_image"] > 0
        assert r["images_per_s"] == pytest.approx(
            1000 / (r["network_ms_per_image"] + r["post_ms_per_image"])
        )
        # Same network outputs, masks equal up to threshold ties: the mask AP does not move.
        assert abs(r["mask_ap_difference"]) <= 0.1
        assert r["mask_ap_difference"] == pytest.approx(r["mask_ap"] - r["mask_ap_full_upsampling"])
    markdown = out.with_suffix(".md").read_text()
    assert markdown.count("| YOLACT (fixed IoU) |") == 2 and "pinned to core" in markdown
    assert "YOLACT (fixed IoU)" in capsys.readouterr().out


def test_bench_infer_run_errors_are_one_line(tmp_path, capsys):
    assert main(["bench", "infer", "--run", str(tmp_path / "missing"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such run directory or checkpoint" in err[0]


@pytest.mark.parametrize(
    ("name", "label"),
    [
        ("yolact-fixed-r50-550", "YOLACT (fixed IoU)"),
        ("yolact-atss-iou-r50-550", "ATSS-YOLACT (IoU)"),
        ("yolact-atss-gmaiou-r50-550", "ATSS-YOLACT (GmaIoU)"),
        ("gmayolact-atss-iou-r50-550", "GmaYOLACT (ATSS, IoU)"),
    ],
)
def test_model_labels(name, label):
    assert model_label(get_config(name)) == label


def test_bench_infer_writes_ratios(tmp_path, capsys, data_root):
    from gmaiou.paper.cli import main as paper_main

    out = tmp_path / "infer.json"
    args = [
        "bench",
        "infer",
        "--size",
        "96",
        "--iters",
        "1",
        "--train-iters",
        "1",
        "--warmup",
        "0",
        "--train-batches",
        "1",
        "--data",
        str(data_root),
        "--device",
        "cpu",
        "--no-progress",
        "--out",
        str(out),
    ]
    assert paper_main(args) == 0
    printed = capsys.readouterr().out
    assert "ATSS / fixed-IoU time" in printed and "GmaIoU-ATSS / IoU-ATSS" in printed
    record = json.loads(out.read_text())
    inf, tr = record["inference"], record["training"]
    assert inf["fixed"]["anchors"] == 3 * inf["atss"]["anchors"]  # 3 shapes per location vs 1
    for r in (inf["fixed"], inf["atss"]):
        assert r["network_ms_per_image"] > 0 and r["post_ms_per_image"] > 0
        assert r["images_per_s"] == pytest.approx(
            1000 / (r["network_ms_per_image"] + r["post_ms_per_image"])
        )
    assert inf["ratio_total_atss_over_fixed"] == pytest.approx(
        inf["atss"]["total_ms_per_image"] / inf["fixed"]["total_ms_per_image"]
    )
    assert tr["iou"]["config"].startswith("yolact-atss-iou") and tr["gmaiou"]["config"].startswith(
        "yolact-atss-gmaiou"
    )
    assert tr["ratio_iteration_gmaiou_over_iou"] > 0
    assert record["device"]  # the CPU model or GPU name is recorded
