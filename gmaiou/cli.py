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

__all__ = ["COMMANDS", "build_parser", "main", "register_all", "run_command"]

#: Modules of the subcommands, in the order of ``--help``.
COMMANDS: tuple[str, ...] = (
    "gmaiou.data.cli",
    "gmaiou.training.cli",
    "gmaiou.evaluation.cli",
    "gmaiou.configs",
    "gmaiou.export",
)


def register_all(subparsers: argparse._SubParsersAction, modules: Sequence[str]) -> None:
    """Call ``register(subparsers)`` of each named module, in order."""
    for name in modules:
        importlib.import_module(name).register(subparsers)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gmaiou",
        description="Generalized Mask-aware IoU: data, training, evaluation and export.",
    )
    from gmaiou import __version__

    parser.add_argument("--version", action="version", version=f"gmaiou {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    register_all(sub, COMMANDS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser(), argv)


def run_command(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` with ``parser`` and run the chosen subcommand's ``func``.

    Expected user errors end in one line naming the problem (``GMAIOU_DEBUG=1`` shows the
    traceback), a missing optional package among them (``gmaiou export`` without the ``onnx``
    extra); a closed output pipe (``gmaiou configs | head``) ends quietly.
    """
    try:
        args = parser.parse_args(argv)
    except SystemExit:
        _flush_stdout()  # --help and --version into a closed pipe end quietly too
        raise
    try:
        status = int(args.func(args) or 0)
        # A buffered stdout meets a closed pipe here rather than in Python's exit flush.
        sys.stdout.flush()
        return status
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        _discard_stdout()
        return 0
    except (
        FileNotFoundError,
        FileExistsError,
        IsADirectoryError,
        ModuleNotFoundError,
        NotADirectoryError,
        PermissionError,
        ValueError,
    ) as err:
        if os.environ.get("GMAIOU_DEBUG"):
            raise
        print(f"{parser.prog} {args.command}: error: {err}", file=sys.stderr)
        return 2


def _flush_stdout() -> None:
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _discard_stdout()


def _discard_stdout() -> None:
    """The reader stopped early: send what is left to devnull, so that Python's exit flush
    does not raise a second time."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


if __name__ == "__main__":
    sys.exit(main())
