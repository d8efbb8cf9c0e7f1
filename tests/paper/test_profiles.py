"""Profiles and the notebooks' parameter check: a misspelled or unknown papermill parameter
stops the notebook with one clear error instead of running the default profile."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from gmaiou.paper.profiles import PROFILES, check_parameters, get_profile

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
#: The notebooks whose parameters cell ends with the snapshot that check_parameters reads.
CHECKED = sorted(path.name for path in NOTEBOOKS.glob("*.ipynb"))


def _namespace(**injected):
    """A notebook's globals after its parameters cell (``known``) and papermill's injected cell."""
    ns = {"__name__": "__main__", "In": [""], "Out": {}, "profile": "smoke", "run_folders": []}
    known = set(ns)
    ns.update(injected)
    return ns, known


def test_get_profile_names_the_choices():
    assert get_profile("quick").name == "quick"
    with pytest.raises(ValueError, match="unknown profile 'fast'; choose one of smoke, quick"):
        get_profile("fast")


def test_check_parameters_accepts_the_declared_ones():
    for name in PROFILES:
        ns, known = _namespace(profile=name, run_folders=["/x"])
        check_parameters(ns, known=known)
    # What IPython and the checking cell add are not parameters.
    ns, known = _namespace(_i3="x", _4=1, check_parameters=check_parameters, math=math)
    check_parameters(ns, known=known)


def test_check_parameters_refuses_a_misspelled_parameter():
    ns, known = _namespace(profil="quick")
    with pytest.raises(ValueError) as err:
        check_parameters(ns, known=known)
    message = str(err.value)
    assert "'profil' (did you mean 'profile'?)" in message
    assert message.endswith("this notebook takes: profile, run_folders")
    ns, known = _namespace(seeds=3, device=None)
    with pytest.raises(ValueError, match="parameters 'device', 'seeds';"):
        check_parameters(ns, known=known)


def test_check_parameters_refuses_an_unknown_profile():
    ns, known = _namespace(profile="fast")
    with pytest.raises(ValueError, match="unknown profile 'fast'"):
        check_parameters(ns, known=known)


@pytest.mark.parametrize("name", CHECKED)
def test_notebook_checks_its_parameters_right_after_papermill_injects_them(name):
    cells = json.loads((NOTEBOOKS / name).read_text(encoding="utf-8"))["cells"]
    (index,) = [i for i, c in enumerate(cells) if "parameters" in c["metadata"].get("tags", [])]
    params = "".join(cells[index]["source"])
    assert params.rstrip().splitlines()[-1] == "declared_names = set(globals())"
    check = "".join(cells[index + 1]["source"])
    assert "check_parameters(globals(), known=declared_names)" in check
    assert all(not c.get("outputs") for c in cells if c["cell_type"] == "code")


def test_papermill_with_a_misspelled_parameter_stops_at_the_check(tmp_path):
    """``papermill -p profil quick``: the first cell after the injected one fails, naming it."""
    papermill = pytest.importorskip("papermill")
    with pytest.raises(papermill.PapermillExecutionError) as err:
        papermill.execute_notebook(
            str(NOTEBOOKS / "01_measure.ipynb"),
            str(tmp_path / "out.ipynb"),
            parameters={"profil": "quick"},
            kernel_name="python3",
            cwd=str(NOTEBOOKS),
            progress_bar=False,
        )
    assert err.value.ename == "ValueError"
    assert "'profil' (did you mean 'profile'?)" in err.value.evalue
    executed = json.loads((tmp_path / "out.ipynb").read_text())["cells"]
    ran = [c for c in executed if c["cell_type"] == "code" and c.get("execution_count")]
    # The parameters cell, papermill's cell, the check: nothing after it ran.
    assert [c["metadata"].get("tags", []) for c in ran[:2]] == [
        ["parameters"],
        ["injected-parameters"],
    ]
    assert len(ran) == 3 and "check_parameters" in "".join(ran[2]["source"])
