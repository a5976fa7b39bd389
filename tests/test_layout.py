"""The import graph, read from the source: data and imports flow one way (common/__init__.py)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parent.parent
PACKAGES = ("common", "workers", "index", "master", "steps", "config")
# What each folder may import of ours (beside itself).
ALLOWED = {
    "common": set(),
    "workers": {"common"},
    "index": {"common"},
    "master": {"common", "index"},
    "steps": {"common", "index", "master"},
    "config": {"common", "index", "master", "steps"},
}


def imports_of(path: Path) -> set[str]:
    """The wheelwright modules a file imports, at any depth of it (a function's own imports too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name.startswith("wheelwright.")}


def modules(package: str) -> list[Path]:
    return sorted((TOP / package).glob("*.py"))


@pytest.mark.parametrize("package", PACKAGES)
def test_each_folder_imports_only_the_layers_below_it(package):
    crossing = {
        f"{path.relative_to(TOP)} imports {name}"
        for path in modules(package)
        for name in imports_of(path)
        if name.split(".")[1] not in ALLOWED[package] | {package}
    }
    assert not crossing, "\n".join(sorted(crossing))


def test_nothing_imports_the_command_but_its_entry_point():
    importers = {
        str(path.relative_to(TOP))
        for package in (*PACKAGES, "bench")
        for path in modules(package)
        if any(name.startswith("wheelwright.master.cli") for name in imports_of(path))
    }
    assert importers == {"master/entry.py"}


def test_the_layout_test_sees_every_folder_and_an_import_across():
    # It reads real imports: workers' tools take the sandbox from common.
    assert "wheelwright.common.sandbox" in imports_of(TOP / "workers" / "build_wheel.py")
    assert {p.name for p in TOP.iterdir() if (p / "__init__.py").exists()} >= set(PACKAGES)
