"""Rewriting a finished wheel: a new version (a rebuild's post-release or local bump) and files
added to its .dist-info (the farm's provenance and SBOM), with RECORD written anew.

Every other member keeps its bytes, date and mode, so a rewrite of a reproducible wheel is
reproducible too. Files are added to a copy of the archive as it is, its members not compressed
again, wherever RECORD is its last member; a bump, or a wheel laid out otherwise, is read through
wheel's WheelFile, which checks each member against the RECORD it came with, and written anew.
Either way the index checks every member against RECORD before it publishes the wheel.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import re
import shutil
import zipfile
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
    # Never over an existing file, the wheel itself least of all. (WheelFile writes RECORD only
    # in mode "w", so the file is claimed first.)
    os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    try:
        if version or not _appended(wheel, target, add or {}):
            with WheelFile(wheel) as src, WheelFile(target, "w") as dst:
                _copy(src, dst, version, add or {})
    except BaseException:
        target.unlink()
        raise
    return target


def _appended(wheel: Path, target: Path, add: dict[str, bytes]) -> bool:
    """Files added to a copy of the wheel without decompressing or compressing its members
    again (seconds for a large wheel), where RECORD is the archive's last member, as the common
    backends write it: the copy keeps every byte before RECORD, then the added files, RECORD
    with their rows, and the central directory are written anew. The index checks every member
    against RECORD before it publishes. False where that does not apply."""
    with WheelFile(wheel) as zf:
        infos = zf.infolist()
        dist_info, record_path = zf.dist_info_path, zf.record_path
        names = {i.filename for i in infos}
        if (
            record_path not in names
            or max(infos, key=lambda i: i.header_offset).filename != record_path
            or any(f"{dist_info}/{name}" in names for name in (*add, *SIGNATURES))
        ):
            return False
        rows = [
            row
            for row in csv.reader(zf.read(record_path).decode().splitlines())
            if row and row[0] != record_path
        ]
        stamp = zf.getinfo(f"{dist_info}/METADATA").date_time
    shutil.copyfile(wheel, target)
    with zipfile.ZipFile(target, "a") as dst:
        record = dst.NameToInfo.pop(record_path)
        dst.filelist.remove(record)
        dst.fp.seek(record.header_offset)  # type: ignore[union-attr]
        dst.start_dir = record.header_offset
        for name, data in sorted(add.items()):
            dst.writestr(_info(f"{dist_info}/{name}", stamp), data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            rows.append([f"{dist_info}/{name}", f"sha256={digest.decode()}", str(len(data))])
        text = io.StringIO()
        csv.writer(text, lineterminator="\n").writerows([*rows, [record_path, "", ""]])
        dst.writestr(_info(record_path, record.date_time), text.getvalue())
    return True


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
