"""The import rules of cavmae_lite, read from the source with ``ast`` (every import at any depth: lazy ones inside
functions and ``if TYPE_CHECKING:`` blocks count). Each failure names the offending ``file:line``.

Floors: a module may import its own floor and the floors below, never one above. A sub-package's modules share
its floor, and imports inside one sub-package are free.

     0  config, runtime               5  train                 10  cli
     1  tokenizers, layers,           6  finetune              11  __main__ (``python -m cavmae_lite``)
        masking, losses               7  viz
     2  model                         8  zoo, ablation
     3  checkpoints, data,            9  tutorial
        the package's __init__ (its docstring: "importing the package loads torch and the model only")
     4  evaluate

The one written exception: model.py imports checkpoints lazily inside CAVMAE.from_official / from_pretrained /
save_pretrained. Besides the floors: no import circle between modules (lazy imports count; a package __init__
that re-exports its own children is not a circle), nothing outside cli/ and tutorial/ imports them (except
__main__.py, which runs the cli), no ``_private`` name of another module (imported, or read as ``module._name``),
argparse only in cli/, no file over 400 lines, no function over 60.
"""

from __future__ import annotations

import ast
import functools
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "cavmae_lite"

FLOORS = {
    "config": 0, "runtime": 0, "omp": 0,
    "tokenizers": 1, "layers": 1, "masking": 1, "losses": 1,
    "model": 2, "sync": 2,
    "checkpoints": 3, "data": 3, "__init__": 3,
    "evaluate": 4,
    "train": 5,
    "finetune": 6,
    "viz": 7,
    "zoo": 8, "ablation": 8,
    "tutorial": 9,
    "cli": 10,
    "__main__": 11,
}
# (importer, imported package, functions the lazy import may sit in)
EXCEPTION = ("model", "checkpoints", frozenset({"from_official", "from_pretrained", "save_pretrained"}))
LEAVES = ("cli", "tutorial")  # imported only from inside themselves (cli also by __main__)
MAX_FILE_LINES, MAX_FUNCTION_LINES = 400, 60


@dataclass(frozen=True)
class Import:
    src: str  # importing module, dotted
    target: str  # imported module (a package stands for its __init__)
    line: int
    lazy: bool  # inside a function
    function: str | None  # the innermost enclosing function
    name: str | None  # the name taken from the target, for ``from target import name``
    kind: str  # "import", "from" or "call" (importlib.import_module / __import__ with a constant name)


@dataclass
class Module:
    name: str  # dotted; a package's __init__ is the package
    rel: str  # path from the folder holding the package, e.g. cavmae_lite/viz/grids.py
    tree: ast.Module
    lines: int
    is_package: bool

    def where(self, line: int) -> str:
        return f"{self.rel}:{line}"


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def load_modules(root: Path) -> dict[str, Module]:
    mods = {}
    for path in sorted(root.rglob("*.py")):
        src = path.read_text(encoding="utf-8")
        try:
            tree = ast.parse(src, filename=str(path))
        except SyntaxError as e:  # pragma: no cover - a broken file elsewhere in the tree
            pytest.fail(f"{path}:{e.lineno}: cannot parse: {e.msg}")
        name = module_name(path, root)
        mods[name] = Module(name, path.relative_to(root.parent).as_posix(), tree, len(src.splitlines()),
                            path.name == "__init__.py")
    return mods


def _resolve(mods: dict[str, Module], name: str) -> str | None:
    """The longest prefix of ``name`` that is one of our modules (None: not ours)."""
    parts = name.split(".")
    while parts and ".".join(parts) not in mods:
        parts.pop()
    return ".".join(parts) or None


def _walk(node: ast.AST, function: str | None = None):
    """Yield (node, innermost enclosing function name or None) for every node below ``node``."""
    for child in ast.iter_child_nodes(node):
        yield child, function
        inner = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else (
            "<lambda>" if isinstance(child, ast.Lambda) else function)
        yield from _walk(child, inner)


def _import_module_call(node: ast.AST) -> str | None:
    """``importlib.import_module("x.y")`` / ``import_module("x.y")`` / ``__import__("x.y")`` with a constant name."""
    if not (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)):
        return None
    f = node.func
    called = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None
    return node.args[0].value if called in ("import_module", "__import__") else None


