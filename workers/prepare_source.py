"""PrepareSource on the worker: unpack an sdist safely and apply the package's patches.

python -m wheelwright.workers.prepare_source --sdist F --dest src --project P --version V [--patches DIR]
"""

from __future__ import annotations

import argparse
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from packaging.metadata import Metadata
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from wheelwright.common.results import SourcePrepared
from wheelwright.common.tools import ToolError
from wheelwright.workers.tool import run, run_tool

MAX_MEMBERS = 100_000
MAX_BYTES = 4 << 30


def _check_name(name: str) -> None:
    path = PurePosixPath(name)
    if path.is_absolute() or name.startswith(("/", "\\")) or ".." in path.parts or "\\" in name:
        raise ToolError(f"unsafe member {name!r}: the sdist may not write outside its directory")


def _check_link(member: tarfile.TarInfo, links: set[str]) -> None:
    """Real sdists hold links (pdm-backend's test fixtures do). One is kept if it is relative and
    its target, read as a path, stays inside the sdist's top folder; the unpacked tree is checked
    again with the links really resolved (see _check_links_inside)."""
    top = PurePosixPath(member.name).parts[0]
    target = member.linkname
    base = posixpath.dirname(member.name) if member.issym() else ""
    resolved = posixpath.normpath(posixpath.join(base, target))
    if (
        target.startswith("/")
        or "\\" in target
        or not (resolved == top or resolved.startswith(top + "/"))
    ):
        raise ToolError(
            f"member {member.name!r} is a link to {target!r}, outside the sdist; refused"
        )
    if member.islnk() and _through_link(resolved, links):
        raise ToolError(f"member {member.name!r} is a hard link through a symbolic link; refused")


def _through_link(name: str, links: set[str]) -> bool:
    parts = PurePosixPath(name).parts
    return any("/".join(parts[:n]) in links for n in range(1, len(parts)))


def _check_links_inside(into: Path) -> None:
    """Every link of the unpacked tree, resolved for real (a chain of links can lead where its
    path does not say), must end inside the sdist's top folder."""
    for path in into.rglob("*"):
        if path.is_symlink():
            top = (into / path.relative_to(into).parts[0]).resolve()
            try:
                path.resolve(strict=True)
            except FileNotFoundError:
                pass  # a dangling link leads nowhere: checked as a path below
            except (RuntimeError, OSError):  # ELOOP: the link (or a chain of them) leads to itself
                raise ToolError(
                    f"{path.relative_to(into)} is a link that leads to itself; refused"
                ) from None
            target = Path(os.path.realpath(path))
            if target != top and top not in target.parents:
                raise ToolError(
                    f"{path.relative_to(into)} is a link that leads outside the sdist; refused"
                )


def _check_limits(count: int, total: int, max_members: int, max_bytes: int) -> None:
    if count > max_members:
        raise ToolError(f"the sdist has more than {max_members} members")
    if total > max_bytes:
        raise ToolError(f"the sdist unpacks to more than {max_bytes} bytes")


def _unpack_tar(sdist: Path, into: Path, max_members: int, max_bytes: int) -> None:
    try:
        with tarfile.open(sdist) as tar:
            total = 0
            links: set[str] = set()
            for count, member in enumerate(tar, 1):
                _check_name(member.name)
                if _through_link(member.name, links):
                    raise ToolError(
                        f"member {member.name!r} would be written through a link; refused"
                    )
                if member.issym() or member.islnk():
                    _check_link(member, links)
                    links.add(member.name.rstrip("/"))
                elif not (member.isfile() or member.isdir()):
                    raise ToolError(
                        f"member {member.name!r} is a device, FIFO or other special file"
                    )
                total += member.size
                _check_limits(count, total, max_members, max_bytes)
                # What tarfile's "data" filter does, for Pythons that predate it (3.11.2 in Debian 12).
                member.mode &= 0o755
                member.uid = member.gid = 0
                member.uname = member.gname = ""
            if hasattr(tarfile, "data_filter"):
                tar.extractall(into, filter="data")
            else:
                tar.extractall(into)
        _check_links_inside(into)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ToolError(f"cannot unpack {sdist.name}: {exc}") from None


