"""The jail for the package's own code: its build backend, its setup.py, the smoke test's imports.
Runs on the worker, inside the worker-side tools.

`run()` starts the command under bubblewrap in new user, network, mount, PID, IPC and UTS
namespaces, on a root built from an allow-list: the system's /usr, a few files of /etc, the
interpreters, the worker's own environment (read-only), a private /tmp and /dev, and the
directories the caller names (written or only read). Nothing else of the host is there: not the
farm's state, not its user's home, not one of its sockets. The command holds no capability and
may not make user namespaces of its own, so it cannot change any of that. When it ends, or is
killed, everything it started dies with it (PID 1 of its namespace is bubblewrap's).

Each run is also held to `Limits`: wall-clock and CPU time, memory and processes (a cgroup where
the machine lets us make one, rlimits where not), the disk its writable directories take, and how
much it prints. A limit hit kills the whole sandbox and fails the tool with a reason naming it.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import io
import os
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import typing
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from wheelwright.common.runtime import ToolError, timed, tool_folders

# What a build may read of /etc: the dynamic linker's cache, Debian's alternatives (cc -> gcc),
# users and groups for tools that look themselves up, the time zone and the OS release.
ETC = (
    "alternatives",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "passwd",
    "group",
    "nsswitch.conf",
    "localtime",
    "os-release",
    "hosts",
)
POLL_SECONDS = 0.2
# The tool's timings part for the sandbox's own start and end: its cgroup made and joined (the
# kernel's move of a process is slow), the spawn, the cgroup removed. The rest of a run's time is
# the command's.
SANDBOX_TIME = "sandbox start and end"


class Bind(typing.NamedTuple):
    """A folder of the worker's bound at another path inside the sandbox (after the others, so
    that it may land under one of them)."""

    source: Path
    target: str
    writable: bool = False


@dataclass(frozen=True)
class Limits:
    """What one sandboxed command may use (farm.json `build_limits`, per package settings)."""

    wall_seconds: int = 3600
    cpu_seconds: int = 3600
    memory_mb: int = 8192
    processes: int = 1024
    disk_mb: int = 20480
    # Files, folders and links in its writable folders, /tmp and /dev/shm: empty files take no
    # bytes, but each is an inode and kernel memory.
    files: int = 1_000_000
    # The log keeps the first and last halves of output_mb of what the command prints, the
    # middle dropped and counted; only printing past output_stop_mb in all stops it.
    output_mb: int = 64
    output_stop_mb: int = 4096

    @classmethod
    def parse(cls, text: str | None) -> Limits:
        import json

        data = json.loads(text) if text else {}
        known = {f.name for f in fields(cls)}
        if (
            not isinstance(data, dict)
            or set(data) - known
            or not all(isinstance(v, int) and v > 0 for v in data.values())
        ):
            raise ToolError(
                f"invalid limits {text!r}: positive whole numbers of {', '.join(sorted(known))}"
            )
        return cls(**data)

    def as_json(self) -> str:
        import json

        return json.dumps(asdict(self), sort_keys=True)


class LimitExceeded(ToolError):
    pass


def _prefix_of(python: str) -> str:
    """The installation an interpreter belongs to (/usr, or pyenv's versions/X.Y.Z)."""
    return str(Path(os.path.realpath(shutil.which(python) or python)).parent.parent)


def farm_paths(pythons: list[str]) -> list[str]:
    """The farm's own folders a build sees, read-only, besides the system's."""
    # Our own tools and pip run inside too (`pip wheel`, the `build` frontend): the worker's
    # environment, and the folders of an editable install of ours, never the repository around them.
    ours = {sys.prefix, sys.base_prefix, *map(_prefix_of, [sys.executable, *pythons])}
    ours |= {str(folder) for folder in tool_folders().values()}
    return sorted(p for p in ours if os.path.isdir(p) and not p.startswith("/usr/"))


def _system_args(pythons: list[str]) -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for top in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = f"/{top}"
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    for name in ETC:
        if os.path.exists(f"/etc/{name}"):
            args += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
    for path in farm_paths(pythons):
        args += ["--ro-bind", path, path]
    return args


# What the kernel lets bubblewrap do, best first: a /proc of the sandbox's PID namespace alone and
# no user namespaces inside. Inside a container the kernel refuses a new /proc over the engine's
# masked one, and /proc/sys is read-only (bubblewrap cannot forbid nested user namespaces): there
# the container's own /proc (it holds nothing but this build's worker) is bound read-only, and
# the container, made for this one build, is the outer wall.
KERNEL_OPTIONS = (
    (("--proc", "/proc", "--disable-userns"), "private /proc"),
    (("--ro-bind", "/proc", "/proc", "--disable-userns"), "/proc of the container"),
    (("--ro-bind", "/proc", "/proc"), "/proc of the container, nested user namespaces allowed"),
)


@functools.cache
def _kernel_args() -> tuple[tuple[str, ...], str]:
    if shutil.which("bwrap") is None:
        raise ToolError(
            "cannot make the build's sandbox: bubblewrap (bwrap) is not installed on this worker"
        )
    for args, description in KERNEL_OPTIONS:
        probe = [
            "bwrap",
            "--unshare-all",
            "--unshare-user",
            "--ro-bind",
            "/",
            "/",
            *args,
            "--",
            "true",
        ]
        if subprocess.run(probe, capture_output=True).returncode == 0:
            return args, description
    raise ToolError(
        "cannot make the build's sandbox: bubblewrap refuses new user, network, mount and PID "
        "namespaces here"
    )


PRIVATE_TMPFS = 256 << 20


def command(
    cmd: list[str],
    *,
    write: list[Path],
    read: Sequence[Path] = (),
    cwd: Path,
    pythons: Sequence[str] = (),
    binds: Sequence[Bind] = (),
    private: Path | None = None,
) -> list[str]:
    """The bubblewrap command line that runs cmd in the sandbox. With private (a folder holding
    tmp/ and shm/), /tmp and /dev/shm are those folders on disk, where the disk and file limits
    count them; without, a tmpfs of PRIVATE_TMPFS at most. /dev itself is read-only."""
    # The private /tmp first: bound after them, it would hide the farm's own folders that live
    # under /tmp (a checkout in /tmp, its .venv and an editable install of ours).
    if private is None:
        tmp = ["--size", str(PRIVATE_TMPFS), "--tmpfs", "/tmp"]
        shm = ["--size", str(PRIVATE_TMPFS), "--tmpfs", "/dev/shm"]
    else:
        tmp = ["--bind", os.path.realpath(private / "tmp"), "/tmp"]
        shm = ["--bind", os.path.realpath(private / "shm"), "/dev/shm"]
    args = [
        "bwrap",
        "--unshare-all",
        "--unshare-user",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        *tmp,
        *_system_args(list(pythons)),
        *_kernel_args()[0],
        "--dev",
        "/dev",
        *shm,
        "--remount-ro",
        "/dev",
    ]
    for path in read:
        real = os.path.realpath(path)
        args += ["--ro-bind", real, real]
    for path in write:
        real = os.path.realpath(path)
        args += ["--bind", real, real]
    for bind in binds:
        args += [
            "--bind" if bind.writable else "--ro-bind",
            os.path.realpath(bind.source),
            bind.target,
        ]
    return [*args, "--chdir", os.path.realpath(cwd), "--", *cmd]


class _Cgroup:
    """A cgroup for one sandbox, for its memory and process limits and to read whether it hit
    them: cgroup v2 where the machine has it, the v1 `pids` and `memory` controllers where not.
    Where neither can be made (a container, a user without the right), rlimits stand alone."""

    def __init__(self, limits: Limits):
        self.dirs: dict[str, Path] = {}
        name = f"wheelwright-{uuid.uuid4().hex[:12]}"
        root = Path("/sys/fs/cgroup")
        try:
            if (root / "cgroup.controllers").exists():
                self._make(
                    "v2",
                    self._own(root, "") / name,
                    {
                        "pids.max": limits.processes,
                        "memory.max": limits.memory_mb << 20,
                        "memory.swap.max": 0,
                    },
                )
            else:
                self._make(
                    "pids", self._own(root / "pids", "pids") / name, {"pids.max": limits.processes}
                )
                self._make(
                    "memory",
                    self._own(root / "memory", "memory") / name,
                    {"memory.limit_in_bytes": limits.memory_mb << 20},
                )
        except OSError:
            pass

    @staticmethod
    def _own(mount: Path, controller: str) -> Path:
        with open("/proc/self/cgroup") as fp:
            for line in fp:
                _, names, path = line.rstrip("\n").split(":", 2)
                if names == controller or controller in names.split(","):
                    return mount / path.lstrip("/")
        raise OSError(f"no {controller or 'v2'} cgroup")

    def _make(self, kind: str, path: Path, settings: dict[str, int]) -> None:
        self._sweep(path.parent)
        path.mkdir()
        self.dirs[kind] = path
        for key, value in settings.items():
            if (path / key).exists():
                (path / key).write_text(str(value))

    @staticmethod
    def _sweep(parent: Path) -> None:
        """Remove the empty cgroups of sandboxes whose tool was killed before it could (a worker
        stopped mid-build): only a minute after they were made, so as not to race a new one."""
        for stale in parent.glob("wheelwright-*"):
            try:
                if time.time() - stale.stat().st_mtime > 60:
                    stale.rmdir()  # refused while a process is in it
            except OSError:
                pass

    def join(self) -> None:
        """Move the calling process in (before it runs the sandbox; its children follow)."""
        for path in self.dirs.values():
            (path / "cgroup.procs").write_text("0")

    def _read(self, kind: str, name: str) -> str:
        try:
            return (self.dirs[kind] / name).read_text()
        except (KeyError, OSError):
            return ""

    def limit_hit(self, limits: Limits) -> str | None:
        events = self._read("v2", "pids.events") or self._read("pids", "pids.events")
        if any(
            line.split() and line.split()[0] == "max" and line.split()[1] != "0"
            for line in events.splitlines()
        ):
            return f"process limit ({limits.processes} processes)"
        memory = self._read("v2", "memory.events") or self._read("memory", "memory.oom_control")
        if any(
            line.split() and line.split()[0] == "oom_kill" and line.split()[1] != "0"
            for line in memory.splitlines()
        ):
            return f"memory limit ({limits.memory_mb} MiB)"
        return None

    def close(self) -> None:
        # The kernel frees a cgroup a moment after its last process exits: a few milliseconds,
        # asked often (the build waits), for a second at most; one left is swept a minute later.
        deadline = time.monotonic() + 1
        for path in self.dirs.values():
            while True:
                try:
                    path.rmdir()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.002)


