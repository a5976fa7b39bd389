"""The builder matrix on a real farm: a builder per (architecture, Python version)."""

from __future__ import annotations

from tests.conftest import install_and_run
from tests.sdists import c_extension_sdist, flit_sdist
from wheelwright.workers.pools import find_python


def test_c_extension_gets_a_wheel_per_python(backends, upstream, tmp_path):
    upstream.add(c_extension_sdist(tmp_path, "twopy", "1.0"))
    rc, result = backends.build("twopy==1.0", "x86_64-cp311", "x86_64-cp312")
    assert rc == 0, result
    wheels = {b["builder"]: b["wheels"] for b in result["builds"]}
    assert wheels["x86_64-cp311"][0].startswith("twopy-1.0-cp311-cp311-")
    assert wheels["x86_64-cp312"][0].startswith("twopy-1.0-cp312-cp312-")
    for version in ("3.11", "3.12"):
        out = install_and_run(backends, tmp_path, "twopy==1.0", "import sys, twopy; print(sys.version_info[:2], twopy.answer())",
                              base_python=find_python(version))
        assert out == f"({version.replace('.', ', ')}) 42\n"


def test_a_pure_wheel_is_built_once_per_version(backends, upstream, tmp_path):
    upstream.add(flit_sdist(tmp_path, "onceonly", "1.0"))
    rc, result = backends.build("onceonly==1.0", "x86_64-cp310", "x86_64-cp311", "x86_64-cp313")
    assert rc == 0, result
    built = [b for b in result["builds"] if b["wheels"]]
    skipped = [b for b in result["builds"] if not b["wheels"]]
    assert len(built) == 1 and len(skipped) == 2
    assert all(b["pure_wheel_published_by"] == built[0]["build_url"] for b in skipped)
    steps = backends.api(f"builders/{backends.api('builders/' + skipped[0]['builder'])['builders'][0]['builderid']}"
                          f"/builds/{skipped[0]['number']}/steps")["steps"]
    assert steps[1]["state_string"].startswith(f"pure wheel already published by build {built[0]['number']} of "
                                               f"{built[0]['builder']}")
    assert {s["name"]: s["results"] for s in steps[2:]} == dict.fromkeys(
        ["prepare-source", "prepare-build-env", "build-wheel", "validate-install-deps", "update-index"], 3)


def test_other_architectures_have_builders_that_wait_for_their_pools(farm):
    builders = {b["name"]: b for b in farm.api("builders")["builders"]}
    for version in ("310", "311", "312", "313"):
        builder = builders[f"aarch64-cp{version}"]
        assert {"aarch64", f"cp{version}"} <= set(builder["tags"])
        workers = farm.api(f"builders/{builder['builderid']}/workers")["workers"]
        assert sorted(w["name"] for w in workers) == ["aarch64-1", "aarch64-2"]
        assert not any(w["connected_to"] for w in workers)
    rc, result = farm.build("anything==1.0", "aarch64-cp312")
    assert rc == 1
    assert result["result"] == "pending" and result["builder"] == "aarch64-cp312"
