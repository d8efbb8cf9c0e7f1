"""Table 3 (the GmaYOLACT build-up): the steps' configs, the grid, and the report's statistics
on tiny hand-made records."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
from conftest import numbers_in

from gmaiou.configs import (
    SECTIONS,
    apply_overrides,
    apply_settings,
    get_config,
    settings_between,
)
from gmaiou.paper.experiments.grids import (
    TABLE3_EXTRA_SEEDS,
    TABLE3_SEEDS,
    get_grid,
    paper_step_decay,
    table3_configs,
    table3_steps,
)
from gmaiou.paper.experiments.runner import RunSpec, SyntheticData, run_one, spec_from_record
from gmaiou.paper.experiments.table3 import (
    COSINE_OVER,
    cosine_yolact_records,
    format_gain,
    measure_speed,
    median_iteration_seconds,
    speed_path,
    step_frame,
    step_gains,
    steps_frame,
    table3_report,
    verdict,
)
from gmaiou.training.schedule import steps_to_iterations

LABELS = [s.label for s in table3_steps()]


def _cli_config(command: list[str]):
    """The config ``gmaiou train`` resolves from a ``python -m gmaiou train ...`` argument list."""
    from gmaiou.cli import build_parser
    from gmaiou.training.cli import config_from_args

    assert command[:4] == ["python", "-m", "gmaiou", "train"]
    return config_from_args(build_parser().parse_args(command[3:]))[0]


# ----------------------------------------------------------------------------- the steps


def test_paper_step_decay_keeps_the_paper_fractions():
    assert paper_step_decay(55) == (20.0, 42.0, 49.0, 52.0)
    assert paper_step_decay(4) == (1.4545, 3.0545, 3.5636, 3.7818)
    # 200 iterations per epoch (800 images, batch 4): the decays fall where 20/55 ... put them.
    assert steps_to_iterations(paper_step_decay(4), 200) == (291, 611, 713, 756)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="epochs must be a positive integer"):
            paper_step_decay(bad)


def test_first_step_is_the_fixed_iou_preset_with_step_decay():
    step, first = table3_configs()[0]
    preset = get_config("yolact-fixed-r18-160")
    assert settings_between(preset, first) == (
        'train.schedule="step"',
        "train.steps=[1.4545, 3.0545, 3.5636, 3.7818]",
    )
    assert first == apply_settings(preset, step.settings)


def test_last_step_is_the_gmayolact_preset_exactly():
    last = table3_configs()[-1][1]
    preset = get_config("gmayolact-atss-gmaiou-r18-160")
    assert dataclasses.replace(last, name=preset.name) == preset
    spec = [s for s in get_grid("table3", "default") if s.label == LABELS[-1]][0]
    assert spec.preset == preset.name and spec.settings == () and spec.variant == ""
    assert spec.config() == preset  # the record's config is the preset, name included


#: What each step may change, field by field (the step before -> the step).
EXPECTED_CHANGES = {
    "+ GmaIoU-ATSS": {"model.anchors", "model.anchor_scaling", "assigner.kind",
                      "assigner.measure", "loss.mask_weight"},
    "+ CARAFE": {"model.upsample"},
    "+ DCNv2": {"model.dcn"},
    "+ cosine": {"train.schedule", "train.steps"},
    "+ two anchor scales": {"model.anchor_scales"},
    "+ RS loss (GmaYOLACT)": {"model.arch", "model.classifier", "loss.kind", "loss.self_balance",
                              "postprocess.score_activation", "postprocess.score_thr"},
}  # fmt: skip


def _changed(a, b) -> set[str]:
    """Fields that differ, compared section by section with dataclasses.asdict."""
    out = set()
    for section in SECTIONS:
        x, y = dataclasses.asdict(getattr(a, section)), dataclasses.asdict(getattr(b, section))
        out |= {f"{section}.{k}" for k in x if x[k] != y[k]}
    return out


@pytest.mark.parametrize("epochs", [None, 1])
def test_each_step_changes_exactly_its_own_fields(epochs):
    chain = table3_configs(epochs=epochs)
    assert [s.label for s, _ in chain] == LABELS
    for (_, prev), (step, cur) in zip(chain, chain[1:]):
        assert _changed(prev, cur) == EXPECTED_CHANGES[step.label], step.label
        assert {s.split("=")[0] for s in settings_between(prev, cur)} == EXPECTED_CHANGES[
            step.label
        ]
        assert {s.split("=")[0] for s in step.settings} == EXPECTED_CHANGES[step.label]
        assert prev.model.backbone == cur.model.backbone == "r18"


def test_cosine_step_and_the_steps_before_it():
    chain = dict((s.label, c) for s, c in table3_configs())
    for label in LABELS[:4]:
        assert chain[label].train.schedule == "step" and chain[label].train.steps
    for label in LABELS[4:]:
        assert chain[label].train.schedule == "cosine" and chain[label].train.steps == ()
    # The recipe's other training settings hold throughout.
    for config in chain.values():
        t = config.train
        assert (t.optimizer, t.lr, t.epochs, t.batch_size) == ("adamw", 1e-3, 4, 4)
        assert config.model.proto_scale == 8 and config.augment.flip


def test_steps_frame_lists_every_step_with_its_settings():
    frame = steps_frame()
    assert list(frame["configuration"]) == LABELS and list(frame["step"]) == list(range(1, 8))
    assert frame["settings"].iloc[2] == "model.upsample=carafe"
    assert all(len(text) > 20 for text in frame["adds"])


# ----------------------------------------------------------------------------- the grid


@pytest.mark.parametrize("profile", ["smoke", "quick", "default"])
def test_table3_grid_pairs_every_step_over_the_same_seeds(profile):
    specs = get_grid("table3", profile)
    assert len({s.run_id for s in specs}) == len(specs)
    seeds = {}
    for s in specs:
        seeds.setdefault(s.label, set()).add(s.seed)
    assert list(seeds) == LABELS
    expected = set(range(TABLE3_SEEDS.get(profile, 2)))
    more, extra_steps = TABLE3_EXTRA_SEEDS.get(profile, (0, ()))
    for number, label in enumerate(LABELS, start=1):
        extra = set(range(len(expected), len(expected) + more)) if number in extra_steps else set()
        assert seeds[label] == expected | extra, label
    assert len(expected) == (1 if profile == "quick" else 2)  # quick: within its 20 minutes
    # default: a third seed for YOLACT, ATSS-YOLACT (GmaIoU) and GmaYOLACT only
    assert (profile != "default") or (more, extra_steps) == (1, (1, 2, 7))
    assert len({s.data for s in specs}) == 1
    # Each run trains its step's config; its record's spec gives that config back, and the
    # command the record keeps for people trains it too.
    epochs = specs[0].epochs
    chain = {s.label: c for s, c in table3_configs(epochs=epochs)}
    for s in specs:
        batch = {"batch_size": s.batch_size} if s.batch_size else {}  # smoke: batch 2
        expected = apply_overrides(dataclasses.replace(chain[s.label], name=s.preset), batch)
        assert s.config() == expected, s.run_id
        assert spec_from_record({"spec": json.loads(json.dumps(s.to_dict()))}) == s, s.run_id
        assert _cli_config(s.train_command()) == s.config(), s.run_id


def test_smoke_runs_are_seconds_long_and_default_runs_the_recipe():
    smoke = get_grid("table3", "smoke")
    assert all(s.max_iters == 1 and s.workers == 0 and s.batch_size == 2 for s in smoke)
    default = get_grid("table3", "default")
    assert all(s.max_iters is None and s.epochs is None and s.batch_size is None for s in default)
    assert all(s.data == SyntheticData(1000, 160) for s in default)


# ----------------------------------------------------------------------------- speed


def _metrics(path: Path, times: list[float]) -> Path:
    path.write_text("".join(json.dumps({"iteration": i + 1, "time": t}) + "\n"
                            for i, t in enumerate(times)))  # fmt: skip
    return path


def test_median_iteration_seconds_drops_the_warm_up(tmp_path):
    path = _metrics(tmp_path / "metrics.jsonl", [9.0, 1.0, 3.0, 2.0])
    assert median_iteration_seconds(path, warmup=1) == (2.0, 3)
    assert median_iteration_seconds(path, warmup=0) == (2.5, 4)
    assert median_iteration_seconds(path, warmup=10) == (2.0, 1)  # shorter than the warm-up
    with pytest.raises(ValueError, match="holds no iteration"):
        median_iteration_seconds(_metrics(tmp_path / "empty.jsonl", []))
    with pytest.raises(FileNotFoundError, match="no training log"):
        median_iteration_seconds(tmp_path / "missing.jsonl")
    with pytest.raises(ValueError, match="warmup must be"):
        median_iteration_seconds(path, warmup=-1)


def test_speed_record_is_measured_once_and_remade_for_a_retrained_run(tmp_path, monkeypatch):
    spec = RunSpec(
        grid="table3", profile="smoke", preset="yolact-atss-gmaiou-r18-160", seed=0,
        data=SyntheticData(8, 96), label=LABELS[1], variant="step2-gmaiou-atss", epochs=1,
        max_iters=1, workers=0, settings=("model.image_size=96",),
    )  # fmt: skip
    figures = tmp_path / "figures"
    with pytest.raises(FileNotFoundError, match="has no checkpoint.pt"):
        measure_speed(spec, {"finished_at": "x"}, root=tmp_path, figures=figures)
    record = run_one(spec, root=tmp_path, figures=figures, progress=False)
    speed = measure_speed(spec, record, root=tmp_path, figures=figures, warmup_images=0)
    path = speed_path(spec, figures)
    assert path == figures / "runs" / "smoke" / "table3-speed" / f"{spec.run_id}.json"
    assert json.loads(path.read_text()) == speed
    assert speed["images_per_s"] > 0 and speed["train_s_per_iteration"] > 0
    assert speed["anchors"] > 0 and speed["train_torch_threads"] == record["torch_threads"]
    assert speed["infer_torch_threads"] >= 1 and speed["run_finished_at"] == record["finished_at"]

    import gmaiou.paper.benchmarks.infer as infer

    def boom(*args, **kwargs):
        raise AssertionError("timed again")

    monkeypatch.setattr(infer, "run_infer_benchmark", boom)
    assert measure_speed(spec, record, root=tmp_path, figures=figures) == speed  # read back
    retrained = {**record, "finished_at": "later"}
    with pytest.raises(AssertionError, match="timed again"):
        measure_speed(spec, retrained, root=tmp_path, figures=figures)
    with pytest.raises(AssertionError, match="timed again"):
        measure_speed(spec, record, root=tmp_path, figures=figures, force=True)


# ----------------------------------------------------------------------------- the report

#: Hand-made mask AP per step and seed (seeds 0, 1, 2); the last step has one seed only.
MASK_AP = {
    1: (10.0, 11.0, 12.0),
    2: (12.0, 13.5, 14.0),  # - step 1: 2, 2.5, 2    -> helps
    3: (11.0, 12.5, 13.0),  # - step 2: -1, -1, -1   -> hurts
    4: (11.5, 12.0, 13.0),  # - step 3: 0.5, -0.5, 0 -> no detectable change
    5: (12.5, 13.0, 14.0),  # - step 4: 1, 1, 1      -> helps
    6: (12.5, 13.0, 14.0),  # - step 5: 0, 0, 0      -> no detectable change
    7: (20.0,),  # one seed: not enough seeds
}


def _records():
    records, speeds = [], []
    for step, values in MASK_AP.items():
        for seed, ap in enumerate(values):
            rid = f"s{step}-seed{seed}"
            metrics = {"AP": ap, "AP50": 2 * ap, "AP75": ap / 2, "oLRP": 100 - ap}
            records.append({
                "id": rid, "label": LABELS[step - 1], "preset": "p", "seed": seed,
                "data": {"mix": "uniform"}, "train_seconds": 60.0, "iterations": 10,
                "device_name": "cpu (1 threads)",
                "metrics": {"segm": metrics, "bbox": {**metrics, "AP": ap + 10, "oLRP": 90 - ap}},
            })  # fmt: skip
            speeds.append({
                "id": rid, "train_s_per_iteration": 1.0 if step < 4 else 2.0 + 0.1 * seed,
                "images_per_s": 20.0 if step < 4 else 10.0 + seed,
                "anchors": {1: 1614, 2: 538}.get(step, 538 if step < 6 else 1076),
            })  # fmt: skip
    return records, speeds


def test_step_gains_by_hand():
    records, speeds = _records()
    gains = step_gains(step_frame(records, speeds))
    mask = gains[(gains["metric"] == "mask AP") & (gains["over"] == "previous step")]
    mask = mask.set_index("step")
    half = 4.3026527 * math.sqrt(1 / 12) / math.sqrt(3)  # t(2) * std(2, 2.5, 2) / sqrt(3)
    assert mask.loc[2, "mean"] == pytest.approx(13 / 6)
    assert mask.loc[2, "ci low"] == pytest.approx(13 / 6 - half, abs=1e-3)
    assert mask.loc[2, "ci high"] == pytest.approx(13 / 6 + half, abs=1e-3)
    assert dict(mask["verdict"]) == {
        2: "helps", 3: "hurts", 4: "no detectable change", 5: "helps",
        6: "no detectable change", 7: "not enough seeds (1 paired)",
    }  # fmt: skip
    # oLRP is lower-is-better: mask oLRP = 100 - AP moves the other way, same verdicts.
    olrp = gains[(gains["metric"] == "mask oLRP") & (gains["over"] == "previous step")]
    assert dict(zip(olrp["step"], olrp["verdict"])) == dict(mask["verdict"])
    # Over step 1, from step 3 on (step 2's is its gain over the step before).
    first = gains[(gains["metric"] == "mask AP") & (gains["over"] == "step 1")]
    assert list(first["step"]) == [3, 4, 5, 6, 7]
    assert first.set_index("step").loc[5, "mean"] == pytest.approx(13 / 6)  # 2.5, 2, 2
    # Speed: DCN (step 4) doubles s/iteration and halves fps on every seed.
    speed = gains[(gains["step"] == 4) & (gains["over"] == "previous step")].set_index("metric")
    assert (
        speed.loc["train s/it", "verdict"] == "slower" and speed.loc["fps", "verdict"] == "slower"
    )
    assert speed.loc["train s/it", "mean"] == pytest.approx(1.1)


def test_verdicts_need_the_holm_adjusted_p():
    records, speeds = _records()
    for r in records:  # step 2 - step 1: 1.0, 1.5, 2.0 instead of 2, 2.5, 2
        if r["label"] == LABELS[1]:
            r["metrics"]["segm"]["AP"] = {0: 11.0, 1: 12.5, 2: 14.0}[r["seed"]]
    gains = step_gains(step_frame(records, speeds))
    mask = gains[gains["metric"] == "mask AP"]
    # One family per metric: the 9 mask-AP comparisons with two or more pairs (step 7 has one).
    assert set(mask["family size"].dropna()) == {9} and mask["family size"].isna().sum() == 2
    row = mask[(mask["step"] == 2) & (mask["over"] == "previous step")].iloc[0]
    # mean 1.5, sd 0.5, 3 pairs: t = 5.196, p = 0.0351; the 6th smallest of 9 p-values
    assert [row["mean"], row["ci low"], row["ci high"]] == pytest.approx(
        [1.5, 1.5 - 4.3026527 * 0.5 / math.sqrt(3), 1.5 + 4.3026527 * 0.5 / math.sqrt(3)]
    )
    assert row["p"] == pytest.approx(0.035099, abs=1e-6)
    assert row["p holm"] == pytest.approx(4 * row["p"]) and row["holm level"] == 0.05 / 4
    half = 8.8603 * 0.5 / math.sqrt(3)  # qt(1 - 0.0125 / 2, 2)
    assert row["holm low"] == pytest.approx(1.5 - half, abs=1e-3)
    assert row["ci low"] > 0 and row["verdict"] == "no detectable change"
    assert numbers_in(format_gain(row)) == pytest.approx(
        [1.5, 0.26, 2.74, 1.5 - half, 1.5 + half, 0.14], abs=6e-3
    )
    # A change needs p holm <= 0.05; its side follows the mean and the metric's direction.
    helped = mask[mask["verdict"] == "helps"]
    assert (helped["p holm"] <= 0.05).all() and (helped["mean"] > 0).all()
    assert set(zip(helped["step"], helped["over"])) == {
        (5, "previous step"),
        (5, "step 1"),
        (6, "step 1"),
    }


def test_gmayolact_is_compared_with_a_cosine_yolact_in_the_same_family():
    records, speeds = _records()
    records = [r for r in records if r["label"] != LABELS[-1]]
    speeds = [s for s in speeds if not s["id"].startswith("s7")]
    for seed, ap in enumerate((20.0, 21.0, 22.5)):
        metrics = {"AP": ap, "AP50": 2 * ap, "AP75": ap / 2, "oLRP": 100 - ap}
        records.append({**records[0], "id": f"s7-seed{seed}", "label": LABELS[-1], "seed": seed,
                        "metrics": {"segm": metrics, "bbox": {**metrics, "AP": ap + 10}}})  # fmt: skip
    cosine = []
    for seed, ap in enumerate((15.0, 16.0, 17.0)):  # GmaYOLACT - cosine YOLACT: 5, 5, 5.5
        metrics = {"AP": ap, "AP50": 2 * ap, "AP75": ap / 2, "oLRP": 100 - ap}
        cosine.append({**records[0], "id": f"cos-seed{seed}", "label": "fixed IoU", "seed": seed,
                       "metrics": {"segm": metrics, "bbox": {**metrics, "AP": ap + 10}}})  # fmt: skip
    report = table3_report(records, speeds, cosine_yolact=cosine)
    rows = report.gains[report.gains["over"] == COSINE_OVER]
    # accuracy only: the cosine runs have no speed records
    assert sorted(rows["metric"]) == ["box AP", "box oLRP", "mask AP", "mask oLRP"]
    mask = rows.set_index("metric").loc["mask AP"]
    assert mask["step"] == 7 and mask["pairs"] == 3 and mask["mean"] == pytest.approx(31 / 6)
    family = report.gains[report.gains["metric"] == "mask AP"]
    assert mask["family size"] == family["p holm"].notna().sum() == 12  # 6 + 5 + 1
    assert report.gains_table["minus"].iloc[-1].startswith(COSINE_OVER)
    claim = report.claims.set_index("claim")["result"].filter(like="+7 mask AP").iloc[0]
    over_step1 = report.gains[(report.gains["over"] == "step 1") & (report.gains["step"] == 7)]
    first = over_step1.set_index("metric").loc["mask AP"]
    # step 1: 1 (step), its gain, raw interval, Holm interval, p, pairs, the paper's 7; then the
    # cosine YOLACT: step 1 and step 5 named, its gain, intervals, p, pairs, 7, and 550 px
    numbers = numbers_in(claim)
    assert numbers[:8] == pytest.approx(
        [1, first["mean"], first["ci low"], first["ci high"], first["holm low"],
         first["holm high"], first["p holm"], 3], abs=6e-3
    )  # fmt: skip
    # the paper's 7; grid table2, step 1's config, step 5's annealing; then the cosine gain
    assert numbers[8:12] == [7, 2, 1, 5]
    assert numbers[12:20] == pytest.approx(
        [mask["mean"], mask["ci low"], mask["ci high"], mask["holm low"], mask["holm high"],
         mask["p holm"], 3, 7], abs=6e-3
    )  # fmt: skip
    without = table3_report(records, speeds).claims.set_index("claim")["result"]
    # no second baseline: only step 1's comparison, then "step 1's config", ResNet-50, 550 px
    assert numbers_in(without.filter(like="+7 mask AP").iloc[0])[7:] == [3, 7, 1, -50, 550]


def test_cosine_yolact_records_are_table2s_fixed_iou_runs_on_the_same_set():
    from gmaiou.paper.experiments.runner import load_records

    figures = Path(__file__).resolve().parents[2] / "figures"
    specs = get_grid("table3", "default")
    table2 = load_records("default", "table2", figures)
    found = cosine_yolact_records(table2, specs)
    assert [(r["label"], r["data"]["mix"], r["seed"]) for r in found] == [
        ("fixed IoU", "uniform", s) for s in range(3)
    ]
    assert cosine_yolact_records(load_records("default", "table3", figures), specs) == []
    assert cosine_yolact_records(table2, get_grid("table3", "smoke")) == []  # other config


def test_committed_table3_bounds_are_formatted_from_exact_intervals():
    from gmaiou.paper.experiments.runner import load_records

    figures = Path(__file__).resolve().parents[2] / "figures"
    # every record, dirty ones included: the arithmetic is checked, not the table
    records = load_records("default", "table3", figures, include_dirty=True)
    report = table3_report(records)
    row = report.gains[
        (report.gains["step"] == 6)
        & (report.gains["over"] == "step 1")
        & (report.gains["metric"] == "mask oLRP")
    ].iloc[0]
    # seeds 0, 1: -10.069313 and -7.642246; qt(0.975, 1) = 12.7062047
    assert row["ci low"] == pytest.approx(-24.27516, abs=1e-4)
    assert numbers_in(format_gain(row))[:3] == [-8.86, -24.28, 6.56]


def test_report_tables_have_no_nan_and_say_when_seeds_are_missing():
    records, speeds = _records()
    report = table3_report(records, speeds)
    table = report.table.set_index("step")
    assert table.loc[1, "mask AP"] == "11.0 ± 1.0" and table.loc[7, "seeds"] == 1
    assert table.loc[7, "mask AP"] == "20.0" and table.loc[1, "anchors"] == "1,614"
    assert table.loc[4, "train s/it"] == "2.100 ± 0.100" and table.loc[4, "fps"] == "11.0 ± 1.0"
    for frame in (report.table, report.gains_table, report.findings, report.claims):
        assert "nan" not in frame.to_markdown().lower()
    assert "nan" not in report.text.lower()
    row7 = report.findings.set_index("step").loc[7, "mask AP"]
    assert row7.startswith("not enough seeds") and numbers_in(row7) == [1, 7.5, 1]
    mask = report.gains[
        (report.gains["over"] == "previous step") & (report.gains["metric"] == "mask AP")
    ]
    verdicts = dict(zip(mask["step"], mask["verdict"]))
    assert [s for s, v in verdicts.items() if v == "helps"] == [2, 5]
    assert [s for s, v in verdicts.items() if v == "hurts"] == [3]
    assert verdicts[7].startswith("not enough seeds")
    claims = report.claims.set_index("claim")["result"]
    assert "+1.5 to +2" in claims.filter(like="+1.5 to +2").iloc[0]  # names its comparison
    assert numbers_in(claims.filter(like="double").iloc[0])[:3] == [1076, 538, 2.0]
    assert numbers_in(claims.filter(like="25%").iloc[0])[:2] == [538, 1614]
    assert claims.filter(like="single-GPU").iloc[0].startswith("not tested")


def test_a_wide_fps_interval_is_not_read_as_support_for_the_claim():
    records, speeds = _records()
    seed1 = {**records[-1], "id": "s7-seed1", "seed": 1}
    # GmaYOLACT - YOLACT fps: -10 with seed 0, +10 with seed 1: no detectable change.
    records, speeds = records + [seed1], speeds + [{**speeds[-1], "id": "s7-seed1",
                                                    "images_per_s": 30.0}]  # fmt: skip
    claims = table3_report(records, speeds).claims.set_index("claim")["result"]
    result = claims.filter(like="keeps YOLACT's inference time").iloc[0]
    # the gain, its raw and Holm intervals (one family of 2 fps comparisons), the adjusted p,
    # the fps ratio and the pairs
    assert "no detectable change" in result
    assert numbers_in(result)[:8] == [0.0, -127.1, 127.1, -127.1, 127.1, 1.0, 1.0, 2]


def test_report_without_speed_records_says_so():
    records, _ = _records()
    report = table3_report(records)
    assert set(report.table["fps"]) == {"n/a"} and set(report.table["anchors"]) == {"n/a"}
    claims = report.claims.set_index("claim")["result"]
    assert "speed records missing" in claims.filter(like="inference time").iloc[0]
    assert "nan" not in report.text.lower()


def test_report_refuses_bad_input():
    with pytest.raises(ValueError, match="at least one run record"):
        table3_report([])
    records, _ = _records()
    records[0] = {**records[0], "label": "ATSS IoU"}
    with pytest.raises(ValueError, match=r"not Table 3 steps: \['ATSS IoU'\]"):
        table3_report(records)
    records = [r for r in _records()[0] if r["label"] in LABELS[:2]]
    with pytest.raises(ValueError, match="reads the 7 steps of table3_steps, got 2"):
        table3_report(records, steps=table3_steps()[:2])


@pytest.mark.parametrize(
    ("low", "high", "higher", "speed", "words"),
    [
        (0.5, 1.0, True, False, "helps"),
        (-1.0, -0.5, True, False, "hurts"),
        (-0.5, 0.5, True, False, "no detectable change"),
        (-1.0, -0.5, False, False, "helps"),  # oLRP down
        (0.5, 1.0, False, True, "slower"),  # s/iteration up
        (0.5, 1.0, True, True, "faster"),  # fps up
        (math.nan, math.nan, True, False, "not enough seeds (1 paired)"),
    ],
)
def test_verdict_words(low, high, higher, speed, words):
    pairs = 1 if math.isnan(low) else 3
    assert verdict({"pairs": pairs, "ci low": low, "ci high": high}, higher, speed) == words


def test_format_gain():
    assert format_gain({"mean": 1.234, "pairs": 3, "ci low": 0.5, "ci high": 1.96}) == (
        "+1.23 (+0.50 to +1.96)"
    )
    assert format_gain({"mean": -1.0, "pairs": 1, "ci low": math.nan, "ci high": math.nan}) == (
        "-1.00 (1 seed, no interval)"
    )


def _with_cosine():
    """:func:`_records` with GmaYOLACT on three seeds (20, 21, 22.5: step 1 + 10, 10, 10.5) and
    a cosine-schedule YOLACT (15, 16, 17: GmaYOLACT - it = 5, 5, 5.5)."""
    records, speeds = _records()
    records = [r for r in records if r["label"] != LABELS[-1]]
    speeds = [s for s in speeds if not s["id"].startswith("s7")]
    cosine = []
    for seed, (ap, cos) in enumerate(((20.0, 15.0), (21.0, 16.0), (22.5, 17.0))):
        for label, value, out in ((LABELS[-1], ap, records), ("fixed IoU", cos, cosine)):
            metrics = {"AP": value, "AP50": 2 * value, "AP75": value / 2, "oLRP": 100 - value}
            out.append({**records[0], "id": f"{label}-{seed}", "label": label, "seed": seed,
                        "metrics": {"segm": metrics, "bbox": {**metrics, "AP": value + 10}}})  # fmt: skip
    return records, speeds, cosine


def test_headline_names_gmayolacts_gain_over_both_yolact_baselines():
    from gmaiou.paper.experiments.table3 import table3_headline

    records, speeds, cosine = _with_cosine()
    report = table3_report(records, speeds, cosine_yolact=cosine)
    assert report.headline == table3_headline(report.gains)
    assert numbers_in(report.headline) == pytest.approx([10.2, 5.2])  # 61/6 and 31/6
    # without the cosine runs: step 1's gain alone; with one GmaYOLACT seed: 1 pair, no interval
    assert numbers_in(table3_report(records, speeds).headline) == pytest.approx([10.2])
    one = table3_report(*_records()).headline
    assert numbers_in(one) == [10.0, 1]


def test_findings_are_sentences_one_per_line_with_each_steps_gains():
    records, speeds, cosine = _with_cosine()
    report = table3_report(records, speeds, cosine_yolact=cosine)
    lines = report.lines
    assert all("\n" not in line and line.endswith(".") for line in lines)
    # which steps help on mask AP and box AP, every claim, steps 2-7, how verdicts are made
    assert len(lines) == 2 + len(report.claims) + 6 + 1
    # each step's number, the step before, the pairs (the label taken out: "+ DCNv2" has a 2)
    steps = [line.replace(LABELS[k - 1], "") for k, line in enumerate(lines[-7:-1], start=2)]
    assert [numbers_in(line)[:3] for line in steps] == [[k, k - 1, 3] for k in range(2, 8)]
    row = report.gains[(report.gains["step"] == 2) & (report.gains["over"] == "previous step")]
    mask = row.set_index("metric").loc["mask AP"]
    assert numbers_in(steps[0])[3:6] == pytest.approx(
        [mask["mean"], mask["ci low"], mask["ci high"]], abs=6e-3
    )
    claims = [line for line in lines if line.startswith("The paper: ")]
    assert len(claims) == len(report.claims)


def test_write_table3_gives_one_stem_and_the_extra_tables(tmp_path, monkeypatch):
    import matplotlib

    from gmaiou.paper.experiments.table3 import NAME, write_table3
    from gmaiou.paper.figures import read_headline

    matplotlib.use("Agg")
    monkeypatch.setenv("GMAIOU_FIGURES", str(tmp_path))
    records, speeds, cosine = _with_cosine()
    report = table3_report(records, speeds, cosine_yolact=cosine)
    paths = write_table3(report, LABELS, "smoke", "hand-made records")
    assert {p.name for p in paths} == {
        f"{NAME}.md", f"{NAME}.png", f"{NAME}.pdf", f"{NAME}_findings.md",
        "table3_steps.md", "table3_summary.md",
    }  # fmt: skip
    findings = tmp_path / "smoke" / f"{NAME}_findings.md"
    assert numbers_in(read_headline(findings)) == pytest.approx([10.2, 5.2])
    bullets = [line for line in findings.read_text().splitlines() if line.startswith("- ")]
    assert len(bullets) == len(report.lines)
