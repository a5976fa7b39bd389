"""Bootstrap: projects and everything they need to build and install, built bottom-up (master side).

The tree is resolved on the master with resolvelib, from what our index has and the sdists
upstream offers: each top-level requirement's install closure is one resolution, and each
package to build gets a resolution of its own for its build requirements (pyproject.toml's
`build-system.requires`, PEP 517's default where there is none), so one tree can hold two
versions of a build backend. Install requirements come from PKG-INFO (or our index's metadata),
with markers evaluated for the builders' Python. A version our index has is preferred: it is not
built again, and it breaks a cycle (as does an in-tree backend, which needs nothing). A cycle
nothing breaks is named. Requirements a backend asks for only when run
(`get_requires_for_build_wheel`) are found by the build that runs it; the driver then plans and
builds them, and that build again.

The plan is kept in fromager's shapes: `graph.json` (node key -> edges) and `build-order.json`.
"""

from __future__ import annotations

import functools
import sys
import tarfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import resolvelib
from packaging.markers import default_environment
from packaging.metadata import Metadata
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from wheelwright.common.bounded import (
    MAX_MEMBERS,
    MAX_METADATA,
    MAX_PYPROJECT,
    TooLarge,
    open_zip,
    tar_member,
    zip_member,
)
from wheelwright.common.lookup import index_versions, wheel_requires
from wheelwright.common.unpack import UnsafeArchive, member_parts
from wheelwright.farm.pools import builders_pythons
from wheelwright.sources.upstream import Sdist, SourceError, download_verified, list_sdists

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: build's own dependency
    import tomli as tomllib

# PEP 517: a project with no [build-system] is built with setuptools.
DEFAULT_BUILD_REQUIRES = ["setuptools>=40.8.0"]


class BootstrapError(Exception):
    pass


class Unsatisfiable(BootstrapError):
    """No versions satisfy a resolution's requirements."""


class Unbuildable(BootstrapError):
    """A release chosen upstream whose own build requirements cannot be had."""

    def __init__(self, project: str, version: str, reason: str):
        super().__init__(f"{project} {version} cannot be built here: {reason}")
        self.project, self.version = project, version


@dataclass
class Node:
    """A package to build: project==version, after the node keys in `needs`."""

    project: str
    version: str
    needs: set[str] = field(default_factory=set)
    sdist: Sdist | None = None
    # fromager's graph edges: (kind, requirement, key) with kind toplevel/install/build-system
    edges: list[tuple[str, str, str]] = field(default_factory=list)
    # The builders it is built on, when not all of the bootstrap's: builders of another Python
    # may have had another release chosen (Requires-Python, markers).
    builders: set[str] = field(default_factory=set)
    # Why a newer release was not taken (its build requirements cannot be had), when one was not.
    fallback: str = ""

    @property
    def key(self) -> str:
        return f"{self.project}=={self.version}"


def _top_level(path: Path, names: tuple[str, ...]) -> dict[str, bytes]:
    """Those files of the sdist's top folder (whatever the folder is called), read, not unpacked:
    a tar only as far as the last of them (a tar has no index; setuptools' own sdist lists 666
    members, its PKG-INFO the 5th). Names are normalised as the unpacking does; each file is read
    to its cap (common/bounded.py), and a tar's headers only so far."""
    caps = {"PKG-INFO": MAX_METADATA, "pyproject.toml": MAX_PYPROJECT}
    found: dict[str, bytes] = {}
    if path.name.endswith(".zip"):
        with open_zip(path) as zf:
            for info in zf.infolist():
                parts = _parts(info.filename)
                if len(parts) == 2 and parts[1] in names and parts[1] not in found:
                    found[parts[1]] = zip_member(zf, info.filename, caps[parts[1]])
        return found
    with tarfile.open(path) as tar:
        for count, member in enumerate(tar):
            if count > MAX_MEMBERS:
                raise TooLarge(f"more than {MAX_MEMBERS} members before its PKG-INFO")
            parts = _parts(member.name)
            if len(parts) == 2 and parts[1] in names and parts[1] not in found:
                found[parts[1]] = tar_member(tar, member, caps[parts[1]])
                if len(found) == len(names):
                    break
    return found


