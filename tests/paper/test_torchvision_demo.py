"""Notebook 08's parts (gmaiou.paper.torchvision_demo) and ``gmaiou-paper bench tvmatch``."""

from __future__ import annotations

import dataclasses
import json

import matplotlib
import pytest
import torch

from gmaiou.paper.benchmarks.tvmatch import markdown_table, maskrcnn_anchors, run_tvmatch
from gmaiou.paper.cli import main
from gmaiou.paper.torchvision_demo import (
    FAMILIES,
    TV_MEASURES,
    build_family,
    change_table,
    checkpoint_file,
    label_changes,
    paired_comparison,
    paired_table,
    plan,
    plot_label_changes,
    record_file,
    synthetic_batch,
    train_steps,
    tv_grid,
)
from gmaiou.torchvision import describe

matplotlib.use("Agg")


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_synthetic_batch_holds_torchvision_targets():
    images, targets = synthetic_batch(96, 2, seed=1)
    assert len(images) == len(targets) == 2
    for image, t in zip(images, targets):
        assert image.shape == (3, 96, 96) and 0.0 <= float(image.min()) <= float(image.max()) <= 1
        g = len(t["boxes"])
        assert g > 0 and t["masks"].shape == (g, 96, 96) and t["masks"].dtype == torch.uint8
        assert t["labels"].dtype == torch.int64 and int(t["labels"].min()) >= 1
        for box, mask in zip(t["boxes"], t["masks"].bool()):  # tight boxes of the masks
            ys, xs = torch.where(mask)
            assert box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def test_every_family_reports_no_change_under_iou_and_consistent_changes_under_gmaiou():
    images, targets = synthetic_batch(96, 2, seed=2)
    stages = {
        "maskrcnn": ["rpn", "roi"],
        "fasterrcnn": ["rpn", "roi"],
        "retinanet": ["retinanet"],
        "ssdlite": ["ssd"],
        "fcos": ["fcos"],
    }
    all_changes = []
    for family in FAMILIES:
        model = build_family(family, 96)
        state = {k: v.clone() for k, v in model.state_dict().items()}
        same = label_changes(model, family, images, targets, "iou")
        assert [c.stage for c in same] == [s for s in stages[family] for _ in images]
        for c in same:
            assert torch.equal(c.by_measure, c.by_iou)
        changes = label_changes(model, family, images, targets, "gmaiou")
        assert "gmaiou-mask" in describe(model)
        for k, v in model.state_dict().items():  # no step, running statistics put back
            assert torch.equal(v, state[k]), k
        for c in changes:
            assert not bool((c.gained & c.lost).any())
            assert c.boxes.shape[0] == c.by_measure.shape[0] == c.by_iou.shape[0]
            assert int((c.by_measure >= 0).sum()) - int((c.by_iou >= 0).sum()) == int(
                c.gained.sum()
            ) - int(c.lost.sum())
        all_changes += changes
    table = change_table(all_changes)
    assert list(table["family"]) == [f for f in FAMILIES for _ in stages[f]]
    assert int(table["boxes"].iloc[0]) == sum(
        c.boxes.shape[0] for c in all_changes if c.family == "maskrcnn" and c.stage == "rpn"
    )
    assert (table["positives (measure)"] - table["positives (IoU)"]).equals(
        table["gained"] - table["lost"]
    )
    fig = plot_label_changes(images[0], targets[0], all_changes[:3], title="t")
    assert len(fig.axes) == 3


def test_train_steps_returns_one_finite_loss_per_step():
    images, targets = synthetic_batch(96, 2, seed=3)
    losses = train_steps(build_family("retinanet", 96), images, targets, steps=2)
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))


def test_grid_pairs_every_seed_and_set_and_the_plan_multiplies_out():
    runs = tv_grid("default")
    assert len(runs) == 6 and len({r.run_id for r in runs}) == 6
    pairs = {(r.mix, r.seed) for r in runs}
    assert len(pairs) == 3 and {r.measure for r in runs} == set(TV_MEASURES)
    p = plan("default", seconds_per_iter=1.5, seconds_per_val_image=0.6)
    assert p["runs"] == 6 and p["iterations per run"] == 400  # 2 epochs of 800 images, batch 4
    assert p["minutes per run"] == pytest.approx((400 * 1.5 + 200 * 0.6) / 60)
    assert p["minutes for the grid"] == pytest.approx(6 * p["minutes per run"])
    with pytest.raises(ValueError, match="no paired comparison"):
        tv_grid("nonsense")


def _fake_record(run, mask_ap):
    return {
        "run": {"profile": run.profile, "mix": run.mix, "measure": run.measure, "seed": run.seed},
        "metrics": {"segm": {"AP": mask_ap}, "bbox": {"AP": mask_ap / 2}},
    }


