"""Runs a worker-side tool through the worker's tool server (toolserver.py), starting the server
when none answers; where none can be had (no worker cache named, or it did not come up) the tool
runs here, as `python -m` would run it. Imports little: it starts once a stage.

Usage: python -I -m wheelwright.worker.call wheelwright.worker.<tool> ARGS...
       python -I -m wheelwright.worker.call --start-server

It needs nothing but the standard library, so a worker that has this file may run it by its path
without `site` (`python -I -S .../call.py`): an interpreter's start is most of a stage's start-up,
and `site` (an editable install's finder above all) is most of that.
"""

from __future__ import annotations

import _socket  # socket.py's own: socket.py imports enum and selectors, a third of this start
import importlib
import marshal
import os
import sys
import time
import zlib

# The variable by which a step names the worker's cache: common/runtime.py's WORKER_CACHE, spelled
# again here because this file runs with the standard library alone (tests/test_toolserver.py).
WORKER_CACHE = "WHEELWRIGHT_WORKER_CACHE"
MODULE = "wheelwright.worker.call"  # this file, as `python -m` names it
TOOL_MODULES = tuple(
    f"wheelwright.worker.{tool}"
    for tool in (
        "prepare_source",
        "prepare_build_env",
        "build_wheel",
        "repair_wheel",
        "validate_install_deps",
    )
)
START_SECONDS = 120  # a server's imports under emulation or a loaded machine
START_SERVER = "--start-server"  # start the server (when none runs) and call nothing
RUN_HERE = "--here"  # run the tool in this process, not through the server
SERVER_ENDED = "error: the worker's tool server ended before the tool did"


def server_name() -> str:
    """This interpreter's and these tools' server: changed files mean another server, as does a
    changed install (installing, upgrading or removing a package changes its folder's time)."""
    ours = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    seen = [sys.executable, sys.version]
    # The environment's own, found as `site` finds it (the venv's pyvenv.cfg beside or above its
    # interpreter): without `site`, neither sys.path nor sys.prefix names it.
    bin_dir = os.path.dirname(sys.executable)
    prefix = next(
        (d for d in (bin_dir, os.path.dirname(bin_dir)) if os.path.isfile(f"{d}/pyvenv.cfg")),
        sys.prefix,
    )
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    site_packages = os.path.join(prefix, "lib", version, "site-packages")
    if os.path.isdir(site_packages):
        seen.append(f"{site_packages}:{os.stat(site_packages).st_mtime_ns}")
    for folder in ("worker", "common"):
        for entry in sorted(os.scandir(os.path.join(ours, folder)), key=lambda e: e.name):
            if entry.name.endswith(".py"):
                info = entry.stat()
                seen.append(f"{folder}/{entry.name}:{info.st_mtime_ns}:{info.st_size}")
    # zlib's checksums, not hashlib's: a name, not a secret, and hashlib's import (OpenSSL) is a
    # tenth of this client's start.
    data = "\n".join(seen).encode()
    return f"{zlib.crc32(data):08x}{zlib.adler32(data):08x}.sock"


def connect(folder: str, name: str) -> _socket.socket | None:
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
    path = os.path.join(folder, name)
    try:
        if len(path.encode()) < 100:
            sock.connect(path)
        else:  # a socket's path holds 108 bytes: the folder's by a descriptor of it (no chdir,
            # which is the whole process's: the worker, which calls this too, runs threads)
            fd = os.open(folder, os.O_PATH | os.O_DIRECTORY)
            try:
                sock.connect(f"/proc/self/fd/{fd}/{name}")
            finally:
                os.close(fd)
        return sock
    except OSError:
        sock.close()
        return None


def start_server(folder: str, name: str, worker_pid: int) -> int:
    null = os.devnull
    log = os.path.join(folder, name[: -len(".sock")] + ".log")
    return os.posix_spawn(
        sys.executable,
        [
            sys.executable,
            "-I",
            "-m",
            "wheelwright.worker.toolserver",
            folder,
            name,
            str(worker_pid),
        ],
        dict(os.environ),
        file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, null, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, null, os.O_WRONLY, 0),
            (os.POSIX_SPAWN_OPEN, 2, log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600),
        ],
        setsid=True,  # not in the step's process group, which an interrupted step loses
    )


