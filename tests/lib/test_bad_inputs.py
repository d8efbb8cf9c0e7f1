"""What a new user meets first: each mistake ends in one line that names the problem
(the file, the id, the path) and leaves nothing behind."""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gmaiou.cli import main
from gmaiou.data import CocoInstances
from gmaiou.data.synthetic import ensure_synthetic
from gmaiou.paths import check_writable_folder, repo_root

CONFIG = "yolact-atss-gmaiou-r18-160"


@pytest.fixture(scope="module")
def data_root() -> Path:
    return ensure_synthetic(num_images=10, size=160, progress=False)


def _train_args(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train", "--config", CONFIG, "--data", str(data), "--out", str(out), "--epochs", "1",
        "--batch-size", "2", "--max-iters", "2", "--workers", "0", "--no-progress", *extra,
    ]  # fmt: skip


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err  # one line, no traceback
    return err[0]


def _tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, data_root) -> Path:
    """A 2-iteration run (config.json, checkpoint.pt, eval.json), trained once for the module."""
    run = tmp_path_factory.mktemp("trained") / "run"
    assert main(_train_args(data_root, run)) == 0
    return run


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# --------------------------------------------------------------------------- a. bad bbox


@pytest.mark.parametrize(
    "bbox", [[1.0, 2.0, math.nan, 5.0], [1.0, math.inf, 4.0, 5.0], [1.0, 2.0, -3.0, 5.0]]
)
def test_bad_bbox_is_refused_naming_file_annotation_and_image(tmp_path, capsys, data_root, bbox):
    data = _copy(data_root, tmp_path / "data")
    ann_file = data / "annotations" / "instances_train.json"
    ann = json.loads(ann_file.read_text())
    bad = ann["annotations"][3]
    bad["bbox"] = bbox
    ann_file.write_text(json.dumps(ann))  # NaN and Infinity as Python's json writes them
    named = (str(ann_file), f"annotation {bad['id']} (image {bad['image_id']})")

    with pytest.raises(ValueError) as err:
        CocoInstances.from_root(data, "train")
    assert all(part in str(err.value) for part in named)

    assert main(["data", "check", "--data", str(data)]) == 2
    line = _one_line_error(capsys)
    assert all(part in line for part in named), line

    assert main(_train_args(data, tmp_path / "run")) == 2
    line = _one_line_error(capsys)
    assert all(part in line for part in named), line
    assert not (tmp_path / "run").exists()


def test_zero_size_bbox_is_still_dropped_not_refused(tmp_path, data_root):
    data = _copy(data_root, tmp_path / "data")
    ann_file = data / "annotations" / "instances_train.json"
    ann = json.loads(ann_file.read_text())
    ann["annotations"][0]["bbox"][2] = 0
    ann_file.write_text(json.dumps(ann))
    assert CocoInstances.from_root(data, "train").dropped["zero_area"] == 1


# --------------------------------------------------------------------------- b. resume, other data


def _other_data(data_root: Path, dst: Path, extra_class: bool) -> Path:
    data = _copy(data_root, dst)
    if extra_class:
        for split in ("train", "val"):
            ann_file = data / "annotations" / f"instances_{split}.json"
            ann = json.loads(ann_file.read_text())
            ann["categories"].append({"id": 999, "name": "extra", "supercategory": "none"})
            ann_file.write_text(json.dumps(ann))
    return data


@pytest.mark.parametrize("extra_class", [False, True], ids=["same-classes", "other-classes"])
def test_resume_on_other_data_is_refused_naming_both_roots(
    tmp_path, capsys, data_root, trained_run, extra_class
):
    run = _copy(trained_run, tmp_path / "run")
    other = _other_data(data_root, tmp_path / "other", extra_class)
    record = (run / "config.json").read_bytes()
    files = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
    assert main(_train_args(other, run, "--resume", "--max-iters", "3")) == 2
    line = _one_line_error(capsys)
    assert str(data_root) in line and str(other) in line, line
    assert (run / "config.json").read_bytes() == record
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir()} == files  # nothing touched


def test_resume_keeps_the_run_record(tmp_path, capsys, data_root, trained_run):
    run = _copy(trained_run, tmp_path / "run")
    record = (run / "config.json").read_bytes()
    args = _train_args(data_root, run, "--resume", "--max-iters", "3", "--eval-split", "none")
    assert main(args) == 0
    assert "stopped after 3 iterations" in capsys.readouterr().out
    # The first call's options (max_iters 2, evaluation on val) stay the record's.
    assert (run / "config.json").read_bytes() == record


# --------------------------------------------------------------------------- c. truncated checkpoint


