"""Table 4's anchor counts (gmaiou.paper.benchmarks.anchors): the table, its picture and findings."""

from __future__ import annotations

import matplotlib
import pytest
from conftest import numbers_in

from gmaiou.paper.benchmarks.anchors import (
    ANCHOR_COLUMNS,
    NAME,
    anchors_findings,
    anchors_headline,
    anchors_per_scale,
    main,
    write_anchors_per_scale,
)
from gmaiou.paper.figures import read_headline

matplotlib.use("Agg")


def test_anchor_counts_at_the_paper_sizes():
    frame = anchors_per_scale()
    assert list(frame.columns) == ["image size", *ANCHOR_COLUMNS]
    # YOLACT: 3 ratios per location of P3-P7; ATSS: one; two scales: twice ATSS's
    assert frame.values.tolist() == [
        [400, 10077, 3359, 6718],
        [550, 19248, 6416, 12832],
        [700, 30963, 10321, 20642],
    ]
    with pytest.raises(ValueError, match="image size"):
        anchors_per_scale(())


def test_headline_and_findings_state_the_shares_of_yolacts_anchors():
    frame = anchors_per_scale()
    assert numbers_in(anchors_headline(frame)) == [33.3, 66.7, 400, 550, 700]
    lines = anchors_findings(frame)
    assert len(lines) == 3 and all("\n" not in line for line in lines)
    assert numbers_in(lines[1]) == [550, 19248, 6416, 0.33, 12832, 0.67, 2.0]
    # shares that differ between sizes are given size by size
    other = frame.copy()
    other.loc[0, ANCHOR_COLUMNS[1]] = 5000
    assert numbers_in(anchors_headline(other))[:4] == [49.6, 400, 33.3, 550]


def test_writer_gives_the_four_files_and_the_same_bytes_again(tmp_path, monkeypatch):
    monkeypatch.setenv("GMAIOU_FIGURES", str(tmp_path))
    paths = write_anchors_per_scale("smoke")
    names = {p.name for p in paths}
    assert names == {f"{NAME}.md", f"{NAME}.png", f"{NAME}.pdf", f"{NAME}_findings.md"}
    first = {p: p.read_bytes() for p in paths}
    assert main(["--profile", "smoke"]) == 0
    assert {p: p.read_bytes() for p in paths} == first
    assert numbers_in(read_headline(tmp_path / "smoke" / f"{NAME}_findings.md"))[:2] == [33.3, 66.7]
