"""The package's shape, read from the source: one package under src/, folders by job, and imports
that flow one way (src/wheelwright/__init__.py lists the folders in their order)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parent.parent / "src" / "wheelwright"
# Each folder, and what it may import of ours beside itself: only folders listed before it.
ALLOWED = {
    "common": set(),
    "worker": {"common"},
    "indexhost": {"common"},
    "sources": {"common", "indexhost"},
    "farm": {"common", "indexhost", "sources"},
    "bootstrap": {"common", "sources", "farm"},
    "policy": {"common", "sources", "farm", "bootstrap"},
    "publishing": {"common", "indexhost", "farm"},
    "changes": {"common", "policy"},
    "www": {"common", "indexhost", "sources", "farm", "policy"},
    "buildbot_patches": {"common"},
    "cli": {"common", "indexhost", "sources", "farm", "bootstrap", "policy", "publishing"},
    "steps": {
        "common",
        "indexhost",
        "sources",
        "farm",
        "bootstrap",
        "policy",
        "publishing",
        "changes",
        "www",
    },
    "config": set(),  # on top: anything but the command (below)
}
PACKAGES = tuple(ALLOWED)


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
def test_each_folder_imports_only_the_folders_before_it(package):
    allowed = ALLOWED[package] if package != "config" else set(PACKAGES) - {"cli"}
    crossing = {
        f"{path.relative_to(TOP)} imports {name}"
        for path in modules(package)
        for name in imports_of(path)
        if name.split(".")[1] not in allowed | {package}
    }
    assert not crossing, "\n".join(sorted(crossing))


def test_the_order_has_no_cycle():
    order = list(PACKAGES)
    for package, allowed in ALLOWED.items():
        assert all(order.index(other) < order.index(package) for other in allowed), package


def test_nothing_imports_the_command_but_its_entry_point_and_its_reference():
    importers = {
        str(path.relative_to(TOP))
        for package in PACKAGES
        for path in modules(package)
        if any(name.startswith("wheelwright.cli.main") for name in imports_of(path))
    }
    bench = Path(__file__).resolve().parent.parent / "bench"
    assert not any(
        name.startswith("wheelwright.cli.main")
        for path in bench.glob("*.py")
        for name in imports_of(path)
    )
    assert importers == {"cli/entry.py", "cli/reference.py"}  # which documents it


def test_every_folder_is_a_package_that_says_what_it_owns():
    folders = {p.name for p in TOP.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders == set(PACKAGES)
    for package in PACKAGES:
        assert ast.get_docstring(ast.parse((TOP / package / "__init__.py").read_text())), package


def test_no_folder_holds_over_a_quarter_of_the_package():
    lines = {p: sum(len(m.read_text().splitlines()) for m in modules(p)) for p in PACKAGES}
    total = sum(lines.values())
    assert all(n <= total / 4 for n in lines.values()), lines


def test_the_layout_test_sees_an_import_across():
    # It reads real imports: the worker's tools take the sandbox from common.
    assert "wheelwright.common.sandbox" in imports_of(TOP / "worker" / "build_wheel.py")


def test_no_function_runs_over_a_hundred_lines():
    long = [
        f"{path.relative_to(TOP)} {node.name}: {node.end_lineno - node.lineno + 1} lines"
        for path in TOP.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno - node.lineno + 1 > 100
    ]
    assert not long, "\n".join(long)


def test_the_reference_pages_are_made_from_the_code_as_it_is():
    from wheelwright.cli.reference import (
        cli_page,
        farm_json_page,
        package_settings_page,
        package_settings_schema,
    )

    docs = TOP.parent.parent / "docs" / "reference"
    remake = "python -m wheelwright.cli.reference docs/reference"
    assert (docs / "cli.md").read_text() == cli_page(), f"the command changed: {remake}"
    assert (docs / "farm-json.md").read_text() == farm_json_page(), f"Farm changed: {remake}"
    assert (docs / "package-settings.md").read_text() == package_settings_page(), remake
    assert (docs / "package-settings.schema.json").read_text() == package_settings_schema()
