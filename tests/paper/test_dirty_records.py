"""Dirty run records (trained from a checkout with uncommitted changes): left out of the tables
by default, named in their footers, and retrained by ``gmaiou-paper experiment --redo-dirty``."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

import gmaiou.paper.experiments.runner as runner
from gmaiou.paper.experiments import GridRecords, get_grid, is_dirty, load_grid, load_records
from gmaiou.paper.experiments.recipe import write_learning_curve, write_recipe_search
from gmaiou.paper.experiments.records import split_dirty
from gmaiou.paper.experiments.runner import (
    RunSpec,
    SourceState,
    SyntheticData,
    record_path,
    run_grid,
    run_one,
    run_state,
)
from gmaiou.paper.experiments.stats import dirty_note, no_clean_record, training_provenance
from gmaiou.paper.experiments.table2 import table2_report
from gmaiou.paper.experiments.table5 import accuracy_source, dirty_records
from gmaiou.paper.figures import read_headline, save_no_result

CLEAN = SourceState("0" * 40, False)
REASON = "trained from a checkout with uncommitted changes"


class Stop(Exception):
    """Raised where a run would start training."""


def _stop(*args, **kwargs):
    raise Stop


def _record(label="ATSS IoU", seed=0, mix="uniform", ap=30.0, grid="table2", **extra):
    """A record with what the tables read: metrics, label, seed, data, device and timings."""
    metrics = {k: ap for k in ("AP", "AP50", "AP75", "APs", "APm", "APl")} | {"oLRP": 70.0}
    return {
        "id": f"{label}-{mix}-seed{seed}",
        "grid": grid,
        "profile": "default",
        "label": label,
        "preset": extra.pop("preset", "yolact-atss-iou-r18-160"),
        "variant": "",
        "seed": seed,
        "data": {"images": 1000, "size": 160, "seed": 0, "mix": mix, "test_images": 0},
        "metrics": {"segm": dict(metrics), "bbox": dict(metrics)},
        "iterations": 800,
        "train_seconds": 360.0,
        "wall_seconds": 380.0,
        "device_name": "CPU (1 threads)",
        "torch_threads": 1,
        "commit": "a" * 40,
        "dirty": False,
        **extra,
    }


def _write(figures: Path, grid: str, records, profile: str = "default") -> None:
    folder = figures / "runs" / profile / grid
    folder.mkdir(parents=True, exist_ok=True)
    for r in records:
        (folder / f"{r['id']}.json").write_text(json.dumps(r))


# ----------------------------------------------------------------------------- one test


def test_a_record_is_dirty_by_its_commit_or_its_flag():
    assert is_dirty({"commit": "abc-dirty"}) and is_dirty({"commit": "abc", "dirty": True})
    assert not is_dirty({"commit": "abc", "dirty": False})
    assert not is_dirty({}) and not is_dirty({"commit": None, "dirty": None})
    assert not is_dirty({"commit": "dirty-abc"})  # only a suffix says so


def test_split_dirty_keeps_the_order_and_leaves_dirty_records_out_by_default():
    records = [_record(seed=s) for s in range(5)]
    records[1]["commit"] = "b-dirty"
    records[3]["dirty"] = True
    split = split_dirty(records, "table2")
    assert [r["seed"] for r in split.used] == [0, 2, 4]
    assert [r["seed"] for r in split.left_out] == [1, 3]
    assert (split.grid, split.total) == ("table2", 5)
    everything = split_dirty(records, "table2", include_dirty=True)
    assert [r["seed"] for r in everything.used] == [0, 1, 2, 3, 4] and everything.left_out == []


# ----------------------------------------------------------------------------- the loader


def test_load_grid_leaves_dirty_records_out_of_committed_profiles(tmp_path):
    records = [
        {"id": "a", "commit": "c"},
        {"id": "b", "commit": "c-dirty"},  # a record written before the flag
        {"id": "c", "commit": "c", "dirty": True},
        {"id": "d", "commit": "c", "dirty": False},
    ]
    for profile in ("default", "smoke"):
        _write(tmp_path, "g", records, profile)

    def ids(records):
        return [r["id"] for r in records]

    default = load_grid("default", "g", tmp_path)
    assert (ids(default.used), ids(default.left_out), default.grid) == (["a", "d"], ["b", "c"], "g")
    assert ids(load_records("default", "g", tmp_path)) == ["a", "d"]
    assert ids(load_records("default", "g", tmp_path, include_dirty=True)) == ["a", "b", "c", "d"]
    assert ids(load_records("smoke", "g", tmp_path)) == ["a", "b", "c", "d"]  # not committed
    assert ids(load_records("smoke", "g", tmp_path, include_dirty=False)) == ["a", "d"]
    assert load_grid("default", "none", tmp_path) == GridRecords("none", [], [])


def test_grid_records_trains_nothing_recorded_and_leaves_the_dirty_out(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "_code_state", lambda: CLEAN)
    monkeypatch.setattr(runner, "_train_chunks", _stop)
    specs = [replace(_tiny_spec(), profile="default", seed=s) for s in (1, 2, 3)]
    figures = tmp_path / "figures"
    for spec, dirty in zip(specs, (False, True, False)):
        path = record_path(spec, figures)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"id": spec.run_id, "commit": "c", "dirty": dirty}))
    found = runner.grid_records(
        specs, figures=figures, root=tmp_path, progress=False, force=False, recorded_only=False
    )
    assert found.grid == "t" and found.total == 3
    assert [r["id"] for r in found.used] == [specs[0].run_id, specs[2].run_id]
    assert [r["id"] for r in found.left_out] == [specs[1].run_id]
    assert runner.grid_records([]) == GridRecords("")


# ----------------------------------------------------------------------------- the footers


def test_the_footer_counts_and_names_the_dirty_records_left_out():
    records = [
        _record("ATSS DIoU", 0, commit="x-dirty"),
        _record("ATSS maIoU (P=B)", 0, commit="x-dirty"),
        _record("ATSS DIoU", 1),
        _record("ATSS IoU", 2, "coco"),
    ]
    table2 = split_dirty(records, "table2")
    note = dirty_note(table2, ["ATSS DIoU", "ATSS maIoU (P=B)"])
    assert note == (
        f"2 dirty records of grid table2 left out ({REASON}): "
        "ATSS DIoU, ATSS maIoU (P=B): uniform seed 0"
    )
    assert dirty_note(split_dirty(records[2:], "table2")) == ""
    footer = training_provenance(table2.used, [], [table2])
    # 2 runs on one setting, 0 of 2 dirty, then the 2 left out
    assert footer.endswith(f"; 0 of 2 runs dirty ({REASON}); {note}")
    assert training_provenance([], [], [table2]) == f"no runs; {note}"


def test_a_grid_with_only_dirty_records_gives_the_no_clean_record_result(tmp_path, monkeypatch):
    curve = split_dirty([_record(seed=0, grid="curve", commit="x-dirty")], "curve")
    assert curve.used == [] and len(curve.left_out) == 1
    lines, headline = no_clean_record(curve)
    assert lines == [
        f"No clean record of grid curve yet: 1 dirty record of grid curve left out ({REASON}): "
        "ATSS IoU: uniform seed 0.",
        "Retrain them with: gmaiou-paper experiment --grid curve --profile default --redo-dirty "
        "(from a clean checkout).",
    ]
    assert headline == "No clean record of grid curve yet (1 dirty record left out, to retrain)"
    assert no_clean_record(GridRecords("curve")) == (
        ["No record of grid curve yet."],
        "No record of grid curve yet",
    )
    monkeypatch.setenv("GMAIOU_FIGURES", str(tmp_path))
    paths = save_no_result("stem", lines, headline, source="src", tables=["stem_pairs"])
    assert sorted(p.name for p in paths) == [
        "stem.md", "stem.pdf", "stem.png", "stem_findings.md", "stem_pairs.md",
    ]  # fmt: skip
    assert read_headline(tmp_path / "stem_findings.md") == headline
    for name in ("stem.md", "stem_pairs.md"):
        text = (tmp_path / name).read_text()
        assert text.startswith("No clean record of grid curve yet") and "--redo-dirty" in text
        assert text.rstrip().endswith("*profile: default · data: src*")


def test_paired_statistics_lose_the_pairs_whose_partner_is_dirty():
    records = [
        _record(label, seed, ap=30.0 + seed + (1.0 if "GmaIoU" in label else 0.0))
        for label in ("ATSS IoU", "ATSS GmaIoU (P=M)")
        for seed in range(3)
    ]
    records[0]["commit"] = "x-dirty"  # ATSS IoU seed 0: its GmaIoU partner is unpaired
    report = table2_report(split_dirty(records, "table2").used)
    mask = report.diffs[report.diffs["metric"] == "mask AP"].iloc[0]
    assert (int(mask["pairs"]), float(mask["mean"])) == (2, 1.0)
    table = report.table.set_index("assigner")["seeds"]
    assert (table["ATSS IoU"], table["ATSS GmaIoU (P=M)"]) == (2, 3)


# ----------------------------------------------------------------------------- notebook 04's recipe


def _curve_record(label, seed, grid, variant="", **extra):
    record = _record(label, seed, grid=grid, variant=variant, **extra)
    record["curve"] = [
        {"iteration": i * 100, "train_seconds": 60.0 * i,
         "segm": {"AP": 10.0 * i}, "bbox": {"AP": 12.0 * i}}
        for i in (1, 2, 3)
    ]  # fmt: skip
    return record


def _table2_seed(seed: int) -> dict:
    spec = RunSpec(grid="table2", profile="default", preset="yolact-atss-iou-r18-160", seed=seed,
                   data=SyntheticData(1000, 160), label="ATSS IoU")  # fmt: skip
    return _record("ATSS IoU", seed, spec=spec.to_dict())


def test_the_learning_curve_without_a_clean_record_of_the_recipe(tmp_path, monkeypatch):
    monkeypatch.setenv("GMAIOU_FIGURES", str(tmp_path))
    recipe = get_grid("curve", "default")[0].to_dict()
    curve = split_dirty([_curve_record("ATSS IoU", 0, "curve", commit="x-dirty")], "curve")
    earlier = split_dirty(
        [_curve_record("ATSS IoU", 0, "curve-recipe1", "recipe1")], "curve-recipe1"
    )
    other = _record("ATSS DIoU", 0, preset="yolact-atss-diou-r18-160", commit="x-dirty")
    seeds = split_dirty([_table2_seed(s) for s in (0, 1)] + [other], "table2")
    lines, headline = write_learning_curve(curve, earlier, seeds, recipe, "synthetic 1000 images")
    assert headline.startswith("CPU recipe (ATSS IoU), 2 seeds: 30.0")  # from Table 2's seeds
    assert lines[2].startswith("No clean record of grid curve yet: 1 dirty record")
    assert "--redo-dirty" in lines[3]
    # the first recipe's curve is described, but not held to the target as the recipe
    assert lines[4].startswith("ATSS IoU, recipe1, on CPU (1 threads), reached 30.0 mask AP")
    assert not any("target" in line for line in lines) and len(lines) == 5
    table = (tmp_path / "recipe_learning_curve.md").read_text()
    assert table.count("| ATSS IoU, recipe1 |") == 3 and "| ATSS IoU   |" not in table
    footer = table.rstrip().splitlines()[-1]
    assert "yolact-atss-iou-r18-160, seed 0: no clean record" in footer
    assert f"1 dirty record of grid curve left out ({REASON}): ATSS IoU: uniform seed 0" in footer
    assert "over seeds: 2 runs of grid table2" in footer
    assert "grid table2 left out" not in footer  # a dirty run of another preset: not the recipe's
    assert (tmp_path / "recipe_learning_curve.png").is_file()
    # nothing clean at all: the headline says why
    empty = GridRecords("curve-recipe1")
    lines, headline = write_learning_curve(curve, empty, GridRecords("table2"), recipe, "s")
    assert headline == "No clean record of grid curve yet (1 dirty record left out, to retrain)"
    assert len(lines) == 2 and lines[0].startswith("No clean record of grid curve yet")


def test_the_recipe_search_uses_its_clean_records_only(tmp_path, monkeypatch):
    monkeypatch.setenv("GMAIOU_FIGURES", str(tmp_path))
    runs = [_record(f"variant-{k}", 0, ap=10.0 * k, grid="recipe-search") for k in (1, 2, 3)]
    runs[2]["commit"] = "x-dirty"
    runs[1]["data"]["images"] = 3000
    lines, headline = write_recipe_search(split_dirty(runs, "recipe-search"))
    assert headline == "Best of 2 recipe variants: variant-2, 20.00 mask AP in 6.00 min"
    table = (tmp_path / "recipe_search.md").read_text()
    assert "variant-3" not in table.split("*profile")[0]
    footer = table.rstrip().splitlines()[-1]
    assert "synthetic 1000 images at 160 px (3000 for 1 run), 2 runs on CPU (1 threads)" in footer
    assert f"1 dirty record of grid recipe-search left out ({REASON}): variant-3" in footer
    lines, headline = write_recipe_search(split_dirty(runs[2:], "recipe-search"))
    assert headline.startswith("No clean record of grid recipe-search yet (1 dirty record")
    assert read_headline(tmp_path / "recipe_search_findings.md") == headline
    assert write_recipe_search(GridRecords("recipe-search")) == ([], "")


def test_the_footer_names_the_commits_and_the_pairs_that_straddle_two():
    a, b = "a" * 40, "b" * 40
    one = [_record("ATSS IoU", 0, commit=a), _record("ATSS GmaIoU (P=M)", 0, commit=a + "-dirty")]
    assert f"; all at commit aaaaaaa; 1 of 2 runs dirty ({REASON})" in training_provenance(one)
    assert "; at commit aaaaaaa; 0 of 1 runs dirty" in training_provenance(one[:1])
    paired = [*one, _record("ATSS IoU", 1, commit=b), _record("ATSS GmaIoU (P=M)", 1, commit=b)]
    assert (
        "; trained at 2 commits (aaaaaaa, bbbbbbb); the runs of each seed (the pairs compared) "
        "share one commit; 1 of 4"
    ) in training_provenance(paired)
    split = [
        *paired,
        _record("ATSS IoU", 2, "coco", commit=a),
        _record("ATSS IoU", 2, "coco", commit=None),
    ]
    assert training_provenance(split).split("; ")[1:3] == [
        "trained at 3 commits (aaaaaaa, bbbbbbb, unrecorded)",
        "seeds whose runs (the pairs compared) straddle commits: coco seed 2",
    ]


def test_table5_footer_names_the_dirty_runs_of_its_models(tmp_path):
    _write(tmp_path, "table2", [
        _record("fixed IoU", 0, preset="yolact-fixed-r18-160", commit="x-dirty"),
        _record("ATSS DIoU", 0, preset="yolact-atss-diou-r18-160", commit="x-dirty"),  # not tabulated
        _record("fixed IoU", 1, preset="yolact-fixed-r18-160"),
    ])  # fmt: skip
    found = dirty_records("default", tmp_path, ["table2", "table3"])
    assert [(g.grid, len(g.used), len(g.left_out)) for g in found] == [
        ("table2", 0, 1),
        ("table3", 0, 0),
    ]
    source = accuracy_source(["table2", "table3"], "default", found)
    assert source.endswith(
        f"not COCO; 1 dirty record of grid table2 left out ({REASON}): fixed IoU: uniform seed 0"
    )


# ----------------------------------------------------------------------------- --redo-dirty


def _tiny_spec(seed: int = 1) -> RunSpec:
    return RunSpec(
        grid="t", profile="smoke", preset="yolact-atss-gmaiou-r18-160", seed=seed,
        data=SyntheticData(8, 96), epochs=1, max_iters=2, workers=0,
        settings=("model.image_size=96",),
    )  # fmt: skip


def _recorded(figures: Path, states: dict[int, bool | None]) -> list[RunSpec]:
    """Specs of seeds ``states``: a clean record (False), a dirty one (True) or none (None)."""
    specs = []
    for seed, dirty in states.items():
        spec = _tiny_spec(seed)
        specs.append(spec)
        if dirty is not None:
            path = record_path(spec, figures)
            path.parent.mkdir(parents=True, exist_ok=True)
            commit = "c-dirty" if dirty else "c"
            path.write_text(json.dumps({"id": spec.run_id, "commit": commit}))
    return specs


def test_run_state_counts_a_dirty_record_as_not_done_only_when_redone(tmp_path):
    clean, dirty, missing = _recorded(tmp_path, {1: False, 2: True, 3: None})
    assert [run_state(s, tmp_path) for s in (clean, dirty, missing)] == ["done", "dirty", "to run"]
    assert run_state(dirty, tmp_path, redo_dirty=True) == "dirty: to retrain"
    assert run_state(clean, tmp_path, redo_dirty=True) == "done"


def test_run_one_retrains_a_dirty_record_from_scratch_with_redo_dirty(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "_code_state", lambda: CLEAN)
    monkeypatch.setattr(runner, "_train_chunks", _stop)
    figures = tmp_path / "figures"
    clean, dirty = _recorded(figures, {1: False, 2: True})
    stale = dirty.run_dir(tmp_path) / "checkpoint.pt"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"weights only")
    assert run_one(dirty, tmp_path, figures)["commit"] == "c-dirty"  # done without redo
    assert run_one(clean, tmp_path, figures, redo_dirty=True)["commit"] == "c"
    with pytest.raises(Stop):  # it reaches training ...
        run_one(dirty, tmp_path, figures, redo_dirty=True)
    assert not stale.exists()  # ... from scratch: the old run folder is gone


def test_run_grid_with_redo_dirty_retrains_exactly_the_dirty_runs(tmp_path, monkeypatch):
    figures = tmp_path / "figures"
    specs = _recorded(figures, {1: False, 2: True, 3: True})
    checked, trained = [], []
    monkeypatch.setattr(runner, "_check_source", lambda todo, allow: checked.append(todo))
    monkeypatch.setattr(
        runner, "run_one", lambda spec, *args: trained.append((spec.seed, args[-1])) or {}
    )
    run_grid(specs, root=tmp_path, figures=figures, force=False, recorded_only=False)
    assert checked.pop() == [] and [redo for _, redo in trained] == [False] * 3
    trained.clear()
    run_grid(specs, root=tmp_path, figures=figures, force=False, recorded_only=False,
             redo_dirty=True)  # fmt: skip
    assert [s.seed for s in checked.pop()] == [2, 3] and trained == [
        (1, True),
        (2, True),
        (3, True),
    ]
    # in parallel: one subprocess per dirty run, each told to redo it
    commands = []

    class Done:
        returncode = 0

    monkeypatch.setattr(runner.subprocess, "run", lambda cmd, **kw: commands.append(cmd) or Done)
    run_grid(specs, root=tmp_path, figures=figures, force=False, recorded_only=False,
             parallel=2, redo_dirty=True)  # fmt: skip
    assert sorted(c[c.index("--only") + 1] for c in commands) == [s.run_id for s in specs[1:]]
    assert all("--redo-dirty" in c for c in commands)


def test_experiment_cli_lists_dirty_runs_and_passes_redo_dirty(tmp_path, monkeypatch, capsys):
    from gmaiou.paper.cli import main

    monkeypatch.setenv("GMAIOU_FIGURES", str(tmp_path))
    specs = get_grid("table2", "default")[:3]
    for spec, commit in zip(specs, ("c", "c-dirty")):  # the third has no record
        path = record_path(spec)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"id": spec.run_id, "commit": commit}))
    only = [arg for s in specs for arg in ("--only", s.run_id)]
    for extra, states in (
        ([], ["done", "dirty", "to run"]),
        (["--redo-dirty"], ["done", "dirty: to retrain", "to run"]),
    ):
        assert main(["experiment", "--grid", "table2", "--list", *only, *extra]) == 0
        out = capsys.readouterr().out.splitlines()
        assert [line.rsplit(" ", 1)[0].strip() for line in out] == states
        assert [line.rsplit(" ", 1)[1] for line in out] == [s.run_id for s in specs]
    seen = []
    monkeypatch.setattr(runner, "run_grid", lambda specs, **kw: seen.append(kw["redo_dirty"]) or [])
    for extra in (["--redo-dirty"], []):
        assert main(["experiment", "--grid", "table2", *only, *extra]) == 0
    assert seen == [True, False]
    assert main(["experiment", "--grid", "table2", *only, "--redo-dirty", "--allow-dirty"]) == 2
    assert "--redo-dirty" in capsys.readouterr().err


def test_table5_reads_each_grid_once_and_shared_reads_give_the_same_rows(tmp_path, monkeypatch):
    from gmaiou.paper.experiments import table5

    _write(tmp_path, "table2", [
        _record("fixed IoU", 0, preset="yolact-fixed-r18-160", commit="x-dirty"),
        _record("fixed IoU", 1, preset="yolact-fixed-r18-160"),
    ])  # fmt: skip
    loaded = table5.load_grids("default", tmp_path, ["table2", "table3"])
    assert [(g, len(r.used), len(r.left_out)) for g, r in loaded.items()] == [
        ("table2", 1, 1),
        ("table3", 0, 0),
    ]
    shared = table5.cpu_accuracy("default", tmp_path, ["table2", "table3"], loaded=loaded)
    assert shared == table5.cpu_accuracy("default", tmp_path, ["table2", "table3"])
    assert [len(m["records"]) for m in shared] == [1, 0, 0]

    monkeypatch.setenv("GMAIOU_FIGURES", str(tmp_path / "out"))
    reads: list[str] = []
    real = table5.load_grid
    monkeypatch.setattr(table5, "load_grid", lambda p, g, f=None: reads.append(g) or real(p, g, f))
    table5.write_cpu_accuracy("smoke", records_profile="default", figures=tmp_path,
                              grids=("table2", "table3"))  # fmt: skip
    assert reads == ["table2", "table3"]
