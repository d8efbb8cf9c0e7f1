"""The experiment runner, grids, statistics and the CPU recipe's pieces (settings, scale jitter,
class mixes, optimizers)."""

from __future__ import annotations

import json
import math
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import numbers_in

from gmaiou.cli import build_parser
from gmaiou.configs import AugmentConfig, Config, apply_settings, get_config
from gmaiou.data.synthetic import CLASSES, generate, render_scene
from gmaiou.data.transforms import TrainTransform, mask_tight_boxes, sample_scale_window
from gmaiou.evaluation.run import load_run
from gmaiou.paper.experiments.grids import (
    CORE_ASSIGNERS,
    MOB_SHARE_PAIRS,
    PRIMARY_PAIRS,
    TABLE2_ASSIGNERS,
    get_grid,
)
from gmaiou.paper.experiments.runner import (
    RunSpec,
    SourceState,
    SyntheticData,
    load_records,
    record_path,
    run_one,
    source_state,
    spec_from_record,
)
from gmaiou.paper.experiments.stats import (
    describe_difference,
    format_mean_std,
    paired_differences,
    summary_table,
    t_critical,
)
from gmaiou.paper.paths import repo_root
from gmaiou.training.checkpoint import has_training_state, load_checkpoint
from gmaiou.training.schedule import build_optimizer

# ----------------------------------------------------------------------------- settings


def test_apply_settings_parses_json_and_strings():
    cfg = apply_settings(
        get_config("yolact-atss-iou-r18-160"),
        ["model.anchor_base_scale=2", "augment.scale_range=[0.8, 1.25]", "train.schedule=step",
         "augment.expand=true", "train.grad_clip=null"],
    )  # fmt: skip
    assert cfg.model.anchor_base_scale == 2
    assert cfg.augment.scale_range == (0.8, 1.25) and cfg.augment.expand
    assert cfg.train.schedule == "step" and cfg.train.grad_clip is None
    assert Config.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("lr=0.1", "section.field=value"),
        ("optim.lr=0.1", "unknown config section 'optim'"),
        ("train.lrr=0.1", "did you mean lr"),
        ("train.schedule=linear", "bad value in 'train.schedule=linear'"),
        ("augment.scale_range=[1.5, 1.0]", "bad value"),
    ],
)
def test_apply_settings_names_the_bad_setting(setting, message):
    with pytest.raises(ValueError, match=message):
        apply_settings(get_config("yolact-atss-iou-r18-160"), [setting])


def test_cpu_presets_are_the_recipe_and_paper_presets_are_not():
    cpu = get_config("yolact-atss-gmaiou-r18-160")
    assert cpu.train.optimizer == "adamw" and cpu.train.epochs == 4 and cpu.train.batch_size == 4
    assert cpu.model.proto_scale == 8  # stride-1 prototypes
    assert cpu.augment == AugmentConfig(photometric=False, expand=False, crop=False, flip=True)
    assert get_config("yolact-fixed-r18-160").model.anchor_scaling == "sides-550"
    paper = get_config("yolact-atss-gmaiou-r50-550")
    assert paper.train.optimizer == "sgd" and paper.model.proto_scale == 2
    assert paper.augment.expand and paper.augment.crop and paper.augment.scale_range is None


def test_build_optimizer_follows_the_config():
    params = [torch.nn.Parameter(torch.zeros(2))]
    assert isinstance(
        build_optimizer(params, get_config("yolact-fixed-r50-550").train), torch.optim.SGD
    )
    adamw = build_optimizer(params, get_config("yolact-fixed-r18-160").train)
    assert isinstance(adamw, torch.optim.AdamW)
    assert adamw.param_groups[0]["weight_decay"] == 0.05


# ----------------------------------------------------------------------------- scale jitter


def test_scale_window_zooms_in_and_out_within_the_range():
    gen = torch.Generator().manual_seed(0)
    for _ in range(200):
        w = sample_scale_window(100, 80, gen, (0.5, 2.0))
        scale = 100 / w.height
        assert 0.49 <= scale <= 2.01 and abs(80 / w.width - scale) < 0.05
        if w.height <= 100:  # zoom in: the window lies inside the image
            assert 0 <= w.top <= 100 - w.height and 0 <= w.left <= 80 - w.width
        else:  # zoom out: the image lies inside the window
            assert -(w.height - 100) <= w.top <= 0 and -(w.width - 80) <= w.left <= 0
    assert sample_scale_window(50, 50, gen, (1.0, 1.0)) == sample_scale_window(
        50, 50, gen, (1.0, 1.0)
    )
    with pytest.raises(ValueError, match="scale_range"):
        sample_scale_window(50, 50, gen, (0.0, 1.0))


def test_scale_jitter_keeps_every_mask_inside_its_box():
    rng = np.random.default_rng(3)
    _, instances = render_scene(96, rng)
    masks = torch.from_numpy(np.stack([m for _, m in instances]))
    item = {
        "image": torch.rand(3, 96, 96),
        "boxes": mask_tight_boxes(masks),
        "labels": torch.tensor([c for c, _ in instances]),
        "masks": masks,
        "crowd_boxes": torch.zeros(0, 4),
        "image_id": 1,
    }
    transform = TrainTransform(
        64, photometric=False, expand=False, crop=False, scale_range=(0.7, 1.4)
    )
    for seed in range(10):
        out = transform(item, torch.Generator().manual_seed(seed))
        assert out["image"].shape == (3, 64, 64)
        kept = out["masks"].flatten(1).any(1)  # a mask the resize empties is dropped later
        assert torch.allclose(out["boxes"][kept], mask_tight_boxes(out["masks"][kept]))
    with pytest.raises(ValueError, match="scale_range"):
        TrainTransform(64, scale_range=(2.0, 1.0))


# ----------------------------------------------------------------------------- class mixes


