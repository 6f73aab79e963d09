"""The package's floors: no import cycle, no upward import, no function over 100 lines.

An AST reading of every module under netdsl/ (nothing is imported).  An edge
``a -> b`` is any ``import``/``from ... import`` in ``a`` that names ``b`` or
something inside ``b``, at module level or inside a function, plus the edge
every module has to its parent packages (importing ``netdsl.layers.conv``
runs ``netdsl/__init__.py`` and ``netdsl/layers/__init__.py`` first).

A package face may offer names lazily through a module-level ``__getattr__``
(PEP 562): that body runs when a name is asked for, after the package and its
modules have loaded, so its imports hang off a separate node ``P:face``.  The
implicit parent edge reaches ``P`` only; an explicit ``import P`` or
``from P import name`` reaches ``P`` and ``P:face``.

The floors (docs/architecture.md draws them) are checked edge by edge: a module
imports only from its own floor or below.
"""
from __future__ import annotations

import ast
import os
import sys
from collections import defaultdict
from typing import Dict, Iterable, List, Set, Tuple

import pytest

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")

# Floors, bottom up: a module is on the floor of the longest prefix listed.
FLOORS: List[Tuple[str, List[str]]] = [
    ("base", ["netdsl.errors", "netdsl.wire", "netdsl.numrange", "netdsl.fileio", "netdsl.expr",
              "netdsl.protoparse", "netdsl.maps"]),
    ("registry", ["netdsl.layers"]),
    ("schema", ["netdsl.proto", "netdsl.fork", "netdsl.schema", "netdsl.shape_expressions",
                "netdsl.plugin_loading", "netdsl.plugins", "netdsl.packs", "netdsl.netstate",
                "netdsl.shipped"]),
    ("engines", ["netdsl.coord_walk", "netdsl.shapes", "netdsl.shape_table", "netdsl.crop_check",
                 "netdsl.cost", "netdsl.memory", "netdsl.weights", "netdsl.forward",
                 "netdsl.draw", "netdsl.init_report", "netdsl.upgrade", "netdsl.prototxt"]),
    ("builders", ["netdsl.netspec", "netdsl.spec", "netdsl.ops", "netdsl.compat.coord_map",
                  "netdsl.convert.recipes"]),
    ("converters", ["netdsl.convert"]),
    ("front ends", ["netdsl.torch", "netdsl.onnx", "netdsl.export", "netdsl.compat",
                    "netdsl.coord_map", "netdsl.cli", "netdsl.__main__", "netdsl"]),
]
# The families and the registry: they may import only these (and each other).
BOTTOM = "netdsl.layers"
BOTTOM_MAY_IMPORT = ("netdsl.errors", "netdsl.maps")
# A package face named here may offer upward names lazily (its PEP 562 __getattr__).
FACE = ":face"


def find_modules(root: str, package: str) -> Dict[str, str]:
    """Dotted module name -> file path, for every .py file under root/package."""
    mods = {}
    for dirpath, _dirs, files in os.walk(os.path.join(root, package)):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(dirpath, f)
                name = os.path.relpath(path, root)[:-3].replace(os.sep, ".")
                mods[name[:-9] if name.endswith(".__init__") else name] = path
    return mods


def _known(name: str, mods: Dict[str, str]) -> str:
    while name and name not in mods:
        name = name.rsplit(".", 1)[0] if "." in name else ""
    return name


def _targets(mod: str, is_pkg: bool, node: ast.AST, mods: Dict[str, str],
             faces: Dict[str, Set[str]]) -> Set[str]:
    """The modules (and faces) an import statement reaches."""
    if isinstance(node, ast.Import):
        out = {_known(a.name, mods) for a in node.names}
        return out | {t + FACE for t in out if t in faces}
    base = mod if is_pkg else mod.rsplit(".", 1)[0]
    if node.level:
        parts = base.split(".")
        base = ".".join(parts[:len(parts) - (node.level - 1)])
        src = base + ("." + node.module if node.module else "")
    else:
        src = node.module or ""
    out = set()
    for a in node.names:
        sub = src + "." + a.name
        if sub in mods:
            out.add(sub)                       # a submodule: its package's body runs too,
            if not mod.startswith(src + "."):  # which for the importer's own package is
                out.add(_known(src, mods))     # its parent edge (added in import_graph)
        else:
            t = _known(src, mods)
            lazy = t in faces and a.name not in faces[t]      # a name offered lazily
            out |= {t, t + FACE} if lazy else {t}
    return out