def server(cache: str | None, worker_pid: int) -> _socket.socket | None:
    """A connection to the server of the worker whose cache is named (started if none answers):
    worker_pid's, which it leaves with."""
    if not cache:
        return None
    folder = os.path.join(os.path.abspath(cache), "tools")
    os.makedirs(folder, mode=0o700, exist_ok=True)
    name = server_name()
    sock = connect(folder, name)
    if sock:
        return sock
    try:
        started = start_server(folder, name, worker_pid)
    except OSError as exc:
        print(
            f"the worker's tool server did not start ({exc}): the tool runs alone", file=sys.stderr
        )
        return None
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        sock = connect(folder, name)
        if sock or os.waitpid(started, os.WNOHANG) != (0, 0):
            return sock  # None: it ended without a socket, and its log says why
        time.sleep(0.01)
    return None


def start_with_worker(basedir: str) -> None:
    """From buildbot.tac: the worker's tool server starts as the worker does, not in its first
    build's first stage (the server's imports: 0.15 s there, seconds under emulation). The
    worker's child asks for it, so the server leaves with the worker."""
    from twisted.internet import protocol, reactor

    cache = os.path.join(os.path.abspath(basedir), "cache")  # the steps' WORKER_CACHE_DIR
    argv = [sys.executable, "-I", "-m", MODULE, START_SERVER]
    reactor.callWhenRunning(
        reactor.spawnProcess,
        protocol.ProcessProtocol(),
        sys.executable,
        argv,
        env={**os.environ, WORKER_CACHE: cache},
        path=basedir,
    )


def alone(argv: list[str]) -> list[str]:
    """The command that runs the tool argv names in a process of its own, with `site`."""
    return [sys.executable, "-I", "-m", MODULE, RUN_HERE, *argv]


def run_here(argv: list[str]) -> int:
    """The tool argv names, in this process, as `python -m` runs it."""
    try:  # imported here, not above: a call through the server stays light
        from wheelwright.worker.environments import run_tool
    except ImportError:  # run by path without `site`: the tool needs the installed packages
        os.execv(sys.executable, alone(argv))

    sys.argv = list(argv)
    return run_tool(importlib.import_module(argv[0]).main)


def main(argv: list[str]) -> int:
    cache, worker_pid = os.environ.get(WORKER_CACHE), os.getppid()
    if argv == [START_SERVER]:
        sock = server(cache, worker_pid)
        if sock:
            sock.close()
        return 0 if sock else 1
    if argv[:1] == [RUN_HERE] and argv[1:2] and argv[1] in TOOL_MODULES:
        return run_here(argv[1:])
    if not argv or argv[0] not in TOOL_MODULES:
        print(f"usage: call {{{','.join(TOOL_MODULES)}}} ARGS...", file=sys.stderr)
        return 2
    sock = server(cache, worker_pid)
    if sock is None:
        return run_here(argv)
    try:
        if not send_call(sock, argv, os.getcwd(), dict(os.environ), (0, 1, 2)):
            return run_here(argv)  # the server left as we came: nothing of the tool has run
        code = exit_code(sock)
    finally:
        sock.close()
    if code is None:
        print(SERVER_ENDED, file=sys.stderr)
        return 2
    return code


def send_call(
    sock: _socket.socket, argv: list[str], cwd: str, env: dict[str, str], fds: tuple[int, ...]
) -> bool:
    """Hand the server a call: the tool's argv, working directory, environment, and its stdin,
    stdout and stderr. False: the server is gone, and nothing of the tool has run."""
    # marshal, not json (whose import is a fifth of this client's start): the server is this
    # file's own code, and only the worker's user reaches its socket.
    request = {"argv": argv, "cwd": cwd, "env": env}
    descriptors = b"".join(fd.to_bytes(4, sys.byteorder) for fd in fds)  # C ints
    try:
        sock.sendmsg(
            [marshal.dumps(request)], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, descriptors)]
        )
    except OSError:
        return False
    return True


def exit_code(sock: _socket.socket) -> int | None:
    """The tool's exit code, once it has ended; None: the server ended before it did."""
    try:
        answer = sock.recv(64)
    except OSError:
        return None
    return int(answer) if answer else None


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
