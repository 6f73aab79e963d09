"""The converter core (netdsl/convert/) under both front ends: it imports no
front end and no spec machinery, the converter modules form no import cycle
(imports inside functions counted), and converting loads no spec ops."""
from __future__ import annotations

import ast
import os
import subprocess
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
#: the packages of the converters: the core and the two front ends
SCOPE = ("netdsl.convert", "netdsl.torch", "netdsl.onnx")


def _modules(root=ROOT):
    """module name -> file, for every module of the package under ``root``."""
    out = {}
    for dirpath, _, files in os.walk(os.path.join(root, "netdsl")):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(dirpath, f)
                name = os.path.relpath(path, root)[:-3].replace(os.sep, ".")
                out[name[:-len(".__init__")] if name.endswith(".__init__") else name] = path
    return out


def _imports(name, path, modules):
    """The package modules ``name`` imports anywhere in its file (``from X
    import y`` counts as importing X, and X.y too when that is a module: the
    package's ``__init__`` runs first)."""
    is_pkg = path.endswith("__init__.py")
    found = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [mod] + [mod + "." + a.name for a in node.names
                               if mod + "." + a.name in modules]
        for t in targets:
            while t and t not in modules:
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def _in(name, packages):
    return any(name == p or name.startswith(p + ".") for p in packages)


def test_core_imports_no_front_end():
    modules = _modules()
    for name, path in modules.items():
        if _in(name, ("netdsl.convert",)):
            bad = [t for t in _imports(name, path, modules)
                   if _in(t, ("netdsl.torch", "netdsl.onnx", "netdsl.ops", "netdsl.spec",
                              "netdsl.cli"))]
            assert not bad, "%s imports %s" % (name, bad)


def _in_cycle(modules, scope):
    """A module of ``scope`` that reaches itself through imports, or None."""
    graph = {n: {t for t in _imports(n, p, modules) if _in(t, scope)}
             for n, p in modules.items() if _in(n, scope)}
    for start in graph:
        seen, stack = set(), list(graph[start])
        while stack:
            m = stack.pop()
            if m == start:
                return start
            if m not in seen:
                seen.add(m)
                stack.extend(graph.get(m, ()))
    return None


def test_no_import_cycle_among_the_converters():
    assert _in_cycle(_modules(), SCOPE) is None


def test_the_cycle_check_finds_a_cycle(tmp_path):
    """The check above can fail: a package whose module imports itself back
    through another, inside a function."""
    pkg = tmp_path / "netdsl" / "convert"
    pkg.mkdir(parents=True)
    (tmp_path / "netdsl" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from netdsl.convert import b\n")
    (pkg / "b.py").write_text("from .a import f\n")
    (pkg / "c.py").write_text("import netdsl.convert.a\n")
    modules = _modules(str(tmp_path))
    assert _in_cycle(modules, SCOPE) in ("netdsl.convert.a", "netdsl.convert.b")
    del modules["netdsl.convert.b"]
    assert _in_cycle(modules, SCOPE) is None


def test_converting_loads_no_spec_ops():
    pytest.importorskip("torch")
    code = ("import sys, torch\n"
            "from netdsl.torch import convert\n"
            "m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.MaxPool2d(2)).eval()\n"
            "assert convert(m, torch.randn(1, 3, 9, 9)).ok\n"
            "print(sorted(n for n in sys.modules\n"
            "             if n.startswith(('netdsl.ops', 'netdsl.spec'))))\n")
    env = dict(os.environ, PYTHONPATH=ROOT)
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"
