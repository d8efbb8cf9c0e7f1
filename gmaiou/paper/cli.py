"""The ``gmaiou-paper`` command line (also ``python -m gmaiou.paper``): the paper's
experiment grids and speed benchmarks, beside the library's ``gmaiou`` command.

    gmaiou-paper experiment --grid table2 --profile default
    gmaiou-paper bench assign --profile smoke
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from gmaiou import __version__
from gmaiou.cli import register_all, run_command

__all__ = ["BENCHMARKS", "COMMANDS", "build_parser", "main"]

#: Modules of the top-level subcommands, in the order of ``--help``.
COMMANDS: tuple[str, ...] = ("gmaiou.paper.experiments.cli", "gmaiou.paper.experiments.tvcli")

#: Modules of the ``gmaiou-paper bench <name>`` benchmarks.
BENCHMARKS: tuple[str, ...] = (
    "gmaiou.paper.benchmarks.assign",
    "gmaiou.paper.benchmarks.carafe",
    "gmaiou.paper.benchmarks.data",
    "gmaiou.paper.benchmarks.gpu",
    "gmaiou.paper.benchmarks.infer",
    "gmaiou.paper.benchmarks.rsloss",
    "gmaiou.paper.benchmarks.train",
    "gmaiou.paper.benchmarks.tvmatch",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gmaiou-paper",
        description="The paper's experiment grids and side-by-side speed benchmarks.",
    )
    parser.add_argument("--version", action="version", version=f"gmaiou {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    bench = sub.add_parser(
        "bench", help="side-by-side speed benchmarks", description="Speed benchmarks."
    )
    bench_sub = bench.add_subparsers(dest="benchmark", metavar="BENCHMARK")
    bench_sub.required = True
    register_all(bench_sub, BENCHMARKS)
    register_all(sub, COMMANDS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