def test_coco_class_mix_matches_coco_share_of_low_mob_boxes(tmp_path):
    """The COCO sample has 27.7% of GT boxes with MOB < 0.5 (train + val, 2,838 GTs)."""
    from gmaiou.data import CocoInstances, find_split
    from gmaiou.paper.analysis.mob import gt_mob_ratios

    root = generate(tmp_path / "coco", 250, 160, seed=1, progress=False, mix="coco")
    ratios = gt_mob_ratios(CocoInstances(*find_split(root, "train")))["mob"]
    assert len(ratios) > 700
    assert 0.21 <= float((ratios < 0.5).mean()) <= 0.34
    info = json.loads((root / "annotations" / "instances_train.json").read_text())["info"]
    assert info["mix"] == "coco"
    assert {
        c["name"]
        for c in json.loads((root / "annotations" / "instances_val.json").read_text())["categories"]
    } == {c.name for c in CLASSES}


def test_unknown_class_mix_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown class mix 'cocoa'"):
        generate(tmp_path / "x", 4, 64, mix="cocoa", progress=False)


# ----------------------------------------------------------------------------- statistics


@pytest.mark.parametrize(
    ("df", "quantile"),
    # R: qt(0.975, df)
    [(1, 12.7062047361747), (2, 4.30265272974946), (4, 2.77644510519779),
     (30, 2.04227245630124), (120, 1.97993040508242)],
)  # fmt: skip
def test_t_critical_is_the_exact_quantile(df, quantile):
    assert t_critical(df) == pytest.approx(quantile, abs=1e-9)


def test_t_quantile_inverts_the_two_sided_tail():
    from gmaiou.paper.experiments.stats import t_quantile, t_two_sided_p

    for alpha, df in ((0.05, 1), (0.05 / 7, 2), (0.01, 4), (1e-4, 9)):
        assert t_two_sided_p(t_quantile(alpha, df), df) == pytest.approx(alpha, rel=1e-9)
    assert t_quantile(0.05 / 3, 2) > t_quantile(0.05 / 2, 2) > t_critical(2)
    assert t_quantile(0.01, 5) == pytest.approx(4.03214298355523, abs=1e-9)  # qt(0.995, 5)
    with pytest.raises(ValueError, match="degrees of freedom"):
        t_critical(0)
    with pytest.raises(ValueError, match="alpha"):
        t_quantile(0.0, 3)


def test_interval_bounds_come_from_the_exact_quantile():
    # Two pairs, differences -10.069313 and -7.642246 (Table 3, step 6 minus step 1, mask oLRP):
    # the 3-decimal 12.706 gave -24.2749 (shown -24.27); qt(0.975, 1) gives -24.2752.
    frame = pd.DataFrame(
        {"data": "u", "label": ["a", "a", "b", "b"], "seed": [0, 1, 0, 1],
         "mask AP": [72.645916, 75.259958, 82.715229, 82.902204]}
    )  # fmt: skip
    row = paired_differences(frame, "a").iloc[0]
    assert f"{row['ci low']:+.2f}" == "-24.28" and f"{row['ci high']:+.2f}" == "+6.56"


def _frame(values: dict[tuple[str, str], list[float]]) -> pd.DataFrame:
    rows = []
    for (data, label), seeds in values.items():
        for seed, value in enumerate(seeds):
            rows.append(
                {"data": data, "label": label, "seed": seed, "mask AP": value, "box AP": value}
            )
    return pd.DataFrame(rows)


def test_paired_differences_by_hand():
    frame = _frame({("u", "new"): [11.0, 12.0, 13.0], ("u", "old"): [10.0, 10.0, 10.0],
                    ("c", "new"): [5.0], ("c", "old"): [6.0]})  # fmt: skip
    diffs = paired_differences(frame, "new").set_index("data")
    u = diffs.loc["u"]
    assert u["pairs"] == 3 and u["mean"] == pytest.approx(2.0) and u["std"] == pytest.approx(1.0)
    assert u["ci low"] == pytest.approx(2.0 - 4.3026527 / math.sqrt(3))
    assert u["ci high"] == pytest.approx(2.0 + 4.3026527 / math.sqrt(3)) and u["better"] == 1.0
    c = diffs.loc["c"]
    assert c["mean"] == -1.0 and math.isnan(c["ci low"]) and c["better"] == 0.0
    lower = paired_differences(frame, "new", higher_is_better=False).set_index("data")
    assert lower.loc["c", "better"] == 1.0
    assert "one seed gives no interval" in describe_difference({**c, "data": "c"})


def test_paired_differences_pair_by_seed_not_by_position():
    frame = _frame({("u", "new"): [1.0, 2.0], ("u", "old"): [0.0, 1.0]}).iloc[::-1]
    assert paired_differences(frame, "new").loc[0, "std"] == 0.0


@pytest.mark.parametrize(
    ("low", "high", "words"),
    [
        (
            0.5,
            1.2,
            "a gain at 95% confidence, and compatible with the paper's claimed +1.0 to +1.5",
        ),
        (-0.3, 0.6, "not distinguishable from zero, and smaller than the paper's"),
        (-2.0, -0.5, "a loss at 95% confidence"),
        (1.8, 2.5, "larger than the paper's"),
    ],
)
def test_describe_difference_verdicts(low, high, words):
    row = {"comparison": "A − B", "data": "u", "metric": "mask AP", "pairs": 3,
           "mean": (low + high) / 2, "ci low": low, "ci high": high}  # fmt: skip
    assert words in describe_difference(row, (1.0, 1.5))


def test_summary_table_mean_std_and_missing():
    frame = _frame({("u", "a"): [1.0, 3.0]})
    frame["mask APl"] = np.nan
    table = summary_table(frame, ["mask AP", "mask APl"])
    assert table.loc[0, "mask AP"] == "2.0 ± 1.4" and table.loc[0, "mask APl"] == "n/a"
    one = summary_table(frame.iloc[:1], ["mask AP"])
    assert one.loc[0, "mask AP"] == "1.0"  # a single seed: no "± 0.0"
    with pytest.raises(ValueError, match="no records"):
        summary_table(frame.iloc[:0])


def test_format_mean_std_by_hand():
    assert format_mean_std([1.0, None, 3.0, float("nan")]) == "2.0 ± 1.4"
    assert format_mean_std([2.345], decimals=2) == "2.35" and format_mean_std([]) == "n/a"


