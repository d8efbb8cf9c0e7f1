"""Experiments: grids of training runs with paired seeds, their records, and the statistics of
Tables 2 and 3.

* :mod:`gmaiou.paper.experiments.runner`: :class:`RunSpec`, :func:`run_one`, :func:`run_grid`, records
  (:func:`grid_records`, :func:`load_grid`, :func:`load_records`) and :func:`spec_from_record`.
* :mod:`gmaiou.paper.experiments.records`: which records a table uses (:func:`is_dirty`,
  :class:`GridRecords`): those trained from a clean checkout.
* :mod:`gmaiou.paper.experiments.grids`: the grids of each profile (``table2``, ``table3``, ``curve``,
  ``recipe-search``) and Table 3's steps.
* :mod:`gmaiou.paper.experiments.stats`: mean ± std tables and paired differences with confidence intervals.
* :mod:`gmaiou.paper.experiments.table2`, :mod:`gmaiou.paper.experiments.table3`: the reports of Tables 2 and 3.
"""

from gmaiou.paper.experiments.grids import GRIDS, get_grid
from gmaiou.paper.experiments.records import GridRecords, is_dirty
from gmaiou.paper.experiments.runner import (
    RunSpec,
    SyntheticData,
    grid_records,
    load_grid,
    load_records,
    run_grid,
    run_one,
    spec_from_record,
)

__all__ = [
    "GRIDS",
    "GridRecords",
    "RunSpec",
    "SyntheticData",
    "get_grid",
    "grid_records",
    "is_dirty",
    "load_grid",
    "load_records",
    "run_grid",
    "run_one",
    "spec_from_record",
]
