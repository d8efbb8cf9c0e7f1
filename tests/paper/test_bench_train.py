"""``gmaiou-paper bench train``: Table 4's speed side, side by side, at smoke sizes; its bad inputs."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import pytest
import torch

from gmaiou.cli import main as gmaiou_main
from gmaiou.data.synthetic import ensure_synthetic
from gmaiou.paper.benchmarks.train import (
    COCO_TRAIN_IMAGES,
    MODELS,
    _count_syncs,
    _Stepper,
    _time_rounds,
    default_out,
    find_trained_runs,
    format_model_speed,
    format_speed_table,
    model_speed_findings,
    plot_speed,
    preset_at,
    speed_findings,
    speed_settings,
)
from gmaiou.paper.cli import main

SMOKE = ["--profile", "smoke", "--device", "cpu", "--no-progress"]


@pytest.fixture(scope="module")
def smoke_record(tmp_path_factory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("bench") / "speed.json"
    args = ["--out", str(out), "--markdown", str(out.with_suffix(".md"))]
    assert main(["bench", "train", "--scale", "cpu", *SMOKE, *args]) == 0
    return json.loads(out.read_text()), out


def test_three_models_side_by_side(smoke_record):
    record, out = smoke_record
    assert record["settings"]["backbone"] == "r18" and record["settings"]["sizes"] == [160]
    (block,) = record["scales"]
    rows = {r["key"]: r for r in block["models"]}
    assert list(rows) == list(MODELS)
    # YOLACT: 3 anchors per location; ATSS: 1; GmaYOLACT: 2 scales per location.
    atss = rows["yolact-atss-gmaiou"]["anchors"]
    assert rows["yolact-fixed"]["anchors"] == 3 * atss
    assert rows["gmayolact-atss-gmaiou"]["anchors"] == 2 * atss
    for r in rows.values():
        assert r["weights"] == "random"
        assert r["train_s_per_iter"] > 0 and len(r["train_s_per_iter_all"]) == 1
        assert r["network_ms_per_image"] > 0 and r["post_ms_per_image"] > 0
        assert r["fps"] == pytest.approx(
            1000 / (r["network_ms_per_image"] + r["post_ms_per_image"])
        )
        assert 0 <= r["detections_per_image"] <= 100
    assert record["trainer_settings"] is False and record["precision"] == "float32"
    assert all(r["train_host_syncs_per_step"] is None for r in rows.values())  # CPU: no count
    assert all("trained_in" not in r for r in rows.values()) and "trained_in" not in block
    markdown = out.with_suffix(".md").read_text()
    assert "pinned to core" in markdown and "train s/iter" in markdown
    assert "syncs/step" not in markdown  # the trainer-settings columns only where timed so
    assert markdown.count(" | 160 | random |") == 3
    assert markdown.rstrip().endswith("(train split, training transform)*")
    assert "*profile: smoke" in markdown


@pytest.fixture(scope="module")
def trainer_record(tmp_path_factory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("bench") / "trainer.json"
    args = ["--out", str(out), "--markdown", str(out.with_suffix(".md")), "--trainer-settings"]
    assert main(["bench", "train", "--scale", "cpu", *SMOKE, *args]) == 0
    return json.loads(out.read_text()), out


def test_trainer_settings_record_times_the_trainers_step_then_trained_in(trainer_record):
    """The trainer's own step on the CPU (float32 there: no autocast, no scaler, no GPU
    figures), then 2 iterations of training and the timing again."""
    record, out = trainer_record
    s = record["settings"]
    assert record["trainer_settings"] is True and s["trainer_settings"] is True
    assert (s["trained_in_iters"], s["trained_in_seconds"], s["batch_size"]) == (2, None, 1)
    assert record["precision"].startswith("training as gmaiou train runs it on the CPU")
    (block,) = record["scales"]
    trained_in = block["trained_in"]
    assert trained_in["iterations"] == trained_in["requested"] == 2
    assert trained_in["stopped_by_time"] is False and trained_in["loader_workers"] == 0
    assert trained_in["augmentation_of"] == "yolact-fixed-r18-160"
    rows = {r["key"]: r for r in block["models"]}
    assert list(rows) == list(MODELS)
    epoch_iters = math.ceil(COCO_TRAIN_IMAGES / 1)
    for r in rows.values():
        assert (r["amp"], r["amp_dtype"], r["tf32"]) == (False, None, None)
        first, again = _prefixed_values(r), r["trained_in"]
        for timing in (first, again):
            assert timing["s_per_iter"] > 0 and len(timing["s_per_iter_all"]) == 1
            assert timing["images_per_s"] == pytest.approx(1 / timing["s_per_iter"])
            assert timing["coco_epoch_minutes_estimate"] == pytest.approx(
                epoch_iters * timing["s_per_iter"] / 60
            )
            assert timing["loss_finite"] is True
            for key in ("peak_gpu_memory_mib", "step_gpu_memory_mib", "host_syncs_per_step"):
                assert timing[key] is None
            assert timing["skipped_steps"] is None  # no gradient scaler on the CPU
        # warm-up 1 and 1 timed step (no sync-count step on the CPU), then 2 of training
        assert again["iterations_before"] == 4
    markdown = out.with_suffix(".md").read_text()
    head = next(line for line in markdown.splitlines() if line.startswith("| model |"))
    assert "| train s/iter | train img/s | peak GPU MiB | syncs/step |" in head
    assert "| COCO epoch min (estimate) | trained-in s/iter | network ms/img |" in head
    assert "after 2 iterations of training" in markdown
    row = next(line for line in markdown.splitlines() if line.startswith("| YOLACT"))
    assert row.count("| – |") == 1 and row.count("–") == 2  # GPU memory and syncs
    findings = speed_findings(record)
    assert all("after 2 iterations of training" in f for f in findings)
    assert all("an estimated COCO epoch at batch 1" in f for f in findings)


def _prefixed_values(row: dict) -> dict:
    return {k.removeprefix("train_"): v for k, v in row.items() if k.startswith("train_")}


class _FakeCuda:
    """Stands in for ``torch.cuda``'s memory and sync functions on a machine without CUDA."""

    def __init__(self, monkeypatch):
        self.mode = 0
        self.allocated = 100 * 2**20
        self.peak = 0
        monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
        monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", self.reset)
        monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: self.allocated)
        monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: self.peak)
        monkeypatch.setattr(torch.cuda, "get_sync_debug_mode", lambda: self.mode)
        monkeypatch.setattr(torch.cuda, "set_sync_debug_mode", self.set_mode)

    def reset(self, device=None):
        self.peak = self.allocated

    def set_mode(self, mode):
        self.mode = {"default": 0, "warn": 1}.get(mode, mode)

    def step(self, extra_mib: int, syncs: int):
        self.peak = max(self.peak, self.allocated + extra_mib * 2**20)
        if self.mode == 1:
            for _ in range(syncs):
                warnings.warn("called a synchronizing CUDA operation", stacklevel=1)
            warnings.warn("something else", stacklevel=1)  # not a sync: not counted
        return 1.0


