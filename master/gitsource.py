"""Sources that are not sdists upstream (master side): a package's settings may name a git
repository (`source: {git: URL, ref: "v${version}"}`). The master fetches the ref (workers never
reach the network) and makes a reproducible sdist-shaped archive of it: members sorted, owned by
0, dated by the commit, a PKG-INFO naming the project and version, gzip without a timestamp. The
same commit always gives the same bytes, so its sha256 means something.
"""

from __future__ import annotations

import gzip
import io
import os
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from string import Template

from packaging.utils import canonicalize_name

from wheelwright.index.upstream import SourceError


@dataclass(frozen=True)
class GitSdist:
    path: Path
    commit: str
    url: str
    ref: str


def _git(*args: str, cwd: Path) -> bytes:
    env = {"PATH": os.environ.get("PATH", os.defpath), "HOME": str(cwd), "GIT_TERMINAL_PROMPT": "0",
           "GIT_CONFIG_NOSYSTEM": "1", "GIT_ASKPASS": "true"}
    proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, timeout=600)
    if proc.returncode != 0:
        raise SourceError(f"git {args[0]} failed: {proc.stderr.decode(errors='replace').strip()[-500:]}")
    return proc.stdout


def sdist_from_git(url: str, ref_template: str, project: str, version: str, dest_dir: Path) -> GitSdist:
    """Fetch ref (its ${version} filled in) of the repository at url and archive it as the sdist
    of project==version in dest_dir."""
    ref = Template(ref_template).safe_substitute(version=version)
    stem = f"{canonicalize_name(project).replace('-', '_')}-{version}"
    with tempfile.TemporaryDirectory(prefix="wheelwright-git-") as tmp:
        work = Path(tmp)
        _git("init", "--quiet", "--bare", ".", cwd=work)
        _git("fetch", "--quiet", "--depth", "1", "--no-tags", url, ref, cwd=work)
        commit = _git("rev-parse", "FETCH_HEAD^{commit}", cwd=work).decode().strip()
        when = int(_git("log", "-1", "--format=%ct", commit, cwd=work))
        tree = _git("archive", "--format=tar", commit, cwd=work)
    files: dict[str, tuple[tarfile.TarInfo, bytes | None]] = {}
    with tarfile.open(fileobj=io.BytesIO(tree)) as source:
        for member in source.getmembers():
            if member.isfile():
                files[member.name] = (member, source.extractfile(member).read())
            elif member.isdir():
                files[member.name.rstrip("/")] = (member, None)
    if "PKG-INFO" not in files:
        files["PKG-INFO"] = (tarfile.TarInfo("PKG-INFO"), f"Metadata-Version: 2.1\nName: {project}\nVersion: {version}\n".encode())
    dest_dir.mkdir(parents=True, exist_ok=True)
    path = dest_dir / f"{stem}.tar.gz"
    part = path.with_name(f".{path.name}.part")
    with open(part, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as out:
        for name in sorted(files):
            member, data = files[name]
            info = tarfile.TarInfo(f"{stem}/{name}")
            info.mode = 0o755 if data is None or member.mode & 0o111 else 0o644
            info.mtime, info.uid, info.gid, info.uname, info.gname = when, 0, 0, "", ""
            if data is None:
                info.type = tarfile.DIRTYPE
                out.addfile(info)
            else:
                info.size = len(data)
                out.addfile(info, io.BytesIO(data))
    os.replace(part, path)
    return GitSdist(path, commit, url, ref)
