"""What each worker-side tool reports, one dataclass a tool: made by the tool, read back by its
step with `from_json`, which checks every field's type (the worker runs strangers' code, so its
report is input like any other), and used by the tests' fakes.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Failure:
    """A tool that failed: why, and what it knows of where (a patch that does not apply, the
    build requirements our index lacks, the sandbox limit the package's code hit)."""

    error: str
    patch: str | None = None
    missing: list[str] = field(default_factory=list)
    limit: str | None = None


@dataclass(frozen=True)
class SourcePrepared:
    """prepare-source: the unpacked, patched tree and the patches applied, in order."""

    src: str
    patches: list[str]


@dataclass(frozen=True)
class BuildEnvReady:
    """prepare-build-env: the environment's interpreter, the requirements it was filled with
    (pyproject.toml's and those the backend asked for when run), and its `pip freeze`."""

    env_python: str
    build_system_requires: list[str]
    backend_requires: list[str]
    freeze: str
    # The Debian packages the package's settings asked for, with the versions installed.
    system_packages: dict[str, str] = field(default_factory=dict)
    # The build requirements taken from the system: name -> the tool's own version line.
    system_tools: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BuiltWheel:
    filename: str
    sha256: str
    # Its Requires-Dist that apply to the builder's Python and platform.
    requires: list[str]


@dataclass(frozen=True)
class WheelsBuilt:
    """build-wheel: the wheels, checked to be of this project, version and build number."""

    wheels: list[BuiltWheel]


@dataclass(frozen=True)
class BundledLibrary:
    """A shared library auditwheel copied into a wheel: its soname, where it came from on the
    worker (and the Debian package that installed it there), and both files' sha256."""

    soname: str
    path: str
    bundled_as: str
    sha256: str
    system_sha256: str
    package: str | None = None
    package_version: str | None = None


@dataclass(frozen=True)
class RepairedWheel:
    """One wheel after repair-wheel: its name and sha256 now (a manylinux tag), auditwheel's
    verdict, and what it bundled. A pure wheel, or one whose repair is off, is left as it was."""

    filename: str
    sha256: str
    verdict: str
    bundled: list[BundledLibrary] = field(default_factory=list)


@dataclass(frozen=True)
class WheelsRepaired:
    """repair-wheel: the wheels as they will be published, in the order build-wheel made them."""

    wheels: list[RepairedWheel]


@dataclass(frozen=True)
class Installed:
    """validate-install-deps: the modules imported, those that needed a project the wheel does
    not declare (module -> the missing one), and those skipped because they need a dependency
    the wheel declares only under an extra (module -> that dependency)."""

    imported: list[str]
    undeclared: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


class BadReport(ValueError):
    """A tool's report that is not what the tool writes."""


T = typing.TypeVar("T")


def from_json(kind: type[T], data: object) -> T:
    """data (a tool's JSON report) as kind, every field checked; BadReport if it is not one."""
    if not isinstance(data, dict):
        raise BadReport(f"{kind.__name__}: not an object")
    hints = typing.get_type_hints(kind)
    values = {}
    for f in dataclasses.fields(kind):  # type: ignore[arg-type]
        if f.name in data:
            values[f.name] = _checked(hints[f.name], data[f.name], f"{kind.__name__}.{f.name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise BadReport(f"{kind.__name__}: no {f.name}")
    return kind(**values)


def _checked(hint, value, where: str):
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return from_json(hint, value)  # type: ignore[arg-type]
    if origin is list and isinstance(value, list):
        return [_checked(args[0], item, f"{where}[]") for item in value]
    if origin is dict and isinstance(value, dict):
        return {_checked(args[0], k, where): _checked(args[1], v, where) for k, v in value.items()}
    if origin in (typing.Union, types.UnionType):
        for option in args:
            try:
                return _checked(option, value, where)
            except BadReport:
                continue
    elif hint in (str, int, float) and type(value) is hint or hint is type(None) and value is None:
        return value
    raise BadReport(f"{where}: {value!r:.80} is not a {getattr(hint, '__name__', hint)}")


def to_json(result) -> dict:
    return dataclasses.asdict(result)
