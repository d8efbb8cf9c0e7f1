"""ONNX export: onnxruntime runs the exported forward and matches torch; the ``gmaiou export`` command."""

from __future__ import annotations

import dataclasses

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


def test_cli_exports_weights_and_runs(tmp_path, capsys):
    cfg = get_config("yolact-fixed-r18-160").with_num_classes(4)
    torch.manual_seed(0)
    model = build_model(cfg)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    torch.save({"model": model.state_dict(), "epoch": 1}, run_dir / "checkpoint.pt")
    out = tmp_path / "exported.onnx"
    assert main(["export", "--config", cfg.name, "--run", str(run_dir), "--onnx", str(out)]) == 0
    text = capsys.readouterr().out
    assert "4 classes" in text and "onnxruntime vs torch" in text
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    cls = session.run(["cls_logits"], {"images": np.zeros((1, 3, 160, 160), np.float32)})[0]
    assert cls.shape[-1] == 5  # 4 classes + background, read from the checkpoint
    # an existing output needs --force; a missing checkpoint is named
    assert (
        main(
            [
                "export",
                "--config",
                cfg.name,
                "--run",
                str(run_dir),
                "--onnx",
                str(out),
                "--no-check",
            ]
        )
        == 2
    )
    assert "--force" in capsys.readouterr().err
    assert (
        main(
            [
                "export",
                "--config",
                cfg.name,
                "--run",
                str(run_dir),
                "--onnx",
                str(out),
                "--force",
                "--no-check",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "export",
                "--config",
                cfg.name,
                "--weights",
                str(tmp_path / "missing.pt"),
                "--onnx",
                str(tmp_path / "x.onnx"),
            ]
        )
        == 2
    )
    assert "missing.pt" in capsys.readouterr().err
