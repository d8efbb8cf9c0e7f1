"""The analyses behind Fig. 1 (IoU/GmaIoU disagreements, ATSS positives) and Fig. 3(a) (GT MOB ratios)."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import l_mask, numbers_in, write_l_dataset

from gmaiou.anchors import atss_anchors
from gmaiou.assigners import ATSSAssigner
from gmaiou.data import CocoInstances, generate, stats
from gmaiou.paper.analysis import mob
from gmaiou.paper.analysis.examples import (
    AnchorScore,
    GTDisagreement,
    atss_positives,
    examples_findings,
    examples_table,
    gt_disagreements,
    load_resized,
    plot_atss_positives,
    plot_examples,
    select_examples,
    to_original,
    write_examples,
)
from gmaiou.paper.analysis.mob import (
    ecdf,
    gt_mob_ratios,
    mob_distribution_findings,
    mob_distribution_table,
    mob_summary,
    plot_mob_distribution,
    write_mob_distribution,
)
from gmaiou.paper.figures import read_headline

matplotlib.use("Agg")


@pytest.fixture
def figures(tmp_path, monkeypatch):
    monkeypatch.setenv("GMAIOU_FIGURES", str(tmp_path / "figures"))
    return tmp_path / "figures"


def _file_set(paths, stem: str) -> bool:
    return sorted(p.name for p in paths) == sorted(
        f"{stem}{suffix}" for suffix in (".md", ".pdf", ".png", "_findings.md")
    )


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("analysis") / "ds", 8, 256, seed=1, progress=False)


# ----------------------------------------------------------------------------- MOB


def test_the_mob_statistics_are_the_librarys():
    for name in ("SIZE_RANGES", "size_name", "mob_summary", "dataset_statistics"):
        assert getattr(mob, name) is getattr(stats, name)
    assert mob.statistics_markdown is stats.statistics_markdown


def test_ecdf_hand_computed():
    x, y = ecdf([3.0, 1.0, 2.0])
    assert x.tolist() == [1.0, 2.0, 3.0]
    assert y.tolist() == pytest.approx([1 / 3, 2 / 3, 1.0])
    x, y = ecdf(np.array([]))
    assert x.shape == y.shape == (0,)


def test_gt_mob_ratios_table_holds_the_library_rows(tmp_path):
    ds = CocoInstances.from_root(write_l_dataset(tmp_path / "l"), "val")
    frame = gt_mob_ratios(ds)
    assert tuple(frame.columns) == stats.GT_COLUMNS
    assert frame.to_dict("records") == stats.gt_mob_ratios(ds)
    assert frame["class_name"].tolist() == ["ell", "box"]
    assert frame["mob"].tolist() == pytest.approx([1500 / 6400, 1.0])
    empty = gt_mob_ratios(ds, max_images=0)
    assert empty.shape == (0, 7) and tuple(empty.columns) == stats.GT_COLUMNS


def test_synthetic_mob_share_and_plot(synth_root):
    ds = CocoInstances.from_root(synth_root, "train")
    frame = gt_mob_ratios(ds)
    assert len(frame) > 20
    assert (frame["mob"] > 0).all() and (frame["mob"] <= 1.0).all()
    assert float((frame["mob"] < 0.5).mean()) >= 0.25
    fig = plot_mob_distribution(
        {"synthetic": frame["mob"].to_numpy(), "half": np.array([0.25, 0.75])}
    )
    assert len(fig.axes) == 2
    with pytest.raises(ValueError):
        plot_mob_distribution({})


def test_coco_sample_mob_share_is_near_the_known_value(coco_sample):
    root, _ = coco_sample
    summary = mob_summary(gt_mob_ratios(CocoInstances.from_root(root, "val"))["mob"])
    assert summary["count"] > 1000
    assert 0.24 <= summary["share_below"] <= 0.32  # spec: about 27-29% on coco-sample


def test_mob_distribution_table_and_findings_hand_computed(figures):
    frames = {
        "a": pd.DataFrame({"image_id": [1, 1, 2], "mob": [0.2, 0.4, 0.8]}),
        "b": pd.DataFrame({"image_id": [5], "mob": [0.9]}),
    }
    table = mob_distribution_table(frames)
    assert table.columns.tolist() == [
        "data",
        "images",
        "count",
        "share_below",
        "threshold",
        "mean",
        "median",
    ]
    assert table.iloc[0].tolist() == ["a", 2, 3, 0.6667, 0.5, 0.4667, 0.4]
    assert table.iloc[1].tolist() == ["b", 1, 1, 0.0, 0.5, 0.9, 0.9]
    headline, lines = mob_distribution_findings(table)
    assert numbers_in(headline) == [66.7, 0.0, 0.5] and len(headline) < 110
    assert numbers_in(lines[0]) == [66.7, 3, 2, 0.5, 0.47, 0.4]
    assert numbers_in(lines[2]) == [0.5, 66.7, 66.7, 0.0]  # a above b by 66.7 points
    fig = plot_mob_distribution({k: f["mob"].to_numpy() for k, f in frames.items()})
    paths = write_mob_distribution(table, fig, "smoke", source="two sets")
    assert _file_set(paths, "fig3a_mob_distribution")
    assert read_headline(paths[-1]) == headline
    with pytest.raises(ValueError, match="at least one"):
        mob_distribution_table({})


# ----------------------------------------------------------------------------- Fig. 1


def test_gt_disagreements_hand_computed():
    mask = l_mask()[None]
    box = torch.tensor([[10.0, 10.0, 90.0, 90.0]])
    anchors = torch.tensor(
        [
            [10.0, 10.0, 90.0, 90.0],  # the box: IoU 1, GmaIoU 1500 / 6400
            [20.0, 10.0, 90.0, 80.0],  # the empty corner: IoU 4900 / 6400, GmaIoU 0
            [10.0, 10.0, 20.0, 90.0],  # the upright bar exactly: IoU 800 / 6400, GmaIoU 800 / 1500
            [50.0, 50.0, 60.0, 60.0],  # off the mask: GmaIoU 0, not a candidate
        ]
    )
    rows = gt_disagreements(box, mask, anchors, min_area=0)
    assert len(rows) == 1
    g, positive, negative, score = rows[0]
    assert g == 0
    assert positive.box.tolist() == anchors[1].tolist()
    assert (
        positive.iou == pytest.approx(4900 / 6400)
        and positive.gmaiou == 0.0
        and positive.coverage == 0.0
    )
    assert negative.box.tolist() == anchors[2].tolist()
    assert negative.iou == pytest.approx(800 / 6400)
    assert negative.gmaiou == pytest.approx(800 / 1500)
    assert negative.coverage == pytest.approx(800 / 1500)
    assert score == pytest.approx(4900 / 6400 + 800 / 1500 - 800 / 6400)
    assert gt_disagreements(box, mask, anchors, min_area=2000) == []  # too small to show
    assert (
        gt_disagreements(box, mask, anchors[[0, 1]], min_area=0) == []
    )  # no IoU-negative on the mask
    assert (
        gt_disagreements(torch.zeros(0, 4), torch.zeros(0, 100, 100, dtype=torch.bool), anchors)
        == []
    )


def test_select_examples_on_synthetic_and_plot(synth_root):
    ds = CocoInstances.from_root(synth_root, "train")
    examples = select_examples(ds, num_examples=3, size=256, min_area=100)
    assert 1 <= len(examples) <= 3
    assert [e.score for e in examples] == sorted((e.score for e in examples), reverse=True)
    assert len({e.index for e in examples}) == len(examples)
    for e in examples:
        assert e.positive.iou >= 0.5 and e.negative.iou < 0.4
        assert e.score == pytest.approx(
            (e.positive.iou - e.positive.gmaiou) + (e.negative.gmaiou - e.negative.iou)
        )
        assert e.image_id == ds.image_ids[e.index]
    fig = plot_examples(ds, examples, size=256, title="Fig. 1")
    assert len([ax for ax in fig.axes if ax.has_data()]) == len(examples)
    assert fig._suptitle.get_text() == "Fig. 1"
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend[:2] == ["GT mask", "GT box"] and all("GmaIoU (P = M)" in t for t in legend[2:])
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes[: len(examples)]:
        frame = ax.get_window_extent(renderer)
        labels = [t for t in ax.texts if t.get_text()]
        assert len(labels) == 2 and all("GmaIoU (P = M)" in t.get_text() for t in labels)
        for text in labels:  # every label lies inside its image
            box = text.get_window_extent(renderer)
            assert frame.x0 - 1 <= box.x0 and box.x1 <= frame.x1 + 1, text.get_text()
    with pytest.raises(ValueError, match="no examples"):
        plot_examples(ds, [])


def test_load_resized_keeps_instances_and_to_original_maps_back(synth_root):
    ds = CocoInstances.from_root(synth_root, "train")
    original, resized = load_resized(ds, 0, 128)
    assert resized["image"].shape == (3, 128, 128)
    assert resized["labels"].tolist() == original["labels"].tolist()
    back = to_original(resized["boxes"], 128, 256, 256)
    assert (back - original["boxes"]).abs().max() <= 2.0
    assert to_original(torch.tensor([[0.0, 0.0, 10.0, 10.0]]), 10, 30, 20).tolist() == [
        [0.0, 0.0, 20.0, 30.0]
    ]


def test_atss_positives_match_the_assigner(tmp_path):
    ds = CocoInstances.from_root(write_l_dataset(tmp_path / "l"), "val")
    _, item = load_resized(ds, 0, 128)
    positives = atss_positives(item["boxes"], item["masks"], 128, gt_index=0)
    grid = atss_anchors(128)
    for measure in ("iou", "gmaiou-mask"):
        result = ATSSAssigner(measure=measure).assign(grid, item["boxes"], item["masks"])
        assert torch.equal(positives[measure], grid.anchors[result.gt_inds == 0])
        assert positives[measure].shape[0] >= 1
    fig = plot_atss_positives(item["image"], item["masks"][0], item["boxes"][0], positives)
    assert len(fig.axes) == 2
    with pytest.raises(ValueError, match="gt_index"):
        atss_positives(item["boxes"], item["masks"], 128, gt_index=5)


def test_examples_table_and_findings_hand_computed(tmp_path, figures):
    ds = CocoInstances.from_root(write_l_dataset(tmp_path / "l"), "val")
    example = GTDisagreement(
        index=0,
        image_id=ds.image_ids[0],
        gt_index=0,
        positive=AnchorScore(torch.tensor([20.0, 10.0, 90.0, 80.0]), 0.765625, 0.0, 0.0),
        negative=AnchorScore(torch.tensor([10.0, 10.0, 20.0, 90.0]), 0.125, 0.5333, 0.5333),
        score=1.1740,
    )
    table = examples_table(ds, [example])
    assert table.shape == (1, 12)
    row = table.iloc[0]
    assert row["class"] == "ell" and row["GT MOB"] == 0.234  # 1500 / 6400
    assert row["IoU+ anchor"] == "20.0, 10.0, 90.0, 80.0"
    assert [row["IoU+ IoU"], row["IoU+ GmaIoU"], row["IoU+ mask covered"]] == [0.766, 0.0, 0.0]
    assert [row["IoU− IoU"], row["IoU− GmaIoU"], row["disagreement"]] == [0.125, 0.533, 1.174]
    headline, lines = examples_findings(table)
    # IoU of the positive, its GmaIoU, the negative's highest GmaIoU
    assert numbers_in(headline) == pytest.approx([0.77, 0.0, 0.53])
    assert numbers_in(lines[0])[1:] == pytest.approx([0.23, 0.77, 0.0, 0.0, 0.12, 0.53, 53.0])
    fig = plot_examples(ds, [example], size=100)
    paths = write_examples(table, fig, "smoke", source="the L")
    assert _file_set(paths, "fig1_examples")
    assert read_headline(paths[-1]) == headline
    assert examples_findings(table.iloc[:0])[1] == []