# ----------------------------------------------------------------------------- grids


def test_table2_grids_pair_every_assigner_over_the_same_seeds():
    specs = get_grid("table2", "default")
    uniform = [s for s in specs if s.data.mix == "uniform"]
    coco = [s for s in specs if s.data.mix == "coco"]
    assert {s.preset.split("-r18")[0][len("yolact-") :] for s in uniform} == set(TABLE2_ASSIGNERS)
    assert {s.preset.split("-r18")[0][len("yolact-") :] for s in coco} == set(CORE_ASSIGNERS)
    for group in (uniform, coco):
        seeds = {}
        for s in group:
            seeds.setdefault(s.label, set()).add(s.seed)
        assert all(len(v) >= 3 for v in seeds.values())
    assert len({s.run_id for s in specs}) == len(specs)
    with pytest.raises(ValueError, match="unknown grid"):
        get_grid("table9", "default")
    with pytest.raises(ValueError, match="no training grid for profile 'paper'"):
        get_grid("table2", "paper")


@pytest.mark.parametrize(
    ("grid", "mixes", "pairs"),
    [
        ("primary", ("uniform", "coco"), PRIMARY_PAIRS),
        ("mob-share", ("mob10", "mob30", "mob50", "mob70"), MOB_SHARE_PAIRS),
    ],
)
def test_test_split_grids_pair_seed_and_data_seed(grid, mixes, pairs):
    specs = get_grid(grid, "default")
    assert len(specs) == len(mixes) * pairs * 2
    assert len({s.run_id for s in specs}) == len(specs)
    table2 = {s.label: s.config() for s in get_grid("table2", "default") if s.seed == 0}
    runs = {}
    for s in specs:
        assert (s.grid, s.data.images, s.data.size, s.data.test_images) == (grid, 1000, 160, 500)
        assert s.data.seed == s.seed and s.data.eval_split == "test"
        assert f"-{s.data.mix}-" in s.run_id and f"-data{s.data.seed}-" in s.run_id
        assert s.train_command()[-2:] == ["--eval-split", "test"]
        assert s.config() == table2[s.label]  # Table 2's recipe
        runs.setdefault((s.data.mix, s.seed), []).append(s)
    assert set(runs) == {(m, k) for m in mixes for k in range(pairs)}
    for (mix, k), pair in runs.items():
        assert [s.preset for s in pair] == ["yolact-atss-iou-r18-160", "yolact-atss-gmaiou-r18-160"]
        assert pair[0].data == pair[1].data == SyntheticData(1000, 160, k, mix, test_images=500)
        assert pair[0].seed == pair[1].seed == k
    assert [s.seed for s in specs] == sorted(s.seed for s in specs)  # pair by pair
    smoke = get_grid(grid, "smoke")
    smoke_pairs = 2 if grid == "primary" else 1  # mob-share: one pair per level on smoke
    assert len(smoke) == len(mixes) * smoke_pairs * 2
    assert {s.data.test_images for s in smoke} == {2}


def test_a_set_with_test_images_names_them_and_round_trips():
    data = SyntheticData(1000, 160, 3, "mob30", test_images=500)
    assert data.name == "synth-mob30-1000x160-data3-test500" and data.eval_split == "test"
    assert data.command()[-4:] == ["--mix", "mob30", "--test-images", "500"]
    assert SyntheticData(1000, 160).name == "synth-uniform-1000x160-data0"
    assert SyntheticData(1000, 160).eval_split == "val"
    assert "--eval-split" not in get_grid("table2", "default")[0].train_command()
    spec = get_grid("mob-share", "default")[5]
    assert RunSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def _committed_records() -> list[tuple[Path, dict]]:
    folder = repo_root() / "figures" / "runs"
    return [(p, json.loads(p.read_text())) for p in sorted(folder.glob("*/*/*.json"))]


def _committed_training_records() -> list[tuple[Path, dict]]:
    return [(p, r) for p, r in _committed_records() if "metrics" in r and "config" in r]


def test_every_committed_record_gives_its_spec_and_recorded_config():
    """Records written before they held a spec (version 1) load through their train command."""
    records = _committed_training_records()
    assert len(records) >= 110
    for path, r in records:
        spec = spec_from_record(r)
        assert spec.run_id == r["id"] == path.stem, path.name
        # Records written before "data_seed" all used data seed 0.
        expected = (r["grid"], r["profile"], r.get("data_seed", 0))
        assert (spec.grid, spec.profile, spec.data.seed) == expected, path.name
        assert spec.config() == Config.from_dict(r["config"]), path.name
        assert RunSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec, path.name


def test_version1_spec_reads_the_train_command_and_refuses_unknown_options():
    r = {"id": "x", "grid": "g", "profile": "default", "seed": 3, "label": "L", "variant": "v",
         "data": {"images": 8, "size": 96, "seed": 1, "mix": "coco"}, "curve": [{}, {}],
         "command": [["python", "-m", "gmaiou", "data"],
                     ["python", "-m", "gmaiou", "train", "--config", "yolact-fixed-r18-160",
                      "--data", "data/d", "--out", "runs/x", "--seed", "3", "--workers", "0",
                      "--epochs", "2", "--lr", "0.002", "--set", "augment.flip=false",
                      "--set", "model.proto_scale=2", "--max-iters", "5", "--device", "cpu"]]}  # fmt: skip
    assert spec_from_record(r) == RunSpec(
        grid="g", profile="default", preset="yolact-fixed-r18-160", seed=3,
        data=SyntheticData(8, 96, 1, "coco"), label="L", variant="v", epochs=2, lr=0.002,
        settings=("augment.flip=false", "model.proto_scale=2"), curve_points=2, workers=0,
        max_iters=5,
    )  # fmt: skip
    r["command"][1] += ["--amp", "1"]
    with pytest.raises(ValueError, match="record x: unknown train option --amp"):
        spec_from_record(r)
    with pytest.raises(ValueError, match="neither a spec nor a train command"):
        spec_from_record({"id": "y"})
    with pytest.raises(ValueError, match="unknown run spec fields: colour"):
        RunSpec.from_dict({**_tiny_spec(Path()).to_dict(), "colour": "red"})


