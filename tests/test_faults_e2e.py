"""Faults on a real farm: a worker or the master killed in the middle of a build."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
from buildbot.process.results import EXCEPTION, FAILURE, RETRY

from tests.conftest import wheel_index_has
from tests.farm import DEFAULT_BUILDER, http_get
from tests.sdists import setuptools_sdist

pytestmark = pytest.mark.farm

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


def wait_for_step(farm, name: str, timeout: float = 120) -> int:
    """Wait until the newest build is running step `name`; returns the build's id."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        builds = farm.api("builds?order=-buildid&limit=1")["builds"]
        if builds:
            steps = farm.api(f"builds/{builds[0]['buildid']}/steps")["steps"]
            if any(s["name"] == name and s["started_at"] and not s["complete_at"] for s in steps):
                return builds[0]["buildid"]
        time.sleep(0.2)
    raise TimeoutError(f"no build reached {name}")


def wait_for_result(farm, buildid: int, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while (result := farm.api(f"builds/{buildid}")["builds"][0]["results"]) is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"build {buildid} did not end")
        time.sleep(0.2)
    return result


def kill(pidfile) -> None:
    os.kill(int(pidfile.read_text()), signal.SIGKILL)


def test_a_worker_killed_mid_build_leaves_the_index_untouched_and_the_build_is_retried(
    backends, upstream, tmp_path
):
    upstream.add(setuptools_sdist(tmp_path, "workerdies", "1.0", setup_py=SLOW_BUILD))
    backends.cli("build", "workerdies==1.0", "--builder", DEFAULT_BUILDER)
    killed = wait_for_step(backends, "build-wheel")
    worker = backends.api(f"builds/{killed}?property=workername")["builds"][0]["properties"][
        "workername"
    ][0]
    kill(backends.state / "workers" / worker / "twistd.pid")
    assert wait_for_result(backends, killed) in (RETRY, EXCEPTION)
    assert not wheel_index_has(backends, "workerdies")
    backends.cli("up")  # brings the worker back; Buildbot runs the retried build on it
    backends.wait_until_idle()
    upstream.add(setuptools_sdist(tmp_path, "nextone", "1.0"))
    rc, result = backends.build("nextone==1.0")  # the next build works
    assert rc == 0, result
    listing = json.loads(
        http_get(backends.status["index"] + "workerdies/", "application/vnd.pypi.simple.v1+json")[1]
    )
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
    assert rc == 0 or "already in the index" in result["failed_steps"].get("update-index", ""), (
        result
    )
    listing = json.loads(
        http_get(backends.status["index"] + "masterdies/", "application/vnd.pypi.simple.v1+json")[1]
    )
    assert len(listing["files"]) == 1


def test_an_unreachable_index_keeps_the_wheel_and_the_master_publishes_it_when_the_index_returns(
    backends, upstream, tmp_path
):
    # The smoke test's import takes 8 s: time to stop the index host after the install from it.
    upstream.add(
        setuptools_sdist(tmp_path, "indexgone", "1.0", code="import time\ntime.sleep(8)\n")
    )
    backends.cli("build", "indexgone==1.0", "--builder", DEFAULT_BUILDER)
    buildid = wait_for_step(backends, "validate-install-deps")
    time.sleep(3)
    index_pid = backends.state / "index" / "index.pid"
    kill(index_pid)
    index_pid.unlink()
    backends.wait_until_idle()
    build = backends.api(f"builds/{buildid}")["builds"][0]
    assert build["results"] == FAILURE
    (kept,) = (backends.state / "master" / "staging" / str(buildid)).glob("*.whl")
    reason = http_get(
        f"{backends.status['ui']}api/v2/builds/{buildid}/steps/update-index/logs/reason/raw"
    )[1].decode()
    assert (
        reason.startswith(f"not published, kept at {kept}") and "3 attempts, the last:" in reason
    ), reason
    assert "did not answer" in reason
    backends.cli(
        "up"
    )  # the index host comes back; the master's retry service publishes within seconds
    deadline = time.monotonic() + 30
    while not wheel_index_has(backends, "indexgone") and time.monotonic() < deadline:
        time.sleep(0.5)
    provenance = json.loads(
        http_get(f"{backends.status['index']}indexgone/{kept.name}.provenance.json")[1]
    )
    assert provenance["build_number"] == build["number"]
    assert not kept.exists()
