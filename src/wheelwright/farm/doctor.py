"""Preflight (master side): what a farm needs beyond Python, pool by pool, each problem in one line
with the command that fixes it. `wheelwright doctor` prints them; `up` runs the same checks and
starts no pool that cannot build, saying which is off and why.
"""

from __future__ import annotations

import shutil
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from wheelwright.common.runtime import ToolError
from wheelwright.farm import emulation

# What a local pool's builds run beside Python, and the Debian package that brings it.
LOCAL_TOOLS = {"patch": "patch", "git": "git", "gcc": "gcc"}
# What the farm itself runs: the dashboard draws a tree with graphviz's `dot`.
FARM_TOOLS = {"dot": "graphviz"}


@dataclass(frozen=True)
class Problem:
    """One thing missing: where (a pool's name, or "farm"), what, and the command that fixes it."""

    where: str
    what: str
    fix: str
    # Whether the pool cannot build at all: a missing interpreter fails only its own builder.
    blocks: bool = True

    def __str__(self) -> str:
        return f"{self.where}: {self.what} (fix: {self.fix})"


def _sandbox_problem() -> str | None:
    """Why bubblewrap cannot make a build's sandbox here: not installed, or refused by the kernel
    (user namespaces off, a container without the right)."""
    from wheelwright.common import sandbox

    sandbox._kernel_args.cache_clear()
    try:
        sandbox._kernel_args()
    except ToolError as exc:
        return str(exc)
    return None


def local_pool(pool) -> list[Problem]:
    found = []
    why = _sandbox_problem()
    if why is not None:
        fix = (
            "apt-get install bubblewrap"
            if shutil.which("bwrap") is None
            else "sysctl -w kernel.unprivileged_userns_clone=1 (or run the pool in a VM or container "
            "that allows user namespaces)"
        )
        found.append(Problem(pool.name, why, fix))
    for tool, package in LOCAL_TOOLS.items():
        if shutil.which(tool) is None:
            found.append(
                Problem(pool.name, f"{tool} is not installed", f"apt-get install {package}")
            )
    interpreters = pool.interpreters()
    for version in pool.pythons:
        if version not in interpreters:
            found.append(
                Problem(
                    pool.name,
                    f"no Python {version}: builder {pool.arch}-cp{version.replace('.', '')} "
                    "cannot build",
                    f"apt-get install python{version} (or pyenv install {version})",
                    blocks=not interpreters,
                )
            )
    return found


def container_pool(farm, pool) -> list[Problem]:
    where = farm.docker_host
    if not where:
        return [
            Problem(
                pool.name,
                "no container engine named (farm.json docker_host)",
                "wheelwright up --docker-host unix:///PATH/podman.sock",
            )
        ]
    path = urlsplit(where).path
    if where.startswith("unix://"):
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            try:
                sock.connect(path)
                sock.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
                answer = sock.recv(64)
            except OSError as exc:
                answer = str(exc).encode()
        if b" 200 " not in answer:
            return [
                Problem(
                    pool.name,
                    f"the container engine at {where} does not answer ({answer[:60]!r})",
                    f"podman system service --time=0 {where} &",
                )
            ]
    return []


def emulated_pool(pool) -> list[Problem]:
    why = emulation.why_not(pool.arch)
    return [Problem(pool.name, why, "make emulation")] if why else []


def farm_wide(farm) -> list[Problem]:
    found = [
        Problem("farm", f"{tool} is not installed", f"apt-get install {package}")
        for tool, package in FARM_TOOLS.items()
        if shutil.which(tool) is None
    ]
    if urlsplit(farm.db_url).scheme.startswith("postgresql"):
        try:
            import psycopg2  # noqa: F401
        except ImportError:
            found.append(
                Problem(
                    "farm",
                    "db_url names PostgreSQL, but psycopg2 is not installed",
                    "pip install 'wheelwright-farm[postgresql]'",
                )
            )
    if farm.mq_router:
        try:
            import autobahn  # noqa: F401
        except ImportError:
            found.append(
                Problem(
                    "farm",
                    "mq_router names a Crossbar router, but autobahn is not installed",
                    "pip install 'wheelwright-farm[multimaster]'",
                )
            )
    return found


def pool_problems(farm, pool) -> list[Problem]:
    if pool.kind == "local":
        return local_pool(pool)
    if pool.kind == "container":
        return container_pool(farm, pool)
    if pool.kind == "emulated":
        return emulated_pool(pool)
    return []  # remote workers are checked on their own machines


def check(farm) -> list[Problem]:
    """Every problem of the farm and of each pool it runs here."""
    found = farm_wide(farm)
    for pool in farm.pools_here():
        found += pool_problems(farm, pool)
    return found
