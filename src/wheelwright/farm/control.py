"""Starting and stopping a farm's processes: the index host, the Buildbot master, the workers."""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.parse
from importlib.resources import files
from pathlib import Path

from wheelwright.common.connection import PASSWORD_FILE, add_to_tac
from wheelwright.common.files import write_atomic
from wheelwright.common.runtime import DISTRIBUTION, WORKER_PYTHONS
from wheelwright.farm import doctor, emulation, tls
from wheelwright.farm.pools import Pool
from wheelwright.farm.roots import TOOLS_PREFIX, unpack_root, worker_requirements
from wheelwright.farm.settings import (
    CLI_SECRET,
    CLI_USER,
    ENVIRONMENT_PREFIX,
    UPLOAD_SECRET,
    UPLOAD_USER,
    USER_ROLES,
    Farm,
)
from wheelwright.indexhost import accounts

# The master runs the Buildbot configuration; this module starts it and imports none of it.
MASTER_CFG = Path(str(files("wheelwright.config") / "master.cfg"))


class FarmError(Exception):
    pass


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


# What the farm's processes take from the shell that ran `wheelwright up`: where programs and
# interpreters are, the language, and the certificates the master trusts for upstream. Nothing
# else: a token set in that shell would otherwise reach every worker and every build's log.
PASSED_ON = (
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "TZ",
    "PYENV_ROOT",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "HTTPS_PROXY",
    "https_proxy",
    "NO_PROXY",
    "no_proxy",
)


def farm_environment() -> dict[str, str]:
    return {k: os.environ[k] for k in PASSED_ON if k in os.environ}


def master_environment() -> dict[str, str]:
    """The master's, and its alone: the farm's settings given in the environment (a database
    password among them) reach no worker."""
    return {
        **farm_environment(),
        **{k: v for k, v in os.environ.items() if k.startswith(ENVIRONMENT_PREFIX)},
    }


def _run(cmd: list, what: str, log: Path | None = None, env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, env=env or farm_environment()
    )
    if proc.returncode != 0:
        tail = (
            "".join(log.read_text().splitlines(keepends=True)[-20:]) if log and log.exists() else ""
        )
        raise FarmError(f"{what} failed:\n{proc.stdout}{proc.stderr}{tail}")


def _ensure_secret(farm: Farm, name: str) -> str:
    path = farm.secrets_dir / name
    if not path.exists():
        path.write_text(secrets.token_urlsafe(24))
        path.chmod(0o600)
    return path.read_text().strip()


def _wait_for_port(host: str, port: int, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.1)
    raise FarmError(f"{what} did not start listening on {host}:{port} within {timeout:.0f} s")


def _pid_alive(pidfile: Path) -> int | None:
    """The PID in pidfile if that process runs (a zombie has ended: no init may reap it)."""
    try:
        pid = int(pidfile.read_text())
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (FileNotFoundError, ValueError, IndexError):
        return None
    return None if state in ("Z", "X") else pid


def clone_settings(farm: Farm, repository: str) -> None:
    """The settings directory as a checkout of the settings repository (made once)."""
    if not (farm.settings_dir / ".git").exists():
        subprocess.run(
            [
                "git",
                "clone",
                "--quiet",
                "--branch",
                farm.settings_branch,
                repository,
                str(farm.settings_dir),
            ],
            check=True,
            capture_output=True,
        )


