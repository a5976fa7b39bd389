"""A release engineer's day on a real farm: a build waits on review, a reviewer approves the new
dependency (which is then built), the build that waited goes through by itself, and the wheel is
traced to its build."""

from __future__ import annotations

import json

import pytest

from tests.farm import DEFAULT_BUILDER, http_get
from tests.sdists import setuptools_sdist

pytestmark = pytest.mark.farm


def test_approving_a_new_dependency_builds_it_and_the_wheel_traces_to_its_build(
    backends, upstream, tmp_path
):
    upstream.add(setuptools_sdist(tmp_path, "rv-newdep", "1.0"))
    upstream.add(setuptools_sdist(tmp_path, "rv-newdep", "2.0"))
    upstream.add(setuptools_sdist(tmp_path, "rv-app", "1.0", requires=["rv-newdep>=2"]))
    rc, result = backends.build("rv-app==1.0")
    assert rc == 1 and "queued for review" in result["failed_steps"]["validate-install-deps"]
    queue = json.loads(backends.cli("review").stdout)
    assert queue["rv-newdep"]["requests"][0]["requested_by"] == result["build_url"]

    approved = json.loads(
        backends.cli(
            "review", "approve", "rv-newdep", "--note", "read its code", "--reviewer", "ann"
        ).stdout
    )
    assert approved["approved"] == "rv-newdep" and approved["buildrequests"]
    backends.wait_until_idle()
    review = json.loads(backends.cli("review").stdout)
    assert "rv-newdep" not in review
    assert "rv-newdep  # approved by ann" in (backends.state / "allowlist.txt").read_text()
    listing = json.loads(
        http_get(backends.status["index"] + "rv-newdep/", "application/vnd.pypi.simple.v1+json")[1]
    )
    assert listing["versions"] == ["2.0"]  # its latest release

    # Nobody forces rv-app again: its wheel was published once rv-newdep's was, and review says so.
    (went_through,) = review["after approval"]["rv-newdep"]
    assert (went_through["package"], went_through["builder"]) == ("rv-app", DEFAULT_BUILDER)
    assert went_through["state"].startswith("forced again")
    traced = json.loads(backends.cli("which", "rv-app==1.0").stdout)
    assert traced["reason"] == "rv-newdep approved and published"
    assert (traced["builder"], traced["workername"][:6]) == (DEFAULT_BUILDER, "local-")
    assert traced["source_sha256"]
    assert http_get(traced["build_environment"])[0] == 200
    assert (
        json.loads(backends.cli("which", traced["wheel"]).stdout)["build_url"]
        == traced["build_url"]
    )
    assert backends.cli("which", "rv-app==9.9", check=False).returncode == 1


def test_approving_with_deps_approves_what_it_pulls_in_and_builds_it_all_bottom_up(
    backends, upstream, tmp_path
):
    # As rich waits on markdown-it-py, which waits on mdurl: one approval, not a chain of them.
    upstream.add(setuptools_sdist(tmp_path, "wd-leaf", "1.0"))
    upstream.add(setuptools_sdist(tmp_path, "wd-mid", "1.0", requires=["wd-leaf"]))
    upstream.add(setuptools_sdist(tmp_path, "wd-app", "1.0", requires=["wd-mid"]))
    rc, result = backends.build("wd-app==1.0")
    assert rc == 1 and "queued for review" in result["failed_steps"]["validate-install-deps"]
    queue = json.loads(backends.cli("review").stdout)
    assert queue["wd-mid"]["would pull in"] == ["wd-leaf"]  # read from metadata, nothing built
    assert not any(
        http_get(backends.status["index"] + f"{p}/")[0] == 200 for p in ("wd-leaf", "wd-mid")
    )
    approved = json.loads(
        backends.cli("review", "approve", "wd-mid", "--with-deps", "--note", "a small tree").stdout
    )
    assert approved["with"] == ["wd-leaf"]
    backends.wait_until_idle(timeout=300)
    allowlist = (backends.state / "allowlist.txt").read_text()
    assert "wd-mid  # approved by" in allowlist and "wd-leaf  # approved by" in allowlist
    traced = json.loads(
        backends.cli("which", "wd-app==1.0").stdout
    )  # the build that waited went through
    assert traced["reason"] == "wd-mid approved and published"
