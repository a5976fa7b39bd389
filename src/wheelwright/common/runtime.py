"""The contract between a master-side step and its worker-side tool, and the environment pip, uv
and the package's code get on either side.

A tool prints its result as the last line of stdout, `RESULT_PREFIX {json}`, which the step
reads; workers run strangers' code, so the step checks again what matters.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import time
from pathlib import Path

# The distribution's name on a package index (the import package is `wheelwright`).
DISTRIBUTION = "wheelwright-farm"
RESULT_PREFIX = "wheelwright-result: "


class ToolError(Exception):
    """A failure the tool reports with a clear reason, and the build fails with it."""

    def __init__(self, message: str, **details):
        super().__init__(message)
        self.details = details


# Where a tool's time went (seconds by part), reported in its result as `timings`.
TIMINGS: dict[str, float] = {}


@contextlib.contextmanager
def timed(part: str):
    started = time.perf_counter()
    try:
        yield
    finally:
        TIMINGS[part] = TIMINGS.get(part, 0) + time.perf_counter() - started


# The build frontends a package's settings may choose (worker/build_wheel.py runs them).
FRONTENDS = ("pip", "build")

# The worker's cache (the step names it, outside the build directory): uv's (wheels from our
# index, unpacked once), what each interpreter is (its markers and tags) and the tool server's
# socket. Builds run strangers' code, so no sandbox can reach it (it binds only folders of the
# build directory); uv links its files into environments that every sandbox binds read-only.
WORKER_CACHE = "WHEELWRIGHT_WORKER_CACHE"
# In that cache, the interpreters of the worker's builders, as the master names them (a JSON list):
# the tool server makes them ready as it starts (worker/environments.py prepare_interpreters).
WORKER_PYTHONS = "pythons.json"

# The Buildbot command a worker runs our tools with, where it has it (worker/toolcommand.py).
WORKER_COMMAND = "wheelwright_tool"


# The variables a tool passes on from its own environment; every other one (a token in the shell
# that started the farm, the machine's PIP_* and UV_*) stays behind.
PASSED_ON = ("PATH", "LANG", "LC_ALL", "TZ", "HOME", "TMPDIR", "SSL_CERT_FILE", "SSL_CERT_DIR")


def clean_pip_env() -> dict[str, str]:
    """The explicit environment for pip, uv and the package's code: no machine-wide
    configuration, index, find-links or cache, so what they install comes from the index named
    on their command line alone, and nothing else of the worker's environment."""
    env = {k: os.environ[k] for k in PASSED_ON if k in os.environ}
    env.setdefault("PATH", os.defpath)
    env.update(
        PIP_CONFIG_FILE=os.devnull,
        PIP_NO_INPUT="1",
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PIP_NO_CACHE_DIR="1",
        UV_NO_CONFIG="1",
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


def tool_folders() -> dict[str, Path]:
    """The folders of ours a worker-side tool runs from (wheelwright.worker and .common), by
    name: bound into the sandbox and into emulated roots. Found, not imported: the master runs no
    worker code."""
    found = {}
    for name in ("worker", "common"):
        spec = importlib.util.find_spec(f"wheelwright.{name}")
        assert spec and spec.submodule_search_locations, name
        found[name] = Path(next(iter(spec.submodule_search_locations)))
    return found
