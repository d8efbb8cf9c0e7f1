"""Training curves in the run folder: metrics.csv, curves.png (with or without matplotlib)
and TensorBoard event files where the package is installed; a resume keeps them consistent."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from PIL import Image

import gmaiou.training.curves as curves
from gmaiou.configs import apply_overrides, get_config
from gmaiou.data.synthetic import ensure_synthetic
from gmaiou.training.curves import AP_COLUMNS, read_metrics_csv, write_curves
from gmaiou.training.trainer import RunOptions, train

CONFIG = "yolact-atss-gmaiou-r18-160"
LOSSES = ["loss", "loss_cls", "loss_box", "loss_mask", "loss_semantic"]


def _train(run: Path, max_iters: int, resume: bool = False) -> None:
    # 8 training images, batch 2: one epoch of 4 iterations.
    config = apply_overrides(get_config(CONFIG), {"epochs": 1, "batch_size": 2})
    data = ensure_synthetic(num_images=10, size=160, progress=False)
    options = RunOptions(
        out_dir=run,
        data_root=data,
        max_iters=max_iters,
        num_workers=0,
        progress=False,
        resume=resume,
    )
    train(config, options, config_name=CONFIG)


@pytest.fixture(scope="module")
def two_iterations(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("curves") / "run"
    _train(run, max_iters=2)
    return run


def _copy(run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run, tmp_path / "run", ignore=shutil.ignore_patterns("*.pt")))


def _is_png(path: Path) -> bool:
    with Image.open(path) as image:
        image.verify()
        return image.format == "PNG"


def test_two_iterations_give_two_rows_and_the_ap_of_the_evaluation(two_iterations):
    with open(two_iterations / "metrics.csv") as handle:
        header = handle.readline().strip().split(",")
    assert header == ["iteration", "epoch", "lr", *LOSSES, "seconds", *AP_COLUMNS]
    rows = read_metrics_csv(two_iterations / "metrics.csv")
    assert [r["iteration"] for r in rows] == [1, 2]
    logged = [json.loads(line) for line in (two_iterations / "metrics.jsonl").open()]
    for row, record in zip(rows, logged):
        assert row["lr"] == record["lr"] and row["loss_mask"] == record["mask"]
        assert row["seconds"] == record["time"] and row["epoch"] == 0
    evaluation = json.loads((two_iterations / "eval.json").read_text())
    assert all(rows[0][c] is None for c in AP_COLUMNS)  # evaluated at the end only
    assert rows[1]["box_AP50"] == pytest.approx(evaluation["bbox"]["AP50"])
    assert _is_png(two_iterations / "curves.png")


def test_curves_png_is_drawn_with_pillow_when_matplotlib_is_absent(
    tmp_path, monkeypatch, two_iterations
):
    run = _copy(two_iterations, tmp_path)
    (run / "curves.png").unlink()
    drawn = []
    for name in ("_draw_pillow", "_draw_matplotlib"):
        real = getattr(curves, name)
        monkeypatch.setattr(
            curves, name, lambda *a, _real=real, _name=name: drawn.append(_name) or _real(*a)
        )
    with monkeypatch.context() as blocked:
        blocked.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
        write_curves(run)
    assert drawn == ["_draw_pillow"] and _is_png(run / "curves.png")
    pytest.importorskip("matplotlib")
    write_curves(run)
    assert drawn[-1] == "_draw_matplotlib" and _is_png(run / "curves.png")
    # The rewrite keeps the evaluation's AP, read back from the previous metrics.csv.
    assert read_metrics_csv(run / "metrics.csv") == read_metrics_csv(two_iterations / "metrics.csv")


def test_resume_appends_without_duplicate_iterations(tmp_path, two_iterations):
    run = Path(shutil.copytree(two_iterations, tmp_path / "run"))
    # A process that died after iteration 3 but before its checkpoint left this line behind.
    with open(run / "metrics.jsonl", "a") as handle:
        handle.write(json.dumps({"epoch": 0, "iter": 3, "iteration": 3, "lr": 1.0, "loss": 1e9})
                     + "\n")  # fmt: skip
    _train(run, max_iters=4, resume=True)
    rows = read_metrics_csv(run / "metrics.csv")
    assert [r["iteration"] for r in rows] == [1, 2, 3, 4]
    assert rows[2]["loss"] != 1e9
    assert [r["iteration"] for r in rows if r["mask_AP"] is not None] == [2, 4]
    first = read_metrics_csv(two_iterations / "metrics.csv")
    assert rows[:2] == first  # what was there stays as it was
    assert _is_png(run / "curves.png")


def test_tensorboard_is_skipped_without_the_package(tmp_path, monkeypatch, two_iterations):
    run = _copy(two_iterations, tmp_path)
    shutil.rmtree(run / "tensorboard", ignore_errors=True)  # written where the package is
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    write_curves(run)
    assert not (run / "tensorboard").exists()
    assert (run / "metrics.csv").is_file()


def test_tensorboard_event_files_where_the_package_is_installed(tmp_path, two_iterations):
    pytest.importorskip("tensorboard")
    run = _copy(two_iterations, tmp_path)
    write_curves(run)
    write_curves(run)  # rewritten, not appended: one event file
    assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 1
