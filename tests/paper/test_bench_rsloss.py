"""``gmaiou-paper bench rsloss`` on tiny sizes: the record's structure and the two RS forms agreeing."""

from __future__ import annotations

import json

import pytest

from gmaiou.paper.benchmarks.rsloss import GOAL, markdown_table, run_rsloss_benchmark
from gmaiou.paper.cli import main


def test_record_has_every_size_and_loss_and_the_loop_agrees():
    record = run_rsloss_benchmark(
        elements=(3000, 5000), positives=(20,), repeats=1, warmup=0, threads=1
    )
    assert record["benchmark"] == "rsloss" and record["device_type"] == "cpu"
    assert record["threads"] == 1 and "(1 threads)" in record["device"]
    assert [(r["elements"], r["positives"]) for r in record["rows"]] == [(3000, 20), (5000, 20)]
    for row in record["rows"]:
        assert set(row["ms"]) == {"rank_sort", "rank_sort_loop", "focal"}
        assert all(v is not None and v > 0 for v in row["ms"].values())
        assert row["rank_sort_over_focal"] == pytest.approx(
            row["ms"]["rank_sort"] / row["ms"]["focal"]
        )
        assert row["max_abs_diff_to_loop"]["loss"] < 1e-5
        assert row["max_abs_diff_to_loop"]["grad"] < 1e-6
    # the goal's size was not run: no ratio
    assert record["goal"]["elements"] == GOAL["elements"] and record["goal"]["ratio"] is None
    table = markdown_table(record)
    assert "| 3,000 | 20 |" in table and "| 5,000 | 20 |" in table and "not timed" in table


def test_loop_is_skipped_above_its_limit_unless_asked(monkeypatch):
    import gmaiou.paper.benchmarks.rsloss as rsloss

    monkeypatch.setattr(rsloss, "LOOP_MAX_ELEMENTS", 1000)
    kwargs = {"elements": (2000,), "positives": (5,), "repeats": 1, "warmup": 0}
    skipped = run_rsloss_benchmark(**kwargs)["rows"][0]
    assert skipped["ms"]["rank_sort_loop"] is None and skipped["max_abs_diff_to_loop"] is None
    assert skipped["loop_over_focal"] is None and "| – |" in markdown_table(
        run_rsloss_benchmark(**kwargs)
    )
    timed = run_rsloss_benchmark(**kwargs, reference=True)["rows"][0]
    assert timed["ms"]["rank_sort_loop"] > 0
    with pytest.raises(ValueError, match="positives"):
        run_rsloss_benchmark(elements=(10,), positives=(20,))


def test_cli_writes_json_and_markdown(tmp_path, capsys):
    out = tmp_path / "rsloss.json"
    args = ["bench", "rsloss", "--elements", "2000", "--positives", "10", "4"]
    assert main([*args, "--repeats", "1", "--warmup", "0", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["benchmark"] == "rsloss" and len(record["rows"]) == 2
    assert out.with_suffix(".md").read_text().startswith("Rank & Sort loss vs focal loss")
    assert "RS / focal" in capsys.readouterr().out
