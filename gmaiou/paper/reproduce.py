"""Run every notebook through papermill on one profile and record how long each took.

``make reproduce [PROFILE=quick]`` calls ``python -m gmaiou.paper.reproduce --profile P``. Each
notebook in ``notebooks/`` whose name starts with a digit runs in order, with the papermill
parameter ``profile``, its executed copy written to ``build/notebooks/``. The wall time of
each, and the total, go to ``timings/reproduce_times_<profile>.md`` in the profile's figures
folder, with the machine, the torch thread setting and whether runs were retrained
(``GMAIOU_FORCE``) or only re-plotted (``GMAIOU_RECORDED_ONLY``), so that a profile's time
budget is a measured, committed number.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from gmaiou.paper.paths import repo_root

__all__ = ["find_notebooks", "format_times", "main", "run_notebooks"]

#: Seconds a profile's whole ``make reproduce`` may take, where it has a budget: ``quick`` is
#: the minutes-long preview (``default``'s training is budgeted per grid, in its records).
BUDGETS: dict[str, float] = {"quick": 20 * 60.0}


def find_notebooks(folder: Path) -> list[Path]:
    """The notebooks to run, in order: ``<folder>/[0-9]*.ipynb`` sorted by name."""
    if not folder.is_dir():
        raise FileNotFoundError(f"no notebook folder {folder}")
    found = sorted(folder.glob("[0-9]*.ipynb"))
    if not found:
        raise FileNotFoundError(f"no notebook named [0-9]*.ipynb in {folder}")
    return found


def _papermill(notebook: Path, out: Path, profile: str) -> None:
    import papermill

    papermill.execute_notebook(
        str(notebook),
        str(out),
        parameters={"profile": profile},
        kernel_name="python3",
        cwd=str(notebook.parent),
    )


def run_notebooks(
    notebooks: Sequence[Path],
    profile: str,
    out_dir: Path,
    execute: Callable[[Path, Path, str], None] = _papermill,
) -> list[tuple[str, float]]:
    """Execute each notebook (``execute(notebook, out, profile)``); ``(name, seconds)`` each.

    Stops at the first notebook that fails (papermill's error names the cell), after
    writing nothing: a partial time is not a profile's time.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    times = []
    for notebook in notebooks:
        print(f"== {notebook.name} (profile={profile})", flush=True)
        start = time.perf_counter()
        execute(notebook, out_dir / notebook.name, profile)
        times.append((notebook.name, time.perf_counter() - start))
        print(f"   {times[-1][1]:.0f} s", flush=True)
    return times


def _conditions() -> str:
    flags = {
        "GMAIOU_FORCE": "every run retrained (FORCE)",
        "GMAIOU_RECORDED_ONLY": "recorded runs only, nothing trained (RECORDED)",
    }
    mode = [text for var, text in flags.items() if os.environ.get(var)] or [
        "runs without a record trained, the others re-plotted"
    ]
    threads = os.environ.get("OMP_NUM_THREADS", "unset (torch's default)")
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"OMP_NUM_THREADS {threads}; {'; '.join(mode)}"
    )


def format_times(times: Sequence[tuple[str, float]], profile: str) -> str:
    """A Markdown table of each notebook's minutes and the total, against the profile's budget."""
    total = sum(s for _, s in times)
    lines = ["| notebook | minutes |", "|---|---:|"]
    lines += [f"| {name} | {seconds / 60:.1f} |" for name, seconds in times]
    lines.append(f"| **all notebooks** | **{total / 60:.1f}** |")
    budget = BUDGETS.get(profile)
    if budget is not None:
        verdict = "within" if total <= budget else "over"
        lines.append("")
        lines.append(
            f"`make reproduce PROFILE={profile}`: {total / 60:.1f} min of notebooks, {verdict} "
            f"its budget of {budget / 60:.0f} min (creating the virtual environment is not "
            "counted)."
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gmaiou.paper.reproduce", description=__doc__)
    parser.add_argument(
        "--profile", default="default", help="papermill parameter (default: %(default)s)"
    )
    parser.add_argument("--notebooks", type=Path, default=None, help="folder (default: notebooks/)")
    parser.add_argument(
        "--out", type=Path, default=None, help="executed copies (default: build/notebooks/)"
    )
    args = parser.parse_args(argv)
    from gmaiou.paper.figures import save_table
    from gmaiou.paper.profiles import get_profile

    root = repo_root()
    try:
        # An unknown profile or a missing folder fails here, in one line, before any notebook.
        get_profile(args.profile)
        notebooks = find_notebooks(args.notebooks or root / "notebooks")
    except (ValueError, FileNotFoundError) as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
    times = run_notebooks(notebooks, args.profile, args.out or root / "build" / "notebooks")
    path = save_table(
        format_times(times, args.profile),
        f"timings/reproduce_times_{args.profile}",
        args.profile,
        source=_conditions(),
    )
    print(f"figures written; times in {path}")
    from gmaiou.paper.glance import write_glance

    print(
        f"results at a glance: {write_glance(args.profile)} (make readme copies it into README.md)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