def test_export_of_a_truncated_checkpoint_is_one_line(tmp_path, capsys, trained_run):
    pytest.importorskip("onnx")
    run = _copy(trained_run, tmp_path / "run")
    checkpoint = run / "checkpoint.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])
    out = tmp_path / "out"
    out.mkdir()
    assert main(["export", "--run", str(run), "--onnx", str(out / "m.onnx"), "--no-check"]) == 2
    line = _one_line_error(capsys)
    assert str(checkpoint) in line and "could not be read" in line
    weights = ["export", "--config", CONFIG, "--weights", str(checkpoint), "--no-check"]
    assert main([*weights, "--onnx", str(out / "w.onnx")]) == 2
    assert str(checkpoint) in _one_line_error(capsys)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(random.Random(0).randbytes(1000))
    assert main([*weights[:-2], str(garbage), "--no-check", "--onnx", str(out / "g.onnx")]) == 2
    assert str(garbage) in _one_line_error(capsys)
    assert _tree(out) == []  # no model, no temporary
    # train --resume and eval name it the same way
    assert main(["eval", "--run", str(run), "--no-progress"]) == 2
    assert str(checkpoint) in _one_line_error(capsys)


# --------------------------------------------------------------------------- d. read-only output


@pytest.fixture
def read_only(tmp_path, monkeypatch) -> Path:
    """A folder nobody may write into: chmod 555, and where that does not bind (root), an
    ``os.access`` that says so (what the commands check before any work)."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    if os.access(folder, os.W_OK):  # root: permission bits do not bind
        real_access = os.access

        def access(path, mode, *args, **kwargs):
            if mode & os.W_OK and Path(path) == folder:
                return False
            return real_access(path, mode, *args, **kwargs)

        monkeypatch.setattr(os, "access", access)
    yield folder
    folder.chmod(0o755)


def test_check_writable_folder_names_the_folder(tmp_path, read_only):
    with pytest.raises(PermissionError, match=f"{read_only / 'a' / 'b'}: {read_only} is not"):
        check_writable_folder(read_only / "a" / "b", "run directory")
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError, match="is a file, not a folder"):
        check_writable_folder(tmp_path / "file" / "run")
    assert check_writable_folder(tmp_path / "new" / "run") == tmp_path / "new" / "run"
    assert not (tmp_path / "new").exists()


def test_train_eval_and_synth_into_a_read_only_folder_are_one_line(
    capsys, data_root, trained_run, read_only
):
    commands = [
        _train_args(data_root, read_only / "run"),
        ["eval", "--run", str(trained_run), "--detections", str(read_only / "d.json")],
        ["data", "synth", "--out", str(read_only / "data"), "--images", "4", "--size", "64"],
    ]
    for argv in commands:
        assert main(argv) == 2, argv
        line = _one_line_error(capsys)
        assert f"{read_only} is not writable" in line, line
        assert _tree(read_only) == []
    assert not (trained_run / "detections_val.json").exists()


# --------------------------------------------------------------------------- e. missing weights


def test_missing_weights_leave_no_run_folder(tmp_path, capsys, data_root):
    missing = tmp_path / "missing.pt"
    out = tmp_path / "a" / "b" / "run"
    assert main(_train_args(data_root, out, "--weights", str(missing))) == 2
    assert str(missing) in _one_line_error(capsys)
    assert not (tmp_path / "a").exists()


def test_corrupt_weights_are_one_line_and_leave_no_run_folder(tmp_path, capsys, data_root):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(random.Random(0).randbytes(1000))
    out = tmp_path / "a" / "run"
    assert main(_train_args(data_root, out, "--weights", str(garbage))) == 2
    errors = [x for x in capsys.readouterr().err.splitlines() if "error:" in x]
    assert len(errors) == 1 and str(garbage) in errors[0] and "Traceback" not in errors[0]
    assert not (tmp_path / "a").exists()


def test_a_run_that_fails_before_its_first_step_leaves_no_folder(tmp_path, data_root):
    """Past the command line's checks (the library call): the folders it made go again."""
    from gmaiou.configs import get_config
    from gmaiou.training.trainer import RunOptions, train

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(random.Random(0).randbytes(1000))
    (tmp_path / "kept").mkdir()
    out = tmp_path / "kept" / "a" / "run"
    options = RunOptions(
        out_dir=out, data_root=data_root, num_workers=0, progress=False, weights=garbage
    )
    with pytest.raises(ValueError, match="could not be read"):
        train(get_config(CONFIG), options)
    assert _tree(tmp_path / "kept") == []


# --------------------------------------------------------------------------- f. closed pipe


@pytest.mark.parametrize("reader", ["head -1", "true"])
@pytest.mark.parametrize("unbuffered", [False, True], ids=["buffered", "unbuffered"])
def test_output_into_a_closed_pipe_ends_quietly(reader, unbuffered):
    from gmaiou.configs import list_configs

    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    done = subprocess.run(
        ["bash", "-c", f"set -o pipefail; '{sys.executable}' -m gmaiou configs | {reader}"],
        capture_output=True,
        text=True,
        env=env,
        cwd=repo_root(),
    )
    assert done.stderr == ""
    assert done.returncode == 0
    if reader == "head -1":
        assert done.stdout == f"{list_configs()[0]}\n"


@pytest.mark.parametrize("seed", range(20))
def test_any_damaged_file_is_a_value_error_naming_it(tmp_path, seed):
    from gmaiou.models import load_state
    from gmaiou.runs import load_checkpoint

    garbage = tmp_path / "damaged.pt"
    garbage.write_bytes(random.Random(seed).randbytes(200 + 50 * seed))
    for load in (load_state, load_checkpoint):
        with pytest.raises(ValueError, match="damaged.pt could not be read"):
            load(garbage)
