"""Sources that are not sdists upstream: a package whose settings name a git repository or an
archive's address, archived reproducibly by the master and built like any sdist."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.conftest import install_and_run
from tests.farm import http_get
from wheelwright.sources.upstream import SourceError
from wheelwright.sources.vcs import sdist_from_git, sdist_from_url

COMMIT_TIME = "2024-05-01T12:00:00+00:00"


def git_repo(root: Path, name: str, version: str) -> tuple[Path, str]:
    """A repository with a setuptools project, its release tagged v<version>; returns its commit."""
    root.mkdir()
    (root / "pyproject.toml").write_text(
        f'[build-system]\nrequires = ["setuptools>=70"]\nbuild-backend = "setuptools.build_meta"\n\n'
        f'[project]\nname = "{name}"\nversion = "{version}"\n'
    )
    (root / f"{name.replace('-', '_')}.py").write_text("FROM = 'git'\n")
    (root / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(root / "run.sh", 0o755)
    env = {
        **os.environ,
        "GIT_AUTHOR_DATE": COMMIT_TIME,
        "GIT_COMMITTER_DATE": COMMIT_TIME,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    for cmd in (
        ["init", "--quiet"],
        ["add", "."],
        ["commit", "--quiet", "-m", "release"],
        ["tag", f"v{version}"],
    ):
        subprocess.run(["git", *cmd], cwd=root, env=env, check=True)
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
    ).stdout
    return root, commit.strip()


def test_the_same_commit_makes_the_same_bytes(tmp_path):
    repo, commit = git_repo(tmp_path / "repo", "gitdemo", "1.0")
    first = sdist_from_git(f"file://{repo}", "v${version}", "gitdemo", "1.0", tmp_path / "a")
    second = sdist_from_git(f"file://{repo}", "v${version}", "gitdemo", "1.0", tmp_path / "b")
    assert first.commit == second.commit == commit
    assert (
        hashlib.sha256(first.path.read_bytes()).digest()
        == hashlib.sha256(second.path.read_bytes()).digest()
    )
    with tarfile.open(first.path) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == sorted(m.name for m in members)
    assert {m.name for m in members} >= {
        "gitdemo-1.0/PKG-INFO",
        "gitdemo-1.0/pyproject.toml",
        "gitdemo-1.0/gitdemo.py",
    }
    assert {(m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, "", "")}
    assert {m.mtime for m in members} == {1714564800}  # the commit's time
    assert {m.name: m.mode for m in members}["gitdemo-1.0/run.sh"] == 0o755


def test_a_ref_the_repository_lacks_is_a_clear_error(tmp_path):
    repo, _ = git_repo(tmp_path / "repo", "gitdemo", "1.0")
    with pytest.raises(SourceError, match="git fetch failed"):
        sdist_from_git(f"file://{repo}", "v${version}", "gitdemo", "2.0", tmp_path / "out")


@pytest.mark.farm
def test_a_package_built_from_its_git_repository(backends, tmp_path):
    repo, commit = git_repo(tmp_path / "repo", "gitpkg", "1.0")
    settings = backends.state / "overrides" / "settings"
    settings.mkdir(parents=True, exist_ok=True)
    (settings / "gitpkg.yaml").write_text(
        f'source: {{git: "file://{repo}", ref: "v${{version}}"}}\n'
    )
    rc, result = backends.build("gitpkg==1.0")
    assert rc == 0, json.dumps(result)
    (wheel,) = result["wheels"]
    provenance = json.loads(
        http_get(f"{backends.status['index']}gitpkg/{wheel}.provenance.json")[1]
    )
    assert (
        provenance["source_commit"] == commit
        and provenance["source_filename"] == "gitpkg-1.0.tar.gz"
    )
    sources = backends.status["sources"]
    archived = json.loads(http_get(f"{sources}gitpkg/gitpkg-1.0.tar.gz.provenance.json")[1])
    assert archived == {"git": f"file://{repo}", "ref": "v1.0", "commit": commit}
    assert (
        install_and_run(backends, tmp_path, "gitpkg==1.0", "import gitpkg; print(gitpkg.FROM)")
        == "git\n"
    )


def project_archive(
    upstream, name: str, version: str, members: dict[str, bytes | None], kind: str = "file"
) -> str:
    """An archive as a forge serves one (one top folder, no PKG-INFO) beside the test upstream's
    pages; returns its URL template."""
    folder = Path(upstream.store.root) / "archives"
    folder.mkdir(exist_ok=True)
    with tarfile.open(folder / f"{name}-{version}.tar.gz", "w:gz") as tar:
        for member, data in members.items():
            info = tarfile.TarInfo(f"{name}-{version}/{member}")
            info.mtime = 1714564800
            if data is None or data.startswith(b"->"):
                info.type = tarfile.SYMTYPE
                info.linkname = "/etc/passwd" if data is None else data[2:].decode()
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return upstream.url.replace("/simple/", f"/archives/{name}-${{version}}.tar.gz")


PROJECT = {
    "pyproject.toml": b'[build-system]\nrequires = ["setuptools>=70"]\nbuild-backend = "setuptools.build_meta"\n\n'
    b'[project]\nname = "urlpkg"\nversion = "1.0"\n',
    "urlpkg.py": b"FROM = 'archive'\n",
}


def test_an_archive_from_an_address_becomes_a_reproducible_sdist(upstream, tmp_path):
    template = project_archive(upstream, "urldemo", "1.0", PROJECT)
    first = sdist_from_url(template, "urldemo", "1.0", tmp_path / "a")
    second = sdist_from_url(template, "urldemo", "1.0", tmp_path / "b")
    assert first.path.read_bytes() == second.path.read_bytes()
    assert first.provenance["archive_url"].endswith("/archives/urldemo-1.0.tar.gz")
    with tarfile.open(first.path) as tar:
        assert tar.getnames() == [
            "urldemo-1.0/PKG-INFO",
            "urldemo-1.0/pyproject.toml",
            "urldemo-1.0/urlpkg.py",
        ]
        assert {m.mtime for m in tar.getmembers()} == {1714564800}


def test_an_archives_links_reach_the_worker_which_keeps_only_those_inside(upstream, tmp_path):
    from wheelwright.common.runtime import ToolError
    from wheelwright.worker.prepare_source import unpack

    inside = {**PROJECT, "./alias.py": b"->urlpkg.py"}
    made = sdist_from_url(
        project_archive(upstream, "linkdemo", "1.0", inside), "linkdemo", "1.0", tmp_path / "in"
    )
    (tmp_path / "work").mkdir()
    src = unpack(made.path, tmp_path / "work" / "src", project="linkdemo", version="1.0")
    assert (src / "alias.py").is_symlink() and (
        src / "alias.py"
    ).read_text() == "FROM = 'archive'\n"
    outside = {**PROJECT, "evil": None}
    made = sdist_from_url(
        project_archive(upstream, "evildemo", "1.0", outside), "evildemo", "1.0", tmp_path / "out"
    )
    with pytest.raises(ToolError, match="is a link to '/etc/passwd'; refused"):
        unpack(made.path, tmp_path / "work" / "evil", project="evildemo", version="1.0")


def test_an_archive_that_unpacks_beyond_the_bounds_is_refused_in_memory(
    upstream, tmp_path, monkeypatch
):
    from wheelwright.sources import vcs as othersources

    monkeypatch.setattr(othersources, "MAX_TREE_BYTES", 1 << 20)
    bomb = {**PROJECT, "zeros": b"\0" * (2 << 20)}  # compresses to a few KiB
    template = project_archive(upstream, "bombdemo", "1.0", bomb)
    with pytest.raises(SourceError, match="unpacked; refused"):
        sdist_from_url(template, "bombdemo", "1.0", tmp_path / "out")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


@pytest.mark.farm
def test_a_package_built_from_an_archive_address(backends, upstream, tmp_path):
    template = project_archive(upstream, "urlpkg", "1.0", PROJECT)
    settings = backends.state / "overrides" / "settings"
    settings.mkdir(parents=True, exist_ok=True)
    (settings / "urlpkg.yaml").write_text(f'source: {{url: "{template}"}}\n')
    rc, result = backends.build("urlpkg==1.0")
    assert rc == 0, json.dumps(result)
    archived = json.loads(
        http_get(f"{backends.status['sources']}urlpkg/urlpkg-1.0.tar.gz.provenance.json")[1]
    )
    assert (
        archived["archive_url"] == template.replace("${version}", "1.0")
        and len(archived["archive_sha256"]) == 64
    )
    assert (
        install_and_run(backends, tmp_path, "urlpkg==1.0", "import urlpkg; print(urlpkg.FROM)")
        == "archive\n"
    )
