"""Unpack an archive a stranger made without following any link it holds.

Every path is made one component at a time from a directory descriptor, each folder opened with
O_NOFOLLOW, each file created with O_EXCL|O_NOFOLLOW: nothing is ever written through a link,
whatever the archive's names say. Member names are normalised (`./b`, `a//b` and `b` are one
name) before any comparison. Links are made last, once every file is written, and kept only when,
resolved for real, they lead inside their own top folder: `a -> .` with `b -> a/a/../..` is refused
for where it leads, not for how it reads. A hard link becomes a copy of the plain file it names.

Standard library only, so it runs as a script under any interpreter a worker has: the sdist is
unpacked by `python -I unpack.py` inside the sandbox, where only the destination is writable, so
a bug here is still contained (worker/prepare_source.py).

python -I unpack.py ARCHIVE INTO [--max-members N] [--max-bytes N]
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import typing

# Imported where used: this runs as a script once per sdist, and tarfile, zipfile and argparse
# cost more to import than a small sdist costs to unpack.
if typing.TYPE_CHECKING:
    import tarfile
    import zipfile

MAX_MEMBERS = 100_000
MAX_BYTES = 4 << 30
MAX_LINK = 4096
MAX_NAME = 4096
CHUNK = 1 << 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafeArchive(Exception):
    """The archive cannot be unpacked safely, or is not one: the message says which member."""


def member_parts(name: str) -> tuple[str, ...]:
    """A member's name as path components, normalised: `.` and empty parts dropped. Absolute
    names, `..`, backslashes and NULs are refused."""
    if "\0" in name or "\\" in name:
        raise UnsafeArchive(f"member {name!r} has a backslash or NUL in its name; refused")
    if name.startswith("/"):
        raise UnsafeArchive(f"member {name!r} is an absolute path; refused")
    if len(name) > MAX_NAME:
        raise UnsafeArchive(f"member {name[:80]!r}... has a name over {MAX_NAME} characters")
    parts = tuple(part for part in name.split("/") if part not in ("", "."))
    if ".." in parts:
        raise UnsafeArchive(f"member {name!r} climbs out with '..'; refused")
    return parts


class Tree:
    """The destination folder, written only through descriptors that follow no link."""

    def __init__(self, root: str, max_members: int, max_bytes: int):
        self.root = root
        self.fd = os.open(root, _DIR_FLAGS)
        self.kinds: dict[tuple[str, ...], str] = {(): "dir"}
        self.links: list[tuple[tuple[str, ...], str]] = []
        self.hardlinks: list[tuple[tuple[str, ...], tuple[str, ...]]] = []
        self.max_members, self.max_bytes = max_members, max_bytes
        self.members = self.written = 0

    def close(self) -> None:
        os.close(self.fd)

    def count(self, name: str) -> None:
        self.members += 1
        if self.members > self.max_members:
            raise UnsafeArchive(f"the archive has more than {self.max_members} members")

    def _claim(self, parts: tuple[str, ...], kind: str, name: str) -> None:
        if not parts:
            if kind == "dir":
                return
            raise UnsafeArchive(f"member {name!r} names the archive's root; refused")
        for n in range(1, len(parts)):
            above = self.kinds.get(parts[:n])
            if above not in (None, "dir"):
                raise UnsafeArchive(
                    f"member {name!r} would be written through {'/'.join(parts[:n])!r}, "
                    f"a {above}; refused"
                )
            self.kinds.setdefault(parts[:n], "dir")
        before = self.kinds.get(parts)
        if before is not None and before != kind:
            raise UnsafeArchive(f"member {name!r} is a {kind} and a {before} at once; refused")
        if before == "dir" and kind == "dir":
            return
        if before is not None and kind != "file":
            raise UnsafeArchive(f"member {name!r} occurs twice; refused")
        self.kinds[parts] = kind

    def _parent(self, parts: tuple[str, ...]) -> int:
        """A descriptor of parts' folder, made as needed, opened a component at a time."""
        fd = os.dup(self.fd)
        try:
            for part in parts[:-1]:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o755, dir_fd=fd)
                try:
                    child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except OSError:  # ELOOP or ENOTDIR: a link or a file stands there
                    raise UnsafeArchive(
                        f"{'/'.join(parts)} would be written through a link or a file; refused"
                    ) from None
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        return fd

    def directory(self, name: str) -> None:
        parts = member_parts(name)
        self._claim(parts, "dir", name)
        if parts:
            fd = self._parent((*parts, ""))
            os.close(fd)

    def file(self, name: str, data, size: int, mode: int, mtime: float | None) -> None:
        parts = member_parts(name)
        self._claim(parts, "file", name)
        if self.written + size > self.max_bytes:
            raise UnsafeArchive(f"the archive unpacks to more than {self.max_bytes} bytes")
        parent = self._parent(parts)
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(parts[-1], dir_fd=parent)  # a name given twice: the last one wins
            fd = os.open(parts[-1], _NEW_FILE, 0o755 if mode & 0o111 else 0o644, dir_fd=parent)
        finally:
            os.close(parent)
        with os.fdopen(fd, "wb") as out:
            while block := data.read(CHUNK):
                self.written += len(block)
                if self.written > self.max_bytes:
                    raise UnsafeArchive(f"the archive unpacks to more than {self.max_bytes} bytes")
                out.write(block)
            out.flush()
            if mtime is not None:
                # a date no file can have leaves the file today's
                with contextlib.suppress(OverflowError, ValueError):
                    os.utime(fd, (mtime, mtime))

    def symlink(self, name: str, target: str) -> None:
        parts = member_parts(name)
        if not target or "\0" in target or "\\" in target or target.startswith("/"):
            raise UnsafeArchive(f"member {name!r} is a link to {target!r}; refused")
        if len(target) > MAX_LINK:
            raise UnsafeArchive(f"member {name!r} is a link with a {len(target)}-byte target")
        if len(parts) < 2:
            raise UnsafeArchive(f"member {name!r} is a link outside any top folder; refused")
        self._claim(parts, "link", name)
        self.links.append((parts, target))

    def hardlink(self, name: str, target: str) -> None:
        parts, source = member_parts(name), member_parts(target)
        if self.kinds.get(source) != "file":
            raise UnsafeArchive(
                f"member {name!r} is a hard link to {target!r}, which is no plain file before it; refused"
            )
        self._claim(parts, "file", name)
        self.hardlinks.append((parts, source))

    def finish(self) -> None:
        """Hard links as copies, then the links, each checked where it really leads."""
        for parts, source in self.hardlinks:
            parent = self._parent(source)
            try:
                fd = os.open(source[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
            finally:
                os.close(parent)
            with os.fdopen(fd, "rb") as data:
                mode = os.fstat(data.fileno()).st_mode
                self.file("/".join(parts), data, os.fstat(data.fileno()).st_size, mode, None)
        for parts, target in self.links:
            parent = self._parent(parts)
            try:
                os.symlink(target, parts[-1], dir_fd=parent)
            except FileExistsError:
                raise UnsafeArchive(f"member {'/'.join(parts)!r} is a link and more") from None
            finally:
                os.close(parent)
        root = os.path.realpath(self.root)
        for parts, target in self.links:
            top = os.path.join(root, parts[0])
            where = os.path.join(root, *parts)
            try:
                os.stat(where)
            except FileNotFoundError:
                pass  # dangling: judged by the path it names below
            except OSError:  # ELOOP
                raise UnsafeArchive(
                    f"member {'/'.join(parts)!r} is a link that leads to itself; refused"
                ) from None
            real = os.path.realpath(where)
            if real != top and not real.startswith(top + os.sep):
                raise UnsafeArchive(
                    f"member {'/'.join(parts)!r} is a link to {target!r}, which leads outside "
                    f"{parts[0]}/; refused"
                )


def _unpack_tar(archive: str, tree: Tree) -> None:
    import tarfile

    try:
        with _open_tar(archive) as tar:
            _tar_members(tar, tree)
    except tarfile.TarError as exc:
        raise UnsafeArchive(f"cannot unpack {os.path.basename(archive)}: {exc}") from None


def _open_tar(archive: str) -> tarfile.TarFile:
    """Opened with the compression its name says: no other module is imported (tarfile.open
    would try each)."""
    import tarfile

    kind = os.path.splitext(archive)[1]
    if kind in (".gz", ".tgz"):
        return tarfile.TarFile.gzopen(archive)
    if kind == ".bz2":
        return tarfile.TarFile.bz2open(archive)
    if kind == ".xz":
        return tarfile.TarFile.xzopen(archive)
    return tarfile.TarFile.taropen(archive)


def _tar_members(tar: tarfile.TarFile, tree: Tree) -> None:
    for member in tar:
        tree.count(member.name)
        if member.isdir():
            tree.directory(member.name)
        elif member.isfile():
            data = tar.extractfile(member)
            assert data is not None
            tree.file(member.name, data, member.size, member.mode, member.mtime)
        elif member.issym():
            tree.symlink(member.name, member.linkname)
        elif member.islnk():
            tree.hardlink(member.name, member.linkname)
        else:
            raise UnsafeArchive(f"member {member.name!r} is a device, FIFO or special file")


def _unpack_zip(archive: str, tree: Tree) -> None:
    import zipfile

    try:
        with zipfile.ZipFile(archive) as zf:
            _zip_members(zf, tree)
    except zipfile.BadZipFile as exc:
        raise UnsafeArchive(f"cannot unpack {os.path.basename(archive)}: {exc}") from None


def _zip_members(zf: zipfile.ZipFile, tree: Tree) -> None:
    for info in zf.infolist():
        tree.count(info.filename)
        kind = stat.S_IFMT(info.external_attr >> 16)
        if info.is_dir() or kind == stat.S_IFDIR:
            tree.directory(info.filename)
        elif kind == stat.S_IFLNK:
            if info.file_size > MAX_LINK:
                raise UnsafeArchive(f"member {info.filename!r} is a link with a long target")
            tree.symlink(info.filename, zf.read(info).decode("utf-8", "surrogateescape"))
        elif kind in (0, stat.S_IFREG):
            with zf.open(info) as data:
                when = zipfile_time(info)
                tree.file(info.filename, data, info.file_size, info.external_attr >> 16, when)
        else:
            raise UnsafeArchive(f"member {info.filename!r} is a special file")


def zipfile_time(info: zipfile.ZipInfo) -> float:
    import calendar

    return calendar.timegm((*info.date_time, 0, 0, 0))


def unpack(
    archive: str | os.PathLike,
    into: str | os.PathLike,
    *,
    max_members: int = MAX_MEMBERS,
    max_bytes: int = MAX_BYTES,
) -> None:
    """Unpack archive (a tar of any compression, or a zip) into the folder into, which exists."""
    archive, into = os.fspath(archive), os.fspath(into)
    tree = Tree(into, max_members, max_bytes)
    try:
        if archive.endswith(".zip"):
            _unpack_zip(archive, tree)
        else:
            _unpack_tar(archive, tree)
        tree.finish()
    except UnsafeArchive:
        raise
    except (EOFError, OSError, UnicodeError, ValueError) as exc:  # tarfile's and zipfile's too
        raise UnsafeArchive(f"cannot unpack {os.path.basename(archive)}: {exc}") from None
    finally:
        tree.close()


USAGE = "usage: unpack.py ARCHIVE INTO [--max-members N] [--max-bytes N]"


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    limits = {"--max-members": MAX_MEMBERS, "--max-bytes": MAX_BYTES}
    try:
        for flag in limits:
            if flag in args:
                at = args.index(flag)
                limits[flag] = int(args[at + 1])
                del args[at : at + 2]
        archive, into = args
    except (ValueError, IndexError):
        print(USAGE, file=sys.stderr)
        return 2
    try:
        unpack(
            archive,
            into,
            max_members=limits["--max-members"],
            max_bytes=limits["--max-bytes"],
        )
    except UnsafeArchive as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
