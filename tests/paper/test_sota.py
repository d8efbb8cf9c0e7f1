"""Table 5's cited data (``gmaiou.paper.sota``): its structure and its rules; the CPU-scale accuracy
table from run records (``gmaiou.paper.experiments.table5``)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from gmaiou.paper.experiments.table5 import CPU_MODELS, cpu_accuracy_table, pick_records
from gmaiou.paper.sota import (
    NOT_FOUND,
    SOTA,
    SOURCES,
    CitedResult,
    check_entries,
    format_sota_table,
    sota_frame,
)

#: The rows of the paper's Table 5, in its order (its extracted text, docs/spec.md section 5; names only, its numbers were lost).
PAPER_ROWS = [
    ("YOLACT-700", "ResNet-101"),
    ("PolarMask", "ResNet-101"),
    ("PolarMask++", "ResNet-101"),
    ("RetinaMask", "ResNet-101"),
    ("Mask R-CNN", "ResNet-50"),
    ("TensorMask", "ResNet-101"),
    ("YOLACT-550", "ResNet-50"),
    ("YOLACT-550∗", "ResNet-50"),
    ("Solov2-448", "ResNet-50"),
    ("Solov2-448†", "ResNet-50"),
    ("YOLACT-550++", "ResNet-50"),
    ("YOLACT-550++", "ResNet-101"),
    ("CenterMask-Lite†", "VoVNetV2-39"),
    ("CenterMask-Lite", "VoVNetV2-39"),
    ("Solov2-512†", "ResNet-50"),
    ("Solov2-512", "ResNet-50"),
    ("SparseInst-448", "R-50-d-DCN"),
    ("SparseInst-608", "R-50-d-DCN"),
    ("maYOLACT-550", "ResNet-50"),
    ("maYOLACT-700", "ResNet-50"),
    ("GmaYOLACT-550 (Ours)", "ResNet-50"),
    ("GmaYOLACT-700 (Ours)", "ResNet-50"),
]


def test_every_row_of_the_paper_in_its_order():
    rows = [(e.method, e.backbone) for e in SOTA]
    assert rows[: len(PAPER_ROWS)] == PAPER_ROWS
    # Block 1 is the paper's first six rows.
    assert [e.block for e in SOTA[:6]] == [1] * 6 and {e.block for e in SOTA[6:]} == {2}


def test_cited_rows_follow_the_rules():
    check_entries(SOTA)
    for e in SOTA:
        if e.has_numbers:
            assert e.sources and all(s in SOURCES for s in e.sources)
        else:
            assert NOT_FOUND in e.note
        if e.mask_ap is not None:
            assert e.split in ("test-dev", "minival")


def test_spec_numbers_are_kept():
    """The numbers the project's spec (section 5) knows are the ones stored."""
    by_name = {e.method: e for e in SOTA}
    assert (by_name["maYOLACT-550"].mask_ap, by_name["maYOLACT-550"].fps) == (35.2, 30.0)
    ma700 = by_name["maYOLACT-700"]
    assert (ma700.mask_ap, ma700.ap50, ma700.ap75, ma700.aps, ma700.apm, ma700.apl) == (
        37.7,
        59.4,
        39.9,
        18.1,
        40.8,
        52.5,
    )
    best = by_name["GmaYOLACT, best model (abstract)"]
    assert (best.mask_ap, best.fps, best.split) == (38.7, 26.0, "test-dev")


def test_speed_from_time_per_image():
    e = CitedResult("X", "R", "V", 2, "[1]", ms_per_image=40.0, gpu="G", sources=("yolact-readme",))
    assert e.speed == pytest.approx(25.0) and e.has_numbers
    assert CitedResult("Y", "R", "V", 2, "", note=NOT_FOUND).speed is None


