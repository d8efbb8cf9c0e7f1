"""Keep the numbers of the README and of docs/ the committed figures' numbers: fill include regions.

A region in a Markdown file is::

    <!-- include figures/table2_assigners_findings.md -->
    ... (the named file's text, written by this module) ...
    <!-- end -->

The path is relative to the Markdown file's own folder, as a Markdown link is
(``../figures/x.md`` in ``docs/``); a path that does not exist there is looked up from the
repository root (``figures/x.md`` works in ``docs/`` too).

A relative link in an included file is rewritten to name the same file from the Markdown
file that includes it (:func:`rebase_links`).

``python -m gmaiou.paper.readme`` (or ``make readme``) first writes the results-at-a-glance
table (:func:`gmaiou.paper.glance.write_glance`), then rewrites every region of
``README.md`` and of every Markdown file under ``docs/`` that has one, each with the
current text of the file it names; ``python -m gmaiou.paper.readme --check`` only reports
the regions that differ and exits 1 if any does (``tests/paper/test_readme.py`` runs the
same check). Name files to handle only those. Add a region anywhere to include another
generated table.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from gmaiou.paper.paths import repo_root

__all__ = [
    "INCLUDE",
    "fill_includes",
    "included_path",
    "include_targets",
    "main",
    "rebase_links",
    "stale_includes",
]

#: One include region: the opening marker (with the path), the body, the closing marker.
INCLUDE = re.compile(
    r"(?P<open><!-- include (?P<path>[^\s>]+) -->\n)(?P<body>.*?)(?P<close><!-- end -->)",
    re.DOTALL,
)


def included_path(base: Path, rel: str, root: Path | None = None) -> Path:
    """The file a region names: ``base / rel``, else ``root / rel`` (``root``: the repository).

    Raises:
        FileNotFoundError: neither exists.
    """
    root = repo_root() if root is None else root
    for folder in dict.fromkeys((base, root)):
        path = folder / rel
        if path.is_file():
            return path
    raise FileNotFoundError(f"an include region names {rel}, which does not exist ({base / rel})")


#: A Markdown link's target: ``[text](target)`` or ``![alt](target)``.
LINK = re.compile(r"(?P<head>!?\[[^\]]*\]\()(?P<target>[^)\s]+)\)")


def rebase_links(text: str, source: Path, base: Path) -> str:
    """``text`` of a file in folder ``source`` with its relative links rewritten for a file in
    ``base``, so that a link keeps naming the same file once the text is included there.
    Web links, anchors and absolute paths are kept."""

    def rebase(m: re.Match) -> str:
        target = m["target"]
        if re.match(r"[a-z][a-z0-9+.-]*:|#|/", target):
            return m.group(0)
        moved = os.path.relpath(os.path.normpath(source / target), base)
        return f"{m['head']}{Path(moved).as_posix()})"

    return LINK.sub(rebase, text)


def _included_text(base: Path, rel: str, root: Path | None = None) -> str:
    path = included_path(base, rel, root)
    text = rebase_links(path.read_text(), path.parent, base)
    return text if text.endswith("\n") else text + "\n"


def _check_markers(text: str) -> None:
    opened = len(re.findall(r"<!-- include ", text))
    found = len(INCLUDE.findall(text))
    if opened != found:
        raise ValueError(
            f"{opened - found} include marker(s) have no '<!-- end -->' or a malformed path"
        )


def fill_includes(text: str, base: Path, root: Path | None = None) -> str:
    """``text`` with every include region's body replaced by the file it names.

    Args:
        text: a Markdown file's text.
        base: the folder the paths are relative to (the Markdown file's own).
        root: where a path is looked up when ``base`` lacks it (default: the repository).

    Raises:
        FileNotFoundError: a region names a missing file.
        ValueError: an ``<!-- include`` marker without its ``<!-- end -->``.
    """
    _check_markers(text)
    return INCLUDE.sub(
        lambda m: m["open"] + _included_text(base, m["path"], root) + m["close"],
        text,
    )


def stale_includes(markdown: Path, root: Path | None = None) -> list[str]:
    """The paths whose region in ``markdown`` differs from the file's current text."""
    text = markdown.read_text()
    _check_markers(text)
    return [
        m["path"]
        for m in INCLUDE.finditer(text)
        if m["body"] != _included_text(markdown.parent, m["path"], root)
    ]


def include_targets(root: Path | None = None) -> list[Path]:
    """The files the tool keeps: ``README.md`` and every ``docs/**/*.md`` with a region."""
    root = repo_root() if root is None else root
    docs = sorted((root / "docs").rglob("*.md")) if (root / "docs").is_dir() else []
    readme = root / "README.md"
    return [readme] * readme.is_file() + [p for p in docs if INCLUDE.search(p.read_text())]


def _refresh(paths: Iterable[Path], check: bool, root: Path | None) -> int:
    stale_any = False
    for path in paths:
        if check:
            stale = stale_includes(path, root)
            for rel in stale:
                print(f"{path}: the region of {rel} is out of date", file=sys.stderr)
            stale_any |= bool(stale)
            continue
        text = path.read_text()
        filled = fill_includes(text, path.parent, root)
        if filled != text:
            path.write_text(filled)
        print(f"{path}: {len(INCLUDE.findall(filled))} include region(s) up to date")
    if stale_any:
        print("run `python -m gmaiou.paper.readme` (make readme) to refresh them", file=sys.stderr)
    return 1 if stale_any else 0


def _glance(check: bool) -> int:
    """Write figures/results_at_a_glance.md (:mod:`gmaiou.paper.glance`); with ``check``, only
    say whether it is out of date (1) or not (0)."""
    from gmaiou.paper.glance import GLANCE, glance_text, write_glance
    from gmaiou.paper.paths import figures_dir

    if not check:
        print(f"{write_glance('default')}: the headlines of the findings files")
        return 0
    path = figures_dir("default") / GLANCE
    if not path.is_file() or path.read_text() != glance_text("default"):
        print(f"{path}: out of date with the findings' headlines", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gmaiou.paper.readme",
        description="Fill the <!-- include PATH --> ... <!-- end --> regions of the README and docs/.",
    )
    parser.add_argument(
        "files",
        nargs="*",
        type=Path,
        help="Markdown files (default: README.md and every docs/*.md with a region)",
    )
    parser.add_argument(
        "--check", action="store_true", help="only report stale regions (exit 1 if any)"
    )
    args = parser.parse_args(argv)
    try:
        stale_glance = _glance(args.check)
        return max(_refresh(args.files or include_targets(), args.check, None), stale_glance)
    except (FileNotFoundError, ValueError) as err:
        print(f"gmaiou.paper.readme: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
