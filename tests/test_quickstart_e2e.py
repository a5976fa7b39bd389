"""The README's quickstart, as a new user types it, on a farm whose index is empty: flask and
all it needs bootstrapped from source on every builder, installed by pip from our index alone,
and a downloaded wheel traced to the build that made it."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import BACKENDS, install_and_run, running_farm
from tests.fetch_corpus import cached_sdist, corpus_stages
from tests.sdists import CACHE
from wheelwright.common.runtime import clean_pip_env

pytestmark = pytest.mark.farm


def test_the_quickstart_bootstraps_flask_on_an_empty_index(tmp_path_factory, upstream, tmp_path):
    for pin in [*BACKENDS, *(pin for stage in corpus_stages() for pin in stage)]:
        upstream.add(cached_sdist(CACHE, pin))
    with running_farm(tmp_path_factory, upstream) as farm:
        assert farm.api("builders")["builders"]  # the farm is up, and its index holds nothing
        index = farm.status["index"]
        proc = farm.cli("bootstrap", "flask", "--wait", human=True, check=False, timeout=1500)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        said = proc.stdout
        assert "result: success\n" in said and "failed: {}\n" in said, said
        # flask, its five dependencies, MarkupSafe and the two build backends, built from source
        built = re.findall(r"^  ([\w.-]+==[\w.]+):$", said, re.M)
        assert {key.split("==")[0].lower() for key in built} >= {
            "flask",
            "werkzeug",
            "jinja2",
            "markupsafe",
            "itsdangerous",
            "click",
            "blinker",
            "setuptools",
            "flit-core",
        }, said
        assert (
            install_and_run(farm, tmp_path, "flask", "import flask; print(flask.Flask.__name__)")
            == "Flask\n"
        )
        wheels = tmp_path / "w"
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--index-url", index]
            + ["-d", str(wheels), "flask"],
            check=True,
            capture_output=True,
            env=clean_pip_env(),
        )
        (wheel,) = wheels.glob("flask-*.whl")
        traced = farm.cli("which", str(wheel), human=True).stdout
        assert f"published_by_our_index: {index}" in traced
        assert re.search(
            r"^build_url: http://127\.0\.0\.1:\d+/#/builders/\d+/builds/\d+$", traced, re.M
        )
