"""The builder matrix on a real farm: a builder per (architecture, Python version)."""

from __future__ import annotations

import json
import platform

import pytest
from buildbot.process.results import SKIPPED

from tests.conftest import install_and_run
from tests.farm import http_get
from tests.sdists import c_extension_sdist, flit_sdist
from wheelwright.farm.pools import SUPPORTED_PYTHONS, builder_name, find_python

pytestmark = pytest.mark.farm
# The Pythons this machine has, and their builders: derived, never written.
PYTHONS = [v for v in SUPPORTED_PYTHONS if find_python(v)]
BUILDERS = {v: builder_name(platform.machine(), v) for v in PYTHONS}


def cp(version: str) -> str:
    return "cp" + version.replace(".", "")


PIPELINE_AFTER_DOWNLOAD = (
    "prepare-source",
    "prepare-build-env",
    "build-wheel",
    "validate-install-deps",
    "update-index",
)


def test_c_extension_gets_a_wheel_per_python(backends, upstream, tmp_path):
    upstream.add(c_extension_sdist(tmp_path, "twopy", "1.0"))
    two = PYTHONS[:2]
    rc, result = backends.build("twopy==1.0", *(BUILDERS[v] for v in two))
    assert rc == 0, result
    wheels = {b["builder"]: b["wheels"] for b in result["builds"]}
    for version in two:
        assert wheels[BUILDERS[version]][0].startswith(f"twopy-1.0-{cp(version)}-{cp(version)}-")
    for version in two:
        out = install_and_run(
            backends,
            tmp_path,
            "twopy==1.0",
            "import sys, twopy; print(sys.version_info[:2], twopy.answer())",
            base_python=find_python(version),
        )
        assert out == f"({version.replace('.', ', ')}) 42\n"


def test_a_pure_wheel_is_built_once_per_version(backends, upstream, tmp_path):
    upstream.add(flit_sdist(tmp_path, "onceonly", "1.0"))
    rc, result = backends.build("onceonly==1.0", *(BUILDERS[v] for v in PYTHONS[:3]))
    assert rc == 0, result
    # The three requests are made at the same moment, and two workers are free: one build goes
    # first; the others start once its pure wheel is published, and skip every step after download.
    (published,) = [b for b in result["builds"] if b["wheel_urls"]]
    others = [b for b in result["builds"] if b is not published]
    built = []
    for build in result["builds"]:
        builderid = backends.api(f"builders/{build['builder']}")["builders"][0]["builderid"]
        steps = {
            s["name"]: s
            for s in backends.api(f"builders/{builderid}/builds/{build['number']}/steps")["steps"]
        }
        if steps["build-wheel"]["results"] != SKIPPED:
            built.append(build["builder"])
        if build in others:
            assert build["pure_wheel_published_by"] == published["build_url"]
            assert steps["download-source"]["state_string"].startswith(
                f"pure wheel already published by build {published['number']} of {published['builder']}"
            )
            assert {
                name: steps[name]["results"] for name in PIPELINE_AFTER_DOWNLOAD
            } == dict.fromkeys(PIPELINE_AFTER_DOWNLOAD, SKIPPED)
    assert built == [published["builder"]], f"the pure wheel was built by {built}"
    listing = json.loads(
        http_get(backends.status["index"] + "onceonly/", "application/vnd.pypi.simple.v1+json")[1]
    )
    assert [f["filename"] for f in listing["files"]] == published["wheels"]


def test_other_architectures_have_builders_that_wait_for_their_pools(farm):
    builders = {b["name"]: b for b in farm.api("builders")["builders"]}
    for version in ("310", "311", "312", "313"):
        builder = builders[f"aarch64-cp{version}"]
        assert {"aarch64", f"cp{version}"} <= set(builder["tags"])
        workers = farm.api(f"builders/{builder['builderid']}/workers")["workers"]
        assert sorted(w["name"] for w in workers) == ["aarch64-1", "aarch64-2"]
        assert not any(w["connected_to"] for w in workers)
    rc, result = farm.build("anything==1.0", "aarch64-cp312")
    assert rc == 4  # queued, no worker can take it (the exit codes in `wheelwright --help`)
    assert result["result"] == "pending" and result["builder"] == "aarch64-cp312"
