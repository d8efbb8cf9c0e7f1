"""The primary test and the MOB-share dose-response: Student's t without SciPy, the paired test,
the least-squares slope, Holm's table, the writers, and the power calculation behind the grid."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from conftest import numbers_in

from gmaiou.paper.experiments.grids import PRIMARY_PAIRS
from gmaiou.paper.experiments.power import holm_adjust, paired_power, pairs_needed
from gmaiou.paper.experiments.primary import (
    holm_table,
    mob_share_slope,
    paired_gains,
    primary_table,
    primary_test,
    realised_shares,
    regularized_beta,
    t_cdf,
    t_two_sided_p,
    write_mob_share_gain,
    write_primary_test,
)
from gmaiou.paper.experiments.runner import RunSpec, SyntheticData, load_records, run_one
from gmaiou.paper.experiments.stats import t_critical, t_quantile
from gmaiou.paper.figures import read_headline
from gmaiou.paper.paths import repo_root

IOU, GMAIOU = "ATSS IoU", "ATSS GmaIoU (P=M)"

# ----------------------------------------------------------------------------- Student's t


@pytest.mark.parametrize("t", [-6.0, -1.3, 0.0, 0.4, 2.0, 9.5])
def test_t_cdf_matches_closed_forms(t):
    assert t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-13)
    assert t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)), abs=1e-13)
    three = 0.5 + (t / (math.sqrt(3) * (1 + t * t / 3)) + math.atan(t / math.sqrt(3))) / math.pi
    assert t_cdf(t, 3) == pytest.approx(three, abs=1e-13)
    q = 1 + t * t / 4
    assert t_cdf(t, 4) == pytest.approx(0.5 + 0.375 * t / math.sqrt(q) * (1 - t * t / (12 * q)))


def test_t_tails_match_published_values():
    assert t_two_sided_p(2.0, 5) == pytest.approx(0.1019395, abs=1e-7)  # 2 * pt(-2, 5)
    for df in (1, 2, 4, 10, 30, 60, 200):  # the tabulated 95% quantiles, rounded to 3 decimals
        assert t_two_sided_p(t_critical(df), df) == pytest.approx(0.05, abs=1e-4)
    assert t_two_sided_p(math.inf, 3) == 0.0 and t_two_sided_p(0.0, 7) == 1.0
    assert t_cdf(-40.0, 7) == pytest.approx(7.951e-10, rel=1e-3)


def test_regularized_beta_known_values_and_errors():
    assert regularized_beta(0.3, 2.0, 1.0) == pytest.approx(0.09)  # x^a when b = 1
    assert regularized_beta(0.3, 1.0, 1.0) == pytest.approx(0.3)
    assert regularized_beta(0.5, 3.5, 3.5) == pytest.approx(0.5)
    assert regularized_beta(0.8, 2.0, 3.0) == pytest.approx(1 - regularized_beta(0.2, 3.0, 2.0))
    assert (regularized_beta(0.0, 2, 2), regularized_beta(1.0, 2, 2)) == (0.0, 1.0)
    with pytest.raises(ValueError, match="x must lie"):
        regularized_beta(1.5, 1.0, 1.0)
    with pytest.raises(ValueError, match="must be > 0"):
        regularized_beta(0.5, 0.0, 1.0)


# ----------------------------------------------------------------------------- fake records


def _record(label: str, mix: str, data_seed: int, seed: int, ap: float) -> dict:
    return {
        "label": label,
        "seed": seed,
        "data": {"images": 12, "size": 96, "seed": data_seed, "mix": mix, "test_images": 2},
        "metrics": {"segm": {"AP": ap}, "bbox": {"AP": ap + 5.0}},
    }


def _pairs(gains: dict[tuple[str, int], float], base: float = 20.0) -> list[dict]:
    """Two records per (mix, k): seed k on data seed k, GmaIoU ``gain`` above IoU."""
    out = []
    for (mix, k), gain in gains.items():
        out += [_record(IOU, mix, k, k, base + k), _record(GMAIOU, mix, k, k, base + k + gain)]
    return out


PRIMARY_GAINS = {("uniform", 0): 1.0, ("uniform", 1): 2.0, ("uniform", 2): 1.5,
                 ("coco", 0): 0.5, ("coco", 1): 1.0}  # fmt: skip


def test_primary_test_by_hand():
    records = _pairs(PRIMARY_GAINS)
    records += [
        _record("fixed IoU", "uniform", 0, 0, 3.0),  # another assigner: ignored
        _record(GMAIOU, "uniform", 5, 0, 40.0),  # seed 0 on data seed 5: no partner
    ]
    result = primary_test(records)
    # gains 1.0, 2.0, 1.5, 0.5, 1.0: mean 1.2, squared deviations 1.3 in all
    sd = math.sqrt(1.3 / 4)
    half = 2.7764451 * sd / math.sqrt(5)
    assert result["pairs"] == 5 and result["df"] == 4 and result["mixes"] == ["coco", "uniform"]
    assert result["mean"] == pytest.approx(1.2) and result["sd"] == pytest.approx(sd)
    assert result["ci_low"] == pytest.approx(1.2 - half)
    assert result["ci_high"] == pytest.approx(1.2 + half)
    assert result["t"] == pytest.approx(1.2 / (sd / math.sqrt(5)))
    assert result["p"] == pytest.approx(0.0092617, abs=1e-6)
    assert result["claim_inside"] and result["claim_overlaps"]
    uniform = primary_test(records, mix="uniform")
    assert uniform["pairs"] == 3 and uniform["mean"] == pytest.approx(1.5)
    assert uniform["ci_low"] == pytest.approx(1.5 - 4.3026527 * 0.5 / math.sqrt(3))
    low = primary_test(_pairs({("uniform", 0): 0.1, ("uniform", 1): 0.2, ("uniform", 2): 0.3}))
    assert not low["claim_inside"] and not low["claim_overlaps"] and low["ci_high"] < 1.0
    with pytest.raises(ValueError, match="at least 2 complete pairs"):
        primary_test(records, mix="coco-ish")


def test_paired_gains_refuse_two_records_of_one_run():
    records = _pairs({("uniform", 0): 1.0})
    with pytest.raises(ValueError, match="two ATSS IoU records"):
        paired_gains([*records, records[0]])
    assert list(paired_gains(records)["gain"]) == [pytest.approx(1.0)]


def test_primary_table_adjusts_the_mixes_by_holm():
    table = primary_table(_pairs(PRIMARY_GAINS))
    assert list(table["set"]) == ["all (pooled)", "coco", "uniform"]
    assert list(table["pairs"]) == [5, 2, 3] and math.isnan(table.loc[0, "p holm"])
    assert list(table["p holm"].iloc[1:]) == pytest.approx(holm_adjust(list(table["p"].iloc[1:])))


# 4 levels x 2 pairs. Shares x: 0.1, 0.3, 0.5, 0.7 (twice each), mean 0.4, Sxx = 0.4.
# Gains y: 0.0, 0.2 | 0.4, 0.2 | 0.6, 0.8 | 0.6, 1.0, mean 0.475; Sxy = 0.225 + 0.035 + 0.045
# + 0.195 = 0.5. Slope 0.5 / 0.4 = 1.25, intercept 0.475 - 1.25 * 0.4 = -0.025. Residuals
# -0.1, 0.1, 0.05, -0.15, 0.0, 0.2, -0.25, 0.15: sum of squares 0.17, 6 df.
MOB_GAINS = {("mob10", 0): 0.0, ("mob10", 1): 0.2, ("mob30", 0): 0.4, ("mob30", 1): 0.2,
             ("mob50", 0): 0.6, ("mob50", 1): 0.8, ("mob70", 0): 0.6, ("mob70", 1): 1.0}  # fmt: skip
MOB_SHARES = {"mob10": 0.1, "mob30": 0.3, "mob50": 0.5, "mob70": 0.7}


def test_mob_share_slope_by_hand():
    result = mob_share_slope(_pairs(MOB_GAINS), MOB_SHARES)
    se = math.sqrt(0.17 / 6 / 0.4)
    assert result["pairs"] == 8 and result["df"] == 6
    assert result["slope"] == pytest.approx(1.25) and result["intercept"] == pytest.approx(-0.025)
    assert result["se"] == pytest.approx(se)
    assert result["ci_low"] == pytest.approx(1.25 - 2.4469119 * se)  # 0.599
    assert result["ci_high"] == pytest.approx(1.25 + 2.4469119 * se)  # 1.901
    assert result["p"] == pytest.approx(t_two_sided_p(1.25 / se, 6))
    levels = result["levels"]
    assert list(levels["mix"]) == ["mob10", "mob30", "mob50", "mob70"]
    assert list(levels["mean"]) == pytest.approx([0.1, 0.3, 0.7, 0.8])
    assert list(levels["pairs"]) == [2, 2, 2, 2]
    # two pairs: sd |a - b| / sqrt 2, interval half-width 12.706 |a - b| / 2
    assert list(levels["ci low"]) == pytest.approx(
        [
            0.1 - 12.7062047 * 0.1,
            0.3 - 12.7062047 * 0.1,
            0.7 - 12.7062047 * 0.1,
            0.8 - 12.7062047 * 0.2,
        ]
    )
    assert list(levels["ci high"]) == pytest.approx(
        [
            0.1 + 12.7062047 * 0.1,
            0.3 + 12.7062047 * 0.1,
            0.7 + 12.7062047 * 0.1,
            0.8 + 12.7062047 * 0.2,
        ]
    )
    keyed = {(mix, k): MOB_SHARES[mix] for mix, k in MOB_GAINS}  # per (mix, data seed)
    assert mob_share_slope(_pairs(MOB_GAINS), keyed)["slope"] == pytest.approx(1.25)


def test_mob_share_slope_refuses_what_gives_no_line():
    with pytest.raises(ValueError, match="same realised share"):
        mob_share_slope(_pairs(MOB_GAINS), {m: 0.3 for m in MOB_SHARES})
    with pytest.raises(ValueError, match="at least 3 complete pairs"):
        mob_share_slope(_pairs({("mob10", 0): 1.0, ("mob70", 0): 2.0}), MOB_SHARES)
    with pytest.raises(KeyError, match="mob70"):
        mob_share_slope(_pairs(MOB_GAINS), {"mob10": 0.1, "mob30": 0.3, "mob50": 0.5})


def test_holm_table_adjusts_per_family():
    diffs = pd.DataFrame(
        {
            "data": ["u", "c", "u", "u", "c"],
            "metric": ["mask AP", "mask AP", "mask AP", "box AP", "box AP"],
            "pairs": [3, 3, 5, 3, 1],
            "mean": [1.0, 0.2, -0.5, 2.0, 1.0],
            "std": [0.5, 1.0, 0.5, 0.0, math.nan],
        }
    )
    out = holm_table(diffs)
    expected = [
        t_two_sided_p(1.0 / (0.5 / math.sqrt(3)), 2),
        t_two_sided_p(0.2 / (1.0 / math.sqrt(3)), 2),
        t_two_sided_p(-0.5 / (0.5 / math.sqrt(5)), 4),
    ]
    assert list(out["p"].iloc[:3]) == pytest.approx(expected)
    assert list(out["p holm"].iloc[:3]) == pytest.approx(holm_adjust(expected))
    assert out.loc[3, "p"] == 0.0 and out.loc[3, "p holm"] == 0.0  # no spread: a family of one
    assert math.isnan(out.loc[4, "p"]) and math.isnan(out.loc[4, "p holm"])
    by_data = holm_table(diffs, family=["metric", "data"])
    assert by_data.loc[1, "p holm"] == pytest.approx(expected[1])  # alone in its family


def test_holm_table_widens_each_interval_to_its_step_level():
    diffs = pd.DataFrame(
        {
            "metric": ["mask AP"] * 3 + ["box AP"],
            "pairs": [3, 3, 5, 3],
            "mean": [1.0, 0.2, -0.5, 2.0],
            "std": [0.5, 1.0, 0.5, 1.0],
        }
    )
    out = holm_table(diffs)
    # mask AP: p 0.0377 (row 0), 0.7578 (row 1), 0.0947 (row 2): ranks 1, 3, 2 of 3
    assert list(out["family size"]) == [3, 3, 3, 1]
    assert list(out["holm level"]) == pytest.approx([0.05 / 3, 0.05, 0.05 / 2, 0.05])
    half = [
        t_quantile(0.05 / 3, 2) * 0.5 / math.sqrt(3),
        t_critical(2) * 1.0 / math.sqrt(3),  # the largest p: the raw 95% interval
        t_quantile(0.025, 4) * 0.5 / math.sqrt(5),
    ]
    assert list(out["holm low"].iloc[:3]) == pytest.approx(
        [m - h for m, h in zip([1.0, 0.2, -0.5], half)]
    )
    assert list(out["holm high"].iloc[:3]) == pytest.approx(
        [m + h for m, h in zip([1.0, 0.2, -0.5], half)]
    )
    assert t_quantile(0.05 / 3, 2) == pytest.approx(7.6488, abs=1e-4)  # qt(1 - 0.05 / 6, 2)
    assert list(out["t"]) == pytest.approx(
        [1.0 / (0.5 / math.sqrt(3)), 0.2 / (1 / math.sqrt(3)), -0.5 / (0.5 / math.sqrt(5)),
         2.0 / (1 / math.sqrt(3))]
    )  # fmt: skip
    # p holm <= 0.05 implies an adjusted interval that excludes zero
    rejected = out[out["p holm"] <= 0.05]
    assert ((rejected["holm low"] > 0) | (rejected["holm high"] < 0)).all()


def test_writers_write_nothing_without_records_and_say_when_pairs_are_too_few(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("GMAIOU_FIGURES", str(tmp_path))
    assert write_primary_test([], "default") == []
    assert write_mob_share_gain([], {}, "default") == []
    assert list(tmp_path.iterdir()) == []
    one_pair = _pairs({("uniform", 0): 1.0})
    (path,) = write_primary_test(one_pair, "default", all_planned=False)
    assert path.name == "primary_test_findings.md"
    # headline: 1 pair of the 10 planned; then 1 complete pair of the 10 planned, the test needs 2
    assert read_headline(path) == "no result yet: 1 complete pair of the 10 planned"
    assert numbers_in(path.read_text().splitlines()[2]) == [1, 10, 2]
    (path,) = write_mob_share_gain(
        _pairs({("mob10", 0): 0.1, ("mob30", 0): 0.2}), None, "default", all_planned=False
    )
    assert path.name == "mob_share_gain_findings.md"
    assert read_headline(path) == "no result yet: 2 complete pairs on 2 levels"
    assert numbers_in(path.read_text().splitlines()[2]) == [2, 2, 3, 2]
    (path,) = write_mob_share_gain(_pairs({("mob10", 0): 0.1}), None, "default")
    assert read_headline(path) == "no result yet: 1 complete pair of the 12 planned on 1 level"
    assert "2 runs (1 complete pair), test split" in path.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "mob_share_gain_findings.md",
        "primary_test_findings.md",
    ]


def test_notebook_09_writes_through_the_writers_only_when_records_exist():
    notebook = repo_root() / "notebooks" / "09_primary_test.ipynb"
    cells = ["".join(c["source"]) for c in json.loads(notebook.read_text())["cells"]]
    code = "\n".join(cells)
    assert 'get_grid("primary", profile)' in code and 'get_grid("mob-share", profile)' in code
    assert code.count("run_grid(") == 2  # trains only without GMAIOU_RECORDED_ONLY
    assert "write_primary_test(primary_records, profile)" in code
    assert "write_mob_share_gain(mob_records, profile=profile)" in code
    assert "save_" not in code  # every file comes from the writers


# ----------------------------------------------------------------------------- writers


def test_write_primary_test(tmp_path, monkeypatch):
    monkeypatch.setenv("GMAIOU_FIGURES", str(tmp_path))
    # default: pre-registered, read only once all 10 planned pairs are recorded
    (early,) = write_primary_test(_pairs(PRIMARY_GAINS), "default")
    assert read_headline(early) == "no result yet: 5 complete pairs of the 10 planned"
    paths = write_primary_test(_pairs(PRIMARY_GAINS), "default", all_planned=False)
    assert sorted(p.name for p in paths) == [
        "primary_test.md",
        "primary_test.pdf",
        "primary_test.png",
        "primary_test_findings.md",
    ]
    assert all(p.parent == tmp_path and p.stat().st_size > 0 for p in paths)
    table = (tmp_path / "primary_test.md").read_text().splitlines()
    assert numbers_in(table[2])[:7] == [5, 1.2, 0.57, 0.49, 1.91, 4.71, 0.009]
    findings = (tmp_path / "primary_test_findings.md").read_text().splitlines()
    # mean, 95, interval, pairs; then the claim's range
    assert numbers_in(read_headline(tmp_path / "primary_test_findings.md")) == [
        1.2,
        95,
        0.49,
        1.91,
        5,
        1.0,
        1.5,
    ]
    first = numbers_in(findings[2])
    # pairs, planned pairs, mean, sd, 95, interval, t, df, p, 95 (the verdict), the claim
    assert first == [5, 10, 1.2, 0.57, 95, 0.49, 1.91, 4.71, 4, 0.009, 95, 1.0, 1.5]
    # planning sd, observed sd, pairs, the claim's low end, power at it, 5%
    sd = float(np.std(list(PRIMARY_GAINS.values()), ddof=1))
    power = round(100 * paired_power(5, 1.0, sd))
    assert numbers_in(findings[3]) == [1.0, 0.57, 5, 1.0, power, 5]
    assert findings[3].startswith("- Size check (not part of the pre-registered analysis)")
    assert len([line for line in findings if line.startswith("- ")]) == 4


def test_write_mob_share_gain(tmp_path, monkeypatch):
    monkeypatch.setenv("GMAIOU_FIGURES", str(tmp_path))
    (early,) = write_mob_share_gain(_pairs(MOB_GAINS), MOB_SHARES, "default")
    assert read_headline(early) == "no result yet: 8 complete pairs of the 12 planned on 4 levels"
    paths = write_mob_share_gain(_pairs(MOB_GAINS), MOB_SHARES, "default", all_planned=False)
    assert sorted(p.name for p in paths) == [
        "mob_share_gain.md",
        "mob_share_gain.pdf",
        "mob_share_gain.png",
        "mob_share_gain_findings.md",
    ]
    findings = (tmp_path / "mob_share_gain_findings.md").read_text().splitlines()
    # slope per 10 points, 10, 95, interval, pairs
    assert numbers_in(read_headline(tmp_path / "mob_share_gain_findings.md")) == [
        0.13,
        10,
        95,
        0.06,
        0.19,
        8,
    ]
    findings = findings[2:]
    # MOB threshold, pairs, levels, slope per 10 points, 10, 95, interval, df, p
    assert numbers_in(findings[0])[:10] == [0.5, 8, 4, 0.13, 10, 95, 0.06, 0.19, 6, 0.003]
    # 95, then per level: its share, mean gain and interval
    assert numbers_in(findings[1])[:9] == [95, 10, 10, 0.1, -1.17, 1.37, 30, 30, 0.3]
    table = (tmp_path / "mob_share_gain.md").read_text().splitlines()
    assert numbers_in(table[2]) == [10, 10.0, 2, 0.1, -1.17, 1.37]


# ----------------------------------------------------------------------------- the plan


def test_primary_pairs_follow_the_power_calculation_on_table2_records():
    records = load_records("default", "table2", repo_root() / "figures")
    gains = paired_gains(records)
    assert sorted(set(gains["mix"])) == ["coco", "uniform"]
    assert list(gains.groupby("mix").size()) == [3, 5]
    sd = float(np.std(gains["gain"], ddof=1))
    assert round(sd, 3) == 0.555
    assert pairs_needed(1.0, sd) == PRIMARY_PAIRS == 5


def test_a_run_on_a_set_with_test_images_is_evaluated_on_them(tmp_path):
    spec = RunSpec(
        grid="t", profile="smoke", preset="yolact-atss-gmaiou-r18-160", seed=0,
        data=SyntheticData(4, 96, test_images=2), epochs=1, max_iters=1, workers=0,
        batch_size=2, settings=("model.image_size=96",),
    )  # fmt: skip
    record = run_one(spec, root=tmp_path, figures=tmp_path / "figures", progress=False)
    evaluated = json.loads((spec.run_dir(tmp_path) / "eval.json").read_text())
    assert evaluated["split"] == "test"
    assert record["data"]["test_images"] == 2
    assert record["command"][1][-2:] == ["--eval-split", "test"]


def test_realised_shares_measure_each_set_once(tmp_path):
    records = []
    for mix in ("mob10", "mob70"):
        for preset in ("yolact-atss-iou-r18-160", "yolact-atss-gmaiou-r18-160"):
            spec = RunSpec(grid="mob-share", profile="smoke", preset=preset, seed=0,
                           data=SyntheticData(8, 96, 0, mix, test_images=2))  # fmt: skip
            records.append({"spec": spec.to_dict()})
    shares = realised_shares(records, root=tmp_path)
    assert sorted(shares) == [("mob10", 0), ("mob70", 0)]
    assert shares[("mob10", 0)] < 0.3 < 0.5 < shares[("mob70", 0)]
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [
        "synth-mob10-8x96-data0-test2",
        "synth-mob70-8x96-data0-test2",
    ]
