"""What every worker-side tool shares: its result line, its temporary files inside the build
directory, and pip and uv without the machine's configuration.

A tool prints its result as the last line of stdout, `wheelwright-result: {json}`, which the
master-side step reads. Workers run strangers' code, so the master re-checks what matters.
"""

from __future__ import annotations

import contextlib
import csv
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
from wheelwright.common.runtime import (
    RESULT_PREFIX,
    TIMINGS,
    WORKER_CACHE,
    WORKER_PYTHONS,
    ToolError,
    clean_pip_env,
    timed,
)


def emit(result: dict) -> None:
    sys.stdout.flush()
    # on a line of its own, whatever the last command left unterminated
    print("\n" + RESULT_PREFIX + json.dumps(result, sort_keys=True), flush=True)


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


def with_package_env(env: dict[str, str], settings_env: list[str]) -> dict[str, str]:
    """env with a package's settings' `env` (KEY=VALUE, in order), each value's $VAR and ${VAR}
    expanded as fromager does: from the build's environment and the keys before it."""
    import string

    out = dict(env)
    for item in settings_env:
        key, _, value = item.partition("=")
        try:
            out[key] = string.Template(value).substitute(out)
        except KeyError as exc:
            raise ToolError(
                f"the package's env {key}: {value!r} names ${exc.args[0]}, which is not set"
            ) from None
        except ValueError:
            raise ToolError(
                f"the package's env {key}: {value!r} is not $VAR or ${{VAR}} text"
            ) from None
    return out


def config_settings(items: list[str]) -> dict[str, str | list[str]]:
    """PEP 517 config settings from KEY=VALUE items; a key given twice holds a list, as pip does."""
    found: dict[str, str | list[str]] = {}
    for item in items:
        key, _, value = item.partition("=")
        if key in found:
            before = found[key]
            found[key] = [*(before if isinstance(before, list) else [before]), value]
        else:
            found[key] = value
    return found


MAX_HOOK_REPORT = 1 << 20

# The build's bytecode (`bytecode` beside its environment): what its hooks compile, its backend
# and its sources, kept from get_requires_for_build_wheel to the build, which then does not
# compile them again. Python finds it through a prefix (PYTHONPYCACHEPREFIX), so none lands in
# the source tree; the prefix hides the interpreter's own __pycache__ folders, so the standard
# library's bytecode is bound there too, read-only.
BYTECODE_DIR = "bytecode"
BYTECODE_PREFIX = "/bytecode"


def sandboxed_hooks(
    python: str,
    env_dir: Path,
    env: dict[str, str],
    write: list[Path],
    what: str,
    limits,
    bytecode: Path | None = None,
):
    """pyproject-hooks' runner: a backend's hook runs in the sandbox (the hook's own interpreter
    alone: `build`, the frontend, stays in our tool), writing only `write` and reading the build
    environment; with bytecode, the build's bytecode folder (BYTECODE_DIR)."""
    binds = bytecode_binds(python, bytecode) if bytecode else []
    if binds:
        env = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = BYTECODE_PREFIX

    def runner(cmd, cwd=None, extra_environ=None):
        # what the environment holds when the hook runs (prepare_build_env installs in two goes)
        installed = environment_bytecode(python, env_dir) if binds else []
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
            binds=[*binds, *installed],
        )
        # pyproject-hooks reads the hook's report (output.json in that folder) here, outside.
        report = Path(cmd[-1]) / "output.json"
        if not os.path.lexists(report):
            raise ToolError(f"{what}: the backend's hook wrote no report")
        check_plain_file(report, MAX_HOOK_REPORT, f"{what}: the backend's hook left a report that")

    return runner


