"""ONNX export: onnxruntime runs the exported forward and matches torch; the ``gmaiou export`` command."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest
import torch

from gmaiou.cli import main
from gmaiou.configs import get_config
from gmaiou.export import OUTPUT_NAMES, compare_with_onnxruntime, export_onnx
from gmaiou.models import build_model

ort = pytest.importorskip("onnxruntime")

SIZE = 96


def _small(name: str):
    cfg = get_config(name).with_num_classes(3)
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, image_size=SIZE))


@pytest.mark.parametrize("name", ["yolact-fixed-r18-160", "gmayolact-atss-gmaiou-r18-160"])
def test_onnxruntime_matches_torch(tmp_path, name):
    torch.manual_seed(0)
    model = build_model(_small(name)).train()
    path = export_onnx(model, tmp_path / "model.onnx", SIZE)
    assert path.is_file() and model.training  # mode restored
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == list(OUTPUT_NAMES)
    images = torch.randn(3, 3, SIZE, SIZE)  # exported with batch 1: the batch axis is dynamic
    got = dict(zip(OUTPUT_NAMES, session.run(None, {"images": images.numpy()})))
    model.eval()
    with torch.no_grad():
        expected = model(images)
    for key in OUTPUT_NAMES:
        assert got[key].shape == tuple(expected[key].shape)
        np.testing.assert_allclose(got[key], expected[key].numpy(), rtol=1e-3, atol=1e-4)
    assert max(compare_with_onnxruntime(model, path).values()) < 1e-3


def test_export_refuses_to_overwrite_and_checks_the_size(tmp_path):
    model = build_model(_small("yolact-fixed-r18-160"))
    path = tmp_path / "model.onnx"
    path.write_text("precious")
    with pytest.raises(FileExistsError, match="overwrite"):
        export_onnx(model, path, SIZE)
    assert path.read_text() == "precious"
    with pytest.raises(ValueError, match="image_size"):
        export_onnx(model, tmp_path / "other.onnx", 128)
    export_onnx(model, path, SIZE, overwrite=True)
    assert path.stat().st_size > 1000


def _run_dir(tmp_path, name: str = "yolact-fixed-r18-160", num_classes: int = 4):
    """A run directory as ``gmaiou train`` leaves it: config.json and checkpoint.pt."""
    cfg = get_config(name).with_num_classes(num_classes)
    torch.manual_seed(0)
    model = build_model(cfg)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    torch.save({"model": model.state_dict(), "epoch": 1}, run_dir / "checkpoint.pt")
    record = {"config_name": name, "config": cfg.to_dict()}
    (run_dir / "config.json").write_text(json.dumps(record))
    return cfg, run_dir


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err  # one line, no traceback
    return err[0]


def test_cli_exports_weights_and_runs(tmp_path, capsys):
    cfg, run_dir = _run_dir(tmp_path)
    out = tmp_path / "exported.onnx"
    # --config is optional: the run's config.json says what was trained
    assert main(["export", "--run", str(run_dir), "--onnx", str(out)]) == 0
    text = capsys.readouterr().out
    assert "4 classes" in text and "onnxruntime vs torch" in text
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    cls = session.run(["cls_logits"], {"images": np.zeros((1, 3, 160, 160), np.float32)})[0]
    assert cls.shape[-1] == 5  # 4 classes + background, read from the checkpoint
    # an existing output needs --force; a missing checkpoint is named
    args = ["export", "--config", cfg.name, "--run", str(run_dir), "--onnx", str(out)]
    assert main([*args, "--no-check"]) == 2
    assert "--force" in _one_line(capsys)
    assert main([*args, "--force", "--no-check"]) == 0
    missing = ["export", "--config", cfg.name, "--weights", str(tmp_path / "missing.pt")]
    assert main([*missing, "--onnx", str(tmp_path / "x.onnx")]) == 2
    assert "missing.pt" in capsys.readouterr().err
    assert not list(tmp_path.glob(".*.tmp")) and not list(tmp_path.glob(".*.onnx.*"))


def test_cli_config_must_agree_with_the_run(tmp_path, capsys):
    _, run_dir = _run_dir(tmp_path)  # a 160-px run
    out = tmp_path / "m.onnx"
    args = ["export", "--config", "yolact-fixed-r18-256", "--run", str(run_dir), "--onnx", str(out)]
    assert main(args) == 2
    line = _one_line(capsys)
    assert "--config yolact-fixed-r18-256" in line and "yolact-fixed-r18-160" in line
    assert not out.exists()
    # without a run, --config is needed
    assert main(["export", "--onnx", str(out)]) == 2
    assert "--config is required" in _one_line(capsys)


@pytest.mark.parametrize("case", ["folder", "parent_is_file", "unwritable"])
def test_cli_unwritable_outputs_are_one_line_errors(tmp_path, capsys, monkeypatch, case):
    _, run_dir = _run_dir(tmp_path)
    if case == "folder":
        target = tmp_path / "out.onnx"
        target.mkdir()
    elif case == "parent_is_file":
        (tmp_path / "afile").write_text("x")
        target = tmp_path / "afile" / "sub" / "m.onnx"
    else:
        target = tmp_path / "locked" / "m.onnx"
        target.parent.mkdir()
        target.parent.chmod(0o500)
        if os.access(target.parent, os.W_OK):  # root ignores the mode: refuse the write instead

            def refuse(*args, **kwargs):
                raise PermissionError(13, "Permission denied")

            monkeypatch.setattr("gmaiou.export.tempfile.mkstemp", refuse)
    assert main(["export", "--run", str(run_dir), "--onnx", str(target), "--no-check"]) == 2
    line = _one_line(capsys)
    assert str(target) in line and line.startswith("gmaiou export: error: cannot write")


def test_failed_export_under_force_keeps_the_old_file(tmp_path, monkeypatch):
    model = build_model(_small("yolact-fixed-r18-160"))
    path = tmp_path / "model.onnx"
    path.write_text("old export")

    def broken_export(module, args, f, **kwargs):
        with open(f, "w") as handle:
            handle.write("half")
        raise RuntimeError("export failed half-way")

    monkeypatch.setattr(torch.onnx, "export", broken_export)
    with pytest.raises(RuntimeError, match="half-way"):
        export_onnx(model, path, SIZE, overwrite=True)
    assert path.read_text() == "old export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]  # no temporary left
