"""Configuration people edit while the farm runs (package settings, the allow-list): a file that
no longer parses does not stop the farm. Each version that parses is kept under the farm's state;
while the file is broken, builds go on with the kept version and warn, naming the file and line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from wheelwright.common.files import write_atomic

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration file that does not parse; the message names the file and line."""


def read_last_good(path: Path, parse: Callable[[Path], T], kept: Path) -> tuple[T, str | None]:
    """parse(path) and keep a copy of it at `kept`; if it does not parse, parse the kept copy and
    return the error as a warning. With no kept copy the error stands."""
    try:
        value = parse(path)
    except ConfigError as exc:
        if not kept.exists():
            raise
        return parse(kept), f"{exc}; using its last good version, kept at {kept}"
    if path.exists():
        _keep(path.read_bytes(), kept)
    return value, None


def _keep(data: bytes, kept: Path) -> None:
    if kept.exists() and kept.read_bytes() == data:
        return
    kept.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(kept, data)