def _bound_names(tree: ast.Module) -> Set[str]:
    """The names a module binds in its body (not the ones its __getattr__ offers)."""
    out: Set[str] = set()
    for stmt in tree.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(stmt.name)
        elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
            out |= {(a.asname or a.name).split(".")[0] for a in stmt.names}
        elif isinstance(stmt, (ast.Assign, ast.AnnAssign)):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            out |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    return out


def _lazy_face_body(tree: ast.Module) -> Set[int]:
    """ids of the import nodes inside a module-level ``__getattr__``."""
    ids = set()
    for stmt in tree.body:
        if isinstance(stmt, ast.FunctionDef) and stmt.name == "__getattr__":
            ids |= {id(n) for n in ast.walk(stmt) if isinstance(n, (ast.Import, ast.ImportFrom))}
    return ids


def import_graph(root: str, package: str) -> Dict[str, Set[str]]:
    """Module -> the modules it imports, counting function-level imports and parents."""
    mods = find_modules(root, package)
    trees = {}
    for mod, path in mods.items():
        with open(path, encoding="utf-8") as fh:
            trees[mod] = ast.parse(fh.read(), path)
    faces = {m: _bound_names(tree) for m, tree in trees.items() if _lazy_face_body(tree)}
    edges: Dict[str, Set[str]] = defaultdict(set)
    for mod, tree in trees.items():
        is_pkg = mods[mod].endswith("__init__.py")
        lazy = _lazy_face_body(tree)
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                src = mod + FACE if id(node) in lazy else mod
                for t in _targets(mod, is_pkg, node, mods, faces):
                    if t and t != src:
                        edges[src].add(t)
        if mod in faces:
            edges[mod + FACE].add(mod)
    reach: Dict[str, Set[str]] = {}
    for mod in mods:                                    # the implicit parent packages
        parts = mod.split(".")
        for i in range(1, len(parts)):
            parent = ".".join(parts[:i])
            if parent not in reach:
                reach[parent] = _own_reach(parent, edges)
            if mod not in reach[parent]:
                edges[mod].add(parent)
    return {k: {t for t in v if t != k} for k, v in edges.items()}


def _own_reach(package: str, edges: Dict[str, Set[str]]) -> Set[str]:
    """The modules of a package that its body imports through the package's own modules.

    Importing such a module first runs the package body, which imports the
    module itself: Python's ordinary package pattern, not a cycle.  A module
    the body reaches only through a module outside the package keeps its
    parent edge (the outside module depends on the package half-loaded)."""
    inside = package + "."
    seen: Set[str] = set()
    todo = [t for t in edges.get(package, ()) if t.startswith(inside)]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        todo.extend(t for t in edges.get(m, ()) if t.startswith(inside))
    return {m.split(":")[0] for m in seen}