def _parts(name: str) -> tuple[str, ...]:
    try:
        return member_parts(name)
    except UnsafeArchive:
        return ()  # never read here; the unpacking refuses the sdist


def sdist_requirements(path: Path) -> tuple[list[str], list[str]]:
    """(build requirements, Requires-Dist) as the sdist states them."""
    try:
        read = _top_level(path, ("PKG-INFO", "pyproject.toml"))
        pyproject = (
            tomllib.loads(read["pyproject.toml"].decode()) if "pyproject.toml" in read else {}
        )
    except (
        tarfile.TarError,
        zipfile.BadZipFile,
        AttributeError,
        tomllib.TOMLDecodeError,
        UnicodeDecodeError,
        TooLarge,
        EOFError,
    ) as exc:
        raise BootstrapError(f"{path.name}: {exc}") from None
    if "PKG-INFO" not in read:
        raise BootstrapError(f"{path.name} has no PKG-INFO in its top folder")
    build = pyproject.get("build-system", {}).get("requires", DEFAULT_BUILD_REQUIRES)
    meta = Metadata.from_email(read["PKG-INFO"], validate=False)
    return list(build), [str(r) for r in meta.requires_dist or []]


def applicable(
    requirements: list[str], environment: dict, extras: frozenset[str] = frozenset()
) -> list[Requirement]:
    found = []
    for text in requirements:
        requirement = Requirement(text)
        if requirement.marker is None or any(
            requirement.marker.evaluate({**environment, "extra": e}) for e in extras | {""}
        ):
            found.append(requirement)
    return found


@dataclass(frozen=True)
class Candidate:
    project: str
    version: Version
    extras: frozenset[str]
    in_index: bool
    sdist: Sdist | None


class Universe:
    """What can be had: our index's versions (preferred) and upstream's sdists, and what each
    version requires. Looked up once a project, an sdist's requirements read once."""

    def __init__(
        self,
        farm,
        environment: dict,
        constraints: dict[str, SpecifierSet],
        pythons: tuple[str, ...] = (),
    ):
        self.farm = farm
        self.environment = environment
        self.constraints = constraints
        # The builders' Pythons (X.Y): a release upstream is a candidate only if its
        # Requires-Python admits every one of them.
        self.pythons = pythons
        # Releases upstream that cannot be built here, and why: never candidates again.
        self.unbuildable: dict[tuple[str, Version], str] = {}
        # Looked up once each for this universe's life (not the process's: a cache on the class
        # would keep every universe).
        self.index = functools.cache(self._index)
        self.upstream = functools.cache(self._upstream)
        self.sdist_requirements = functools.cache(self._sdist_requirements)

    def _index(self, project: str) -> list[Version]:
        return sorted(
            (Version(v) for v in index_versions(self.farm.index_url, project) or []), reverse=True
        )

    def _upstream(self, project: str) -> list[Sdist]:
        try:
            return list_sdists(self.farm.upstream, project, self.farm.upstream_files_hosts)
        except SourceError:
            return []

    def _sdist_requirements(self, sdist: Sdist) -> tuple[list[str], list[str]]:
        return sdist_requirements(download_verified(sdist, self.farm.source_cache))

    def install_requirements(self, candidate: Candidate) -> list[Requirement]:
        if candidate.in_index:
            requires = wheel_requires(
                self.farm.index_url, candidate.project, str(candidate.version)
            )
        else:
            requires = self.sdist_requirements(candidate.sdist)[1]
        return applicable(requires, self.environment, candidate.extras)

    def build_requirements(self, sdist: Sdist) -> list[Requirement]:
        """What an sdist needs to build, but what the system provides (farm.json system_tools)."""
        system = {canonicalize_name(n) for n in getattr(self.farm, "system_tools", {})}
        return [
            r
            for r in applicable(self.sdist_requirements(sdist)[0], self.environment)
            if canonicalize_name(r.name) not in system
        ]


