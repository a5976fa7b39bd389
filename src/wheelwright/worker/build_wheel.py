"""BuildWheel on the worker: build the wheel with the network cut off, and record the build
environment's `pip freeze`.

python -m wheelwright.worker.build_wheel --python PY --env-python ENVPY --src src --dist dist --project P
    --version V [--wheel-version V2] [--frontend pip|build] [--build-tag N] [--limits JSON]

The build writes its wheels in a folder of its own; only what is a plain file (no link) and a
wheel of P==V moves from there to dist, which the package's code cannot write, and only there is
it retagged, hashed and later fetched by the master.

A rebuild's wheels carry its bump (policy/bumps.py): a new version V2 (a post-release or a local
version, written into the wheel and checked again as the index checks it), or build number N
(`wheel tags --build N`); either way they stand beside the earlier ones in the index.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from build import BuildBackendException, BuildException, ProjectBuilder
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import Version
from wheel.wheelfile import WheelError

from wheelwright.common import sandbox
from wheelwright.common.files import ZIP_EPOCH, sha256_of
from wheelwright.common.lookup import build_number
from wheelwright.common.results import BuiltWheel, WheelsBuilt
from wheelwright.common.runtime import FRONTENDS, ToolError, clean_pip_env, timed
from wheelwright.common.wheelcheck import WheelRefused, check_wheel
from wheelwright.common.wheeledit import rewrite
from wheelwright.worker.environments import (
    BYTECODE_DIR,
    activated,
    check_plain_file,
    config_settings,
    fresh_dir,
    pip_command,
    run,
    run_tool,
    sandboxed_hooks,
    with_package_env,
)
from wheelwright.worker.validate_install_deps import requires

MAX_PYPROJECT = 1 << 20


def pip_wheel_command(
    env_python: str, src: Path, out: Path, settings_config: Sequence[str] = ()
) -> list[str]:
    # --verbose: the backend's output streams to the log (and counts against its cap) instead of
    # piling up in pip's memory until the end
    return pip_command(
        env_python,
        "wheel",
        "--verbose",
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
        *[arg for item in settings_config for arg in ("--config-settings", item)],
        "--wheel-dir",
        str(out),
        str(src),
    )


def take_wheels(out: Path, dist: Path, project: str, version: str) -> None:
    """Move what the build left in out to dist: plain files only, each a wheel of project==version
    (a build job for foo-1.2.3 publishes foo-1.2.3 wheels and nothing else)."""
    for entry in sorted(os.scandir(out), key=lambda e: e.name):
        if not entry.is_file(follow_symlinks=False):
            raise ToolError(
                f"the build left {entry.name}, which is not a plain file (a link, a folder?)"
            )
        try:
            name, found, _, _ = parse_wheel_filename(entry.name)
        except InvalidWheelFilename:
            raise ToolError(f"the build left {entry.name}, which is not a wheel") from None
        if canonicalize_name(name) != canonicalize_name(project) or found != Version(version):
            raise ToolError(f"the build made {entry.name}, not a wheel of {project} {version}")
        fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as src, open(dist / entry.name, "xb") as dst:
            shutil.copyfileobj(src, dst)
        # What the index checks, before any tool reads the wheel (`wheel tags`, a bump, uv
        # installing it to validate): a build made it, and its bytes are a stranger's.
        try:
            check_wheel(dist / entry.name, entry.name, canonicalize_name(project), version)
        except WheelRefused as exc:
            (dist / entry.name).unlink()
            raise ToolError(f"the build made a wheel the index would refuse: {exc}") from None


def bump_version(dist: Path, project: str, version: str) -> None:
    """Give every wheel in dist the version a rebuild publishes, whatever backend built it."""
    for wheel in sorted(dist.glob("*.whl")):
        try:
            bumped = rewrite(wheel, dist, version=version)
            wheel.unlink()
            check_wheel(bumped, bumped.name, canonicalize_name(project), version)
        except (WheelRefused, WheelError, KeyError, ValueError) as exc:
            raise ToolError(f"{wheel.name} bumped to {version} does not check: {exc}") from None


def check_wheels(dist: Path, project: str, version: str, build_tag: int = 0) -> list[dict]:
    """The wheels in dist, each of project==version with this build's number."""
    wheels = []
    for path in sorted(dist.iterdir()):
        name, found, _, _ = parse_wheel_filename(path.name)
        if canonicalize_name(name) != canonicalize_name(project) or found != Version(version):
            raise ToolError(f"{path.name} is not a wheel of {project} {version}")
        if build_number(path.name) != build_tag:
            raise ToolError(f"{path.name} does not carry build number {build_tag}")
        wheels.append({"filename": path.name, "sha256": sha256_of(path)})
    if not wheels:
        raise ToolError("the build made no wheel")
    return wheels


def source_date_epoch(src: Path) -> str:
    """The sdist's own date, so that wheel timestamps do not depend on when we built it."""
    return str(max(int((src / "PKG-INFO").lstat().st_mtime), ZIP_EPOCH))


