"""Keep the README's numbers the committed figures' numbers: fill its include regions.

A region in ``README.md`` is::

    <!-- include figures/table4_efficiency.md -->
    ... (the file's text, written by this module) ...
    <!-- end -->

``python -m gmaiou.paper.readme`` (or ``make readme``) rewrites every region with the current
text of the file it names (a path relative to the README's folder);
``python -m gmaiou.paper.readme --check`` only reports the regions that differ and exits 1
if any does (the test suite runs the same check). Add a region anywhere to include
another generated table.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from gmaiou.paper.paths import repo_root

__all__ = ["INCLUDE", "fill_includes", "main", "stale_includes"]

#: One include region: the opening marker (with the path), the body, the closing marker.
INCLUDE = re.compile(
    r"(?P<open><!-- include (?P<path>[^\s>]+) -->\n)(?P<body>.*?)(?P<close><!-- end -->)",
    re.DOTALL,
)


def _included_text(base: Path, rel: str) -> str:
    path = base / rel
    if not path.is_file():
        raise FileNotFoundError(f"README includes {rel}, which does not exist ({path})")
    text = path.read_text()
    return text if text.endswith("\n") else text + "\n"


def _check_markers(text: str) -> None:
    opened = len(re.findall(r"<!-- include ", text))
    found = len(INCLUDE.findall(text))
    if opened != found:
        raise ValueError(
            f"{opened - found} README include marker(s) have no '<!-- end -->' or a malformed path"
        )


def fill_includes(text: str, base: Path) -> str:
    """``text`` with every include region's body replaced by the file it names.

    Raises:
        FileNotFoundError: a region names a missing file.
        ValueError: an ``<!-- include`` marker without its ``<!-- end -->``.
    """
    _check_markers(text)
    return INCLUDE.sub(
        lambda m: m["open"] + _included_text(base, m["path"]) + m["close"],
        text,
    )


def stale_includes(readme: Path) -> list[str]:
    """The paths whose README region differs from the file's current text."""
    text = readme.read_text()
    _check_markers(text)
    return [
        m["path"]
        for m in INCLUDE.finditer(text)
        if m["body"] != _included_text(readme.parent, m["path"])
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gmaiou.paper.readme",
        description="Fill the README's <!-- include PATH --> ... <!-- end --> regions.",
    )
    parser.add_argument(
        "--readme", type=Path, default=repo_root() / "README.md", help="default: README.md"
    )
    parser.add_argument(
        "--check", action="store_true", help="only report stale regions (exit 1 if any)"
    )
    args = parser.parse_args(argv)
    try:
        if args.check:
            stale = stale_includes(args.readme)
            for path in stale:
                print(f"{args.readme}: the region of {path} is out of date", file=sys.stderr)
            if stale:
                print(
                    "run `python -m gmaiou.paper.readme` (make readme) to refresh it",
                    file=sys.stderr,
                )
            return 1 if stale else 0
        text = args.readme.read_text()
        filled = fill_includes(text, args.readme.parent)
        if filled != text:
            args.readme.write_text(filled)
        print(f"{args.readme}: {len(INCLUDE.findall(filled))} include region(s) up to date")
    except (FileNotFoundError, ValueError) as err:
        print(f"gmaiou.paper.readme: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
