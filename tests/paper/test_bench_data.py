"""``gmaiou-paper bench data``: images per second of the data pipeline, written as a record."""

from __future__ import annotations

import json

from gmaiou.paper.cli import main as gmaiou_main


def test_bench_data_writes_images_per_second(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GMAIOU_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "bench" / "data.json"
    code = gmaiou_main(
        [
            "bench",
            "data",
            "--size",
            "96",
            "--images",
            "4",
            "--batch-size",
            "2",
            "--workers",
            "1",
            "--synthetic-images",
            "6",
            "--no-coco",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    result = json.loads(out.read_text())
    assert result["size"] == 96
    rows = result["rows"]
    assert {(r["workers"], r["integrals"]) for r in rows} == {
        (0, False),
        (0, True),
        (1, False),
        (1, True),
    }
    assert all(r["images"] >= 4 and r["images_per_s"] > 0 for r in rows)
    assert "images/s" in capsys.readouterr().out
