"""No import cycle in the package (function-level imports count too).

The graph is read from the source with :mod:`ast`: every ``import`` and
``from ... import`` of a ``prospect_sim`` module, at any depth, is an edge
(except to the importer's own packages, which Python imports first anyway).
Any cycle fails (``KNOWN`` lists none: the last two were broken by moving
the shared task protocol to ``tasks.py`` and checkpoint loading to
``amortized/posterior.py``).
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "prospect_sim"

KNOWN = set()


def _module_name(path):
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _graph():
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
            for target in targets:
                # a module's own packages are imported before it anyway: not an edge
                if target in modules and target != name and not name.startswith(target + "."):
                    graph[name].add(target)
    return graph


def _cycles(graph):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(frozenset(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_graph_sees_function_level_imports():
    graph = _graph()
    # grid.py imports its photometry kernel inside a method
    assert "prospect_sim.sps.photometry" in graph["prospect_sim.sps.grid"]
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [frozenset({"a", "b"})]


def test_no_new_import_cycles():
    cycles = set(_cycles(_graph()))
    assert cycles <= KNOWN, [sorted(c) for c in cycles - KNOWN]
