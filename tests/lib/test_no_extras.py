"""The library without the optional extras: every module imports, ``gmaiou train``, ``eval``
and ``export`` run or say in one line which extra they need, and ``gmaiou.paper`` names its extra.

A child interpreter replaces its import finders (``sys.meta_path``) with one that does not
see the packages of the ``paper``, ``onnx`` and ``dev`` extras: importing them raises
``ModuleNotFoundError`` and ``importlib.util.find_spec`` finds nothing, as where they are not
installed (a finder that raised from ``find_spec`` would also break torch, which probes for
optional packages with it). The child reports what it saw as one JSON object on its last
line of output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gmaiou.data.synthetic import ensure_synthetic

#: Top-level packages of the paper, onnx and dev extras.
BLOCKED: tuple[str, ...] = (
    "matplotlib",
    "seaborn",
    "pandas",
    "papermill",
    "ipykernel",
    "tabulate",
    "onnx",
    "onnxruntime",
    "jupyterlab",
    "nbval",
)

CHILD = r"""
import contextlib
import importlib
import importlib.abc
import io
import json
import pkgutil
import sys

BLOCKED = frozenset(sys.argv[1].split(","))
DATA, RUN = sys.argv[2], sys.argv[3]


# The interpreter's finders, blind to the extras: importlib.util.find_spec gives None for
# them and import raises ModuleNotFoundError, as where they are absent.
class WithoutExtras(importlib.abc.MetaPathFinder):
    def __init__(self, finders):
        self.finders = finders

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            return None
        for finder in self.finders:
            spec = finder.find_spec(name, path, target) if hasattr(finder, "find_spec") else None
            if spec is not None:
                return spec
        return None

    def invalidate_caches(self):
        for finder in self.finders:
            if hasattr(finder, "invalidate_caches"):
                finder.invalidate_caches()


for name in [name for name in sys.modules if name.partition(".")[0] in BLOCKED]:
    del sys.modules[name]
sys.meta_path[:] = [WithoutExtras(list(sys.meta_path))]

import gmaiou
from gmaiou.cli import main

modules = []
for info in pkgutil.walk_packages(gmaiou.__path__, "gmaiou."):
    if info.name.startswith("gmaiou.paper") or info.name == "gmaiou.__main__":
        continue
    importlib.import_module(info.name)
    modules.append(info.name)


def command(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return {"code": code, "stdout": out.getvalue(), "stderr": err.getvalue()}


report = {"modules": modules}
report["train"] = command(
    "train", "--config", "yolact-atss-gmaiou-r18-160", "--data", DATA, "--out", RUN,
    "--epochs", "1", "--batch-size", "2", "--max-iters", "1", "--workers", "0",
    "--no-progress",
)
report["eval"] = command("eval", "--run", RUN, "--batch-size", "2", "--no-progress")
report["export"] = command("export", "--run", RUN, "--onnx", RUN + "/model.onnx")
try:
    import gmaiou.paper
except ImportError as err:
    report["paper"] = f"{type(err).__name__}: {err}"
else:
    report["paper"] = "imported"
report["loaded"] = sorted(
    name for name in sys.modules if name.partition(".")[0] in BLOCKED and sys.modules[name]
)
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    data = ensure_synthetic(num_images=10, size=160, progress=False)
    run = tmp_path_factory.mktemp("no_extras") / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("GMAIOU_DEBUG", None)
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, ",".join(BLOCKED), str(data), str(run)],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_every_library_module_imports_without_the_extras(report):
    modules = set(report["modules"])
    expected = {
        "gmaiou.cli",
        "gmaiou.configs",
        "gmaiou.data.stats",
        "gmaiou.evaluation.run",
        "gmaiou.export",
        "gmaiou.measure",
        "gmaiou.models.yolact",
        "gmaiou.runs",
        "gmaiou.training.trainer",
    }
    assert expected <= modules
    assert not any(name.startswith("gmaiou.paper") for name in modules)
    assert report["loaded"] == []


def test_train_and_eval_run_without_the_extras(report):
    train, evaluate = report["train"], report["eval"]
    assert (train["code"], evaluate["code"]) == (0, 0), (train["stderr"], evaluate["stderr"])
    assert "after 1 iterations" in train["stdout"]
    assert "detections written to" in evaluate["stdout"]
    assert [line.split(":")[0] for line in evaluate["stdout"].splitlines()[-2:]] == [
        "segm",
        "bbox",
    ]


def test_export_names_the_onnx_extra_in_one_line(report):
    export = report["export"]
    assert export["code"] == 2
    lines = export["stderr"].strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("gmaiou export: error: ONNX export needs the 'onnx' extra")
    assert "missing: onnx, onnxruntime" in lines[0]
    assert "pip install 'gmaiou[onnx]'" in lines[0]


def test_the_paper_layer_names_its_extra(report):
    assert report["paper"].startswith("ImportError: gmaiou.paper needs the 'paper' extra")
    assert "pip install 'gmaiou[paper]'" in report["paper"]