def cycles(edges: Dict[str, Set[str]]) -> List[List[str]]:
    """The strongly connected components with more than one node (Tarjan, iterative)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on: Set[str] = set()
    out: List[List[str]] = []
    nodes = set(edges) | {t for v in edges.values() for t in v}
    for start in sorted(nodes):
        if start in index:
            continue
        work = [(start, iter(sorted(edges.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on.add(start)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(edges.get(w, ())))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
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
                        out.append(sorted(comp))
    return out


def floor_of(module: str) -> int:
    """The floor number of a module (the longest listed prefix decides)."""
    best, level = -1, None
    name = module.split(":")[0]
    for i, (_label, prefixes) in enumerate(FLOORS):
        for p in prefixes:
            if (name == p or name.startswith(p + ".")) and len(p) > best:
                best, level = len(p), i
    if level is None:
        raise AssertionError("module %s is on no floor: add it to FLOORS" % name)
    return level


def upward_edges(edges: Dict[str, Set[str]]) -> List[str]:
    """Edges to a higher floor, and edges from the bottom floor to anything but its list.

    A face's lazy body and the implicit parent edge are exempt from the floor
    order (the parent package is the public face: its body runs first, and
    what it offers lazily is the face's business)."""
    bad = []
    for src, targets in edges.items():
        if src.endswith(FACE):
            continue
        for t in targets:
            if t.endswith(FACE) or src.startswith(t + "."):
                continue
            if floor_of(t) > floor_of(src):
                bad.append("%s -> %s" % (src, t))
            elif src.startswith(BOTTOM + ".") or src == BOTTOM:
                if not (t == BOTTOM or t.startswith(BOTTOM + ".") or t in BOTTOM_MAY_IMPORT):
                    bad.append("%s -> %s (the registry imports only %s)"
                               % (src, t, ", ".join(BOTTOM_MAY_IMPORT)))
    return sorted(bad)


def long_functions(root: str, package: str, limit: int = 100) -> List[str]:
    """Functions (and methods) whose body spans more than ``limit`` lines."""
    out = []
    for mod, path in find_modules(root, package).items():
        with open(path, encoding="utf-8") as fh:
            tree = ast.parse(fh.read(), path)
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > limit:
                    out.append("%s.%s: %d lines" % (mod, node.name, n))
    return sorted(out)


# -- the checker on a tiny fake package (so the checks can fail) ------------------------------


def _fake(tmp_path, files: Dict[str, str]) -> str:
    for rel, text in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return str(tmp_path)


def test_checker_finds_a_cycle_through_a_function_level_import(tmp_path):
    root = _fake(tmp_path, {"pkg/__init__.py": "", "pkg/a.py": "from . import b\n",
                            "pkg/b.py": "def f():\n    from .a import x\n"})
    assert cycles(import_graph(root, "pkg")) == [["pkg.a", "pkg.b"]]


def test_checker_finds_a_cycle_through_a_parent_package(tmp_path):
    # importing pkg.sub.leaf runs pkg/sub/__init__.py, which imports pkg.top, which needs leaf
    root = _fake(tmp_path, {"pkg/__init__.py": "", "pkg/sub/__init__.py": "from .. import top\n",
                            "pkg/sub/leaf.py": "X = 1\n", "pkg/top.py": "from .sub.leaf import X\n"})
    assert cycles(import_graph(root, "pkg")) == [["pkg.sub", "pkg.sub.leaf", "pkg.top"]]


def test_checker_takes_a_package_importing_its_own_modules_for_no_cycle(tmp_path):
    # pkg/__init__ imports pkg.a, pkg.a imports its sibling pkg.b: Python's package pattern
    root = _fake(tmp_path, {"pkg/__init__.py": "from .a import A\n",
                            "pkg/a.py": "from . import b\nA = b.B\n", "pkg/b.py": "B = 1\n"})
    assert cycles(import_graph(root, "pkg")) == []
    # ... but a sibling that needs a name of the package body is one
    (tmp_path / "pkg" / "b.py").write_text("from . import A\nB = 1\n")
    assert cycles(import_graph(root, "pkg")) == [["pkg", "pkg.a", "pkg.b"]]


def test_checker_lets_a_face_offer_names_lazily(tmp_path):
    lazy = "def __getattr__(name):\n    from .top import T\n    return T\n"
    root = _fake(tmp_path, {"pkg/__init__.py": lazy, "pkg/low.py": "X = 1\n",
                            "pkg/top.py": "from .low import X\nT = X\n"})
    assert cycles(import_graph(root, "pkg")) == []
    # ... but a module that asks the face for a name depends on what the face imports
    (tmp_path / "pkg" / "low.py").write_text("def f():\n    from pkg import T\n")
    assert cycles(import_graph(root, "pkg")) == [["pkg.low", "pkg.top", "pkg:face"]]


def test_checker_finds_an_upward_import_and_a_long_function(tmp_path):
    body = "def f():\n" + "    x = 1\n" * 100
    root = _fake(tmp_path, {"netdsl/__init__.py": "", "netdsl/layers/__init__.py": "",
                            "netdsl/layers/conv.py": "def g():\n    from ..shapes import s\n",
                            "netdsl/shapes.py": "from .errors import E\n" + body,
                            "netdsl/errors.py": "E = 1\n"})
    edges = import_graph(root, "netdsl")
    assert upward_edges(edges) == ["netdsl.layers.conv -> netdsl.shapes"]
    assert long_functions(root, "netdsl") == ["netdsl.shapes.f: 101 lines"]


# -- the package itself ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def netdsl_graph():
    return import_graph(ROOT, "netdsl")


def test_no_import_cycle_in_netdsl(netdsl_graph):
    found = cycles(netdsl_graph)
    assert found == [], "\n".join("%d: %s" % (len(c), " ".join(c)) for c in found)


def test_every_module_imports_only_its_floor_or_below(netdsl_graph):
    assert upward_edges(netdsl_graph) == []


def test_no_function_over_100_lines():
    assert long_functions(ROOT, "netdsl") == []


@pytest.mark.parametrize("code", [
    "from netdsl import NetSpec, layers as L, params as P, to_proto, use_schema, NetdslError\n"
    "n = NetSpec(); n.data = L.Input(shape=dict(dim=[1, 3, 8, 8]))\n"
    "n.conv = L.Convolution(n.data, num_output=2, kernel_size=3)\n"
    "assert 'Convolution' in str(n.to_proto())",
    "import netdsl.layers.conv\nimport netdsl\nassert netdsl.layers.lookup('Convolution')",
    "from netdsl.coord_map import crop, offsets_for, layer_coord_map, compose, inverse",
    "from netdsl.compat import install_caffe_alias, run_script, run_module",
    "from netdsl.proto import load_schema, caffe_pb2, schema_of",
    "from netdsl.netspec import current_schema, schema_in_use, explicit_schema, use_schema",
])
def test_public_imports_work_in_a_fresh_interpreter(code):
    """The lazy faces (PEP 562) resolve when nothing else was imported first."""
    import subprocess
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]


