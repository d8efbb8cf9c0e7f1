"""The global batch: per-process split, linear learning-rate scaling, the override rules."""

from __future__ import annotations

import dataclasses

import pytest

from gmaiou.configs import TrainConfig, apply_overrides, get_config
from gmaiou.training.batch import batch_message, per_process_train, scaled_lr, split_batch


def test_split_batch_divides_or_names_the_problem():
    assert split_batch(32, 1) == 32 and split_batch(32, 4) == 8 and split_batch(8, 8) == 1
    with pytest.raises(ValueError, match="not divisible by the 3 processes"):
        split_batch(32, 3)
    with pytest.raises(ValueError, match="world_size"):
        split_batch(8, 0)


def test_linear_scaling_rule():
    assert scaled_lr(4e-3, 32, 32) == pytest.approx(4e-3)
    assert scaled_lr(4e-3, 32, 8) == pytest.approx(1e-3)
    assert scaled_lr(1.5e-3, 8, 64) == pytest.approx(1.2e-2)


def test_reference_run_on_any_number_of_processes():
    train = get_config("yolact-atss-gmaiou-r50-550").train
    assert (train.batch_size, train.lr_batch, train.lr) == (32, 32, 4e-3)
    for n, per in ((1, 32), (4, 8), (8, 4)):
        local = per_process_train(train, n)
        assert (local.batch_size, local.lr) == (per, pytest.approx(4e-3))
        assert local.warmup_iters == train.warmup_iters  # iterations of the reference run
        assert batch_message(train, n) is None


def test_a_changed_global_batch_scales_the_rate_and_says_so(capsys):
    config = apply_overrides(get_config("yolact-atss-gmaiou-r50-550"), {"batch_size": 16})
    train = config.train
    assert (train.batch_size, train.lr_batch, train.lr) == (16, 32, 4e-3)
    local = per_process_train(train, 2, announce=True)
    assert (local.batch_size, local.lr) == (8, pytest.approx(2e-3))
    err = capsys.readouterr().err
    assert "global batch 16 (2 x 8) instead of 32" in err and "0.004 to 0.002" in err
    per_process_train(train, 2, announce=False)
    assert capsys.readouterr().err == ""


def test_a_given_rate_is_the_rate_of_the_given_batch():
    config = apply_overrides(get_config("yolact-fixed-r18-160"), {"batch_size": 2, "lr": 0.01})
    assert (config.train.lr_batch, per_process_train(config.train, 1).lr) == (2, 0.01)
    config = apply_overrides(get_config("yolact-fixed-r18-160"), {"lr": 0.01})
    assert config.train.lr_batch == config.train.batch_size == 4


def test_lr_batch_defaults_to_the_batch_and_survives_replace():
    train = TrainConfig(batch_size=8)
    assert train.lr_batch == 8
    assert dataclasses.replace(train, batch_size=24).lr_batch == 8
    with pytest.raises(ValueError, match="train.lr_batch"):
        TrainConfig(lr_batch=0)
