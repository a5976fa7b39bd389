"""Reading what a stranger's archive holds within bounds: a member is read only up to its cap,
whatever its header claims, and an archive's member list is counted before it is parsed whole.
The master, the index host and the worker tools read RECORD, METADATA, PKG-INFO, pyproject.toml
and entry_points through these, so a small archive cannot cost gigabytes of memory.
"""

from __future__ import annotations

import tarfile
import zipfile
from typing import IO

# Caps for the files a build or an upstream hands us, each far above what real packages ship.
MAX_METADATA = 16 << 20  # METADATA, PKG-INFO (a long description is the README)
MAX_RECORD = 32 << 20  # RECORD: about 100 bytes a file
MAX_PYPROJECT = 1 << 20
MAX_SMALL = 1 << 20  # WHEEL, entry_points.txt, top_level.txt
MAX_MEMBERS = 200_000
MAX_CENTRAL_DIRECTORY = 64 << 20
# The dist-info files read, with their caps; any other is never read whole by our code.
DIST_INFO_CAPS = {
    "RECORD": MAX_RECORD,
    "METADATA": MAX_METADATA,
    "WHEEL": MAX_SMALL,
    "entry_points.txt": MAX_SMALL,
    "top_level.txt": MAX_SMALL,
}


class TooLarge(ValueError):
    """A member or a member list over its cap."""


def _size(limit: int) -> str:
    return f"{limit >> 20} MiB" if limit >= 1 << 20 else f"{limit >> 10} KiB"


def read_limited(stream: IO[bytes], limit: int, what: str) -> bytes:
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise TooLarge(f"{what} is larger than {_size(limit)}")
    return data


def zip_member(zf: zipfile.ZipFile, name: str, limit: int) -> bytes:
    """A zip member's bytes, at most limit (its declared size is checked first, its real size as
    it is inflated)."""
    info = zf.getinfo(name)
    if info.file_size > limit:
        raise TooLarge(f"{name} is larger than {_size(limit)}")
    with zf.open(info) as stream:
        return read_limited(stream, limit, name)


def tar_member(tar: tarfile.TarFile, member: tarfile.TarInfo, limit: int) -> bytes:
    """A tar member's bytes, at most limit; a folder or link named like a file reads as empty."""
    if member.size > limit:
        raise TooLarge(f"{member.name} is larger than {_size(limit)}")
    stream = tar.extractfile(member) if member.isfile() else None
    return read_limited(stream, limit, member.name) if stream else b""


def zip_entries(path, limit: int = MAX_MEMBERS) -> int:
    """How many members a zip's end record says it has, read before the central directory is
    parsed (zipfile keeps an object per member: millions of them cost gigabytes)."""
    with open(path, "rb") as fp:
        end = zipfile._EndRecData(fp)  # type: ignore[attr-defined]  # stable since Python 2
    if end is None:
        raise zipfile.BadZipFile("no end of central directory record")
    count = end[zipfile._ECD_ENTRIES_TOTAL]  # type: ignore[attr-defined]
    # zipfile reads the central directory by its size, whatever the count says: bound both
    if count > limit or end[zipfile._ECD_SIZE] > MAX_CENTRAL_DIRECTORY:  # type: ignore[attr-defined]
        raise TooLarge(f"it has more than {limit} members or a central directory over 64 MiB")
    return count


def open_zip(path, limit: int = MAX_MEMBERS) -> zipfile.ZipFile:
    """A zip opened once its member count is known to be within limit."""
    zip_entries(path, limit)
    return zipfile.ZipFile(path)
