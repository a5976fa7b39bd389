"""What every worker-side tool shares: its result line, its temporary files inside the build
directory, and pip and uv without the machine's configuration.

A tool prints its result as the last line of stdout, `wheelwright-result: {json}`, which the
master-side step reads. Workers run strangers' code, so the master re-checks what matters.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from wheelwright.common import sandbox
from wheelwright.common.files import write_atomic
from wheelwright.common.results import Failure, to_json
from wheelwright.common.tools import RESULT_PREFIX, WORKER_CACHE, ToolError, clean_pip_env


def emit(result: dict) -> None:
    sys.stdout.flush()
    print(RESULT_PREFIX + json.dumps(result, sort_keys=True), flush=True)


# Inside the build directory (the tool's working directory), the one place the sandbox lets the
# package's code write: temporary files and HOME live here for the tool and all it runs.
PRIVATE_TMP = ".tmp"


def private_tmp() -> str:
    tmp = os.path.abspath(PRIVATE_TMP)
    shutil.rmtree(tmp, ignore_errors=True)
    os.mkdir(tmp)
    os.environ.update(TMPDIR=tmp, HOME=tmp)
    tempfile.tempdir = None
    return tmp


# Where a tool's time went (seconds by part), reported in its result as `timings`.
TIMINGS: dict[str, float] = {}


@contextlib.contextmanager
def timed(part: str):
    started = time.perf_counter()
    try:
        yield
    finally:
        TIMINGS[part] = TIMINGS.get(part, 0) + time.perf_counter() - started


def run_tool(main, argv=None) -> int:
    """Run a tool's main(argv) -> its result (common/results.py), printing it with its timings,
    or its failure."""
    tmp = private_tmp()
    try:
        with timed("tool"):
            result = to_json(main(argv))
    except ToolError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        emit(to_json(Failure(str(exc), **exc.details)))
        return 1
    except Exception as exc:
        traceback.print_exc()
        emit(to_json(Failure(f"internal error in the worker-side tool: {exc!r}")))
        return 2
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    emit({**result, "timings": {k: round(v, 3) for k, v in TIMINGS.items()}})
    return 0


def activated(env: dict[str, str], env_dir) -> dict[str, str]:
    """env as in an activated virtual environment: backends run the tools their build
    requirements install (meson, cmake, ninja, cython) by name."""
    return {
        **env,
        "VIRTUAL_ENV": str(env_dir),
        "PATH": os.path.join(env_dir, "bin") + os.pathsep + env["PATH"],
    }


MAX_HOOK_REPORT = 1 << 20


def sandboxed_hooks(
    python: str, env_dir: Path, env: dict[str, str], write: list[Path], what: str, limits
):
    """pyproject-hooks' runner: a backend's hook runs in the sandbox (the hook's own interpreter
    alone: `build`, the frontend, stays in our tool), writing only `write` and reading the build
    environment."""

    def runner(cmd, cwd=None, extra_environ=None):
        # The report's folder (the command's last argument) is bound on its own, after the
        # temporary folder that holds it: a mount point, which the hook cannot replace by a link.
        sandbox.run(
            cmd,
            write=[*write, Path(cmd[-1])],
            read=[env_dir],
            cwd=Path(cwd or write[0]),
            env={**env, **(extra_environ or {})},
            what=what,
            limits=limits,
            pythons=[python],
        )
        # pyproject-hooks reads the hook's report (output.json in that folder) here, outside.
        report = Path(cmd[-1]) / "output.json"
        if not os.path.lexists(report):
            raise ToolError(f"{what}: the backend's hook wrote no report")
        check_plain_file(report, MAX_HOOK_REPORT, f"{what}: the backend's hook left a report that")

    return runner


def check_plain_file(path: Path, limit: int, what: str) -> None:
    """A file the package's code could have replaced is read outside the sandbox only when it is
    a plain file of at most limit bytes: not a link to a file of ours, a FIFO to hang on, or
    gigabytes."""
    info = os.lstat(path)
    if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
        raise ToolError(f"{what} is not a plain file of at most {limit >> 20} MiB")


def pip_command(target_python: str, *args: str) -> list[str]:
    """pip of the worker's own Python acting on another environment (`pip --python`)."""
    return [sys.executable, "-m", "pip", "--python", target_python, *args]


