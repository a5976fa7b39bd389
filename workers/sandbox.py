"""The jail for the package's own code: its build backend, its setup.py, the smoke test's imports.

    python -m wheelwright.workers.sandbox --write DIR [--hide PATH]... -- CMD...

is what `prefix()` puts after `unshare`: in new user, network, mount and PID namespaces it makes
every mount read-only except DIR (the build directory), puts empty mounts over the farm's secrets
(WHEELWRIGHT_HIDE), a private /dev/shm and, where the kernel allows, a private /proc, then runs
CMD one user namespace further in. There the kernel locks the mounts it inherited, so CMD, root
in its namespace, cannot remount or unmount them. CMD is PID 1 of its PID namespace: when it
ends, the kernel kills whatever it left running.
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import subprocess
import sys

from wheelwright.workers.tool import ToolError

# Paths (separated by os.pathsep) that the package's code must not see: the farm's secrets and
# state where a worker shares the farm's machine. `wheelwright up` sets it.
HIDE_ENV = "WHEELWRIGHT_HIDE"
UNSHARE = ("unshare", "--user", "--map-root-user", "--net", "--mount", "--pid", "--fork", "--kill-child", "--")


def hidden_paths() -> list[str]:
    return [p for p in os.environ.get(HIDE_ENV, "").split(os.pathsep) if p and os.path.exists(p)]


@functools.cache
def _check_unshare() -> None:
    if subprocess.run([*UNSHARE, "true"], capture_output=True).returncode != 0:
        raise ToolError("cannot make the build's sandbox: unshare refuses new user, network, mount and PID namespaces here")


def prefix(write_dir: str | None = None) -> list[str]:
    """The command prefix for running the package's code; it may write in write_dir alone
    (default: the current directory, the build's workdir)."""
    _check_unshare()
    write_dir = os.path.realpath(write_dir or os.getcwd())
    hide = [arg for path in hidden_paths() for arg in ("--hide", path)]
    return [*UNSHARE, sys.executable, "-m", "wheelwright.workers.sandbox", "--write", write_dir, *hide, "--"]


def mount_points() -> list[str]:
    with open("/proc/self/mountinfo") as fp:
        # The fifth field, with space, tab, newline and backslash escaped in octal.
        return [re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), line.split()[4]) for line in fp]


def mount(*args: str) -> None:
    proc = subprocess.run(["mount", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"sandbox: mount {' '.join(args)} failed: {proc.stderr.strip()}")


def private_proc() -> bool:
    """A /proc of this PID namespace alone: the farm's processes (and their view of the filesystem,
    /proc/PID/root) out of sight. Inside a container the kernel refuses it over the engine's masked
    /proc; there the container, made for this build alone, is the outer wall."""
    return subprocess.run(["mount", "-t", "proc", "proc", "/proc"], capture_output=True).returncode == 0


def seal(write: list[str], hide: list[str]) -> None:
    proc = private_proc()
    for path in write:
        mount("--bind", path, path)
    for path in hide:
        if os.path.isdir(path):
            mount("-t", "tmpfs", "-o", "size=4k,mode=0", "tmpfs", path)
        else:
            mount("--bind", "/dev/null", path)
    for point in mount_points():
        if point not in write and point != "/proc" and not point.startswith("/proc/"):
            mount("-o", "remount,bind,ro", point)
    if os.path.isdir("/dev/shm"):
        mount("-t", "tmpfs", "-o", "size=64m", "tmpfs", "/dev/shm")
    print(f"sandbox: no network, read-only but {', '.join(write)}, private /proc: {'yes' if proc else 'no'}",
          file=sys.stderr, flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m wheelwright.workers.sandbox")
    parser.add_argument("--write", action="append", default=[])
    parser.add_argument("--hide", action="append", default=[])
    parser.add_argument("command", nargs="+")
    args = parser.parse_args(argv)
    seal(args.write, args.hide)
    os.chdir(os.getcwd())  # the working directory, opened before the bind mounts, would stay read-only
    os.execvp("unshare", ["unshare", "--user", "--map-root-user", "--mount", "--", *args.command])


if __name__ == "__main__":
    main()
