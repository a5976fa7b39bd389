"""BuildWheel on the worker: build the wheel with the network cut off, and record the build
environment's `pip freeze`.

python -m wheelwright.workers.wheel --env-python ENVPY --src src --dist dist --project P --version V
    [--frontend pip|build] [--freeze freeze.txt] [--build-tag N]

A rebuild's wheels get build number N (`wheel tags --build N`), so they stand beside the earlier
ones in the index, and installers prefer them.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import Version

from wheelwright.index.lookup import build_number
from wheelwright.index.store import sha256_of
from wheelwright.workers import sandbox
from wheelwright.workers.tool import ToolError, clean_pip_env, pip_command, run, run_tool, uv_pip

FRONTENDS = ("pip", "build")


def build_command(frontend: str, env_python: str, src: Path, dist: Path) -> list[str]:
    if frontend == "pip":
        return pip_command(env_python, "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                           "--wheel-dir", str(dist.resolve()), str(src.resolve()))
    # `build` calls the PEP 517 hooks itself, with the build environment's interpreter.
    return [sys.executable, "-m", "wheelwright.workers.wheel", "--pep517", "--env-python", env_python,
            "--src", str(src), "--dist", str(dist), "--project", "-", "--version", "0"]


def check_wheels(dist: Path, project: str, version: str, build_tag: int = 0) -> list[dict]:
    """Every file the build left must be a wheel of project==version: a build job for foo-1.2.3
    publishes foo-1.2.3 wheels (with this build's number) and nothing else."""
    wheels = []
    for path in sorted(dist.iterdir()):
        try:
            name, found, _, _ = parse_wheel_filename(path.name)
        except InvalidWheelFilename:
            raise ToolError(f"the build left {path.name}, which is not a wheel") from None
        if canonicalize_name(name) != canonicalize_name(project) or found != Version(version):
            raise ToolError(f"the build made {path.name}, not a wheel of {project} {version}")
        if build_number(path.name) != build_tag:
            raise ToolError(f"{path.name} does not carry build number {build_tag}")
        wheels.append({"filename": path.name, "sha256": sha256_of(path)})
    if not wheels:
        raise ToolError("the build made no wheel")
    return wheels


def source_date_epoch(src: Path) -> str:
    """The sdist's own date, so that wheel timestamps do not depend on when we built it."""
    return str(int((src / "PKG-INFO").stat().st_mtime))


def retag(dist: Path, build_tag: int) -> None:
    for wheel in sorted(dist.glob("*.whl")):
        run([sys.executable, "-m", "wheel", "tags", "--remove", "--build", str(build_tag), str(wheel)],
            what=f"giving {wheel.name} build number {build_tag}")


def build(env_python: str, src: Path, dist: Path, project: str, version: str, frontend: str, freeze: Path,
          build_tag: int = 0) -> dict:
    if frontend not in FRONTENDS:
        raise ToolError(f"unknown build frontend {frontend!r}; choose one of {', '.join(FRONTENDS)}")
    freeze.write_text(run(uv_pip(env_python, "freeze"), env=clean_pip_env(),
                          what="pip freeze of the build environment", capture=True))
    print(f"build environment ({freeze}):\n{freeze.read_text()}", flush=True)
    if dist.exists():
        shutil.rmtree(dist)
    dist.mkdir(parents=True)
    env = clean_pip_env()
    env["SOURCE_DATE_EPOCH"] = source_date_epoch(src)
    run([*sandbox.prefix(), *build_command(frontend, env_python, src, dist)], env=env,
        what=f"building the wheel with {frontend} (no network)")
    if build_tag:
        retag(dist, build_tag)
    return {"wheels": check_wheels(dist, project, version, build_tag), "freeze": str(freeze)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m wheelwright.workers.wheel")
    parser.add_argument("--env-python", required=True)
    parser.add_argument("--src", type=Path, required=True)
    parser.add_argument("--dist", type=Path, required=True)
    parser.add_argument("--project", required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--frontend", default="pip")
    parser.add_argument("--freeze", type=Path, default=Path("freeze.txt"))
    parser.add_argument("--build-tag", type=int, default=0)
    parser.add_argument("--pep517", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.pep517:
        from build import ProjectBuilder

        ProjectBuilder(args.src, python_executable=args.env_python).build("wheel", args.dist)
        return {}
    return build(args.env_python, args.src, args.dist, args.project, args.version, args.frontend, args.freeze,
                 args.build_tag)


if __name__ == "__main__":
    raise SystemExit(run_tool(main))