def bytecode_binds(python: str, bytecode: Path) -> list[sandbox.Bind]:
    """The build's bytecode folder, written, and the standard library's bytecode, read, where
    the prefix puts them; none without the standard library's (every hook would compile it)."""
    if not stat.S_ISDIR(os.lstat(bytecode).st_mode):  # made by prepare_build_env, never a link
        raise ToolError(f"{bytecode} is not the build's bytecode folder")
    stdlib = standard_library_bytecode(python)
    if not stdlib:
        return []
    folder, path = stdlib
    return [
        sandbox.Bind(bytecode, BYTECODE_PREFIX + os.path.realpath(bytecode.parent), writable=True),
        sandbox.Bind(folder, BYTECODE_PREFIX + path),
    ]


def standard_library_bytecode(python: str) -> tuple[Path, str] | None:
    """The interpreter's bytecode of its standard library laid out as under a bytecode prefix,
    linked once into the worker's cache, and the library's path; None without a cache."""
    cache = worker_cache("bytecode")
    facts = interpreter_facts(python)
    if not cache or not facts.get("cache_tag"):
        return None
    stdlib = facts["stdlib"]
    folder = cache / hashlib.sha256(repr((*_identity(python), stdlib)).encode()).hexdigest()
    suffix = f".{facts['cache_tag']}.pyc"

    def link(making: Path) -> None:
        making.mkdir()
        for root, dirs, files in os.walk(stdlib):
            dirs[:] = [d for d in dirs if d not in ("site-packages", "dist-packages")]
            if os.path.basename(root) == "__pycache__":
                target = making / os.path.relpath(os.path.dirname(root), stdlib)
                target.mkdir(parents=True, exist_ok=True)
                for name in files:
                    if name.endswith(suffix):
                        _link_or_copy(os.path.join(root, name), target / name)

    _made_once(folder, link)
    return folder, stdlib


# The prefix of the environment bytecode's compiling, which runs in a session of its own. Where the
# kernel groups each session's processes (autogroup, as on this machine), a nice value or the idle
# policy only ranks a process within its session: it took as much CPU as the build beside it. So
# the session's own priority is lowered first (an unprivileged process may once in 0.1 s).
LOWEST_PRIORITY = [
    "sh",
    "-c",
    "for try in 1 2 3; do [ -w /proc/self/autogroup ] || break; "
    "echo 19 2>/dev/null >/proc/self/autogroup && break; sleep 0.1; done; "
    'exec nice -n 19 "$@"',
    "lowest-priority",
]

# Compiles an environment's packages into a bytecode prefix, then names the result as done. Run by
# the builder's own interpreter, not the environment's, with -I -S (no site): not one .pth file
# runs; it compiles, it runs nothing it compiles. It runs outside the sandbox, so what a published
# wheel's source may cost the compiler (memory, time) is bounded here, the time below the age at
# which another tool takes the work over. Hash-checked bytecode: Python uses a file only for the
# source it was compiled from, whatever the source's time.
STALE_SECONDS = 600
# What it keeps is the folder of site-packages' bytecode alone, laid out as site-packages is: an
# environment anywhere else with the same packages reads it there (the interpreter takes a pyc's
# file name from where it found the source). It is kept under the key the sources' RECORD rows
# make (_sources) only when every source is what its row says: uv installs a wheel whose RECORD
# lies (one built on this worker, validated before our index checks it), and such a wheel would
# otherwise take the key of the packages it claims to be. Nor when the environment went
# meanwhile (its build folder cleared): a store is made once.
ENVIRONMENT_BYTECODE_SCRIPT = f"""\
import base64, compileall, csv, glob, hashlib, os, py_compile, resource, shutil, sys
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
resource.setrlimit(resource.RLIMIT_CPU, ({STALE_SECONDS // 2}, {STALE_SECONDS // 2}))
site, making, store = sys.argv[1:4]

def true(path, digest):
    try:
        with open(os.path.join(site, path), "rb") as source:
            found = hashlib.sha256(source.read()).digest()
    except OSError:
        return False
    return digest == "sha256=" + base64.urlsafe_b64encode(found).decode().rstrip("=")

rows = [row for record in glob.glob(os.path.join(glob.escape(site), "*.dist-info", "RECORD"))
        for row in csv.reader(open(record, encoding="utf-8", errors="replace"))]
if all(true(*(row + [""])[:2]) for row in rows if row and row[0].endswith(".py")):
    compileall.compile_dir(site, quiet=2,
                           invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)
    compiled = making + site
    os.makedirs(compiled, exist_ok=True)
    os.path.isdir(site) and os.rename(compiled, store)
shutil.rmtree(making)
"""