def _ended(proc: subprocess.Popen, seconds: float) -> bool:
    """Whether proc ends within seconds, known as it ends: a short command is not kept waiting
    for the next check of the limits, nor for the next look of Popen.wait(timeout), which sleeps
    between looks (up to 50 ms: a fifth of a get_requires hook's whole run)."""
    if proc.poll() is not None:
        return True
    try:
        # Not yet reaped (only we wait for it), so the PID is still proc's even if it just ended.
        pidfd = os.pidfd_open(proc.pid)
    except OSError:  # a kernel without pidfds (before 5.3)
        try:
            proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            return False
        return True
    try:
        select.select([pidfd], [], [], seconds)  # readable once the process has ended
    finally:
        os.close(pidfd)
    return proc.poll() is not None


def _over_disk(paths: list[Path], limits: Limits) -> str | None:
    """Which of the disk and file limits the folders under paths are over, if any; counted until
    one is (a folder of millions of empty files is not walked to its end)."""
    used = files = 0
    where = ", ".join(map(str, paths))
    for top in paths:
        for root, dirs, names in os.walk(top):
            files += len(dirs) + len(names)
            if files > limits.files:
                return f"file limit ({limits.files} files in {where})"
            for name in dirs + names:
                with contextlib.suppress(OSError):  # gone meanwhile: the build's to delete
                    used += os.lstat(os.path.join(root, name)).st_blocks * 512
            if used > limits.disk_mb << 20:
                return f"disk limit ({limits.disk_mb} MiB in {where})"
    return None


