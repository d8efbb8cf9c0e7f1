"""Which run records a table uses: those trained from a clean checkout.

A record is *dirty* (:func:`is_dirty`) when its run trained from a checkout with uncommitted
changes: its ``commit`` ends in ``-dirty`` (records written before the ``dirty`` flag) or it
says ``"dirty": true`` (``gmaiou-paper experiment --allow-dirty``). Its numbers come from code
that no commit holds, so the tables and figures of the committed profiles leave it out
(:func:`split_dirty`; :func:`gmaiou.paper.experiments.runner.load_grid` and
:func:`~gmaiou.paper.experiments.runner.grid_records` load through it) and their footers say
which records were left out (:func:`gmaiou.paper.experiments.stats.dirty_note`).
``gmaiou-paper experiment --redo-dirty`` retrains exactly those runs.

Nothing here reads files or imports torch: the functions take records (dicts) and return records.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DIRTY_REASON", "DIRTY_SUFFIX", "GridRecords", "is_dirty", "split_dirty"]

#: How a commit hash written from a checkout with uncommitted changes ends (record version 1).
DIRTY_SUFFIX = "-dirty"
#: Why a dirty record is left out, in the words of the footers.
DIRTY_REASON = "trained from a checkout with uncommitted changes"


def is_dirty(record: Mapping[str, Any]) -> bool:
    """Whether ``record``'s run trained from a checkout with uncommitted changes: its
    ``commit`` ends in ``-dirty`` or it has ``"dirty": true``. A record with neither (a clean
    commit, or no provenance at all) is clean."""
    return str(record.get("commit") or "").endswith(DIRTY_SUFFIX) or record.get("dirty") is True


@dataclass(frozen=True)
class GridRecords:
    """A grid's records as a table uses them.

    Attributes:
        grid: the grid's name (``""`` when the records span none or several).
        used: the records the table uses, in the order given.
        left_out: the dirty records left out (:func:`is_dirty`), in the order given; empty
            when dirty records were kept (``include_dirty``).
    """

    grid: str
    used: list[dict[str, Any]] = field(default_factory=list)
    left_out: list[dict[str, Any]] = field(default_factory=list)

    @property
    def total(self) -> int:
        """Every record found: used and left out."""
        return len(self.used) + len(self.left_out)


def split_dirty(
    records: Iterable[Mapping[str, Any]], grid: str = "", include_dirty: bool = False
) -> GridRecords:
    """``records`` split into the ones a table uses and the dirty ones it leaves out.

    With ``include_dirty`` every record is used and none is left out. Orders are kept; dicts
    are not copied (other mappings become dicts).
    """
    records = [r if isinstance(r, dict) else dict(r) for r in records]
    if include_dirty:
        return GridRecords(grid, records)
    used = [r for r in records if not is_dirty(r)]
    return GridRecords(grid, used, [r for r in records if is_dirty(r)])
