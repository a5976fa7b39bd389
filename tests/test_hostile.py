"""Hostile input against the parts that take it: the sdist unpacker, the wheel-name and METADATA
checks, and the index writer. Each test reports its figure; hypothesis fuzzes all three."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import stat
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.sdists import pkg_info
from tests.wheels import make_wheel, record_line, wheel_files, write_wheel
from wheelwright.common.files import sha256_of
from wheelwright.common.runtime import ToolError
from wheelwright.common.wheelcheck import WheelRefused, check_wheel
from wheelwright.indexhost.store import IndexStore, PublishError, parse_distribution_filename
from wheelwright.sources.upstream import Sdist, SourceError, download_verified
from wheelwright.worker import prepare_source as source

FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def tar_sdist(
    path: Path, members: list[tuple[str, bytes, str]], *, name: str = "evil", version: str = "1.0"
) -> Path:
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
                info.type = {
                    "file": tarfile.REGTYPE,
                    "dir": tarfile.DIRTYPE,
                    "chr": tarfile.CHRTYPE,
                    "fifo": tarfile.FIFOTYPE,
                }[kind]
                info.size = len(data) if kind == "file" else 0
            tar.addfile(info, io.BytesIO(data) if kind == "file" else None)
    return path


def zip_sdist(path: Path, members: list[tuple[str, int]], data: str = "x") -> Path:
    """A zip sdist with members (name, mode), each holding data (a link's target)."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("evil-1.0/PKG-INFO", pkg_info("evil", "1.0"))
        for name, mode in members:
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            zf.writestr(info, data)
    return path


HOSTILE_SDISTS = {
    "dot-dot member": lambda p: tar_sdist(p, [("evil-1.0/../../escaped", b"x", "file")]),
    "absolute member": lambda p: tar_sdist(p, [("/tmp/wheelwright-escaped", b"x", "file")]),
    "symlink out": lambda p: tar_sdist(p, [("evil-1.0/link", b"", "symlink:/etc/passwd")]),
    "symlink then write through it": lambda p: tar_sdist(
        p, [("evil-1.0/up", b"", "symlink:.."), ("evil-1.0/up/escaped", b"x", "file")]
    ),
    "a chain of links out": lambda p: tar_sdist(
        p, [("evil-1.0/x/up", b"", "symlink:.."), ("evil-1.0/y", b"", "symlink:x/up/../..")]
    ),
    "a link loop (found by the fuzzer)": lambda p: tar_sdist(
        p, [("evil-1.0/a", b"", "symlink:b"), ("evil-1.0/b", b"", "symlink:a")]
    ),
    "hardlink out": lambda p: tar_sdist(p, [("evil-1.0/hard", b"", "hardlink:/etc/passwd")]),
    "device file": lambda p: tar_sdist(p, [("evil-1.0/dev", b"", "chr")]),
    "fifo": lambda p: tar_sdist(p, [("evil-1.0/fifo", b"", "fifo")]),
    "zip dot-dot": lambda p: zip_sdist(
        p.with_suffix(".zip"), [("evil-1.0/../../escaped", 0o100644)]
    ),
    "zip absolute": lambda p: zip_sdist(
        p.with_suffix(".zip"), [("/tmp/wheelwright-escaped", 0o100644)]
    ),
    "zip symlink out": lambda p: zip_sdist(
        p.with_suffix(".zip"), [("evil-1.0/link", 0o120777)], "../../etc"
    ),
    "zip symlink, then a file through it": lambda p: zip_sdist(
        p.with_suffix(".zip"), [("evil-1.0/up", 0o120777), ("evil-1.0/up/x", 0o100644)], "."
    ),
    "tar bomb, members": lambda p: tar_sdist(
        p, [(f"evil-1.0/f{n}", b"", "file") for n in range(200)]
    ),
    "tar bomb, size": lambda p: tar_sdist(p, [("evil-1.0/big", b"\0" * 200_000, "file")]),
    "another project": lambda p: tar_sdist(p, [], name="other"),
    "another version": lambda p: tar_sdist(p, [], version="6.6.6"),
    "two top directories": lambda p: tar_sdist(p, [("second-1.0/x", b"x", "file")]),
}


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


def test_links_inside_a_real_sdists_tree_are_kept(tmp_path):
    # pdm-backend 2.4.3 ships test fixtures that are links to files beside them
    (tmp_path / "work").mkdir()
    sdist = tar_sdist(
        tmp_path / "evil-1.0.tar.gz",
        [
            ("evil-1.0/a/real.toml", b"x", "file"),
            ("evil-1.0/a/other.toml", b"", "symlink:real.toml"),
            ("evil-1.0/b", b"", "symlink:a"),
        ],
    )
    src = source.unpack(sdist, tmp_path / "work" / "src", project="evil", version="1.0")
    assert (src / "a" / "other.toml").read_bytes() == b"x" and (
        src / "b" / "real.toml"
    ).read_bytes() == b"x"


def test_hostile_sdists_are_all_rejected_and_nothing_escapes(tmp_path):
    rejected = 0
    for label, make in HOSTILE_SDISTS.items():
        case = tmp_path / label.replace(" ", "-").replace(",", "")
        (case / "work").mkdir(parents=True)
        sdist = make(case / "evil-1.0.tar.gz")
        before = files_under(tmp_path)
        with pytest.raises(ToolError):
            source.unpack(
                sdist,
                case / "work" / "src",
                project="evil",
                version="1.0",
                max_members=100,
                max_bytes=100_000,
            )
        rejected += 1
        assert files_under(tmp_path) == before, label
    assert not Path("/tmp/wheelwright-escaped").exists()
    print(
        f"\n{len(HOSTILE_SDISTS)} hostile sdists tried, {rejected} rejected, 0 files left outside the build directory"
    )


member_names = st.lists(
    st.text(st.sampled_from("ab./\\\\-_"), min_size=1, max_size=12), min_size=1, max_size=6
)
kinds = st.sampled_from(
    ["file", "dir", "symlink:..", "symlink:/etc", "symlink:a", "hardlink:a", "chr", "fifo"]
)


@FUZZ
@given(members=st.lists(st.tuples(member_names.map("/".join), kinds), max_size=6))
def test_fuzzed_tars_unpack_inside_the_build_directory_or_not_at_all(tmp_path_factory, members):
    root = tmp_path_factory.mktemp("fuzz")
    (root / "work").mkdir()
    sdist = tar_sdist(
        root / "evil-1.0.tar.gz", [(f"evil-1.0/{name}", b"x", kind) for name, kind in members]
    )
    try:
        src = source.unpack(sdist, root / "work" / "src", project="evil", version="1.0")
    except ToolError:
        assert list((root / "work").iterdir()) == []
        return
    for path in files_under(root / "work"):
        # a link is kept only when it leads inside the tree, as real sdists' links do
        assert path.resolve().is_relative_to(src.resolve())


@FUZZ
@given(names=st.lists(member_names.map("/".join), min_size=1, max_size=5), record_all=st.booleans())
def test_fuzzed_wheel_members_are_published_only_at_safe_paths(tmp_path_factory, names, record_all):
    root = tmp_path_factory.mktemp("wheel")
    files, dist_info = wheel_files("demo", "1.0")
    files.update({name: "x" for name in names})
    listed = files if record_all else {k: v for k, v in files.items() if k not in names[:1]}
    record = (
        "".join(record_line(n, c.encode()) for n, c in listed.items()) + f"{dist_info}/RECORD,,\n"
    )
    wheel = write_wheel(root / "demo-1.0-py3-none-any.whl", files, dist_info, record=record)
    try:
        check_wheel(wheel, wheel.name, "demo", "1.0")
    except WheelRefused:
        return
    with zipfile.ZipFile(wheel) as zf:
        for name in zf.namelist():
            target = (root / "site" / name).resolve()
            assert target.is_relative_to((root / "site").resolve()) and ".." not in name.split("/")
            assert (
                name in listed
                or name == f"{dist_info}/RECORD"
                or (name.endswith("/") and not zf.getinfo(name).file_size)
            )


@FUZZ
@given(
    filename=st.text(max_size=60)
    | st.from_regex(
        r"[a-zA-Z0-9_.]{1,10}-[0-9a-z.!+]{1,8}(-[0-9a-z_.]{1,8}){2,4}\.whl", fullmatch=True
    )
)
def test_fuzzed_file_names_parse_or_are_refused(filename):
    try:
        dist = parse_distribution_filename(filename)
    except PublishError:
        return
    assert "/" not in dist.filename and not dist.filename.startswith(".")
    assert dist.kind in ("wheel", "sdist")


HEADER = "Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n"


@FUZZ
@given(
    metadata=st.binary(max_size=300)
    | st.text(max_size=300).map(str.encode)
    # Mostly a true header and fuzzed fields after it: the check reads past the name and version.
    | st.text(max_size=300).map(lambda rest: (HEADER + rest).encode())
    | st.lists(
        st.sampled_from(["Requires-Dist", "Requires-Python", "Provides-Extra", "Summary"]).flatmap(
            lambda field: st.text(max_size=40).map(lambda value: f"{field}: {value}\n")
        ),
        max_size=4,
    ).map(lambda fields: (HEADER + "".join(fields)).encode()),
)
def test_fuzzed_metadata_is_published_whole_or_refused_for_its_metadata(tmp_path_factory, metadata):
    """A wheel true in every other way (WHEEL, RECORD, its name), its METADATA fuzzed: it reaches
    the METADATA check, which publishes it whole or refuses it saying what in METADATA is wrong."""
    root = tmp_path_factory.mktemp("index")
    store = IndexStore(root / "index")
    files, dist_info = wheel_files("demo", "1.0")
    files[f"{dist_info}/METADATA"] = metadata
    (root / "wheels").mkdir()
    wheel = write_wheel(root / "wheels" / "demo-1.0-py3-none-any.whl", files, dist_info)
    before = files_under(root / "index")
    try:
        store.publish(wheel.name, wheel, sha256=sha256_of(wheel))
    except PublishError as exc:
        assert "METADATA" in str(exc), str(exc)
        assert files_under(root / "index") == before
        return
    listing = json.loads((store.project_dir("demo") / "index.json").read_text())
    on_disk = {
        p.name
        for p in store.project_dir("demo").iterdir()
        if not p.name.startswith((".", "index."))
    }
    listed = {f["filename"] for f in listing["files"]}
    assert listed == {n for n in on_disk if not n.endswith((".metadata", ".provenance.json"))}


def _symlink_wheel(path: Path) -> Path:
    files, dist_info = wheel_files("demo", "1.0")
    write_wheel(
        path,
        files,
        dist_info,
        record="".join(record_line(n, c.encode()) for n, c in files.items())
        + record_line("demo/link", b"/etc/passwd")
        + f"{dist_info}/RECORD,,\n",
    )
    with zipfile.ZipFile(path, "a") as zf:
        info = zipfile.ZipInfo("demo/link")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    return path


def _liar(
    tmp_path: Path,
    label: str,
    *,
    extra: dict | None = None,
    drop: str | None = None,
    record: str | None = None,
    **options,
) -> Path:
    files, dist_info = wheel_files("demo", "1.0", **options)
    files.update(extra or {})
    files.pop(drop or "", None)
    return write_wheel(
        _own_dir(tmp_path, label) / "demo-1.0-py3-none-any.whl", files, dist_info, record=record
    )


def _own_dir(tmp_path: Path, label: str) -> Path:
    path = tmp_path / label.replace(" ", "_")
    path.mkdir(parents=True)
    return path


def _lying_wheels(tmp_path: Path) -> dict[str, Path]:
    files, dist_info = wheel_files("demo", "1.0")
    true_record = (
        "".join(record_line(n, c.encode()) for n, c in files.items()) + f"{dist_info}/RECORD,,\n"
    )
    return {
        "METADATA of another project": make_wheel(
            _own_dir(tmp_path, "other metadata"), "demo", "1.0", metadata_name="other"
        ),
        "no METADATA": _liar(tmp_path, "no METADATA", drop=f"{dist_info}/METADATA"),
        "no WHEEL": _liar(tmp_path, "no WHEEL", drop=f"{dist_info}/WHEEL"),
        "Wheel-Version 2": _liar(
            tmp_path,
            "Wheel-Version 2",
            extra={
                f"{dist_info}/WHEEL": "Wheel-Version: 2.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
            },
        ),
        "a second .dist-info": _liar(
            tmp_path,
            "a second dist-info",
            extra={
                "other-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: other\nVersion: 1.0\n"
            },
        ),
        ".dist-info of another project": _zip(
            _own_dir(tmp_path, "other dist-info") / "demo-2.0-py3-none-any.whl",
            {"other-2.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: demo\nVersion: 2.0\n"},
        ),
        ".dist-info of another version": _renamed_dist_info(tmp_path),
        "a .data directory of another project": _liar(
            tmp_path, "foreign data", extra={"other-1.0.data/scripts/x": "x"}
        ),
        "a file RECORD does not list": _liar(
            tmp_path, "unlisted", record=true_record.replace("demo.py,", "nothere.py,")
        ),
        "a file whose hash is not RECORD's": _liar(
            tmp_path, "changed", record=true_record, extra={"demo.py": "VALUE = 2\n"}
        ),
        "a file whose size is not RECORD's": _liar(
            tmp_path,
            "resized",
            record=true_record.replace(
                record_line("demo.py", b"VALUE = 1\n"),
                record_line("demo.py", b"VALUE = 1\n").replace(",10", ",11"),
            ),
        ),
        "RECORD lists a file that is not there": _liar(
            tmp_path, "phantom", record=true_record + record_line("gone.py", b"")
        ),
        "RECORD hashed with md5": _liar(
            tmp_path,
            "md5",
            record="".join(record_line(n, c.encode(), "md5") for n, c in files.items())
            + f"{dist_info}/RECORD,,\n",
        ),
        "no RECORD": _zip(
            _own_dir(tmp_path, "no record") / "demo-3.0-py3-none-any.whl",
            {
                "demo-3.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: demo\nVersion: 3.0\n",
                "demo-3.0.dist-info/WHEEL": "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
            },
        ),
        "a member path with ..": _liar(tmp_path, "dotdot", extra={"../evil.py": "x"}),
        "a member path inside with ..": _liar(
            tmp_path, "inner dotdot", extra={"demo/../../evil.py": "x"}
        ),
        "an absolute member path": _liar(tmp_path, "absolute", extra={"/tmp/evil.py": "x"}),
        "a backslash member path": _liar(tmp_path, "backslash", extra={"..\\evil.py": "x"}),
        "a symlink member": _symlink_wheel(
            _own_dir(tmp_path, "symlink") / "demo-1.0-py3-none-any.whl"
        ),
        "a member twice": _duplicate_member(tmp_path),
        "not a zip": _raw(
            _own_dir(tmp_path, "not a zip") / "demo-4.0-py3-none-any.whl", b"MZ not a zip"
        ),
        "an ELF file named as data in a pure wheel": _liar(
            tmp_path, "elf", extra={"demo/data.bin": "\x7fELF\x02\x01\x01" + "\0" * 57}
        ),
        "a Windows program named as data in a pure wheel": _liar(
            tmp_path, "pe", extra={"demo/data.bin": PE_PROGRAM}
        ),
        "a local header naming another file": _local_header_lie(tmp_path),
        "two members sharing their bytes": _overlapping(tmp_path),
        "a RECORD over its cap": _liar(
            tmp_path,
            "huge record",
            record=true_record + ("x" * 99 + ",,\n") * 350_000,  # 35 MiB, 100 KiB zipped
        ),
    }


# The least a Windows program is: "MZ", the offset of its PE header at 0x3c, and that header.
PE_PROGRAM = "MZ" + "\0" * 58 + "@\0\0\0" + "PE\0\0" + "\0" * 60


def _local_header_lie(tmp_path: Path) -> Path:
    """A wheel whose demo.py is named demo.pz in its local header: what a streaming unzip sees
    differs from what installers see."""
    path = _liar(tmp_path, "local header")
    data = bytearray(path.read_bytes())
    at = data.index(b"PK\x03\x04")
    while data[at + 30 : at + 37] != b"demo.py":
        at = data.index(b"PK\x03\x04", at + 4)
    data[at + 30 : at + 37] = b"demo.pz"
    path.write_bytes(bytes(data))
    return path


def _overlapping(tmp_path: Path) -> Path:
    """A wheel whose central directory points two members at the same bytes."""
    path = _liar(tmp_path, "overlap")
    data = bytearray(path.read_bytes())
    entries = [i for i in range(len(data) - 4) if data[i : i + 4] == b"PK\x01\x02"]
    first = data[entries[0] + 42 : entries[0] + 46]
    data[entries[1] + 42 : entries[1] + 46] = first  # the second's local header offset
    path.write_bytes(bytes(data))
    return path


def _renamed_dist_info(tmp_path: Path) -> Path:
    files, _ = wheel_files("demo", "1.0")
    renamed = {n.replace("demo-1.0.dist-info", "demo-9.9.dist-info"): c for n, c in files.items()}
    return write_wheel(
        _own_dir(tmp_path, "renamed") / "demo-1.0-py3-none-any.whl", renamed, "demo-9.9.dist-info"
    )


def _duplicate_member(tmp_path: Path) -> Path:
    path = _liar(tmp_path, "duplicate")
    with pytest.warns(UserWarning, match="Duplicate name"), zipfile.ZipFile(path, "a") as zf:
        zf.writestr("demo.py", "VALUE = 2\n")
    return path


# Each lie, and the words of the check that catches it: a refusal for another reason is a failure.
REFUSED_FOR = {
    "METADATA of another project": "METADATA is for other 1.0, not demo 1.0",
    "no METADATA": "no item named 'demo-1.0.dist-info/METADATA'",
    "no WHEEL": "no item named 'demo-1.0.dist-info/WHEEL'",
    "Wheel-Version 2": "WHEEL says Wheel-Version '2.0', not 1.x",
    "a second .dist-info": "doesn't contain exactly one .dist-info directory",
    ".dist-info of another project": ".dist-info directory doesn't match wheel filename",
    ".dist-info of another version": "demo-9.9.dist-info is not for version 1.0",
    "a .data directory of another project": "other-1.0.data is not this wheel's .data directory",
    "a file RECORD does not list": "demo.py is not mentioned in RECORD",
    "a file whose hash is not RECORD's": "hash / size of demo.py didn't match RECORD",
    "a file whose size is not RECORD's": "hash / size of demo.py didn't match RECORD",
    "RECORD lists a file that is not there": "RECORD lists gone.py, which the wheel does not contain",
    "RECORD hashed with md5": "RECORD hashes demo.py with md5",
    "no RECORD": "Unable to retrieve `RECORD`",
    "a member path with ..": "member '../evil.py' is a path with an empty, . or .. part",
    "a member path inside with ..": "member 'demo/../../evil.py' is a path with an empty, . or ..",
    "an absolute member path": "member '/tmp/evil.py' is an absolute path",
    "an ELF file named as data in a pure wheel": "holds compiled code (demo/data.bin)",
    "a Windows program named as data in a pure wheel": "holds compiled code (demo/data.bin)",
    "a local header naming another file": "local header differs from the central directory",
    "two members sharing their bytes": "overlaps the one before it",
    "a RECORD over its cap": "demo-1.0.dist-info/RECORD is larger than 32 MiB",
    "a backslash member path": "is a path with a backslash or NUL",
    "a symlink member": "member 'demo/link' is not a plain file",
    "a member twice": "a member name occurs twice",
    "not a zip": "not a zip file",
}


def test_wheels_that_lie_about_themselves_are_refused(tmp_path):
    store = IndexStore(tmp_path / "index")
    liars = _lying_wheels(tmp_path / "liars")
    empty = files_under(tmp_path / "index")
    reasons = {}
    for label, wheel in liars.items():
        with pytest.raises(PublishError) as refused:
            store.publish(wheel.name, wheel, sha256=sha256_of(wheel))
        reasons[label] = str(refused.value)
    assert store.projects() == []
    assert files_under(tmp_path / "index") == empty
    assert set(reasons) == set(REFUSED_FOR)
    for label, reason in reasons.items():
        assert REFUSED_FOR[label] in reason, f"{label}: refused for another reason: {reason}"
    honest = make_wheel(tmp_path, "demo", "1.0")
    store.publish(honest.name, honest, sha256=sha256_of(honest))
    # setuptools, pip and distlib ship Windows launchers in their pure wheels, named .exe
    launchers = _liar(tmp_path, "launchers", extra={"demo/cli-32.exe": PE_PROGRAM})
    launchers = launchers.rename(launchers.with_name("demo-1.0-1-py3-none-any.whl"))
    store.publish(launchers.name, launchers, sha256=sha256_of(launchers))
    print(f"\n{len(liars)} lying wheels tried, {len(liars)} rejected, 0 files published:")
    for label, reason in reasons.items():
        print(f"  {label}: {reason}")


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
        targets = {
            "/elsewhere.tar.gz": f"http://localhost:{port}/real.tar.gz",
            "/here.tar.gz": "/real.tar.gz",
        }
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


def serving(handler):
    """handler's HTTP server on 127.0.0.1, for a test: yields its address."""
    server = HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def redirector():
    """The Redirector's address on 127.0.0.1."""
    yield from serving(Redirector)


def test_an_sdist_downloaded_before_is_reused_only_with_its_sha256(tmp_path, redirector):
    sha256 = hashlib.sha256(Redirector.body).hexdigest()
    kept = tmp_path / "evil-1.0.tar.gz"
    kept.write_bytes(Redirector.body)
    # Nothing listens there: the file is the one asked for, so nothing is asked.
    unreachable = Sdist("evil", "1.0", kept.name, "http://127.0.0.1:9/here.tar.gz", sha256)
    assert download_verified(unreachable, tmp_path) == kept
    kept.write_bytes(b"changed on the master's disk")
    here = Sdist("evil", "1.0", kept.name, f"{redirector}/here.tar.gz", sha256)
    assert download_verified(here, tmp_path) == kept
    assert kept.read_bytes() == Redirector.body


def test_a_redirect_to_another_host_is_refused_and_nothing_is_kept(tmp_path, redirector):
    sha256 = hashlib.sha256(Redirector.body).hexdigest()
    with pytest.raises(SourceError, match="redirects to another host"):
        download_verified(
            Sdist("evil", "1.0", "evil-1.0.tar.gz", f"{redirector}/elsewhere.tar.gz", sha256),
            tmp_path,
        )
    assert list(tmp_path.iterdir()) == []
    path = download_verified(
        Sdist("evil", "1.0", "evil-1.0.tar.gz", f"{redirector}/here.tar.gz", sha256), tmp_path
    )
    assert path.read_bytes() == Redirector.body


# The layouts that beat the link checks made by name (and Python's own `data` filter, on every
# interpreter here: CVE-2025-4517's class): links that read as inside but resolve outside.
CLIMB = "/".join(["a"] * 30 + [".."] * 30)


def escape_layouts(outside: Path, victim: Path) -> dict[str, list[tuple[str, bytes, str]]]:
    """Each layout writes into outside (or over victim) when unpacked by a link-following tool."""
    # a -> . makes a/a/...(30) the top folder itself, and 30 `..` climb from there to /
    assert len(outside.parts) < 20
    return {
        "a -> ., ./b -> a/a/a/a/../../../.., then b/PWNED": [
            ("evil-1.0/a", b"", "symlink:."),
            ("evil-1.0/./b", b"", "symlink:a/a/a/a/../../../.."),
            ("evil-1.0/b/PWNED", b"pwned", "file"),
        ],
        "//root -> a/a/...(30)/../..(30), then root/<any absolute path>": [
            ("evil-1.0/a", b"", "symlink:."),
            ("evil-1.0//root", b"", "symlink:" + CLIMB),
            (f"evil-1.0/root{outside}/PWNED", b"pwned", "file"),
        ],
        "a hard link through the links to a file outside, then written": [
            ("evil-1.0/a", b"", "symlink:."),
            ("evil-1.0/root", b"", "symlink:" + CLIMB),
            ("evil-1.0/h", b"", f"hardlink:evil-1.0/root{victim}"),
            ("evil-1.0/h", b"pwned", "file"),
        ],
    }


def interpreters() -> list[str]:
    """Every interpreter the farm's pools run (common/pools), and Debian's, which roots run."""
    from wheelwright.farm.pools import SUPPORTED_PYTHONS, find_python

    found = {find_python(v) for v in SUPPORTED_PYTHONS} | {"/usr/bin/python3"}
    return sorted(p for p in found if p and Path(p).exists())


@pytest.mark.parametrize("python", interpreters())
def test_links_that_resolve_outside_write_nothing_there_on_every_interpreter(tmp_path, python):
    import subprocess

    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim"
    victim.write_bytes(b"mine")
    for label, members in escape_layouts(outside, victim).items():
        case = outside / f"case{len(label)}"
        case.mkdir()
        sdist = tar_sdist(case / "evil-1.0.tar.gz", members)
        into = case / "into"
        into.mkdir()
        # The unpacker alone, out of the sandbox: its own checks must hold on each interpreter.
        proc = subprocess.run(
            [python, "-I", "-S", "-B", source.unpacking.__file__, str(sdist), str(into)],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 1, (label, proc.stdout, proc.stderr)
        assert "refused" in proc.stderr and "Traceback" not in proc.stderr, label
        assert not list(tmp_path.rglob("PWNED")), label
        assert victim.read_bytes() == b"mine", label
        # And as the worker unpacks an sdist: in the sandbox, nothing left behind.
        (case / "work").mkdir()
        with pytest.raises(ToolError, match="refused"):
            source.unpack(sdist, case / "work" / "src", project="evil", version="1.0")
        assert list((case / "work").iterdir()) == []
        assert not list(tmp_path.rglob("PWNED")) and victim.read_bytes() == b"mine", label


def test_the_unpacking_can_write_only_its_destination_even_if_its_checks_fail(
    tmp_path, monkeypatch
):
    """A bug in the unpacker's checks is still contained: it runs in the sandbox, where nothing
    but its destination is writable. Here the unpacker is replaced by one that checks nothing."""
    naive = tmp_path / "naive_unpack.py"
    naive.write_text(
        "import sys, tarfile\n"
        "tarfile.open(sys.argv[1]).extractall(sys.argv[2])\n"  # follows every link
    )
    monkeypatch.setattr(source.unpacking, "__file__", str(naive))
    outside = tmp_path / "outside"
    outside.mkdir()
    members = escape_layouts(outside, outside / "victim")[
        "//root -> a/a/...(30)/../..(30), then root/<any absolute path>"
    ]
    (tmp_path / "work").mkdir()
    sdist = tar_sdist(tmp_path / "evil-1.0.tar.gz", members)
    with pytest.raises(ToolError):
        source.unpack(sdist, tmp_path / "work" / "src", project="evil", version="1.0")
    assert not list(tmp_path.rglob("PWNED"))


class HostileUpstream(BaseHTTPRequestHandler):
    """An upstream whose pages point elsewhere or never end."""

    def do_GET(self):
        port = self.server.server_address[1]
        sha = "0" * 64
        pages = {
            # the file on another port of the same machine: any service the master can reach
            "/simple/elsewhere/": f'<a href="http://127.0.0.1:{port + 1}/x/elsewhere-1.0.tar.gz#sha256={sha}">'
            "elsewhere-1.0.tar.gz</a>",
            "/simple/local/": f'<a href="file:///etc/passwd#sha256={sha}">local-1.0.tar.gz</a>',
        }
        if self.path in pages:
            body = pages[self.path].encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        # /simple/huge/ and /files/huge-1.0.tar.gz: a body that goes on past every cap, unannounced
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        block = b"<!-- padding -->" * 4096
        with contextlib.suppress(OSError):
            for _ in range(2048):  # 128 MiB at most: the test's own bound
                self.wfile.write(block)

    def log_message(self, *args):
        pass


@pytest.fixture
def hostile_upstream():
    yield from serving(HostileUpstream)


def test_an_upstream_page_cannot_send_us_to_another_host_or_port(hostile_upstream):
    from wheelwright.sources.upstream import list_sdists

    with pytest.raises(SourceError, match="neither its own host nor an allowed files host"):
        list_sdists(f"{hostile_upstream}/simple/", "elsewhere")
    with pytest.raises(SourceError, match="neither its own host nor an allowed files host"):
        list_sdists(f"{hostile_upstream}/simple/", "local")
    port = int(hostile_upstream.rsplit(":", 1)[1])
    allowed = list_sdists(f"{hostile_upstream}/simple/", "elsewhere", [f"127.0.0.1:{port + 1}"])
    assert [s.filename for s in allowed] == ["elsewhere-1.0.tar.gz"]


def test_upstream_pages_and_sdists_are_read_within_their_caps(
    hostile_upstream, tmp_path, monkeypatch
):
    import resource

    from wheelwright.sources import upstream

    monkeypatch.setattr(upstream, "MAX_PAGE", 4 << 20)
    monkeypatch.setattr(upstream, "MAX_SDIST", 8 << 20)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(SourceError, match="the page is larger than 4 MiB; refused"):
        upstream.list_sdists(f"{hostile_upstream}/simple/", "huge")
    big = Sdist(
        "huge", "1.0", "huge-1.0.tar.gz", f"{hostile_upstream}/files/huge-1.0.tar.gz", "0" * 64
    )
    with pytest.raises(SourceError, match="huge-1.0.tar.gz is larger than 8 MiB; refused"):
        upstream.download_verified(big, tmp_path)
    assert list(tmp_path.iterdir()) == []
    # neither was held whole: the process grew by far less than the 128 MiB served
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 64 << 10


def test_planning_reads_an_sdists_pkg_info_within_its_cap(tmp_path):
    """A PKG-INFO of zeros compresses to almost nothing: planning reads it to its cap and says so,
    instead of holding gigabytes."""
    import gzip
    import resource

    from wheelwright.bootstrap.plan import BootstrapError, sdist_requirements

    path = tmp_path / "evil-1.0.tar.gz"
    with gzip.open(path, "wb", compresslevel=1) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        info = tarfile.TarInfo("evil-1.0/PKG-INFO")
        info.size = 64 << 20
        zeros = io.BytesIO(pkg_info("evil", "1.0").encode() + b"\n" + b"\0" * (info.size - 200))
        info.size = len(zeros.getvalue())
        tar.addfile(info, zeros)
    assert path.stat().st_size < 1 << 20
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(BootstrapError, match="PKG-INFO is larger than 16 MiB"):
        sdist_requirements(path)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 48 << 10
