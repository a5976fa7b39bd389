"""What a rebuild of a version our index has publishes, by bump kind:

- post:      2.28.2 -> 2.28.2.post1, .post2, ...  (can be pinned and cited; `pip install -U` takes it)
- local:     2.28.2 -> 2.28.2+<label>.1, ...      (`==2.28.2` still matches, and installers prefer it)
- build-tag: 2.28.2 -> wheels with build number 1, 2, ... (the same version)

A bump never takes a version upstream has, or may have: a post-release of a version upstream
ships as a post-release is refused, with what to choose instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from packaging.version import InvalidVersion, Version

from wheelwright.common.lookup import build_number, index_versions, wheels_of
from wheelwright.farm.settings import BUMPS
from wheelwright.sources.upstream import SourceError, upstream_versions


class BumpError(Exception):
    pass


@dataclass(frozen=True)
class Bump:
    kind: str
    number: int
    version: str  # the version the rebuilt wheels carry
    build_tag: int = 0

    def as_properties(self) -> dict:
        return {
            "bump": self.kind,
            "bump_number": self.number,
            "wheel_version": self.version,
            "build_tag": self.build_tag,
        }


def _versions(texts) -> list[Version]:
    found = []
    for text in texts:
        try:
            found.append(Version(text))
        except InvalidVersion:
            continue
    return found


def next_bump(
    kind: str, version: str, ours: list[str], build_tags: list[int], upstream: list[str], label: str
) -> Bump:
    """The bump of a rebuild of version, given the versions our index lists (ours), the build
    numbers of its wheels there, and the versions upstream has."""
    if kind not in BUMPS:
        raise BumpError(f"unknown bump {kind!r}; choose one of {', '.join(BUMPS)}")
    base = Version(version)
    if kind == "build-tag":
        return Bump(kind, max(build_tags) + 1, str(base), max(build_tags) + 1)
    if base.local:
        raise BumpError(f"{version} has a local label already; rebuild it with --bump build-tag")
    if kind == "local":
        numbers = [_local_number(v, base, label) for v in _versions(ours)]
        number = max([n for n in numbers if n is not None], default=0) + 1
        return Bump(kind, number, f"{base}+{label}.{number}")
    instead = "use --bump local or --bump build-tag"
    if base.is_postrelease or base.is_devrelease:
        kind_of = "post" if base.is_postrelease else "development"
        raise BumpError(
            f"{version} is a {kind_of} release upstream; it has no post-release of its own: {instead}"
        )
    posts = [v.post or 0 for v in _versions(ours) if _post_of(v, base)]
    number = max(posts, default=0) + 1
    bumped = f"{base}.post{number}"
    # Upstream's own post-releases of this version, now or later, are theirs to number.
    theirs = sorted({v for v in _versions(upstream) if _post_of(v, base)})
    if theirs:
        raise BumpError(
            f"{bumped} would collide with upstream, which publishes {', '.join(map(str, theirs))}: "
            f"{instead}"
        )
    return Bump(kind, number, bumped)


def _post_of(candidate: Version, base: Version) -> bool:
    """Whether candidate is a post-release of base (the same release, pre-release and epoch)."""
    return (
        candidate.post is not None
        and candidate.release == base.release
        and candidate.pre == base.pre
        and candidate.epoch == base.epoch
    )


def _local_number(candidate: Version, base: Version, label: str) -> int | None:
    if candidate.public != base.public or not candidate.local:
        return None
    name, _, number = candidate.local.partition(".")
    return int(number) if name == label.lower() and number.isdigit() else None


def plan_rebuild(
    farm, project: str, version: str, kind: str | None = None
) -> tuple[Bump, str | None]:
    """The bump of a rebuild of project==version: of the kind asked for, else the package's
    setting, else the farm's; and a warning when the package's settings file is broken and its
    last good version stands in. BumpError when it cannot be rebuilt so."""
    from wheelwright.policy.package_settings import (
        settings_for,  # here: settings.py reads the farm's settings, as bumps do
    )

    settings, warning = settings_for(farm, project)
    kind = kind or settings.rebuild_bump or farm.rebuild_bump
    build_tags = [
        build_number(entry["filename"]) for entry in wheels_of(farm.index_url, project, version)
    ]
    if not build_tags:
        raise BumpError(f"our index has no wheel of {project} {version} to rebuild: build it")
    try:
        upstream = upstream_versions(farm.upstream, project) if kind == "post" else []
    except (SourceError, OSError) as exc:
        raise BumpError(
            f"cannot tell whether upstream has post-releases of {project} {version}: {exc}"
        ) from None
    return next_bump(
        kind,
        version,
        index_versions(farm.index_url, project) or [],
        build_tags,
        upstream,
        farm.local_label,
    ), warning
