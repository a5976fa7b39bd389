"""Workers of another architecture on this machine: buildbot-worker processes in a Debian root of
that architecture (farm/roots.py), its binaries run by qemu-user through binfmt_misc.

Each worker runs under the host's bubblewrap in mount and PID namespaces of its own, with the root
as its / : the farm's folders are not there but its own worker directory, and our worker-side
tools are bound read-only from the master's installation, so they are always the master's code.
Inside, each build's sandbox is the root's bubblewrap, of this machine's architecture (see roots).
"""

from __future__ import annotations

import glob
import json
import os
import platform
import shutil
import subprocess
import time
from pathlib import Path

from wheelwright.common.runtime import tool_folders
from wheelwright.farm.roots import TOOLS_PREFIX

BINFMT = Path("/proc/sys/fs/binfmt_misc")
# Where qemu-user-static keeps its binfmt registrations (Debian's package).
BINFMT_CONFS = Path("/usr/lib/binfmt.d")
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PIDFILE = "emulated.pid"


def why_not(arch: str) -> str | None:
    """Why this machine cannot run workers of arch under emulation; None when it can."""
    entry = BINFMT / f"qemu-{arch}"
    setup = (
        f"apt-get install qemu-user-static; mount -t binfmt_misc binfmt_misc {BINFMT}; "
        f"cat {BINFMT_CONFS}/qemu-{arch}.conf > {BINFMT}/register  (or: make emulation)"
    )
    if platform.machine() == arch:
        return f"this machine is {arch}: its local pool builds for it natively"
    if os.geteuid() != 0:
        return "emulated workers are started by root (their root filesystem is mounted for them)"
    for tool, package in (("debootstrap", "debootstrap"), ("bwrap", "bubblewrap")):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install {package})"
    if not (BINFMT / "status").exists():
        return f"binfmt_misc is not mounted, so the kernel cannot hand {arch} programs to qemu: {setup}"
    if not entry.exists():
        return f"no binfmt_misc entry runs {arch} programs (qemu-user-static, registered): {setup}"
    text = entry.read_text()
    fields = {
        key.rstrip(":"): value
        for key, _, value in (line.partition(" ") for line in text.splitlines()[1:])
    }
    if not text.startswith("enabled"):
        return f"the binfmt_misc entry {entry} is disabled: echo 1 > {entry}"
    if "F" not in fields.get("flags", ""):
        # Without F the kernel looks the interpreter up inside the root, where it is not.
        return f"{entry} was registered without the F flag; register {BINFMT_CONFS}/qemu-{arch}.conf instead"
    if not os.path.exists(fields.get("interpreter", "")):
        return (
            f"{entry} names an interpreter that is not there ({fields.get('interpreter')}): {setup}"
        )
    return None


def _site_packages(root: Path) -> str:
    (found,) = glob.glob(
        str(root / TOOLS_PREFIX.lstrip("/") / "lib" / "python3.*" / "site-packages")
    )
    return "/" + str(Path(found).relative_to(root))


def worker_command(root: Path, basedir: Path, info_fd: int) -> list[str]:
    """bubblewrap running `buildbot-worker start` in root, in a PID namespace of its own whose
    PID 1 is bubblewrap's (it writes that one's host PID to info_fd)."""
    site = _site_packages(root)
    binds = []
    for package, folder in tool_folders().items():
        binds += ["--ro-bind", str(folder), f"{site}/wheelwright/{package}"]
    return [
        "bwrap",
        "--unshare-pid",
        "--info-fd",
        str(info_fd),
        "--bind",
        str(root),
        "/",
        "--dev-bind",
        "/dev",
        "/dev",
        "--proc",
        "/proc",
        "--tmpfs",
        "/tmp",
        "--bind",
        str(basedir),
        str(basedir),
        *binds,
        "--chdir",
        str(basedir),
        "--clearenv",
        "--setenv",
        "PATH",
        PATH,
        "--setenv",
        "HOME",
        "/root",
        "--setenv",
        "LANG",
        "C.UTF-8",
        "--",
        f"{TOOLS_PREFIX}/bin/buildbot-worker",
        "start",
        "--nodaemon",
        str(basedir),
    ]


def start(root: Path, basedir: Path, log: Path, timeout: float = 30) -> int:
    """Start the worker in basedir (made already) in root; its host PID, also kept in basedir.
    Not PID 1 of its namespace: twistd ends by raising the signal that stopped it again, and PID 1
    does not die of its own signals."""
    read, write = os.pipe()
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            worker_command(root, basedir, write),
            pass_fds=(write,),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    os.close(write)
    with os.fdopen(read) as info:
        text = info.read()
    deadline = time.monotonic() + timeout
    while text and proc.poll() is None and time.monotonic() < deadline:
        init = json.loads(text)["child-pid"]
        children = Path(f"/proc/{init}/task/{init}/children").read_text().split()
        if children:
            (basedir / PIDFILE).write_text(children[0])
            return int(children[0])
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"the emulated worker in {basedir} did not start (see {log})")