@pytest.mark.parametrize("grid", ["table2", "table2-recipe1", "curve", "curve-recipe1", "table3"])
def test_committed_grid_records_match_their_grid(grid):
    """Records of the notebooks' grids were trained with today's grid definition (the dirty
    ones too, which the tables leave out until they are retrained)."""
    specs = {s.run_id: s for s in get_grid(grid, "default")}
    for r in load_records("default", grid, repo_root() / "figures", include_dirty=True):
        assert r["id"] in specs, r["id"]
        assert Config.from_dict(r["config"]) == specs[r["id"]].config(), r["id"]
        assert r["metrics"]["segm"]["AP"] > 5.0, r["id"]  # every default run learned


def test_same_seed_gives_every_assigner_the_same_backbone_and_batches():
    from gmaiou.models import build_model
    from gmaiou.training.trainer import seed_everything

    states = []
    for preset in ("yolact-atss-iou-r18-160", "yolact-atss-gmaiou-r18-160", "yolact-fixed-r18-160"):
        seed_everything(7)
        model = build_model(get_config(preset).with_num_classes(8))
        states.append(
            {k: v for k, v in model.state_dict().items() if k.startswith(("backbone", "fpn"))}
        )
    for other in states[1:]:
        assert all(torch.equal(states[0][k], other[k]) for k in states[0])


# ----------------------------------------------------------------------------- the runner


def _tiny_spec(tmp_path: Path, curve: int = 0) -> RunSpec:
    return RunSpec(
        grid="t", profile="smoke", preset="yolact-atss-gmaiou-r18-160", seed=1,
        data=SyntheticData(8, 96), epochs=1, max_iters=2, curve_points=curve, workers=0,
        settings=("model.image_size=96",),
    )  # fmt: skip


def test_run_one_writes_a_record_and_skips_it_next_time(tmp_path, monkeypatch):
    spec = _tiny_spec(tmp_path, curve=2)
    record = run_one(spec, root=tmp_path, figures=tmp_path / "figures", progress=False)
    path = record_path(spec, tmp_path / "figures")
    assert path.is_file() and json.loads(path.read_text())["id"] == spec.run_id
    for key in ("AP", "AP50", "AP75", "APs", "oLRP", "oLRP_loc", "oLRP_FP", "oLRP_FN"):
        assert key in record["metrics"]["segm"] and key in record["metrics"]["bbox"]
    assert record["iterations"] == 2 and len(record["curve"]) == 2
    assert record["curve"][0]["iteration"] == 1 and record["train_seconds"] > 0
    assert record["config"]["model"]["image_size"] == 96
    # The commands re-create the dataset and the run through the real CLI.
    parser = build_parser()
    for cmd in record["command"]:
        assert cmd[:3] == ["python", "-m", "gmaiou"]
        parser.parse_args(cmd[3:])
    assert "--out" in record["command"][1] and "model.image_size=96" in record["command"][1]
    assert record["command"] == spec.commands()
    # The structured spec, and the config derived from it.
    assert record["version"] == 2 and spec_from_record(record) == spec
    assert Config.from_dict(record["config"]) == spec.config()

    import gmaiou.paper.experiments.runner as runner

    def boom(*args, **kwargs):
        raise AssertionError("a run with a record must not train again")

    # A finished run keeps its weights only: a third of the disk, and they still evaluate.
    checkpoint = load_checkpoint(spec.run_dir(tmp_path) / "checkpoint.pt")
    assert not has_training_state(checkpoint) and checkpoint["model"]
    # The trainer rewrites one checkpoint.pt (every epoch and chunk): it is the only one left.
    run_files = sorted(p.name for p in spec.run_dir(tmp_path).iterdir())
    assert [n for n in run_files if n.endswith((".pt", ".tmp"))] == ["checkpoint.pt"], run_files
    model, _, _ = load_run(spec.run_dir(tmp_path))
    assert sum(p.numel() for p in model.parameters()) > 0

    monkeypatch.setattr(runner, "_train_chunks", boom)
    assert run_one(spec, root=tmp_path, figures=tmp_path / "figures")["id"] == spec.run_id
    with pytest.raises(AssertionError, match="must not train"):
        run_one(spec, root=tmp_path, figures=tmp_path / "figures", force=True)


def test_a_finished_run_whose_record_is_deleted_trains_again(tmp_path):
    spec = _tiny_spec(tmp_path)
    first = run_one(spec, root=tmp_path, figures=tmp_path / "figures", progress=False)
    record_path(spec, tmp_path / "figures").unlink()
    with pytest.warns(UserWarning, match="record is gone: training it again"):
        again = run_one(spec, root=tmp_path, figures=tmp_path / "figures", progress=False)
    assert again["iterations"] == first["iterations"] == 2
    assert record_path(spec, tmp_path / "figures").is_file()
    assert not has_training_state(load_checkpoint(spec.run_dir(tmp_path) / "checkpoint.pt"))


def test_run_one_resumes_an_interrupted_run(tmp_path):
    from gmaiou.training.trainer import RunOptions, train

    spec = _tiny_spec(tmp_path)
    data = spec.data.ensure(tmp_path)
    # An earlier process stopped after one iteration, leaving a checkpoint.
    train(spec.config(), RunOptions(out_dir=spec.run_dir(tmp_path), data_root=data, max_iters=1,
                                    num_workers=0, eval_split=None, progress=False),
          config_name=spec.preset)  # fmt: skip
    first = (spec.run_dir(tmp_path) / "metrics.jsonl").read_text().splitlines()
    record = run_one(spec, root=tmp_path, figures=tmp_path / "figures", progress=False)
    lines = (spec.run_dir(tmp_path) / "metrics.jsonl").read_text().splitlines()
    assert record["iterations"] == 2 and lines[0] == first[0] and len(lines) == 2
    # The stretch trained outside the runner has no known device.
    assert [(g["start"], g["iterations"], g["device"]) for g in record["segments"]] == [
        (0, 1, None),
        (1, 1, record["device"]),
    ]


