"""``gmaiou-paper bench infer --run``: trained runs timed on their val split, both mask assemblies scored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gmaiou.cli import main as gmaiou_main
from gmaiou.configs import get_config
from gmaiou.data.synthetic import ensure_synthetic
from gmaiou.paper.benchmarks.infer import (
    format_trained_inference,
    model_label,
    plot_trained_inference,
    trained_inference_findings,
)
from gmaiou.paper.cli import main


@pytest.fixture(scope="module")
def data_root() -> Path:
    return ensure_synthetic(num_images=10, size=160, progress=False)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    data = ensure_synthetic(num_images=10, size=160, progress=False)
    out = tmp_path_factory.mktemp("runs") / "fixed"
    args = ["train", "--config", "yolact-fixed-r18-160", "--data", str(data), "--out", str(out)]
    args += ["--epochs", "1", "--batch-size", "2", "--max-iters", "2", "--workers", "0"]
    assert gmaiou_main([*args, "--no-progress"]) == 0  # the library's command
    return out


def test_bench_infer_times_trained_runs_and_scores_both_assemblies(tiny_run, tmp_path, capsys):
    out = tmp_path / "trained_inference_cpu.json"
    args = ["bench", "infer", "--run", str(tiny_run), "--run", str(tiny_run / "checkpoint.pt")]
    args += ["--device", "cpu", "--eval-images", "3", "--warmup", "1", "--no-progress"]
    assert main([*args, "--out", str(out), "--markdown", str(out.with_suffix(".md"))]) == 0
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


def _trained(device: str, device_type: str, rows: list[tuple]) -> dict:
    """A trained-weights record: (model, config, anchors, network ms, post in box, post whole
    map, mask AP) per model."""
    trained = [
        {
            "model": model,
            "config": config,
            "anchors": anchors,
            "data": "synth",
            "images": 10,
            "network_ms_per_image": net,
            "post_ms_per_image": box,
            "post_full_upsampling_ms_per_image": full,
            "images_per_s": 1000 / (net + box),
            "images_per_s_full_upsampling": 1000 / (net + full),
            "detections_per_image": 10.0,
            "mask_ap": ap,
            "mask_ap_full_upsampling": ap,
            "box_ap": ap + 5,
        }
        for model, config, anchors, net, box, full, ap in rows
    ]
    return {"device": device, "device_type": device_type, "torch": "x", "split": "val",
            "trained": trained}  # fmt: skip


FIXED = ("YOLACT (fixed IoU)", "yolact-fixed-r18-160", 300)
ATSS = ("ATSS-YOLACT (GmaIoU)", "yolact-atss-gmaiou-r18-160", 100)


def test_trained_records_fold_into_one_table_figure_and_findings():
    import matplotlib

    matplotlib.use("Agg")
    records = {
        "cuda_a": _trained("GPU X", "cuda", [(*FIXED, 4.0, 4.0, 1.0, 25.5), (*ATSS, 3.0, 3.0, 1.0, 29.0)]),
        "cpu": _trained("CPU", "cpu", [(*FIXED, 40.0, 5.0, 4.0, 25.0), (*ATSS, 30.0, 6.0, 5.0, 29.0)]),
        "cpu_float16_weights": _trained("CPU", "cpu", [(*FIXED, 41.0, 5.0, 4.0, 25.25)]),
    }  # fmt: skip
    table = format_trained_inference(records).splitlines()
    rows = [line for line in table if line.startswith("| `")]
    # CPU records first; fps at each device's default assembly (in box on the CPU)
    assert rows[0] == (
        "| `cpu` | CPU | YOLACT (fixed IoU) | 300 | 40.0 | 5.0 | 4.0 | 22.22 | 10.0 | 25.00 "
        "| 25.00 | 30.00 |"
    )
    assert rows[3].startswith(
        "| `cuda_a` | GPU X | YOLACT (fixed IoU) | 300 | 4.0 | 4.0 | 1.0 | 200.00 |"
    )
    findings = trained_inference_findings(records)
    assert findings[0] == (
        "`cpu`: ATSS-YOLACT (GmaIoU) takes 0.80x the inference time per image of YOLACT (fixed "
        "IoU) (20% less; network alone 0.75x) with 100 anchors against 300, at 10.0 against "
        "10.0 detections per image; mask AP 29.00 against 25.00. The paper: about 25% less "
        "inference time than YOLACT (fewer anchors; abstract)."
    )
    assert "YOLACT (fixed IoU): 200 fps on GPU X (4.0 ms network) against 22.2 fps on CPU" in (
        " ".join(findings)
    )
    assert findings[-1] == (
        "YOLACT (fixed IoU), float16 copies of the weights on the CPU: mask AP 25.25 against "
        "25.00 with the float32 weights (+0.25)."
    )
    fig = plot_trained_inference(records)
    assert len(fig.axes[0].patches) == 2 + 1 + 2  # a bar per model of each record
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == [
        "cpu",
        "cpu_float16_weights",
        "cuda_a",
    ]
