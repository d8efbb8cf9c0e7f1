"""``gmaiou-paper bench gpu``: the sequence of GPU checks, its step runner and its findings."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from gmaiou.paper.benchmarks import gpu
from gmaiou.paper.benchmarks.gpu import (
    STEP_LIMITS,
    TRAINED_IN_ITERS,
    TRAINED_IN_SECONDS,
    Step,
    gpu_findings,
    gpu_records,
    gpu_steps,
    run_steps,
    sync_findings,
)
from gmaiou.paper.cli import main
from gmaiou.paper.paths import repo_root


def test_steps_run_in_order_and_write_only_into_the_out_dir(tmp_path):
    steps = gpu_steps(tmp_path, ["runs/a", "runs/b"], device="cuda:1", profile="paper")
    assert [s.name for s in steps] == ["tests", "infer", "assign", "paper", "table5"]
    tests = [a for a in steps[0].argv if a.endswith(".py")]
    assert tests[0].endswith("tests/lib/test_cuda.py") and "-m" in steps[0].argv
    # the loss after assignment under CUDA's sync debug mode ("error")
    assert any(t.endswith("tests/lib/test_loss_syncs.py") for t in tests)
    assert all(Path(t).is_file() for t in tests)
    infer = steps[1].argv
    assert infer[infer.index("--device") + 1] == "cuda:1"
    assert [infer[i + 1] for i, a in enumerate(infer) if a == "--run"] == ["runs/a", "runs/b"]
    outs = []
    for step in steps[1:]:
        out = [step.argv[i + 1] for i, a in enumerate(step.argv) if a in ("--out", "--markdown")]
        assert len(out) == 1 and Path(out[0]).parent == tmp_path  # one JSON record, no table
        outs.append(Path(out[0]).name)
    assert outs == [
        "trained_inference_cuda.json",
        "assignment_cost_cuda.json",
        "model_speed_paper_cuda.json",
        "model_speed_table5_cuda.json",
    ]
    assert "--batch-size" in steps[3].argv and "--batch-size" not in steps[4].argv
    paper, table5 = steps[3].argv, steps[4].argv
    assert _value(paper, "--scale") == "paper" and _value(paper, "--batch-size") == "8"
    # gmaiou train's own step (autocast, scaler, TF32, cudnn.benchmark), then trained in
    assert "--trainer-settings" in paper and "--trainer-settings" not in table5
    assert _value(paper, "--trained-in-iters") == str(TRAINED_IN_ITERS)
    assert float(_value(paper, "--trained-in-seconds")) == TRAINED_IN_SECONDS
    assert "--models" not in paper  # GmaYOLACT, ATSS-YOLACT and YOLACT: the default three
    assign = steps[2].argv
    assert _value(assign, "--device") == "cuda:1" and _value(assign, "--profile") == "paper"


def _value(argv: tuple[str, ...], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_the_default_sequence_fits_five_minutes(tmp_path):
    steps = gpu_steps(tmp_path, [])
    assert [s.name for s in steps] == ["tests", "assign", "paper", "table5"]
    assert sum(s.timeout_s for s in steps) < 300
    assert [s.timeout_s for s in steps] == [STEP_LIMITS[s.name] for s in steps]
    # the trained-in training stops in time for the rest of the paper step
    assert TRAINED_IN_SECONDS < STEP_LIMITS["paper"] / 2
    assert gpu_steps(tmp_path, [], timeouts={"paper": 10})[2].timeout_s == 10


def test_no_runs_no_inference_step(tmp_path, monkeypatch):
    assert "infer" not in [s.name for s in gpu_steps(tmp_path, [])]
    # bench gpu itself: the infer step only for runs named with --run
    taken = []
    monkeypatch.setattr(gpu, "run_steps", lambda steps, log=None: taken.append(steps) or [])
    args = ["bench", "gpu", "--device", "cpu", "--profile", "smoke", "--out-dir", str(tmp_path)]
    assert main(args) == 0
    assert [s.name for s in taken[0]] == ["tests", "assign", "paper", "table5"]
    assert main([*args, "--run", "runs/a"]) == 0
    assert [s.name for s in taken[1]][:2] == ["tests", "infer"]
    smoke = taken[0][2].argv  # the dry run takes the trainer's step too, 2 iterations in
    assert "--trainer-settings" in smoke and _value(smoke, "--trained-in-iters") == "2"


def test_a_failing_or_slow_step_does_not_stop_the_rest(tmp_path):
    log = tmp_path / "log.json"
    steps = [
        Step("fails", (sys.executable, "-c", "raise SystemExit(3)"), 30),
        Step("slow", (sys.executable, "-c", "import time; time.sleep(30)"), 0.5),
        Step("passes", (sys.executable, "-c", "pass"), 30),
    ]
    results = run_steps(steps, log)
    assert [(r["step"], r["exit"]) for r in results] == [
        ("fails", 3),
        ("slow", "timeout"),
        ("passes", 0),
    ]
    assert json.loads(log.read_text())["steps"] == results


def _inference_record(device: str, device_type: str, rows: list[tuple]) -> dict:
    trained = [
        {
            "model": model,
            "config": config,
            "network_ms_per_image": net,
            "post_ms_per_image": paste,
            "post_full_upsampling_ms_per_image": full,
            "images_per_s": 1000 / (net + paste),
            "images_per_s_full_upsampling": 1000 / (net + full),
            "detections_per_image": 10.0,
            "mask_ap": ap,
            "mask_ap_full_upsampling": ap,
        }
        for model, config, net, paste, full, ap in rows
    ]
    return {"device": device, "device_type": device_type, "trained": trained}


def test_findings_compare_each_gpu_model_with_the_same_config_on_the_cpu(tmp_path):
    cpu = _inference_record("CPU", "cpu", [("YOLACT", "yolact-fixed", 40.0, 5.0, 4.0, 25.0)])
    gpu = _inference_record("GPU X", "cuda", [("YOLACT", "yolact-fixed", 4.0, 4.0, 1.0, 25.5)])
    (tmp_path / "trained_inference_cpu.json").write_text(json.dumps(cpu))
    (tmp_path / "trained_inference_cuda_a.json").write_text(json.dumps(gpu))
    lines = gpu_findings(tmp_path)
    assert any("4.0 ms per image" in line and "against 1.0 ms" in line for line in lines)
    versus = [line for line in lines if "fps on GPU X" in line]
    # the GPU's default (whole maps): 1000 / (4 + 1) = 200 fps; the CPU's (in box): 1000 / 45
    assert versus == [
        "YOLACT: 200 fps on GPU X (4.0 ms network) against 22.2 fps on CPU (40.0 ms network); "
        "mask AP 25.50 on the GPU, 25.00 on the CPU (+0.50)."
    ]
    assert gpu_findings(tmp_path / "missing") == []


def test_the_committed_gpu_records_are_listed_and_read():
    timings = repo_root() / "figures" / "timings"
    records = gpu_records(timings)
    if not records:
        pytest.skip("this checkout has no GPU records under figures/timings/")
    assert all(p.suffix == ".json" and "cuda" in p.name for p in records)
    for path in records:  # each names its card and torch's version
        record = json.loads(path.read_text())
        runs = record.get("runs", [record])
        assert all(run["device"].startswith("NVIDIA") for run in runs)
        assert all(run.get("torch", run.get("torch_version")) for run in runs)
    assert any("NVIDIA" in line for line in gpu_findings(timings))


def _speed_record(syncs: list[int | None], again: list[int | None] | None) -> dict:
    models = ["YOLACT (fixed IoU)", "GmaYOLACT (ATSS, GmaIoU)"]
    rows = [{"model": m, "train_host_syncs_per_step": n} for m, n in zip(models, syncs)]
    block = {"size": 550, "models": rows}
    if again is not None:
        for row, n in zip(rows, again):
            row["trained_in"] = {"host_syncs_per_step": n}
        block["trained_in"] = {"iterations": 200}
    return {"device": "GPU X", "device_type": "cuda", "scales": [block]}


def test_findings_give_the_host_syncs_of_a_training_step(tmp_path):
    record = _speed_record([12, 3], [12, 2])
    assert sync_findings(record) == [
        "GPU X, 550 px: host-device synchronisations in one training step (gmaiou train's step, "
        "assignment included; CUDA's sync debug mode): YOLACT (fixed IoU) 12, "
        "GmaYOLACT (ATSS, GmaIoU) 3; after 200 iterations of training: YOLACT (fixed IoU) 12, "
        "GmaYOLACT (ATSS, GmaIoU) 2."
    ]
    # not counted (float32 steps, or the CPU): no sentence; one model failed: the others
    assert sync_findings(_speed_record([None, None], None)) == []
    assert sync_findings(_speed_record([None, 4], None))[0].endswith("GmaYOLACT (ATSS, GmaIoU) 4.")
    (tmp_path / "model_speed_paper_cuda.json").write_text(json.dumps(record))
    (tmp_path / "model_speed_paper_cpu.json").write_text(json.dumps(_speed_record([1, 1], None)))
    assert gpu_findings(tmp_path) == sync_findings(record)
