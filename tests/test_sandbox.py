"""The sandbox the package's code runs in, tried from the inside."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid

from wheelwright.workers import sandbox


def run_inside(tmp_path, code: str, **env) -> subprocess.CompletedProcess:
    build = tmp_path / "build"
    build.mkdir(exist_ok=True)
    old = os.environ.copy()
    os.environ.update(env)
    try:
        prefix = sandbox.prefix(str(build))
    finally:
        os.environ.clear()
        os.environ.update(old)
    return subprocess.run([*prefix, sys.executable, "-c", code], cwd=build, capture_output=True, text=True)


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
    assert proc.stdout.split("\n")[:2] == ["ENETUNREACH", "no name resolution"], proc.stdout + proc.stderr


def test_it_writes_in_its_build_directory_and_nowhere_else(tmp_path):
    outside = [tmp_path / "outside", "/var/tmp/wheelwright-escaped"]
    shm = "/dev/shm/wheelwright-escaped"
    code = f"""if 1:
        import sys
        open("inside", "w").write("ok")
        open("{shm}", "w").write("private")
        for path in {[str(p) for p in outside]!r}:
            try:
                open(path, "w").write("escaped")
            except OSError as exc:
                print(path, exc.strerror)
            else:
                sys.exit("wrote " + path)
        """
    proc = run_inside(tmp_path, code)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "build" / "inside").read_text() == "ok"
    assert proc.stdout.count("Read-only file system") == 2
    assert not any(os.path.exists(p) for p in [*outside, shm])


def test_it_cannot_undo_its_walls(tmp_path):
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "password").write_text("hunter2")
    code = f"""if 1:
        import subprocess, sys
        for cmd in (["mount", "-o", "remount,bind,rw", "/"], ["umount", "{secret}"], ["umount", "-l", "/"]):
            if subprocess.run(cmd, capture_output=True).returncode == 0:
                sys.exit("could run " + " ".join(cmd))
        print(sorted(__import__("os").listdir("{secret}")))
        """
    proc = run_inside(tmp_path, code, **{sandbox.HIDE_ENV: str(secret)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


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