def up(farm: Farm) -> list[str]:
    """Start what is not running; what could not be started, said in a line each."""
    farm.save()
    for d in (farm.secrets_dir, farm.index_dir, farm.workers_dir, farm.logs_dir):
        d.mkdir(parents=True, exist_ok=True)
    if farm.settings_git:
        clone_settings(farm, farm.settings_git)
    farm.settings_dir.mkdir(parents=True, exist_ok=True)
    farm.secrets_dir.chmod(0o700)
    accounts.add(farm.index_dir / "users.json", UPLOAD_USER, _ensure_secret(farm, UPLOAD_SECRET))
    accounts.add(farm.www_users, CLI_USER, _ensure_secret(farm, CLI_SECRET), USER_ROLES["admin"])
    workers = {
        name: _ensure_secret(farm, f"worker-{name}")
        for pool in farm.pools_here()
        for name in pool.worker_names()
    }
    if farm.worker_tls and any(pool.kind == "container" for pool in farm.pools_here()):
        raise FarmError(
            "container pools reach the worker port without TLS (DockerLatentWorker's start command): "
            "run them on a farm whose worker port does not say worker_tls"
        )
    new_certificate = farm.worker_tls and tls.ensure_certificate(farm)
    if not farm.index_host:
        start_index(farm)
    # A listening port keeps the certificate it started with.
    if new_certificate and not _stop_pid(farm.master_dir / "twistd.pid"):
        raise FarmError("the master did not stop, even killed, to take its new certificate")
    start_master(farm)
    said: list[str] = []
    if "builds" not in farm.roles:  # the masters that run builds run the workers
        return said
    for pool in farm.pools_here():
        problems = doctor.pool_problems(farm, pool)
        if pool.kind == "local" and any(p.blocks for p in problems):  # every build would fail
            said += [f"{pool.name}: not started: {p.what} (fix: {p.fix})" for p in problems]
            _stop_workers(farm, pool)
            continue
        said += [
            f"{pool.name}: {p.what} (fix: {p.fix})" for p in problems if pool.kind != "emulated"
        ]
        if pool.kind == "local":
            for name in pool.worker_names():
                start_worker(farm, name, workers[name], list(pool.interpreters().values()))
        elif pool.kind == "emulated":
            why = emulation.why_not(pool.arch)
            if why:
                said.append(
                    f"{pool.name}: not started: {why}. The {pool.arch} builds wait for remote {pool.arch} workers."
                )
                continue
            root = start_emulated_workers(farm, pool, workers)
            said.append(
                f"{pool.name}: {', '.join(pool.worker_names())} run here under qemu, in {root}"
            )
    for pidfile in farm.workers_dir.glob(f"*/{emulation.PIDFILE}"):
        if pidfile.parent.name not in workers:  # emulation turned off: real machines took over
            _stop_pid(pidfile)
    return said


def start_index(farm: Farm) -> None:
    pidfile = farm.index_dir / "index.pid"
    if _pid_alive(pidfile):
        return
    with open(farm.logs_dir / "index.log", "ab") as log:  # the index host keeps its own copy
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "wheelwright.indexhost.server",
                "--root",
                farm.index_dir,
                "--users",
                farm.index_dir / "users.json",
                "--host",
                farm.listen,
                "--port",
                str(farm.index_port),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=farm_environment(),
        )
    pidfile.write_text(str(proc.pid))
    _wait_for_port(farm.host, farm.index_port, "the index host")


def start_master(farm: Farm) -> None:
    """Create the master the first time; upgrade and start a stopped one; reconfigure a running one."""
    buildbot, env, log = _bin("buildbot"), master_environment(), farm.master_dir / "twistd.log"
    tac = farm.master_dir / "buildbot.tac"
    moved = tac.exists() and _point_at_this_config(tac)
    if _pid_alive(farm.master_dir / "twistd.pid"):
        action = ("restart", "restarting") if moved else ("reconfig", "reconfiguring")
        _run([buildbot, action[0], farm.master_dir], f"{action[1]} the master", log=log, env=env)
        return
    if not tac.exists():
        _run(
            [
                buildbot,
                "create-master",
                "--relocatable",
                "--config",
                MASTER_CFG,
                "--db",
                farm.db_url,
                farm.master_dir,
            ],
            "creating the master",
            env=env,
        )
    else:
        _run([buildbot, "upgrade-master", farm.master_dir], "upgrading the master", env=env)
    _run([buildbot, "start", farm.master_dir], "starting the master", log=log, env=env)
    _wait_for_port(farm.host, farm.ui_port, "the master's web UI")


