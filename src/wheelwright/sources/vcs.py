"""Sources that are not sdists upstream (master side): a package's settings may name a git
repository (`source: {git: URL, ref: "v${version}"}`) or an archive's address (`source: {url:
"https://.../v${version}.tar.gz"}`). The master fetches it (workers never reach the network) and
makes a reproducible sdist-shaped archive of it: members sorted, owned by 0, dated by the commit
(or the archive's newest member), a PKG-INFO naming the project and version where there is none,
gzip without a timestamp. The same tree always gives the same bytes, so its sha256 means something.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import subprocess
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from string import Template

import requests
from packaging.utils import canonicalize_name

from wheelwright.common.files import ZIP_EPOCH, atomic_file
from wheelwright.common.unpack import UnsafeArchive, member_parts
from wheelwright.sources.upstream import SourceError, open_on_same_host

MAX_ARCHIVE = 512 << 20
# What a fetched tree may unpack to in the master's memory: a zip bomb stops here.
MAX_TREE_BYTES = 1 << 30
MAX_TREE_MEMBERS = 100_000


@dataclass(frozen=True)
class Entry:
    """One member of the sdist made: a folder (data None), a file, or a link (its target)."""

    mode: int
    data: bytes | None = None
    link: str | None = None


class _Budget:
    def __init__(self, url: str):
        self.url, self.members, self.bytes = url, 0, 0

    def take(self, size: int) -> None:
        self.members += 1
        self.bytes += size
        if self.members > MAX_TREE_MEMBERS or self.bytes > MAX_TREE_BYTES:
            raise SourceError(
                f"{self.url} holds more than {MAX_TREE_MEMBERS} members or "
                f"{MAX_TREE_BYTES >> 20} MiB unpacked; refused"
            )


@dataclass(frozen=True)
class MadeSdist:
    path: Path
    url: str
    ref: str | None = None
    commit: str | None = None
    archive_sha256: str | None = None

    @property
    def provenance(self) -> dict:
        if self.commit:
            return {"git": self.url, "ref": self.ref, "commit": self.commit}
        return {"archive_url": self.url, "archive_sha256": self.archive_sha256}


def _git(*args: str, cwd: Path) -> bytes:
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(cwd),
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_ASKPASS": "true",
    }
    proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, timeout=600)
    if proc.returncode != 0:
        raise SourceError(
            f"git {args[0]} failed: {proc.stderr.decode(errors='replace').strip()[-500:]}"
        )
    return proc.stdout


def sdist_from_git(
    url: str, ref_template: str, project: str, version: str, dest_dir: Path
) -> MadeSdist:
    """Fetch ref (its ${version} filled in) of the repository at url and archive it as the sdist
    of project==version in dest_dir."""
    ref = Template(ref_template).safe_substitute(version=version)
    with tempfile.TemporaryDirectory(prefix="wheelwright-git-") as tmp:
        work = Path(tmp)
        _git("init", "--quiet", "--bare", ".", cwd=work)
        _git("fetch", "--quiet", "--depth", "1", "--no-tags", url, ref, cwd=work)
        commit = _git("rev-parse", "FETCH_HEAD^{commit}", cwd=work).decode().strip()
        when = int(_git("log", "-1", "--format=%ct", commit, cwd=work))
        tree = _git("archive", "--format=tar", commit, cwd=work)
    files = _tar_entries(tree, url)
    return MadeSdist(_sdist_archive(files, project, version, when, dest_dir), url, ref, commit)


def sdist_from_url(url_template: str, project: str, version: str, dest_dir: Path) -> MadeSdist:
    """Download the archive (a .tar.gz, .tar.bz2, .tar.xz or .zip of one top folder) at the url
    (its ${version} filled in) and make it the sdist of project==version in dest_dir."""
    url = Template(url_template).safe_substitute(version=version)
    with requests.Session() as session, open_on_same_host(session, url) as response:
        data = response.raw.read(MAX_ARCHIVE + 1, decode_content=True)
    if len(data) > MAX_ARCHIVE:
        raise SourceError(f"{url} is larger than {MAX_ARCHIVE >> 20} MiB")
    files = _archive_files(data, url)
    tops = {name.split("/", 1)[0] for name in files}
    if len(tops) != 1:
        raise SourceError(f"{url} must hold exactly one top folder, not {len(tops)}")
    top = tops.pop()
    inside = {name[len(top) + 1 :]: value for name, value in files.items() if name != top}
    when = max(_archive_times(data) or [ZIP_EPOCH])
    made = _sdist_archive(inside, project, version, when, dest_dir)
    return MadeSdist(made, url, archive_sha256=hashlib.sha256(data).hexdigest())


def _archive_files(data: bytes, url: str) -> dict[str, Entry]:
    """Files, folders and links of a downloaded archive, by normalised name; anything else
    refuses it. Links are carried into the sdist made, where the worker's unpacking keeps those
    that resolve inside the tree (common/unpack.py)."""
    if data[:4] != b"PK\x03\x04":
        return _tar_entries(data, url)
    files: dict[str, Entry] = {}
    budget = _Budget(url)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            for info in zf.infolist():
                name = _name(info.filename, url)
                budget.take(info.file_size)
                if info.is_dir():
                    files.setdefault(name, Entry(0o755))
                elif stat.S_ISLNK(info.external_attr >> 16):
                    files[name] = Entry(0o777, link=zf.read(info).decode(errors="replace"))
                else:
                    files[name] = Entry(info.external_attr >> 16 or 0o644, zf.read(info))
    except (zipfile.BadZipFile, EOFError, UnicodeError) as exc:
        raise SourceError(f"{url} is not an archive we can read: {exc}") from None
    return files


def _tar_entries(data: bytes, url: str) -> dict[str, Entry]:
    files: dict[str, Entry] = {}
    budget = _Budget(url)
    try:
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for member in tar:
                if member.type in (tarfile.XGLTYPE, tarfile.XHDTYPE):
                    continue
                name = _name(member.name, url)
                budget.take(member.size)
                if member.isfile():
                    files[name] = Entry(
                        member.mode, (tar.extractfile(member) or io.BytesIO()).read()
                    )
                elif member.isdir():
                    files.setdefault(name, Entry(member.mode))
                elif member.issym():
                    files[name] = Entry(0o777, link=member.linkname)
                else:
                    raise SourceError(
                        f"{url}: {member.name} is a hard link or special file; refused"
                    )
    except (tarfile.TarError, EOFError) as exc:
        raise SourceError(f"{url} is not an archive we can read: {exc}") from None
    return files


def _archive_times(data: bytes) -> list[int]:
    try:
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            return [int(m.mtime) for m in tar.getmembers()]
    except tarfile.TarError:
        return []


def _name(name: str, url: str) -> str:
    """A member's name normalised (`./a//b` is `a/b`), or the archive refused."""
    try:
        parts = member_parts(name)
    except UnsafeArchive as exc:
        raise SourceError(f"{url}: {exc}") from None
    if not parts:
        raise SourceError(f"{url}: member {name!r} names the archive's root; refused")
    return "/".join(parts)


