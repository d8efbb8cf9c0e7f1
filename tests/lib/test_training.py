"""Training pieces: the learning-rate schedule, atomic checkpoints, RNG capture, the resumable
sampler, run-directory rules, and a smoke training run of every preset family on the CPU."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
import torch

from gmaiou.devices import resolve_device
from gmaiou.runs import (
    load_checkpoint,
    prepare_run_dir,
    read_record,
    resolve_data_root,
    save_checkpoint,
    write_json,
)
from gmaiou.training.checkpoint import capture_rng_state, restore_rng_state
from gmaiou.training.distributed import ResumableSampler
from gmaiou.training.schedule import LrSchedule, build_scheduler, steps_to_iterations

# --------------------------------------------------------------------------- schedule


def test_warmup_is_linear_from_ratio_to_one():
    s = LrSchedule(total_iters=100, warmup_iters=10, warmup_ratio=0.1, kind="step")
    assert s(0) == pytest.approx(0.1)
    assert s(5) == pytest.approx(0.1 + 0.9 * 0.5)
    assert s(10) == pytest.approx(1.0)
    assert s(50) == pytest.approx(1.0)


def test_step_schedule_decays_by_gamma_at_each_step():
    s = LrSchedule(total_iters=100, kind="step", step_iters=(20, 42), gamma=0.1)
    assert [s(19), s(20), s(41), s(42), s(99)] == pytest.approx([1.0, 0.1, 0.1, 0.01, 0.01])


def test_step_epochs_convert_to_iterations():
    assert steps_to_iterations((20, 42, 49, 52), 10) == (200, 420, 490, 520)


def test_cosine_schedule_hand_values():
    s = LrSchedule(total_iters=100, kind="cosine")
    assert s(0) == pytest.approx(1.0)
    assert s(50) == pytest.approx(0.5)
    assert s(100) == pytest.approx(0.0, abs=1e-12)
    assert s(150) == pytest.approx(0.0, abs=1e-12)  # clamped past the end
    warm = LrSchedule(total_iters=100, warmup_iters=10, warmup_ratio=0.5, kind="cosine")
    assert warm(0) == pytest.approx(0.5)  # warm-up multiplies the decay


def test_schedule_rejects_bad_settings():
    with pytest.raises(ValueError, match="unknown learning-rate schedule 'poly'"):
        LrSchedule(total_iters=10, kind="poly")
    with pytest.raises(ValueError, match="warmup_ratio"):
        LrSchedule(total_iters=10, warmup_iters=2, warmup_ratio=0.0)
    with pytest.raises(ValueError, match="total_iters"):
        LrSchedule(total_iters=0)


def test_scheduler_sets_lr_per_iteration_and_resumes_from_state():
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=0.2)
    sched = build_scheduler(
        opt, LrSchedule(total_iters=10, warmup_iters=4, warmup_ratio=0.25, kind="cosine")
    )
    lrs = []
    for _ in range(6):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    state = sched.state_dict()
    opt2 = torch.optim.SGD([param], lr=0.2)
    sched2 = build_scheduler(
        opt2, LrSchedule(total_iters=10, warmup_iters=4, warmup_ratio=0.25, kind="cosine")
    )
    sched2.load_state_dict(state)
    opt2.param_groups[0]["lr"] = sched2.get_last_lr()[0]
    assert lrs[0] == pytest.approx(0.2 * 0.25)
    assert opt2.param_groups[0]["lr"] == pytest.approx(opt.param_groups[0]["lr"])
    sched.step()
    sched2.step()
    assert opt2.param_groups[0]["lr"] == pytest.approx(opt.param_groups[0]["lr"])


# --------------------------------------------------------------------------- checkpoints


def test_rng_state_round_trip_through_a_checkpoint(tmp_path):
    random.seed(3)
    np.random.seed(3)
    torch.manual_seed(3)
    np.random.normal()  # leave a cached Gaussian in NumPy's state
    state = capture_rng_state()
    save_checkpoint(tmp_path / "c.pt", {"rng": state})
    expected = (random.random(), np.random.normal(), np.random.rand(), torch.rand(3))
    restore_rng_state(load_checkpoint(tmp_path / "c.pt")["rng"])  # weights_only load
    got = (random.random(), np.random.normal(), np.random.rand(), torch.rand(3))
    assert got[:3] == expected[:3]
    assert torch.equal(got[3], expected[3])


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"iteration": 1})

    def crash(obj, handle):
        handle.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"iteration": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)["iteration"] == 1  # the old checkpoint survived intact
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temporary left


def test_missing_or_corrupt_checkpoint_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.pt"):
        load_checkpoint(tmp_path / "nothing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.pt"):
        load_checkpoint(bad)


# --------------------------------------------------------------------------- sampler


def test_resumable_sampler_replays_the_rest_of_an_epoch():
    data = list(range(23))
    full = ResumableSampler(data, seed=7)
    full.set_epoch(2)
    order = list(full)
    assert sorted(order) == data
    part = ResumableSampler(data, seed=7)
    part.set_epoch(2, start=8)
    assert list(part) == order[8:]
    assert len(part) == 15
    other = ResumableSampler(data, seed=7)
    other.set_epoch(3)
    assert list(other) != order  # a new permutation each epoch


def test_resumable_sampler_shards_cover_the_epoch():
    data = list(range(10))
    shards = []
    for rank in range(2):
        s = ResumableSampler(data, num_replicas=2, rank=rank, seed=1)
        s.set_epoch(0)
        shards.append(list(s))
    assert sorted(shards[0] + shards[1]) == data
    with pytest.raises(ValueError, match="start"):
        shards_sampler = ResumableSampler(data, num_replicas=2, rank=0)
        shards_sampler.set_epoch(0, start=6)


# --------------------------------------------------------------------------- run directory


def test_run_dir_refused_unless_resume_or_overwrite(tmp_path):
    run = tmp_path / "run"
    prepare_run_dir(run, resume=False, overwrite=False)  # new: created
    assert run.is_dir()
    (run / "config.json").write_text("{}")
    (run / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="--resume .* --overwrite"):
        prepare_run_dir(run, resume=False, overwrite=False)
    with pytest.raises(FileNotFoundError, match="checkpoint.pt"):
        prepare_run_dir(run, resume=True, overwrite=False)
    with pytest.raises(ValueError, match="contradict"):
        prepare_run_dir(run, resume=True, overwrite=True)
    prepare_run_dir(run, resume=False, overwrite=True)
    assert not (run / "config.json").exists()
    assert (run / "notes.txt").read_text() == "mine"  # only our own files are removed


def test_run_record_round_trip_and_clear_errors(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(FileNotFoundError, match="run directory not found"):
        read_record(run)
    run.mkdir()
    with pytest.raises(FileNotFoundError, match="config.json not found"):
        read_record(run)
    write_json(run / "config.json", {"steps": (2, 3), "root": tmp_path, "ap": float("nan")})
    assert read_record(run) == {"steps": [2, 3], "root": str(tmp_path), "ap": None}
    assert [p.name for p in run.iterdir()] == ["config.json"]  # no temporary left
    for text in ("[1, 2]", "{"):
        (run / "config.json").write_text(text)
        with pytest.raises(ValueError, match="is not a gmaiou run record"):
            read_record(run)


def test_missing_data_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no_such_dataset"):
        resolve_data_root(tmp_path / "no_such_dataset")


def test_unavailable_cuda_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda")
    assert resolve_device(None) == torch.device("cpu")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu9")


def test_metrics_lines_are_json(tmp_path):
    from gmaiou.training.trainer import _truncate_metrics

    path = tmp_path / "metrics.jsonl"
    path.write_text(
        "".join(json.dumps({"iteration": i, "loss": 1.0 / i}) + "\n" for i in range(1, 6))
        + '{"iter'
    )
    _truncate_metrics(path, 3)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["iteration"] for r in lines] == [1, 2, 3]
    assert all(math.isfinite(r["loss"]) for r in lines)


# --------------------------------------------------------------------------- precision policy


def _flags() -> tuple[bool, bool, bool]:
    return (
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
        torch.backends.cudnn.benchmark,
    )


@pytest.fixture
def saved_flags():
    saved = _flags()
    yield saved
    (
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
        torch.backends.cudnn.benchmark,
    ) = saved


@pytest.mark.parametrize(("tf32", "deterministic"), [(True, False), (False, False), (True, True)])
def test_tf32_is_set_for_a_cuda_run_and_restored_after(
    tmp_path, monkeypatch, saved_flags, tf32, deterministic
):
    """Both TF32 flags follow ``train.tf32`` inside :func:`train` on CUDA (deterministic runs
    too), cuDNN autotuning follows ``deterministic``; the previous flags come back after,
    also when the run raises. The device is only named: no CUDA call is made."""
    from gmaiou.configs import apply_settings, get_config
    from gmaiou.training import trainer
    from gmaiou.training.distributed import DistContext

    torch.backends.cuda.matmul.allow_tf32 = not tf32
    torch.backends.cudnn.allow_tf32 = not tf32
    before = _flags()
    seen = []

    def fake_train(config, options, ctx, *rest):
        seen.append((ctx.device.type, _flags()))
        raise RuntimeError("stop here")

    monkeypatch.setattr(trainer, "_train", fake_train)
    config = apply_settings(get_config("yolact-fixed-r18-160"), [f"train.tf32={str(tf32).lower()}"])
    options = trainer.RunOptions(out_dir=tmp_path / "run", deterministic=deterministic)
    with pytest.raises(RuntimeError, match="stop here"):
        trainer.train(config, options, ctx=DistContext(device=torch.device("cuda", 0)))
    assert seen == [("cuda", (tf32, tf32, not deterministic))]
    assert _flags() == before


def test_tf32_flags_are_not_touched_on_the_cpu(tmp_path, monkeypatch, saved_flags):
    from gmaiou.configs import get_config
    from gmaiou.training import trainer

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = True
    seen = []
    monkeypatch.setattr(
        trainer, "_train", lambda config, options, ctx, *rest: seen.append(_flags()[:2])
    )
    trainer.train(
        get_config("yolact-fixed-r18-160"), trainer.RunOptions(out_dir=tmp_path, device="cpu")
    )
    assert seen == [(False, True)] and _flags()[:2] == (False, True)


def test_tf32_setting_round_trips_through_the_config():
    from gmaiou.configs import Config, apply_settings, get_config

    preset = get_config("gmayolact-atss-gmaiou-r50-550")
    assert preset.train.tf32 is True and preset.train.amp is True
    off = apply_settings(preset, ["train.tf32=false"])
    assert off.train.tf32 is False
    assert Config.from_dict(json.loads(off.to_json())) == off
    # A config.json written before the field existed reads as the default (on).
    old = off.to_dict()
    del old["train"]["tf32"]
    assert Config.from_dict(old).train.tf32 is True


# --------------------------------------------------------------------------- smoke runs

#: One preset per family: fixed-IoU YOLACT, ATSS YOLACT with every measure, GmaYOLACT.
SMOKE_PRESETS = (
    "yolact-fixed-r18-160",
    "yolact-atss-iou-r18-160",
    "yolact-atss-giou-r18-160",
    "yolact-atss-diou-r18-160",
    "yolact-atss-maiou-r18-160",
    "yolact-atss-gmaiou-r18-160",
    "gmayolact-atss-gmaiou-r18-160",
)


@pytest.mark.parametrize("name", SMOKE_PRESETS)
def test_smoke_training_run_of_every_preset_family(tmp_path, name):
    from gmaiou.configs import apply_overrides, get_config
    from gmaiou.data.synthetic import ensure_synthetic
    from gmaiou.training.trainer import RunOptions, train

    root = ensure_synthetic(num_images=10, size=160, progress=False)
    config = apply_overrides(get_config(name), {"epochs": 1, "batch_size": 2})
    options = RunOptions(
        out_dir=tmp_path / "run",
        data_root=root,
        num_workers=0,
        max_iters=2,
        progress=False,
        eval_batch_size=2,
    )
    result = train(config, options, config_name=name)
    assert result.iterations == 2 and not result.finished
    rows = [
        json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    assert len(rows) == 2 and all(math.isfinite(r["loss"]) for r in rows)
    assert set(result.metrics) == {"bbox", "segm"}  # evaluated on the val split at the end
    assert math.isfinite(result.metrics["segm"]["oLRP"])