def _point_at_this_config(tac: Path) -> bool:
    """Point a master made by an earlier install (its buildbot.tac names that install's master.cfg)
    at this one's; whether it had to."""
    text = tac.read_text()
    named = re.sub(r"^configfile = .*$", f"configfile = {str(MASTER_CFG)!r}", text, flags=re.M)
    if named == text:
        return False
    write_atomic(tac, named.encode(), mode=stat.S_IMODE(tac.stat().st_mode))
    return True


# The caches the local workers share (a link in each worker's cache to the farm's one): what one
# of them made the other uses at once. uv's: a wheel unpacked (setuptools: a thousand files), uv
# locks it for use by several processes. bytecode: a build environment's packages compiled, made
# once under a name no other tool takes. No sandbox binds either.
SHARED_CACHES = ("uv", "bytecode")


def share_caches(farm: Farm, basedir: Path) -> None:
    for kind in SHARED_CACHES:
        shared = farm.workers_dir / f"{kind}-cache"
        shared.mkdir(mode=0o700, parents=True, exist_ok=True)
        link = basedir / "cache" / kind
        link.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if link.is_symlink():
            continue
        if link.exists():  # a worker made before the cache was shared
            shutil.rmtree(link)
        link.symlink_to(os.path.relpath(shared, link.parent))


def _stop_workers(farm: Farm, pool) -> None:
    """A pool's workers left running by an earlier `up`, stopped: that pool cannot build now."""
    for name in pool.worker_names():
        _stop_pid(farm.workers_dir / name / "twistd.pid")


def start_worker(farm: Farm, name: str, password: str, pythons: list[str]) -> None:
    basedir, changed = _create_worker(farm, name, password)
    name_pythons(basedir, pythons)
    if farm.worker_tls:  # the certificate may have been made again, for new addresses
        tls.install_trust(farm, basedir)
    if _pid_alive(basedir / "twistd.pid"):
        if changed:  # the way to the master changed (TLS turned on or off): reconnect that way
            _run([_bin("buildbot-worker"), "restart", basedir], f"restarting worker {name}")
        return
    # Only for a worker that is not running: a cache made before it was shared is deleted, and
    # a running build may be installing from it.
    share_caches(farm, basedir)
    _run([_bin("buildbot-worker"), "start", basedir], f"starting worker {name}")


def name_pythons(basedir: Path, pythons: list[str]) -> None:
    """The interpreters of the worker's builders, which its tool server makes ready as it starts."""
    named = basedir / "cache" / WORKER_PYTHONS
    named.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_atomic(named, json.dumps(pythons).encode())


def create_worker_args(
    farm: Farm, basedir: Path, name: str, password: str, master: str
) -> list[str]:
    """buildbot-worker create-worker's arguments for a worker of this farm reaching `master` (HOST:PORT)."""
    host, port = master.rsplit(":", 1)
    tls_args = (
        [f"--connection-string={tls.client_endpoint(host, int(port), tls.TRUST_DIR)}"]
        if farm.worker_tls
        else []
    )
    return [
        "create-worker",
        "--relocatable",
        "--umask=0o22",
        *tls_args,
        str(basedir),
        master,
        name,
        password,
    ]


def publish_worker_tools(farm: Farm) -> str:
    """The worker-side tools (this distribution) as a wheel in the farm's own index, where remote
    workers install them from; built from this installation's checkout when the index lacks this
    version. Returns the version. A new version is what makes workers take new tools: the index
    keeps the first file of a name."""
    from wheelwright.common.lookup import index_versions
    from wheelwright.indexhost.upload import upload

    version = importlib.metadata.version(DISTRIBUTION)
    if version in (index_versions(farm.index_url, DISTRIBUTION) or []):
        return version
    checkout = _checkout()
    with tempfile.TemporaryDirectory() as made:
        _run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", made, checkout],
            f"building the worker-side tools' wheel from {checkout}",
        )
        (wheel,) = Path(made).glob("*.whl")
        upload(
            farm.upload_url,
            UPLOAD_USER,
            farm.secret(UPLOAD_SECRET),
            wheel,
            provenance={"seeded": True, "seeded_from": checkout, "reason": "the worker-side tools"},
        )
    return version


