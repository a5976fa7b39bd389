"""The worker's tool server: one process that has imported every tool and forks one per call.

A stage's call comes from the worker's own command (toolcommand.py) or, on a worker without it,
from `python -I -m wheelwright.worker.call wheelwright.worker.<tool> ARGS` (call.py): either
hands the server the tool's argv, working directory, environment and its stdin, stdout and stderr
(SCM_RIGHTS), and waits for the tool's exit code. The tool then costs a fork, not an
interpreter's start and its imports (about 0.15 s a stage).

The server listens on a socket in the worker's cache (`<cache>/tools/<key>.sock`, a folder of
the worker's user alone, which no sandbox binds: the package's code never reaches it), its key
naming this interpreter and these tools' files, so changed tools get a server of their own. It
exits when the worker that started it has gone, or after an idle while.

Each call runs in a fork of the server (the monitor) that forks the tool: the monitor keeps none
of the caller's descriptors, reports the tool's exit code, and kills the tool when the caller
dies (Buildbot interrupting the step kills the caller).
"""

from __future__ import annotations

import contextlib
import importlib
import marshal
import os
import select
import signal
import socket
import sys
import threading
import time
import traceback
from pathlib import Path

from wheelwright.worker.call import TOOL_MODULES, connect, run_here
from wheelwright.worker.environments import prepare_interpreters

IDLE_SECONDS = 600
CHECK_SECONDS = 2
MAX_REQUEST = 1 << 20


def serve(folder: str, name: str, worker_pid: int) -> None:
    # Out of the build's folder (the caller's, which the package's code wrote) before anything;
    # socket paths are then short relative names (an absolute one may pass 108 bytes).
    os.chdir(folder)
    for module in TOOL_MODULES:  # what makes a call cheap: every tool's imports, done once
        importlib.import_module(module)
    answering = connect(folder, name)
    if answering:
        answering.close()
        return  # a server already answers
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    bound = f".{name}.{os.getpid()}"
    listener.bind(bound)
    listener.listen(16)
    os.rename(bound, name)  # whole: a socket at `name` is one that listens (or a dead server's)
    ours = os.stat(name).st_ino
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the monitors are reaped by the kernel
    if os.fork() == 0:  # beside the first calls, which make what they need if it is not yet made
        listener.close()
        _prepare_interpreters(os.path.dirname(os.path.abspath(folder)))
    last_call = time.monotonic()
    while _worker_alive(worker_pid) and time.monotonic() - last_call < IDLE_SECONDS:
        if select.select([listener], [], [], CHECK_SECONDS)[0]:
            _answer(listener)
            last_call = time.monotonic()
    with contextlib.suppress(OSError):
        if os.stat(name).st_ino == ours:
            os.unlink(name)
    while select.select([listener], [], [], 0)[0]:  # callers that came before the name went
        _answer(listener)


def _answer(listener: socket.socket) -> None:
    conn, _ = listener.accept()
    sys.stdout.flush()
    sys.stderr.flush()
    if os.fork() == 0:
        listener.close()
        _monitor(conn)
    conn.close()


def _prepare_interpreters(cache: str) -> None:
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # it waits for what it runs
        os.nice(19)
        prepare_interpreters(Path(cache))
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(0)


def _worker_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _monitor(conn: socket.socket) -> None:
    """One call: fork the tool with the caller's descriptors, send back its exit code."""
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the tool waits for its own children
        message, fds, _, _ = socket.recv_fds(conn, MAX_REQUEST, 3)
        if not message and not fds:  # the caller only wanted the server up (call.START_SERVER)
            return
        request = marshal.loads(message)  # call.py's, from a process of the worker's user
        if len(fds) != 3 or request["argv"][0] not in TOOL_MODULES:
            raise ValueError(
                f"not a call of one of our tools: {request['argv'][:1]}, {len(fds)} fds"
            )
        tool = os.fork()
        if tool == 0:
            conn.close()
            _run_tool(fds, request["argv"], request["cwd"], request["env"])
        for fd in fds:
            os.close(fd)
        threading.Thread(target=_kill_when_caller_leaves, args=(conn, tool), daemon=True).start()
        _, status = os.waitpid(tool, 0)
        conn.send(str(os.waitstatus_to_exitcode(status)).encode())
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(0)


def _kill_when_caller_leaves(conn: socket.socket, tool: int) -> None:
    with contextlib.suppress(OSError):
        conn.recv(1)  # the caller sends nothing more: this returns when it has gone
        os.kill(tool, signal.SIGKILL)


def _run_tool(fds: list[int], argv: list[str], cwd: str, env: dict[str, str]) -> None:
    code = 2
    try:
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        for fd in fds:
            if fd > 2:
                os.close(fd)
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
        try:
            code = run_here(argv)
        except SystemExit as exc:  # argparse's, on a bad command line
            if exc.code is None or isinstance(exc.code, int):
                code = exc.code or 0
            else:
                print(exc.code, file=sys.stderr)
                code = 1
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2], int(sys.argv[3]))
