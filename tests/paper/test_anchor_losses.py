"""Per-anchor losses (Fig. 2): agreement with the training loss, the anchor table on a hand-made
set (one image with two GTs, one without), MOB bins, records, slopes, verdicts and the figure."""

from __future__ import annotations

import dataclasses
import math

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import numbers_in

from gmaiou.configs import get_config
from gmaiou.measure import pairwise_overlaps
from gmaiou.models import build_model
from gmaiou.paper.analysis.anchor_loss_plots import (
    describe_observation1,
    fig2_table,
    observation1_headline,
    plot_loss_vs_mob,
    seed_summary,
    trend_verdicts,
)
from gmaiou.paper.analysis.anchor_losses import (
    Fig2Bands,
    anchor_loss_table,
    anchor_losses,
    bin_by_mob,
    fig2_record,
    find_finished_run,
    mob_trends,
    records_frame,
)

matplotlib.use("Agg")

SIZE = 64


def tiny_model(preset: str = "yolact-atss-iou-r18-160"):
    torch.manual_seed(0)
    cfg = get_config(preset).with_num_classes(2)
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, image_size=SIZE))
    return build_model(cfg)


def hand_items() -> list[dict]:
    """Image 7: a full rectangle (MOB 1) and an L shape (MOB 0.75); image 8: no object."""
    masks = torch.zeros(2, SIZE, SIZE, dtype=torch.bool)
    masks[0, 8:24, 8:40] = True  # box (8, 8, 40, 24): 32 x 16, full
    masks[1, 30:62, 30:62] = True  # box (30, 30, 62, 62): 32 x 32, L = 3/4 of it
    masks[1, 30:46, 46:62] = False
    boxes = torch.tensor([[8.0, 8.0, 40.0, 24.0], [30.0, 30.0, 62.0, 62.0]])
    gen = torch.Generator().manual_seed(0)
    return [
        {"image": torch.rand(3, SIZE, SIZE, generator=gen), "boxes": boxes,
         "labels": torch.tensor([0, 1]), "masks": masks, "crowd_boxes": torch.zeros(0, 4),
         "image_id": 7},
        {"image": torch.rand(3, SIZE, SIZE, generator=gen), "boxes": torch.zeros(0, 4),
         "labels": torch.zeros(0, dtype=torch.long),
         "masks": torch.zeros(0, SIZE, SIZE, dtype=torch.bool), "crowd_boxes": torch.zeros(0, 4),
         "image_id": 8},
    ]  # fmt: skip


def as_batch(items: list[dict]) -> dict:
    from gmaiou.data.loader import collate_instances

    return collate_instances(items)


def test_anchor_losses_add_up_to_the_training_loss():
    model = tiny_model().train()
    batch = as_batch(hand_items())
    outputs = model(batch["images"])
    total = {k: v.detach() for k, v in model.loss(outputs, batch).items()}
    per = {k: v.detach() for k, v in anchor_losses(model, outputs, batch).items()}
    pos = per["gt_inds"] >= 0
    num_pos = int(pos.sum())
    assert num_pos > 0 and not bool(pos[1].any())  # the image without GT has no positive
    assert torch.isclose(per["box"][pos].sum() / num_pos, total["box"], rtol=1e-5)
    assert num_pos <= model.config.loss.max_masks
    assert torch.isclose(per["mask"][pos].mean(), total["mask"], rtol=1e-5)
    # OHEM: every positive and the 3 x P hardest negatives of each image.
    cls_sum = 0.0
    for b in range(2):
        p = int(pos[b].sum())
        neg = per["cls"][b][per["gt_inds"][b] == -1].sort(descending=True).values
        cls_sum += float(per["cls"][b][pos[b]].sum() + neg[: int(3 * p)].sum())
    assert math.isclose(cls_sum / num_pos, float(total["cls"]), rel_tol=1e-5)
    assert bool(per["box"][~pos].isnan().all()) and bool(per["mask"][~pos].isnan().all())


def test_anchor_losses_need_the_yolact_loss():
    model = tiny_model("gmayolact-atss-gmaiou-r18-160")
    assert model.config.loss.kind == "ranksort"
    batch = as_batch(hand_items())
    with pytest.raises(ValueError, match="loss.kind='yolact'"):
        anchor_losses(model, model(batch["images"]), batch)


