"""Experiments: grids of training runs with paired seeds, their records, and the statistics of Table 2.

* :mod:`gmaiou.experiments.runner`: :class:`RunSpec`, :func:`run_one`, :func:`run_grid`, records.
* :mod:`gmaiou.experiments.grids`: the grids of each profile (``table2``, ``curve``, ``recipe-search``).
* :mod:`gmaiou.experiments.stats`: mean ± std tables and paired differences with confidence intervals.
"""

from gmaiou.experiments.grids import GRIDS, get_grid
from gmaiou.experiments.runner import RunSpec, SyntheticData, load_records, run_grid, run_one

__all__ = ["GRIDS", "RunSpec", "SyntheticData", "get_grid", "load_records", "run_grid", "run_one"]
