"""Figure files are byte-stable, and figures/README.md lists every file of figures/."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import matplotlib
import pytest

from gmaiou.paper.figures import (
    STABLE_METADATA,
    provenance,
    read_headline,
    save_figure,
    save_findings,
    write_figure,
)
from gmaiou.paper.paths import TIMINGS, repo_root, timings_dir

matplotlib.use("Agg")

FIGURES = repo_root() / "figures"

#: A small figure with text, an image, a legend and a colour bar.
MAKE = """
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

def make():
    fig, (a, b) = plt.subplots(1, 2, figsize=(4, 2))
    a.plot([0, 1, 2], [1, 0, 2], label="a line")
    a.legend()
    a.set_title("GmaIoU ≤ 1")
    image = b.imshow([[0.0, 0.5], [1.0, 0.25]])
    fig.colorbar(image, ax=b)
    return fig
"""


def _make():
    namespace: dict = {}
    exec(MAKE, namespace)
    return namespace["make"]()


@pytest.fixture
def figures(tmp_path, monkeypatch):
    monkeypatch.setenv("GMAIOU_FIGURES", str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("suffix", [".png", ".pdf"])
def test_the_same_figure_is_written_to_the_same_bytes(tmp_path, suffix):
    import matplotlib.pyplot as plt

    fig = _make()
    first = write_figure(fig, tmp_path / f"first{suffix}").read_bytes()
    again = write_figure(fig, tmp_path / f"again{suffix}").read_bytes()
    other = write_figure(_make(), tmp_path / f"other{suffix}").read_bytes()
    plt.close("all")
    assert first == again == other
    for key in ("Software", "Creator", "Producer", "CreationDate", "Matplotlib"):
        assert key.encode() not in first  # no writer's version, no date
    assert set(STABLE_METADATA) == {"png", "pdf"}


def test_save_figure_writes_the_same_bytes_in_another_process(figures):
    """Another interpreter, another hash seed (set and dict orders of strings): same bytes."""
    import matplotlib.pyplot as plt

    paths = save_figure(_make(), "here", "smoke", source="a 2 x 2 image")
    plt.close("all")
    script = MAKE + (
        "from gmaiou.paper.figures import save_figure\n"
        "save_figure(make(), 'there', 'smoke', source='a 2 x 2 image')\n"
    )
    env = {**os.environ, "GMAIOU_FIGURES": str(figures), "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, "-c", script], env=env, check=True)
    for path in paths:
        assert path.read_bytes() == path.with_stem("there").read_bytes()


def test_write_figure_takes_png_and_pdf_only(tmp_path):
    import matplotlib.pyplot as plt

    with pytest.raises(ValueError, match=r"\.png or \.pdf"):
        write_figure(_make(), tmp_path / "f.svg")
    plt.close("all")


def test_stamps_name_paths_in_the_checkout_relative_to_it():
    source = f"records under {repo_root()}/figures/runs/default/table2"
    assert provenance("default", source) == (
        "profile: default · data: records under figures/runs/default/table2"
    )


def test_findings_and_timing_outputs_go_where_they_are_named(figures):
    path = save_findings(["one", "two"], f"{TIMINGS}/question", "smoke", source="records")
    assert path == figures / "smoke" / "timings" / "question_findings.md"
    assert path.read_text() == "- one\n- two\n\n*profile: smoke · data: records*\n"
    assert timings_dir("default") == figures / "timings" and timings_dir().is_dir()


def test_save_findings_writes_the_headline_first_and_read_headline_returns_it(figures):
    path = save_findings(["a 1", "b 2"], "q", "smoke", headline="gain +1.5")
    assert path.read_text().splitlines()[:4] == ["**At a glance:** gain +1.5", "", "- a 1", "- b 2"]
    assert read_headline(path) == "gain +1.5"
    assert read_headline(save_findings(["c"], "r", "smoke")) is None
    with pytest.raises(ValueError, match="one line"):
        save_findings(["x\ny"], "s", "smoke")
    with pytest.raises(ValueError, match="headline"):
        save_findings(["x"], "s", "smoke", headline=" ")


# ----------------------------------------------------------------------------- figures/README.md

_LISTED = re.compile(r"`([\w./-]+\.(?:md|png|pdf|json|\*))`")
#: The four files of one stem ``S.*``: table, picture twice, findings.
STEM_FILES = (".md", ".png", ".pdf", "_findings.md")


def _listed() -> tuple[set[str], set[str]]:
    """The files and the stems (``S.*``) of figures/ and of figures/timings/ that
    figures/README.md names in backticks (other paths, such as ``docs/recipe.md``, are the
    repository's)."""
    names = _LISTED.findall((FIGURES / "README.md").read_text())
    names = {n for n in names if "/" not in n or n.startswith(f"{TIMINGS}/")}
    stems = {n.removesuffix(".*") for n in names if n.endswith(".*")}
    return names - {f"{s}.*" for s in stems}, stems


def _present() -> set[str]:
    files = {p.name for p in FIGURES.iterdir() if p.is_file() and p.name != "README.md"}
    return files | {f"{TIMINGS}/{p.name}" for p in (FIGURES / TIMINGS).iterdir() if p.is_file()}


def test_every_file_the_readme_lists_exists_and_every_stem_is_whole_or_absent():
    files, stems = _listed()
    assert len(stems) >= 20
    present = _present()
    missing = sorted(name for name in files if name not in present)
    assert missing == []
    for stem in stems:
        have = [suffix for suffix in STEM_FILES if f"{stem}{suffix}" in present]
        # All four; or, while its records are too few, none or only findings that say so.
        if have == ["_findings.md"]:
            headline = read_headline(FIGURES / f"{stem}_findings.md")
            assert headline is not None and headline.startswith("no result yet"), stem
        else:
            assert have in ([], list(STEM_FILES)), (stem, have)


def test_the_readme_lists_every_file_of_figures_and_of_timings():
    files, stems = _listed()
    covered = files | {f"{stem}{suffix}" for stem in stems for suffix in STEM_FILES}
    assert sorted(_present() - covered) == []
    # every findings file belongs to a listed stem, with its table and picture
    findings = {n.removesuffix("_findings.md") for n in _present() if n.endswith("_findings.md")}
    assert findings <= stems