def reproducible(env: dict[str, str], src: Path) -> dict[str, str]:
    """env with what the common backends need to make the same bytes on any worker, any day: the
    sdist's date, a fixed hash seed (set and dict orders written to files), UTC and one locale,
    and compilers that write the source folder (different on every worker) as `.`."""
    prefix_map = f"-ffile-prefix-map={src}=."
    return {
        **env,
        "SOURCE_DATE_EPOCH": source_date_epoch(src),
        "PYTHONHASHSEED": "0",
        "TZ": "UTC",
        "LC_ALL": "C.UTF-8",
        **{flag: f"{env.get(flag, '')} {prefix_map}".strip() for flag in ("CFLAGS", "CXXFLAGS")},
    }


def retag(dist: Path, build_tag: int) -> None:
    for wheel in sorted(dist.glob("*.whl")):
        run(
            [
                sys.executable,
                "-I",
                "-m",
                "wheel",
                "tags",
                "--remove",
                "--build",
                str(build_tag),
                str(wheel),
            ],
            what=f"giving {wheel.name} build number {build_tag}",
        )


def build(
    python: str,
    env_python: str,
    src: Path,
    dist: Path,
    project: str,
    version: str,
    frontend: str,
    build_tag: int = 0,
    limits: sandbox.Limits = sandbox.Limits(),
    wheel_version: str | None = None,
    settings_env: list[str] | None = None,
    settings_config: list[str] | None = None,
) -> WheelsBuilt:
    if frontend not in FRONTENDS:
        raise ToolError(
            f"unknown build frontend {frontend!r}; choose one of {', '.join(FRONTENDS)}"
        )
    out = fresh_dir(dist.with_name(dist.name + ".build"))
    fresh_dir(dist)
    env_dir = Path(env_python).parent.parent
    env = with_package_env(
        reproducible(activated(clean_pip_env(), env_dir), src), settings_env or []
    )
    write, what = (
        [src, out, Path(os.environ["TMPDIR"])],
        f"building the wheel with {frontend} (no network)",
    )
    with timed("package build"):
        if frontend == "pip":
            sandbox.run(
                pip_wheel_command(env_python, src, out, settings_config or []),
                write=write,
                read=[env_dir],
                cwd=src,
                env=env,
                what=what,
                limits=limits,
                pythons=[python],
            )
        else:  # `build` calls the backend's hook from here: one interpreter in the sandbox
            pyproject = src / "pyproject.toml"  # the last step's hook could write the tree
            if os.path.lexists(pyproject):
                check_plain_file(pyproject, MAX_PYPROJECT, f"{what}: pyproject.toml")
            bytecode = env_dir.parent / BYTECODE_DIR  # what get_requires_for_build_wheel compiled
            runner = sandboxed_hooks(
                python,
                env_dir,
                env,
                write,
                what,
                limits,
                bytecode if os.path.lexists(bytecode) else None,
            )
            try:
                ProjectBuilder(src, python_executable=env_python, runner=runner).build(
                    "wheel", out, config_settings(settings_config or []) or None
                )
            except BuildBackendException as exc:
                if isinstance(exc.exception, ToolError):
                    raise exc.exception from None
                raise ToolError(f"{what} failed: {exc}") from None
            except BuildException as exc:
                raise ToolError(f"{what}: {exc}") from None
    take_wheels(out, dist, project, version)
    shutil.rmtree(out)
    if build_tag:
        retag(dist, build_tag)
    if wheel_version and Version(wheel_version) != Version(version):
        bump_version(dist, project, wheel_version)
    wheels = check_wheels(dist, project, wheel_version or version, build_tag)
    with timed("requirements"):
        return WheelsBuilt(
            [
                BuiltWheel(w["filename"], w["sha256"], requires(python, dist / w["filename"]))
                for w in wheels
            ]
        )


def main(argv=None) -> WheelsBuilt:
    parser = argparse.ArgumentParser(prog="python -m wheelwright.worker.build_wheel")
    parser.add_argument("--python", help="the builder's interpreter")
    parser.add_argument("--env-python", required=True)
    parser.add_argument("--src", type=Path, required=True)
    parser.add_argument("--dist", type=Path, required=True)
    parser.add_argument("--project", required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--wheel-version", help="the version the wheels carry (a rebuild's bump)")
    parser.add_argument("--frontend", default="build")
    parser.add_argument("--build-tag", type=int, default=0)
    parser.add_argument("--limits", help="the sandbox's limits, as JSON")
    parser.add_argument("--package-env", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--config-setting", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    return build(
        args.python or args.env_python,
        args.env_python,
        args.src.resolve(),
        args.dist.resolve(),
        args.project,
        args.version,
        args.frontend,
        args.build_tag,
        sandbox.Limits.parse(args.limits),
        args.wheel_version,
        args.package_env,
        args.config_setting,
    )


if __name__ == "__main__":
    raise SystemExit(run_tool(main))
