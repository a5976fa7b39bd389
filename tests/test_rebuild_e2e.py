"""Forced rebuilds with a build-number bump, on a real farm."""

from __future__ import annotations

import json

from tests.conftest import install_and_run
from tests.farm import http_get
from tests.sdists import setuptools_sdist


def test_a_rebuild_publishes_the_next_build_number_beside_the_earlier_wheels(backends, upstream, tmp_path):
    upstream.add(setuptools_sdist(tmp_path, "rebuilt", "1.0"))
    proc = backends.cli("rebuild", "rebuilt==1.0", "--wait", check=False)
    assert proc.returncode != 0 and "our index has no wheel of rebuilt 1.0 to rebuild: build it" in proc.stderr
    assert backends.build("rebuilt==1.0")[0] == 0
    for number in (1, 2):
        proc = backends.cli("rebuild", "rebuilt==1.0", "--builder", "x86_64-cp311", "--wait", check=False)
        result = json.loads(proc.stdout)
        assert proc.returncode == 0, result
        assert result["wheels"] == [f"rebuilt-1.0-{number}-py3-none-any.whl"]
    listing = json.loads(http_get(backends.status["index"] + "rebuilt/", "application/vnd.pypi.simple.v1+json")[1])
    assert sorted(f["filename"] for f in listing["files"]) == [
        "rebuilt-1.0-1-py3-none-any.whl", "rebuilt-1.0-2-py3-none-any.whl", "rebuilt-1.0-py3-none-any.whl"]
    traced = {w["wheel"]: w for w in json.loads(backends.cli("which", "rebuilt==1.0").stdout)}
    assert traced["rebuilt-1.0-2-py3-none-any.whl"]["build_tag"] == 2
    assert traced["rebuilt-1.0-2-py3-none-any.whl"]["reason"] == "wheelwright rebuild rebuilt==1.0"
    out = install_and_run(backends, tmp_path, "rebuilt==1.0",
                          "import importlib.metadata as m; print(m.distribution('rebuilt').read_text('WHEEL'))")
    assert "Build: 2" in out  # installers take the highest build number
