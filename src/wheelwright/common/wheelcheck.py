"""What the index checks inside a wheel before publishing it. A worker ran strangers' code to
make it, so the index takes nothing in it on trust: every member is a plain file at a safe
relative path, RECORD lists exactly the files there with their true sizes and strong hashes,
and the one .dist-info and METADATA belong to the project and version of the file name.
"""

from __future__ import annotations

import stat
import struct
import zipfile
from email.parser import BytesParser
from pathlib import Path

from installer.exceptions import InstallerError
from installer.records import parse_record_file
from installer.sources import WheelFile
from packaging.metadata import Metadata
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from wheelwright.common.bounded import DIST_INFO_CAPS, TooLarge, open_zip

# PEP 427: RECORD hashes at least as strong as sha256.
STRONG_HASHES = frozenset({"sha256", "sha384", "sha512"})
MAX_UNPACKED_BYTES = 4 << 30
COMPILED_SUFFIXES = (".so", ".pyd", ".dll", ".dylib")
# The first bytes of ELF and of Mach-O (32 and 64 bits, either byte order).
MACHINE_CODE = (
    b"\x7fELF",
    b"\xfe\xed\xfa\xce",
    b"\xfe\xed\xfa\xcf",
    b"\xce\xfa\xed\xfe",
    b"\xcf\xfa\xed\xfe",
)


class WheelRefused(Exception):
    pass


def unsafe_member(info: zipfile.ZipInfo) -> str | None:
    """Why a zip member could land outside the install directory, or not be a plain file."""
    name = info.filename
    parts = name.rstrip("/").split("/")
    if name.startswith("/") or parts[0][1:2] == ":":
        return "an absolute path"
    if "\\" in name or "\0" in name:
        return "a path with a backslash or NUL"
    if any(part in ("", ".", "..") for part in parts):
        return "a path with an empty, . or .. part"
    kind = stat.S_IFMT(info.external_attr >> 16)
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        return "not a plain file"
    if info.is_dir() and info.file_size:
        return "a directory with contents"
    return None


