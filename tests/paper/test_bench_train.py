"""``gmaiou-paper bench train``: Table 4's speed side, side by side, at smoke sizes; its bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gmaiou.cli import main as gmaiou_main
from gmaiou.data.synthetic import ensure_synthetic
from gmaiou.paper.benchmarks.train import (
    MODELS,
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
    markdown = out.with_suffix(".md").read_text()
    assert "pinned to core" in markdown and "train s/iter" in markdown
    assert markdown.count(" | 160 | random |") == 3
    assert markdown.rstrip().endswith("(train split, training transform)*")
    assert "*profile: smoke" in markdown


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
