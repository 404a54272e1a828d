"""The package's layers (docs/ARCHITECTURE.md): no module imports one above it, and the core does no I/O."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest

PACKAGE: Final = Path(__file__).resolve().parents[2] / "kafka_ws_trio"

#: Each part of the package and its layer; a module may import parts of lower layers only
#: (and, of course, modules of its own part).
LAYERS: Final = {
    "_pb": 0,
    "_version": 0,
    "_proto": 1,
    "_config": 1,
    "_ports": 2,
    "_auth": 2,
    "_runtime": 2,
    "_logs": 2,
    "_transport": 3,
    "_streaming": 3,
    "_producing": 3,
    "_http": 4,
    "_session": 4,
    "_kafka": 4,
    "_ops": 4,
    "_server": 5,
    "client": 5,
    "_cli": 6,
    "_admin_cli": 5,
    "__init__": 6,
    "testing": 7,
}
#: Upward imports allowed, and why.
EXCEPTIONS: Final = {
    ("_cli", "testing"): "the `broker` command, imported only when it runs (tests/unit/test_cli_imports.py)",
}
#: Imports that would mean I/O (or a Kafka client) in the sans-IO core.
IO_MODULES: Final = frozenset({"trio", "trio_websocket", "wsproto", "kafka", "socket", "ssl", "os", "asyncio", "h11"})


def part_of(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0].removesuffix(".py")


def imports(path: Path) -> Iterator[tuple[str, int]]:
    """(imported name, line) for every import; relative ones resolved to the package's top-level part."""
    tree = ast.parse(path.read_text(), str(path))
    depth = len(path.relative_to(PACKAGE).parts) - 1  # folders between the package and the file
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module == "kafka_ws_trio":  # from kafka_ws_trio import _session
                for alias in node.names:
                    yield "kafka_ws_trio." + alias.name, node.lineno
            elif node.level == 0:
                yield node.module or "", node.lineno
            elif node.level > depth:  # reaches the package's top: names a part
                target = node.module or ""
                if target:
                    yield "kafka_ws_trio." + target, node.lineno
                else:
                    for alias in node.names:
                        yield "kafka_ws_trio." + alias.name, node.lineno


MODULES: Final = sorted(p for p in PACKAGE.rglob("*.py") if "_pb" not in p.parts)


def test_every_part_of_the_package_has_a_layer() -> None:
    parts = {part_of(path) for path in PACKAGE.rglob("*.py")}
    assert parts <= LAYERS.keys(), f"give {sorted(parts - LAYERS.keys())} a layer here and in docs/ARCHITECTURE.md"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_one_above_it(path: Path) -> None:
    part = part_of(path)
    for name, line in imports(path):
        if not name.startswith("kafka_ws_trio."):
            continue
        target = name.split(".")[1]
        if target == part or (part, target) in EXCEPTIONS:
            continue
        assert LAYERS[target] < LAYERS[part], f"{path.name}:{line}: {part} (layer {LAYERS[part]}) imports {target}"


@pytest.mark.parametrize("path", sorted((PACKAGE / "_proto").glob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_the_sans_io_core_does_no_io(path: Path) -> None:
    for name, line in imports(path):
        assert name.split(".")[0] not in IO_MODULES, f"{path.name}:{line} imports {name}"


def test_the_session_and_the_kafka_edge_do_not_know_each_other() -> None:
    for part, other in (("_session", "_kafka"), ("_kafka", "_session")):
        paths = [PACKAGE / f"{part}.py"] if (PACKAGE / f"{part}.py").exists() else list((PACKAGE / part).glob("*.py"))
        for path in paths:
            for name, line in imports(path):
                assert not name.startswith(f"kafka_ws_trio.{other}"), f"{path.name}:{line} imports {name}"
