"""figures/timings/: the questions folded from the benchmarks' records, the same bytes each time."""

from __future__ import annotations

import json

import matplotlib
import pytest

from gmaiou.paper.benchmarks.assign import AssignBenchmark, assignment_record
from gmaiou.paper.benchmarks.timings import QUESTIONS, refresh

matplotlib.use("Agg")


def _assign_run(threads: int, device_type: str = "cpu") -> AssignBenchmark:
    device = "A CPU (1 threads)" if device_type == "cpu" else "GPU X"
    run = AssignBenchmark(device, "x", threads, 1, device_type=device_type)
    times = {
        "box IoU matrix": 1.0,
        "GmaIoU matrix, full-image tables (public maIoU)": 40.0,
        "GmaIoU matrix, Alg. 1 (ours)": 2.0,
        "ATSS IoU": 2.0,
        "ATSS GmaIoU (P=M)": 2.0 + threads / 10,
    }
    run.rows = [
        {"dataset": "coco", "size": size, "method": m, "ms_per_image": t * size / 400}
        for size in (400, 550)
        for m, t in times.items()
    ]
    return run


def _speed_record(device_type: str, scale: str) -> dict:
    rows = [
        {
            "key": key,
            "model": model,
            "config": f"{key}-r18-160",
            "weights": "random",
            "anchors": anchors,
            "network_ms_per_image": net,
            "post_ms_per_image": 5.0,
            "total_ms_per_image": net + 5.0,
            "fps": 1000 / (net + 5.0),
            "detections_per_image": 10.0,
            "train_s_per_iter": net / 100,
        }
        for key, model, anchors, net in (
            ("yolact-fixed", "YOLACT (fixed IoU)", 300, 40.0),
            ("yolact-atss-gmaiou", "ATSS-YOLACT (GmaIoU)", 100, 35.0),
        )
    ]
    settings = {"scale": scale, "backbone": "r18", "sizes": [160], "train": True}
    settings |= {"batch_size": 2, "train_iters": 3, "warmup": 1, "infer_iters": 4}
    return {
        "settings": settings,
        "device": "A CPU (2 threads)" if device_type == "cpu" else "GPU X",
        "device_type": device_type,
        "threads": 2,
        "cpu_affinity": [0, 1],
        "torch": "x",
        "precision": "float32",
        "scales": [{"size": 160, "data": "/d/synth", "models": rows}],
    }


def _inference_record(device_type: str) -> dict:
    trained = [
        {
            "model": "YOLACT (fixed IoU)",
            "config": "yolact-fixed-r18-160",
            "anchors": 300,
            "data": "synth",
            "images": 10,
            "network_ms_per_image": 40.0,
            "post_ms_per_image": 5.0,
            "post_full_upsampling_ms_per_image": 4.0,
            "images_per_s": 1000 / 45,
            "images_per_s_full_upsampling": 1000 / 44,
            "detections_per_image": 10.0,
            "mask_ap": 25.0,
            "mask_ap_full_upsampling": 25.0,
            "box_ap": 30.0,
        }
    ]
    device = "A CPU (2 threads)" if device_type == "cpu" else "GPU X"
    return {"device": device, "device_type": device_type, "torch": "x", "split": "val",
            "trained": trained}  # fmt: skip


@pytest.fixture
def records(tmp_path, monkeypatch):
    """A figures folder with notebook 03's CPU records (smoke) and committed GPU records."""
    monkeypatch.setenv("GMAIOU_FIGURES", str(tmp_path))
    smoke, committed = tmp_path / "smoke" / "timings", tmp_path / "timings"
    for folder in (smoke, committed):
        folder.mkdir(parents=True)
    record = assignment_record([_assign_run(1), _assign_run(2)], "2 images")
    (smoke / "assignment_cost_cpu.json").write_text(json.dumps(record))
    gpu = assignment_record([_assign_run(1, "cuda")])
    (committed / "assignment_cost_cuda.json").write_text(json.dumps(gpu))
    for name, kind, scale in (
        (smoke / "model_speed_recipe_cpu.json", "cpu", "cpu"),
        (committed / "model_speed_paper_cuda.json", "cuda", "paper"),
        (committed / "model_speed_paper_cpu.json", "cpu", "paper"),  # the default profile's
    ):
        name.write_text(json.dumps(_speed_record(kind, scale)))
    for kind in ("cpu", "cuda"):
        path = committed / f"trained_inference_{kind}.json"
        path.write_text(json.dumps(_inference_record(kind)))
    return tmp_path