def _from_where(mod: Module, node: ast.ImportFrom) -> str:
    """The absolute module a ``from ... import`` reads from (``from ..viz import x`` in a.b.c -> a.viz)."""
    if not node.level:
        return node.module or ""
    package = (mod.name if mod.is_package else mod.name.rpartition(".")[0]).split(".")
    return ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))


def imports_of(mod: Module, mods: dict[str, Module]) -> list[Import]:
    """Every import of one of our modules by ``mod``, resolved to modules (``from .pkg import name``: the
    submodule when ``name`` is one, else the package)."""
    found = []
    for node, fn in _walk(mod.tree):
        add = functools.partial(Import, mod.name, line=getattr(node, "lineno", 0), lazy=fn is not None, function=fn)
        if isinstance(node, ast.Import):
            found += [add(target=t, name=None, kind="import") for a in node.names if (t := _resolve(mods, a.name))]
        elif isinstance(node, ast.ImportFrom):
            where = _from_where(mod, node)
            if _resolve(mods, where) != where:
                continue  # not one of ours (or not a module at all)
            for a in node.names:
                sub = f"{where}.{a.name}"
                found.append(add(target=sub if sub in mods else where, name=None if sub in mods else a.name,
                                 kind="from"))
        elif (name := _import_module_call(node)) and (t := _resolve(mods, name)):
            found.append(add(target=t, name=None, kind="call"))
    return found


def key(name: str) -> str:
    """The floor key: the first component under the package ("viz" for cavmae_lite.viz.grids)."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def top_level(name: str, stem: str) -> bool:
    """``name`` is the package's top-level module ``stem`` (cavmae_lite.model for "model")."""
    return name.count(".") == 1 and key(name) == stem


def is_exception(imp: Import) -> bool:
    src, pkg, functions = EXCEPTION
    return top_level(imp.src, src) and key(imp.target) == pkg and imp.lazy and imp.function in functions


@functools.cache
def project() -> tuple[dict[str, Module], list[Import]]:
    mods = load_modules(REPO / PACKAGE)
    return mods, [imp for m in mods.values() for imp in imports_of(m, mods)]


# ----- the checks (each returns "file:line: what" strings) ------------------------------------------------


def floor_offences(mods: dict[str, Module], imps: list[Import], floors: dict[str, int]) -> list[str]:
    out = [f"{m.where(1)}: no floor for {key(m.name)!r}: add it to FLOORS (and to the house rules)"
           for m in mods.values() if key(m.name) not in floors]
    for imp in imps:
        a, b = key(imp.src), key(imp.target)
        if a == b or a not in floors or b not in floors or is_exception(imp):
            continue
        if floors[b] > floors[a]:
            out.append(f"{mods[imp.src].where(imp.line)}: {imp.src} (floor {floors[a]}) imports {imp.target} "
                       f"(floor {floors[b]}){' lazily' if imp.lazy else ''}: up the floors")
    return out


