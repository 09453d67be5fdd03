"""The training package imports only the layers below it, has no import cycles, and imports
nothing inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

import pertlearn.training

PACKAGE = Path(pertlearn.training.__file__).parent
ALLOWED = (
    "pertlearn.training",
    "pertlearn.models",
    "pertlearn.data",
    "pertlearn.seeding",
    "pertlearn.atomic",
    "pertlearn.errors",
    "pertlearn.tensors",
)


def _imports(tree: ast.AST) -> list[tuple[str, bool]]:
    """(imported module, at module level) for every pertlearn import."""
    found = []
    top = {id(node) for node in getattr(tree, "body", [])}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pertlearn"):
            names = [f"{node.module}.{a.name}" for a in node.names]
            if node.module == "pertlearn.training":  # `from pertlearn.training import fast`
                found += [(n, id(node) in top) for n in names]
            else:
                found.append((node.module, id(node) in top))
        elif isinstance(node, ast.Import):
            found += [
                (a.name, id(node) in top) for a in node.names if a.name.startswith("pertlearn")
            ]
    return found


def _graph() -> dict[str, set[str]]:
    modules = {
        f"pertlearn.training.{p.stem}": p for p in PACKAGE.glob("*.py") if p.stem != "__init__"
    }
    graph = {}
    for name, path in modules.items():
        imports = _imports(ast.parse(path.read_text()))
        assert all(top for _, top in imports), f"{name} imports inside a function"
        for module, _ in imports:
            assert module.startswith(ALLOWED), f"{name} imports {module} from a higher layer"
        graph[name] = {m for m, _ in imports if m in modules}
    return graph


def test_no_upward_imports_no_cycles_and_small_modules():
    graph = _graph()
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        if state.get(node) == 1:
            raise AssertionError(f"import cycle: {' -> '.join([*path, node])}")
        if state.get(node) == 2:
            return
        state[node] = 1
        for nxt in graph[node]:
            visit(nxt, [*path, node])
        state[node] = 2

    for node in graph:
        visit(node, [])
    for path in PACKAGE.glob("*.py"):
        assert len(path.read_text().splitlines()) < 500, f"{path.name} has 500 lines or more"