def _unpack_zip(sdist: Path, into: Path, max_members: int, max_bytes: int) -> None:
    try:
        with zipfile.ZipFile(sdist) as zf:
            infos = zf.infolist()
            for info in infos:
                _check_name(info.filename)
                mode = info.external_attr >> 16
                if stat.S_ISLNK(mode):
                    raise ToolError(f"member {info.filename!r} is a link; links are refused")
                if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                    raise ToolError(f"member {info.filename!r} is a special file")
            _check_limits(len(infos), sum(i.file_size for i in infos), max_members, max_bytes)
            zf.extractall(into)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ToolError(f"cannot unpack {sdist.name}: {exc}") from None


def unpack(
    sdist: Path,
    dest: Path,
    *,
    project: str,
    version: str,
    max_members: int = MAX_MEMBERS,
    max_bytes: int = MAX_BYTES,
) -> Path:
    """Unpack sdist's single top directory as dest, after checking it is project==version."""
    if dest.exists():
        shutil.rmtree(dest)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".unpack-") as tmp_name:
        tmp = Path(tmp_name)
        if sdist.name.endswith(".zip"):
            _unpack_zip(sdist, tmp, max_members, max_bytes)
        else:
            _unpack_tar(sdist, tmp, max_members, max_bytes)
        tops = list(tmp.iterdir())
        if len(tops) != 1 or not tops[0].is_dir():
            raise ToolError(f"{sdist.name} must hold exactly one top-level directory")
        _check_pkg_info(tops[0] / "PKG-INFO", project, version)
        os.rename(tops[0], dest)
    return dest


def _check_pkg_info(pkg_info: Path, project: str, version: str) -> None:
    try:
        meta = Metadata.from_email(pkg_info.read_bytes(), validate=False)
        name, found = meta.name, Version(str(meta.version))
    except (OSError, InvalidVersion, KeyError, ValueError) as exc:
        raise ToolError(f"the sdist's PKG-INFO is missing or unreadable ({exc})") from None
    if canonicalize_name(name) != canonicalize_name(project) or found != Version(version):
        raise ToolError(f"the sdist is {name} {found}, but {project} {version} was asked for")


def apply_patches(src: Path, patches: list[Path]) -> list[str]:
    """Apply patches in the order of their base names, as fromager does."""
    applied = []
    for patch in sorted(patches, key=lambda p: p.name):
        try:
            run(
                [
                    "patch",
                    "-p1",
                    "--batch",
                    "--forward",
                    "--no-backup-if-mismatch",
                    "-d",
                    str(src),
                    "-i",
                    str(patch.resolve()),
                ],
                what=f"patch {patch.name}",
            )
        except ToolError:
            raise ToolError(f"patch {patch.name} does not apply", patch=patch.name) from None
        applied.append(patch.name)
    return applied


def main(argv=None) -> SourcePrepared:
    parser = argparse.ArgumentParser(prog="python -m wheelwright.workers.prepare_source")
    parser.add_argument("--sdist", type=Path, required=True)
    parser.add_argument("--dest", type=Path, required=True)
    parser.add_argument("--project", required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--patches", type=Path)
    parser.add_argument("--max-members", type=int, default=MAX_MEMBERS)
    parser.add_argument("--max-bytes", type=int, default=MAX_BYTES)
    args = parser.parse_args(argv)
    src = unpack(
        args.sdist,
        args.dest,
        project=args.project,
        version=args.version,
        max_members=args.max_members,
        max_bytes=args.max_bytes,
    )
    patches = sorted(args.patches.glob("*.patch")) if args.patches and args.patches.is_dir() else []
    return SourcePrepared(src=str(src), patches=apply_patches(src, patches))


if __name__ == "__main__":
    raise SystemExit(run_tool(main))