# ----------------------------------------------------------------------------- provenance

CLEAN = SourceState("0" * 40, False)
DIRTY = SourceState("1" * 40, True, ("gmaiou/losses.py",))


class Stop(Exception):
    """A run interrupted on purpose."""


def _boom(*args, **kwargs):
    raise Stop


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo,
                   check=True, capture_output=True)  # fmt: skip


def test_source_state_sees_modified_tracked_files_outside_figures(tmp_path):
    assert source_state(tmp_path) == SourceState(None, False)
    (tmp_path / "figures").mkdir()
    (tmp_path / "code.py").write_text("a = 1\n")
    (tmp_path / "figures" / "table.md").write_text("| a |\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-q", "-m", "start")
    clean = source_state(tmp_path)
    assert len(clean.commit) == 40 and not clean.dirty
    (tmp_path / "figures" / "table.md").write_text("| b |\n")  # where runs write records
    (tmp_path / "new.py").write_text("")  # untracked
    assert source_state(tmp_path) == clean
    (tmp_path / "code.py").write_text("a = 2\n")
    assert source_state(tmp_path) == SourceState(clean.commit, True, ("code.py",))


def test_a_dirty_checkout_is_refused_for_committed_profiles_only(tmp_path, monkeypatch):
    import gmaiou.paper.experiments.runner as runner

    monkeypatch.setattr(runner, "_code_state", lambda: DIRTY)
    monkeypatch.setattr(runner, "_train_chunks", _boom)
    figures = tmp_path / "figures"
    default = replace(_tiny_spec(tmp_path), profile="default")
    refusal = r"refusing to train .*seed1: tracked files are modified \(gmaiou/losses.py\)"
    with pytest.raises(ValueError, match=refusal):
        run_one(default, root=tmp_path, figures=figures)
    with pytest.raises(ValueError, match=refusal):  # before any subprocess starts
        runner.run_grid([default], root=tmp_path, figures=figures, parallel=2)
    assert not default.run_dir(tmp_path).exists()
    with pytest.raises(Stop):  # allowed: it reaches training
        run_one(default, root=tmp_path, figures=figures, allow_dirty=True)
    smoke = _tiny_spec(tmp_path)  # smoke records stay on the machine
    with pytest.raises(Stop):
        run_one(smoke, root=tmp_path, figures=figures)
    with pytest.raises(ValueError, match="refusing to train"):
        run_one(smoke, root=tmp_path, figures=figures, allow_dirty=False)
    monkeypatch.setattr(runner, "_code_state", lambda: CLEAN)
    with pytest.raises(Stop):
        run_one(default, root=tmp_path, figures=figures)


def test_experiment_cli_refuses_a_dirty_checkout_and_passes_allow_dirty(
    tmp_path, monkeypatch, capsys
):
    import gmaiou.paper.experiments.runner as runner
    from gmaiou.paper.cli import main

    monkeypatch.setenv("GMAIOU_FIGURES", str(tmp_path))  # no record: the run would train
    monkeypatch.setattr(runner, "_code_state", lambda: DIRTY)
    run_id = get_grid("table2", "default")[0].run_id
    assert main(["experiment", "--grid", "table2", "--only", run_id]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "refusing to train" in err and "--allow-dirty" in err
    seen = []
    monkeypatch.setattr(
        runner, "run_grid", lambda specs, **kw: seen.append(kw["allow_dirty"]) or []
    )
    for extra in (["--allow-dirty"], []):
        assert main(["experiment", "--grid", "table2", "--only", run_id, *extra]) == 0
    assert seen == [True, None]


def test_load_records_leaves_dirty_records_out_where_records_are_committed(tmp_path):
    for profile in ("default", "smoke"):
        folder = tmp_path / "runs" / profile / "g"
        folder.mkdir(parents=True)
        for rid, flag in (("a", {}), ("b", {"dirty": True}), ("c", {"dirty": False})):
            (folder / f"{rid}.json").write_text(json.dumps({"id": rid, **flag}))

    def ids(profile, **kwargs):
        return [r["id"] for r in load_records(profile, "g", tmp_path, **kwargs)]

    assert ids("default") == ["a", "c"]
    assert ids("default", include_dirty=True) == ["a", "b", "c"]
    assert ids("smoke") == ["a", "b", "c"]
    assert ids("smoke", include_dirty=False) == ["a", "c"]


def test_allow_dirty_run_records_its_provenance(tmp_path, monkeypatch):
    import gmaiou.paper.experiments.runner as runner

    monkeypatch.setattr(runner, "_code_state", lambda: DIRTY)
    spec = replace(_tiny_spec(tmp_path), profile="default")
    figures = tmp_path / "figures"
    run_one(spec, root=tmp_path, figures=figures, progress=False, allow_dirty=True)
    record = json.loads(record_path(spec, figures).read_text())
    assert (record["commit"], record["dirty"]) == ("1" * 40, True)
    assert record["spec"] == spec.to_dict() and record["data_seed"] == 0
    assert isinstance(record["device_name"], str) and record["device_name"]
    assert record["torch_threads"] == torch.get_num_threads()
    assert record["torch_version"] == torch.__version__
    assert record["segments"] == [
        {"start": 0, "iterations": 2, "device": record["device"],
         "device_name": record["device_name"], "torch_threads": torch.get_num_threads()}
    ]  # fmt: skip
    assert load_records("default", "t", figures) == []
    assert [r["id"] for r in load_records("default", "t", figures, include_dirty=True)] == [
        spec.run_id
    ]


def test_segments_count_each_stretch_of_a_resumed_run(tmp_path, monkeypatch):
    import gmaiou.training.trainer as trainer

    spec = _tiny_spec(tmp_path, curve=2)  # two chunks: iterations 1 and 2
    real, calls = trainer.train, []

    def stop_at_second_chunk(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise Stop
        return real(*args, **kwargs)

    threads = torch.get_num_threads()
    figures = tmp_path / "figures"
    try:
        torch.set_num_threads(1)
        monkeypatch.setattr(trainer, "train", stop_at_second_chunk)
        with pytest.raises(Stop):
            run_one(spec, root=tmp_path, figures=figures, progress=False)
        monkeypatch.setattr(trainer, "train", real)
        torch.set_num_threads(2)
        record = run_one(spec, root=tmp_path, figures=figures, progress=False)
    finally:
        torch.set_num_threads(threads)
    assert record["iterations"] == 2 and record["torch_threads"] == 2
    assert [(g["start"], g["iterations"], g["torch_threads"]) for g in record["segments"]] == [
        (0, 1, 1),
        (1, 1, 2),
    ]


def test_experiment_cli_lists_and_refuses_bad_input(capsys):
    from gmaiou.paper.cli import main

    assert (
        main(["experiment", "--grid", "table2", "--profile", "smoke", "--list", "--shard", "0/4"])
        == 0
    )
    out = capsys.readouterr().out.splitlines()
    specs = get_grid("table2", "smoke")
    assert [line.split()[-1] for line in out] == [s.run_id for s in specs[0::4]]
    for argv, message in (
        (["--grid", "table2", "--shard", "4/4"], "--shard"),
        (["--grid", "table2", "--only", "nope"], "no run 'nope'"),
        (["--grid", "table2", "--parallel", "0"], "--parallel"),
    ):
        assert main(["experiment", "--profile", "smoke", *argv]) == 2
        assert message in capsys.readouterr().err


def test_gmaiou_force_retrains_through_the_grid(tmp_path, monkeypatch):
    import gmaiou.paper.experiments.runner as runner

    spec = _tiny_spec(tmp_path)
    path = record_path(spec, tmp_path / "figures")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"id": spec.run_id}))
    calls = []
    monkeypatch.setattr(runner, "_train_chunks", lambda *a, **k: calls.append(a) or 1 / 0)
    monkeypatch.delenv("GMAIOU_FORCE", raising=False)
    assert (
        runner.run_grid([spec], root=tmp_path, figures=tmp_path / "figures")[0]["id"] == spec.run_id
    )
    monkeypatch.setenv("GMAIOU_FORCE", "1")
    with pytest.raises(ZeroDivisionError):
        runner.run_grid([spec], root=tmp_path, figures=tmp_path / "figures")
    assert len(calls) == 1