def environment_bytecode(python: str, env_dir: Path) -> list[sandbox.Bind]:
    """The bytecode of what the build environment holds (the wheels uv installed from our index,
    before any of the package's code ran: every sandbox binds the environment read-only), made by
    the worker once for all builds with the same packages, wherever their environment lies (the
    local workers share it, and a build requirement's validation environment makes it for them),
    and bound read-only under the prefix: a setuptools build compiled setuptools again each time
    (0.5 s). Made in the background the first time, at the lowest priority: this build goes on
    without it. Its files are checked-hash pycs: one whose source differs is not used."""
    cache = worker_cache("bytecode")
    sites = sorted(env_dir.glob("lib/python*/site-packages"))
    if not cache or len(sites) != 1:
        return []
    site = os.path.realpath(sites[0])
    records = sorted(Path(site).glob("*.dist-info/RECORD"))
    if not records:
        return []
    key = hashlib.sha256(repr([*_identity(python), *_sources(records)]).encode()).hexdigest()
    store = cache / f"env-{key}"
    if store.is_dir():
        return [sandbox.Bind(store, BYTECODE_PREFIX + site)]
    making = cache / f".making-env-{key}"
    with contextlib.suppress(OSError):
        if time.time() - making.stat().st_mtime > STALE_SECONDS:  # its maker was killed
            shutil.rmtree(making)
    try:
        making.mkdir(parents=True)  # by one tool at a time
    except FileExistsError:
        return []
    subprocess.Popen(
        [
            *LOWEST_PRIORITY,
            python,
            "-I",
            "-S",
            "-X",
            f"pycache_prefix={making}",
            "-c",
            ENVIRONMENT_BYTECODE_SCRIPT,
            site,
            str(making),
            str(store),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # outlives the tool, not the build: it runs nothing of the build's
    )
    return []


def _sources(records: list[Path]) -> list[list[str]]:
    """The Python sources the installed packages' RECORDs name, with their hashes: all that their
    bytecode depends on (not the installer's own files, which name where a wheel came from)."""
    rows = [row for record in records for row in csv.reader(record.read_text().splitlines())]
    return sorted(row[:2] for row in rows if row and row[0].endswith(".py"))


def _made_once(folder: Path, make) -> None:
    """folder, made by make(path) under a temporary name in the worker's cache and renamed whole
    (another tool, or the other worker sharing the cache, may make it meanwhile)."""
    if folder.is_dir():
        return
    folder.parent.mkdir(parents=True, exist_ok=True)
    making = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".making-"))
    try:
        make(making / "made")
        with contextlib.suppress(OSError):  # refused: made meanwhile
            (making / "made").rename(folder)
    finally:
        shutil.rmtree(making)


def _link_or_copy(source: str, target: Path) -> None:
    # Linked: the interpreter's own files, which is why every sandbox binds them read-only.
    try:
        os.link(source, target)
    except OSError:  # another file system
        shutil.copy2(source, target)


def fresh_dir(path: Path) -> Path:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


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
    """The worker's cache of one kind, when the step names one (common/runtime.py WORKER_CACHE)."""
    top = os.environ.get(WORKER_CACHE)
    return Path(top).resolve() / kind if top else None


def uv_path() -> str:
    uv = shutil.which("uv", path=os.path.dirname(sys.executable)) or shutil.which("uv")
    if not uv:
        raise ToolError("uv is not installed beside the worker's tools")
    return uv