def test_paired_comparison_reads_records_and_trains_only_the_missing(tmp_path):
    runs = tv_grid("smoke")
    figures = tmp_path / "figures"
    for run in runs[:3]:
        path = record_file(run, figures)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(_fake_record(run, 10.0 if run.measure == "iou" else 12.0)))
    read = paired_comparison("smoke", root=tmp_path, figures=figures, train=False)
    assert len(read) == 3
    table = paired_table(read)
    assert set(table["measure"]) == {"iou", "gmaiou"}
    assert table["mask AP gain (GmaIoU - IoU)"].iloc[0] == pytest.approx(2.0)
    assert table["paired seeds"].iloc[0] == 1  # seed 1 has its IoU run only
    # The missing run is trained (2 iterations at smoke) on a dataset generated under root.
    records = paired_comparison("smoke", root=tmp_path, figures=figures, train=True)
    assert len(records) == 4 and record_file(runs[3], figures).is_file()
    trained = records[3]
    assert trained["run_id"] == runs[3].run_id and trained["iterations"] == 2
    assert set(trained["metrics"]) == {"bbox", "segm"} and "AP" in trained["metrics"]["segm"]
    assert [s["start"] for s in trained["segments"]] == [0]
    assert (tmp_path / "data").is_dir()
    # The record is in place: its checkpoint and the checkpoint's folder are gone.
    assert not checkpoint_file(runs[3], tmp_path).parent.exists()


def test_paired_comparison_trains_nothing_with_recorded_only(tmp_path, monkeypatch):
    import gmaiou.paper.torchvision_demo as demo

    def refuse(*args, **kwargs):
        raise AssertionError("RECORDED=1 must train nothing")

    monkeypatch.setattr(demo, "train_run", refuse)
    monkeypatch.setenv("GMAIOU_RECORDED_ONLY", "1")
    assert paired_comparison("smoke", root=tmp_path, figures=tmp_path / "figures") == []