def test_proto_scale_sets_the_prototype_resolution():
    from gmaiou.models import build_model

    for scale, side in ((2, 40), (4, 80)):
        cfg = apply_settings(get_config("yolact-atss-iou-r18-160"), [f"model.proto_scale={scale}"])
        model = build_model(cfg.with_num_classes(3)).eval()
        with torch.no_grad():
            assert model(torch.zeros(1, 3, 160, 160))["protos"].shape == (1, side, side, 32)
    with pytest.raises(ValueError, match="proto_scale"):
        apply_settings(get_config("yolact-atss-iou-r18-160"), ["model.proto_scale=0"])


def test_settings_between_inverts_apply_settings():
    from gmaiou.configs import settings_between

    base = get_config("yolact-atss-iou-r18-160")
    changes = [
        "train.steps=[2, 3]",
        "model.proto_scale=2",
        "loss.kind=ranksort",  # valid only together with the next two
        "model.classifier=sigmoid",
        "postprocess.score_activation=sigmoid",
        "augment.flip=false",
    ]
    target = apply_settings(base, changes)
    assert apply_settings(base, settings_between(base, target)) == target
    assert len(settings_between(base, target)) == 6
    with pytest.raises(ValueError, match="inconsistent config.*needs model.classifier"):
        apply_settings(base, ["loss.kind=ranksort"])
    assert settings_between(base, base) == ()


def test_rebase_record_recreates_a_config_its_preset_no_longer_gives():
    from gmaiou.paper.experiments.runner import rebase_record

    spec = RunSpec(
        grid="t", profile="default", preset="yolact-atss-iou-r18-160", seed=0,
        data=SyntheticData(8, 96), epochs=3, settings=("augment.flip=false",),
    )  # fmt: skip
    recorded = apply_settings(spec.config(), ["model.proto_scale=2"])  # an older preset's value
    record = {"id": "x", "spec": spec.to_dict(), "config": recorded.to_dict(), "device": "cpu",
              "command": spec.commands("cpu")}  # fmt: skip
    assert spec_from_record(record).config() != recorded
    assert rebase_record(record)
    rebased = spec_from_record(record)
    assert rebased.config() == recorded and rebased.run_id == spec.run_id
    assert rebased.settings == ("augment.flip=false", "model.proto_scale=2")
    assert record["command"] == rebased.commands("cpu")
    assert not rebase_record(record)  # already exact


def _fake_record(label: str, mix: str, seed: int, mask_ap: float) -> dict:
    metrics = {"AP": mask_ap, "AP50": 2 * mask_ap, "AP75": mask_ap, "APs": 1.0, "APm": 2.0,
               "APl": None, "oLRP": 100 - mask_ap}  # fmt: skip
    return {
        "label": label, "preset": label, "data": {"mix": mix}, "seed": seed, "train_seconds": 60,
        "iterations": 10, "device_name": "cpu",
        "metrics": {"segm": metrics, "bbox": dict(metrics, AP=mask_ap + 10)},
    }  # fmt: skip


