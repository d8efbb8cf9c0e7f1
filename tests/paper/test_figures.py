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

_LISTED = re.compile(r"`([\w./-]+\.(?:md|png|pdf|json))`")


def _listed() -> set[str]:
    """The files of figures/ and of figures/timings/ that figures/README.md names in backticks
    (other paths, such as ``docs/recipe.md``, are the repository's)."""
    names = _LISTED.findall((FIGURES / "README.md").read_text())
    return {n for n in names if "/" not in n or n.startswith(f"{TIMINGS}/")}


def test_every_non_timing_file_the_readme_lists_exists():
    listed = {name for name in _listed() if not name.startswith(f"{TIMINGS}/")}
    assert len(listed) >= 30
    missing = sorted(name for name in listed if not (FIGURES / name).is_file())
    assert missing == []


def test_the_readme_lists_every_file_of_figures_and_of_timings():
    listed = _listed()
    files = {p.name for p in FIGURES.iterdir() if p.is_file() and p.name != "README.md"}
    files |= {f"{TIMINGS}/{p.name}" for p in (FIGURES / TIMINGS).iterdir() if p.is_file()}
    assert sorted(files - listed) == []
    # each timing question: a table, a figure in both formats and its findings
    questions = [
        n.removesuffix("_findings.md")
        for n in files
        if n.startswith(f"{TIMINGS}/") and n.endswith("_findings.md")
    ]
    assert questions
    for name in questions:
        assert {f"{name}{suffix}" for suffix in (".md", ".png", ".pdf")} <= files, name