def test_tvmatch_benchmark_record_and_cli(tmp_path):
    assert maskrcnn_anchors(320).shape == (25575, 4)  # (80² + 40² + 20² + 10² + 5²) × 3
    record = run_tvmatch(sizes=(128,), images=1, repeats=1, proposals=50)
    (row,) = record["rows"]
    assert set(row["ms"]) == {"iou", "maiou", "gmaiou"} and row["ms"]["iou"]["tables"] == 0.0
    assert set(row["ratio"]) == {"maiou", "gmaiou"} and all(v > 0 for v in row["ratio"].values())
    assert "| 128 |" in markdown_table(record)
    out = tmp_path / "tv.json"
    args = ["bench", "tvmatch", "--sizes", "96", "--images", "1", "--repeats", "1"]
    assert main([*args, "--proposals", "20", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["benchmark"] == "tvmatch"
    assert out.with_suffix(".md").read_text().startswith("Mask R-CNN matching")


def test_label_change_headline_and_findings_sum_the_matchers():
    import pandas as pd
    from conftest import numbers_in

    from gmaiou.paper.torchvision_demo import label_change_findings, label_change_headline

    table = pd.DataFrame(
        [
            ("maskrcnn", "rpn", "gmaiou-mask", 1000, 10, 7, 1, 4, 0),
            ("maskrcnn", "roi", "gmaiou-mask", 200, 5, 5, 0, 0, 0),
            ("fcos", "fcos", "gmaiou-mask", 300, 6, 8, 2, 0, 1),
        ],
        columns=["family", "stage", "measure", "boxes", "positives (IoU)",
                 "positives (measure)", "gained", "lost", "reassigned"],
    )  # fmt: skip
    # 3 matchers of 2 families lose 4 and gain 3 of 21 positives, reassign 1
    assert numbers_in(label_change_headline(table)) == [3, 2, 4, 3, 21, 1]
    lines = label_change_findings(table)
    assert numbers_in(lines[0]) == [10, 7, 1000, 1, 4, 0]
    assert numbers_in(lines[-1]) == [1, 3, 1, 1]  # fewer, of, more, as many


def test_paired_comparison_is_written_under_one_stem_once_records_exist(tmp_path, monkeypatch):
    from conftest import numbers_in

    from gmaiou.paper.figures import read_headline
    from gmaiou.paper.torchvision_demo import (
        PAIRED,
        paired_gains,
        paired_headline,
        write_paired_comparison,
    )

    monkeypatch.setenv("GMAIOU_FIGURES", str(tmp_path))
    assert write_paired_comparison([], "smoke") == []
    records = [
        _fake_record(run, {("iou", 0): 10.0, ("gmaiou", 0): 12.0, ("iou", 1): 11.0,
                           ("gmaiou", 1): 12.0}[(run.measure, run.seed)])
        for run in tv_grid("smoke")
    ]  # fmt: skip
    gains = {g["metric"]: g for g in paired_gains(records)}
    # mask AP gains 2 and 1: mean 1.5, sd 0.707, t(1) = 12.706 -> half-width 6.353
    assert gains["mask AP"]["pairs"] == 2 and gains["mask AP"]["higher"] == 2
    assert [gains["mask AP"][k] for k in ("mean", "ci low", "ci high")] == pytest.approx(
        [1.5, 1.5 - 6.353, 1.5 + 6.353], abs=1e-3
    )
    assert gains["box AP"]["mean"] == pytest.approx(0.75)  # box AP = mask AP / 2
    assert numbers_in(paired_headline(records)) == [1.5, 95, -4.85, 7.85, 2]
    assert numbers_in(paired_headline(records[:1])) == [1]  # no pair yet: 1 run recorded
    paths = write_paired_comparison(records, "smoke")
    assert {p.name for p in paths} == {
        f"{PAIRED}{s}" for s in (".md", ".png", ".pdf", "_findings.md")
    }
    headline = read_headline(tmp_path / "smoke" / f"{PAIRED}_findings.md")
    assert headline == paired_headline(records)


def test_provenance_names_device_threads_and_commit_per_group():
    from gmaiou.paper.torchvision_demo import provenance

    one = {"device_name": "AMD EPYC", "threads": 1, "commit": "abcdef0123"}
    assert provenance([one, dict(one)]) == "trained on AMD EPYC at 1 thread, commit abcdef0"
    two = {"device_name": "Intel Xeon", "threads": 2, "commit": "0123456789"}
    text = provenance([one, two, dict(two)])
    assert text.split("; ") == [
        "trained on AMD EPYC at 1 thread, commit abcdef0 (1 run)",
        "trained on Intel Xeon at 2 threads, commit 0123456 (2 runs)",
    ]
    assert provenance([{}]) == "trained on an unrecorded device at 0 threads, commit unknown"


def test_a_dirty_checkout_is_refused_on_default_and_dirty_records_stay_out(tmp_path, monkeypatch):
    import gmaiou.paper.experiments.runner as runner
    import gmaiou.paper.torchvision_demo as demo

    dirty = runner.SourceState("f" * 40, True, ("gmaiou/iou.py",))
    monkeypatch.setattr(runner, "source_state", lambda root: dirty)
    run = tv_grid("default")[0]
    with pytest.raises(
        ValueError, match=r"refusing to train maskrcnn-r18-uniform-iou-seed0.*iou\.py"
    ):
        demo.train_run(run, root=tmp_path)
    monkeypatch.setenv("GMAIOU_FIGURES", str(tmp_path))
    records = [_fake_record(r, 10.0) | {"dirty": True} for r in tv_grid("smoke")]
    assert demo.write_paired_comparison(records, "smoke") == []


def test_tv_compare_cli_lists_the_runs(capsys, tmp_path, monkeypatch):
    import gmaiou.paper.torchvision_demo as demo

    monkeypatch.setenv("GMAIOU_FIGURES", str(tmp_path / "figures"))
    monkeypatch.setattr(demo, "checkpoint_file", lambda run, root=None: tmp_path / run.run_id)
    runs = tv_grid("smoke")
    (tmp_path / runs[1].run_id).touch()
    assert main(["tv-compare", "--profile", "smoke", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == [r.run_id for r in runs]
    assert [line.split(": ")[1] for line in lines[:3]] == [
        "to train",
        "to resume from its checkpoint",
        "to train",
    ]
    assert main(["tv-compare", "--profile", "smoke", "--threads", "0", "--list"]) != 0
    assert "--threads must be at least 1, got 0" in capsys.readouterr().err


class _Stop(Exception):
    """Stands for a crash in the middle of a run."""


def _tiny_smoke(monkeypatch, **changes) -> None:
    """Smoke's comparison at 96 px on 8 images (6 train: 3 batches of 2 per epoch), 2 epochs
    cut at 4 iterations, so that a run crosses into its second epoch; ``changes`` on top."""
    import gmaiou.paper.torchvision_demo as demo

    tiny = dataclasses.replace(
        demo.TV_SCALES["smoke"], images=8, size=96, seeds=1, epochs=2, max_iters=4
    )
    monkeypatch.setitem(demo.TV_SCALES, "smoke", dataclasses.replace(tiny, **changes))


def test_an_interrupted_run_resumes_from_its_checkpoint_exactly(tmp_path, monkeypatch):
    import gmaiou.paper.experiments.runner as runner
    import gmaiou.paper.torchvision_demo as demo
    from gmaiou.paper.benchmarks import cpu_name

    _tiny_smoke(monkeypatch)
    run = tv_grid("smoke")[1]  # GmaIoU: its matching in the RPN and RoI heads is exercised
    path = checkpoint_file(run, tmp_path)
    whole = demo.train_run(run, tmp_path, allow_dirty=True, checkpoint_every=2)
    reference = torch.load(path, weights_only=True)  # written at the last iteration, 4
    path.unlink()

    lr_at = demo._lr_at

    def crash_at_third(sc, it, total):  # it counts from 0: iteration 3, after the checkpoint at 2
        if it == 2:
            raise _Stop
        return lr_at(sc, it, total)

    dirty = runner.SourceState("f" * 40, True, ("gmaiou/iou.py",))
    with monkeypatch.context() as crashing, pytest.raises(_Stop):
        crashing.setattr(demo, "_lr_at", crash_at_third)
        crashing.setattr(runner, "source_state", lambda root: dirty)  # this stretch only
        demo.train_run(run, tmp_path, allow_dirty=True, checkpoint_every=2)
    kept = torch.load(path, weights_only=True)["position"]
    assert (kept["iteration"], kept["epoch"], kept["batch"]) == (2, 1, 2)  # mid-epoch
    assert len(kept["losses"]) == 2 and len(kept["segments"]) == 1
    resumed = demo.train_run(run, tmp_path, allow_dirty=True, checkpoint_every=2)
    final = torch.load(path, weights_only=True)

    # The resumed run finished epoch 1 from the saved order, drew epoch 2's from the restored
    # generator, and ends exactly where the uninterrupted run did.
    position = final["position"]
    assert (position["iteration"], position["epoch"], position["batch"]) == (4, 2, 1)
    for key in ("perm", "losses", "iteration", "epoch", "batch"):
        assert position[key] == reference["position"][key], key
    assert set(final["model"]) == set(reference["model"])
    for key, value in reference["model"].items():
        assert torch.equal(final["model"][key], value), key
    for index, state in reference["optimizer"]["state"].items():
        assert torch.equal(final["optimizer"]["state"][index]["momentum_buffer"],
                           state["momentum_buffer"]), index  # fmt: skip
    assert torch.equal(final["order"], reference["order"])
    assert torch.equal(final["rng"], reference["rng"])
    assert resumed["iterations"] == whole["iterations"] == 4
    assert resumed["final_loss"] == whole["final_loss"]
    assert json.dumps(resumed["metrics"], sort_keys=True) == json.dumps(
        whole["metrics"], sort_keys=True
    )  # NaN-safe: the metrics a 4-iteration model scores have NaNs
    here = {"device_name": cpu_name(), "threads": 1}
    clean = {"commit": None, "dirty": False}  # tmp_path is no git checkout
    assert whole["segments"] == [{"start": 0, **here, **clean}] and whole["dirty"] is False
    # The crashed stretch ran from a dirty checkout: so does the record, whose commit is the last
    # stretch's.
    assert resumed["segments"] == [
        {"start": 0, **here, "commit": "f" * 40, "dirty": True},
        {"start": 2, **here, **clean},
    ]
    assert resumed["dirty"] is True and resumed["commit"] is None
    assert resumed["train_seconds"] == position["seconds"] > kept["seconds"] > 0


def test_a_checkpoint_of_another_run_or_scale_is_refused(tmp_path, monkeypatch):
    import gmaiou.paper.torchvision_demo as demo

    run = tv_grid("smoke")[0]
    path = checkpoint_file(run, tmp_path)
    assert path == tmp_path / "runs/smoke/torchvision/maskrcnn-r18-uniform-iou-seed0/checkpoint.pt"
    path.parent.mkdir(parents=True)
    scale = json.loads(json.dumps(dataclasses.asdict(demo.TV_SCALES["smoke"])))
    torch.save({"run": dataclasses.asdict(run) | {"seed": 1}, "scale": scale}, path)
    with pytest.raises(ValueError, match=r"^checkpoint .* is not of maskrcnn-r18-uniform-iou-seed0 "
                       r"at this scale: run seed 1 \(checkpoint\) vs 0 \(now\); delete it"):  # fmt: skip
        demo.train_run(run, tmp_path, allow_dirty=True)
    torch.save({"run": dataclasses.asdict(run), "scale": scale}, path)
    _tiny_smoke(monkeypatch)
    with pytest.raises(ValueError, match=r"at this scale: scale epochs 1 \(checkpoint\) vs 2 \(now\); "
                       r"scale images 12 \(checkpoint\) vs 8 \(now\); scale "
                       r"max_iters 2 \(checkpoint\) vs 4 \(now\); scale seeds 2 \(checkpoint\) vs "
                       r"1 \(now\); scale size 160 \(checkpoint\) vs 96 \(now\); delete it"):  # fmt: skip
        demo.train_run(run, tmp_path, allow_dirty=True)
    with pytest.raises(ValueError, match="checkpoint_every must be at least 1, got 0"):
        demo.train_run(run, tmp_path, allow_dirty=True, checkpoint_every=0)