def test_anchor_table_rows_on_a_hand_made_set():
    model = tiny_model()
    items = hand_items()
    table = anchor_loss_table(model, items, batch_size=2)
    num_anchors = model.anchor_boxes.shape[0]
    assert len(table) == 2 * num_anchors
    assert list(table["anchor"][:num_anchors]) == list(range(num_anchors))
    empty = table[table["image_id"] == 8]
    assert set(empty["assignment"]) == {"negative"} and set(empty["gt"]) == {-1}
    assert (empty["iou"] == 0).all() and empty["mob"].isna().all() and empty["box"].isna().all()
    assert empty["cls"].notna().all()
    full = table[table["image_id"] == 7]
    assert set(full["gt"]) <= {0, 1}
    mob = full.groupby("gt")["mob"].first()
    assert mob[0] == pytest.approx(1.0) and mob[1] == pytest.approx(0.75)
    pos = full[full["assignment"] == "positive"]
    assert len(pos) > 0 and pos[["box", "mask"]].notna().all().all()
    assert full.loc[full["assignment"] != "positive", "box"].isna().all()
    # Negatives refer to their GT of highest IoU, with that IoU.
    ious = pairwise_overlaps("iou", items[0]["boxes"], model.anchor_boxes)
    neg = full[full["assignment"] == "negative"]
    best = ious.max(dim=0)
    assert np.allclose(
        neg["iou"], best.values[torch.from_numpy(neg["anchor"].to_numpy().copy())].double().numpy()
    )
    # GmaIoU (P = M) of a full-rectangle GT is its IoU.
    rect = full[full["gt"] == 0]
    assert np.allclose(rect["gmaiou"], rect["iou"], atol=1e-6)
    assert len(anchor_loss_table(model, items, batch_size=1, max_images=1)) == num_anchors
    with pytest.raises(ValueError, match="no image"):
        anchor_loss_table(model, [])


def hand_table() -> pd.DataFrame:
    """Negatives at IoU 0.35 with cls = 1 - MOB (MOB 0.1, 0.3, 0.3, 0.9, 1.0), one outside the band."""
    rows = [("negative", 0.35, m, 1 - m, math.nan) for m in (0.1, 0.3, 0.3, 0.9, 1.0)]
    rows += [("negative", 0.5, 0.1, 9.0, math.nan), ("positive", 0.55, 0.3, 0.2, 0.4)]
    return pd.DataFrame(
        [
            {"image_id": 1, "assignment": a, "iou": i, "mob": m, "cls": c, "box": b, "mask": b}
            for a, i, m, c, b in rows
        ]  # fmt: skip
    )


def test_bin_by_mob_hand_computed():
    edges = (0.0, 0.5, 1.0)
    bins = bin_by_mob(hand_table(), "negative", (0.3, 0.4), edges)
    assert list(bins["count"]) == [3, 2]  # MOB 1.0 falls in the last (closed) bin
    assert bins["cls"].tolist() == pytest.approx([(0.9 + 0.7 + 0.7) / 3, (0.1 + 0.0) / 2])
    assert bins["box"].isna().all()
    sparse = bin_by_mob(hand_table(), "negative", (0.3, 0.4), edges, min_count=3)
    assert not math.isnan(sparse["cls"][0]) and math.isnan(sparse["cls"][1])
    with pytest.raises(ValueError, match="assignment"):
        bin_by_mob(hand_table(), "matched", (0.3, 0.4), edges)
    with pytest.raises(ValueError, match="lacks columns"):
        bin_by_mob(hand_table().drop(columns="mob"), "negative", (0.3, 0.4), edges)


def test_bands_are_checked():
    with pytest.raises(ValueError, match="negative band"):
        Fig2Bands(negative=(0.4, 0.3))
    with pytest.raises(ValueError, match="mob_edges"):
        Fig2Bands(mob_edges=(0.5, 0.2))


def test_records_frame_and_slopes():
    bands = Fig2Bands(
        negative=(0.3, 0.4), positive=(0.5, 0.6), mob_edges=(0.0, 0.5, 1.0), min_count=1
    )
    rec = fig2_record(hand_table(), "run-a", "ATSS IoU", 0, bands)
    assert rec["anchors"] == {"positive": 1, "negative": 6, "ignored": 0}
    assert rec["positive"][1]["count"] == 0 and rec["positive"][1]["cls"] is None
    frame = records_frame([rec])
    assert len(frame) == 4 and set(frame["group"]) == {"negative", "positive"}
    trends = mob_trends(frame)
    neg = trends[(trends["group"] == "negative")].iloc[0]
    # Centres 0.25 and 0.75, weights sqrt(3) and sqrt(2): two points, the line through them.
    assert neg["slope"] == pytest.approx(((0.1 / 2) - (2.3 / 3)) / 0.5)
    pos = trends[trends["group"] == "positive"]
    assert len(pos) == 3 and pos["slope"].isna().all()  # one bin only
    with pytest.raises(ValueError, match="empty"):
        fig2_record(hand_table().iloc[:0], "run-a", "ATSS IoU", 0, bands)
    with pytest.raises(ValueError, match="no Fig. 2 record"):
        records_frame([])


