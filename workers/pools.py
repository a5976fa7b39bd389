"""Worker pools as data: one row a pool. master.cfg makes a builder per (architecture, Python)."""

from __future__ import annotations

import glob
import os
import platform
import shutil
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Pool:
    name: str
    arch: str
    kind: str  # "local": buildbot-worker processes on the master's machine
    pythons: tuple[str, ...]
    workers: int = 1
    max_builds: int = 1

    def worker_names(self) -> list[str]:
        return [f"{self.name}-{n}" for n in range(1, self.workers + 1)]


POOLS = {
    "local": Pool("local", arch=platform.machine(), kind="local",
                  pythons=(f"{sys.version_info.major}.{sys.version_info.minor}",)),
}


def builder_name(arch: str, python: str) -> str:
    return f"{arch}-cp{python.replace('.', '')}"


def find_python(version: str) -> str:
    """The interpreter for a Python version on this machine: under pyenv, else on PATH."""
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates = sorted(glob.glob(os.path.join(root, "versions", f"{version}.*", "bin", f"python{version}")))
    found = candidates[-1] if candidates else shutil.which(f"python{version}")
    if not found:
        raise LookupError(f"no Python {version} on this machine")
    return found
