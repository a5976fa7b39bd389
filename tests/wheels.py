"""Wheels made by hand, for tests of the index and of publishing."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path


def make_wheel(dest: Path, name: str, version: str, *, requires: list[str] = (), tag: str = "py3-none-any",
               metadata_name: str | None = None, payload: bytes = b"") -> Path:
    escaped = re.sub(r"[-_.]+", "_", name)  # as wheel file names spell a project
    dist_info = f"{escaped}-{version}.dist-info"
    path = dest / f"{escaped}-{version}-{tag}.whl"
    metadata = ["Metadata-Version: 2.1", f"Name: {metadata_name or name}", f"Version: {version}",
                "Requires-Python: >=3.8"] + [f"Requires-Dist: {r}" for r in requires]
    files = {
        f"{escaped}.py": "VALUE = 1\n",
        f"{dist_info}/METADATA": "\n".join(metadata) + "\n",
        f"{dist_info}/WHEEL": f"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: {tag}\n",
    }
    files[f"{dist_info}/RECORD"] = "".join(f"{f},,\n" for f in files) + f"{dist_info}/RECORD,,\n"
    if payload:
        files[f"{escaped}.bin"] = payload
    with zipfile.ZipFile(path, "w") as zf:
        for member, text in files.items():
            zf.writestr(member, text)
    return path