def _checkout() -> str:
    """The folder this distribution was installed from (pip's direct_url.json, PEP 610)."""
    said = importlib.metadata.distribution(DISTRIBUTION).read_text("direct_url.json")
    url = json.loads(said or "{}").get("url", "")
    if not url.startswith("file://") or not Path(url[len("file://") :], "pyproject.toml").is_file():
        raise FarmError(
            f"{DISTRIBUTION} was not installed from a checkout here, and our index has no wheel of "
            f"this version: install it with pip install -e CHECKOUT, or seed its wheel"
        )
    return urllib.parse.unquote(url[len("file://") :])


def remote_worker_script(
    farm: Farm, pool: Pool, name: str, master: str, password: str, version: str
) -> str:
    """What the operator of another machine runs to make `name` one of the pool's workers: the
    worker-side tools at `version` come from the farm's own index."""
    basedir = f"/var/lib/wheelwright/{name}"
    # The password is read from a file beside the tac, never from a command line (ps shows it).
    args = " ".join(
        shlex.quote(a)
        for a in create_worker_args(farm, Path(basedir), name, "see-" + PASSWORD_FILE, master)
    )
    trust = (
        (
            f"mkdir -p {basedir}/{tls.TRUST_DIR}\ncat > {basedir}/{tls.TRUST_DIR}/master.pem <<'PEM'\n"
            f"{tls.certificate(farm)[2].read_text().strip()}\nPEM\n"
        )
        if farm.worker_tls
        else ""
    )
    pythons = " ".join(f"python{v}" for v in pool.pythons)
    secret = farm.secrets_dir / f"worker-{name}"
    return (
        f"# {name}: a worker of pool {pool.name} ({pool.arch}; builds with {pythons} from PATH)\n"
        f"# Its password is the master's {secret}: copy it to this machine, to PASSWORD-FILE below.\n"
        f"python3 -m venv {TOOLS_PREFIX}\n"
        f"{TOOLS_PREFIX}/bin/pip install {' '.join(worker_requirements())}\n"
        f"{TOOLS_PREFIX}/bin/pip install --no-deps --index-url {farm.index_url_for(pool)} "
        f"{DISTRIBUTION}=={version}  # the worker-side tools, from the farm's own index\n"
        f"{trust}{TOOLS_PREFIX}/bin/buildbot-worker {args}\n"
        f"install -m 600 PASSWORD-FILE {basedir}/{PASSWORD_FILE}\n"
        f"{TOOLS_PREFIX}/bin/python -m wheelwright.common.connection --password-from-file "
        f"{basedir}/buildbot.tac\n"
        f"{TOOLS_PREFIX}/bin/buildbot-worker start {basedir}\n"
    )


def _create_worker(farm: Farm, name: str, password: str) -> tuple[Path, bool]:
    """The worker's folder, made or made again when the way to the master changed; and whether it was."""
    basedir, tac = farm.workers_dir / name, farm.workers_dir / name / "buildbot.tac"
    connection = (
        tls.client_endpoint(farm.host, farm.worker_port, tls.TRUST_DIR) if farm.worker_tls else None
    )
    existed = tac.exists()
    if existed and f"connection_string = {connection!r}" in tac.read_text():
        add_to_tac(tac)  # a worker made before the tac had it
        return basedir, False
    create_worker_at(farm, basedir, name, password, f"{farm.host}:{farm.worker_port}")
    return basedir, existed


def create_worker_at(farm: Farm, basedir: Path, name: str, password: str, master: str) -> None:
    if farm.worker_tls:
        tls.install_trust(farm, basedir)
    args = create_worker_args(farm, basedir, name, password, master)
    _run([_bin("buildbot-worker"), *args[:1], "--force", *args[1:]], f"creating worker {name}")
    add_to_tac(basedir / "buildbot.tac")


