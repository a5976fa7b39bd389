"""A release engineer's day on a real farm: a build waits on review, a reviewer approves the new
dependency (which is then built), the build goes through, and the wheel is traced to its build."""

from __future__ import annotations

import json

from tests.farm import DEFAULT_BUILDER, http_get
from tests.sdists import setuptools_sdist


def test_approving_a_new_dependency_builds_it_and_the_wheel_traces_to_its_build(backends, upstream, tmp_path):
    upstream.add(setuptools_sdist(tmp_path, "rv-newdep", "1.0"))
    upstream.add(setuptools_sdist(tmp_path, "rv-newdep", "2.0"))
    upstream.add(setuptools_sdist(tmp_path, "rv-app", "1.0", requires=["rv-newdep>=2"]))
    rc, result = backends.build("rv-app==1.0")
    assert rc == 1 and "queued for review" in result["failed_steps"]["validate-install-deps"]
    queue = json.loads(backends.cli("review").stdout)
    assert queue["rv-newdep"]["requests"][0]["requested_by"] == result["build_url"]

    approved = json.loads(backends.cli("review", "approve", "rv-newdep", "--note", "read its code",
                                       "--reviewer", "ann").stdout)
    assert approved["approved"] == "rv-newdep" and approved["buildrequests"]
    backends.wait_until_idle()
    assert "rv-newdep" not in json.loads(backends.cli("review").stdout)
    assert "rv-newdep  # approved by ann" in (backends.state / "allowlist.txt").read_text()
    listing = json.loads(http_get(backends.status["index"] + "rv-newdep/", "application/vnd.pypi.simple.v1+json")[1])
    assert listing["versions"] == ["2.0"]  # its latest release

    rc, result = backends.build("rv-app==1.0")
    assert rc == 0, result
    traced = json.loads(backends.cli("which", "rv-app==1.0").stdout)
    assert traced["wheel"] == result["wheels"][0]
    assert (traced["build_url"], traced["build_number"], traced["builder"]) == (
        result["build_url"], result["number"], DEFAULT_BUILDER)
    assert traced["source_sha256"] and traced["workername"].startswith("local-")
    assert http_get(traced["build_environment"])[0] == 200
    assert json.loads(backends.cli("which", traced["wheel"]).stdout)["build_url"] == result["build_url"]
    assert backends.cli("which", "rv-app==9.9", check=False).returncode == 1
