"""Presets, their names and structure, validation, JSON round trip and the ``gmaiou configs`` command."""

from __future__ import annotations

import dataclasses
import json

import pytest

from gmaiou.cli import main
from gmaiou.configs import (
    ASSIGNER_NAMES,
    PRESETS,
    AssignerConfig,
    Config,
    LossConfig,
    ModelConfig,
    PostprocessConfig,
    TrainConfig,
    apply_overrides,
    apply_settings,
    get_config,
    list_configs,
    with_num_classes,
)
from gmaiou.training.batch import per_process_train


def test_names_follow_the_pattern_and_match_their_contents():
    names = list_configs()
    assert len(names) == len(set(names)) == len(PRESETS)
    for name in names:
        cfg = get_config(name)
        assert cfg.name == name
        model, rest = name.split("-", 1)
        assigner, backbone, size = rest.rsplit("-", 2)
        assert cfg.model.arch == model
        assert cfg.model.backbone == backbone
        assert cfg.model.image_size == int(size)
        measure = ASSIGNER_NAMES[assigner]
        if measure is None:
            assert (cfg.assigner.kind, cfg.model.anchors, cfg.loss.mask_weight) == (
                "fixed",
                "yolact",
                6.125,
            )
        else:
            assert (cfg.assigner.kind, cfg.assigner.measure, cfg.model.anchors) == (
                "atss",
                measure,
                "atss",
            )


def test_paper_presets_have_the_papers_settings():
    fixed = get_config("yolact-fixed-r50-550")
    assert (
        fixed.model.fpn_channels == 256
        and fixed.model.num_protos == 32
        and fixed.model.num_classes == 80
    )
    assert (
        fixed.loss.cls_weight,
        fixed.loss.box_weight,
        fixed.loss.mask_weight,
        fixed.loss.semantic_weight,
    ) == (
        1.0,
        1.5,
        6.125,
        1.0,
    )
    assert fixed.loss.ohem_ratio == 3
    assert (
        fixed.postprocess.score_thr,
        fixed.postprocess.nms_iou,
        fixed.postprocess.top_k,
        fixed.postprocess.max_dets,
    ) == (0.05, 0.5, 200, 100)
    t = fixed.train
    assert (t.epochs, t.batch_size, t.lr, t.momentum, t.weight_decay, t.grad_clip) == (
        55,
        32,
        4e-3,
        0.9,
        5e-4,
        35,
    )
    assert (t.warmup_iters, t.warmup_ratio, t.schedule, t.steps) == (
        500,
        0.1,
        "step",
        (20, 42, 49, 52),
    )
    atss = get_config("yolact-atss-gmaiou-r50-700")
    assert (
        atss.loss.mask_weight == 8
        and atss.assigner.topk == 9
        and atss.assigner.measure == "gmaiou-mask"
    )
    assert get_config("yolact-atss-maiou-r50-400").assigner.measure == "gmaiou-box"
    gma = get_config("gmayolact-atss-gmaiou-r50-550")
    m = gma.model
    assert (m.upsample, m.dcn, m.anchor_scales, m.classifier) == ("carafe", True, 2, "sigmoid")
    assert gma.loss.kind == "ranksort" and gma.loss.self_balance
    assert gma.train.schedule == "cosine"
    assert gma.postprocess.score_thr > fixed.postprocess.score_thr


def test_gmayolact_optimisation_follows_rs_yolact_at_a_single_gpu_batch():
    for size in (550, 700):
        t = get_config(f"gmayolact-atss-gmaiou-r50-{size}").train
        # RS-YOLACT: lr 6e-3 for 4 x 8 images, no clipping, cosine; GmaYOLACT: one GPU x 8.
        assert (t.batch_size, t.lr, t.lr_batch, t.grad_clip) == (8, 6e-3, 32, None)
        assert per_process_train(t, 1).lr == pytest.approx(1.5e-3)
        assert (t.schedule, t.min_lr_ratio, t.warmup_iters, t.warmup_ratio, t.epochs) == (
            "cosine",
            0.0,
            500,
            0.1,
            55,
        )
    assert get_config("gmayolact-atss-gmaiou-r50-550").postprocess.score_thr == 0.40


def test_new_fidelity_fields_keep_the_cpu_presets_as_they_were():
    today = {
        "backbone_weights": "none",
        "fpn_extras": "separate",
        "head_init": "prior",
        "anchor_offset": 0.5,
        "target_resize": "area",
        "resize_antialias": True,
    }
    for name, cfg in PRESETS.items():
        if cfg.model.backbone in ("r18", "r34"):
            assert {k: getattr(cfg.model, k) for k in today} == today, name
            assert cfg.postprocess.pre_nms_per_level is None, name
            assert cfg.train.lr_batch == cfg.train.batch_size, name
            assert not cfg.augment.channel_swap, name
            fixed = cfg.assigner.kind == "fixed"
            assert cfg.model.anchor_scaling == ("sides-550" if fixed else "image"), name
        else:
            assert cfg.model.backbone_weights == "imagenet", name