class _Provider(resolvelib.AbstractProvider):
    def __init__(self, universe: Universe):
        self.universe = universe

    def identify(self, requirement_or_candidate):
        return canonicalize_name(
            getattr(requirement_or_candidate, "project", None) or requirement_or_candidate.name
        )

    def get_preference(self, identifier, resolutions, candidates, information, backtrack_causes):
        return sum(1 for _ in candidates[identifier])

    def find_matches(self, identifier, requirements, incompatibilities):
        wanted = list(requirements[identifier])
        extras = frozenset(e for r in wanted for e in r.extras)
        specifier = self.universe.constraints.get(identifier, SpecifierSet())
        bad = {c.version for c in incompatibilities[identifier]}

        def fits(version: Version) -> bool:
            return (
                version not in bad
                and version in specifier
                and all(version in r.specifier for r in wanted)
            )

        ours = [
            Candidate(identifier, v, extras, True, None)
            for v in self.universe.index(identifier)
            if fits(v)
        ]
        known = {c.version for c in ours}
        theirs = [
            Candidate(identifier, Version(s.version), extras, False, s)
            for s in self.universe.upstream(identifier)
            if fits(Version(s.version))
            and Version(s.version) not in known
            and (identifier, Version(s.version)) not in self.universe.unbuildable
            and all(s.supports(python) for python in self.universe.pythons)
        ]
        return ours + theirs

    def is_satisfied_by(self, requirement, candidate):
        return requirement.specifier.contains(candidate.version, prereleases=True)

    def get_dependencies(self, candidate):
        return self.universe.install_requirements(candidate)


def resolve(universe: Universe, requirements: list[Requirement]) -> dict[str, Candidate]:
    """One consistent set of versions for requirements and all they install."""
    try:
        result = resolvelib.Resolver(_Provider(universe), resolvelib.BaseReporter()).resolve(
            requirements, max_rounds=2000
        )
    except resolvelib.ResolutionImpossible as exc:
        causes = "; ".join(
            f"{c.requirement}"
            + (f" (needed by {c.parent.project} {c.parent.version})" if c.parent else "")
            for c in exc.causes
        )
        raise Unsatisfiable(f"no versions satisfy {causes}") from None
    except resolvelib.ResolutionTooDeep:
        raise BootstrapError(
            "the resolution went too deep; pin some versions with --constraints"
        ) from None
    return dict(result.mapping)