def start_emulated_workers(
    farm: Farm, pool: Pool, passwords: dict[str, str], timeout: float = 300
) -> Path:
    """Start the pool's workers in its root (made the first time: minutes) and wait until the
    master has them: under emulation a worker takes seconds to start. Returns the root."""
    emulated = pool.emulation
    assert emulated is not None  # an emulated pool is made from its Emulation
    try:
        root = unpack_root(
            emulated.debian_arch, Path(farm.root_cache), farm.roots_dir / emulated.root_name
        )
    except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
        raise FarmError(
            f"making the {emulated.root_name} root for {pool.name} failed "
            f"(see {farm.root_cache}): {exc}"
        ) from None
    started = {}
    for name in pool.worker_names():
        basedir, _ = _create_worker(farm, name, passwords[name])
        if not _pid_alive(basedir / emulation.PIDFILE):
            log = basedir / "twistd.log"
            started[name] = (log, log.stat().st_size if log.exists() else 0)
            try:
                emulation.start(root, basedir, farm.logs_dir / f"{name}.log")
            except RuntimeError as exc:
                raise FarmError(str(exc)) from None
    deadline = time.monotonic() + timeout
    for name, (log, offset) in started.items():
        while not _log_has(log, offset, b"message from master: attached"):
            if time.monotonic() > deadline:
                raise FarmError(
                    f"emulated worker {name} did not attach within {timeout:.0f} s (see {log})"
                )
            time.sleep(0.5)
    return root


def _log_has(log: Path, offset: int, text: bytes) -> bool:
    try:
        with open(log, "rb") as f:
            f.seek(offset)
            return text in f.read()
    except FileNotFoundError:
        return False


def _ended(pidfile: Path, pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _pid_alive(pidfile) == pid:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def _stop_pid(pidfile: Path, timeout: float = 60) -> bool:
    """SIGTERM the process in pidfile, SIGKILL it if it outlives timeout; whether it ended."""
    pid = _pid_alive(pidfile)
    if not pid:
        return True
    os.kill(pid, signal.SIGTERM)
    if not _ended(pidfile, pid, timeout):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        if not _ended(pidfile, pid, 10):
            return False
    pidfile.unlink(missing_ok=True)
    return True


def health(farm: Farm) -> dict[str, str]:
    """Each process of the farm this machine runs, "up" or why not: the master, the index host
    (unless it runs elsewhere) and each worker of the pools that run here."""
    said = {}
    processes = [("master", farm.master_dir / "twistd.pid", farm.ui_port)]
    if not farm.index_host:
        processes.append(("index host", farm.index_dir / "index.pid", farm.index_port))
    for name, pidfile, port in processes:
        if _pid_alive(pidfile) is None:
            said[name] = f"down: no process (pidfile {pidfile})"
        else:
            try:
                socket.create_connection((farm.host, port), timeout=5).close()
                said[name] = "up"
            except OSError as exc:
                said[name] = (
                    f"down: it runs but {farm.host}:{port} does not answer ({exc.strerror})"
                )
    for pool in farm.pools_here():
        if pool.kind not in ("local", "emulated") or "builds" not in farm.roles:
            continue
        for worker in pool.worker_names():
            basedir = farm.workers_dir / worker
            alive = _pid_alive(
                basedir / ("twistd.pid" if pool.kind == "local" else emulation.PIDFILE)
            )
            said[f"worker {worker}"] = "up" if alive else f"down: no process in {basedir}"
    return said


def down(farm: Farm, patience: float = 60) -> None:
    """Stop the master first, while its workers are attached: it stops its builds and waits for
    them (a worker gone while a build starts leaves Buildbot waiting for that build for ever);
    then the workers and the index host. Whatever does not end within patience (s) is killed."""
    pidfiles = [farm.master_dir / "twistd.pid"]
    for basedir in sorted(farm.workers_dir.glob("*/")) if farm.workers_dir.exists() else []:
        # Emulated workers run in a PID namespace of their own: their pidfile holds the host's PID.
        pidfiles += [basedir / "twistd.pid", basedir / emulation.PIDFILE]
    pidfiles.append(farm.index_dir / "index.pid")
    left = [str(pidfile) for pidfile in pidfiles if not _stop_pid(pidfile, patience)]
    if left:
        raise FarmError(f"these processes did not end, even killed: {', '.join(left)}")