def test_cpu_presets_share_the_structure():
    for name in (
        "yolact-atss-gmaiou-r18-160",
        "yolact-fixed-r18-160",
        "gmayolact-atss-gmaiou-r34-320",
    ):
        cfg = get_config(name)
        assert (
            cfg.model.image_size <= 320
            and cfg.train.batch_size <= 8
            and cfg.train.warmup_iters < 500
        )
    assert "gmayolact-fixed-r50-550" not in PRESETS  # GmaYOLACT is ATSS-based


@pytest.mark.parametrize(
    "bad", ["yolact-atss-gmaiou-r50-555", "yolact-atss-gmiou-r18-160", "nonsense", ""]
)
def test_unknown_names_give_a_clear_error(bad):
    with pytest.raises(ValueError, match="unknown config") as info:
        get_config(bad)
    assert "gmaiou configs" in str(info.value)


def test_close_matches_are_suggested():
    with pytest.raises(ValueError, match="yolact-atss-gmaiou-r50-550"):
        get_config("yolact-atss-gmaiou-r50-55")


def test_configs_are_frozen_and_num_classes_is_replaceable():
    cfg = get_config("yolact-fixed-r18-160")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.model.num_classes = 3  # type: ignore[misc]
    small = cfg.with_num_classes(3)
    assert small.model.num_classes == 3 and cfg.model.num_classes == 80
    assert with_num_classes(cfg, 5).model.num_classes == 5
    assert small.model.num_cls_outputs == 4
    assert (
        get_config("gmayolact-atss-gmaiou-r18-160").with_num_classes(3).model.num_cls_outputs == 3
    )
    with pytest.raises(ValueError, match="num_classes"):
        cfg.with_num_classes(0)


def test_invalid_fields_are_rejected_with_their_name():
    with pytest.raises(ValueError, match="model.backbone"):
        ModelConfig(backbone="r152")
    with pytest.raises(ValueError, match="model.image_size"):
        ModelConfig(image_size=16)
    with pytest.raises(ValueError, match="assigner.measure"):
        AssignerConfig(kind="atss", measure="dice")
    with pytest.raises(ValueError, match="loss.mask_weight"):
        LossConfig(mask_weight=-1)
    with pytest.raises(ValueError, match="postprocess.score_thr"):
        PostprocessConfig(score_thr=1.5)
    with pytest.raises(ValueError, match="train.schedule"):
        TrainConfig(schedule="linear")
    with pytest.raises(ValueError, match="assigner.kind"):
        Config("x", model=ModelConfig(anchors="atss"), assigner=AssignerConfig(kind="fixed"))
    with pytest.raises(ValueError, match="score_activation"):
        Config("x", postprocess=PostprocessConfig(score_activation="sigmoid"))


def test_apply_overrides_rescales_the_steps_and_pairs_the_rate_with_its_batch():
    base = get_config("yolact-fixed-r50-550")  # 55 epochs, steps (20, 42, 49, 52), batch 32
    assert apply_overrides(base, {"epochs": None, "lr": None}) is base
    short = apply_overrides(base, {"epochs": 11})
    assert short.train.epochs == 11
    assert short.train.steps == pytest.approx((4.0, 8.4, 9.8, 10.4))
    assert dataclasses.replace(short, train=base.train) == base  # nothing else changed
    kept = apply_overrides(base, {"epochs": 11, "steps": (5, 9)})
    assert kept.train.steps == (5, 9)
    assert apply_overrides(base, {"epochs": 55}).train.steps == base.train.steps
    rate = apply_overrides(base, {"batch_size": 8, "lr": 1e-3})
    assert (rate.train.batch_size, rate.train.lr, rate.train.lr_batch) == (8, 1e-3, 8)
    batch = apply_overrides(base, {"batch_size": 8})
    assert (batch.train.batch_size, batch.train.lr, batch.train.lr_batch) == (8, 4e-3, 32)


def test_overrides_and_settings_share_one_path():
    base = get_config("yolact-fixed-r50-550")
    assert apply_overrides(base, {"epochs": 11, "batch_size": 8}) == apply_settings(
        base, ["train.epochs=11", "train.batch_size=8", "train.steps=[4.0, 8.4, 9.8, 10.4]"]
    )
    with pytest.raises(
        ValueError, match=r"unknown setting 'train.epochz' \(did you mean epochs\?\)"
    ):
        apply_overrides(base, {"epochz": 3})
    with pytest.raises(ValueError, match="bad value in 'train.schedule=\"linear\"'"):
        apply_overrides(base, {"schedule": "linear"})
    with pytest.raises(ValueError, match="train.epochs must be a positive integer, got 0"):
        apply_overrides(base, {"epochs": 0})


def test_json_round_trip():
    for name in ("yolact-fixed-r50-550", "gmayolact-atss-gmaiou-r18-160"):
        cfg = get_config(name)
        assert Config.from_dict(json.loads(cfg.to_json())) == cfg
    with pytest.raises(ValueError, match="unknown keys in config.model"):
        Config.from_dict({"name": "x", "model": {"depth": 50}})


def test_cli_lists_names_one_per_line_and_prints_json(capsys):
    assert main(["configs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == list_configs()
    assert main(["configs", "yolact-atss-gmaiou-r18-160"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (
        data["name"] == "yolact-atss-gmaiou-r18-160"
        and data["assigner"]["measure"] == "gmaiou-mask"
    )
    assert main(["configs", "yolact-nope"]) == 2
    assert "unknown config" in capsys.readouterr().err
