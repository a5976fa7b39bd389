"""Files, as both sides write and read them: whole or not at all, and by their sha256."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

# Zip files cannot say a date before 1980; some sdists (pdm-backend's) date their members 1970.
ZIP_EPOCH = 315532800


@contextlib.contextmanager
def atomic_file(path: Path, mode: int = 0o644) -> Iterator[BinaryIO]:
    """A file to write path's new content to: it becomes path, whole, when the block ends, and
    nothing does if the block fails. A temporary file of its own, so concurrent writers never
    share one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    with atomic_file(path, mode) as f:
        f.write(data)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class NotPlainFile(OSError):
    """A file a stranger could have planted is a link, a FIFO, a folder or larger than allowed."""


def read_plain(path: Path | str, limit: int, *, dir_fd: int | None = None) -> bytes:
    """The bytes of path, only if it is a plain file of at most limit bytes: opened without
    following a link in its last component and without blocking on a FIFO, checked on the open
    descriptor (nothing can swap the file between the check and the read), read to limit at most."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # the last component is a link
            raise NotPlainFile(f"{path} is a link, not a plain file") from None
        raise
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotPlainFile(f"{path} is not a plain file")
        if info.st_size > limit:
            raise NotPlainFile(f"{path} is larger than {_size(limit)}")
        data = f.read(limit + 1)
    if len(data) > limit:  # grew while read
        raise NotPlainFile(f"{path} is larger than {_size(limit)}")
    return data


def _size(limit: int) -> str:
    return f"{limit >> 20} MiB" if limit >= 1 << 20 else f"{limit >> 10} KiB"