def test_table2_report_computes_the_paired_gains_and_says_them():
    from gmaiou.paper.experiments.primary import holm_table
    from gmaiou.paper.experiments.table2 import table2_report

    gains = {"uniform": (1.0, 1.2, 1.4), "coco": (0.0, 0.1, -0.1)}
    records = [
        _fake_record(label, mix, seed, 20.0 + seed + (gain if label == "ATSS GmaIoU (P=M)" else 0))
        for mix, by_seed in gains.items()
        for seed, gain in enumerate(by_seed)
        for label in ("ATSS IoU", "ATSS GmaIoU (P=M)")
    ]
    report = table2_report(records, {"uniform": 0.58, "coco": 0.26})
    mask = report.diffs[report.diffs["metric"] == "mask AP"].set_index("data")
    assert mask.loc["uniform", "mean"] == pytest.approx(1.2)
    assert mask.loc["coco", "mean"] == pytest.approx(0.0, abs=1e-9)
    olrp = report.diffs[report.diffs["metric"] == "mask oLRP"].set_index("data")
    assert olrp.loc["uniform", "mean"] == pytest.approx(-1.2)  # lower oLRP is better
    # One Holm family per metric, over both sets: 2 comparisons each.
    assert set(report.diffs["family size"]) == {2}
    assert report.diffs.equals(holm_table(report.diffs.iloc[:, :10], family="metric"))
    uniform = mask.loc["uniform"]
    # uniform: t = 1.2 / (0.2 / sqrt 3) = 10.39, p = 0.0091; the smaller p of 2, Holm level 0.025.
    assert uniform["p"] == pytest.approx(0.009133, abs=1e-5)
    assert uniform["p holm"] == pytest.approx(2 * uniform["p"])
    assert uniform["holm level"] == 0.025
    half = 6.2053468 * 0.2 / math.sqrt(3)  # qt(1 - 0.025 / 2, 2) * std / sqrt(3)
    assert [uniform["holm low"], uniform["holm high"]] == pytest.approx([1.2 - half, 1.2 + half])
    assert mask.loc["coco", "holm level"] == 0.05  # the larger p: the raw 95% interval
    assert mask.loc["coco", "holm low"] == pytest.approx(mask.loc["coco", "ci low"])
    lines = report.findings
    assert all("\n" not in line for line in lines)
    assert "uniform" in lines[1] and "coco" in lines[0]
    raw = 4.3026527 * 0.2 / math.sqrt(3)  # t(0.975, 2) * std / sqrt(3)
    # mean, 95, the raw interval, the family size, the adjusted interval, its p, the pairs
    numbers = numbers_in(lines[1])
    assert numbers[:9] == pytest.approx(
        [1.20, 95, 1.20 - raw, 1.20 + raw, 2, 1.20 - half, 1.20 + half, 0.018, 3], abs=6e-3
    )
    assert numbers[9:] == [1.0, 1.5]  # the claim
    other = report.diffs[report.diffs["metric"] != "mask AP"]
    assert (other["p holm"] <= 0.05).sum() == 2  # the uniform set's box AP and mask oLRP
    assert set(report.table["seeds"]) == {3}
    # The headline: minus ATSS IoU on the uniform and the COCO-MOB set, then k of n rejected.
    assert numbers_in(report.headline) == pytest.approx([1.2, 0.0, 1, 2])
    assert "ATSS IoU" in report.headline and len(report.headline) <= 110
    with pytest.raises(ValueError, match="at least one run record"):
        table2_report([])


def test_table2_headline_states_both_baselines_per_set_and_the_holm_count():
    from gmaiou.paper.experiments.table2 import table2_headline, table2_report

    gains = {"fixed IoU": (2.0, 3.0, 4.0), "ATSS IoU": (-0.5, 0.0, 0.2)}
    records = [
        _fake_record(label, "uniform", seed, 20.0 + seed) for label in gains for seed in range(3)
    ]
    records += [
        _fake_record("ATSS GmaIoU (P=M)", "uniform", seed, 20.0 + seed) for seed in range(3)
    ]
    # the treatment equals its own seed's base, so minus a baseline is minus that gain
    records = [
        dict(r, metrics={k: dict(v, AP=v["AP"] + gains.get(r["label"], (0, 0, 0))[r["seed"]])
                         for k, v in r["metrics"].items()})
        for r in records
    ]  # fmt: skip
    report = table2_report(records)
    mask = report.diffs[report.diffs["metric"] == "mask AP"].set_index("baseline")
    assert mask.loc["fixed IoU", "mean"] == pytest.approx(-3.0)
    rejected = int((mask["p holm"] <= 0.05).sum())
    # fixed IoU on the one set, ATSS IoU on it, then k of the 2 comparisons
    assert numbers_in(report.headline) == pytest.approx([-3.0, 0.1, rejected, 2], abs=0.051)
    assert report.headline == table2_headline(report.diffs)
    one_seed = table2_report([r for r in records if r["seed"] == 0])
    assert "two paired seeds" in one_seed.headline
    with pytest.raises(ValueError, match="no mask AP"):
        table2_headline(report.diffs[report.diffs["metric"] == "box AP"])


