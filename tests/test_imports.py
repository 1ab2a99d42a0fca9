"""The layering, checked from the source: the core (``tritorch/_tensor.py``, ``_creation.py``, ...) below autograd/,
autograd/ below the op layer (kernels/), and no import circle anywhere among them.

The graph counts every import statement of a module, those inside functions included (an import moved into a
function still closes the circle, only later). Ops reach the core through registration (``register``, and
``tritorch/_impl.py`` for the few op-layer entry points the core itself calls), never through an import.
"""
import ast
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# where each installed package's source lives (pyproject's package-dir)
PACKAGES = {"tritorch": "tritorch", "tritorch.kernels": "kernels", "tritorch.autograd": "autograd"}


def _modules():
    """Every module of the three code folders (subpackages of tritorch/ below its top level are the upper layer's,
    named by their package)."""
    mods = {}
    for pkg, folder in PACKAGES.items():
        for f in sorted(os.listdir(os.path.join(ROOT, folder))):
            if f.endswith(".py"):
                mods[pkg if f == "__init__.py" else f"{pkg}.{f[:-3]}"] = os.path.join(ROOT, folder, f)
    return mods


MODULES = _modules()


def _known(name):
    """The graph node an imported name lands on: the longest module prefix we know (``tritorch.nn.functional``
    lands on ``tritorch``: importing any subpackage runs tritorch/__init__.py, which imports everything)."""
    if name.startswith(("kernels", "autograd")):
        name = "tritorch." + name
    while name not in MODULES:
        if "." not in name:
            return None
        name = name.rsplit(".", 1)[0]
    return name


def _imports(mod, path):
    """The modules ``mod`` imports, anywhere in its source."""
    is_pkg = path.endswith("__init__.py")
    out = set()
    for node in ast.walk(ast.parse(open(path).read(), path)):
        if isinstance(node, ast.Import):
            out.update(_known(a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = mod if is_pkg else mod.rsplit(".", 1)[0]
                for _ in range(node.level - 1):
                    base = base.rsplit(".", 1)[0]
                src = base + ("." + node.module if node.module else "")
            else:
                src = node.module
            for a in node.names:        # ``from pkg import module`` imports the module; ``from m import name``, m
                sub = f"{src}.{a.name}"
                out.add(_known(sub) if _known(sub) == sub else _known(src))
    out.discard(None)
    out.discard(mod)
    return out


GRAPH = {m: _imports(m, p) for m, p in MODULES.items()}


def _reach(start):
    seen, todo = set(), list(start)
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(GRAPH[m])
    return seen


def _cycles(nodes):
    """The strongly connected components of more than one module among ``nodes`` (Tarjan, iterative)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    for root in sorted(nodes):
        if root in index:
            continue
        work = [(root, iter(sorted(GRAPH[root] & nodes)))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        x = stack.pop()
                        on.discard(x)
                        comp.append(x)
                        if x == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
            elif w not in index:
                index[w] = low[w] = counter[0]
                counter[0] += 1
                stack.append(w)
                on.add(w)
                work.append((w, iter(sorted(GRAPH[w] & nodes))))
            elif w in on:
                low[v] = min(low[v], index[w])
    return out


KERNELS = sorted(m for m in MODULES if m.startswith("tritorch.kernels"))
AUTOGRAD = sorted(m for m in MODULES if m.startswith("tritorch.autograd"))
# the op layer, autograd, and every module of tritorch/ that they reach: the core
LOWER = _reach(KERNELS + AUTOGRAD)
CORE = sorted(m for m in LOWER if m not in KERNELS and m not in AUTOGRAD)


def _layer(m):
    return 2 if m in KERNELS else 1 if m in AUTOGRAD else 0


def test_graph_sees_the_imports():
    # a guard on the parser itself: known edges of the layering are found
    assert "tritorch._tensor" in GRAPH["tritorch.kernels.elementwise"]
    assert "tritorch.kernels._launch" in GRAPH["tritorch.kernels.elementwise"]
    assert "tritorch.autograd.function" in GRAPH["tritorch.autograd.engine"]


def test_no_import_circle():
    assert _cycles(LOWER) == []


def test_the_package_is_not_imported_from_below():
    # ``import tritorch`` from the op layer or the core would close a circle through tritorch/__init__.py
    assert "tritorch" not in LOWER


def test_dependencies_point_down():
    """The core imports neither autograd/ nor kernels/; autograd/ does not import kernels/."""
    upward = sorted((m, d) for m in LOWER for d in GRAPH[m] if d in LOWER and _layer(d) > _layer(m))
    assert upward == []


_ALONE = """
import importlib, os, sys, types
root = sys.argv[1]
pkg = types.ModuleType("tritorch")          # the package without its __init__: only what the module imports runs
pkg.__path__ = [os.path.join(root, "tritorch"), root]
sys.modules["tritorch"] = pkg
for name in sys.argv[2:]:
    importlib.import_module(name)
"""


@pytest.mark.parametrize("module", KERNELS)
def test_each_kernels_module_imports_alone(module):
    env = dict(os.environ, TRITORCH_INTERPRET=os.environ.get("TRITORCH_INTERPRET", "1"))
    r = subprocess.run([sys.executable, "-c", _ALONE, ROOT, module], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]


def test_core_modules_import_alone():
    env = dict(os.environ, TRITORCH_INTERPRET=os.environ.get("TRITORCH_INTERPRET", "1"))
    for module in CORE + AUTOGRAD:
        r = subprocess.run([sys.executable, "-c", _ALONE, ROOT, module], env=env, capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 0, module + ":\n" + r.stderr[-3000:]


def test_every_package_is_installed():
    """pyproject's ``packages`` lists every folder of tritorch/ with an ``__init__.py``: a non-editable install
    (``pip install .``, a wheel) leaves out a package it does not list (``tritorch.compiler.passes`` once was, and
    ``import tritorch`` failed there)."""
    with open(os.path.join(ROOT, "pyproject.toml")) as f:
        listed = set(re.findall(r'"(tritorch[\w.]*)"', re.search(r"^packages = \[([^\]]*)\]", f.read(), re.M)[1]))
    found = {os.path.relpath(d, ROOT).replace(os.sep, ".") for d, _, files in os.walk(os.path.join(ROOT, "tritorch"))
             if "__init__.py" in files}
    assert found - listed == set()
