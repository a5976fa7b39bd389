"""Rewriting a finished wheel: a new version (a rebuild's post-release or local bump) and files
added to its .dist-info (the farm's provenance and SBOM), with RECORD written anew.

Every other member keeps its bytes, date and mode, so a rewrite of a reproducible wheel is
reproducible too. Reading goes through wheel's WheelFile, which checks each member against the
RECORD it came with.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from zipfile import ZIP_DEFLATED, ZipInfo

from packaging.utils import parse_wheel_filename
from packaging.version import Version
from wheel.wheelfile import WheelFile

from wheelwright.common.wheelcheck import check_members

VERSION_HEADER = re.compile(rb"^Version:[ \t]*[^\r\n]*", re.MULTILINE)
SIGNATURES = ("RECORD.jws", "RECORD.p7s")


def _renamed(filename: str, version: str) -> str:
    _, _, build, _ = parse_wheel_filename(filename)  # refuses a name that is no wheel's
    name, *_ = filename.split("-", 1)
    tags = filename[: -len(".whl")].rsplit("-", 3)[-3:]
    return "-".join([name, version, *([f"{build[0]}{build[1]}"] if build else []), *tags]) + ".whl"


def _new_metadata(raw: bytes, version: str) -> bytes:
    header, sep, body = raw.partition(b"\n\n")
    header, found = VERSION_HEADER.subn(b"Version: " + version.encode(), header, count=1)
    if not found:
        raise ValueError("METADATA has no Version header")
    return header + sep + body


def rewrite(
    wheel: Path, out_dir: Path, *, version: str | None = None, add: dict[str, bytes] | None = None
) -> Path:
    """A copy of wheel in out_dir, with the version given and the files of add (named relative to
    .dist-info/) in its .dist-info; returns the copy's path."""
    check_members(wheel)  # a build made it: no unsafe member, no bomb, before we read it whole
    version = str(Version(version)) if version else None
    target = out_dir / (_renamed(wheel.name, version) if version else wheel.name)
    with WheelFile(wheel) as src:
        # Never over an existing file, the wheel itself least of all. (WheelFile writes RECORD
        # only in mode "w", so the file is claimed first.)
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        dst = WheelFile(target, "w")
        try:
            with dst:
                _copy(src, dst, version, add or {})
        except BaseException:
            target.unlink()
            raise
    return target


def _copy(src: WheelFile, dst: WheelFile, version: str | None, add: dict[str, bytes]) -> None:
    old_stem = src.dist_info_path[: -len(".dist-info")]
    new_stem = dst.dist_info_path[: -len(".dist-info")]
    stamp = None
    for info in src.infolist():
        top, _, rest = info.filename.partition("/")
        if info.filename == src.record_path or (top == src.dist_info_path and rest in SIGNATURES):
            continue
        data = src.read(info)
        if top in (f"{old_stem}.dist-info", f"{old_stem}.data"):
            if top.endswith(".dist-info") and rest == "METADATA":
                stamp = info.date_time
                if version:
                    data = _new_metadata(data, version)
            info.filename = new_stem + top[len(old_stem) :] + "/" + rest
        dst.writestr(info, data)
    for name, data in sorted(add.items()):
        dst.writestr(_info(f"{dst.dist_info_path}/{name}", stamp), data)


def _info(name: str, date_time) -> ZipInfo:
    info = ZipInfo(name, date_time=date_time or (1980, 1, 1, 0, 0, 0))
    info.compress_type = ZIP_DEFLATED
    info.external_attr = 0o100644 << 16
    return info