def described(limits: Limits, cgroup: _Cgroup) -> str:
    """The limits a run is held to, and by what: for its log."""
    if "v2" in cgroup.dirs or "memory" in cgroup.dirs:
        held = f"cgroup: memory {limits.memory_mb} MiB, {limits.processes} processes"
    else:
        held = (
            f"no cgroup, rlimits only: address space {limits.memory_mb} MiB, "
            f"{limits.processes} processes"
        )
    return (
        f"limits: {held}; wall {limits.wall_seconds} s, CPU {limits.cpu_seconds} s, disk "
        f"{limits.disk_mb} MiB and {limits.files} files (its folders, /tmp, /dev/shm), "
        f"log {limits.output_mb} MiB (its head and tail), output stopped at "
        f"{limits.output_stop_mb} MiB"
    )


def run(
    cmd: list[str],
    *,
    write: list[Path],
    read: Sequence[Path] = (),
    cwd: Path,
    env: dict[str, str],
    what: str,
    limits: Limits = Limits(),
    pythons: Sequence[str] = (),
    binds: Sequence[Bind] = (),
    reason_last: bool = False,
    output: typing.BinaryIO | None = None,
) -> None:
    """Run cmd in the sandbox, its output copied to ours (or to output); a failure or a limit hit
    is a ToolError. With reason_last, a failure's reason is the last line the command printed (a
    tool of ours that says why in one line)."""
    written = [*write, *(b.source for b in binds if b.writable)]
    with _private_folders() as private:
        argv = command(
            cmd, write=write, read=read, cwd=cwd, pythons=pythons, binds=binds, private=private
        )
        with timed(SANDBOX_TIME):
            cgroup = _Cgroup(limits)
        header = (
            f"+ (sandbox: no network, writes only {', '.join(map(str, written))}; "
            f"{_kernel_args()[1]}; {described(limits, cgroup)}) {' '.join(cmd)}\n"
        )
        if output is None:
            print(header, end="", flush=True)
        else:
            output.write(header.encode())
        try:
            with timed(SANDBOX_TIME):
                proc = _start(argv, env, limits, cgroup)
        except OSError as exc:
            cgroup.close()
            raise ToolError(f"cannot start the sandbox for {what}: {exc}") from None
        watch = _Watch(proc, limits, cgroup, [*written, private], output)
        try:
            watch.until_ended()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            with timed(SANDBOX_TIME):
                cgroup.close()
    if watch.hit:
        raise LimitExceeded(f"{what} was stopped: it hit the {watch.hit[0]}", limit=watch.hit[0])
    if proc.returncode != 0:
        lines = bytes(watch.tail).decode(errors="replace").strip().splitlines()
        if reason_last and lines:
            raise ToolError(lines[-1][-500:])
        raise ToolError(f"{what} failed (exit {proc.returncode})")


