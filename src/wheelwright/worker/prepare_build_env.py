"""PrepareBuildEnv on the worker: a fresh venv holding the sdist's build requirements, every one
of them a wheel from our own index.

python -m wheelwright.worker.prepare_build_env --python PY --src src --env env --index URL

Build requirements are `build-system.requires` and then what the backend's
`get_requires_for_build_wheel` asks for; that hook runs the package's own code, so it runs with
no network. A requirement whose project our index lacks fails the build and is reported in
`missing`, for the master to put in the review queue.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import shutil
import subprocess
from pathlib import Path

from build import BuildBackendException, BuildException, ProjectBuilder
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from wheelwright.common import sandbox
from wheelwright.common.lookup import IndexUnreachable, short_of
from wheelwright.common.results import BuildEnvReady
from wheelwright.common.runtime import ToolError, clean_pip_env, timed
from wheelwright.worker.environments import (
    BYTECODE_DIR,
    activated,
    config_settings,
    create_venv,
    fresh_dir,
    install_binaries,
    marker_environment,
    run_tool,
    sandboxed_hooks,
    with_package_env,
)

MAX_FREEZE = 256 << 10


def install_from_index(
    python: str, env_python: str, requirements: list[str], index_url: str
) -> None:
    markers = marker_environment(python)
    wanted = [Requirement(r) for r in requirements]
    wanted = [r for r in wanted if not r.marker or r.marker.evaluate(markers)]
    if not wanted:
        return
    try:
        with timed("build requirements install"):
            install_binaries(
                env_python,
                index_url,
                *map(str, wanted),
                description="installing build requirements from our index",
            )
    except ToolError:
        # Asked only when the install failed: which requirement our index lacks (to review).
        try:
            missing, too_old = short_of(index_url, wanted)
        except IndexUnreachable as exc:
            raise ToolError(str(exc)) from None
        if missing:
            raise ToolError(
                f"build requirement {', '.join(missing)} is not in the index", missing=missing
            ) from None
        if too_old:
            raise ToolError(
                f"build requirement {'; '.join(too_old)} is not satisfied by our index"
            ) from None
        raise


def freeze(env_dir: Path) -> str:
    """The build environment's `pip freeze`, read from its .dist-info folders: no interpreter of
    the environment runs outside the sandbox."""
    site = sorted(env_dir.glob("lib/python*/site-packages"))
    found = {
        f"{canonicalize_name(d.metadata['Name'])}=={d.version}\n"
        for d in importlib.metadata.distributions(path=[str(p) for p in site])
    }
    return "".join(sorted(found))[:MAX_FREEZE]


def prepare(
    python: str,
    src: Path,
    env_dir: Path,
    index_url: str,
    limits: sandbox.Limits,
    system: list[str] | None = None,
    tools: dict[str, str] | None = None,
    settings_env: list[str] | None = None,
    settings_config: list[str] | None = None,
) -> BuildEnvReady:
    system_packages = system_requirements(system or [])
    tools = {canonicalize_name(name): command for name, command in (tools or {}).items()}
    env_python = create_venv(python, str(env_dir))
    bytecode = fresh_dir(env_dir.parent / BYTECODE_DIR)
    try:
        builder = ProjectBuilder(
            src,
            python_executable=env_python,
            runner=sandboxed_hooks(
                python,
                env_dir,
                with_package_env(activated(clean_pip_env(), env_dir), settings_env or []),
                [src, Path(os.environ["TMPDIR"])],
                "the build backend's get_requires_for_build_wheel",
                limits,
                bytecode,
            ),
        )
        static = sorted(builder.build_system_requires)
    except BuildException as exc:
        raise ToolError(f"cannot read the build system: {exc}") from None
    _check(static)
    install_from_index(python, env_python, _not_from(tools, static), index_url)
    try:
        with timed("get_requires_for_build_wheel"):
            asked = builder.get_requires_for_build(
                "wheel", config_settings(settings_config or []) or None
            )
            dynamic = sorted(set(asked) - set(static))
    except BuildBackendException as exc:
        if isinstance(exc.exception, ToolError):
            raise exc.exception from None
        raise ToolError(f"the build backend's get_requires_for_build_wheel failed: {exc}") from None
    _check(dynamic)
    install_from_index(python, env_python, _not_from(tools, dynamic), index_url)
    return BuildEnvReady(
        env_python=env_python,
        build_system_requires=static,
        backend_requires=dynamic,
        freeze=freeze(env_dir),
        system_packages=system_packages,
        system_tools=tool_versions(tools, [*static, *dynamic]),
    )


def _not_from(tools: dict[str, str], requirements: list[str]) -> list[str]:
    """The requirements to install: those the system does not provide."""
    return [r for r in requirements if canonicalize_name(Requirement(r).name) not in tools]


def tool_versions(tools: dict[str, str], requirements: list[str]) -> dict[str, str]:
    """For each requirement the system provides: the tool's version, as it says it; a ToolError
    when the worker lacks the tool."""
    found: dict[str, str] = {}
    for name in sorted({canonicalize_name(Requirement(r).name) for r in requirements} & set(tools)):
        path = shutil.which(tools[name])
        if path is None:
            raise ToolError(
                f"build requirement {name} is taken from the system ({tools[name]} on PATH), "
                "which this worker lacks: install it, or take it out of system_tools"
            )
        said = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=60, check=False
        )
        line = (said.stdout or said.stderr).strip().splitlines()[:1]
        found[name] = f"{line[0] if line else 'version unknown'} ({path})"
    return found


def system_requirements(names: list[str]) -> dict[str, str]:
    """The versions of the Debian packages a package's settings need installed on the worker;
    a ToolError naming those missing, and the command that installs them."""
    if not names:
        return {}
    said = subprocess.run(
        ["dpkg-query", "-W", "-f=${Package} ${Status} ${Version}\\n", *names],
        capture_output=True,
        text=True,
    )
    installed = {}
    for line in said.stdout.splitlines():
        name, *status, version = line.split(" ")
        if status[-1:] == ["installed"]:
            installed[name.split(":")[0]] = version
    missing = [name for name in names if name not in installed]
    if missing:
        raise ToolError(
            f"system packages missing on this worker: {', '.join(missing)} (the package's "
            f"system_requirements); install them: apt-get install -y {' '.join(missing)}"
        )
    return {name: installed[name] for name in names}


def _check(requirements: list[str]) -> None:
    for r in requirements:
        try:
            Requirement(r)
        except InvalidRequirement as exc:
            raise ToolError(f"invalid build requirement {r!r}: {exc}") from None


def main(argv=None) -> BuildEnvReady:
    parser = argparse.ArgumentParser(prog="python -m wheelwright.worker.prepare_build_env")
    parser.add_argument("--python", required=True, help="the builder's interpreter")
    parser.add_argument("--src", type=Path, required=True)
    parser.add_argument("--env", type=Path, required=True)
    parser.add_argument("--index", required=True, help="our index's /simple/ URL")
    parser.add_argument("--limits", help="the sandbox's limits, as JSON")
    parser.add_argument(
        "--system", action="append", default=[], metavar="DEBIAN_PACKAGE", help="must be installed"
    )
    parser.add_argument(
        "--system-tool",
        action="append",
        default=[],
        metavar="NAME=COMMAND",
        help="a build requirement the system provides: not installed, the command run instead",
    )
    parser.add_argument("--package-env", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--config-setting", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    return prepare(
        args.python,
        args.src.resolve(),
        args.env.resolve(),
        args.index,
        sandbox.Limits.parse(args.limits),
        args.system,
        dict(tool.split("=", 1) for tool in args.system_tool),
        args.package_env,
        args.config_setting,
    )


if __name__ == "__main__":
    raise SystemExit(run_tool(main))
