"""The sandbox the package's code runs in, tried from the inside, and its limits."""

from __future__ import annotations

import dataclasses
import io
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from wheelwright.common import sandbox
from wheelwright.common.runtime import ToolError, clean_pip_env


def run_inside(tmp_path, code: str, env: dict | None = None) -> subprocess.CompletedProcess:
    build = tmp_path / "build"
    build.mkdir(exist_ok=True)
    argv = sandbox.command([sys.executable, "-c", code], write=[build], cwd=build)
    return subprocess.run(
        argv, cwd=build, capture_output=True, text=True, env=env or clean_pip_env()
    )


def test_the_network_is_cut(tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    code = f"import socket; socket.create_connection(('127.0.0.1', {listener.getsockname()[1]}), timeout=3)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
    proc = run_inside(tmp_path, code)
    listener.close()
    assert proc.returncode != 0
    assert "Network is unreachable" in proc.stderr or "Connection refused" in proc.stderr


def test_there_is_no_route_and_no_name_resolution(tmp_path):
    # 192.0.2.1 is TEST-NET-1; inside there is no route to anywhere, so nothing is ever sent.
    code = """if 1:
        import errno, socket
        try:
            socket.create_connection(("192.0.2.1", 80), timeout=3)
        except OSError as exc:
            print(errno.errorcode.get(exc.errno))
        try:
            socket.getaddrinfo("example.com", 443)
        except socket.gaierror:
            print("no name resolution")
        """
    proc = run_inside(tmp_path, code)
    assert proc.stdout.split("\n")[:2] == ["ENETUNREACH", "no name resolution"], (
        proc.stdout + proc.stderr
    )


def test_it_writes_in_its_build_directory_and_nowhere_else(tmp_path):
    # tmp_path is under /tmp, which inside is a private tmpfs: a write there lands nowhere.
    outside = [
        tmp_path / "outside",
        "/var/tmp/wheelwright-escaped",
        "/usr/wheelwright-escaped",
        os.path.expanduser("~/wheelwright-escaped"),
        "/dev/shm/wheelwright-escaped",
    ]
    code = f"""if 1:
        open("inside", "w").write("ok")
        for path in {[str(p) for p in outside]!r}:
            try:
                open(path, "w").write("escaped")
            except OSError as exc:
                print(path, exc.strerror)
        """
    proc = run_inside(tmp_path, code)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "build" / "inside").read_text() == "ok"
    assert "/usr/wheelwright-escaped Read-only file system" in proc.stdout
    assert not any(os.path.exists(p) for p in outside)


def test_it_sees_only_what_a_build_needs(tmp_path):
    # An allow-list, not a deny-list: the farm user's home, the machine's state and any folder
    # beside the build directory are simply not there.
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "password").write_text("hunter2")
    home = os.path.expanduser("~")
    code = f"""if 1:
        import os
        print(sorted(os.listdir("/")))
        for path in ("{secret}", "/var", "/run", "/root/.ssh", "/etc/shadow", "/etc/pip.conf", "/opt"):
            print(path, os.path.exists(path))
        print("home", sorted(os.listdir("{home}")) if os.path.isdir("{home}") else None)
        """
    proc = run_inside(tmp_path, code)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    # Besides the system's folders, only the tops of the farm's own (wherever it is checked out).
    ours = {Path(path).parts[1] for path in sandbox.farm_paths([])}
    assert set(eval(lines[0])) <= {
        "bin",
        "dev",
        "etc",
        "lib",
        "lib32",
        "lib64",
        "libx32",
        "proc",
        "sbin",
        "tmp",
        "usr",
        *ours,
    }
    assert all(line.endswith(" False") for line in lines[1:-1]), proc.stdout
    # Of the home folder, at most the interpreters' own folders (pyenv's) are there.
    assert set(eval(lines[-1].split(" ", 1)[1]) or []) <= {".pyenv"}


