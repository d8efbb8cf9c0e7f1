"""The ``gmaiou`` command line (also ``python -m gmaiou``).

Each subcommand lives in the module that does its job and exposes
``register(subparsers)``, which adds its parser and sets ``func(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

__all__ = ["main", "build_parser"]

#: Top-level subcommands: (module, attribute). Order is the order of ``--help``.
COMMANDS: tuple[str, ...] = (
    "gmaiou.data.cli",
    "gmaiou.training.cli",
    "gmaiou.experiments.cli",
    "gmaiou.evaluation.cli",
    "gmaiou.configs",
    "gmaiou.export",
)

#: ``gmaiou bench <name>`` benchmarks.
BENCHMARKS: tuple[str, ...] = (
    "gmaiou.benchmarks.assign",
    "gmaiou.benchmarks.carafe",
    "gmaiou.benchmarks.data",
    "gmaiou.benchmarks.gpu",
    "gmaiou.benchmarks.infer",
    "gmaiou.benchmarks.train",
)


def _register_all(subparsers: argparse._SubParsersAction, modules: Sequence[str]) -> None:
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name and (
                name == err.name or name.startswith(err.name + ".")
            ):  # not in this checkout
                continue
            raise
        module.register(subparsers)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gmaiou",
        description="Generalized Mask-aware IoU: data, training, evaluation and benchmarks.",
    )
    from gmaiou import __version__

    parser.add_argument("--version", action="version", version=f"gmaiou {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    bench = sub.add_parser(
        "bench", help="side-by-side speed benchmarks", description="Speed benchmarks."
    )
    bench_sub = bench.add_subparsers(dest="benchmark", metavar="BENCHMARK")
    bench_sub.required = True
    _register_all(bench_sub, BENCHMARKS)
    _register_all(sub, COMMANDS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (
        FileNotFoundError,
        FileExistsError,
        IsADirectoryError,
        NotADirectoryError,
        PermissionError,
        ValueError,
    ) as err:
        # Expected user errors: one clear line, no traceback (GMAIOU_DEBUG=1 shows it).
        if os.environ.get("GMAIOU_DEBUG"):
            raise
        print(f"gmaiou {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
