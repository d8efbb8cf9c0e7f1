"""Resume continues bit-exactly: N iterations in one go equal k iterations, a stop (Ctrl-C or
``max_iters``), and a resumed run to N, in the final weights, optimizer state and logged losses.

Tiny setting: the 160-pixel ResNet-18 preset on 8 synthetic images, batch 2 (4 iterations per
epoch), YOLACT's random augmentation on, no loader workers, deterministic algorithms.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch

from gmaiou.configs import apply_overrides, get_config
from gmaiou.data.synthetic import ensure_synthetic
from gmaiou.runs import load_checkpoint
from gmaiou.training.checkpoint import drop_training_state
from gmaiou.training.trainer import RunOptions, train

CONFIG = "yolact-atss-gmaiou-r18-160"
TOTAL = 6  # iterations: one whole epoch of 4 and half of the next


@pytest.fixture(scope="module")
def data_root() -> Path:
    return ensure_synthetic(num_images=10, size=160, progress=False)


def _config():
    return apply_overrides(get_config(CONFIG), {"epochs": 3, "batch_size": 2, "warmup_iters": 2})


def _options(out: Path, data_root: Path, **kw) -> RunOptions:
    base = dict(
        out_dir=out,
        data_root=data_root,
        num_workers=0,
        eval_split=None,
        progress=False,
        deterministic=True,
        ckpt_every=0,
        seed=3,
    )
    base.update(kw)
    return RunOptions(**base)


def _losses(run: Path) -> list[tuple[int, int, int, float, float]]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["epoch"], r["iter"], r["iteration"], r["lr"], r["loss"]) for r in rows]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data_root):
    """The uninterrupted run of TOTAL iterations."""
    out = tmp_path_factory.mktemp("reference")
    result = train(_config(), _options(out, data_root, max_iters=TOTAL), config_name=CONFIG)
    assert result.iterations == TOTAL
    return out, {k: v.clone() for k, v in result.model.state_dict().items()}


def _assert_same_run(resumed_dir: Path, resumed_state: dict, reference) -> None:
    ref_dir, ref_state = reference
    assert resumed_state.keys() == ref_state.keys()
    differing = [k for k in ref_state if not torch.equal(ref_state[k], resumed_state[k])]
    assert not differing, f"weights differ after resume: {differing[:5]}"
    assert _losses(resumed_dir) == _losses(ref_dir)
    ref_opt = load_checkpoint(ref_dir / "checkpoint.pt")["optimizer"]["state"]
    res_opt = load_checkpoint(resumed_dir / "checkpoint.pt")["optimizer"]["state"]
    assert ref_opt.keys() == res_opt.keys()
    for i in ref_opt:  # AdamW (the CPU presets): step, exp_avg, exp_avg_sq; SGD: momentum_buffer
        assert ref_opt[i].keys() == res_opt[i].keys()
        assert all(
            torch.equal(torch.as_tensor(ref_opt[i][k]), torch.as_tensor(res_opt[i][k]))
            for k in ref_opt[i]
        ), f"optimizer state of parameter {i} differs after resume"


def test_ctrl_c_mid_epoch_then_resume_is_bit_exact(tmp_path, data_root, reference):
    out = tmp_path / "run"
    handler_before = signal.getsignal(signal.SIGINT)

    def interrupt(iteration: int, losses: dict) -> None:
        if iteration == 3:  # Ctrl-C during the 3rd of 4 iterations of epoch 0
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt, match="checkpoint written"):
        train(
            _config(),
            _options(out, data_root, max_iters=TOTAL),
            config_name=CONFIG,
            on_iteration=interrupt,
        )
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert (ckpt["epoch"], ckpt["batch_in_epoch"], ckpt["iteration"]) == (0, 3, 3)
    assert len(_losses(out)) == 3
    assert signal.getsignal(signal.SIGINT) is handler_before  # handler restored

    result = train(
        _config(), _options(out, data_root, max_iters=TOTAL, resume=True), config_name=CONFIG
    )
    assert result.iterations == TOTAL
    assert not torch.are_deterministic_algorithms_enabled()  # the global setting is given back
    _assert_same_run(out, result.model.state_dict(), reference)


def test_stop_at_epoch_end_then_resume_is_bit_exact(tmp_path, data_root, reference):
    out = tmp_path / "run"
    first = train(_config(), _options(out, data_root, max_iters=4), config_name=CONFIG)
    assert first.iterations == 4 and not first.finished
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert (ckpt["epoch"], ckpt["batch_in_epoch"]) == (1, 0)  # the next batch opens epoch 1
    # A crash after the checkpoint leaves stray metric lines; resume drops them.
    with (out / "metrics.jsonl").open("a") as f:
        f.write(json.dumps({"iteration": 5, "loss": 1.0}) + "\n")
    result = train(
        _config(), _options(out, data_root, max_iters=TOTAL, resume=True), config_name=CONFIG
    )
    _assert_same_run(out, result.model.state_dict(), reference)


def test_resume_refuses_a_different_world_size(tmp_path, data_root):
    out = tmp_path / "run"
    train(_config(), _options(out, data_root, max_iters=1), config_name=CONFIG)
    ckpt = load_checkpoint(out / "checkpoint.pt")
    ckpt["world_size"] = 2
    torch.save(ckpt, out / "checkpoint.pt")
    with pytest.raises(ValueError, match="written by 2 processes"):
        train(_config(), _options(out, data_root, max_iters=2, resume=True), config_name=CONFIG)


def test_weights_only_checkpoint_keeps_the_weights_and_refuses_to_resume(tmp_path, data_root):
    out = tmp_path / "run"
    result = train(_config(), _options(out, data_root, max_iters=1), config_name=CONFIG)
    full = (out / "checkpoint.pt").stat().st_size
    saved = drop_training_state(out / "checkpoint.pt")
    assert 0 < saved < full and drop_training_state(out / "checkpoint.pt") == 0
    slim = load_checkpoint(out / "checkpoint.pt")
    assert slim["optimizer"] is None and slim["iteration"] == 1
    weights = result.model.state_dict()
    assert all(torch.equal(slim["model"][k], weights[k]) for k in weights)
    with pytest.raises(ValueError, match="holds the weights only"):
        train(_config(), _options(out, data_root, max_iters=2, resume=True), config_name=CONFIG)


def test_bad_image_mid_epoch_checkpoints_then_resume_is_bit_exact(
    tmp_path, data_root, reference, monkeypatch
):
    from gmaiou.data import CocoInstances

    out = tmp_path / "run"
    original = CocoInstances.load
    calls = {"n": 0}

    def load(self, index, apply_transform=True):
        calls["n"] += 1
        if calls["n"] == 5:  # the first image of the 3rd batch (batch 2)
            raise ValueError(f"cannot decode image file {self.image_path(index)}: truncated")
        return original(self, index, apply_transform)

    monkeypatch.setattr(CocoInstances, "load", load)
    with pytest.raises(ValueError, match="cannot decode image file") as err:
        train(_config(), _options(out, data_root, max_iters=TOTAL), config_name=CONFIG)
    assert "checkpoint of iteration 2 written" in " ".join(err.value.__notes__)
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert (ckpt["epoch"], ckpt["batch_in_epoch"], ckpt["iteration"]) == (0, 2, 2)
    assert len(_losses(out)) == 2

    monkeypatch.setattr(CocoInstances, "load", original)  # the image is fixed
    result = train(
        _config(), _options(out, data_root, max_iters=TOTAL, resume=True), config_name=CONFIG
    )
    assert result.iterations == TOTAL
    _assert_same_run(out, result.model.state_dict(), reference)


def test_nan_loss_checkpoints_the_last_finite_iteration_then_resume(
    tmp_path, data_root, reference, monkeypatch
):
    from gmaiou.models.yolact import YOLACT
    from gmaiou.training.trainer import TrainingDiverged

    out = tmp_path / "run"
    original = YOLACT.loss
    calls = {"n": 0}

    def loss(self, outputs, batch):
        calls["n"] += 1
        losses = original(self, outputs, batch)
        if calls["n"] == 5:  # iteration 5, the 2nd of epoch 1
            losses = {**losses, "loss": losses["loss"] * float("nan")}
        return losses

    monkeypatch.setattr(YOLACT, "loss", loss)
    with pytest.raises(TrainingDiverged, match="non-finite loss at iteration 5") as err:
        train(_config(), _options(out, data_root, max_iters=TOTAL), config_name=CONFIG)
    assert "checkpoint of iteration 4 written" in " ".join(err.value.__notes__)
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert (ckpt["epoch"], ckpt["batch_in_epoch"], ckpt["iteration"]) == (1, 0, 4)
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())

    monkeypatch.setattr(YOLACT, "loss", original)
    result = train(
        _config(), _options(out, data_root, max_iters=TOTAL, resume=True), config_name=CONFIG
    )
    _assert_same_run(out, result.model.state_dict(), reference)


def test_run_that_never_checkpointed_resumes_from_scratch(tmp_path, data_root, reference):
    out = tmp_path / "run"
    out.mkdir()
    # A run killed during its first iteration: a record, a stray metric line, no checkpoint.
    ref_dir, _ = reference
    (out / "config.json").write_text((ref_dir / "config.json").read_text())
    (out / "metrics.jsonl").write_text(json.dumps({"iteration": 1, "loss": 9.0}) + "\n")
    result = train(
        _config(), _options(out, data_root, max_iters=TOTAL, resume=True), config_name=CONFIG
    )
    assert result.iterations == TOTAL
    _assert_same_run(out, result.model.state_dict(), reference)


def test_resume_without_a_run_is_still_refused(tmp_path, data_root):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(FileNotFoundError, match="cannot resume: no checkpoint"):
        train(_config(), _options(out, data_root, max_iters=1, resume=True), config_name=CONFIG)
    assert (out / "notes.txt").read_text() == "mine"


def test_out_of_memory_after_the_forward_then_resume_is_bit_exact(
    tmp_path, data_root, reference, monkeypatch
):
    """An OOM after the forward ran (BatchNorm statistics already moved) loses nothing."""
    from gmaiou.models.yolact import YOLACT

    out = tmp_path / "run"
    original = YOLACT.forward
    calls = {"n": 0}

    def forward(self, images):
        result = original(self, images)
        calls["n"] += 1
        if calls["n"] == 3:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return result

    monkeypatch.setattr(YOLACT, "forward", forward)
    with pytest.raises(torch.OutOfMemoryError) as err:
        train(_config(), _options(out, data_root, max_iters=TOTAL), config_name=CONFIG)
    assert "checkpoint of iteration 2 written" in " ".join(err.value.__notes__)
    monkeypatch.setattr(YOLACT, "forward", original)
    result = train(
        _config(), _options(out, data_root, max_iters=TOTAL, resume=True), config_name=CONFIG
    )
    _assert_same_run(out, result.model.state_dict(), reference)