def test_cuda_figures_of_the_timing_rounds(monkeypatch):
    """On CUDA (stood in for): peak memory reset per step, what a step adds, syncs counted
    from the sync debug mode's warnings (and the mode put back), steps the scaler skipped."""
    fake = _FakeCuda(monkeypatch)
    scales = iter([8.0, 8.0, 4.0, 4.0, 4.0, 4.0, 4.0])  # before each step, after timed ones
    steppers = {
        "a": _Stepper(step=lambda r: fake.step(50 + r, syncs=3), scale=lambda: next(scales)),
        "b": _Stepper(step=lambda r: fake.step(10, syncs=0)),
    }
    settings = speed_settings("cpu", "smoke", train_iters=3, warmup=1, batch_size=4)
    out = _time_rounds(steppers, settings, torch.device("cuda"), False, "t", {})
    a, b = out["a"], out["b"]
    assert len(a["s_per_iter_all"]) == 3 and a["images_per_s"] == pytest.approx(4 / a["s_per_iter"])
    assert a["peak_gpu_memory_mib"] == pytest.approx(100 + 53)  # the last round: 50 + 3
    assert a["step_gpu_memory_mib"] == pytest.approx(53)
    assert b["step_gpu_memory_mib"] == pytest.approx(10)
    assert (a["host_syncs_per_step"], b["host_syncs_per_step"]) == (3, 0)
    assert (a["skipped_steps"], b["skipped_steps"]) == (1, None)
    assert fake.mode == 0  # the sync debug mode is put back
    assert _count_syncs(lambda: fake.step(0, syncs=5), torch.device("cpu")) is None


def test_a_diverging_model_is_left_out_and_named(monkeypatch):
    from gmaiou.training.trainer import TrainingDiverged

    def diverges(r):
        raise TrainingDiverged("non-finite loss")

    steppers = {"a": _Stepper(step=lambda r: 1.0), "b": _Stepper(step=diverges)}
    failed: dict[str, str] = {}
    settings = speed_settings("cpu", "smoke", train_iters=2, warmup=0)
    out = _time_rounds(steppers, settings, torch.device("cpu"), False, "t", failed)
    assert failed == {"b": "non-finite loss"} and out["b"]["error"] == "non-finite loss"
    assert out["b"]["s_per_iter"] is None and out["b"]["loss_finite"] is False
    assert len(out["a"]["s_per_iter_all"]) == 2