@contextlib.contextmanager
def _private_folders() -> typing.Iterator[Path]:
    """The sandbox's /tmp and /dev/shm, on disk where its limits count them, gone after."""
    private = Path(tempfile.mkdtemp(prefix="wheelwright-sandbox-"))
    try:
        (private / "tmp").mkdir()
        (private / "shm").mkdir()
        yield private
    finally:
        shutil.rmtree(private, ignore_errors=True)


def _start(argv: list[str], env: dict[str, str], limits: Limits, cgroup: _Cgroup):
    """bubblewrap started in the cgroup, under the rlimits (the address space's only where no
    cgroup holds the memory)."""
    rlimits = {
        resource.RLIMIT_CPU: limits.cpu_seconds,
        resource.RLIMIT_NPROC: limits.processes,
        resource.RLIMIT_FSIZE: limits.disk_mb << 20,
        resource.RLIMIT_CORE: 0,
    }
    if "memory" not in cgroup.dirs and "v2" not in cgroup.dirs:
        rlimits[resource.RLIMIT_AS] = limits.memory_mb << 20

    def enter_limits():
        cgroup.join()
        os.umask(0o022)  # the modes of the files a build makes do not depend on the worker's umask
        for which, value in rlimits.items():
            hard = resource.getrlimit(which)[1]
            value = value if hard == resource.RLIM_INFINITY else min(value, hard)
            # A soft CPU limit below the hard one: SIGXCPU, which says why, before SIGKILL.
            soft = max(value - 2, 1) if which == resource.RLIMIT_CPU else value
            resource.setrlimit(which, (soft, value))

    return subprocess.Popen(
        argv,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=enter_limits,
    )


