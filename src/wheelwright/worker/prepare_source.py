"""PrepareSource on the worker: unpack an sdist safely and apply the package's patches.

python -m wheelwright.worker.prepare_source --sdist F --dest src --project P --version V [--patches DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path

from packaging.metadata import Metadata
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from wheelwright.common import sandbox
from wheelwright.common import unpack as unpacking
from wheelwright.common.files import read_plain
from wheelwright.common.results import SourcePrepared
from wheelwright.common.runtime import ToolError
from wheelwright.worker.environments import run, run_tool

MAX_MEMBERS = unpacking.MAX_MEMBERS
MAX_BYTES = unpacking.MAX_BYTES
MAX_PKG_INFO = 16 << 20
# What the unpacking may use besides the bytes it writes: a tar's headers are read into memory.
UNPACK_LIMITS = dict(wall_seconds=600, cpu_seconds=600, memory_mb=1024, processes=16, output_mb=1)


def _unpack_in_sandbox(sdist: Path, into: Path, max_members: int, max_bytes: int) -> None:
    """common/unpack.py, run by the worker's own interpreter in the sandbox, where only the
    folder it fills is writable and the archive is the one other thing of ours it sees."""
    limits = sandbox.Limits(disk_mb=max(1, (max_bytes >> 20) + 16), **UNPACK_LIMITS)
    command = [
        sys.executable,
        "-I",
        "-S",
        "-B",
        unpacking.__file__,
        str(sdist.resolve()),
        str(into.resolve()),
    ]
    command += ["--max-members", str(max_members), "--max-bytes", str(max_bytes)]
    sandbox.run(
        command,
        write=[into],
        read=[sdist],
        cwd=into,
        env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"},
        what=f"unpacking {sdist.name}",
        limits=limits,
        reason_last=True,
    )


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
        _unpack_in_sandbox(sdist, tmp, max_members, max_bytes)
        tops = list(tmp.iterdir())
        if len(tops) != 1 or not stat.S_ISDIR(os.lstat(tops[0]).st_mode):
            raise ToolError(f"{sdist.name} must hold exactly one top-level directory")
        _check_pkg_info(tops[0] / "PKG-INFO", project, version)
        os.rename(tops[0], dest)
    return dest


def _check_pkg_info(pkg_info: Path, project: str, version: str) -> None:
    try:
        meta = Metadata.from_email(read_plain(pkg_info, MAX_PKG_INFO), validate=False)
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
    parser = argparse.ArgumentParser(prog="python -m wheelwright.worker.prepare_source")
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