def _sccs(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan, iterative)."""
    index, low, stack, on, comps, counter = {}, {}, [], set(), [], [0]
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    comps.append(sorted(comp))
    return comps


def _cycle(graph: dict[str, set[str]], nodes: set[str], start: str) -> tuple[str, ...]:
    """A shortest cycle through ``start`` inside ``nodes`` (breadth first), as (start, ..., start)."""
    prev, frontier = {start: None}, [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph.get(v, ())):
                if w == start:
                    path = [v]
                    while prev[path[-1]] is not None:
                        path.append(prev[path[-1]])
                    return (*reversed(path), start)
                if w in nodes and w not in prev:
                    prev[w] = v
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no cycle through {start}")  # pragma: no cover - an SCC has one through each node


def _real_circles(graph: dict[str, set[str]], mods: dict[str, Module]) -> list[list[str]]:
    """SCCs of ``graph``, where a package __init__ with only its own children around it is a re-export: such a
    component is searched again without the __init__ (a circle among the children still counts)."""
    out = []
    for comp in _sccs(graph):
        init = next((m for m in comp if mods[m].is_package and all(c.startswith(m + ".") for c in comp if c != m)),
                    None)
        if init is None:
            out.append(comp)
        else:
            out += _real_circles({m: graph.get(m, set()) & set(comp) - {init} for m in comp if m != init}, mods)
    return out


def circle_offences(mods: dict[str, Module], imps: list[Import]) -> list[str]:
    edges: dict[tuple[str, str], Import] = {}
    for imp in imps:
        if imp.target != imp.src and not is_exception(imp):
            edges.setdefault((imp.src, imp.target), imp)
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
    out = []
    for comp in _real_circles(graph, mods):
        cycles = set()
        for start in comp:  # each circle once, written from its smallest module
            cyc = _cycle(graph, set(comp), start)[:-1]
            i = cyc.index(min(cyc))
            cycles.add((*cyc[i:], *cyc[:i], cyc[i]))
        for cyc in sorted(cycles, key=lambda c: (len(c), c)):
            path = "; ".join(f"{mods[a].where(edges[a, b].line)} imports {b}" for a, b in zip(cyc, cyc[1:]))
            out.append(f"{mods[cyc[0]].where(edges[cyc[0], cyc[1]].line)}: import circle {' -> '.join(cyc)} "
                       f"({path})")
    return out


def leaf_offences(mods: dict[str, Module], imps: list[Import]) -> list[str]:
    out = []
    for imp in imps:
        leaf = key(imp.target)
        if leaf in LEAVES and key(imp.src) != leaf and not (leaf == "cli" and top_level(imp.src, "__main__")):
            out.append(f"{mods[imp.src].where(imp.line)}: {imp.src} imports {imp.target}: only {leaf}/ itself"
                       f"{' and __main__.py' if leaf == 'cli' else ''} may")
    return out


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_offences(mods: dict[str, Module], imps: list[Import]) -> list[str]:
    out = []
    for imp in imps:  # from X import _name / from . import _module
        taken = imp.name or imp.target.rpartition(".")[2]
        if imp.kind == "from" and imp.target != imp.src and _private(taken):
            out.append(f"{mods[imp.src].where(imp.line)}: {taken} imported from {imp.target}: private to it")
    for mod in mods.values():  # module._name, where `module` is bound by an import of one of ours
        bound = _module_aliases(mod, mods)
        for node, _ in _walk(mod.tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound
                    and _private(node.attr) and bound[node.value.id] != mod.name):
                out.append(f"{mod.where(node.lineno)}: {node.value.id}.{node.attr}: private to "
                           f"{bound[node.value.id]}")
    return out


def _module_aliases(mod: Module, mods: dict[str, Module]) -> dict[str, str]:
    """Local names bound to one of our modules: ``from .. import viz``, ``import cavmae_lite.viz as v``."""
    bound = {}
    for node, _ in _walk(mod.tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.asname and a.name in mods:
                    bound[a.asname] = a.name
        elif isinstance(node, ast.ImportFrom):
            where = _from_where(mod, node)
            for a in node.names:
                if f"{where}.{a.name}" in mods:
                    bound[a.asname or a.name] = f"{where}.{a.name}"
    return bound


def argparse_offences(mods: dict[str, Module]) -> list[str]:
    out = []
    for mod in mods.values():
        if key(mod.name) == "cli":
            continue
        for node, _ in _walk(mod.tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module] if isinstance(node, ast.ImportFrom) and not node.level else [])
            if any(n == "argparse" or (n or "").startswith("argparse.") for n in names):
                out.append(f"{mod.where(node.lineno)}: argparse outside cli/ (command lines live there)")
    return out


def size_offences(mods: dict[str, Module]) -> list[str]:
    out = [f"{m.where(MAX_FILE_LINES + 1)}: {m.lines} lines, over {MAX_FILE_LINES}"
           for m in mods.values() if m.lines > MAX_FILE_LINES]
    for mod in mods.values():
        for node, _ in _walk(mod.tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    out.append(f"{mod.where(node.lineno)}: function {node.name} has {n} lines, over "
                               f"{MAX_FUNCTION_LINES}")
    return out


def _report(offences: list[str]) -> None:
    if offences:
        pytest.fail(f"{len(offences)} offence(s):\n" + "\n".join(sorted(set(offences))), pytrace=False)


# ----- the rules on cavmae_lite -------------------------------------------------------------------------------


def test_imports_go_down_the_floors():
    mods, imps = project()
    _report(floor_offences(mods, imps, FLOORS))


def test_no_import_circles():
    _report(circle_offences(*project()))


def test_cli_and_tutorial_are_imported_only_from_inside():
    _report(leaf_offences(*project()))


def test_no_private_names_across_modules():
    _report(private_offences(*project()))


def test_argparse_only_in_cli():
    _report(argparse_offences(project()[0]))


def test_file_and_function_sizes():
    _report(size_offences(project()[0]))


# ----- the checker itself, on a made-up package ---------------------------------------------------------------


@pytest.fixture()
def fake(tmp_path):
    files = {
        "__init__.py": "from .model import M\n",
        "config.py": "import argparse\n",
        "model.py": """
            from .layers import L

            class M:
                def from_official(self):
                    from .checkpoints import io  # the written exception
                def other(self):
                    from .checkpoints.io import read  # not excepted
            """,
        "layers.py": "from . import model\nL = 1\n",
        "checkpoints/__init__.py": "from .io import read\n",
        "checkpoints/io.py": "from ..model import M\nfrom . import _helpers\nfrom ._helpers import _secret\n",
        "checkpoints/_helpers.py": "_secret = 1\n",
        "viz/__init__.py": "from .grids import to_numpy\n",
        "viz/grids.py": "import importlib\nfrom .. import viz\nx = viz._np\nimportlib.import_module('pkg.cli.main')\n",
        "cli/__init__.py": "from .main import main\n",
        "cli/main.py": "import argparse\nfrom . import run\n",
        "cli/run.py": "from . import main\n",
        "big.py": "x = 1\n" * 401 + "def f():\n" + "    y = 1\n" * 60,
    }
    root = tmp_path / "pkg"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text))
    mods = load_modules(root)
    return mods, [imp for m in mods.values() for imp in imports_of(m, mods)]


def test_the_checker_finds_each_kind_of_offence(fake):
    mods, imps = fake
    floors = {**FLOORS, "big": 8}
    floor = floor_offences(mods, imps, floors)
    assert any(o.startswith("pkg/layers.py:1:") and "pkg.model (floor 2)" in o for o in floor)
    assert any(o.startswith("pkg/model.py:") and "pkg.checkpoints.io" in o and "lazily" in o for o in floor)
    assert any(o.startswith("pkg/viz/grids.py:4:") and "pkg.cli.main" in o for o in floor)
    assert len([o for o in floor if "pkg/model.py" in o]) == 1  # from_official's lazy import is the exception
    assert any(o.startswith("pkg/big.py:1: no floor for 'big'") for o in floor_offences(mods, imps, FLOORS))
    circles = circle_offences(mods, imps)
    text = "\n".join(circles)
    assert "pkg.layers -> pkg.model -> pkg.layers" in text
    assert "pkg.checkpoints.io -> pkg.model -> pkg.checkpoints.io" in text  # other()'s lazy import counts
    assert "pkg.cli.main -> pkg.cli.run -> pkg.cli.main" in text  # children of one package, no __init__ involved
    assert "pkg/cli/main.py:2 imports pkg.cli.run; pkg/cli/run.py:1 imports pkg.cli.main" in text
    assert not any("pkg.viz -> pkg.viz.grids" in c for c in circles)  # an __init__ and its child: a re-export
    leaf = leaf_offences(mods, imps)
    assert [o.split(":")[0] for o in leaf] == ["pkg/viz/grids.py"]
    private = "\n".join(private_offences(mods, imps))
    assert "pkg/checkpoints/io.py:2: _helpers" in private and "pkg/checkpoints/io.py:3: _secret" in private
    assert "pkg/viz/grids.py:3: viz._np" in private
    assert [o.split(":")[0] for o in argparse_offences(mods)] == ["pkg/config.py"]
    sizes = size_offences(mods)
    assert any(o.startswith("pkg/big.py:401: 462 lines") for o in sizes)
    assert any(o.startswith("pkg/big.py:402: function f has 61 lines") for o in sizes)
