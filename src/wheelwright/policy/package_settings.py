"""Per-package settings and patches, in fromager's layout so its users can bring theirs:

    overrides/settings/<name>.yaml               settings for every version
    overrides/patches/<name>/*.patch             patches for every version
    overrides/patches/<name>-<version>/*.patch   patches for one version

<name> is the canonical project name, with `-` or `_` (fromager writes `_`). Patches are applied
in the order of their file names, across both folders.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from packaging.utils import InvalidName, canonicalize_name
from packaging.version import InvalidVersion, Version
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    ValidationError,
    field_validator,
)

from wheelwright.policy.lastgood import ConfigError, read_last_good


class SettingsError(ConfigError):
    pass


# Debian policy's package names (5.6.1): lowercase, digits, + - . and at least two characters.
DEBIAN_PACKAGE = re.compile(r"[a-z0-9][a-z0-9+.-]+")


Names = list[StrictStr]


class PackageSettings(BaseModel):
    """A package's settings file, checked whole before it is used: unknown keys and wrong types
    are refused naming the file, the key and the value."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # How the wheel is built: the `build` library calling the backend's hooks, or `pip wheel`.
    build_frontend: Literal["build", "pip"] = "build"
    # The modules validate-install-deps imports (default: the wheel's top-level ones).
    imports: Names = Field(default_factory=list)
    # The worker image with the system build tools the package needs (container pools).
    container_image: StrictStr | None = None
    # Where the source comes from when not an sdist upstream: {git: URL, ref: "v${version}"}.
    source: dict | None = None
    # New upstream releases: pre-releases too, and the cooldown (seconds; None: the farm's).
    prereleases: StrictBool = False
    min_release_age: Annotated[float, Field(ge=0)] | None = None
    # How a rebuild of a version we have is published (policy/bumps.py); None: the farm's default.
    rebuild_bump: Literal["post", "local", "build-tag"] | None = None
    # Repair (auditwheel): off, with the reason the build page shows; or sonames left out of the
    # wheel (libraries its users get from the system).
    repair_off: StrictStr | None = None
    repair_exclude: Names = Field(default_factory=list)
    # Debian packages the build needs on the worker (compilers, libraries' -dev packages): no
    # upstream metadata names them. The local pool checks them before the build.
    system_requirements: Names = Field(default_factory=list)
    # Build requirements taken from the system, besides the farm's (PyPI name -> command).
    system_tools: dict[StrictStr, StrictStr] = Field(default_factory=dict)
    # fromager's: variables the build's hooks see, in order, each value's $VAR expanded from the
    # build's environment and the keys before it.
    env: dict[StrictStr, StrictStr] = Field(default_factory=dict)
    # fromager's: PEP 517 config settings given to the backend's hooks (a list: the key repeated).
    config_settings: dict[StrictStr, StrictStr | list[StrictStr]] = Field(default_factory=dict)

    def hook_args(self) -> list[str]:
        """The worker tools' arguments for env and config_settings."""
        args = [a for key, value in self.env.items() for a in ("--package-env", f"{key}={value}")]
        for key, value in self.config_settings.items():
            for one in value if isinstance(value, list) else [value]:
                args += ["--config-setting", f"{key}={one}"]
        return args

    @field_validator("imports")
    @classmethod
    def _modules(cls, value: list[str]) -> list[str]:
        for module in value:
            if not all(part.isidentifier() for part in module.split(".")):
                raise ValueError(f"{module!r} is not a module name")
        return value

    @field_validator("repair_off")
    @classmethod
    def _says_why(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must say why repair is off")
        return value

    @field_validator("repair_exclude")
    @classmethod
    def _sonames(cls, value: list[str]) -> list[str]:
        if not all(name and "/" not in name for name in value):
            raise ValueError("must be sonames (libfoo.so.1), not paths")
        return value

    @field_validator("system_requirements")
    @classmethod
    def _debian(cls, value: list[str]) -> list[str]:
        for name in value:
            if not DEBIAN_PACKAGE.fullmatch(name):
                raise ValueError(f"{name!r} is not a Debian package name")
        return value

    @field_validator("system_tools")
    @classmethod
    def _commands(cls, value: dict[str, str]) -> dict[str, str]:
        if not all(command and "/" not in command for command in value.values()):
            raise ValueError("maps PyPI names to commands on PATH: {cmake: cmake}")
        return value

    @field_validator("env")
    @classmethod
    def _variables(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
                raise ValueError(f"{key!r} is not an environment variable's name")
        return value

    @field_validator("source")
    @classmethod
    def _source(cls, source: dict | None) -> dict | None:
        git = (
            isinstance(source, dict)
            and set(source) <= {"git", "ref"}
            and isinstance(source.get("git"), str)
            and isinstance(source.get("ref", ""), str)
        )
        url = isinstance(source, dict) and set(source) == {"url"} and isinstance(source["url"], str)
        if source is not None and not (git or url):
            raise ValueError(
                'must be {git: URL, ref: "v${version}"} (ref defaults to ${version}) '
                'or {url: "https://.../${version}.tar.gz"}'
            )
        return source


# fromager's package settings this farm does not act on yet: named when a file holds them, so a
# fromager user knows which of theirs would be ignored.
FROMAGER_KEYS = (
    "build_dir",
    "build_options",
    "changelog",
    "download_source",
    "git_options",
    "project_override",
    "resolver_dist",
    "variants",
)


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
    try:
        return PackageSettings(**data)
    except ValidationError as exc:
        raise SettingsError(said_of(path, exc)) from None


def said_of(path: Path, exc: ValidationError) -> str:
    """A settings file's first problem in one line: the file, the key, what is wrong, the value."""
    error = exc.errors()[0]
    loc = error["loc"]
    key = str(loc[0]) + (f"[{loc[1]}]" if len(loc) > 1 and isinstance(loc[1], int) else "")
    if error["type"] == "extra_forbidden":
        top = str(error["loc"][0])
        if top in FROMAGER_KEYS:
            return f"{path}: {top} is a fromager setting this farm does not act on yet"
        close = difflib.get_close_matches(top, PackageSettings.model_fields, n=1)
        hint = (
            f"did you mean {close[0]}?"
            if close
            else f"known: {', '.join(PackageSettings.model_fields)}"
        )
        return f"{path}: unknown setting {top} ({hint})"
    message = error["msg"].removeprefix("Value error, ")
    return f"{path}: {key}: {message} (got {error['input']!r:.80})"


def check_folder(settings_dir: Path) -> list[str]:
    """Every problem of a settings folder, a line each (fromager's `lint`): files that do not
    parse or check, and files and folders named so that no build would ever read them."""
    problems: list[str] = []
    for path in sorted((settings_dir / "settings").glob("*")) if settings_dir.is_dir() else []:
        if path.suffix != ".yaml":
            problems.append(f"{path}: not read: settings files are named NAME.yaml")
            continue
        if path.stem not in _names(path.stem):
            problems.append(
                f"{path}: not read: name it {canonicalize_name(path.stem)}.yaml (the project's "
                "canonical name, - or _)"
            )
            continue
        try:
            _parse(path)
        except SettingsError as exc:
            problems.append(str(exc))
    for folder in sorted((settings_dir / "patches").glob("*")) if settings_dir.is_dir() else []:
        name, _, version = folder.name.rpartition("-")
        canonical = _names(folder.name)
        if name and _is_version(version, version) and name in _names(name):
            canonical = [folder.name]
        if not folder.is_dir() or folder.name not in canonical:
            problems.append(
                f"{folder}: not read: patches live in folders named NAME or NAME-VERSION (the "
                "project's canonical name)"
            )
            continue
        for patch in sorted(folder.iterdir()):
            if patch.suffix != ".patch":
                problems.append(f"{patch}: not applied: patches are named *.patch")
                continue
            try:
                check_patch(patch)
            except SettingsError as exc:
                problems.append(str(exc))
    return problems


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