def test_trained_in_defaults_follow_the_profile():
    assert speed_settings("paper", "paper").trained_in_iters == 200
    assert speed_settings("paper", "smoke").trained_in_iters == 2
    assert speed_settings("cpu", "smoke").trainer_settings is None  # resolved by the device
    with pytest.raises(ValueError, match="trained_in_iters must be >= 0"):
        speed_settings("cpu", trained_in_iters=-1)
    with pytest.raises(ValueError, match="trained_in_seconds must be > 0"):
        speed_settings("cpu", trained_in_seconds=0)


def test_table5_scale_writes_default_record(tmp_path, monkeypatch):
    monkeypatch.setenv("GMAIOU_FIGURES", str(tmp_path))
    assert main(["bench", "train", "--scale", "table5", "--skip-training", *SMOKE]) == 0
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert written == [Path("smoke/timings/model_speed_table5_cpu.json")]  # the record only
    record = json.loads((tmp_path / written[0]).read_text())
    assert record["settings"]["train"] is False
    assert all("train_s_per_iter" not in r for r in record["scales"][0]["models"])
    assert "train s/iter" not in format_speed_table(record)


def test_default_records_are_named_after_their_scale_under_timings(tmp_path, monkeypatch):
    monkeypatch.setenv("GMAIOU_FIGURES", str(tmp_path))
    names = {
        scale: default_out(speed_settings(scale, profile), "cuda", profile)
        for scale, profile in (("cpu", "default"), ("paper", "smoke"), ("table5", "default"))
    }
    assert names == {
        "cpu": tmp_path / "timings" / "model_speed_recipe_cuda.json",
        "paper": tmp_path / "smoke" / "timings" / "model_speed_paper_cuda.json",
        "table5": tmp_path / "timings" / "model_speed_table5_cuda.json",
    }


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    data = ensure_synthetic(num_images=10, size=160, progress=False)
    out = tmp_path_factory.mktemp("runs") / "fixed"
    args = ["train", "--config", "yolact-fixed-r18-160", "--data", str(data), "--out", str(out)]
    args += ["--epochs", "1", "--batch-size", "2", "--max-iters", "1", "--workers", "0"]
    assert gmaiou_main([*args, "--no-progress"]) == 0  # the library's command
    return out


def test_trained_run_replaces_its_models_random_weights(tiny_run, tmp_path):
    out = tmp_path / "speed.json"
    args = ["bench", "train", "--scale", "cpu", *SMOKE, "--out", str(out)]
    assert main([*args, "--run", str(tiny_run / "checkpoint.pt")]) == 0
    rows = {r["key"]: r for r in json.loads(out.read_text())["scales"][0]["models"]}
    assert rows["yolact-fixed"]["weights"] == "trained: fixed"
    assert rows["yolact-atss-gmaiou"]["weights"] == "random"
    # Random models take the run's data classes too (the synthetic set's 8).
    assert {r["num_classes"] for r in rows.values()} == {8}