def _sdist_archive(
    files: dict[str, Entry],
    project: str,
    version: str,
    when: int,
    dest_dir: Path,
) -> Path:
    """files (path -> Entry) as project-version.tar.gz, reproducibly."""
    stem = f"{canonicalize_name(project).replace('-', '_')}-{version}"
    if "PKG-INFO" not in files:
        files = {
            **files,
            "PKG-INFO": Entry(
                0o644, f"Metadata-Version: 2.1\nName: {project}\nVersion: {version}\n".encode()
            ),
        }
    dest_dir.mkdir(parents=True, exist_ok=True)
    path = dest_dir / f"{stem}.tar.gz"
    with (
        atomic_file(path) as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as out,
    ):
        for name in sorted(files):
            entry = files[name]
            data = entry.data
            info = tarfile.TarInfo(f"{stem}/{name}")
            info.mode = 0o755 if data is None or entry.mode & 0o111 else 0o644
            info.mtime, info.uid, info.gid, info.uname, info.gname = (
                max(when, ZIP_EPOCH),
                0,
                0,
                "",
                "",
            )
            if entry.link is not None:
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, entry.link, 0o777
                out.addfile(info)
            elif data is None:
                info.type = tarfile.DIRTYPE
                out.addfile(info)
            else:
                info.size = len(data)
                out.addfile(info, io.BytesIO(data))
    return path
