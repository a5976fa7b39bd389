"""What every worker-side tool shares: its result line, pip without the machine's configuration,
and commands run with no network.

A tool prints its result as the last line of stdout, `wheelwright-result: {json}`, which the
master-side step reads. Workers run strangers' code, so the master re-checks what matters.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import traceback

RESULT_PREFIX = "wheelwright-result: "

# Each prefix gives the command a network namespace with nothing in it. `--user` lets it work
# unprivileged, as inside a container; bwrap is the fallback where unshare is refused.
NO_NETWORK_PREFIXES = (
    ("unshare", "--user", "--map-root-user", "--net", "--"),
    ("unshare", "--net", "--"),
    ("bwrap", "--unshare-net", "--dev-bind", "/", "/", "--"),
)


class ToolError(Exception):
    """A failure the tool reports with a clear reason, and the build fails with it."""

    def __init__(self, message: str, **details):
        super().__init__(message)
        self.details = details


def emit(result: dict) -> None:
    sys.stdout.flush()
    print(RESULT_PREFIX + json.dumps(result, sort_keys=True), flush=True)


def run_tool(main, argv=None) -> int:
    """Run a tool's main(argv) -> dict, printing its result or its error."""
    try:
        result = main(argv)
    except ToolError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        emit({"error": str(exc), **exc.details})
        return 1
    except Exception as exc:
        traceback.print_exc()
        emit({"error": f"internal error in the worker-side tool: {exc!r}"})
        return 2
    emit(result)
    return 0


def clean_pip_env() -> dict[str, str]:
    """The environment for pip and uv with no machine-wide configuration, index, find-links or
    cache: what they install comes from the index named on their command line alone."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_INPUT="1", PIP_DISABLE_PIP_VERSION_CHECK="1",
               PIP_NO_CACHE_DIR="1", UV_NO_CONFIG="1", UV_NO_CACHE="1", PYTHONDONTWRITEBYTECODE="1")
    return env


def pip_command(target_python: str, *args: str) -> list[str]:
    """pip of the worker's own Python acting on another environment (`pip --python`)."""
    return [sys.executable, "-m", "pip", "--python", target_python, *args]


def uv_command(*args: str) -> list[str]:
    """uv, which installs into and creates environments in a fraction of pip's time. No cache:
    builds run strangers' code, which could otherwise plant files for the next build to install."""
    uv = shutil.which("uv", path=os.path.dirname(sys.executable)) or shutil.which("uv")
    if not uv:
        raise ToolError("uv is not installed beside the worker's tools")
    return [uv, *args, "--no-config", "--no-cache"]


def uv_pip(target_python: str, *args: str) -> list[str]:
    return uv_command("pip", *args, "--python", target_python)


# Paths (separated by os.pathsep) that commands running the package's code must not see: the
# farm's secrets and state where a worker shares the farm's machine. `wheelwright up` sets it.
HIDE_ENV = "WHEELWRIGHT_HIDE"
# Inside the new mount namespace: an empty tmpfs over each folder, /dev/null over each file.
_HIDE_SCRIPT = ('for p; do [ "$p" = -- ] && break; '
                'if [ -d "$p" ]; then mount -t tmpfs -o size=4k,mode=0 tmpfs "$p"; else mount --bind /dev/null "$p"; fi '
                '|| exit 97; shift; done; shift; exec "$@"')


def hidden_paths() -> list[str]:
    return [p for p in os.environ.get(HIDE_ENV, "").split(os.pathsep) if p and os.path.exists(p)]


def _sandbox(prefix: tuple[str, ...], hide: list[str]) -> list[str]:
    if not hide:
        return list(prefix)
    if prefix[0] == "bwrap":
        binds = [arg for p in hide for arg in (("--tmpfs", p) if os.path.isdir(p) else ("--ro-bind", "/dev/null", p))]
        return [*prefix[:-1], *binds, "--"]
    return [*prefix[:-1], "--mount", "--", "sh", "-c", _HIDE_SCRIPT, "sandbox", *hide, "--"]


def no_network_prefix() -> list[str]:
    """The command prefix for running the package's code: no network, and the paths in
    WHEELWRIGHT_HIDE out of sight."""
    hide = hidden_paths()
    for prefix in NO_NETWORK_PREFIXES:
        candidate = _sandbox(prefix, hide)
        if shutil.which(prefix[0]) and subprocess.run([*candidate, "true"], capture_output=True).returncode == 0:
            return candidate
    raise ToolError("cannot cut the network off for the build: neither unshare nor bwrap works here")


def run(cmd: list[str], *, cwd=None, env=None, what: str, capture: bool = False) -> str:
    """Run cmd, its output going to the step's log (or returned, with capture); a failure is a
    ToolError naming `what`."""
    print("+ " + " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, cwd=cwd, env=env, text=True, stdout=subprocess.PIPE if capture else None)
    if proc.returncode != 0:
        raise ToolError(f"{what} failed (exit {proc.returncode})")
    return proc.stdout or ""


def create_venv(python: str, env_dir: str) -> str:
    """A venv with nothing seeded in it (ensurepip would bring setuptools that never came from
    our index); returns its interpreter."""
    if os.path.exists(env_dir):
        shutil.rmtree(env_dir)
    run(uv_command("venv", "--quiet", "--no-python-downloads", "--python", python, env_dir),
        env=clean_pip_env(), what=f"creating a virtual environment with {python}")
    return os.path.join(os.path.abspath(env_dir), "bin", "python")


def _packaging_under(python: str, expression: str, what: str):
    """Evaluate a packaging expression under another interpreter: packaging is pure Python, so the
    worker's copy runs there with nothing installed."""
    import packaging

    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); import packaging.markers, packaging.tags; "
            f"print(json.dumps({expression}))")
    out = run([python, "-I", "-c", code, os.path.dirname(os.path.dirname(packaging.__file__))],
              what=f"reading the {what} of {python}", capture=True)
    return json.loads(out)


def marker_environment(python: str) -> dict[str, str]:
    """PEP 508 marker values of another interpreter."""
    return _packaging_under(python, "packaging.markers.default_environment()", "marker environment")


def supported_tags(python: str) -> set[str]:
    """The wheel tags another interpreter installs."""
    return set(_packaging_under(python, "[str(t) for t in packaging.tags.sys_tags()]", "supported wheel tags"))