GOOD = CitedResult("M", "R-50", "V", 2, "[9]", "test-dev", mask_ap=30.0, fps=20.0, gpu="G",
                   sources=("yolact-readme",))  # fmt: skip


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"mask_ap": 130.0}, "mask_ap must be in (0, 100)"),
        ({"split": None}, "needs its split"),
        ({"split": "val"}, "needs its split"),
        ({"gpu": None}, "needs its GPU"),
        ({"ms_per_image": 10.0}, "not both"),
        ({"fps": -1.0}, "fps must be positive"),
        ({"sources": ("nowhere",)}, "unknown source"),
        ({"sources": ()}, "numbers without a source"),
        ({"block": 3}, "block must be 1 or 2"),
        ({"method": ""}, "must be set"),
    ],
)
def test_bad_rows_are_refused(change, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_entries([dataclasses.replace(GOOD, **change)])


def test_empty_row_must_say_not_found_and_rows_are_unique():
    with pytest.raises(ValueError, match="must say 'not found'"):
        check_entries([CitedResult("M", "R", "V", 1, "")])
    with pytest.raises(ValueError, match="listed twice"):
        check_entries([GOOD, GOOD])
    check_entries([CitedResult("M", "R", "V", 1, "", note="not found: gone")])


def test_tables():
    frame = sota_frame()
    assert len(frame) == len(SOTA)
    polar = frame[frame["method"] == "PolarMask [22]"].iloc[0]
    assert polar["mask AP"] == NOT_FOUND and polar["fps"] == NOT_FOUND and polar["AP50"] == "–"
    retina = frame[frame["method"] == "RetinaMask [12]"].iloc[0]
    assert retina["fps"] == "10.2 (from 98 ms)" and retina["GPU"] == "V100"
    text = format_sota_table()
    assert text.startswith("**Cited, not measured here**")
    used = {s for e in SOTA for s in e.sources}
    assert text.count("\n- [S") == len(used)


def _record(preset, seed, ap, box, mix="uniform", variant="", minutes=5.0):
    return {
        "preset": preset,
        "seed": seed,
        "variant": variant,
        "data": {"mix": mix},
        "metrics": {"segm": {"AP": ap, "AP50": ap + 20, "oLRP": 80.0}, "bbox": {"AP": box}},
        "train_seconds": minutes * 60,
        "device_name": "cpu",
    }


FIXED, GMA, GMAY = list(CPU_MODELS)


def test_pick_records_keeps_comparable_models_in_one_grid():
    by_grid = {
        "new": [_record(FIXED, 0, 20, 30)],  # a grid still being trained
        "old": [_record(FIXED, 0, 18, 30, variant="r1"), _record(GMA, 0, 19, 31, variant="r1")],
        "t3": [_record(GMAY, 0, 17, 29), _record(GMAY, 1, 17, 29, variant="step")],
    }
    picked = pick_records(by_grid, [FIXED, GMA, GMAY], grids=("new", "t3", "old"))
    assert picked[FIXED][:2] == ("old", "r1") and picked[GMA][:2] == ("old", "r1")
    assert picked[GMAY][:2] == ("t3", "") and len(picked[GMAY][2]) == 1
    by_grid["new"].append(_record(GMA, 0, 21, 31))
    picked = pick_records(by_grid, [FIXED, GMA, GMAY], grids=("new", "t3", "old"))
    assert picked[FIXED][0] == picked[GMA][0] == "new"
    assert pick_records({}, [FIXED])[FIXED] == ("", "", [])
    coco_only = {"new": [_record(FIXED, 0, 20, 30, mix="coco")]}
    assert pick_records(coco_only, [FIXED], grids=("new",))[FIXED] == ("", "", [])


def test_a_variant_with_another_model_does_not_stand_in_for_its_preset():
    from gmaiou.configs import apply_settings, get_config

    own = get_config(GMA).to_dict()
    schedule = apply_settings(get_config(GMA), ["train.lr=0.0005"]).to_dict()
    carafe = apply_settings(get_config(GMA), ["model.upsample=carafe"]).to_dict()
    by_grid = {
        "t3": [
            dict(_record(GMA, 0, 23, 32, variant="step2"), config=schedule),
            dict(_record(GMA, 0, 27, 35, variant="step3"), config=carafe),
            dict(_record(GMA, 1, 27, 35, variant="step3"), config=carafe),
            dict(_record(GMAY, 0, 31, 38), config=own),  # no variant: always the preset
        ]
    }
    picked = pick_records(by_grid, [GMA, GMAY], grids=("t3",))
    assert picked[GMA][:2] == ("t3", "step2")  # not step 3, although it has more seeds
    assert picked[GMAY][:2] == ("t3", "")


def test_cpu_accuracy_table_from_records(tmp_path):
    folder = tmp_path / "runs" / "default" / "table2"
    folder.mkdir(parents=True)
    for seed, ap in ((0, 19.0), (1, 21.0)):
        (folder / f"f{seed}.json").write_text(json.dumps(_record(FIXED, seed, ap, 30.0)))
    table = cpu_accuracy_table("default", tmp_path, grids=("table2",)).set_index("preset")
    assert table.loc[FIXED, "mask AP"] == "20.0 ± 1.4"  # mean 20, sample std sqrt(2)
    assert table.loc[FIXED, "seeds"] == 2 and table.loc[FIXED, "grid"] == "table2"
    assert table.loc[GMAY, "mask AP"] == "no record" and table.loc[GMAY, "seeds"] == 0
    with pytest.raises(ValueError, match="no model"):
        cpu_accuracy_table("default", tmp_path, models={})


def test_cited_headline_and_findings_count_and_compare_the_rows():
    from conftest import numbers_in

    from gmaiou.paper.sota import sota_findings, sota_headline

    # the abstract's best GmaYOLACT (38.7) against the best other test-dev row (SparseInst-608,
    # whose name reads as -608)
    assert numbers_in(sota_headline()) == [38.7, 37.9, -608]
    lines = sota_findings()
    assert all("\n" not in line for line in lines)
    with_ap = [e for e in SOTA if e.mask_ap is not None]
    with_speed = [e for e in SOTA if e.speed is not None]
    assert numbers_in(lines[0]) == [
        len(SOTA), len(with_ap), 13, 2, len(with_speed), sum(not e.has_numbers for e in SOTA)
    ]  # fmt: skip
    assert numbers_in(lines[2])[:3] == [38.7, 0.8, 37.9]
    # a table without the paper's own AP: counts only
    others = [e for e in SOTA if e.venue != "the paper"]
    assert numbers_in(sota_headline(others)) == [len([e for e in others if e.mask_ap]), len(others)]


def test_writers_give_one_stem_each(tmp_path, monkeypatch):
    import matplotlib
    from conftest import numbers_in

    from gmaiou.paper.experiments.table5 import NAME as ACCURACY
    from gmaiou.paper.experiments.table5 import write_cpu_accuracy
    from gmaiou.paper.figures import read_headline
    from gmaiou.paper.sota import NAME as CITED
    from gmaiou.paper.sota import write_sota_cited

    matplotlib.use("Agg")
    monkeypatch.setenv("GMAIOU_FIGURES", str(tmp_path / "out"))
    files = {f"{{}}{s}" for s in (".md", ".png", ".pdf", "_findings.md")}
    assert {p.name for p in write_sota_cited("smoke")} == {f.format(CITED) for f in files}
    folder = tmp_path / "runs" / "default" / "table2"
    folder.mkdir(parents=True)
    for seed, (a, b, c) in enumerate(((19.0, 24.0, 30.0), (21.0, 25.0, 32.0))):
        for preset, ap in ((FIXED, a), (GMA, b), (GMAY, c)):
            (folder / f"{preset}-{seed}.json").write_text(json.dumps(_record(preset, seed, ap, 30)))
    paths = write_cpu_accuracy("smoke", figures=tmp_path, grids=("table2",))
    assert {p.name for p in paths} == {f.format(ACCURACY) for f in files}
    headline = read_headline(tmp_path / "out" / "smoke" / f"{ACCURACY}_findings.md")
    # means 20, 24.5 (+4.5), 31 (+11), 2 seeds each
    assert numbers_in(headline) == [20.0, 24.5, 4.5, 31.0, 11.0, 2]


def test_cpu_accuracy_headline_and_findings_say_which_model_has_no_record():
    from conftest import numbers_in

    from gmaiou.paper.experiments.table5 import cpu_accuracy_findings, cpu_accuracy_headline

    models = [
        {"model": "YOLACT (fixed IoU)", "preset": FIXED, "grid": "g", "variant": "",
         "records": [_record(FIXED, 0, 20.0, 30.0)]},
        {"model": "GmaYOLACT (ATSS, GmaIoU)", "preset": GMAY, "grid": "", "variant": "",
         "records": []},
    ]  # fmt: skip
    assert numbers_in(cpu_accuracy_headline(models)) == [20.0, 1]
    lines = cpu_accuracy_findings(models)
    assert numbers_in(lines[0]) == [20.0, 30.0, 1]
    assert GMAY in lines[1] and len(lines) == 3
    assert numbers_in(cpu_accuracy_headline(models[1:])) == []