def _compiled(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> bool:
    """Compiled code by its name, or by its first bytes whatever its name: an ELF or Mach-O file
    renamed to data.bin is still a platform's code. A Windows program named .exe is let through:
    setuptools, pip and distlib ship their script launchers in their pure wheels so, and none of
    this farm's builders makes or runs one."""
    base = info.filename.rsplit("/", 1)[-1]
    if base.endswith(COMPILED_SUFFIXES) or ".so." in base:
        return True
    if info.is_dir() or info.file_size < 4:
        return False
    with zf.open(info) as member:
        head = member.read(4096)
    if head[:4] in MACHINE_CODE:
        return True
    if head[:4] == b"\xca\xfe\xba\xbe":  # a Mach-O fat binary counts its architectures here;
        return int.from_bytes(head[4:8], "big") < 45  # a Java class, its version (45 and up)
    if head[:2] == b"MZ" and len(head) >= 64 and not base.lower().endswith(".exe"):
        at = int.from_bytes(head[60:64], "little")
        return head[at : at + 4] == b"PE\0\0"
    return False


# A local file header: signature, versions, flags, method, time, date, CRC, sizes, name and
# extra lengths (APPNOTE 4.3.7).
LOCAL_HEADER = struct.Struct("<4s5H3L2H")
DATA_DESCRIPTOR = 0x08


def _check_local_headers(zf: zipfile.ZipFile, filename: str) -> None:
    """Every member's local header says what the central directory says, and no two members'
    bytes overlap: a tool that reads the local headers (a streaming unzip) sees the wheel that
    installer and pip see, and one stretch of bytes cannot be two files."""
    fp = zf.fp
    assert fp is not None
    ends_at = 0
    for info in sorted(zf.infolist(), key=lambda i: i.header_offset):
        if info.header_offset < ends_at:
            raise WheelRefused(f"{filename}: member {info.filename!r} overlaps the one before it")
        fp.seek(info.header_offset)
        raw = fp.read(LOCAL_HEADER.size)
        if len(raw) < LOCAL_HEADER.size:
            raise WheelRefused(f"{filename}: member {info.filename!r} has no local header")
        sig, _, flags, method, _, _, crc, csize, usize, nlen, elen = LOCAL_HEADER.unpack(raw)
        name = fp.read(nlen)
        wanted = info.orig_filename.encode("utf-8" if info.flag_bits & 0x800 else "cp437")
        sizes = (crc, csize, usize) if not flags & DATA_DESCRIPTOR else None
        central = (info.CRC, info.compress_size, info.file_size)
        if (
            sig != b"PK\x03\x04"
            or name != wanted
            or method != info.compress_type
            or (sizes is not None and 0xFFFFFFFF not in sizes and sizes != central)
        ):
            raise WheelRefused(
                f"{filename}: member {info.filename!r}'s local header differs from the "
                "central directory"
            )
        ends_at = info.header_offset + LOCAL_HEADER.size + nlen + elen + info.compress_size
    if ends_at > zf.start_dir:
        raise WheelRefused(f"{filename}: the last member runs into the central directory")


def _check_members(zf: zipfile.ZipFile, filename: str) -> None:
    infos = zf.infolist()
    for info in infos:
        reason = unsafe_member(info)
        if reason:
            raise WheelRefused(f"{filename}: member {info.filename!r} is {reason}")
        top, _, rest = info.filename.partition("/")
        cap = DIST_INFO_CAPS.get(rest) if top.endswith(".dist-info") else None
        if cap is not None and info.file_size > cap:
            raise WheelRefused(f"{filename}: {info.filename} is larger than {cap >> 20} MiB")
    _check_local_headers(zf, filename)
    if all(t.abi == "none" and t.platform == "any" for t in parse_wheel_filename(filename)[3]):
        compiled = [i.filename for i in infos if _compiled(zf, i)]
        if compiled:
            raise WheelRefused(
                f"{filename}: a pure (none-any) wheel holds compiled code ({compiled[0]}); "
                "its platform would be claimed by every builder"
            )
    names = [info.filename for info in infos]
    if len(set(names)) != len(names):
        raise WheelRefused(f"{filename}: a member name occurs twice")
    if sum(info.file_size for info in infos) > MAX_UNPACKED_BYTES:
        raise WheelRefused(f"{filename}: unpacks to more than {MAX_UNPACKED_BYTES >> 30} GiB")


def _dist_info(wheel: WheelFile, members: list[str], filename: str, version: str) -> None:
    dist_info = wheel.dist_info_dir  # exactly one, named for the file's project
    stem = dist_info[: -len(".dist-info")]
    try:
        found = Version(stem.rpartition("-")[2])
    except InvalidVersion:
        found = None
    if found != Version(version):
        raise WheelRefused(f"{filename}: {dist_info} is not for version {version}")
    for top in {name.split("/", 1)[0] for name in members}:
        if top.endswith(".data") and top != f"{stem}.data":
            raise WheelRefused(
                f"{filename}: {top} is not this wheel's .data directory ({stem}.data)"
            )


def _check_wheel_file(wheel: WheelFile, filename: str) -> None:
    fields = BytesParser().parsebytes(wheel.read_dist_info("WHEEL").encode())
    if not (fields.get("Wheel-Version") or "").startswith("1."):
        raise WheelRefused(
            f"{filename}: WHEEL says Wheel-Version {fields.get('Wheel-Version')!r}, not 1.x"
        )


def _check_record(wheel: WheelFile, members: list[str], filename: str) -> None:
    try:
        wheel.validate_record()  # every member listed, with its size and hash
    except InstallerError as exc:
        raise WheelRefused(
            f"{filename}: " + "; ".join(getattr(exc, "issues", [str(exc)]))
        ) from None
    for path, hash_, _ in parse_record_file(wheel.read_dist_info("RECORD").splitlines()):
        if path not in members:
            raise WheelRefused(f"{filename}: RECORD lists {path}, which the wheel does not contain")
        if hash_ and hash_.partition("=")[0] not in STRONG_HASHES:
            raise WheelRefused(
                f"{filename}: RECORD hashes {path} with {hash_.partition('=')[0]}; "
                f"use one of {', '.join(sorted(STRONG_HASHES))}"
            )


def _metadata(
    wheel: WheelFile, filename: str, project: str, version: str
) -> tuple[bytes, list[str]]:
    """METADATA read as installers read it: what they act on (name, version, Requires-Dist,
    Requires-Python) must parse and match the file; any other deviation from the core metadata
    spec is returned as a warning, since pip, uv and PyPI accept it (setuptools 56 to 76 write
    License-File under Metadata-Version 2.1, for one)."""
    try:
        raw = wheel.read_dist_info("METADATA").encode()
    except UnicodeDecodeError as exc:  # installers read it as UTF-8, and so would fail
        raise WheelRefused(f"{filename}: METADATA is not UTF-8 ({exc.reason})") from None
    try:
        meta = Metadata.from_email(raw, validate=False)
        name, found = meta.name, Version(str(meta.version))
    except (KeyError, ValueError, InvalidVersion, TypeError) as exc:
        raise WheelRefused(
            f"{filename}: METADATA has no readable Name and Version ({exc})"
        ) from None
    if canonicalize_name(name) != project or found != Version(version):
        raise WheelRefused(f"{filename}: METADATA is for {name} {found}, not {project} {version}")
    for field in ("requires_dist", "requires_python"):
        try:
            getattr(meta, field)
        except Exception as exc:  # packaging raises InvalidMetadata for a field that does not parse
            raise WheelRefused(
                f"{filename}: METADATA's {field.replace('_', '-').title()} does not parse ({exc})"
            ) from None
    try:
        Metadata.from_email(raw, validate=True)
    except Exception as exc:  # an ExceptionGroup of every deviation from the spec
        return raw, sorted({str(e) for e in getattr(exc, "exceptions", [exc])})
    return raw, []


def check_members(path) -> None:
    """The checks of a wheel's members alone (safe names, plain files, bounded size): what must
    hold before a tool of ours reads a wheel a build made, to rewrite or compare it."""
    try:
        with open_zip(path) as zf:
            _check_members(zf, Path(path).name)
    except zipfile.BadZipFile as exc:
        raise WheelRefused(f"{Path(path).name}: not a zip file ({exc})") from None
    except TooLarge as exc:
        raise WheelRefused(f"{Path(path).name}: {exc}") from None


def check_wheel(path, filename: str, project: str, version: str) -> tuple[bytes, list[str]]:
    """Check the wheel at path, published as filename of project==version; returns its METADATA
    and the warnings about it (deviations from the spec that installers accept)."""
    try:
        with open_zip(path) as zf:
            _check_members(zf, filename)
            zf.filename = filename  # installer reads the project and version from the zip's name
            wheel = WheelFile(zf)
            _dist_info(wheel, zf.namelist(), filename, version)
            _check_wheel_file(wheel, filename)
            _check_record(wheel, zf.namelist(), filename)
            return _metadata(wheel, filename, project, version)
    except zipfile.BadZipFile as exc:
        raise WheelRefused(f"{filename}: not a zip file ({exc})") from None
    except TooLarge as exc:
        raise WheelRefused(f"{filename}: {exc}") from None
    except KeyError as exc:  # zipfile's message names the missing member
        raise WheelRefused(f"{filename}: {exc.args[0]}") from None
    except (InstallerError, ValueError) as exc:
        raise WheelRefused(f"{filename}: {exc}") from None