def test_write_table2_writes_one_stem(tmp_path, monkeypatch):
    from gmaiou.paper.experiments.table2 import table2_report, write_table2
    from gmaiou.paper.figures import read_headline

    monkeypatch.setenv("GMAIOU_FIGURES", str(tmp_path))
    records = [
        _fake_record(label, mix, seed, 20.0 + seed + (1.0 + 0.1 * seed if "Gma" in label else 0))
        for mix in ("uniform", "coco")
        for seed in range(3)
        for label in ("fixed IoU", "ATSS IoU", "ATSS GmaIoU (P=M)")
    ]
    report = table2_report(records)
    paths = write_table2(report, "t2", "default", data_names={"coco": "C"}, source="records")
    names = sorted(p.name for p in paths)
    assert names == ["t2.md", "t2.pdf", "t2.png", "t2_findings.md", "t2_paired_differences.md"]
    assert read_headline(tmp_path / "t2_findings.md") == report.headline
    bullets = [
        line[2:] for line in (tmp_path / "t2_findings.md").read_text().splitlines()
        if line.startswith("- ")
    ]  # fmt: skip
    assert bullets == list(report.findings)
    table = (tmp_path / "t2.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("|")]
    assert len(rows) == len(report.table) + 2 and "| C " in table  # header, rule, one per row
    write_table2(report, "t3", "default", differences_name="t3_diffs")
    assert (tmp_path / "t3_diffs.md").exists() and (tmp_path / "t3.png").exists()


def test_table2_verdicts_follow_the_holm_adjusted_p():
    from gmaiou.paper.experiments.table2 import table2_report

    # Five comparisons on one set, each with raw p = 0.013: none survives Holm (5 x 0.013).
    labels = ["fixed IoU", "ATSS IoU", "ATSS GIoU", "ATSS DIoU", "ATSS maIoU (P=B)"]
    records = [
        _fake_record(label, "uniform", seed, 20.0 + seed) for label in labels for seed in range(3)
    ]
    records += [
        _fake_record("ATSS GmaIoU (P=M)", "uniform", seed, 20.0 + seed + gain)
        for seed, gain in enumerate((0.8, 1.0, 1.2))
    ]
    report = table2_report(records)
    mask = report.diffs[report.diffs["metric"] == "mask AP"]
    assert len(mask) == 5 and (mask["ci low"] > 0).all()  # each raw interval excludes zero
    assert mask["p"].tolist() == pytest.approx([0.01307] * 5, abs=1e-5)
    assert mask["p holm"].tolist() == pytest.approx([0.0653] * 5, abs=1e-4)
    # Holm levels 0.01, 0.0125, 0.0167, 0.025, 0.05 in the order of the (tied) p-values; the
    # intervals of the steps whose level exceeds 0.013 exclude zero, yet Holm stopped at the first.
    assert mask["holm level"].tolist() == pytest.approx([0.05 / k for k in (5, 4, 3, 2, 1)])
    assert (mask["holm low"] < 0).tolist() == [True, True, False, False, False]
    verdicts = [numbers_in(line) for line in report.findings if "mask AP (95%" in line]
    # mean, 95, raw interval, family size, adjusted interval, adjusted p, pairs (then a claim)
    assert len(verdicts) == 5 and all(n[4] == 5 and n[7] > 0.05 for n in verdicts)


def test_differences_table_columns_and_p_values():
    from gmaiou.paper.experiments.table2 import DIFF_COLUMNS, differences_table, table2_report

    records = [
        _fake_record(label, mix, seed, 20.0 + seed + (1.0 + 0.1 * seed if "Gma" in label else 0))
        for mix in ("uniform", "coco")
        for seed in range(3)
        for label in ("ATSS IoU", "ATSS GmaIoU (P=M)")
    ]
    report = table2_report(records)
    text = differences_table(report.diffs, {"uniform": "the uniform set"})
    header, _, first, *_ = text.splitlines()
    assert [c.strip() for c in header.strip("|").split("|")] == list(DIFF_COLUMNS)
    cells = [c.strip() for c in first.strip("|").split("|")]
    assert cells[0] == "coco" and cells[3] == "3" and cells[9] == "2"
    assert float(cells[4]) == pytest.approx(1.1, abs=1e-3)
    assert float(cells[10]) == pytest.approx(report.diffs.loc[0, "p holm"], abs=1e-3)
    assert "the uniform set" in text


def test_other_metrics_sentence_counts_only_what_holm_rejects():
    from gmaiou.paper.experiments.table2 import other_metrics_sentence

    def row(metric, mean, lo, hi, p_holm, h_lo, h_hi):
        return {"metric": metric, "data": "uniform", "comparison": "A − B", "mean": mean,
                "ci low": lo, "ci high": hi, "p holm": p_holm, "holm low": h_lo,
                "holm high": h_hi}  # fmt: skip

    diffs = pd.DataFrame(
        [
            row("mask AP", 3.0, 1.0, 5.0, 0.01, 0.5, 5.5),
            row("box AP", -0.5, -1.0, -0.1, 0.02, -1.2, -0.05),
            row("mask oLRP", 0.4, 0.1, 1.0, 0.08, -0.3, 1.1),  # raw interval excludes 0, Holm not
            row("box AP", 0.2, None, None, None, None, None),
        ]  # fmt: skip
    )
    sentence = other_metrics_sentence(diffs)
    # 1 of 2 rejected (1 box AP, 1 mask oLRP comparisons): box AP -0.50, its two intervals, p
    assert numbers_in(sentence) == [1, 2, 1, 1, -0.5, 95, -1.0, -0.1, -1.2, -0.05, 0.02]
    assert "box AP" in sentence
    assert numbers_in(other_metrics_sentence(diffs.iloc[[0, 2]])) == [1, 1]
    assert "no comparison" in other_metrics_sentence(diffs.iloc[[3]])


def test_training_provenance_names_devices_threads_and_dirty_runs():
    from gmaiou.paper.experiments.stats import training_provenance

    def rec(label, mix, seed, device="CPU (1 threads)", threads=1, commit="abc"):
        return {"label": label, "data": {"mix": mix}, "seed": seed, "device_name": device,
                "torch_threads": threads, "commit": commit}  # fmt: skip

    records = [rec("A", "u", s) for s in range(3)] + [rec("B", "u", s) for s in range(3)]
    text = training_provenance(records)
    assert numbers_in(text) == [6, 1, 0, 6]  # all 6 on one setting; 0 of 6 dirty
    assert "mixes" not in text
    records[4] = rec("B", "u", 1, "CPU (2 threads)", 2)
    records[5] = rec("B", "c", 2, "GPU", 1, commit="abc-dirty")
    text = training_provenance(records, order=["B", "A"])
    # 1 run on the CPU with 2 threads (B u seed 1), 1 on the GPU with 1 (B c seed 2), the other
    # 4 with 1; mixed thread counts (1, 2); the runs of u seed 1 differ; 1 of 6 dirty: B c seed 2
    assert numbers_in(text) == [1, 2, 1, 1, 1, 2, 4, 1, 1, 2, 1, 1, 6, 2]
    assert "this table mixes devices (CPU, GPU) and thread counts (1, 2)" in text
    assert text.count("B: c seed 2") == 2
    assert training_provenance([]) == "no runs"


def test_run_grid_recorded_only_trains_nothing_and_names_the_missing(tmp_path, capsys):
    from gmaiou.paper.experiments.runner import run_grid

    have, missing = _tiny_spec(tmp_path), replace(_tiny_spec(tmp_path), seed=2)
    path = record_path(have, tmp_path / "figures")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"id": have.run_id}))
    records = run_grid([have, missing], root=tmp_path, figures=tmp_path / "figures",
                       recorded_only=True)  # fmt: skip
    assert records == [{"id": have.run_id}]
    assert missing.run_id in capsys.readouterr().err
    assert not missing.run_dir(tmp_path).exists()
