"""Worker pools as data: one row a pool. master.cfg makes a builder per (architecture, Python)
from this table and nothing else.

kind "local":  buildbot-worker processes that `wheelwright up` runs on the master's machine, with
               the interpreters found there (pyenv's, or on PATH).
kind "remote": buildbot-worker processes on other machines, set up by their operators with what
               `wheelwright worker create` prints; our tools in /opt/wheelwright, `python3.X` on PATH.
kind "container": Buildbot's DockerLatentWorker: a fresh container of `image` for every build,
               removed afterwards (see containers/).
kind "emulated": buildbot-worker processes that `wheelwright up` runs on the master's machine in a
               Debian root filesystem of another architecture, under qemu-user (farm/emulation.py):
               a remote pool's stand-in where no machine of its architecture is at hand.
"""

from __future__ import annotations

import glob
import os
import platform
import shutil
import sys
from dataclasses import dataclass

from wheelwright.common.runtime import tool_folders

SUPPORTED_PYTHONS = ("3.10", "3.11", "3.12", "3.13")
# Where buildbot-worker and our worker-side tools live on every worker but local ones: in a Debian
# root of ours (a container image's, an emulated pool's) and on remote machines.
ROOT_TOOL_PYTHON = "/opt/wheelwright/bin/python"


@dataclass(frozen=True)
class Emulation:
    """Workers for a remote pool that this machine runs itself, in a Debian root of the pool's
    architecture: only the Pythons that Debian release carries."""

    debian_arch: str
    suite: str
    pythons: tuple[str, ...]
    workers: int

    @property
    def root_name(self) -> str:
        return f"debian-{self.suite}-{self.debian_arch}"


@dataclass(frozen=True)
class Pool:
    name: str
    arch: str
    kind: str
    pythons: tuple[str, ...]
    workers: int = 1
    max_builds: int = 1
    image: str | None = None
    emulation: Emulation | None = None

    def emulated(self) -> Pool | None:
        """The stand-in pool of emulated workers, for a remote pool that has one."""
        if self.kind != "remote" or self.emulation is None:
            return None
        return Pool(
            f"{self.name}-emulated",
            self.arch,
            "emulated",
            self.emulation.pythons,
            workers=self.emulation.workers,
            emulation=self.emulation,
        )

    def worker_names(self) -> list[str]:
        return [f"{self.name}-{n}" for n in range(1, self.workers + 1)]

    def interpreters(self) -> dict[str, str]:
        """Python version -> interpreter path on this pool's workers."""
        if self.kind == "local":
            found = {v: find_python(v) for v in self.pythons}
            return {v: path for v, path in found.items() if path}
        if self.kind in ("container", "emulated"):
            return {v: f"/usr/bin/python{v}" for v in self.pythons}
        return {v: f"python{v}" for v in self.pythons}

    def tool_command(self) -> list[str]:
        """How a step starts our worker-side tools' client (worker/call.py) on this pool's
        workers: locally, that file itself, without `site`, which is most of its start."""
        if self.kind == "local":
            return [sys.executable, "-I", "-S", str(tool_folders()["worker"] / "call.py")]
        return [ROOT_TOOL_PYTHON, "-I", "-m", "wheelwright.worker.call"]


POOLS = {
    pool.name: pool
    for pool in (
        # Two workers, a build each at a time: the two cores of the machines we run on.
        Pool("local", arch=platform.machine(), kind="local", pythons=SUPPORTED_PYTHONS, workers=2),
        # Where no aarch64 machine is at hand, `wheelwright up` runs two workers here under qemu; a
        # real machine joins as aarch64-1 (see docs/pools.md, "Architectures").
        Pool(
            "aarch64",
            arch="aarch64",
            kind="remote",
            pythons=SUPPORTED_PYTHONS,
            workers=2,
            emulation=Emulation(
                debian_arch="arm64", suite="bookworm", pythons=("3.11",), workers=2
            ),
        ),
        Pool(
            "containers",
            arch=platform.machine(),
            kind="container",
            pythons=("3.11",),
            workers=2,
            image="localhost/wheelwright-worker:bookworm",
        ),
    )
}


def builder_name(arch: str, python: str) -> str:
    return f"{arch}-cp{python.replace('.', '')}"


def builders_pythons(names: list[str]) -> tuple[str, ...]:
    """The Python versions (X.Y) of builders named as builder_name names them."""
    found = []
    for name in names:
        tag = name.rsplit("-", 1)[-1]
        if tag.startswith("cp3") and tag[2:].isdigit():
            found.append(f"3.{tag[3:]}")
    return tuple(sorted(set(found)))


def find_python(version: str) -> str | None:
    """The interpreter for a Python version on this machine: under pyenv, else on PATH."""
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates = sorted(
        glob.glob(os.path.join(root, "versions", f"{version}.*", "bin", f"python{version}"))
    )
    return candidates[-1] if candidates else shutil.which(f"python{version}")