class Planner:
    """Grows the graph: nodes for what resolutions chose that our index lacks, each with the
    resolution of its own build requirements."""

    def __init__(
        self,
        farm,
        environment: dict | None = None,
        constraints: dict[str, SpecifierSet] | None = None,
        nodes: dict[str, Node] | None = None,
        pythons: tuple[str, ...] = (),
    ):
        if environment is None:
            environment = dict(default_environment())
            if pythons:  # markers as the oldest builder reads them
                oldest = min(pythons, key=lambda v: tuple(map(int, v.split("."))))
                environment.update(python_version=oldest, python_full_version=f"{oldest}.0")
        self.universe = Universe(farm, environment, constraints or {}, pythons)
        self.nodes = nodes if nodes is not None else {"": Node("", "0")}

    def add_root(self, root: Requirement) -> None:
        mapping, keys = self._resolve_and_expand([root], [])
        project = canonicalize_name(root.name)
        self.nodes[""].edges.append(
            ("toplevel", str(root), keys.get(project) or f"{project}=={mapping[project].version}")
        )

    def _resolve_and_expand(
        self, requirements: list[Requirement], path: list[str], why: str = ""
    ) -> tuple[dict[str, Candidate], dict[str, str]]:
        """Resolve and grow the graph; a release whose build requirements cannot be had is left
        out and the resolution made again, so the newest release that can be built is taken
        (unless the constraints allow no other: then the error says why)."""
        while True:
            saved = {k: (set(n.needs), list(n.edges)) for k, n in self.nodes.items()}
            try:
                mapping = resolve(self.universe, requirements)
                return mapping, self._expand(mapping, path, why)
            except Unbuildable as exc:
                for key in list(self.nodes):
                    if key in saved:
                        self.nodes[key].needs, self.nodes[key].edges = saved[key]
                    else:
                        del self.nodes[key]
                self.universe.unbuildable[(exc.project, Version(exc.version))] = str(exc)
            except Unsatisfiable as exc:
                if not self.universe.unbuildable:
                    raise
                raise Unsatisfiable(
                    f"{exc}; not taken: {'; '.join(self.universe.unbuildable.values())}"
                ) from None

    def fallbacks(self) -> None:
        """Say on each node planned that a newer release of its project was left out, and why."""
        for node in buildable(self.nodes).values():
            passed = [
                reason
                for (project, version), reason in self.universe.unbuildable.items()
                if project == node.project and version > Version(node.version)
            ]
            node.fallback = "; ".join(passed)

    def add_build_requirements(
        self, key: str, requirements: list[Requirement], kind: str
    ) -> list[str]:
        """Plan what `key` needs to build besides what it had; returns the keys of new nodes."""
        before = set(self.nodes)
        keys = (
            self._resolve_and_expand(
                requirements,
                [key],
                f" (the build environment of {key}: {', '.join(map(str, requirements))})",
            )[1]
            if requirements
            else {}
        )
        node = self.nodes[key]
        for requirement in requirements:
            found = keys.get(canonicalize_name(requirement.name))
            node.edges.append(
                (kind, str(requirement), found or _index_key(self.universe, requirement))
            )
        node.needs |= set(keys.values())
        return sorted(set(self.nodes) - before)

    def _expand(
        self, mapping: dict[str, Candidate], path: list[str], why: str = ""
    ) -> dict[str, str]:
        """Nodes for what a resolution chose that our index lacks; returns project -> node key."""
        keys = {}
        for project, candidate in mapping.items():
            if candidate.in_index:
                continue
            node = Node(project, str(candidate.version), sdist=candidate.sdist)
            keys[project] = node.key
            if node.key in path:
                raise BootstrapError(
                    "build cycle: "
                    + " -> ".join([*path[path.index(node.key) :], node.key])
                    + why
                    + "; no in-tree backend, and no wheel of it in our index to break it"
                )
            if node.key in self.nodes:
                continue
            self.nodes[node.key] = node
            assert candidate.sdist is not None  # a candidate not in our index is an upstream sdist
            requirements = self.universe.build_requirements(candidate.sdist)
            try:
                self.add_build_requirements(node.key, requirements, "build-system")
            except Unsatisfiable as exc:
                raise Unbuildable(project, node.version, f"its build requirements: {exc}") from None
        for project, key in keys.items():
            for requirement in self.universe.install_requirements(mapping[project]):
                dependency = canonicalize_name(requirement.name)
                self.nodes[key].edges.append(
                    (
                        "install",
                        str(requirement),
                        keys.get(dependency) or f"{dependency}=={mapping[dependency].version}",
                    )
                )
                if dependency in keys:
                    self.nodes[key].needs.add(keys[dependency])
        return keys


def plan(
    farm,
    roots: list[Requirement],
    environment: dict | None = None,
    constraints: dict[str, SpecifierSet] | None = None,
    pythons: tuple[str, ...] = (),
) -> dict[str, Node]:
    """The packages to build for roots, each with the node keys it needs built first. Each root
    is resolved on its own, so two versions of one project can both be roots. With pythons (the
    builders' X.Y), only releases whose Requires-Python admits them all are chosen, and markers
    are read for the oldest of them."""
    planner = Planner(farm, environment, constraints, pythons=pythons)
    for root in roots:
        planner.add_root(root)
    planner.fallbacks()
    return planner.nodes


