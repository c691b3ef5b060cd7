"""The shape of the code, read from the source: `protocol/` is pure (no I/O library, no other
package of ours), and no first-party module imports another that imports it back (imports
under `if TYPE_CHECKING:` only name types and are left out)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("protocol", "peer_agent", "signaling", "launcher", "demo", "bench")
# What a pure rule must never import: event loops, networks, storage, web frameworks.
IMPURE = {"asyncio", "aiortc", "aioice", "aiohttp", "socketio", "engineio", "flask",
          "flask_socketio", "sqlalchemy", "sqlite3", "socket", "requests", "subprocess",
          "threading", "peer_agent", "signaling", "launcher", "demo", "bench"}


def modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _type_checking_block(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def runtime_imports(name: str, path: Path) -> Iterator[str]:
    """The modules `name` imports when it runs (module level, functions included), resolved
    to absolute names; `from x import y` yields `x.y` too, for when y is a module."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    stack: list[ast.AST] = [ast.parse(path.read_text(), str(path))]
    while stack:
        node = stack.pop()
        if _type_checking_block(node):
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            yield base
            for alias in node.names:
                yield f"{base}.{alias.name}"
        stack.extend(ast.iter_child_nodes(node))


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: {m for m in runtime_imports(name, path) if m in found and m != name}
            for name, path in found.items()}


def test_protocol_imports_nothing_impure() -> None:
    offenders = {}
    for name, path in modules().items():
        if name.split(".")[0] != "protocol":
            continue
        bad = {m for m in runtime_imports(name, path) if m.split(".")[0] in IMPURE}
        if bad:
            offenders[name] = sorted(bad)
    assert offenders == {}


def test_no_first_party_import_cycle() -> None:
    edges = graph()
    assert "peer_agent.device" in edges and "peer_agent.agent" in edges["peer_agent.device"]
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for start in sorted(edges):
        if start not in state:
            visit(start, [start])
    # A package's __init__ re-exporting its own modules is not a cycle between modules.
    real = [c for c in cycles if len({m.split(".")[0] for m in c}) > 1
            or not any(m == m.split(".")[0] for m in c)]
    assert real == []


# "No module over about 400 lines" (issue 14). Modules still over it, each with what is to
# be done; a module leaves this list when it is split.
MOST_LINES = 420
LONG_MODULES: dict[str, str] = {}


def test_no_module_is_over_about_400_lines() -> None:
    long = {name: len(path.read_text().splitlines()) for name, path in modules().items()
            if name not in LONG_MODULES and len(path.read_text().splitlines()) > MOST_LINES}
    assert long == {}