def trends_of(slopes: dict[str, list[float]], group: str = "positive") -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "label": label,
                "group": group,
                "task": "cls" if group == "negative" else "mask",
                "seed": s,
                "slope": v,
                "bins": 5,
            }
            for label, values in slopes.items()
            for s, v in enumerate(values)
        ]  # fmt: skip
    )


@pytest.mark.parametrize(
    ("iou", "gma", "holds", "verdict"),
    [
        ([-1.0, -2.0], [0.5, -1.0], True, "removes"),
        ([-1.0, -2.0], [-0.5, -1.0], True, "weakens"),
        ([-1.0, -2.0], [-2.0, -3.0], True, "keeps"),
        ([-1.0, 0.5], [-2.0, -3.0], False, "appears"),
        ([-1.0, 0.5], [1.0, -3.0], False, "none either"),
    ],
)
def test_trend_verdicts(iou, gma, holds, verdict):
    verdicts = trend_verdicts(trends_of({"IoU": iou, "GmaIoU": gma}), "IoU", "GmaIoU")
    row = verdicts.iloc[0]
    assert bool(row["observation1"]) is holds and row["candidate"] == verdict
    assert row["IoU slope"] == pytest.approx(np.mean(iou))
    lines = describe_observation1(verdicts, "IoU", "GmaIoU")
    assert len(lines) == 2 and all("\n" not in line for line in lines)
    assert "IoU" in lines[0] and "GmaIoU" in lines[1]  # names its comparison
    headline = observation1_headline(verdicts, "IoU", "GmaIoU")
    # "Obs. 1" holds for 1 (or 0) of 1 losses, the candidate's verdict in 1, 2 seeds
    assert numbers_in(headline) == [1, int(holds), 1, 1, 2]
    with pytest.raises(ValueError, match="no trend of 'x'"):
        trend_verdicts(trends_of({"IoU": iou}), "IoU", "x")


def test_observation1_has_the_negatives_loss_rise_with_mob():
    # The paper: negatives' classification loss rises with MOB, positives' losses fall.
    rising = trend_verdicts(trends_of({"IoU": [1.0, 2.0], "GmaIoU": [-0.5, 1.0]}, "negative"),
                            "IoU", "GmaIoU").iloc[0]  # fmt: skip
    assert bool(rising["observation1"]) and rising["candidate"] == "removes"
    assert rising["expected"] == "rises" and rising["IoU seeds along"] == "2/2"
    falling = trend_verdicts(trends_of({"IoU": [1.0, 2.0], "GmaIoU": [1.0, 2.0]}), "IoU", "GmaIoU")
    assert not falling.iloc[0]["observation1"] and falling.iloc[0]["expected"] == "falls"


def test_trend_verdicts_without_slopes_say_so():
    trends = trends_of({"IoU": [math.nan], "GmaIoU": [math.nan]})
    row = trend_verdicts(trends, "IoU", "GmaIoU").iloc[0]
    assert row["observation1"] is None and row["candidate"] == "no data"
    verdicts = trend_verdicts(trends, "IoU", "GmaIoU")
    lines = describe_observation1(verdicts, "IoU", "GmaIoU")
    assert "IoU" in lines[0] and "GmaIoU" in lines[1]
    # "Obs. 1" holds for 0 of 1, unjudged in 1, no seed with a slope
    assert numbers_in(observation1_headline(verdicts, "IoU", "GmaIoU")) == [1, 0, 1, 1]


def test_observation1_headline_counts_each_verdict():
    slopes = {"IoU": [-1.0, -2.0, -1.5], "GmaIoU": [-2.0, -3.0, -2.5]}
    verdicts = pd.concat(
        [
            trend_verdicts(trends_of(slopes), "IoU", "GmaIoU"),
            trend_verdicts(trends_of({"IoU": [-1.0, -2.0, -1.5], "GmaIoU": [0.5, -1.0, -1.0]}),
                           "IoU", "GmaIoU"),
            trend_verdicts(trends_of({"IoU": [1.0, -2.0], "GmaIoU": [1.0, 2.0]}), "IoU", "GmaIoU"),
        ],
        ignore_index=True,
    )  # fmt: skip
    headline = observation1_headline(verdicts, "IoU", "GmaIoU")
    # holds for 2 of 3; kept in 1, removed in 1, absent in 1; 2-3 seeds
    assert numbers_in(headline) == [1, 2, 3, 1, 1, 1, 2, 3]  # the 1 of "Obs. 1" first
    assert len(headline) <= 110
    with pytest.raises(ValueError, match="no verdict"):
        observation1_headline(verdicts.iloc[:0], "IoU", "GmaIoU")