def plan_discovered(
    farm,
    nodes: dict[str, Node],
    key: str,
    requirements: list[str],
    kind: str,
    constraints: dict[str, SpecifierSet],
    builders: Sequence[str] = (),
) -> list[str]:
    """Add to the graph what key's build found it needs (kind "build-backend": asked for by
    get_requires_for_build_wheel; "install": in the wheel's metadata, not the sdist's), for the
    builders key is built on (all of `builders` when it names none)."""
    on = nodes[key].builders
    planner = Planner(
        farm, constraints=constraints, nodes=nodes, pythons=builders_pythons(sorted(on or builders))
    )
    new = planner.add_build_requirements(key, [Requirement(r) for r in requirements], kind)
    for added in new:
        nodes[added].builders = set(on)
    return new


def build_requirements(nodes: dict[str, Node]) -> set[str]:
    """The keys of the nodes that others need in their build environments."""
    return {
        key
        for node in nodes.values()
        for kind, _, key in node.edges
        if kind in ("build-system", "build-backend")
    }


def parse_constraints(text: str) -> dict[str, SpecifierSet]:
    """Constraints (pip's file: one requirement a line, # comments) as specifiers by project."""
    found: dict[str, SpecifierSet] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if line:
            try:
                requirement = Requirement(line)
            except InvalidRequirement as exc:
                raise BootstrapError(f"constraints line {number}: {exc}") from None
            project = canonicalize_name(requirement.name)
            found[project] = found.get(project, SpecifierSet()) & requirement.specifier
    return found


def expand_roots(
    farm, roots: list[Requirement], versions: int, pythons: tuple[str, ...] = ()
) -> list[Requirement]:
    """With versions N, each root becomes the newest N releases upstream that it allows (and
    whose Requires-Python admits the builders' pythons)."""
    if not versions:
        return roots
    expanded = []
    for root in roots:
        matching = [
            s.version
            for s in list_sdists(farm.upstream, root.name, farm.upstream_files_hosts)
            if root.specifier.contains(s.version) and all(s.supports(p) for p in pythons)
        ]
        if not matching:
            raise BootstrapError(f"no sdist upstream matches {root}")
        expanded += [Requirement(f"{root.name}=={v}") for v in matching[:versions]]
    return expanded


def plan_tree(
    farm, requirements: list[str], constraints: str, versions: int, builders: Sequence[str] = ()
):
    """The nodes and their order for the requested roots (in a thread: it reads the network).
    Builders of each Python (X.Y) get the newest releases that fit them: with builders of
    several Pythons, the plans are merged and a node is built on the builders that planned it."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for builder in builders:
        groups.setdefault(builders_pythons([builder]), []).append(builder)
    if len(groups) <= 1:
        nodes = _plan_tree(farm, requirements, constraints, versions, next(iter(groups), ()))
        return nodes, order(nodes)
    merged: dict[str, Node] = {}
    for pythons, group in sorted(groups.items()):
        for key, node in _plan_tree(farm, requirements, constraints, versions, pythons).items():
            if key not in merged:
                merged[key] = node
            else:
                merged[key].needs |= node.needs
                merged[key].edges += [e for e in node.edges if e not in merged[key].edges]
            merged[key].builders |= set(group)
    for node in merged.values():
        if node.builders >= set(builders):
            node.builders = set()  # every builder: the plan says so by saying nothing
    return merged, order(merged)


def _plan_tree(
    farm, requirements: list[str], constraints: str, versions: int, pythons: tuple[str, ...]
) -> dict[str, Node]:
    try:
        roots = expand_roots(farm, [Requirement(r) for r in requirements], versions, pythons)
        return plan(farm, roots, constraints=parse_constraints(constraints), pythons=pythons)
    except (InvalidRequirement, InvalidSpecifier) as exc:
        raise BootstrapError(f"not a requirement: {exc}") from None


def _index_key(universe: Universe, requirement: Requirement) -> str:
    versions = [
        v for v in universe.index(canonicalize_name(requirement.name)) if v in requirement.specifier
    ]
    return f"{canonicalize_name(requirement.name)}=={versions[0]}" if versions else ""


def graph_json(nodes: dict[str, Node]) -> dict:
    """The plan in fromager's graph.json shape (prebuilt nodes are what our index had)."""
    graph = {}
    for node in nodes.values():
        graph[node.key if node.project else ""] = {
            "download_url": node.sdist.url if node.sdist else "",
            "pre_built": False,
            "version": node.version,
            "canonicalized_name": node.project,
            "edges": [{"key": key, "req_type": kind, "req": req} for kind, req, key in node.edges],
        }
        for _, _, key in node.edges:
            if key and key not in nodes and key not in graph:
                project, _, version = key.partition("==")
                graph[key] = {
                    "download_url": "",
                    "pre_built": True,
                    "version": version,
                    "canonicalized_name": project,
                    "edges": [],
                }
    return graph


