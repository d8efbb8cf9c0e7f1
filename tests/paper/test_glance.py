"""The README's results at a glance: claims beside the computed headlines of findings files."""

from __future__ import annotations

from pathlib import Path

import pytest

from gmaiou.paper.figures import save_findings
from gmaiou.paper.glance import CLAIMS, GLANCE, Claim, glance_table, glance_text, write_glance
from gmaiou.paper.paths import figures_dir
from gmaiou.paper.readme import rebase_links

CLAIM_A = Claim("claim a", "a_findings.md", (("figure", "a.png"),))
CLAIM_B = Claim("claim b | with a bar", "timings/b_findings.md")


def test_glance_table_reads_each_headline_and_links_from_its_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("GMAIOU_FIGURES", str(tmp_path))
    save_findings(["x 1"], "a", "default", headline="+1.5 mask AP")
    rows = glance_table(tmp_path, (CLAIM_A, CLAIM_B)).splitlines()
    assert len(rows) == 4
    assert rows[2] == "| claim a | +1.5 mask AP | [findings](a_findings.md), [figure](a.png) |"
    # missing findings: no link to them, the row says there is no result
    assert rows[3].startswith("| claim b \\| with a bar | no result yet")
    assert "b_findings.md" not in rows[3]


def test_a_findings_file_without_headline_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("GMAIOU_FIGURES", str(tmp_path))
    save_findings(["x 1"], "a", "default")
    with pytest.raises(ValueError, match="a_findings.md has no"):
        glance_table(tmp_path, (CLAIM_A,))


def test_write_glance_is_stable(tmp_path):
    path = write_glance("default", tmp_path)
    assert path == tmp_path / GLANCE
    first = path.read_bytes()
    assert write_glance("default", tmp_path).read_bytes() == first
    assert first.decode().count("\n| ") == len(CLAIMS)  # one row per claim after the header


def test_the_committed_glance_is_the_one_the_findings_give():
    path = figures_dir("default") / GLANCE
    assert path.is_file(), "run `make readme`"
    assert path.read_text() == glance_text("default")


def test_every_claims_findings_and_evidence_is_a_file_under_figures_or_docs():
    folder = figures_dir("default")
    for claim in CLAIMS:
        for _, target in claim.evidence:
            assert (folder / target).resolve().is_file(), target


def test_rebase_links_renames_relative_targets_only():
    text = "[a](x.md) ![b](timings/y.png) [c](https://e.org/x) [d](#top) [e](../docs/r.md)"
    moved = rebase_links(text, Path("/r/figures"), Path("/r"))
    assert moved == (
        "[a](figures/x.md) ![b](figures/timings/y.png) [c](https://e.org/x) [d](#top) "
        "[e](docs/r.md)"
    )
    assert rebase_links(text, Path("/r/figures"), Path("/r/docs")).startswith(
        "[a](../figures/x.md) ![b](../figures/timings/y.png)"
    )
