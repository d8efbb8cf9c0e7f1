"""The library's module graph: no import of ``gmaiou.paper``, no cycle, and imports only downwards.

The nodes are the library's top-level modules and subpackages (``gmaiou.measure`` is one
node, whatever its files); ``gmaiou`` itself is the package's ``__init__``. The edges are
read from the source with :mod:`ast`: ``import`` and ``from ... import`` statements anywhere
in a file (inside functions too, relative ones resolved) and string constants that name a
library module (``importlib.import_module`` names, such as :data:`gmaiou.cli.COMMANDS`).

The layers, lowest first (:data:`LAYERS`); a module may import only from its own layer or
lower ones:

0. ``_validation``, ``paths``, ``shapes``, ``devices``: input checks, folders, mask shapes,
   the device choice;
1. ``anchors``: anchor grids;
2. ``measure``: the overlap measures (IoU ... GmaIoU);
3. ``gmaiou`` (the package's public names), ``assigners``, ``losses``;
4. ``torchvision``: the measures inside torchvision's detectors;
5. ``data``: datasets, transforms, loaders, statistics;
6. ``configs``, ``runs``: the presets; the run directory's files;
7. ``models``: YOLACT and GmaYOLACT;
8. ``evaluation``: COCO AP, oLRP, ``gmaiou eval``;
9. ``training``: the loop, ``gmaiou train`` (it evaluates at the end);
10. ``export``: ONNX;
11. ``cli``, then 12. ``__main__``: the ``gmaiou`` command.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import gmaiou

PACKAGE = Path(gmaiou.__file__).resolve().parent

#: The library's layers, lowest first; each module may import from its own layer or lower ones.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("gmaiou._validation", "gmaiou.paths", "gmaiou.shapes", "gmaiou.devices"),
    ("gmaiou.anchors",),
    ("gmaiou.measure",),
    ("gmaiou", "gmaiou.assigners", "gmaiou.losses"),
    ("gmaiou.torchvision",),
    ("gmaiou.data",),
    ("gmaiou.configs", "gmaiou.runs"),
    ("gmaiou.models",),
    ("gmaiou.evaluation",),
    ("gmaiou.training",),
    ("gmaiou.export",),
    ("gmaiou.cli",),
    ("gmaiou.__main__",),
)

_MODULE_NAME = re.compile(r"gmaiou(\.\w+)+")
_PAPER = re.compile(r"\bgmaiou\.paper\b")


@dataclass(frozen=True)
class Import:
    """One import of a library module: ``source`` (a node) imports ``target`` (a module name)."""

    file: str  # relative to the repository root
    line: int
    statement: str
    source: str
    target: str

    def __str__(self) -> str:
        return (
            f"{self.file}:{self.line}: {self.statement} ({self.source} -> {node_of(self.target)})"
        )


def library_files() -> list[Path]:
    """Every ``.py`` file of the package outside ``gmaiou/paper``."""
    return sorted(p for p in PACKAGE.rglob("*.py") if p.relative_to(PACKAGE).parts[0] != "paper")


def module_of(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def node_of(module: str) -> str:
    """The top-level node of ``module``: ``gmaiou``, ``gmaiou.X`` for ``gmaiou.X[.Y...]``."""
    return ".".join(module.split(".")[:2])


def is_module(name: str) -> bool:
    """Whether ``name`` is a module or package of this package (on disk)."""
    rel = Path(*name.split(".")[1:]) if "." in name else Path()
    return (PACKAGE / rel).with_suffix(".py").is_file() or (PACKAGE / rel / "__init__.py").is_file()


def _docstrings(tree: ast.Module) -> set[int]:
    """``id`` of every docstring constant (module, class, function), which names are allowed in."""
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def imports_of(path: Path) -> list[Import]:
    """The library modules ``path`` imports: statements (anywhere) and module-name strings."""
    module = module_of(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    source = node_of(module)
    file = str(path.relative_to(PACKAGE.parent))
    text = path.read_text()
    tree = ast.parse(text, filename=file)
    docstrings = _docstrings(tree)
    found: list[Import] = []

    def add(node: ast.AST, target: str) -> None:
        if target == "gmaiou" or target.startswith("gmaiou."):
            statement = " ".join((ast.get_source_segment(text, node) or target).split())
            found.append(Import(file, node.lineno, statement, source, target))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(node, alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                base_name = ".".join(base + ([node.module] if node.module else []))
            else:
                base_name = node.module or ""
            for alias in node.names:
                # ``from gmaiou import data`` imports the subpackage; ``from gmaiou import x``
                # a name of the package's __init__.
                sub = f"{base_name}.{alias.name}"
                add(node, sub if is_module(sub) else base_name)
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
        ):
            if _MODULE_NAME.fullmatch(node.value) and is_module(node.value):
                add(node, node.value)
            elif _PAPER.search(node.value):
                add(node, "gmaiou.paper")
    return found


def all_imports() -> list[Import]:
    return [imp for path in library_files() for imp in imports_of(path)]


def cross_edges(imports: list[Import]) -> dict[tuple[str, str], list[Import]]:
    """Imports between different nodes, grouped by ``(source, target)`` node."""
    edges: dict[tuple[str, str], list[Import]] = {}
    for imp in imports:
        target = node_of(imp.target)
        if target != imp.source:
            edges.setdefault((imp.source, target), []).append(imp)
    return edges


def find_cycle(edges: set[tuple[str, str]]) -> list[str] | None:
    """One cycle of the directed graph ``edges`` as ``[a, b, ..., a]``, or ``None``."""
    graph: dict[str, list[str]] = {}
    for a, b in sorted(edges):
        graph.setdefault(a, []).append(b)
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in graph.get(node, []):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start)
            if cycle:
                return cycle
    return None


# ----------------------------------------------------------------------------- the rules


def test_the_reader_sees_every_kind_of_import(tmp_path, monkeypatch):
    monkeypatch.setitem(globals(), "PACKAGE", tmp_path / "gmaiou")
    pkg = tmp_path / "gmaiou"
    (pkg / "sub").mkdir(parents=True)
    for name in ("__init__.py", "a.py", "b.py", "c.py", "sub/__init__.py", "sub/d.py"):
        (pkg / name).write_text("")
    (pkg / "sub" / "d.py").write_text(
        '"""gmaiou.paper in a docstring is allowed."""\n'
        "import gmaiou.a\n"
        "from gmaiou import b, __version__\n"
        "from .. import c\n"
        "from . import d\n"
        "def f():\n"
        "    from gmaiou.paper.x import y\n"
        "NAMES = ('gmaiou.a', 'gmaiou.nothing', 'see gmaiou.paper')\n"
    )
    found = [(imp.line, imp.source, imp.target) for imp in imports_of(pkg / "sub" / "d.py")]
    assert sorted(found) == [
        (2, "gmaiou.sub", "gmaiou.a"),
        (3, "gmaiou.sub", "gmaiou"),
        (3, "gmaiou.sub", "gmaiou.b"),
        (4, "gmaiou.sub", "gmaiou.c"),
        (5, "gmaiou.sub", "gmaiou.sub.d"),
        (7, "gmaiou.sub", "gmaiou.paper.x"),
        (8, "gmaiou.sub", "gmaiou.a"),
        (8, "gmaiou.sub", "gmaiou.paper"),
    ]


def test_find_cycle_names_the_cycle():
    assert find_cycle({("a", "b"), ("b", "c")}) is None
    assert find_cycle({("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")}) == ["a", "b", "c", "a"]


def test_the_cli_commands_are_read_as_imports():
    from gmaiou.cli import COMMANDS

    read = {imp.target for imp in imports_of(PACKAGE / "cli.py")}
    assert set(COMMANDS) <= read


def test_the_library_never_imports_the_paper_layer():
    offending = [str(imp) for imp in all_imports() if node_of(imp.target) == "gmaiou.paper"]
    assert not offending, "the library imports gmaiou.paper:\n" + "\n".join(offending)


def test_the_library_graph_has_no_cycle():
    edges = cross_edges(all_imports())
    cycle = find_cycle(set(edges))
    if cycle is not None:
        sites = [str(edges[a, b][0]) for a, b in zip(cycle, cycle[1:])]
        raise AssertionError(f"import cycle {' -> '.join(cycle)}:\n" + "\n".join(sites))


def test_every_library_module_has_a_layer():
    layered = [name for layer in LAYERS for name in layer]
    assert len(layered) == len(set(layered)), "a module is listed in two layers"
    nodes = {node_of(module_of(p)) for p in library_files()}
    assert sorted(nodes - set(layered)) == [], "add these modules to LAYERS"
    assert sorted(set(layered) - nodes) == [], "these LAYERS entries name no module"


def test_imports_go_only_to_the_same_or_a_lower_layer():
    level = {name: i for i, layer in enumerate(LAYERS) for name in layer}
    upward = [
        f"{imp} imports layer {level[target]} from layer {level[source]}"
        for (source, target), sites in sorted(cross_edges(all_imports()).items())
        if source in level and target in level and level[target] > level[source]
        for imp in sites
    ]
    assert not upward, "imports against the layer order:\n" + "\n".join(upward)