def test_building_and_shaping_a_net_leaves_numpy_unimported():
    """netdsl/layers/runtime.py: numpy is imported on first use, so a NetSpec script
    and shape inference do not pay its import (about 40 ms) or carry its modules."""
    import subprocess
    code = ("import sys\n"
            "from netdsl import NetSpec, layers as L\n"
            "from netdsl.shapes import infer_shapes, check_net, format_table\n"
            "n = NetSpec(); n.data = L.Input(shape=dict(dim=[1, 3, 8, 8]))\n"
            "n.conv = L.Convolution(n.data, num_output=2, kernel_size=3,\n"
            "                       weight_filler=dict(type='xavier'))\n"
            "n.bn = L.BatchNorm(n.conv)\n"
            "net = n.to_proto(); str(net)\n"
            "format_table(check_net(net))\n"
            "print('numpy' in sys.modules)\n")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip() == "False"


def test_the_architecture_doc_draws_the_floors_the_test_enforces():
    with open(os.path.join(ROOT, "docs", "architecture.md"), encoding="utf-8") as fh:
        doc = fh.read()
    block = doc.split("## Floors", 1)[1].split("```", 2)[1]
    rows = {}
    for line in block.splitlines():
        head = line[:4].strip()
        if head.isdigit():
            current_floor = int(head) - 1
        if line.strip():
            rows[current_floor] = rows.get(current_floor, "") + " " + line
    for i, (_label, prefixes) in enumerate(FLOORS):
        for p in prefixes:
            rel = p[len("netdsl."):].replace(".", "/") if p != "netdsl" else "netdsl/__init__"
            row = rows.get(i, "")      # a module or a package of that name (cli.py or cli/)
            assert rel + ".py" in row or rel + "/" in row, \
                "%s (floor %d) is not drawn on that floor" % (rel, i + 1)
