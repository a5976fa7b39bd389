"""Faults on a real farm: a worker or the master killed in the middle of a build."""

from __future__ import annotations

import json
import os
import signal
import time

from buildbot.process.results import EXCEPTION, RETRY

from tests.conftest import wheel_index_has
from tests.farm import DEFAULT_BUILDER, http_get
from tests.sdists import setuptools_sdist

SLOW_BUILD = """\
import time
from setuptools import setup
from setuptools.command.build_py import build_py

class Slow(build_py):
    def run(self):
        time.sleep(6)
        super().run()

setup(cmdclass={"build_py": Slow})
"""


def api(farm, path: str) -> dict:
    return json.loads(http_get(farm.status["ui"] + "api/v2/" + path)[1])


def wait_for_step(farm, name: str, timeout: float = 120) -> int:
    """Wait until the newest build is running step `name`; returns the build's id."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        builds = api(farm, "builds?order=-buildid&limit=1")["builds"]
        if builds:
            steps = api(farm, f"builds/{builds[0]['buildid']}/steps")["steps"]
            if any(s["name"] == name and s["started_at"] and not s["complete_at"] for s in steps):
                return builds[0]["buildid"]
        time.sleep(0.2)
    raise TimeoutError(f"no build reached {name}")


def wait_until_idle(farm, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while api(farm, "buildrequests?complete=false&claimed=true")["buildrequests"] or \
            [r for r in api(farm, "buildrequests?complete=false")["buildrequests"] if "aarch64" not in str(r)]:
        if time.monotonic() > deadline:
            raise TimeoutError("the farm did not go idle")
        time.sleep(0.5)


def kill(pidfile) -> None:
    os.kill(int(pidfile.read_text()), signal.SIGKILL)


def test_a_worker_killed_mid_build_leaves_the_index_untouched_and_the_build_is_retried(backends, upstream, tmp_path):
    upstream.add(setuptools_sdist(tmp_path, "workerdies", "1.0", setup_py=SLOW_BUILD))
    backends.cli("build", "workerdies==1.0", "--builder", DEFAULT_BUILDER)
    killed = wait_for_step(backends, "build-wheel")
    kill(backends.state / "workers" / "local-1" / "twistd.pid")
    time.sleep(1)
    assert not wheel_index_has(backends, "workerdies")
    assert api(backends, f"builds/{killed}")["builds"][0]["results"] in (RETRY, EXCEPTION)
    backends.cli("up")  # brings the worker back; Buildbot runs the retried build on it
    wait_until_idle(backends)
    upstream.add(setuptools_sdist(tmp_path, "nextone", "1.0"))
    rc, result = backends.build("nextone==1.0")  # the next build works
    assert rc == 0, result
    listing = json.loads(http_get(backends.status["index"] + "workerdies/", "application/vnd.pypi.simple.v1+json")[1])
    assert len(listing["files"]) == 1


def test_a_master_killed_mid_build_publishes_once_after_a_restart(backends, upstream, tmp_path):
    upstream.add(setuptools_sdist(tmp_path, "masterdies", "1.0", setup_py=SLOW_BUILD))
    backends.cli("build", "masterdies==1.0", "--builder", DEFAULT_BUILDER)
    wait_for_step(backends, "build-wheel")
    kill(backends.state / "master" / "twistd.pid")
    (backends.state / "master" / "twistd.pid").unlink()
    time.sleep(1)
    index_dir = backends.state / "index" / "wheels" / "simple"
    assert not (index_dir / "masterdies").exists()
    assert not [p for p in index_dir.rglob(".tmp-*")]
    backends.cli("up")
    rc, result = backends.build("masterdies==1.0")
    assert rc == 0 or "already in the index" in result["failed_steps"].get("update-index", ""), result
    listing = json.loads(http_get(backends.status["index"] + "masterdies/", "application/vnd.pypi.simple.v1+json")[1])
    assert len(listing["files"]) == 1
