"""`make reproduce`'s runner: notebooks in order, each one's wall time recorded against the budget."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from gmaiou.paper.glance import CLAIMS
from gmaiou.paper.reproduce import BUDGETS, find_notebooks, format_times, main, run_notebooks


def _notebook(path, source: str) -> None:
    cells = [
        {"id": "params", "cell_type": "code", "metadata": {"tags": ["parameters"]},
         "source": 'profile = "smoke"',
         "outputs": [], "execution_count": None},
        {"id": "body", "cell_type": "code", "metadata": {}, "source": source, "outputs": [],
         "execution_count": None},
    ]  # fmt: skip
    nb = {"cells": cells, "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
          "language": "python"}}, "nbformat": 4, "nbformat_minor": 5}  # fmt: skip
    path.write_text(json.dumps(nb))


def test_find_notebooks_takes_the_numbered_ones_in_order(tmp_path):
    for name in ("10_b.ipynb", "02_a.ipynb", "scratch.ipynb"):
        _notebook(tmp_path / name, "pass")
    assert [p.name for p in find_notebooks(tmp_path)] == ["02_a.ipynb", "10_b.ipynb"]
    with pytest.raises(FileNotFoundError, match="no notebook folder"):
        find_notebooks(tmp_path / "absent")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=r"no notebook named \[0-9\]\*"):
        find_notebooks(empty)


def test_run_notebooks_times_each_in_order_and_stops_at_a_failure(tmp_path):
    calls = []

    def execute(notebook, out, profile):
        calls.append((notebook.name, out.parent, profile))
        if notebook.name.startswith("02"):
            raise RuntimeError("cell 3 failed")

    books = [tmp_path / "00_x.ipynb", tmp_path / "01_y.ipynb"]
    times = run_notebooks(books, "quick", tmp_path / "out", execute)
    assert [name for name, _ in times] == ["00_x.ipynb", "01_y.ipynb"]
    assert all(s >= 0 for _, s in times) and calls[0] == ("00_x.ipynb", tmp_path / "out", "quick")
    with pytest.raises(RuntimeError, match="cell 3"):
        run_notebooks([*books, tmp_path / "02_z.ipynb"], "quick", tmp_path / "out", execute)


def test_format_times_sums_and_judges_the_budget():
    text = format_times([("00.ipynb", 60.0), ("01.ipynb", 540.0)], "quick")
    assert "| 00.ipynb | 1.0 |" in text and "| **all notebooks** | **10.0** |" in text
    assert "10.0 min of notebooks, within its budget of 20 min" in text
    over = format_times([("00.ipynb", BUDGETS["quick"] + 60)], "quick")
    assert "over its budget" in over
    assert "budget" not in format_times([("00.ipynb", 60.0)], "default")


def test_main_runs_real_notebooks_and_writes_the_times(tmp_path, monkeypatch):
    books = tmp_path / "notebooks"
    books.mkdir()
    _notebook(books / "00_first.ipynb", "assert profile == 'quick'")
    _notebook(books / "01_second.ipynb", "x = 1")
    monkeypatch.setenv("GMAIOU_FIGURES", str(tmp_path / "figures"))
    assert (
        main(["--profile", "quick", "--notebooks", str(books), "--out", str(tmp_path / "b")]) == 0
    )
    assert (tmp_path / "b" / "01_second.ipynb").is_file()
    # In the quick profile's figures folder (figures/quick/ or a subfolder of it).
    (path,) = (tmp_path / "figures" / "quick").rglob("reproduce_times_quick.md")
    text = path.read_text()
    assert "| 00_first.ipynb |" in text and "| 01_second.ipynb |" in text
    assert "*profile: quick · data:" in text and "OMP_NUM_THREADS" in text
    # The results-at-a-glance table of the profile, one row per claim, none with a result here.
    glance = (tmp_path / "figures" / "quick" / "results_at_a_glance.md").read_text()
    assert glance.count("| no result yet") == len(CLAIMS)


def test_main_refuses_an_unknown_profile_in_one_line_before_running_anything(
    tmp_path, capsys, monkeypatch
):
    books = tmp_path / "notebooks"
    books.mkdir()
    _notebook(books / "00_first.ipynb", "x = 1")
    monkeypatch.setenv("GMAIOU_FIGURES", str(tmp_path / "figures"))
    out = tmp_path / "b"
    assert main(["--profile", "fast", "--notebooks", str(books), "--out", str(out)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "unknown profile 'fast'" in err[0], err
    assert "smoke" in err[0] and "paper" in err[0]  # the choices
    assert captured.out == ""  # no notebook started
    assert not out.exists() and not (tmp_path / "figures").exists()
    assert main(["--profile", "quick", "--notebooks", str(tmp_path / "absent")]) == 2
    assert "absent" in capsys.readouterr().err


def test_make_reproduce_with_a_bogus_profile_is_one_line(tmp_path):
    """What `make reproduce PROFILE=bogus` runs, as a process: exit 2, one line, no traceback."""
    done = subprocess.run(
        [sys.executable, "-m", "gmaiou.paper.reproduce", "--profile", "bogus"],
        capture_output=True,
        text=True,
        env={**os.environ, "GMAIOU_FIGURES": str(tmp_path / "figures")},
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "python -m gmaiou.paper.reproduce: error: unknown profile 'bogus'; "
        "choose one of smoke, quick, default, paper"
    ]
    assert done.stdout == ""
