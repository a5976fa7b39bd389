"""Wheels made by hand, for tests of the index and of publishing."""

from __future__ import annotations

import base64
import hashlib
import re
import zipfile
from pathlib import Path


def record_line(member: str, data: bytes, algorithm: str = "sha256") -> str:
    digest = base64.urlsafe_b64encode(hashlib.new(algorithm, data).digest()).decode().rstrip("=")
    return f"{member},{algorithm}={digest},{len(data)}\n"


def write_wheel(
    path: Path, files: dict[str, bytes | str], dist_info: str, *, record: str | None = None
) -> Path:
    """A zip of `files` with a RECORD at dist_info/RECORD that lists them truly, unless `record`
    gives another text."""
    data = {
        name: content.encode() if isinstance(content, str) else content
        for name, content in files.items()
    }
    if record is None:
        record = (
            "".join(record_line(name, content) for name, content in data.items())
            + f"{dist_info}/RECORD,,\n"
        )
    data[f"{dist_info}/RECORD"] = record.encode()
    with zipfile.ZipFile(path, "w") as zf:
        for member, content in data.items():
            zf.writestr(member, content)
    return path


def wheel_files(
    name: str,
    version: str,
    *,
    requires: list[str] = (),
    tag: str = "py3-none-any",
    metadata_name: str | None = None,
    payload: bytes = b"",
    extra_metadata: list[str] = (),
    requires_python: str = ">=3.8",
) -> tuple[dict[str, str | bytes], str]:
    """The files of a small valid wheel, and its .dist-info directory."""
    escaped = re.sub(r"[-_.]+", "_", name)  # as wheel file names spell a project
    dist_info = f"{escaped}-{version}.dist-info"
    metadata = [
        "Metadata-Version: 2.1",
        f"Name: {metadata_name or name}",
        f"Version: {version}",
        f"Requires-Python: {requires_python}",
        *extra_metadata,
    ] + [f"Requires-Dist: {r}" for r in requires]
    files = {
        f"{escaped}.py": "VALUE = 1\n",
        f"{dist_info}/METADATA": "\n".join(metadata) + "\n",
        f"{dist_info}/WHEEL": f"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: {tag}\n",
    }
    if payload:
        files[f"{escaped}.bin"] = payload
    return files, dist_info


def make_wheel(
    dest: Path, name: str, version: str, *, tag: str = "py3-none-any", **options
) -> Path:
    files, dist_info = wheel_files(name, version, tag=tag, **options)
    return write_wheel(dest / f"{dist_info[: -len('.dist-info')]}-{tag}.whl", files, dist_info)
