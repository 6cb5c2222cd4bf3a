"""The house keeps its layers: imports run only downwards, no cycle, functions and modules stay readable.

Every import counts, also those inside a function body (a lazy import is still a dependency).

    protocol/                       the wire contract             imports nothing of ours
    common/                         the shared base               protocol
    device/  broker/  provisioning/ the three sides               common, protocol; never each other
    hailong/                        the command and the demo      anything; imported by nothing
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("protocol", "common", "device", "broker", "provisioning", "hailong")
MAY_IMPORT = {
    "protocol": {"protocol"},
    "common": {"common", "protocol"},
    "device": {"device", "common", "protocol"},
    "broker": {"broker", "common", "protocol"},
    "provisioning": {"provisioning", "common", "protocol"},
    "hailong": set(PACKAGES),
}
MAX_FUNCTION_LINES = 100
MAX_MODULE_LINES = 500
# A module may be longer when its docstring says why, in a line starting with this.
LONG_REASON = "Long on purpose:"


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = modules()


def imports_of(name: str, path: Path) -> set[str]:
    """Our modules that `name` imports anywhere in its file, resolved to the longest known module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets.add(base)
            targets.update(f"{base}.{alias.name}" for alias in node.names)
    ours = set()
    for target in targets:
        parts = target.split(".")
        for i in range(len(parts), 0, -1):
            candidate = ".".join(parts[:i])
            if candidate in MODULES:
                ours.add(candidate)
                break
    ours.discard(name)
    return ours


GRAPH = {name: imports_of(name, path) for name, path in MODULES.items()}


def test_the_layers_are_the_folders():
    wrong = sorted(f"{name} imports {target}" for name, targets in GRAPH.items() for target in targets
                   if target.split(".")[0] not in MAY_IMPORT[name.split(".")[0]])
    assert wrong == []


def test_no_import_cycle():
    # A package's __init__ importing its own submodules is how a package exposes them, not a cycle.
    def edges(name: str) -> set[str]:
        return {t for t in GRAPH[name] if not (name in MODULES and t.startswith(name + ".")
                                                and MODULES[name].name == "__init__.py")}

    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(name: str, stack: list[str]) -> None:
        state[name] = 1
        stack.append(name)
        for target in sorted(edges(name)):
            if state.get(target) == 1:
                cycles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target, stack)
        stack.pop()
        state[name] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name, [])
    assert cycles == []


def test_the_checker_sees_imports_inside_functions(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("def f():\n    from broker.store import Store\n    import device.ledger\n")
    assert {"broker.store", "device.ledger"} <= imports_of("hailong.m", path)


def long_reason(path: Path) -> bool:
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    return any(line.strip().startswith(LONG_REASON) for line in doc.splitlines())


def test_functions_read_at_once():
    long = []
    for name, path in MODULES.items():
        if long_reason(path):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{name}.{node.name}: {lines} lines")
    assert long == []


def test_modules_stay_small_or_say_why():
    long = [f"{name}: {n} lines" for name, path in MODULES.items()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
            and not long_reason(path)]
    assert long == []


@pytest.mark.parametrize("package", PACKAGES)
def test_each_layer_says_what_it_is(package):
    doc = ast.get_docstring(ast.parse((ROOT / package / "__init__.py").read_text(encoding="utf-8")))
    assert doc and len(doc) > 40