def test_refresh_writes_every_question_from_the_records_and_the_same_bytes_again(records):
    paths = refresh("smoke")
    folder = records / "smoke" / "timings"
    expected = {f"{q}{s}" for q in QUESTIONS for s in (".md", ".png", ".pdf", "_findings.md")}
    assert {p.name for p in paths} == expected and all(p.parent == folder for p in paths)
    first = {p.name: p.read_bytes() for p in paths}
    assert {p.name: p.read_bytes() for p in refresh("smoke")} == first
    cost = (folder / "assignment_cost.md").read_text()
    # this profile's two CPU settings and the committed GPU record, one row each per method
    assert cost.count("| ATSS IoU |") == 3 and "| ATSS IoU | GPU X |" in cost
    assert cost.rstrip().endswith(
        "*profile: smoke · data: 2 images; GPU record assignment_cost_cuda.json*"
    )
    speed = (folder / "model_speed.md").read_text()
    # the smoke CPU record and the GPU one, not the default profile's CPU record
    assert speed.count("| CPU |") == 2 and speed.count("| GPU X |") == 2
    findings = (folder / "trained_inference_findings.md").read_text()
    assert "fps on GPU X" in findings and "on A CPU (2 threads)" in findings


def test_refresh_leaves_questions_without_records_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("GMAIOU_FIGURES", str(tmp_path))
    assert refresh("smoke") == []


def test_each_question_has_a_headline_computed_from_its_records(records):
    from conftest import numbers_in

    from gmaiou.paper.figures import read_headline

    refresh("smoke")
    folder = records / "smoke" / "timings"
    headline = {q: read_headline(folder / f"{q}_findings.md") for q in QUESTIONS}
    # full-image tables 40 ms against Alg. 1's 2 ms at every size and setting; no brute force
    assert numbers_in(headline["assignment_cost"]) == [1, 20.0]
    # 2 CPU runs and 1 GPU run at 2 sizes: every goal met (ATSS ratios 1.05 and 1.1, tables
    # 20x, Alg. 1 2x box IoU); then the goals themselves
    assert numbers_in(headline["assignment_goals"]) == [4, 4] * 3 + [2, 2] * 3 + [
        1.1, 1, 15, 1, 2
    ]  # fmt: skip
    # ATSS-YOLACT: 40 ms against 45 ms in both records (the smoke CPU one and the GPU one)
    assert numbers_in(headline["model_speed"]) == [0.89, 2]
    assert "no record times a GmaIoU model" in headline["trained_inference"]


def test_trained_inference_headline_uses_each_devices_default_assembly():
    from conftest import numbers_in

    from gmaiou.paper.benchmarks.timings import trained_inference_headline

    def row(config, network, post, full, ap):
        return {"config": config, "network_ms_per_image": network, "post_ms_per_image": post,
                "post_full_upsampling_ms_per_image": full, "mask_ap": ap}  # fmt: skip

    cpu = {"device_type": "cpu", "trained": [
        row("yolact-fixed-r18-160", 40.0, 10.0, 99.0, 25.0),
        row("yolact-atss-gmaiou-r18-160", 35.0, 10.0, 99.0, 29.0),  # 45 / 50
        row("gmayolact-atss-gmaiou-r18-160", 80.0, 20.0, 99.0, 31.0),  # 100 / 50
    ]}  # fmt: skip
    gpu = {"device_type": "cuda", "trained": [
        row("yolact-fixed-r18-160", 4.0, 99.0, 1.0, 25.1),
        row("yolact-atss-gmaiou-r18-160", 3.0, 99.0, 1.0, 29.1),  # 4 / 5
    ]}  # fmt: skip
    # ATSS-YOLACT 0.80-0.90x (a range reads as 0.8, -0.9), GmaYOLACT 2.00x; the cpu record's AP
    assert numbers_in(trained_inference_headline({"cpu": cpu, "cuda": gpu})) == [
        0.8, -0.9, 2.0, 29.0, 31.0, 25.0
    ]  # fmt: skip