def test_it_cannot_undo_its_walls(tmp_path):
    code = """if 1:
        import subprocess, sys
        for cmd in (["mount", "-o", "remount,bind,rw", "/usr"], ["umount", "-l", "/usr"],
                    ["unshare", "--user", "--map-root-user", "true"], ["mount", "-t", "tmpfs", "x", "/tmp"]):
            if subprocess.run(cmd, capture_output=True).returncode == 0:
                sys.exit("could run " + " ".join(cmd))
        print("held")
        """
    proc = run_inside(tmp_path, code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "held"


def test_no_socket_of_the_host_is_reachable(tmp_path):
    # A Docker or podman socket is root on the host: neither a path socket nor an abstract one
    # (those live in the network namespace) answers inside.
    path = f"/run/wheelwright-test-{uuid.uuid4().hex[:8]}.sock"
    abstract = "\0wheelwright-test-" + uuid.uuid4().hex[:8]
    servers = []
    for address in (path, abstract):
        server = socket.socket(socket.AF_UNIX)
        server.bind(address)
        server.listen()
        servers.append(server)
    code = f"""if 1:
        import socket
        for address in ({path!r}, {abstract!r}):
            s = socket.socket(socket.AF_UNIX)
            try:
                s.connect(address)
                print("connected", repr(address))
            except OSError as exc:
                print("unreachable:", exc.strerror)
        """
    try:
        assert (
            subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True
            ).stdout.count("connected")
            == 2
        )
        proc = run_inside(tmp_path, code)
    finally:
        for server in servers:
            server.close()
        os.unlink(path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("unreachable:") == 2, proc.stdout


def test_it_gets_only_the_environment_it_is_given(tmp_path, monkeypatch):
    monkeypatch.setenv("DEPLOY_TOKEN", "s3cret-token")
    proc = run_inside(tmp_path, "import os; print(dict(os.environ))")
    seen = eval(proc.stdout)
    assert "s3cret-token" not in proc.stdout
    # Python sets LC_CTYPE (locale coercion) and bubblewrap PWD; the rest is what the tools chose.
    assert set(seen) - {"LC_CTYPE", "PWD"} == set(clean_pip_env())


def test_it_sees_no_other_process_and_leaves_none_behind(tmp_path):
    token = uuid.uuid4().hex
    code = f"""if 1:
        import os, subprocess, sys
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
        print(len(pids), {os.getpid()} in map(int, pids))
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", "{token}"], start_new_session=True)
        """
    proc = run_inside(tmp_path, code)
    assert proc.returncode == 0, proc.stderr
    count, sees_us = proc.stdout.split()
    assert int(count) <= 3 and sees_us == "False"
    time.sleep(0.2)
    assert subprocess.run(["pgrep", "-f", token]).returncode == 1, "a process outlived its sandbox"


LIMITED = sandbox.Limits(
    wall_seconds=12,
    cpu_seconds=4,
    memory_mb=256,
    processes=64,
    disk_mb=64,
    output_mb=1,
    output_stop_mb=8,
)
ATTACKS = {
    "a fork bomb": (["bash", "-c", "f(){ f | f & }; f; sleep 30"], "process limit (64 processes)"),
    "a memory hog": (
        [sys.executable, "-c", "x = [bytearray(1 << 20) for _ in range(4096)]"],
        "memory limit (256 MiB)",
    ),
    "a disk filler": (
        ["bash", "-c", "while :; do head -c 8000000 /dev/zero > f$RANDOM; done"],
        "disk limit (64 MiB",
    ),
    "an endless printer": (
        [sys.executable, "-c", "while True: print('x' * 100)"],
        "output limit (8 MiB printed)",
    ),
    "a CPU spinner": ([sys.executable, "-c", "while True: pass"], "CPU time limit (4 s)"),
    "a sleeper": (["bash", "-c", "sleep 600"], "wall-clock limit (2 s)"),
}
# The others need time to reach their limit; a sleeper only needs a wall clock that ends soon.
SHORT_LIMITS = {"a sleeper": dataclasses.replace(LIMITED, wall_seconds=2)}


@pytest.mark.parametrize("attack", ATTACKS)
def test_a_limit_hit_stops_the_sandbox_and_names_the_limit(tmp_path, capfd, monkeypatch, attack):
    # The attack's processes carry a token of this test's (bash's $0, python's argv[1]) and its
    # cgroups are those this process made: other sandboxes running meanwhile are not counted.
    token = f"wheelwright-attack-{uuid.uuid4().hex}"
    cmd, named = ATTACKS[attack]
    build = tmp_path / "build"
    build.mkdir()
    limits = SHORT_LIMITS.get(attack, LIMITED)
    made = []
    make = sandbox._Cgroup.__init__
    monkeypatch.setattr(
        sandbox._Cgroup, "__init__", lambda cg, lim: make(cg, lim) or made.append(cg)
    )
    started = time.monotonic()
    with pytest.raises(
        sandbox.LimitExceeded, match=re.escape(f"{attack} was stopped: it hit the {named}")
    ):
        sandbox.run(
            [*cmd, token], write=[build], cwd=build, env=clean_pip_env(), what=attack, limits=limits
        )
    assert time.monotonic() - started < 30
    time.sleep(0.3)
    assert subprocess.run(["pgrep", "-f", token]).returncode == 1, "a process outlived its sandbox"
    # and the next build gets a clean start: the sandbox's cgroups are gone
    assert made and not [d for cgroup in made for d in cgroup.dirs.values() if d.exists()]


def test_bad_limits_are_refused():
    with pytest.raises(ToolError, match="invalid limits"):
        sandbox.Limits.parse('{"memory_mb": -1}')


def test_the_private_tmp_comes_before_every_folder_it_could_hide(tmp_path):
    # a checkout under /tmp (CI's clone, its .venv, an editable install of ours) is bound in read-only;
    # a /tmp mounted after it would hide it and no tool could start inside
    argv = sandbox.command(["true"], write=[tmp_path], cwd=tmp_path)
    assert argv.index("--tmpfs") < argv.index("--ro-bind")
    assert argv[argv.index("--tmpfs") + 1] == "/tmp"
    argv = sandbox.command(["true"], write=[tmp_path], cwd=tmp_path, private=tmp_path)
    assert argv.index("--bind") < argv.index("--ro-bind")
    assert argv[argv.index("--bind") + 1 : argv.index("--bind") + 3] == [
        str(tmp_path / "tmp"),
        "/tmp",
    ]


def test_the_sandbox_knows_a_command_ended_and_waits_on_one_that_runs():
    running = subprocess.Popen(["sleep", "30"])
    try:
        assert not sandbox._ended(running, 0.1)
        assert running.returncode is None
    finally:
        running.kill()
    # Ended, not yet reaped: told (through a pidfd), and reaped.
    assert sandbox._ended(running, 30)
    assert running.returncode == -signal.SIGKILL
    assert sandbox._ended(running, 30)  # asked again, once reaped


# Where a build could put bytes or files that no limit counted: a private /tmp and /dev/shm were
# tmpfs, taking the machine's memory where no cgroup charges it; empty files take no bytes.
PRIVATE_ATTACKS = {
    "a /tmp filler": (
        ["bash", "-c", "while :; do head -c 8000000 /dev/zero > /tmp/f$RANDOM; done"],
        "disk limit (64 MiB",
    ),
    "a /dev/shm filler": (
        ["bash", "-c", "while :; do head -c 8000000 /dev/zero > /dev/shm/f$RANDOM; done"],
        "disk limit (64 MiB",
    ),
    "a file-count bomb": (
        [sys.executable, "-c", "import os\nfor n in range(10**7): open(f'/tmp/{n}', 'w').close()"],
        "file limit (2000 files",
    ),
}


@pytest.mark.parametrize("cgroup", ["with a cgroup", "rlimits only"])
@pytest.mark.parametrize("attack", PRIVATE_ATTACKS)
def test_the_private_tmp_and_shm_count_against_the_limits_with_or_without_a_cgroup(
    tmp_path, capfd, monkeypatch, attack, cgroup
):
    if cgroup == "rlimits only":  # as in a container, or for a user who may make no cgroup
        monkeypatch.setattr(sandbox._Cgroup, "_make", lambda *a: (_ for _ in ()).throw(OSError()))
    cmd, named = PRIVATE_ATTACKS[attack]
    build, scratch = tmp_path / "build", tmp_path / "scratch"
    build.mkdir()
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    limits = dataclasses.replace(LIMITED, files=2000)
    with pytest.raises(sandbox.LimitExceeded, match=re.escape(f"it hit the {named}")):
        sandbox.run(cmd, write=[build], cwd=build, env=clean_pip_env(), what=attack, limits=limits)
    said = capfd.readouterr().out
    held = (
        "limits: cgroup: memory 256 MiB" if cgroup == "with a cgroup" else "no cgroup, rlimits only"
    )
    assert held in said and "disk 64 MiB and 2000 files" in said
    assert list(scratch.iterdir()) == []  # the private /tmp and /dev/shm went with the sandbox


def test_dev_is_read_only_in_the_sandbox(tmp_path):
    build = tmp_path / "build"
    build.mkdir()
    code = (
        "import os\n"
        "open('/dev/null', 'w').write('x')\n"  # devices still work
        "try:\n    open('/dev/planted', 'w')\nexcept OSError as e:\n    print('refused', e.errno)\n"
    )
    out = io.BytesIO()
    sandbox.run(
        [sys.executable, "-c", code],
        write=[build],
        cwd=build,
        env=clean_pip_env(),
        what="writing /dev",
        output=out,
    )
    assert out.getvalue().decode().splitlines()[-1] == "refused 30"  # EROFS


def test_a_long_output_keeps_its_head_and_tail_and_the_command_goes_on(tmp_path):
    """Half a million compiler warnings: the log keeps the first and last half MiB of a 1 MiB
    log, says how much it dropped between, and the command ends as it would have."""
    out = io.BytesIO()
    code = (
        "import sys\n"
        "for i in range(60000): print(f'warning {i:06d}: ' + 'x' * 40)\n"
        "sys.stdout.write('the last words, unterminated')\n"
    )
    sandbox.run(
        [sys.executable, "-c", code],
        write=[tmp_path],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin"},
        what="a loud build",
        limits=dataclasses.replace(LIMITED, output_mb=1),
        output=out,
    )
    said = out.getvalue().decode()
    log = said[said.index("warning 000000: ") :]  # after the sandbox's own line
    assert "warning 059999: " in log
    assert "warning 030000: " not in log
    dropped = re.search(r"\[\.\.\. (\d+) bytes of output dropped: the log keeps", log)
    assert dropped and 1_500_000 < int(dropped.group(1)) < 2_500_000
    assert log.endswith("the last words, unterminated\n")  # a line of its own follows
    assert len(log) < (1 << 20) + 1000
