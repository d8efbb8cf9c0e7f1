"""The README's include regions hold the committed files' current text (``python -m gmaiou.paper.readme``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gmaiou.paper.paths import repo_root
from gmaiou.paper.readme import fill_includes, main, stale_includes


def test_readme_includes_match_the_committed_figures():
    readme = repo_root() / "README.md"
    stale = stale_includes(readme)
    assert not stale, f"README regions out of date: {stale}; run `make readme`"
    text = readme.read_text()
    assert "<!-- include figures/table4_efficiency.md -->" in text


def _write(tmp_path: Path, body: str) -> Path:
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "t.md").write_text("| a |\n|---|\n| 2 |\n")
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n<!-- include figures/t.md -->\n{body}<!-- end -->\nouter\n")
    return readme


def test_check_fails_on_a_stale_region_and_the_fill_repairs_it(tmp_path, capsys):
    readme = _write(tmp_path, "| a |\n|---|\n| 1 |\n")  # a number typed by hand, now stale
    assert stale_includes(readme) == ["figures/t.md"]
    assert main(["--readme", str(readme), "--check"]) == 1
    assert "figures/t.md is out of date" in capsys.readouterr().err
    assert main(["--readme", str(readme)]) == 0
    assert readme.read_text() == (
        "intro\n<!-- include figures/t.md -->\n| a |\n|---|\n| 2 |\n<!-- end -->\nouter\n"
    )
    assert main(["--readme", str(readme), "--check"]) == 0


def test_missing_file_and_unclosed_region_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="figures/none.md"):
        fill_includes("<!-- include figures/none.md -->\n<!-- end -->", tmp_path)
    with pytest.raises(ValueError, match="no '<!-- end -->'"):
        fill_includes("<!-- include figures/t.md -->\nno end", tmp_path)
    assert fill_includes("no regions\n", tmp_path) == "no regions\n"
