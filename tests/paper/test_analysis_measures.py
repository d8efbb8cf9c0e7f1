"""Notebook 01's analyses: pixel weights, overlap pairs and the Corollary 1 check."""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import l_mask, numbers_in, random_instances

from gmaiou import gmaiou, maiou
from gmaiou.anchors import yolact_anchors
from gmaiou.paper.analysis.measures import (
    IOU_VARIANTS,
    OverlapPairs,
    corollary_1_check,
    iou_vs_gmaiou_findings,
    iou_vs_gmaiou_table,
    overlap_pairs,
    pixel_weight_example,
    pixel_weight_findings,
    pixel_weight_table,
    pixel_weights,
    plot_iou_vs_gmaiou,
    plot_pixel_weights,
    table1_findings,
    table1_frame,
    write_iou_vs_gmaiou,
    write_pixel_weights,
    write_table1,
)
from gmaiou.shapes import l_shape

matplotlib.use("Agg")


def test_pixel_weights_sum_to_the_intersections():
    mask = torch.from_numpy(l_shape((16, 16), 2.0, 2.0, 12.0, 4.0))
    box = torch.tensor([2.0, 2.0, 14.0, 14.0])
    anchor = torch.tensor([[2.0, 2.0, 8.0, 14.0]])
    x1, y1, x2, y2 = 2, 2, 8, 14
    iou_w = pixel_weights(mask, box, "iou")
    assert iou_w.sum() == pytest.approx(144.0)  # every box pixel weighs 1
    assert iou_w[y1:y2, x1:x2].sum() == pytest.approx(72.0)  # |A ∩ B|
    ma_w = pixel_weights(mask, box, "gmaiou-box")
    assert ma_w.sum() == pytest.approx(144.0)  # the box's energy moved onto the mask
    # maIoU = GMI / |A ∪ B| with GMI the weights under the anchor and |A ∪ B| = |B| here
    assert float(ma_w[y1:y2, x1:x2].sum()) / 144.0 == pytest.approx(
        maiou(box[None], mask[None], anchor).item()
    )
    gm_w = pixel_weights(mask, box, "gmaiou-mask")
    assert gm_w.sum() == mask.sum()
    inter = float(gm_w[y1:y2, x1:x2].sum())
    assert inter / (72 + float(mask.sum()) - inter) == pytest.approx(
        gmaiou(box[None], mask[None], anchor).item()
    )
    with pytest.raises(ValueError, match="pixel weights are defined"):
        pixel_weights(mask, box, "giou")


def test_table1_rows():
    names = [row["IoU variant"] for row in IOU_VARIANTS]
    assert names[0] == "IoU" and names[-1].startswith("Generalized Mask-aware IoU")
    assert len(names) == 7


def test_overlap_pairs_and_corollary(rng):
    instances = [random_instances(rng, 4, 96, 96) for _ in range(2)] + [
        random_instances(rng, 0, 96, 96)
    ]
    pairs = overlap_pairs(instances, 96)
    assert len(pairs) > 0 and pairs.num_gts == 8 and pairs.num_images == 3
    assert ((pairs.iou > 0) | (pairs.maiou > 0) | (pairs.gmaiou > 0)).all()
    assert np.isfinite(pairs.gmaiou).all()
    check = corollary_1_check(instances, 96)
    assert check["integer anchors, tight boxes: pairs with GmaIoU_M > GmaIoU_B"] == 0
    assert check["integer anchors, tight boxes: pairs"] == 8 * len(yolact_anchors(96))


# ----------------------------------------------------------------------------- paper items


@pytest.fixture
def figures(tmp_path, monkeypatch):
    monkeypatch.setenv("GMAIOU_FIGURES", str(tmp_path))
    return tmp_path


def _written(paths, stem: str) -> bool:
    return sorted(p.name for p in paths) == sorted(
        f"{stem}{suffix}" for suffix in (".md", ".pdf", ".png", "_findings.md")
    )


def test_table1_findings_count_the_inputs_and_purposes():
    table = pd.DataFrame(
        {
            "IoU variant": ["A", "Mask-aware B (Bm)", "C"],
            "input 1": ["box", "box + mask", "mask"],
            "input 2": ["box", "box", "mask"],
            "purpose": ["anchor assigner", "anchor assigner", "performance measure"],
        }
    )
    headline, lines = table1_findings(table)
    # 2 of 3 read a mask; 1 of the 2 assigners does, named by its short name
    assert numbers_in(headline) == [2, 3, 1, 2] and headline.endswith("(Bm)")
    assert numbers_in(lines[0]) == [3, 1, 1, 1]
    assert numbers_in(lines[1]) == [2, 3, 1]
    paper_headline, _ = table1_findings(table1_frame())
    assert numbers_in(paper_headline) == [3, 7, 1, 2]
    assert table1_frame().shape == (7, 4)