def uv_command(*args: str) -> list[str]:
    """uv, which installs into and creates environments in a fraction of pip's time."""
    cache = worker_cache("uv")
    return [
        uv_path(),
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
    our index), copied from the empty one the worker keeps for this interpreter (a copy takes a
    millisecond, uv's making one 0.04 s, twice a build); returns its interpreter."""
    if os.path.exists(env_dir):
        shutil.rmtree(env_dir)
    with timed("venv"):
        template = empty_venv(python)
        if template:
            shutil.copytree(template, env_dir, symlinks=True)
        else:
            _make_venv(python, env_dir)
    return os.path.join(os.path.abspath(env_dir), "bin", "python")


def empty_venv(python: str) -> Path | None:
    """The worker's empty venv for an interpreter and its uv, made once; None without a cache."""
    cache = worker_cache("venvs")
    if not cache:
        return None
    try:
        key = repr((python, *_identity(python), *_identity(uv_path())))
    except OSError:  # no such interpreter here: uv, making the venv itself, says so
        return None
    template = cache / hashlib.sha256(key.encode()).hexdigest()

    def make(making: Path) -> None:
        _make_venv(python, str(making))
        # The activation scripts name the folder they were made in; nothing activates a build's
        # environment (activated() sets what they would).
        for script in (making / "bin").iterdir():
            if not script.is_symlink():
                script.unlink()

    _made_once(template, make)
    return template


def prepare_interpreters(cache: Path) -> None:
    """What every build of each of the worker's interpreters (named in the cache's
    WORKER_PYTHONS) uses, made as the worker starts, not in each builder's first build (0.3 to
    0.5 s of it): the interpreter's facts, its standard library's bytecode, an empty venv."""
    os.environ[WORKER_CACHE] = str(cache)
    try:
        pythons = json.loads((cache / WORKER_PYTHONS).read_bytes())
    except (OSError, ValueError):
        return
    for python in pythons if isinstance(pythons, list) else []:
        try:
            interpreter_facts(python)
            standard_library_bytecode(python)
            empty_venv(python)
        except (ToolError, OSError, ValueError) as exc:  # its builds will say why, if it matters
            print(f"{python}: not made ready: {exc}", file=sys.stderr, flush=True)


def _make_venv(python: str, env_dir: str) -> None:
    run(
        uv_command("venv", "--quiet", "--no-python-downloads", "--python", python, env_dir),
        env=clean_pip_env(),
        what=f"creating a virtual environment with {python}",
    )


# What an interpreter is, read by the worker's packaging running there (pure Python, so it runs
# with nothing installed): its markers and wheel tags, and where its standard library's bytecode is.
FACTS_SCRIPT = (
    "import json, sys, sysconfig; sys.path.insert(0, sys.argv[1]); "
    "import packaging.markers, packaging.tags; "
    "print(json.dumps({'markers': packaging.markers.default_environment(), "
    "'tags': [str(t) for t in packaging.tags.sys_tags()], "
    "'stdlib': sysconfig.get_path('stdlib'), 'cache_tag': sys.implementation.cache_tag}))"
)


def interpreter_facts(python: str) -> dict:
    """Another interpreter's facts (FACTS_SCRIPT): read once (a Python start), then kept in the
    worker's cache under a key that changes with its executable, the C library (manylinux tags),
    our packaging and the script."""
    import packaging

    cache, key = worker_cache("interpreters"), None
    if cache:
        identity = (
            *_identity(python),
            os.confstr("CS_GNU_LIBC_VERSION"),
            packaging.__version__,
            FACTS_SCRIPT,
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


def _identity(python: str) -> tuple:
    real = os.path.realpath(shutil.which(python) or python)
    info = os.stat(real)
    return real, info.st_ino, info.st_size, info.st_mtime_ns


def marker_environment(python: str) -> dict[str, str]:
    """PEP 508 marker values of another interpreter."""
    return interpreter_facts(python)["markers"]


def supported_tags(python: str) -> set[str]:
    """The wheel tags another interpreter installs."""
    return set(interpreter_facts(python)["tags"])
