"""The README and docs/: include regions up to date, a short README, commands and links inside the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gmaiou.paper.paths import repo_root
from gmaiou.paper.readme import (
    fill_includes,
    include_targets,
    included_path,
    main,
    stale_includes,
)

ROOT = repo_root()
README = ROOT / "README.md"
#: The README's budget in characters: the details live in docs/.
README_LIMIT = 12_000
#: Words of how the project was made, not of what it is.
PROCESS_WORDS = re.compile(r"\b(issue|session|sitting|helper)s?\b", re.IGNORECASE)
#: Commands whose paths the README check reads, when they open an inline code span.
COMMAND_WORDS = (
    "make",
    "pip",
    "python",
    "python3",
    ".venv/",
    "gmaiou",
    "gmaiou-paper",
    "papermill",
    "torchrun",
    "conda",
    "du",
)
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.DOTALL | re.MULTILINE)
INLINE_CODE = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _markdown_files() -> list[Path]:
    return [README, *sorted((ROOT / "docs").rglob("*.md"))]


def _without_code(text: str) -> str:
    return INLINE_CODE.sub("", FENCE.sub("", text))


def _commands(text: str) -> list[str]:
    """Every line of a fenced block, and every inline code span that starts with a command."""
    lines = [line for block in FENCE.findall(text) for line in block.splitlines()]
    spans = INLINE_CODE.findall(FENCE.sub("", text))
    return lines + [s for s in spans if s.split()[0].startswith(COMMAND_WORDS)]


def _outside_paths(command: str) -> list[str]:
    """Tokens of ``command`` that name a place outside the repository: absolute, home or ``..``."""
    tokens = re.split(r"[\s\"'=(),]+", command)
    return [
        t
        for t in tokens
        if (t.startswith(("/", "~")) and len(t) > 1) or re.search(r"(^|/)\.\.(/|$)", t)
    ]


def test_include_regions_match_the_committed_figures():
    targets = include_targets()
    assert README in targets
    assert ROOT / "docs" / "results.md" in targets
    stale = {str(p.relative_to(ROOT)): stale_includes(p) for p in targets}
    stale = {k: v for k, v in stale.items() if v}
    assert not stale, f"include regions out of date: {stale}; run `make readme`"


def test_readme_is_short():
    size = len(README.read_text())
    assert size <= README_LIMIT, f"README.md has {size} characters, more than {README_LIMIT}"


def test_readme_commands_stay_inside_the_repository():
    commands = _commands(README.read_text())
    assert any(c.startswith("make reproduce") for c in commands)
    assert any(c.startswith("pip install .") for c in commands)
    outside = {c: _outside_paths(c) for c in commands if _outside_paths(c)}
    assert not outside, f"README commands naming places outside the repository: {outside}"


def test_readme_names_no_internal_process():
    found = sorted({m.group(0).lower() for m in PROCESS_WORDS.finditer(README.read_text())})
    assert not found, f"README.md uses {found}"


def test_relative_links_resolve_inside_the_repository():
    broken = []
    for md in _markdown_files():
        for target in LINK.findall(_without_code(md.read_text())):
            if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
                continue  # a URL or an anchor in the same file
            path = (md.parent / target.split("#", 1)[0]).resolve()
            if not path.exists() or not path.is_relative_to(ROOT):
                broken.append(f"{md.relative_to(ROOT)}: {target}")
    assert not broken, f"links that do not resolve to a file of the repository: {broken}"


def test_results_cover_every_figure_and_table_of_the_paper():
    text = (ROOT / "docs" / "results.md").read_text()
    headings = re.findall(r"^## (.+)$", text, re.MULTILINE)
    for item in ("Fig. 1", "Fig. 2", "Fig. 3(a)", "Fig. 4", "Table 1", "Table 2", "Table 3",
                 "Table 4", "Table 5"):  # fmt: skip
        assert any(item in h for h in headings), f"docs/results.md has no section for {item}"


# --------------------------------------------------------------------------- the tool itself


def _write(tmp_path: Path, body: str, where: str = "README.md", rel: str = "figures/t.md") -> Path:
    (tmp_path / "figures").mkdir(exist_ok=True)
    (tmp_path / "figures" / "t.md").write_text("| a |\n|---|\n| 2 |\n")
    md = tmp_path / where
    md.parent.mkdir(parents=True, exist_ok=True)
    md.write_text(f"intro\n<!-- include {rel} -->\n{body}<!-- end -->\nouter\n")
    return md


def test_check_fails_on_a_stale_region_and_the_fill_repairs_it(tmp_path, capsys):
    readme = _write(tmp_path, "| a |\n|---|\n| 1 |\n")  # a number typed by hand, now stale
    assert stale_includes(readme) == ["figures/t.md"]
    assert main(["--check", str(readme)]) == 1
    assert "figures/t.md is out of date" in capsys.readouterr().err
    assert main([str(readme)]) == 0
    assert readme.read_text() == (
        "intro\n<!-- include figures/t.md -->\n| a |\n|---|\n| 2 |\n<!-- end -->\nouter\n"
    )
    assert main(["--check", str(readme)]) == 0


def test_a_doc_names_files_from_its_own_folder_or_from_the_root(tmp_path):
    doc = _write(tmp_path, "", where="docs/x.md", rel="../figures/t.md")
    assert stale_includes(doc, root=tmp_path) == ["../figures/t.md"]
    assert "| 2 |" in fill_includes(doc.read_text(), doc.parent, root=tmp_path)
    assert included_path(doc.parent, "figures/t.md", root=tmp_path) == tmp_path / "figures/t.md"


def test_the_targets_are_the_readme_and_the_docs_with_regions(tmp_path):
    _write(tmp_path, "")
    _write(tmp_path, "", where="docs/a.md", rel="../figures/t.md")
    (tmp_path / "docs" / "plain.md").write_text("no regions\n")
    assert include_targets(tmp_path) == [tmp_path / "README.md", tmp_path / "docs" / "a.md"]


def test_missing_file_and_unclosed_region_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="figures/none.md"):
        fill_includes("<!-- include figures/none.md -->\n<!-- end -->", tmp_path, root=tmp_path)
    with pytest.raises(ValueError, match="no '<!-- end -->'"):
        fill_includes("<!-- include figures/t.md -->\nno end", tmp_path)
    assert fill_includes("no regions\n", tmp_path) == "no regions\n"


def test_the_command_check_catches_paths_outside_the_repository():
    assert _outside_paths("gmaiou train --data ../shared/data/coco-sample") == [
        "../shared/data/coco-sample"
    ]
    assert _outside_paths("papermill a.ipynb /tmp/out.ipynb --x=~/data") == [
        "/tmp/out.ipynb",
        "~/data",
    ]
    assert not _outside_paths('gmaiou train --data "$GMAIOU_COCO_SAMPLE" --out runs/r18')
    assert not _outside_paths("pip install torch --index-url https://download.pytorch.org/whl/cpu")
    assert not _outside_paths("gmaiou data synth / stats / check")
