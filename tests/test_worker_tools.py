"""The worker-side tools as plain Python: unpacking hostile sdists, patches, results."""

from __future__ import annotations

import io
import socket
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.sdists import pkg_info, setuptools_sdist
from tests.wheels import make_wheel
from wheelwright.index.upload import upload
from wheelwright.workers import source
from wheelwright.workers.buildenv import install_from_index
from wheelwright.workers.tool import RESULT_PREFIX, ToolError, create_venv, no_network_prefix
from wheelwright.workers.validate import check_tags


def tar_with(tmp_path: Path, *members: tarfile.TarInfo, data: bytes = b"") -> Path:
    path = tmp_path / "evil-1.0.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("evil-1.0/PKG-INFO")
        text = pkg_info("evil", "1.0").encode()
        info.size = len(text)
        tar.addfile(info, io.BytesIO(text))
        for member in members:
            tar.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return path


def member(name: str, kind=tarfile.REGTYPE, linkname: str = "", size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.size = size
    return info


@pytest.mark.parametrize("evil, reason", [
    (member("evil-1.0/../../escaped", size=1), "unsafe member"),
    (member("/tmp/absolute", size=1), "unsafe member"),
    (member("evil-1.0/link", tarfile.SYMTYPE, "/etc/passwd"), "is a link"),
    (member("evil-1.0/inside-link", tarfile.SYMTYPE, "PKG-INFO"), "is a link"),
    (member("evil-1.0/hard", tarfile.LNKTYPE, "/etc/passwd"), "is a link"),
    (member("evil-1.0/dev", tarfile.CHRTYPE), "device, FIFO"),
    (member("evil-1.0/fifo", tarfile.FIFOTYPE), "device, FIFO"),
])
def test_hostile_tar_members_are_refused_and_nothing_lands(tmp_path, evil, reason):
    sdist = tar_with(tmp_path, evil, data=b"x")
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(ToolError, match=reason):
        source.unpack(sdist, work / "src", project="evil", version="1.0")
    assert list(work.iterdir()) == []
    assert not (tmp_path / "escaped").exists()


@pytest.mark.parametrize("name, attr, reason", [
    ("evil-1.0/../../escaped", 0o100644, "unsafe member"),
    ("/abs", 0o100644, "unsafe member"),
    ("evil-1.0/link", 0o120777, "is a link"),
])
def test_hostile_zip_members_are_refused(tmp_path, name, attr, reason):
    path = tmp_path / "evil-1.0.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("evil-1.0/PKG-INFO", pkg_info("evil", "1.0"))
        info = zipfile.ZipInfo(name)
        info.external_attr = attr << 16
        zf.writestr(info, "x")
    (tmp_path / "work").mkdir()
    with pytest.raises(ToolError, match=reason):
        source.unpack(path, tmp_path / "work" / "src", project="evil", version="1.0")
    assert list((tmp_path / "work").iterdir()) == []


def test_limits_stop_tar_bombs(tmp_path):
    sdist = tar_with(tmp_path, *(member(f"evil-1.0/f{n}") for n in range(20)))
    with pytest.raises(ToolError, match="more than 10 members"):
        source.unpack(sdist, tmp_path / "src", project="evil", version="1.0", max_members=10)
    big = tar_with(tmp_path, member("evil-1.0/big", size=5000), data=b"x" * 5000)
    with pytest.raises(ToolError, match="more than 1000 bytes"):
        source.unpack(big, tmp_path / "src", project="evil", version="1.0", max_bytes=1000)


def test_an_sdist_of_another_project_or_version_is_refused(tmp_path):
    sdist = setuptools_sdist(tmp_path, "asked", "2.0")
    with pytest.raises(ToolError, match=r"the sdist is asked 2.0, but asked 1.0 was asked for"):
        source.unpack(sdist, tmp_path / "src", project="asked", version="1.0")
    with pytest.raises(ToolError, match=r"but other 2.0 was asked for"):
        source.unpack(sdist, tmp_path / "src", project="other", version="2.0")


def test_unpacks_and_applies_patches_in_name_order(tmp_path):
    sdist = setuptools_sdist(tmp_path, "good", "1.0", code="A = 1\n")
    src = source.unpack(sdist, tmp_path / "src", project="good", version="1.0")
    patches = tmp_path / "patches"
    patches.mkdir()
    (patches / "0002-second.patch").write_text("--- a/good.py\n+++ b/good.py\n@@ -1 +1 @@\n-A = 2\n+A = 3\n")
    (patches / "0001-first.patch").write_text("--- a/good.py\n+++ b/good.py\n@@ -1 +1 @@\n-A = 1\n+A = 2\n")
    assert source.apply_patches(src, list(patches.iterdir())) == ["0001-first.patch", "0002-second.patch"]
    assert (src / "good.py").read_text() == "A = 3\n"
    with pytest.raises(ToolError, match="patch 0001-first.patch does not apply"):
        source.apply_patches(src, [patches / "0001-first.patch"])


def test_the_tool_prints_its_error_as_a_result_line(tmp_path):
    sdist = tar_with(tmp_path, member("/abs", size=1), data=b"x")
    proc = subprocess.run([sys.executable, "-m", "wheelwright.workers.source", "--sdist", str(sdist), "--dest",
                           str(tmp_path / "src"), "--project", "evil", "--version", "1.0"],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stdout.splitlines()[-1].startswith(RESULT_PREFIX + '{"error": "unsafe member')


def test_no_network_prefix_really_cuts_the_network():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    code = f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=3)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
    proc = subprocess.run([*no_network_prefix(), sys.executable, "-c", code], capture_output=True, text=True)
    listener.close()
    assert proc.returncode != 0
    assert "Network is unreachable" in proc.stderr or "Connection refused" in proc.stderr


def test_build_requirements_come_from_our_index_or_fail_clearly(index_host, tmp_path):
    upload(index_host + "legacy/", "uploader", "s3cret", make_wheel(tmp_path, "backend", "1.0"))
    env_python = create_venv(sys.executable, str(tmp_path / "env"))
    simple = index_host + "simple/"
    with pytest.raises(ToolError, match="build requirement missing-one is not in the index") as err:
        install_from_index(env_python, ["backend", "missing_one>=1"], simple)
    assert err.value.details == {"missing": ["missing-one"]}
    with pytest.raises(ToolError, match=r"backend>=2 \(our index has 1.0\) is not satisfied by our index"):
        install_from_index(env_python, ["backend>=2"], simple)
    install_from_index(env_python, ["backend>=1", 'never; python_version < "3"'], simple)
    freeze = subprocess.run([sys.executable, "-m", "pip", "--python", env_python, "freeze", "--all"],
                            capture_output=True, text=True, check=True).stdout
    assert freeze.split() == ["backend==1.0"]


def test_a_wheel_the_builders_python_cannot_install_fails_validation(tmp_path):
    check_tags(sys.executable, make_wheel(tmp_path, "fine", "1.0"))
    other = make_wheel(tmp_path, "other", "1.0", tag="cp27-cp27m-win32")
    with pytest.raises(ToolError, match="is tagged cp27-cp27m-win32, which this builder's Python"):
        check_tags(sys.executable, other)
