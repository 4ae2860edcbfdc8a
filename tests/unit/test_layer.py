"""The Lambda layer holds what Lambda runs, and its package has no import circle.

The layer is the template's `ContentUri` folder, shipped to every function: a change to it
redeploys them all, so the local stack, the operator CLI and test code live elsewhere
(`devstack/`, `tests/`). Imports are read from the source (every `import`, at module level or
inside a function), so a lazy import cannot hide a dependency or a circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

from devstack import template as templates

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = templates.load(REPO / "infra" / "template.yaml")
# What only development needs: the local stack, the CLI, tests and benchmarks, and their tools.
DEVELOPMENT_ONLY = {"devstack", "tests", "bench", "events", "moto", "functions_framework", "flask", "werkzeug",
                    "pytest", "mongomock", "selenium", "schemathesis", "hypothesis", "openai", "tqdm", "argparse"}


def layer_dir() -> Path:
    (layer,) = [r for r in TEMPLATE.raw["Resources"].values() if r["Type"] == "AWS::Serverless::LayerVersion"]
    return (REPO / "infra" / layer["Properties"]["ContentUri"]).resolve()


def modules(root: Path) -> dict[str, Path]:
    """Every module under `root` by dotted name (a package by its own name, not `__init__`)."""
    found = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(path: Path, name: str, known: set[str]) -> set[str]:
    """The modules `path` imports, anywhere in it; `from pkg import mod` counts as `pkg.mod`."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in known)
    return names


def test_the_layer_holds_no_emulator_cli_or_test_code():
    root = layer_dir()
    found = modules(root)
    assert "allthethings.bootstrap" in found, f"{root} is the layer's package folder"
    assert not [n for n in found if n.endswith("__main__") or ".local" in n], "no command-line entry in the layer"
    offenders = {f"{name} imports {imported}" for name, path in found.items()
                 for imported in imports(path, name, set(found))
                 if imported.split(".")[0] in DEVELOPMENT_ONLY}
    assert not offenders, sorted(offenders)


def circles(root: Path) -> list[str]:
    """Every import circle among the modules under `root`, as "a -> b -> a"."""
    found = modules(root)
    graph = {name: {i for i in imports(path, name, set(found)) if i in found and i != name}
             for name, path in found.items()}
    loops, state = [], {}

    def visit(node, trail):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                loops.append(" -> ".join(trail[trail.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    return loops


def test_no_module_of_the_package_imports_one_that_imports_it_back():
    assert circles(layer_dir()) == []


def test_the_circle_check_sees_a_circle_made_of_lazy_imports(tmp_path):
    """The check above could pass by reading nothing: it must see a back-edge inside a function."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg import b\n")
    (package / "b.py").write_text("def later():\n    from pkg.a import thing\n")
    assert circles(tmp_path) == ["pkg.a -> pkg.b -> pkg.a"]
