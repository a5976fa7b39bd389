"""Edits to settings and patches rebuild what they change."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from tests.conftest import wheel_index_has
from tests.farm import DEFAULT_BUILDER, farm_on, http_get
from tests.sdists import setuptools_sdist
from tests.wheels import make_wheel
from wheelwright.changes.settings_changes import digests, rebuilds
from wheelwright.indexhost.upload import upload
from wheelwright.policy.package_settings import owner

HUNK = "--- a/x.py\n+++ b/x.py\n@@ -1 +1 @@\n-A\n+B\n"


def test_files_belong_to_a_project_or_one_of_its_versions(tmp_path):
    assert owner(tmp_path / "settings" / "My_Pkg.yaml", tmp_path) == ("my-pkg", None)
    assert owner(tmp_path / "patches" / "my_pkg", tmp_path) == ("my-pkg", None)
    assert owner(tmp_path / "patches" / "my-pkg-1.0", tmp_path) == ("my-pkg", "1.0")
    assert owner(tmp_path / "patches" / "my-pkg-latest", tmp_path) == ("my-pkg-latest", None)
    assert owner(tmp_path / "notes.txt", tmp_path) is None


def test_an_edit_changes_only_its_own_digest(tmp_path):
    (tmp_path / "settings").mkdir()
    (tmp_path / "patches" / "b-2.0").mkdir(parents=True)
    (tmp_path / "settings" / "a.yaml").write_text("imports: [a]\n")
    (tmp_path / "patches" / "b-2.0" / "0001.patch").write_text(HUNK)
    before = digests(tmp_path)
    assert set(before) == {"a", "b==2.0"}
    (tmp_path / "patches" / "b-2.0" / "0002.patch").write_text(HUNK)
    after = digests(tmp_path)
    assert after["a"] == before["a"] and after["b==2.0"] != before["b==2.0"]


def test_what_changed_is_rebuilt_with_the_next_bump_if_our_index_has_it(tmp_path, index_host):
    for name, version in (("a", "1.0"), ("a", "2.0"), ("b", "2.0"), ("b", "3.0")):
        upload(index_host + "legacy/", "uploader", "s3cret", make_wheel(tmp_path, name, version))
        upload(
            index_host + "legacy/", "uploader", "s3cret", setuptools_sdist(tmp_path, name, version)
        )
    # a's rebuild of 2.0 lists 2.0.post1 in our index: the newest version is still its sdist's
    upload(index_host + "legacy/", "uploader", "s3cret", make_wheel(tmp_path, "a", "2.0.post1"))
    farm = farm_on(index_host, tmp_path / "farm", rebuild_bump="local", local_label="ours")
    before = {"a": "1", "b==2.0": "1", "c": "1"}
    now = {"a": "2", "b==2.0": "2", "c": "2", "d": "1"}
    assert [(p, v, bump["wheel_version"]) for p, v, bump in rebuilds(before, now, farm)] == [
        ("a", "2.0", "2.0+ours.1"),
        ("b", "2.0", "2.0+ours.1"),
    ]  # c, d: no wheel yet
    assert rebuilds(now, now, farm) == []


@pytest.mark.farm
def test_editing_a_built_packages_settings_rebuilds_it_on_the_running_farm(
    backends, upstream, tmp_path
):
    upstream.add(setuptools_sdist(tmp_path, "resettled", "1.0", module="resettled_mod"))
    assert backends.build("resettled==1.0", DEFAULT_BUILDER)[0] == 0
    farm_json = backends.state / "farm.json"
    options = json.loads(farm_json.read_text())
    farm_json.write_text(json.dumps({**options, "settings_poll_interval": 1}))
    backends.cli("up")  # reconfigured: the settings are watched every second
    try:
        time.sleep(3)  # the first poll notes how they are
        settings = backends.state / "overrides" / "settings" / "resettled.yaml"
        settings.parent.mkdir(parents=True, exist_ok=True)
        settings.write_text("imports: [resettled_mod]\n")
        deadline = time.monotonic() + 120
        url = (
            backends.status["index"] + "resettled/resettled-1.0.post1-py3-none-any.whl"
        )  # the farm's default bump
        while http_get(url)[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.5)
        provenance = json.loads(http_get(url + ".provenance.json")[1])
        assert (provenance["bump"], provenance["reason"]) == ("post", "settings or patches changed")
        assert wheel_index_has(backends, "resettled")
    finally:
        farm_json.write_text(json.dumps(options))
        backends.cli("up")
        backends.wait_until_idle()


def git(*args: str, cwd=None) -> None:
    subprocess.run(
        ["git", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        env={
            **os.environ,
            "GIT_AUTHOR_NAME": "ops",
            "GIT_AUTHOR_EMAIL": "ops@example.invalid",
            "GIT_COMMITTER_NAME": "ops",
            "GIT_COMMITTER_EMAIL": "ops@example.invalid",
        },
    )


@pytest.mark.farm
def test_settings_in_git_are_watched_by_gitpoller_and_a_commit_rebuilds_what_it_changed(
    backends, upstream, tmp_path
):
    upstream.add(setuptools_sdist(tmp_path, "gitset", "1.0", module="gitset_mod"))
    assert backends.build("gitset==1.0", DEFAULT_BUILDER)[0] == 0
    repo, work = tmp_path / "settings.git", tmp_path / "work"
    git("init", "--quiet", "--bare", "--initial-branch", "main", str(repo))
    git("clone", "--quiet", str(repo), str(work))
    (work / "README").write_text("the farm's settings\n")
    git("add", "README", cwd=work)
    git("commit", "--quiet", "-m", "start", cwd=work)
    git("push", "--quiet", "origin", "HEAD:main", cwd=work)
    farm_json = backends.state / "farm.json"
    options = json.loads(farm_json.read_text())
    farm_json.write_text(
        json.dumps(
            {
                **options,
                "settings": str(tmp_path / "checkout"),
                "settings_git": str(repo),
                "settings_poll_interval": 1,
            }
        )
    )
    backends.cli("up")  # clones the repository and watches it
    try:
        assert (tmp_path / "checkout" / "README").exists()
        time.sleep(3)  # GitPoller's first poll notes where the branch stands
        (work / "settings").mkdir()
        (work / "settings" / "gitset.yaml").write_text("imports: [gitset_mod]\n")
        git("add", "settings", cwd=work)
        git("commit", "--quiet", "-m", "gitset: test its module's import", cwd=work)
        git("push", "--quiet", "origin", "HEAD:main", cwd=work)
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=work, capture_output=True, text=True
        ).stdout.strip()
        url = backends.status["index"] + "gitset/gitset-1.0.post1-py3-none-any.whl"
        deadline = time.monotonic() + 120
        while http_get(url)[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.5)
        provenance = json.loads(http_get(url + ".provenance.json")[1])
        assert (provenance["reason"], provenance["settings_commit"]) == (
            "settings or patches changed",
            commit,
        )
        assert provenance["package_settings"]["imports"] == [
            "gitset_mod"
        ]  # read from that commit's checkout
    finally:
        farm_json.write_text(json.dumps(options))
        backends.cli("up")
        backends.wait_until_idle()