def planned_json(nodes: dict[str, Node], order_keys: list[str]) -> list[dict]:
    """The plan as the bootstrap's log and `bootstrap --dry-run` show it: each node in order,
    what it waits for, and its builders when not all of them."""
    return [
        {
            "key": key,
            "project": nodes[key].project,
            "version": nodes[key].version,
            "after": sorted(nodes[key].needs),
            **({"builders": sorted(nodes[key].builders)} if nodes[key].builders else {}),
            **({"fallback": nodes[key].fallback} if nodes[key].fallback else {}),
        }
        for key in order_keys
    ]


def build_order_json(nodes: dict[str, Node], order_keys: list[str]) -> list[dict]:
    """The order chosen, in fromager's build-order.json shape."""
    kinds = {key: kind for node in nodes.values() for kind, _, key in node.edges}
    return [
        {
            "type": kinds.get(key, "install"),
            "req": key,
            "constraint": "",
            "dist": nodes[key].project,
            "version": nodes[key].version,
            "prebuilt": False,
            "source_url": getattr(nodes[key].sdist, "url", ""),
            "source_url_type": "sdist",
        }
        for key in order_keys
    ]


def buildable(nodes: dict[str, Node]) -> dict[str, Node]:
    """The nodes to build: all but the root of the graph."""
    return {key: node for key, node in nodes.items() if node.project}


def order(nodes: dict[str, Node]) -> list[str]:
    """The node keys in an order that builds what each needs first."""
    nodes = buildable(nodes)
    done: list[str] = []
    while len(done) < len(nodes):
        ready = sorted(k for k, n in nodes.items() if k not in done and n.needs <= set(done))
        if not ready:
            raise BootstrapError(
                "dependency cycle: " + " -> ".join(_cycle(nodes, set(nodes) - set(done)))
            )
        done += ready
    return done


def _cycle(nodes: dict[str, Node], among: set[str]) -> list[str]:
    """One cycle among the keys that wait on one another, as a path back to its start."""
    path = [min(among)]
    while True:
        step = min(nodes[path[-1]].needs & among)
        if step in path:
            return [*path[path.index(step) :], step]
        path.append(step)


def priorities(nodes: dict[str, Node], estimates: dict[str, float]) -> dict[str, float]:
    """For each node, the longest stretch of build time that waits on it (itself included), from
    estimated durations by project: building the longest stretches first keeps the workers busy
    to the end. A project never built before counts as the median of those that were (or 1)."""
    nodes = buildable(nodes)
    known = sorted(estimates[n.project] for n in nodes.values() if n.project in estimates)
    default = known[len(known) // 2] if known else 1.0
    stretch: dict[str, float] = {}
    for key in reversed(order(nodes)):
        after = max((stretch[k] for k, n in nodes.items() if key in n.needs), default=0)
        stretch[key] = estimates.get(nodes[key].project, default) + after
    return stretch


def lower_bound(durations: dict[str, float], nodes: dict[str, Node], workers: int) -> float:
    """No schedule on `workers` workers finishes sooner: the longest chain of builds that wait for
    one another, or all the work shared out evenly."""
    finish: dict[str, float] = {}
    for project in order(nodes):
        finish[project] = durations[project] + max(
            (finish[n] for n in nodes[project].needs), default=0
        )
    return max(max(finish.values(), default=0), sum(durations.values()) / workers)
