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
from wheelwright.index.upstream import SourceError, open_on_same_host

MAX_ARCHIVE = 512 << 20


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
    files: dict[str, tuple[int, bytes | None]] = {}
    with tarfile.open(fileobj=io.BytesIO(tree)) as source:
        for member in source.getmembers():
            if member.isfile():
                files[member.name] = (
                    member.mode,
                    (source.extractfile(member) or io.BytesIO()).read(),
                )
            elif member.isdir():
                files[member.name.rstrip("/")] = (member.mode, None)
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


def _archive_files(data: bytes, url: str) -> dict[str, tuple[int, bytes | None]]:
    """Plain files and folders of a downloaded archive; anything else refuses it."""
    files: dict[str, tuple[int, bytes | None]] = {}
    try:
        if data[:4] == b"PK\x03\x04":
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                for info in zf.infolist():
                    _safe(info.filename.rstrip("/"), url)
                    files[info.filename.rstrip("/")] = (
                        0o755 if info.is_dir() else 0o644,
                        None if info.is_dir() else zf.read(info),
                    )
            return files
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for member in tar.getmembers():
                _safe(member.name.rstrip("/"), url)
                if member.isfile():
                    files[member.name] = (
                        member.mode,
                        (tar.extractfile(member) or io.BytesIO()).read(),
                    )
                elif member.isdir():
                    files[member.name.rstrip("/")] = (member.mode, None)
                elif member.type != tarfile.XGLTYPE:
                    raise SourceError(f"{url}: {member.name} is a link or special file; refused")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as exc:
        raise SourceError(f"{url} is not an archive we can read: {exc}") from None
    return files


def _archive_times(data: bytes) -> list[int]:
    try:
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            return [int(m.mtime) for m in tar.getmembers()]
    except tarfile.TarError:
        return []


def _safe(name: str, url: str) -> None:
    parts = name.split("/")
    if name.startswith("/") or "\\" in name or ".." in parts:
        raise SourceError(f"{url}: member {name!r} would land outside the archive; refused")


def _sdist_archive(
    files: dict[str, tuple[int, bytes | None]],
    project: str,
    version: str,
    when: int,
    dest_dir: Path,
) -> Path:
    """files (path -> (mode, bytes, or None for a folder)) as project-version.tar.gz, reproducibly."""
    stem = f"{canonicalize_name(project).replace('-', '_')}-{version}"
    if "PKG-INFO" not in files:
        files = {
            **files,
            "PKG-INFO": (
                0o644,
                f"Metadata-Version: 2.1\nName: {project}\nVersion: {version}\n".encode(),
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
            mode, data = files[name]
            info = tarfile.TarInfo(f"{stem}/{name}")
            info.mode = 0o755 if data is None or mode & 0o111 else 0o644
            info.mtime, info.uid, info.gid, info.uname, info.gname = (
                max(when, ZIP_EPOCH),
                0,
                0,
                "",
                "",
            )
            if data is None:
                info.type = tarfile.DIRTYPE
                out.addfile(info)
            else:
                info.size = len(data)
                out.addfile(info, io.BytesIO(data))
    return path