def test_pixel_weight_table_hand_computed():
    mask, box, anchors, names = pixel_weight_example()
    table = pixel_weight_table(mask, box, anchors, names)
    assert table.shape == (2, 8)
    assert table["anchor pixels"].tolist() == [72, 72]
    # the L: a 4-wide upright arm (x 2-6, y 2-14) and a 4-high foot (x 2-14, y 10-14)
    assert table["mask pixels in anchor"].tolist() == [56, 24]
    assert table["mask pixels"].tolist() == [80, 80]
    assert table["IoU"].tolist() == [0.5, 0.5]
    assert table["maIoU (P = B)"].tolist() == pytest.approx([56 / 80, 24 / 80])
    # |A ∩ M| / (|A| + |M| - |A ∩ M|): 56 / 96 and 24 / 128, to 3 decimals
    assert table["GmaIoU (P = M)"].tolist() == [0.583, 0.188]
    headline, lines = pixel_weight_findings(table)
    assert numbers_in(headline) == pytest.approx([0.5, 0.58, 0.19], abs=0.005)
    assert numbers_in(lines[2])[:2] == pytest.approx(table["GmaIoU (P = M)"].tolist(), abs=5e-4)
    assert numbers_in(lines[3]) == [56, 80, 24, 72, 72]
    with pytest.raises(ValueError, match="two anchors"):
        pixel_weight_table(mask, box, anchors[:1], names)


def _pairs(iou, gma, mob, gt_mob) -> OverlapPairs:
    f = lambda v: np.asarray(v, dtype=np.float64)  # noqa: E731
    return OverlapPairs(f(iou), f(gma), f(gma), 1, len(gt_mob), 10, f(mob), f(gt_mob))


def test_iou_vs_gmaiou_table_hand_computed():
    pairs = _pairs(
        iou=[0.6, 0.5, 0.2, 0.7, 0.3],
        gma=[0.3, 0.55, 0.1, 0.7, 0.6],
        mob=[0.2, 0.2, 0.2, 0.9, 0.9],
        gt_mob=[0.2, 0.9, 0.6],
    )
    table = iou_vs_gmaiou_table(pairs)
    assert table["GT MOB"].tolist() == ["< 0.25", "0.25–0.5", "0.5–0.75", "≥ 0.75", "all"]
    assert table["GTs"].tolist() == [1, 0, 1, 1, 3]
    assert table["pairs"].tolist() == [3, 0, 0, 2, 5]
    below = table["GmaIoU < IoU (%)"].tolist()
    assert below[0] == 66.7 and below[3] == 0.0 and below[4] == 40.0  # equal is not below
    assert np.isnan(below[1]) and np.isnan(below[2])
    mean = table["mean GmaIoU − IoU"].tolist()
    assert mean[0] == pytest.approx(-0.117) and mean[3] == 0.15 and mean[4] == -0.01
    assert table["IoU ≥ 0.5 pairs"].tolist() == [2, 0, 0, 1, 3]
    positives = table["of which GmaIoU < 0.5 (%)"].tolist()
    assert [positives[0], positives[3], positives[4]] == [50.0, 0.0, 33.3]
    assert table["IoU < 0.4, GmaIoU ≥ 0.5 pairs"].tolist() == [0, 0, 0, 1, 1]
    headline, lines = iou_vs_gmaiou_findings(table)
    # the lowest and the highest MOB bin with pairs: 66.7% and 0% below IoU
    assert numbers_in(headline) == [66.7, 0.25, 0.0, 0.75] and len(headline) < 110
    assert len(lines) == 4  # two bins with pairs, all pairs, the trend
    assert numbers_in(lines[0])[1:4] == [3, 1, 66.7]
    assert numbers_in(lines[-1])[-2:] == [-0.117, 0.15]
    with pytest.raises(ValueError, match="rise"):
        iou_vs_gmaiou_table(pairs, edges=(0.5, 0.25))


def test_overlap_pairs_carry_their_gts_mob():
    mask = l_mask()  # box 10..90, 1500 mask pixels
    box = torch.tensor([[10.0, 10.0, 90.0, 90.0]])
    pairs = overlap_pairs([(box, mask[None])], 100)
    assert pairs.gt_mob.tolist() == pytest.approx([1500 / 6400])
    assert pairs.mob.shape == pairs.iou.shape and len(pairs) > 0
    assert np.allclose(pairs.mob, 1500 / 6400)
    table = iou_vs_gmaiou_table(pairs)
    assert table["GTs"].tolist() == [1, 0, 0, 0, 1]
    assert table["pairs"].tolist() == [len(pairs), 0, 0, 0, len(pairs)]


def test_writers_write_the_stems_file_set(figures):
    import matplotlib.pyplot as plt

    from gmaiou.paper.figures import read_headline

    table = table1_frame()
    paths = write_table1(table, "smoke")
    assert _written(paths, "table1_iou_variants")
    assert read_headline(paths[-1]) == table1_findings(table)[0]

    mask, box, anchors, names = pixel_weight_example()
    fig, _ = plot_pixel_weights(mask, box, anchors, names)
    table = pixel_weight_table(mask, box, anchors, names)
    paths = write_pixel_weights(table, fig, "smoke")
    assert _written(paths, "fig3b_pixel_weights")
    assert (figures / "smoke" / "fig3b_pixel_weights.md").read_text().startswith("| anchor")

    pairs = _pairs([0.6, 0.2], [0.3, 0.1], [0.2, 0.9], [0.2, 0.9])
    fig = plot_iou_vs_gmaiou(pairs, title="Fig. 4")
    assert len(fig.axes) == 6 and fig._suptitle.get_text() == "Fig. 4"  # 3 panels, 3 colour bars
    table = iou_vs_gmaiou_table(pairs)
    paths = write_iou_vs_gmaiou(table, fig, "smoke", source="two pairs")
    assert _written(paths, "fig4_iou_vs_gmaiou")
    findings = paths[-1].read_text()
    assert "GmaIoU" in findings and "IoU" in findings  # it names its comparison
    assert findings.splitlines()[-1] == "*profile: smoke · data: two pairs*"
    plt.close("all")
