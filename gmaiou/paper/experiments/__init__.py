"""Experiments: grids of training runs with paired seeds, their records, and the statistics of
Tables 2 and 3.

* :mod:`gmaiou.paper.experiments.runner`: :class:`RunSpec`, :func:`run_one`, :func:`run_grid`, records
  and :func:`spec_from_record`.
* :mod:`gmaiou.paper.experiments.grids`: the grids of each profile (``table2``, ``table3``, ``curve``,
  ``recipe-search``) and Table 3's steps.
* :mod:`gmaiou.paper.experiments.stats`: mean ± std tables and paired differences with confidence intervals.
* :mod:`gmaiou.paper.experiments.table2`, :mod:`gmaiou.paper.experiments.table3`: the reports of Tables 2 and 3.
"""

from gmaiou.paper.experiments.grids import GRIDS, get_grid
from gmaiou.paper.experiments.runner import (
    RunSpec,
    SyntheticData,
    load_records,
    run_grid,
    run_one,
    spec_from_record,
)

__all__ = [
    "GRIDS",
    "RunSpec",
    "SyntheticData",
    "get_grid",
    "load_records",
    "run_grid",
    "run_one",
    "spec_from_record",
]
