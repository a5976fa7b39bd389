"""Hostile input against the parts that take it: the sdist unpacker, the wheel-name and METADATA
checks, and the index writer. Each test reports its figure; hypothesis fuzzes all three."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.sdists import pkg_info
from tests.wheels import make_wheel
from wheelwright.index.store import IndexStore, PublishError, parse_distribution_filename, sha256_of
from wheelwright.index.upstream import Sdist, SourceError, download_verified
from wheelwright.workers import source
from wheelwright.workers.tool import ToolError

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def tar_sdist(path: Path, members: list[tuple[str, bytes, str]], *, name: str = "evil", version: str = "1.0") -> Path:
    """A .tar.gz with PKG-INFO and members (name, data, kind); kind is file, dir, symlink:TARGET,
    hardlink:TARGET, chr or fifo."""
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo(f"{name}-{version}/PKG-INFO")
        text = pkg_info(name, version).encode()
        info.size = len(text)
        tar.addfile(info, io.BytesIO(text))
        for member, data, kind in members:
            info = tarfile.TarInfo(member)
            if kind.startswith(("symlink:", "hardlink:")):
                info.type = tarfile.SYMTYPE if kind.startswith("symlink:") else tarfile.LNKTYPE
                info.linkname = kind.split(":", 1)[1]
            else:
                info.type = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "chr": tarfile.CHRTYPE,
                             "fifo": tarfile.FIFOTYPE}[kind]
                info.size = len(data) if kind == "file" else 0
            tar.addfile(info, io.BytesIO(data) if kind == "file" else None)
    return path


def zip_sdist(path: Path, members: list[tuple[str, int]]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("evil-1.0/PKG-INFO", pkg_info("evil", "1.0"))
        for name, mode in members:
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            zf.writestr(info, "x")
    return path


HOSTILE_SDISTS = {
    "dot-dot member": lambda p: tar_sdist(p, [("evil-1.0/../../escaped", b"x", "file")]),
    "absolute member": lambda p: tar_sdist(p, [("/tmp/wheelwright-escaped", b"x", "file")]),
    "symlink out": lambda p: tar_sdist(p, [("evil-1.0/link", b"", "symlink:/etc/passwd")]),
    "symlink then write through it": lambda p: tar_sdist(
        p, [("evil-1.0/up", b"", "symlink:.."), ("evil-1.0/up/escaped", b"x", "file")]),
    "hardlink out": lambda p: tar_sdist(p, [("evil-1.0/hard", b"", "hardlink:/etc/passwd")]),
    "device file": lambda p: tar_sdist(p, [("evil-1.0/dev", b"", "chr")]),
    "fifo": lambda p: tar_sdist(p, [("evil-1.0/fifo", b"", "fifo")]),
    "zip dot-dot": lambda p: zip_sdist(p.with_suffix(".zip"), [("evil-1.0/../../escaped", 0o100644)]),
    "zip absolute": lambda p: zip_sdist(p.with_suffix(".zip"), [("/tmp/wheelwright-escaped", 0o100644)]),
    "zip symlink": lambda p: zip_sdist(p.with_suffix(".zip"), [("evil-1.0/link", 0o120777)]),
    "tar bomb, members": lambda p: tar_sdist(p, [(f"evil-1.0/f{n}", b"", "file") for n in range(200)]),
    "tar bomb, size": lambda p: tar_sdist(p, [("evil-1.0/big", b"\0" * 200_000, "file")]),
    "another project": lambda p: tar_sdist(p, [], name="other"),
    "another version": lambda p: tar_sdist(p, [], version="6.6.6"),
    "two top directories": lambda p: tar_sdist(p, [("second-1.0/x", b"x", "file")]),
}


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


def test_hostile_sdists_are_all_rejected_and_nothing_escapes(tmp_path):
    rejected = 0
    for label, make in HOSTILE_SDISTS.items():
        case = tmp_path / label.replace(" ", "-").replace(",", "")
        (case / "work").mkdir(parents=True)
        sdist = make(case / "evil-1.0.tar.gz")
        before = files_under(tmp_path)
        with pytest.raises(ToolError):
            source.unpack(sdist, case / "work" / "src", project="evil", version="1.0", max_members=100, max_bytes=100_000)
        rejected += 1
        assert files_under(tmp_path) == before, label
    assert not Path("/tmp/wheelwright-escaped").exists()
    print(f"\n{len(HOSTILE_SDISTS)} hostile sdists tried, {rejected} rejected, 0 files left outside the build directory")


member_names = st.lists(st.text(st.sampled_from("ab./\\\\-_"), min_size=1, max_size=12), min_size=1, max_size=6)
kinds = st.sampled_from(["file", "dir", "symlink:..", "symlink:/etc", "symlink:a", "hardlink:a", "chr", "fifo"])


@FUZZ
@given(members=st.lists(st.tuples(member_names.map("/".join), kinds), max_size=6))
def test_fuzzed_tars_unpack_inside_the_build_directory_or_not_at_all(tmp_path_factory, members):
    root = tmp_path_factory.mktemp("fuzz")
    (root / "work").mkdir()
    sdist = tar_sdist(root / "evil-1.0.tar.gz", [(f"evil-1.0/{name}", b"x", kind) for name, kind in members])
    try:
        src = source.unpack(sdist, root / "work" / "src", project="evil", version="1.0")
    except ToolError:
        assert list((root / "work").iterdir()) == []
        return
    for path in files_under(root / "work"):
        assert not path.is_symlink()
        assert path.resolve().is_relative_to(src.resolve())


@FUZZ
@given(filename=st.text(max_size=60) | st.from_regex(r"[a-zA-Z0-9_.]{1,10}-[0-9a-z.!+]{1,8}(-[0-9a-z_.]{1,8}){2,4}\.whl",
                                                      fullmatch=True))
def test_fuzzed_file_names_parse_or_are_refused(filename):
    try:
        dist = parse_distribution_filename(filename)
    except PublishError:
        return
    assert "/" not in dist.filename and not dist.filename.startswith(".")
    assert dist.kind in ("wheel", "sdist")


@FUZZ
@given(metadata=st.binary(max_size=300) | st.text(max_size=300).map(str.encode),
       filename=st.sampled_from(["demo-1.0-py3-none-any.whl", "demo-1.0.tar.gz", "../demo-1.0-py3-none-any.whl"]))
def test_fuzzed_uploads_publish_whole_or_leave_the_index_as_it_was(tmp_path_factory, metadata, filename):
    root = tmp_path_factory.mktemp("index")
    store = IndexStore(root / "index")
    payload = root / "upload"
    with zipfile.ZipFile(payload, "w") as zf:
        zf.writestr("demo-1.0.dist-info/METADATA", metadata)
    before = files_under(root / "index")
    try:
        store.publish(filename, payload, sha256=sha256_of(payload))
    except PublishError:
        assert files_under(root / "index") == before
        return
    listing = json.loads((store.project_dir("demo") / "index.json").read_text())
    on_disk = {p.name for p in store.project_dir("demo").iterdir() if not p.name.startswith((".", "index."))}
    listed = {f["filename"] for f in listing["files"]}
    assert listed == {n for n in on_disk if not n.endswith((".metadata", ".provenance.json"))}


def test_wheels_that_lie_about_themselves_are_refused(tmp_path):
    store = IndexStore(tmp_path / "index")
    liars = {
        "METADATA of another project": make_wheel(tmp_path, "demo", "1.0", metadata_name="other"),
        "no METADATA": _zip(tmp_path / "demo-1.0-py3-none-any.whl", {"demo.py": "x"}),
        "two .dist-info": _zip(tmp_path / "demo-2.0-py3-none-any.whl", {
            "demo-2.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: demo\nVersion: 2.0\n",
            "other-2.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: other\nVersion: 2.0\n"}),
        "not a zip": _raw(tmp_path / "demo-3.0-py3-none-any.whl", b"MZ not a zip"),
    }
    for label, wheel in liars.items():
        with pytest.raises(PublishError):
            store.publish(wheel.name, wheel, sha256=sha256_of(wheel))
    assert store.projects() == []
    print(f"\n{len(liars)} lying wheels tried, {len(liars)} rejected, 0 files published")


def _zip(path: Path, files: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return path


def _raw(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


class Redirector(BaseHTTPRequestHandler):
    body = b"sdist bytes"

    def do_GET(self):
        port = self.server.server_address[1]
        targets = {"/elsewhere.tar.gz": f"http://localhost:{port}/real.tar.gz", "/here.tar.gz": "/real.tar.gz"}
        if self.path in targets:
            self.send_response(302)
            self.send_header("Location", targets[self.path])
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


def test_a_redirect_to_another_host_is_refused_and_nothing_is_kept(tmp_path):
    server = HTTPServer(("127.0.0.1", 0), Redirector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    sha256 = hashlib.sha256(Redirector.body).hexdigest()
    try:
        with pytest.raises(SourceError, match="redirects to another host"):
            download_verified(Sdist("evil", "1.0", "evil-1.0.tar.gz", f"{base}/elsewhere.tar.gz", sha256), tmp_path)
        assert list(tmp_path.iterdir()) == []
        path = download_verified(Sdist("evil", "1.0", "evil-1.0.tar.gz", f"{base}/here.tar.gz", sha256), tmp_path)
        assert path.read_bytes() == Redirector.body
    finally:
        server.shutdown()