class _Watch:
    """A running sandbox, watched until it ends: its output copied (to a cap, its last lines
    kept), its limits checked; the first limit hit kills it and is kept in `hit`."""

    def __init__(self, proc, limits: Limits, cgroup: _Cgroup, counted: list[Path], output):
        self.proc, self.limits, self.cgroup, self.counted = proc, limits, cgroup, counted
        self.output = output or sys.stdout.buffer
        self.hit: list[str] = []
        self.tail = bytearray()

    def stop(self, reason: str) -> None:
        if not self.hit:
            self.hit.append(reason)
        self.proc.kill()  # bubblewrap's namespace init dies with it, and so does all it ran

    def copy_output(self) -> None:
        """The command's output to the log: its first half of the log's size as it comes, then
        only the last half kept, written with the count of what was dropped when it ends (a
        compiler's half a million warnings do not stop the build, nor fill the master's disk)."""
        stdout = typing.cast(io.BufferedReader, self.proc.stdout)  # stdout=PIPE, binary
        log = self.limits.output_mb << 20
        head, printed, dropped = log // 2, 0, 0
        kept: collections.deque[bytes] = collections.deque()
        kept_size, last = 0, b"\n"
        while block := stdout.read1(1 << 16):
            printed += len(block)
            self.tail[:] = (self.tail + block)[-1024:]
            if printed > self.limits.output_stop_mb << 20:
                self.stop(f"output limit ({self.limits.output_stop_mb} MiB printed)")
                break
            if printed - len(block) < head:
                shown, block = (
                    block[: head - (printed - len(block))],
                    block[head - (printed - len(block)) :],
                )
                self.output.write(shown)
                self.output.flush()
                last = shown[-1:] or last
            if block:
                kept.append(block)
                kept_size += len(block)
                while kept_size > log - head:  # the oldest bytes go, to the byte
                    cut = min(kept_size - (log - head), len(kept[0]))
                    kept[0] = kept[0][cut:]
                    if not kept[0]:
                        kept.popleft()
                    dropped, kept_size = dropped + cut, kept_size - cut
        if dropped:
            self.output.write(
                f"\n[... {dropped} bytes of output dropped: the log keeps its first "
                f"{head >> 20} MiB and last {(log - head) >> 20} MiB ...]\n".encode()
            )
        for block in kept:
            self.output.write(block)
            last = block[-1:]
        if last != b"\n":  # what comes next (the tool's result) starts a line of its own
            self.output.write(b"\n")
        self.output.flush()

    def until_ended(self) -> None:
        limits, proc = self.limits, self.proc
        reader = threading.Thread(target=self.copy_output, daemon=True)
        reader.start()
        started = time.monotonic()
        while not _ended(proc, POLL_SECONDS):
            if time.monotonic() - started > limits.wall_seconds:
                self.stop(f"wall-clock limit ({limits.wall_seconds} s)")
            elif reason := self.cgroup.limit_hit(limits) or _over_disk(self.counted, limits):
                self.stop(reason)
        proc.wait()
        reader.join(timeout=5)
        if not self.hit and (reason := self.cgroup.limit_hit(limits)):
            self.hit.append(reason)
        if not self.hit and proc.returncode in (-signal.SIGXCPU, 128 + signal.SIGXCPU):
            self.hit.append(f"CPU time limit ({limits.cpu_seconds} s)")
        if not self.hit and proc.returncode in (-signal.SIGXFSZ, 128 + signal.SIGXFSZ):
            self.hit.append(f"disk limit ({limits.disk_mb} MiB in one file)")
