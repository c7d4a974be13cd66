"""The import rules of src/runner, read from the source with ast (every import, lazy ones included).

Packages form layers along the data's walk; a module may import its own package and the layers below
(imports under `if TYPE_CHECKING:` are for type hints only and never run, so they do not count):
    model < compose < verify < release < engines < rehearse < ui < flow < faces (cli, dagger)
The two faces never import each other, no module imports in a circle, the Dagger SDK is imported
only by the Dagger engine and the Dagger face, and pack/ recipes import only the model and compose.
The faces hold no orchestration: they reach the engines, the registry client and the stage plan only
through the flow (runner.flow).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

LAYERS = {"model": 0, "compose": 1, "verify": 2, "release": 3, "engines": 4, "rehearse": 5, "ui": 6, "flow": 7,
          "cli": 8, "dagger": 8}
TOP = {"runner": 0, "runner.__main__": 8}  # the consumer API sits on the model; __main__ is the CLI
DAGGER_SDK_ALLOWED = ("runner.engines.dagger", "runner.dagger")
FACES = ("runner.cli", "runner.dagger", "runner.__main__")
FLOW_ONLY = ("runner.engines", "runner.release.registry", "runner.compose.plan", "runner.release.pipeline",
             "runner.release.ci_job", "runner.rehearse")  # what the faces reach through runner.flow
RECIPE_ALLOWED = ("runner.compose.kit", "runner.compose.builds", "runner.compose.stages", "runner.compose.requirements",
                  "runner.compose.components", "runner.compose.sources", "runner.compose.shell", "runner.compose.official",
                  "runner.model")


def modules(src: Path) -> dict[str, Path]:
    """Module name -> file for every .py file under src/runner."""
    found = {}
    for path in sorted((src / "runner").rglob("*.py")):
        parts = path.relative_to(src).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node, except those under `if TYPE_CHECKING:` (type-only imports never run)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", "")) == "TYPE_CHECKING":
            yield from (n for child in node.orelse for n in [child, *_runtime_nodes(child)])
            continue
        yield node
        yield from _runtime_nodes(node)


def imports(path: Path, name: str) -> Iterator[tuple[str, int]]:
    """(imported module, line) for every import statement in a file that runs, at any depth."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            yield mod, node.lineno
            for alias in node.names:  # `from runner.model import catalog` imports runner.model.catalog
                yield f"{mod}.{alias.name}", node.lineno


def layer(module: str) -> int | None:
    if module in TOP:
        return TOP[module]
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 and parts[0] == "runner" else None


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def violations(src: Path) -> list[str]:
    """Every broken rule, as 'file:line: what'."""
    mods = modules(src)
    found: list[str] = []
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        own = layer(name)
        where = f"{path.relative_to(src.parent)}"
        for target, line in imports(path, name):
            if target == "dagger" or target.startswith("dagger."):
                if not name.startswith(DAGGER_SDK_ALLOWED):
                    found.append(f"{where}:{line}: imports the Dagger SDK ({target}); only the Dagger engine and face may")
                continue
            if target not in mods:
                continue
            graph[name].add(target)
            if name.startswith(FACES) and target.startswith(FLOW_ONLY):
                found.append(f"{where}:{line}: the face {name} imports {target}; faces call runner.flow")
            theirs = layer(target)
            if own is None or theirs is None or target in ("runner",):
                continue
            if theirs > own:
                found.append(f"{where}:{line}: {name} (layer {own}) imports {target} (layer {theirs}), a higher layer")
            elif theirs == own and own == LAYERS["cli"] and name not in TOP and _package(name) != _package(target):
                found.append(f"{where}:{line}: the face {_package(name)} imports the other face ({target})")
    found += [f"import circle: {' -> '.join(c)}" for c in _cycles(graph)]
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each strongly connected group of modules (a circle) once, found with Tarjan's algorithm."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            # a package __init__ importing its own modules is not a circle of the walk
            real = [m for m in group if not any(m != o and o.startswith(m + ".") for o in group)]
            if len(real) > 1:
                circles.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return circles


def recipe_violations(pack: Path) -> list[str]:
    """Recipe imports outside what a recipe may use (the model, the stage model and the kit)."""
    found = []
    for path in sorted(pack.glob("*/recipe.py")):
        for target, line in imports(path, f"pack.{path.parent.name}.recipe"):
            if target.startswith("runner") and target != "runner" and not target.startswith(RECIPE_ALLOWED):
                found.append(f"{path}:{line}: a recipe imports {target} (allowed: {', '.join(RECIPE_ALLOWED)})")
    return found
