"""Bootstrap: a project and everything it needs to build and install, built bottom-up.

The tree is read from the sdists themselves, on the master: `build-system.requires` from
pyproject.toml (PEP 517's default where there is none) and `Requires-Dist` from PKG-INFO, with
markers evaluated for the builders' Python. What our index already satisfies is not built again.
A requirement the backend asks for only when run (`get_requires_for_build_wheel`) is not seen
here: its build fails with it named and it goes to the review queue, as any build's would.

Each package is forced as soon as everything it needs is published, so independent branches
build side by side on as many workers as the farm has; a failure skips what needs it.
"""

from __future__ import annotations

import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from packaging.markers import default_environment
from packaging.metadata import Metadata
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from wheelwright.index.lookup import index_versions, unsatisfied
from wheelwright.index.upstream import SourceError, download_verified, find_sdist

try:
    import tomllib
except ImportError:  # Python 3.10: build's own dependency
    import tomli as tomllib

# PEP 517: a project with no [build-system] is built with setuptools.
DEFAULT_BUILD_REQUIRES = ["setuptools>=40.8.0"]


class BootstrapError(Exception):
    pass


@dataclass
class Node:
    project: str
    version: str
    needs: set[str] = field(default_factory=set)


def _top_level(path: Path, names: tuple[str, ...]) -> dict[str, bytes]:
    """Those files of the sdist's top folder (whatever the folder is called), read, not unpacked."""
    if path.name.endswith(".zip"):
        archive = zipfile.ZipFile(path)
        members, read = archive.namelist(), archive.read
    else:
        archive = tarfile.open(path)
        members, read = archive.getnames(), lambda member: archive.extractfile(member).read()
    with archive:
        return {m.split("/")[1]: read(m) for m in members if m.count("/") == 1 and m.split("/")[1] in names}


def sdist_requirements(path: Path) -> tuple[list[str], list[str]]:
    """(build requirements, Requires-Dist) as the sdist states them."""
    try:
        read = _top_level(path, ("PKG-INFO", "pyproject.toml"))
        pyproject = tomllib.loads(read["pyproject.toml"].decode()) if "pyproject.toml" in read else {}
    except (tarfile.TarError, zipfile.BadZipFile, AttributeError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise BootstrapError(f"{path.name}: {exc}") from None
    if "PKG-INFO" not in read:
        raise BootstrapError(f"{path.name} has no PKG-INFO in its top folder")
    build = pyproject.get("build-system", {}).get("requires", DEFAULT_BUILD_REQUIRES)
    meta = Metadata.from_email(read["PKG-INFO"], validate=False)
    return list(build), [str(r) for r in meta.requires_dist or []]


def applicable(requirements: list[str], environment: dict, extras: set[str]) -> list[Requirement]:
    found = []
    for text in requirements:
        requirement = Requirement(text)
        if requirement.marker is None or any(requirement.marker.evaluate({**environment, "extra": e})
                                             for e in extras | {""}):
            found.append(requirement)
    return found


def plan(farm, root: Requirement, environment: dict | None = None) -> dict[str, Node]:
    """The packages to build for root, each with the projects it needs built first."""
    environment = environment or default_environment()
    nodes: dict[str, Node] = {}
    chosen: dict[str, Version] = {}

    def visit(requirement: Requirement, path: list[str]) -> str | None:
        project = canonicalize_name(requirement.name)
        if project in path:
            raise BootstrapError("dependency cycle: " + " -> ".join([*path[path.index(project):], project]))
        if project in chosen:
            if not requirement.specifier.contains(chosen[project], prereleases=True):
                raise BootstrapError(f"{requirement} (needed by {path[-1]}) conflicts with {project} {chosen[project]}")
            return project if project in nodes else None
        versions = index_versions(farm.index_url, project) or []
        if not unsatisfied(requirement, versions):
            chosen[project] = max((Version(v) for v in versions if requirement.specifier.contains(v, prereleases=True)))
            return None
        try:
            sdist = find_sdist(farm.upstream, project, specifier=requirement.specifier)
        except SourceError as exc:
            raise BootstrapError(f"{requirement}{f' (needed by {path[-1]})' if path else ''}: {exc}") from None
        chosen[project] = Version(sdist.version)
        build, install = sdist_requirements(download_verified(sdist, farm.source_cache))
        node = nodes[project] = Node(project, sdist.version)
        for needed in applicable(build, environment, set()) + applicable(install, environment, requirement.extras):
            if (name := visit(needed, [*path, project])) is not None:
                node.needs.add(name)
        return project

    visit(root, [])
    return nodes


def order(nodes: dict[str, Node]) -> list[str]:
    """The projects in an order that builds what each needs first."""
    done: list[str] = []
    while len(done) < len(nodes):
        done += sorted(p for p, n in nodes.items() if p not in done and n.needs <= set(done))
    return done


def priorities(nodes: dict[str, Node], estimates: dict[str, float]) -> dict[str, float]:
    """For each project, the longest stretch of build time that waits on it (itself included),
    from estimated durations: building the longest stretches first keeps the workers busy to the
    end. A project never built before counts as the median of those that were (or 1)."""
    known = sorted(estimates[p] for p in nodes if p in estimates)
    default = known[len(known) // 2] if known else 1.0
    stretch: dict[str, float] = {}
    for project in reversed(order(nodes)):
        after = max((stretch[p] for p, n in nodes.items() if project in n.needs), default=0)
        stretch[project] = estimates.get(project, default) + after
    return stretch


def lower_bound(durations: dict[str, float], nodes: dict[str, Node], workers: int) -> float:
    """No schedule on `workers` workers finishes sooner: the longest chain of builds that wait for
    one another, or all the work shared out evenly."""
    finish: dict[str, float] = {}
    for project in order(nodes):
        finish[project] = durations[project] + max((finish[n] for n in nodes[project].needs), default=0)
    return max(max(finish.values(), default=0), sum(durations.values()) / workers)