def test_figure_and_summary():
    bands = Fig2Bands(mob_edges=(0.0, 0.5, 1.0), min_count=1)
    records = [fig2_record(hand_table(), f"run-{s}", lab, s, bands)
               for lab in ("ATSS IoU", "ATSS GmaIoU") for s in (0, 1)]  # fmt: skip
    frame = records_frame(records)
    summary = seed_summary(frame)
    assert set(summary["seeds"]) == {2} and (summary["cls_std"].fillna(0) == 0).all()
    fig = plot_loss_vs_mob(frame, records[0]["bands"])
    assert len(fig.axes) == 5 and len(fig.axes[0].lines) > 0
    table = fig2_table(frame, bands)
    assert len(table) == len(summary) and list(table.columns) == [
        "label", "group", "mob_lo", "mob_hi", "seeds", "count", "cls", "box", "mask"
    ]  # fmt: skip
    negatives = table[table["group"] == "negatives, IoU in [0.3, 0.4)"]
    assert len(negatives) == len(summary[summary["group"] == "negative"])
    assert set(negatives["box"]) == set(negatives["mask"]) == {"–"}
    row = summary.iloc[0]
    assert table.iloc[0]["cls"] == f"{row['cls_mean']:.3f} ± {row['cls_std']:.3f}"
    with pytest.raises(ValueError, match="empty"):
        plot_loss_vs_mob(frame.iloc[:0])


def test_find_finished_run(tmp_path):
    run = tmp_path / "a" / "run-1"
    run.mkdir(parents=True)
    (run / "checkpoint.pt").write_bytes(b"")
    assert find_finished_run("run-1", [tmp_path / "a"]) is None  # no eval.json: still training
    (run / "eval.json").write_text("{}")
    assert find_finished_run("run-1", [tmp_path / "b", tmp_path / "a"]) == run


def test_upgrade_config_fills_new_fields_and_drops_retired_ones():
    from gmaiou.paper.analysis.anchor_losses import upgrade_config

    preset = get_config("yolact-atss-iou-r18-160")
    saved = preset.to_dict()
    saved["model"] = {k: v for k, v in saved["model"].items() if k != "anchor_offset"}
    saved["model"]["anchors_scale_with_image"] = False
    saved["model"]["num_classes"] = 8
    config = upgrade_config(saved, "yolact-atss-iou-r18-160")
    assert config.model.num_classes == 8
    assert config.model.anchor_offset == preset.model.anchor_offset
    saved["model"]["anchors"] = "yolact"
    with pytest.raises(ValueError, match="retired"):
        upgrade_config(saved, "yolact-atss-iou-r18-160")
    saved["model"]["anchors"] = "atss"
    saved["model"]["no_such_field"] = 1
    with pytest.raises(ValueError, match="unknown config field model.no_such_field"):
        upgrade_config(saved, "yolact-atss-iou-r18-160")


def test_collect_reads_records_and_names_runs_without_checkpoint(tmp_path, monkeypatch):
    import json

    from gmaiou.paper.analysis.anchor_losses import collect_fig2_records, fig2_record_path
    from gmaiou.paper.experiments import get_grid

    specs = [s for s in get_grid("table2", "smoke") if s.data.mix == "uniform"][:2]
    stored = {"id": specs[0].run_id, "label": "stored", "seed": 0}
    path = fig2_record_path("smoke", specs[0].run_id, tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(stored))
    monkeypatch.setattr("gmaiou.paper.paths.repo_root", lambda: tmp_path)  # no runs/ there
    records, missing = collect_fig2_records(specs, [tmp_path / "none"], figures=tmp_path)
    assert records == [stored] and missing == [specs[1].run_id]
    assert not fig2_record_path("smoke", specs[1].run_id, tmp_path).exists()


def test_committed_fig2_records_are_the_current_grids_runs():
    import json
    from pathlib import Path

    from gmaiou.paper.experiments import get_grid, load_records

    figures = Path(__file__).resolve().parents[2] / "figures"
    runs = figures / "runs" / "default"
    for fig2_folder, grid in (("fig2", "table2"), ("fig2-recipe1", "table2-recipe1")):
        specs = {s.run_id: s for s in get_grid(grid, "default")}
        trained = {r["id"]: r for r in load_records("default", grid, figures, include_dirty=True)}
        stored = [json.loads(p.read_text()) for p in sorted((runs / fig2_folder).glob("*.json"))]
        assert stored and all(r["id"] in specs for r in stored)
        # each was made from the checkpoint of the run its record names (same iteration count)
        assert all(
            r["source"]["checkpoint_iteration"] == trained[r["id"]]["iterations"] for r in stored
        )
    assert len(list((runs / "fig2").glob("*.json"))) == 10  # ATSS IoU and GmaIoU, seeds 0-4


