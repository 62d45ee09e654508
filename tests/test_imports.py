"""The import rules of the whole tree.

Statically, from every module of arena/, metrics/, generation/ and training/ parsed with
:mod:`ast` (imports at module level and the lazy ones inside functions): no import circle,
the layers point down (``arena.web`` is reached only from web/ and cli/, the leaderboard never
imports web/, the demo only from cli/ and demo/, metrics never imports the service), no
module over 600 lines. At run time: the CLI, the server and ``metrics`` pull in no ML stack.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("arena", "metrics", "generation", "training")
HEAVY = ("torch", "diffusers", "onnxruntime", "open_clip", "transformers")
MAX_LINES = 600


@dataclass(frozen=True)
class Edge:
    """``source`` imports ``target`` at ``path:line``; ``lazy`` when inside a function."""

    source: str
    target: str
    path: str
    line: int
    lazy: bool

    def __str__(self) -> str:
        return f"{self.path}:{self.line} {self.source} -> {self.target}" + (
            " (lazy)" if self.lazy else "")


def _module_files() -> dict[str, Path]:
    files = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


MODULES = _module_files()


def _is_package(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


def _owner(name: str) -> str | None:
    """The module of ours that importing ``name`` runs last (its longest known prefix)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in MODULES:
            return candidate
    return None


def _imported_names(node: ast.Import | ast.ImportFrom, module: str) -> Iterator[str]:
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    base = node.module or ""
    if node.level:  # relative: from the module's package, up ``level - 1`` packages
        package = module if _is_package(module) else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{base}" if base else package
    for alias in node.names:  # `from pkg import submodule` imports the submodule
        yield f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base


def _nodes(tree: ast.AST, lazy: bool = False) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement, and whether a function body holds it (runs only when called).
    Imports under ``if TYPE_CHECKING:`` never run and are left out."""
    for child in ast.iter_child_nodes(tree):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child, lazy
        elif isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
            yield from _nodes(ast.Module(body=child.orelse, type_ignores=[]), lazy)
        else:
            inner = lazy or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            yield from _nodes(child, inner)


def _external(tree: ast.AST, module: str) -> Iterator[tuple[str, int, bool]]:
    """Top-level names of every imported distribution, with line and laziness."""
    for node, lazy in _nodes(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            continue
        for name in _imported_names(node, module):
            yield name.split(".")[0], node.lineno, lazy


def _graph() -> tuple[list[Edge], dict[str, list[tuple[str, int, bool]]]]:
    edges: list[Edge] = []
    external: dict[str, list[tuple[str, int, bool]]] = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(), str(path))
        rel = str(path.relative_to(ROOT))
        for node, lazy in _nodes(tree):
            for name in _imported_names(node, module):
                target = _owner(name)
                if target is not None and target != module:
                    edges.append(Edge(module, target, rel, node.lineno, lazy))
        external[module] = list(_external(tree, module))
    return edges, external


EDGES, EXTERNAL = _graph()


def _cycles(edges: list[Edge]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan's algorithm)."""
    succ: dict[str, set[str]] = {}
    for e in edges:
        succ.setdefault(e.source, set()).add(e.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(succ.get(v, ())):
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
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(MODULES):
        if v not in index:
            visit(v)
    return groups


def _inside(module: str, *packages: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def test_the_graph_sees_module_level_and_lazy_imports() -> None:
    """The probe itself: known edges of both kinds are found, so an empty answer means
    something."""
    assert len(MODULES) > 80
    found = {(e.source, e.target, e.lazy) for e in EDGES}
    assert ("arena.web.app", "arena.web.voting_api", False) in found
    assert any(lazy for _, _, lazy in found)
    two = [Edge("arena.db", "arena.models", "x", 1, False),
           Edge("arena.models", "arena.db", "y", 2, True)]
    assert _cycles(two) == [["arena.db", "arena.models"]]


def test_no_import_circles() -> None:
    circles = _cycles(EDGES)
    where = sorted({str(e) for group in circles for e in EDGES
                    if e.source in group and e.target in group})
    assert circles == [], "\n".join(where)


@pytest.mark.parametrize(("imported", "allowed"), [
    ("arena.web", ("arena.web", "arena.cli")),
    ("arena.demo", ("arena.demo", "arena.cli")),
    # The hooks read a board straight from a database URL, as the CLI does.
    ("arena.leaderboard", ("arena.leaderboard", "arena.web", "arena.cli", "training")),
])
def test_layers_point_down(imported: str, allowed: tuple[str, ...]) -> None:
    wrong = sorted({str(e) for e in EDGES
                    if _inside(e.target, imported) and not _inside(e.source, *allowed)})
    assert wrong == [], "\n".join(wrong)


def test_leaderboard_never_imports_web() -> None:
    wrong = sorted({str(e) for e in EDGES
                    if _inside(e.source, "arena.leaderboard") and _inside(e.target, "arena.web")})
    assert wrong == [], "\n".join(wrong)


def test_metrics_is_a_pure_library() -> None:
    """metrics/ never imports the service, and loads no ML stack, database or web framework
    when imported (only inside the function that needs one)."""
    service = sorted({str(e) for e in EDGES
                      if _inside(e.source, "metrics") and not _inside(e.target, "metrics")})
    assert service == [], "\n".join(service)
    forbidden = {*HEAVY, "sqlalchemy", "fastapi", "gradio", "starlette"}
    eager = [f"{MODULES[m].relative_to(ROOT)}:{line} imports {name}"
             for m, found in EXTERNAL.items() if _inside(m, "metrics")
             for name, line, lazy in found if name in forbidden and not lazy]
    assert eager == [], "\n".join(eager)


def test_no_module_over_600_lines() -> None:
    long = {str(p.relative_to(ROOT)): n for p in MODULES.values()
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


# Run time: what importing the entry points really loads.

def _imported_modules(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        capture_output=True, text=True, check=True,
    )
    return {line.split("|")[-1].strip().split(".")[0] for line in out.stderr.splitlines()
            if line.startswith("import time:")}


def test_cli_import_pulls_no_ml_stack() -> None:
    modules = _imported_modules("import arena.cli.main")
    assert "arena" in modules  # the probe sees our own imports
    assert not modules & set(HEAVY), modules & set(HEAVY)


def test_every_metrics_module_imports_without_ml_stack_or_service() -> None:
    names = sorted(m for m in MODULES if _inside(m, "metrics"))
    modules = _imported_modules("; ".join(f"import {m}" for m in names))
    assert "metrics" in modules
    assert not modules & {*HEAVY, "arena", "sqlalchemy", "fastapi", "gradio"}


def test_help_runs_without_ml_stack() -> None:
    code = (
        "import sys; from arena.cli.main import app\n"
        "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
        f"bad = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_serving_app_pulls_no_ml_stack(tmp_path: Path) -> None:
    """What `arena serve` builds (API + Gradio UI) imports none of the heavy stacks."""
    code = (
        "import sys\nfrom arena.web.app import create_app\nfrom arena.settings import Settings\n"
        f"create_app(Settings(home={str(tmp_path)!r}))\n"
        f"bad = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