def worker_cache(kind: str) -> Path | None:
    """The worker's cache of one kind, when the step names one (common/tools.py WORKER_CACHE)."""
    top = os.environ.get(WORKER_CACHE)
    return Path(top).resolve() / kind if top else None


def uv_command(*args: str) -> list[str]:
    """uv, which installs into and creates environments in a fraction of pip's time."""
    uv = shutil.which("uv", path=os.path.dirname(sys.executable)) or shutil.which("uv")
    if not uv:
        raise ToolError("uv is not installed beside the worker's tools")
    cache = worker_cache("uv")
    return [
        uv,
        *args,
        "--no-config",
        # Linked, not copied (setuptools: 0.1 s, not 0.5): every sandbox binds the environments
        # read-only, so the package's code can neither write a linked file (EROFS) nor link it
        # into a folder it writes (EXDEV, another mount), and the cache stays as uv wrote it.
        *(["--cache-dir", str(cache), "--link-mode", "hardlink"] if cache else ["--no-cache"]),
    ]


def uv_pip(target_python: str, *args: str) -> list[str]:
    return uv_command("pip", *args, "--python", target_python)


def install_binaries(env_python: str, index_url: str, *what: str, description: str) -> None:
    """uv installs `what` into the environment: wheels only, from our index alone."""
    run(
        uv_pip(env_python, "install", "--index-url", index_url, "--only-binary", ":all:", *what),
        env=clean_pip_env(),
        what=description,
    )


def run(cmd: list[str], *, cwd=None, env=None, what: str, capture: bool = False) -> str:
    """Run cmd, its output going to the step's log (or returned, with capture); a failure is a
    ToolError naming `what`."""
    print("+ " + " ".join(cmd), flush=True)
    proc = subprocess.run(
        cmd, cwd=cwd, env=env, text=True, stdout=subprocess.PIPE if capture else None
    )
    if proc.returncode != 0:
        raise ToolError(f"{what} failed (exit {proc.returncode})")
    return proc.stdout or ""


def create_venv(python: str, env_dir: str) -> str:
    """A venv with nothing seeded in it (ensurepip would bring setuptools that never came from
    our index); returns its interpreter."""
    if os.path.exists(env_dir):
        shutil.rmtree(env_dir)
    with timed("venv"):
        run(
            uv_command("venv", "--quiet", "--no-python-downloads", "--python", python, env_dir),
            env=clean_pip_env(),
            what=f"creating a virtual environment with {python}",
        )
    return os.path.join(os.path.abspath(env_dir), "bin", "python")


# What an interpreter is, read by the worker's packaging running there (pure Python, so it runs
# with nothing installed).
FACTS_SCRIPT = (
    "import json, sys; sys.path.insert(0, sys.argv[1]); import packaging.markers, packaging.tags; "
    "print(json.dumps({'markers': packaging.markers.default_environment(), "
    "'tags': [str(t) for t in packaging.tags.sys_tags()]}))"
)


def interpreter_facts(python: str) -> dict:
    """Another interpreter's PEP 508 marker values and the wheel tags it installs: read once (a
    Python start), then kept in the worker's cache under a key that changes with its executable,
    the C library (manylinux tags) and our packaging."""
    import packaging

    cache, key = worker_cache("interpreters"), None
    if cache:
        real = os.path.realpath(python)
        info = os.stat(real)
        identity = (
            real,
            info.st_ino,
            info.st_size,
            info.st_mtime_ns,
            os.confstr("CS_GNU_LIBC_VERSION"),
            packaging.__version__,
        )
        key = cache / f"{hashlib.sha256(repr(identity).encode()).hexdigest()}.json"
        with contextlib.suppress(OSError, ValueError):
            return json.loads(key.read_text())
    out = run(
        [
            python,
            "-I",
            "-S",
            "-c",
            FACTS_SCRIPT,
            os.path.dirname(os.path.dirname(packaging.__file__)),
        ],
        what=f"reading the marker environment and wheel tags of {python}",
        capture=True,
    )
    facts = json.loads(out)
    if key:
        key.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(key, out.encode())
    return facts


def marker_environment(python: str) -> dict[str, str]:
    """PEP 508 marker values of another interpreter."""
    return interpreter_facts(python)["markers"]


def supported_tags(python: str) -> set[str]:
    """The wheel tags another interpreter installs."""
    return set(interpreter_facts(python)["tags"])
