"""The package's layers, checked from its imports: every arrow points down and nothing cycles.

Each module's imports of ``ebm_ppl`` modules are read with :mod:`ast`, at module level and
inside functions alike (a function-level import is still a dependency). Layers, bottom first:

0. ``ops`` (one array API over torch and JAX) and the data package ``datasets`` (the loaders
   and the model-free synthetic generators), which knows no model;
1. ``checkpoint`` (the file format), ``models`` (the math of every model) and the one
   generator that renders with a model's math, ``datasets.shaded_digits``;
2. ``inference`` (Gibbs, SA-MLE, AIS, tempering, exchange: backend-neutral algorithms);
3. the frontends ``pyro`` and ``numpyro``, which never import each other;
4. what sits above both frontends: ``io`` (model loading), ``diagnostics``, ``evaluation``, the CLI.

An upward import that must stay for a while would be listed in ``KNOWN_UPWARD`` (empty now):
the test fails on any other, and when a listed one is removed, so that the list only shrinks.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "ebm_ppl"

LAYERS = {
    "ebm_ppl": 0,
    "ebm_ppl.ops": 0,
    "ebm_ppl._deprecated": 0,
    "ebm_ppl.datasets": 0,
    "ebm_ppl.datasets.shaded_digits": 1,
    # deprecated aliases of the generators' old paths, at their new modules' layers
    "ebm_ppl.occlusions": 0,
    "ebm_ppl.shaded_digits": 1,
    "ebm_ppl.tagged_digits": 0,
    "ebm_ppl.checkpoint": 1,
    "ebm_ppl.models": 1,
    "ebm_ppl.inference": 2,
    "ebm_ppl.pyro": 3,
    "ebm_ppl.numpyro": 3,
    "ebm_ppl.io": 4,
    "ebm_ppl.diagnostics": 4,
    "ebm_ppl.evaluation": 4,
    "ebm_ppl.cli": 4,
    "ebm_ppl.__main__": 4,
}

#: upward imports still to be removed (issue 24): (importer, imported)
KNOWN_UPWARD: set[tuple[str, str]] = set()


def modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The ``ebm_ppl`` modules that ``name`` imports (the deepest module each import names)."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(up + ([base] if base else []))
            targets = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names
            ]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target.startswith("ebm_ppl") and target != name:
                found.add(target)
    return found


def layer(name: str) -> int:
    while name not in LAYERS:
        name = name.rpartition(".")[0]
    return LAYERS[name]


def frontend(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ("pyro", "numpyro") else None


GRAPH = {name: imports(name, path, modules()) for name, path in modules().items()}


def test_every_module_has_a_layer():
    assert all(layer(name) >= 0 for name in GRAPH)


def test_no_import_cycles():
    """Tarjan's strongly connected components of the import graph: all of size one."""
    index, low, stack, on, cycles = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_arrows_point_down():
    upward = {
        (a, b)
        for a, targets in GRAPH.items()
        for b in targets
        if layer(b) > layer(a) and not (a == "ebm_ppl" or b.startswith(a + "."))
    }
    new = sorted(upward - KNOWN_UPWARD)
    assert not new, f"imports from a lower layer up to a higher one: {new}"
    gone = sorted(KNOWN_UPWARD - upward)
    assert not gone, f"remove these from KNOWN_UPWARD, they are gone: {gone}"


def test_frontends_do_not_import_each_other():
    crossing = sorted(
        (a, b)
        for a, targets in GRAPH.items()
        for b in targets
        if frontend(a) and frontend(b) and frontend(a) != frontend(b)
    )
    assert not crossing, crossing


#: what a function-level import may load: a backend or an optional heavy library, or a frontend
LAZY_ALLOWED = {
    "torch", "jax", "pyro", "numpyro", "optax", "ml_dtypes", "scipy", "sklearn", "matplotlib",
    "xarray", "arviz_base", "arviz_stats", "arviz_plots",
}  # fmt: skip


def function_level_imports(path: Path) -> list[ast.Import | ast.ImportFrom]:
    tree = ast.parse(path.read_text())
    found = []
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            found += [n for n in ast.walk(fn) if isinstance(n, ast.Import | ast.ImportFrom)]
    return sorted(set(found), key=lambda n: n.lineno)


def test_function_level_imports_are_lazy_for_a_reason():
    """An import inside a function is kept only for a backend, an optional heavy library or a
    frontend (so that importing the module does not load them), under a ``# lazy:`` comment
    saying why; everything else is imported at the top of its module."""
    wrong, silent = [], []
    for name, path in sorted(modules().items()):
        lines = path.read_text().splitlines()
        nodes = function_level_imports(path)
        covered = {i for n in nodes for i in range(n.lineno, n.end_lineno + 1)}
        for n in nodes:
            if isinstance(n, ast.Import):
                targets = [a.name for a in n.names]
            else:
                targets = [("." * n.level) + (n.module or "")]
            for t in targets:
                top = t.split(".")[0]
                frontend_import = t.startswith(("ebm_ppl.pyro", "ebm_ppl.numpyro")) or (
                    t == "ebm_ppl"
                    and isinstance(n, ast.ImportFrom)
                    and {a.name for a in n.names} <= {"pyro", "numpyro"}
                )
                if top not in LAZY_ALLOWED and not frontend_import:
                    wrong.append(f"{name}:{n.lineno} imports {t}")
            above = n.lineno - 1
            while above in covered:
                above -= 1
            if not lines[above - 1].strip().startswith("# lazy:"):
                silent.append(f"{name}:{n.lineno}")
    assert not wrong, f"function-level imports of light modules (import them at the top): {wrong}"
    assert not silent, f"function-level imports without a '# lazy: <reason>' line above: {silent}"
