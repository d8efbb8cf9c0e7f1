"""docs/fidelity.md and the paper presets agree with the one table in gmaiou/fidelity.py."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import gmaiou.configs as configs
from gmaiou.paper.fidelity import (
    SETTINGS,
    Setting,
    check_presets,
    lookup,
    main,
    paper_presets,
    render_markdown,
    undocumented_fields,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "fidelity.md"


def test_paper_presets_match_the_table():
    assert check_presets() == []


def test_every_config_field_is_documented():
    assert undocumented_fields() == []


def test_the_document_is_the_rendered_table():
    assert DOC.read_text() == render_markdown()
    for row in SETTINGS:
        assert row.source, row  # every row has a source
    assert main(["--check", "--out", str(DOC)]) == 0


def test_selectors_pick_the_right_presets():
    everything = paper_presets("all")
    assert len(everything) == 2 * 3 * (6 + 5)  # r50/r101 x 3 sizes x (6 YOLACT + 5 GmaYOLACT)
    assert "yolact-fixed-r101-400" in paper_presets("fixed")
    assert not any(n.startswith("gmayolact") for n in paper_presets("yolact"))
    assert set(paper_presets("atss")) == set(paper_presets("yolact-atss")) | set(
        paper_presets("gmayolact")
    )
    assert not any("r18" in n or "r34" in n for n in everything)


def test_a_changed_preset_is_caught(monkeypatch):
    name = "gmayolact-atss-gmaiou-r50-550"
    cfg = configs.PRESETS[name]
    wrong = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, grad_clip=35.0))
    monkeypatch.setitem(configs.PRESETS, name, wrong)
    assert check_presets() == [f"{name}: train.grad_clip is 35.0, the table says None"]


def test_code_fields_and_bad_rows():
    assert lookup(configs.get_config("yolact-fixed-r50-550"), "code:gmaiou.anchors.LEVELS") == (
        3,
        4,
        5,
        6,
        7,
    )
    with pytest.raises(ValueError, match="area"):
        Setting("speed", "x", None, "all", 1, "here")
    with pytest.raises(ValueError, match="applies"):
        Setting("model", "x", None, "r18", 1, "here")
    with pytest.raises(ValueError, match="applies"):
        paper_presets("cpu")