def _finished_run(root, spec, segm_ap: float) -> None:
    """A finished run folder of ``spec`` under ``root`` (an empty checkpoint, its eval.json)."""
    import json

    run_dir = spec.run_dir(root)
    run_dir.mkdir(parents=True)
    (run_dir / "checkpoint.pt").write_bytes(b"")
    (run_dir / "eval.json").write_text(json.dumps({"segm": {"AP": segm_ap}, "bbox": {"AP": 1.0}}))


def _run_record(segm_ap: float, commit: str, finished: str) -> dict:
    metrics = {"segm": {"AP": segm_ap}, "bbox": {"AP": 1.0}}
    return {"metrics": metrics, "commit": commit, "dirty": False, "finished_at": finished,
            "device_name": "CPU", "torch_threads": 1, "torch_version": "2"}  # fmt: skip


def test_trained_by_matches_a_run_folder_to_its_record_by_metrics(tmp_path):
    from gmaiou.paper.analysis.anchor_losses import TRAINED_FIELDS, trained_by
    from gmaiou.paper.experiments import get_grid

    spec = get_grid("table2", "smoke")[0]
    _finished_run(tmp_path, spec, 12.5)
    record = _run_record(12.5, "c" * 40, "t1")
    assert trained_by(spec.run_dir(tmp_path), record) == {k: record[k] for k in TRAINED_FIELDS}
    assert trained_by(spec.run_dir(tmp_path), _run_record(12.25, "c" * 40, "t1")) is None
    assert trained_by(spec.run_dir(tmp_path), None) is None


def test_collect_recomputes_a_record_whose_run_was_retrained(tmp_path, monkeypatch):
    import json

    import gmaiou.paper.analysis.anchor_losses as al
    from gmaiou.paper.experiments import get_grid
    from gmaiou.paper.experiments.runner import record_path

    specs = [s for s in get_grid("table2", "smoke") if s.data.mix == "uniform"][:3]
    monkeypatch.setattr("gmaiou.paper.paths.repo_root", lambda: tmp_path)
    computed = []
    monkeypatch.setattr(al, "run_fig2_record", lambda run_dir, label, seed, bands, device: (
        computed.append(run_dir.name) or {"id": run_dir.name, "seed": seed}))  # fmt: skip
    new = _run_record(11.0, "b" * 40, "t1")  # the old run: commit a, finished t0
    for spec in specs:
        path = record_path(spec, tmp_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(new))
    # 0: computed from the old run, retrained since, its new checkpoint here -> recomputed
    # 1: computed from the current run -> read; 2: from the old run, no checkpoint -> kept
    stored = [
        {"id": specs[0].run_id, "trained": {"commit": "a" * 40, "finished_at": "t0"}},
        {"id": specs[1].run_id, "trained": {"commit": "b" * 40, "finished_at": "t1"}},
        {"id": specs[2].run_id},
    ]
    for spec, record in zip(specs, stored, strict=True):
        path = al.fig2_record_path("smoke", spec.run_id, tmp_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record))
    _finished_run(tmp_path, specs[0], 11.0)
    _finished_run(tmp_path / "other", specs[2], 10.0)  # another run's checkpoint: not used
    records, missing = al.collect_fig2_records(specs, [tmp_path / "other" / "runs" / "smoke" /
                                                       "table2"], figures=tmp_path)  # fmt: skip
    assert computed == [specs[0].run_id] and missing == []
    assert records[0]["trained"]["commit"] == "b" * 40 and records[1:] == stored[1:]
    saved = json.loads(al.fig2_record_path("smoke", specs[0].run_id, tmp_path).read_text())
    assert saved == records[0]
    assert al.trained_note(records) == (
        "records from runs trained: 2 at commit bbbbbbb, "
        "1 not naming their run's commit (computed before records kept it)"
    )
    assert al.trained_note(records[:2]) == "all 2 records from runs trained at commit bbbbbbb"
    assert al.trained_note(stored[2:]) == (
        "the record does not name its run's commit (computed before records kept it)"
    )
    records, missing = al.collect_fig2_records(specs, figures=tmp_path, force=True)
    assert missing == [specs[1].run_id, specs[2].run_id]  # force: only checkpoints count
