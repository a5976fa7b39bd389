"""Per-package settings and patches, in fromager's layout so its users can bring theirs:

    overrides/settings/<name>.yaml               settings for every version
    overrides/patches/<name>/*.patch             patches for every version
    overrides/patches/<name>-<version>/*.patch   patches for one version

<name> is the canonical project name, with `-` or `_` (fromager writes `_`). Patches are applied
in the order of their file names, across both folders.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from packaging.utils import InvalidName, canonicalize_name
from packaging.version import InvalidVersion, Version

from wheelwright.common.runtime import FRONTENDS
from wheelwright.farm.settings import BUMPS
from wheelwright.policy.lastgood import ConfigError, read_last_good


class SettingsError(ConfigError):
    pass


# Debian policy's package names (5.6.1): lowercase, digits, + - . and at least two characters.
DEBIAN_PACKAGE = re.compile(r"[a-z0-9][a-z0-9+.-]+")


@dataclass(frozen=True)
class PackageSettings:
    build_frontend: str = "build"
    imports: list[str] = field(default_factory=list)
    # The worker image with the system build tools the package needs (container pools).
    container_image: str | None = None
    # Where the source comes from when not an sdist upstream: {git: URL, ref: "v${version}"}.
    source: dict | None = None
    # New upstream releases: pre-releases too, and the cooldown (seconds; None: the farm's).
    prereleases: bool = False
    min_release_age: float | None = None
    # How a rebuild of a version we have is published (policy/bumps.py); None: the farm's default.
    rebuild_bump: str | None = None
    # Repair (auditwheel): off, with the reason the build page shows; or sonames left out of the
    # wheel (libraries its users get from the system).
    repair_off: str | None = None
    repair_exclude: list[str] = field(default_factory=list)
    # Debian packages the build needs on the worker (compilers, libraries' -dev packages): no
    # upstream metadata names them. The local pool checks them before the build.
    system_requirements: list[str] = field(default_factory=list)
    # Build requirements taken from the system, besides the farm's (PyPI name -> command).
    system_tools: dict[str, str] = field(default_factory=dict)


def _names(project: str) -> list[str]:
    name = canonicalize_name(project)
    return sorted({name, name.replace("-", "_")})


def settings_for(farm, project: str) -> tuple[PackageSettings, str | None]:
    """The package's settings for a build, and a warning when its file is broken and the last
    good version stands in."""
    path = settings_file(farm.settings_dir, project)
    if path is None:
        return PackageSettings(), None
    return read_last_good(path, _parse, farm.last_good_dir / "settings" / path.name)


def settings_file(settings_dir: Path, project: str) -> Path | None:
    for name in _names(project):
        path = settings_dir / "settings" / f"{name}.yaml"
        if path.exists():
            return path
    return None


def _parse(path: Path) -> PackageSettings:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise SettingsError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: expected a mapping of settings")
    known = PackageSettings.__dataclass_fields__
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise SettingsError(
            f"{path}: unknown setting {', '.join(unknown)} (known: {', '.join(known)})"
        )
    settings = PackageSettings(**data)
    if settings.build_frontend not in FRONTENDS:
        raise SettingsError(f"{path}: build_frontend must be one of {', '.join(FRONTENDS)}")
    if not isinstance(settings.prereleases, bool):
        raise SettingsError(f"{path}: prereleases must be true or false")
    if settings.min_release_age is not None and not isinstance(
        settings.min_release_age, (int, float)
    ):
        raise SettingsError(f"{path}: min_release_age must be a number of seconds")
    if settings.rebuild_bump not in (None, *BUMPS):
        raise SettingsError(f"{path}: rebuild_bump must be one of {', '.join(BUMPS)}")
    if not all(isinstance(m, str) and m.replace(".", "").isidentifier() for m in settings.imports):
        raise SettingsError(f"{path}: imports must be a list of module names")
    if settings.repair_off is not None and not (
        isinstance(settings.repair_off, str) and settings.repair_off.strip()
    ):
        raise SettingsError(f"{path}: repair_off must say why repair is off")
    if not (
        isinstance(settings.repair_exclude, list)
        and all(isinstance(n, str) and n and "/" not in n for n in settings.repair_exclude)
    ):
        raise SettingsError(f"{path}: repair_exclude must be a list of sonames (libfoo.so.1)")
    if not (
        isinstance(settings.system_requirements, list)
        and all(
            isinstance(n, str) and DEBIAN_PACKAGE.fullmatch(n) for n in settings.system_requirements
        )
    ):
        raise SettingsError(f"{path}: system_requirements must be a list of Debian package names")
    if not isinstance(settings.system_tools, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v and "/" not in v
        for k, v in settings.system_tools.items()
    ):
        raise SettingsError(f"{path}: system_tools maps PyPI names to commands: {{cmake: cmake}}")
    source = settings.source
    git = (
        isinstance(source, dict)
        and set(source) <= {"git", "ref"}
        and isinstance(source.get("git"), str)
        and isinstance(source.get("ref", ""), str)
    )
    url = isinstance(source, dict) and set(source) == {"url"} and isinstance(source["url"], str)
    if source is not None and not (git or url):
        raise SettingsError(
            f'{path}: source must be {{git: URL, ref: "v${{version}}"}} (ref defaults to ${{version}}) '
            'or {url: "https://.../${version}.tar.gz"}'
        )
    return settings


def patches_for(settings_dir: Path, project: str, version: str) -> list[Path]:
    patches_dir = settings_dir / "patches"
    folders = []
    for name in _names(project):
        folders.append(patches_dir / name)
        folders += [
            d
            for d in patches_dir.glob(f"{name}-*")
            if _is_version(d.name[len(name) + 1 :], version)
        ]
    patches = [p for folder in folders if folder.is_dir() for p in folder.glob("*.patch")]
    return sorted(patches, key=lambda p: (p.name, str(p)))


# A hunk of a unified, context or normal diff: what `patch` needs to find at least one of.
HUNK = re.compile(r"^(@@ -\d|\*\*\* \d|\d+(,\d+)?[acd]\d)", re.MULTILINE)


def check_patch(path: Path) -> None:
    """A file in the patches folder that is no diff at all fails before any build time is spent."""
    if not HUNK.search(path.read_text(errors="replace")):
        raise SettingsError(f"{path}:1: not a patch (no diff hunk in it)")


def owner(path: Path, settings_dir: Path) -> tuple[str, str | None] | None:
    """The (project, version or None) a settings file or patches folder belongs to."""
    relative = path.relative_to(settings_dir)
    if relative.parts[0] == "settings" and path.suffix == ".yaml":
        return _project(path.stem), None
    if relative.parts[0] == "patches" and len(relative.parts) == 2:
        name, _, version = relative.parts[1].rpartition("-")
        try:
            if name:
                return _project(name), str(Version(version))
        except (InvalidVersion, InvalidName):
            pass
        return _project(relative.parts[1]), None
    return None


def _project(name: str) -> str:
    return canonicalize_name(name, validate=True)


def _is_version(text: str, version: str) -> bool:
    try:
        return Version(text) == Version(version)
    except ValueError:
        return False
