"""``gmaiou-paper bench carafe`` on a tiny input: both implementations agree and are recorded."""

from __future__ import annotations

import json

from gmaiou.paper.benchmarks.carafe import markdown_table, run_carafe_benchmark
from gmaiou.paper.cli import main


def test_record_has_both_implementations_and_they_agree():
    record = run_carafe_benchmark("cpu", channels=4, side=5, iters=1, warmup=0)
    assert record["input"] == [1, 4, 5, 5] and record["output"] == [1, 4, 10, 10]
    for name in ("shifted", "fused"):
        r = record["results"][name]
        assert r["forward_ms"] > 0 and r["forward_backward_ms"] >= 0 and r["cuda_peak_mib"] is None
        assert all(v <= 1e-5 for v in r["max_rel_diff"].values())
    # the fused form keeps its window copy for backward; the shifted sum keeps views only
    assert record["results"]["fused"]["saved_for_backward_mib"] > 0
    table = markdown_table(record)
    assert "| fused |" in table and "| shifted |" in table and "threads" in table


def test_cli_writes_json_and_markdown(tmp_path, capsys):
    out = tmp_path / "carafe.json"
    args = ["bench", "carafe", "--device", "cpu", "--channels", "2", "--side", "3"]
    assert main([*args, "--iters", "1", "--warmup", "0", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["benchmark"] == "carafe" and record["device_type"] == "cpu"
    assert out.with_suffix(".md").read_text().startswith("CARAFE reassembly")
    assert "speed-up" in capsys.readouterr().out
