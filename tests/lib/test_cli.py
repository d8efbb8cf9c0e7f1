"""``gmaiou train`` / ``gmaiou eval`` from the command line: clear
one-line errors for bad input, a tiny run end to end, re-evaluation from the run directory."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from gmaiou.cli import main
from gmaiou.data.synthetic import ensure_synthetic

CONFIG = "yolact-atss-gmaiou-r18-160"


@pytest.fixture(scope="module")
def data_root() -> Path:
    return ensure_synthetic(num_images=10, size=160, progress=False)


def _train_args(data: Path, out: Path, *extra: str, config: str = CONFIG) -> list[str]:
    return [
        "train",
        "--config",
        config,
        "--data",
        str(data),
        "--out",
        str(out),
        "--epochs",
        "1",
        "--batch-size",
        "2",
        "--max-iters",
        "2",
        "--workers",
        "0",
        "--no-progress",
        *extra,
    ]


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err  # one clear line, no traceback
    return err[0]


def test_unknown_config_is_one_line(tmp_path, capsys):
    assert (
        main(["train", "--config", "yolact-atss-gmaiou-r18-161", "--out", str(tmp_path / "r")]) == 2
    )
    line = _one_line_error(capsys)
    assert "unknown config 'yolact-atss-gmaiou-r18-161'" in line
    assert "yolact-atss-gmaiou-r18-160" in line  # the close match is suggested
    assert not (tmp_path / "r").exists()


def test_missing_data_folder_is_named(tmp_path, capsys):
    missing = tmp_path / "no_such_data"
    assert main(_train_args(missing, tmp_path / "r")) == 2
    assert str(missing) in _one_line_error(capsys)


def test_data_folder_without_annotations_names_the_file(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(_train_args(empty, tmp_path / "r")) == 2
    line = _one_line_error(capsys)
    assert "instances_train2017.json" in line and str(empty) in line


@pytest.mark.parametrize(
    "extra, message",
    [
        (("--lr", "-1"), "--lr must be > 0"),
        (("--ckpt-every", "0"), "--ckpt-every must be >= 1, got 0"),
        (("--ckpt-every", "-5"), "--ckpt-every must be >= 1, got -5"),
        (("--workers", "-1"), "--workers must be >= 0, got -1"),
    ],
)
def test_bad_numbers_are_refused_naming_the_option(tmp_path, capsys, data_root, extra, message):
    assert main(_train_args(data_root, tmp_path / "r", *extra)) == 2
    line = _one_line_error(capsys)
    assert message in line and "num_workers" not in line
    assert not (tmp_path / "r").exists()


def test_eval_bad_workers_names_the_option(tmp_path, capsys):
    assert main(["eval", "--run", str(tmp_path), "--workers", "-2"]) == 2
    assert "--workers must be >= 0, got -2" in _one_line_error(capsys)


def _copy_data(data_root: Path, tmp_path: Path) -> Path:
    """A private copy of the cached synthetic set, safe to damage."""
    copy = tmp_path / "data"
    shutil.copytree(data_root, copy)
    return copy


def _first_image(data: Path, split: str = "train") -> tuple[Path, dict]:
    ann = json.loads((data / "annotations" / f"instances_{split}.json").read_text())
    info = ann["images"][0]
    return data / split / info["file_name"], info


def test_image_of_the_wrong_size_is_named_before_training(tmp_path, capsys, data_root):
    data = _copy_data(data_root, tmp_path)
    path, info = _first_image(data)
    Image.new("RGB", (info["width"] + 1, info["height"])).save(path)
    w, h = info["width"], info["height"]
    expected = f"{path} is {w + 1}x{h} (WxH) but instances_train.json says {w}x{h}"
    assert main(_train_args(data, tmp_path / "r")) == 2
    assert expected in _one_line_error(capsys)
    assert not (tmp_path / "r").exists()  # refused before the run directory was made
    assert main(["data", "check", "--data", str(data)]) == 2
    assert expected in _one_line_error(capsys)


def test_data_check_reports_per_image_cost_and_drops(tmp_path, capsys, data_root):
    assert main(["data", "check", "--data", str(data_root)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["train", "val"]
    assert all("ms per image" in line and "dropped 0 of " in line for line in lines)


def test_dataset_of_only_invalid_annotations_is_refused_by_train(tmp_path, capsys, data_root):
    data = _copy_data(data_root, tmp_path)
    ann_file = data / "annotations" / "instances_train.json"
    ann = json.loads(ann_file.read_text())
    for i, a in enumerate(ann["annotations"]):  # 2-point polygons and zero-area boxes
        if i % 2:
            a["segmentation"] = [[1, 1, 2, 2]]
        else:
            a["bbox"][3] = 0
    ann_file.write_text(json.dumps(ann))
    assert main(_train_args(data, tmp_path / "r")) == 2
    line = _one_line_error(capsys)
    n = len(ann["annotations"])
    assert f"{ann_file} has no usable instance: dropped {n} of {n} annotations" in line
    assert "zero-area boxes" in line and "polygons of < 3 points" in line
    assert not (tmp_path / "r").exists()


def test_undecodable_image_mid_epoch_checkpoints_then_resume(tmp_path, capsys, data_root):
    data = _copy_data(data_root, tmp_path)
    ann = json.loads((data / "annotations" / "instances_train.json").read_text())
    names = [data / "train" / info["file_name"] for info in ann["images"]]
    intact = {p: p.read_bytes() for p in names}
    for p in names:  # every image keeps its header (the pre-flight passes) but loses its pixels
        p.write_bytes(intact[p][:200])
    run = tmp_path / "run"
    assert main(_train_args(data, run, "--eval-split", "none")) == 2
    err = capsys.readouterr().err
    assert "checkpoint of iteration 0 written" in err and "cannot decode image file" in err
    assert (run / "checkpoint.pt").is_file()
    for p, content in intact.items():
        p.write_bytes(content)
    assert main(_train_args(data, run, "--eval-split", "none", "--resume")) == 0
    assert "stopped after 2 iterations" in capsys.readouterr().out


def test_train_then_eval_end_to_end(tmp_path, capsys, data_root):
    run = tmp_path / "run"
    assert main(_train_args(data_root, run)) == 0
    out = capsys.readouterr().out
    assert "stopped after 2 iterations" in out and "segm: AP" in out
    record = json.loads((run / "config.json").read_text())
    assert record["config_name"] == CONFIG and record["overrides"] == {"epochs": 1, "batch_size": 2}
    assert record["config"]["model"]["num_classes"] == 8
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [1, 2]
    assert {"epoch", "iter", "lr", "loss", "cls", "box", "mask", "semantic", "time"} <= rows[
        0
    ].keys()
    metrics = json.loads((run / "eval.json").read_text())
    assert metrics["split"] == "val" and {"AP", "oLRP"} <= metrics["segm"].keys()
    assert isinstance(json.loads((run / "detections.json").read_text()), list)

    # A second run into the same folder is refused; --overwrite replaces it.
    assert main(_train_args(data_root, run)) == 2
    assert "--resume" in _one_line_error(capsys)

    # Resuming with a changed setting is refused.
    assert main(_train_args(data_root, run, "--resume", "--lr", "0.5")) == 2
    assert "resume it without changing --lr" in _one_line_error(capsys)

    # gmaiou eval reloads config.json + checkpoint.pt and reproduces the training's evaluation.
    results = tmp_path / "results.json"
    assert (
        main(
            [
                "eval",
                "--run",
                str(run),
                "--data",
                str(data_root),
                "--out",
                str(results),
                "--no-progress",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "segm: AP" in printed
    assert json.loads(results.read_text()) == json.loads((run / "detections.json").read_text())
    again = json.loads(results.with_name("results.metrics.json").read_text())
    assert again["segm"] == metrics["segm"]
    # ... and does not overwrite an existing file unless told.
    assert main(["eval", "--run", str(run), "--out", str(results), "--no-progress"]) == 2
    assert "--overwrite" in _one_line_error(capsys)

    # Evaluated into the run directory (the default), then --overwrite: nothing of the old run stays.
    assert main(["eval", "--run", str(run), "--detections", str(run / "detections_val.json")]) == 0
    assert "val split: 2 images; dropped 0 of " in capsys.readouterr().out
    (run / "notes.txt").write_text("mine")
    old = {p.name for p in run.iterdir()}
    assert {"detections_val.json", "detections_val.metrics.json", "eval.json"} <= old
    assert main(_train_args(data_root, run, "--overwrite", "--eval-split", "none")) == 0
    assert sorted(p.name for p in run.iterdir() if p.name != "tensorboard") == [
        "checkpoint.pt",
        "config.json",
        "curves.png",
        "metrics.csv",
        "metrics.jsonl",
        "notes.txt",
    ]


def test_eval_of_a_missing_run_is_clear(tmp_path, capsys):
    assert main(["eval", "--run", str(tmp_path / "nope")]) == 2
    assert "run directory not found" in _one_line_error(capsys)


def test_train_on_the_real_coco_sample(tmp_path, capsys, coco_sample):
    root, _ = coco_sample
    run = tmp_path / "run"
    args = _train_args(root, run, "--eval-split", "none", config="yolact-fixed-r18-160")
    assert main(args) == 0
    assert "stopped after 2 iterations" in capsys.readouterr().out
    record = json.loads((run / "config.json").read_text())
    assert record["num_classes"] == 80 and len(record["cat_ids"]) == 80  # COCO's 80 categories
    assert record["data_root"] == str(root.resolve())
    assert not (run / "eval.json").exists()


def test_eval_checks_the_split_images_before_predicting(tmp_path, capsys, data_root):
    data = _copy_data(data_root, tmp_path)
    run = tmp_path / "run"
    assert main(_train_args(data, run, "--eval-split", "none", "--max-iters", "1")) == 0
    capsys.readouterr()
    path, info = _first_image(data, "val")
    Image.new("RGB", (info["width"], info["height"] + 2)).save(path)
    assert main(["eval", "--run", str(run), "--no-progress"]) == 2  # data: the run's own
    line = _one_line_error(capsys)
    w, h = info["width"], info["height"]
    assert f"{path} is {w}x{h + 2} (WxH) but instances_val.json says {w}x{h}" in line
    assert not list(run.glob("detections*"))  # nothing predicted, nothing written
