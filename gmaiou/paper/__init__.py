"""gmaiou.paper: what regenerates the paper's figures and tables from the library.

Benchmarks, experiment grids, analysis and figure writers, the cited state of the art, the
fidelity tables, the README include tool and ``reproduce``. The library (``gmaiou``) never
imports this package; it needs the ``paper`` extra: ``pip install "gmaiou[paper]"``.
"""

from __future__ import annotations

import importlib.util

#: Packages of the ``paper`` extra that this layer imports.
PAPER_EXTRA: tuple[str, ...] = ("matplotlib", "pandas", "seaborn", "tabulate", "papermill")

_missing = [name for name in PAPER_EXTRA if importlib.util.find_spec(name) is None]
if _missing:
    raise ImportError(
        f"gmaiou.paper needs the 'paper' extra (missing: {', '.join(_missing)}); "
        "install it with: pip install 'gmaiou[paper]'"
    )
