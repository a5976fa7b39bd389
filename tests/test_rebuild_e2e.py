"""Forced rebuilds on a real farm, published with each kind of bump: a post-release, a local
version, a build number."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import install_and_run
from tests.farm import DEFAULT_BUILDER, http_get
from tests.sdists import setuptools_sdist
from wheelwright.common.runtime import clean_pip_env

pytestmark = pytest.mark.farm

VERSION_OF = "import importlib.metadata as m; print(m.version('{}'))"


def rebuild(farm, pin: str, *options: str) -> dict:
    proc = farm.cli("rebuild", pin, "--builder", DEFAULT_BUILDER, "--wait", *options, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def listed(farm, project: str, index: str = "index") -> list[str]:
    url = farm.status[index] + f"{project}/"
    return sorted(
        f["filename"]
        for f in json.loads(http_get(url, "application/vnd.pypi.simple.v1+json")[1])["files"]
    )


def test_a_build_tag_rebuild_publishes_the_next_build_number_beside_the_earlier_wheels(
    backends, upstream, tmp_path
):
    upstream.add(setuptools_sdist(tmp_path, "rebuilt", "1.0"))
    proc = backends.cli("rebuild", "rebuilt==1.0", "--wait", check=False)
    assert (
        proc.returncode != 0
        and "our index has no wheel of rebuilt 1.0 to rebuild: build it" in proc.stderr
    )
    assert backends.build("rebuilt==1.0")[0] == 0
    for number in (1, 2):
        assert rebuild(backends, "rebuilt==1.0", "--bump", "build-tag")["wheels"] == [
            f"rebuilt-1.0-{number}-py3-none-any.whl"
        ]
    assert listed(backends, "rebuilt") == [
        "rebuilt-1.0-1-py3-none-any.whl",
        "rebuilt-1.0-2-py3-none-any.whl",
        "rebuilt-1.0-py3-none-any.whl",
    ]
    traced = {w["wheel"]: w for w in json.loads(backends.cli("which", "rebuilt==1.0").stdout)}
    assert traced["rebuilt-1.0-2-py3-none-any.whl"]["build_tag"] == 2
    assert traced["rebuilt-1.0-2-py3-none-any.whl"]["reason"] == "wheelwright rebuild rebuilt==1.0"
    for installer in ("pip", "uv"):
        out = install_and_run(
            backends,
            tmp_path,
            "rebuilt==1.0",
            "import importlib.metadata as m; print(m.distribution('rebuilt').read_text('WHEEL'))",
            installer=installer,
        )
        assert "Build: 2" in out  # installers take the highest build number


def test_a_post_rebuild_is_what_pip_install_upgrade_takes(backends, upstream, tmp_path):
    upstream.add(setuptools_sdist(tmp_path, "bumped", "1.0"))
    assert backends.build("bumped==1.0")[0] == 0
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    pip = [
        sys.executable,
        "-m",
        "pip",
        "--python",
        str(venv / "bin" / "python"),
        "install",
        "--index-url",
        backends.status["index"],
    ]
    subprocess.run([*pip, "bumped"], check=True, env=clean_pip_env(), capture_output=True)
    result = rebuild(backends, "bumped==1.0")  # the farm's default bump: post
    assert result["wheels"] == ["bumped-1.0.post1-py3-none-any.whl"]
    subprocess.run([*pip, "-U", "bumped"], check=True, env=clean_pip_env(), capture_output=True)
    assert (
        subprocess.run(
            [venv / "bin" / "python", "-c", VERSION_OF.format("bumped")],
            capture_output=True,
            text=True,
        ).stdout.strip()
        == "1.0.post1"
    )
    assert (
        install_and_run(
            backends, tmp_path, "bumped", VERSION_OF.format("bumped"), installer="uv"
        ).strip()
        == "1.0.post1"
    )
    assert rebuild(backends, "bumped==1.0")["wheels"] == ["bumped-1.0.post2-py3-none-any.whl"]
    # Each rebuild names its bump and the one upstream sdist it was built from.
    traced = json.loads(backends.cli("which", "bumped-1.0.post2-py3-none-any.whl").stdout)
    assert (traced["bump"], traced["bump_number"], traced["version"], traced["wheel_version"]) == (
        "post",
        2,
        "1.0",
        "1.0.post2",
    )
    assert traced["source_filename"] == "bumped-1.0.tar.gz"
    assert listed(backends, "bumped", "sources") == ["bumped-1.0.tar.gz"]
    # The wheel carries it too: found anywhere, it names its build; its sha256 alone finds it.
    found = tmp_path / "elsewhere" / "bumped-1.0.post2-py3-none-any.whl"
    found.parent.mkdir()
    found.write_bytes(http_get(backends.status["index"] + "bumped/" + found.name)[1])
    carried = json.loads(backends.cli("which", str(found)).stdout)
    assert (carried["build_url"], carried["bump"], carried["source_sha256"]) == (
        traced["build_url"],
        "post",
        traced["source_sha256"],
    )
    assert carried["published_by_our_index"] == backends.status["index"] + "bumped/" + found.name
    assert dict(carried["freeze"])["setuptools"] == "80.9.0"
    assert json.loads(backends.cli("which", traced["sha256"]).stdout)["wheel"] == found.name


@pytest.mark.parametrize("installer", ["pip", "uv"])
def test_a_local_rebuild_is_what_a_fresh_install_of_the_version_takes(
    backends, upstream, tmp_path, installer
):
    name = f"localized-{installer}"
    upstream.add(setuptools_sdist(tmp_path, name, "2.0"))
    assert backends.build(f"{name}==2.0")[0] == 0
    assert rebuild(backends, f"{name}==2.0", "--bump", "local")["wheels"] == [
        f"{name.replace('-', '_')}-2.0+wheelwright.1-py3-none-any.whl"
    ]
    assert (
        install_and_run(
            backends, tmp_path, f"{name}==2.0", VERSION_OF.format(name), installer=installer
        ).strip()
        == "2.0+wheelwright.1"
    )


def test_a_post_bump_upstream_could_collide_with_is_refused_with_what_to_do(
    backends, upstream, tmp_path
):
    upstream.add(setuptools_sdist(tmp_path, "clash", "1.0"))
    upstream.add(setuptools_sdist(tmp_path, "clash", "1.0.post1"))
    assert backends.build("clash==1.0")[0] == 0
    proc = backends.cli(
        "rebuild", "clash==1.0", "--builder", DEFAULT_BUILDER, "--wait", check=False
    )
    assert proc.returncode != 0
    assert (
        "1.0.post1 would collide with upstream, which publishes 1.0.post1: use --bump local or --bump build-tag"
        in proc.stderr
    )
    assert listed(backends, "clash") == [
        "clash-1.0-py3-none-any.whl"
    ]  # nothing built, nothing published


def test_a_rebuild_says_what_changed_since_the_previous_build_of_its_version(
    backends, upstream, tmp_path
):
    upstream.add(setuptools_sdist(tmp_path, "diffed", "1.0", module="diffed_mod"))
    rc, first = backends.build("diffed==1.0")
    assert rc == 0, first
    assert "rebuild-diff" not in backends.step_logs(
        first
    )  # nothing to compare the first build with
    settings = backends.state / "overrides" / "settings" / "diffed.yaml"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text("imports: [diffed_mod]\n")
    try:
        second = rebuild(backends, "diffed==1.0")
    finally:
        settings.unlink()
    diff = backends.step_logs(second)["rebuild-diff"]
    assert diff.startswith(
        f"before: diffed-1.0-py3-none-any.whl ({first['build_url']})\n"
        f"after:  diffed-1.0.post1-py3-none-any.whl ({second['build_url']})\n"
    )
    assert "settings:\n  ~ imports [] -> ['diffed_mod']\n" in diff
    assert "build environment: unchanged\n" in diff and "Requires-Dist: unchanged\n" in diff
    # setuptools with SOURCE_DATE_EPOCH rebuilds the same bytes: the bump is no difference in itself
    assert diff.endswith("the wheel's files are identical, byte for byte\n")
    assert backends.cli("diff", "diffed==1.0", human=True).stdout == diff


STAMPED = """\
    import time
    from setuptools import setup
    from setuptools.command.build_py import build_py

    class Stamp(build_py):
        def run(self):
            super().run()
            with open(f"{self.build_lib}/stamped_at.py", "w") as out:
                out.write(f"BUILT_AT = {time.time_ns()}\\n")

    setup(cmdclass={"build_py": Stamp})
    """


def test_verify_reproduces_a_pure_wheel_and_names_what_an_unreproducible_one_changes(
    backends, upstream, tmp_path
):
    upstream.add(setuptools_sdist(tmp_path, "steady", "1.0"))
    upstream.add(setuptools_sdist(tmp_path, "stamped", "1.0", setup_py=STAMPED))
    for name in ("steady", "stamped"):
        assert backends.build(f"{name}==1.0")[0] == 0
    proc = backends.cli(
        "verify", "steady==1.0", "--builder", DEFAULT_BUILDER, "--wait", check=False
    )
    steady = json.loads(proc.stdout)
    assert proc.returncode == 0 and steady["reproducible"] is True, steady
    assert steady["wheel_urls"] == []  # nothing published
    log = backends.step_logs(steady)["reproducibility"]
    assert "reproducible: the rebuild is the wheel the worker built, bit for bit" in log
    proc = backends.cli(
        "verify", "stamped==1.0", "--builder", DEFAULT_BUILDER, "--wait", check=False
    )
    stamped = json.loads(proc.stdout)
    assert proc.returncode == 1 and stamped["reproducible"] is False, stamped
    assert stamped["differing_members"] == ["stamped_at.py"], stamped
    log = backends.step_logs(stamped)["reproducibility"]
    assert "differs: stamped_at.py" in log and "-BUILT_AT = " in log and "+BUILT_AT = " in log
    # The outcome is in the published wheel's provenance, beside it in the index.
    published = json.loads(backends.cli("which", "stamped==1.0").stdout)
    (checked,) = published["verifications"]
    assert (checked["reproducible"], checked["differing"], checked["build_url"]) == (
        False,
        ["stamped_at.py"],
        stamped["build_url"],
    )
    assert (
        checked["workername"] != published["workername"]
    )  # the farm is idle: the other local worker
    assert listed(backends, "stamped") == ["stamped-1.0-py3-none-any.whl"]
    proc = backends.cli("verify", "unbuilt==1.0", "--wait", check=False)
    assert (
        proc.returncode != 0
        and "our index has no wheel of unbuilt 1.0 to verify: build it" in proc.stderr
    )