def test_run_of_another_size_is_refused(tiny_run, capsys):
    args = ["bench", "train", "--scale", "cpu", *SMOKE, "--sizes", "128", "--run", str(tiny_run)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not the benchmark's r18 at 128 px" in err[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--backbone", "r99"], "unknown preset yolact-fixed-r99-160"),
        (["--run", "/nonexistent/run"], "no such run directory or checkpoint"),
        (["--train-iters", "0"], "train_iters must be >= 1"),
        (["--data", "/nonexistent/data"], "no such dataset folder"),
    ],
)
def test_bad_input_is_one_line(args, message, capsys):
    assert main(["bench", "train", *SMOKE, *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_unknown_scale_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["bench", "train", "--scale", "huge"])
    assert exc.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_settings_validation():
    with pytest.raises(ValueError, match="unknown scale"):
        speed_settings("huge")
    with pytest.raises(ValueError, match="unknown profile"):
        speed_settings("cpu", "fast")
    with pytest.raises(ValueError, match="at least one image size"):
        speed_settings("cpu", sizes=())
    with pytest.raises(ValueError, match="unknown model"):
        speed_settings("cpu", models=("yolact-atss-iou",))
    with pytest.raises(ValueError, match="one size"):
        speed_settings("table5", runs=("some/run",))
    s = speed_settings("paper", "default")
    assert (s.backbone, s.sizes, s.train, s.train_iters) == ("r50", (550,), True, 3)
    assert speed_settings("paper", "smoke").sizes == (160,)


def test_preset_at():
    assert preset_at("yolact-fixed", "r50", 550).name == "yolact-fixed-r50-550"
    other = preset_at("gmayolact-atss-gmaiou", "r18", 200)
    assert other.name == "gmayolact-atss-gmaiou-r18-200" and other.model.image_size == 200
    with pytest.raises(ValueError, match="unknown preset"):
        preset_at("yolact-fixed", "r99", 550)


def test_find_trained_runs(tmp_path):
    finished = tmp_path / "yolact-fixed-r18-160-synth-uniform-1000x160-data0-seed0"
    unfinished = tmp_path / "gmayolact-atss-gmaiou-r18-160-synth-uniform-1000x160-data0-seed0"
    variant = tmp_path / "yolact-atss-gmaiou-r18-160+recipe1-synth-uniform-1000x160-data0-seed0"
    for folder in (finished, unfinished, variant):
        folder.mkdir()
        (folder / "checkpoint.pt").write_bytes(b"")
    (finished / "eval.json").write_text("{}")
    (variant / "eval.json").write_text("{}")
    found = find_trained_runs("default", grids=(), folders=[tmp_path])
    assert found == {"yolact-fixed": finished}


def _record(train: bool = True) -> dict:
    def row(key, anchors, net, post, dets, train_s):
        r = {
            "key": key,
            "model": MODELS[key],
            "config": f"{key}-r18-160",
            "weights": "random",
            "anchors": anchors,
            "network_ms_per_image": net,
            "post_ms_per_image": post,
            "total_ms_per_image": net + post,
            "fps": 1000 / (net + post),
            "detections_per_image": dets,
        }
        if train:
            r["train_s_per_iter"] = train_s
        return r

    return {
        "settings": {
            "backbone": "r18",
            "sizes": [160],
            "train": train,
            "batch_size": 2,
            "train_iters": 3,
            "warmup": 1,
            "infer_iters": 4,
        },
        "device": "Some CPU (1 threads)",
        "device_type": "cpu",
        "cpu_affinity": [1],
        "threads": 1,
        "torch": "x",
        "precision": "float32",
        "scales": [
            {
                "size": 160,
                "data": "/d/synth",
                "models": [
                    row("yolact-fixed", 300, 80.0, 20.0, 100, 0.5),
                    row("yolact-atss-gmaiou", 100, 70.0, 5.0, 100, 0.6),
                ],
            }
        ],
    }


def test_findings_are_computed_from_the_record():
    (sentence,) = speed_findings(_record())
    assert "100 anchors against YOLACT (fixed IoU)'s 300 (0.33x)" in sentence
    assert "0.75x the time per image (25% less; network alone 0.88x" in sentence
    assert "a training iteration 1.20x" in sentence and "random weights" in sentence
    assert "The paper: about 25% less inference time" in sentence


def test_table_without_training_has_no_training_column():
    text = format_speed_table(_record(train=False))
    assert "train s/iter" not in text and "pinned to core(s) 1" in text
    assert (
        "| YOLACT (fixed IoU) | yolact-fixed-r18-160 | 160 | random | 300 | 80.0 | 20.0 | 100 | 10.00 |"
        in text
    )


def _gpu(record: dict, scale: str) -> dict:
    return {
        **record,
        "device": "GPU X",
        "device_type": "cuda",
        "settings": {**record["settings"], "scale": scale},
    }


def test_records_of_several_devices_fold_into_one_table_figure_and_findings():
    import matplotlib

    matplotlib.use("Agg")
    cpu = {**_record(), "settings": {**_record()["settings"], "scale": "cpu"}}
    gpu = _gpu(_record(train=False), "table5")
    text = format_model_speed([gpu, cpu])  # CPU first, whatever the order given
    lines = text.splitlines()
    assert lines[2].startswith("- CPU, r18 at 160 px (cpu scale): Some CPU (1 threads), pinned")
    assert (
        lines[3] == "- GPU X, r18 at 160 px (table5 scale): torch x; inference median of 4 images"
    )
    rows = [line for line in lines if line.startswith("| CPU") or line.startswith("| GPU")]
    assert rows[0] == (
        "| CPU | r18 | 160 | YOLACT (fixed IoU) | random | 300 | 0.5 | 80.0 | 20.0 | 100 | 10.00 |"
    )
    assert rows[3].startswith("| GPU X | r18 | 160 | ATSS-YOLACT (GmaIoU) | random | 100 | – |")
    findings = model_speed_findings([gpu, cpu])
    assert [f.split(":")[0] for f in findings] == ["CPU, r18", "GPU X, r18"]
    assert findings[1].endswith(speed_findings(gpu)[0])
    fig = plot_speed([cpu, gpu])
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0] == "CPU\nr18, 160 px (cpu scale): training: s / iteration"
    assert titles[1] == "GPU X\nr18, 160 px (table5 scale): training: s / iteration\nnot timed"
    assert not fig.axes[1].axison and len(fig.axes[3].patches) == 2
