"""Index hosts of other kinds, real ones, on 127.0.0.1: pypiserver and devpi-server, each from
its venv under tests/.cache/services (made by `make test`), each taking uploads with a password
and refusing to replace a file."""

from __future__ import annotations

import contextlib
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.sdists import CACHE, free_port, wait_for_port

VENVS = CACHE.parent / "services"
USER, PASSWORD = "publisher", "pub-s3cret"


@dataclass(frozen=True)
class IndexHost:
    name: str
    upload_url: str
    simple_url: str


def _bin(venv: str, program: str) -> str:
    path = VENVS / venv / "bin" / program
    if not path.exists():
        raise AssertionError(f"{path} is missing: make test installs it ({VENVS}/.done)")
    return str(path)


@contextlib.contextmanager
def _serving(cmd: list[str], port: int, log: Path):
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_for_port(port, timeout=60)
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@contextlib.contextmanager
def pypiserver(tmp: Path):
    python = _bin("pypiserver", "python")
    (tmp / "packages").mkdir(parents=True)
    subprocess.run(
        [
            python,
            "-c",
            "import sys; from passlib.apache import HtpasswdFile as H; "
            "h = H(sys.argv[1], new=True); h.set_password(sys.argv[2], sys.argv[3]); h.save()",
            str(tmp / "htpasswd"),
            USER,
            PASSWORD,
        ],
        check=True,
    )
    port = free_port()
    # No --overwrite: a file it holds is never replaced; no fallback to the upstream.
    with _serving(
        [
            _bin("pypiserver", "pypi-server"),
            "run",
            "--host",
            "127.0.0.1",
            "-p",
            str(port),
            "-P",
            str(tmp / "htpasswd"),
            "-a",
            "update",
            "--disable-fallback",
            str(tmp / "packages"),
        ],
        port,
        tmp / "pypiserver.log",
    ):
        yield IndexHost(
            "pypiserver", f"http://127.0.0.1:{port}/", f"http://127.0.0.1:{port}/simple/"
        )


@contextlib.contextmanager
def devpi(tmp: Path):
    serverdir, clientdir, port = tmp / "server", tmp / "client", free_port()
    subprocess.run(
        [_bin("devpi", "devpi-init"), "--serverdir", str(serverdir), "--root-passwd", "root-pw"],
        check=True,
        capture_output=True,
    )
    with _serving(
        [
            _bin("devpi", "devpi-server"),
            "--serverdir",
            str(serverdir),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        port,
        tmp / "devpi.log",
    ):
        url = f"http://127.0.0.1:{port}"

        def client(*args: str) -> None:
            subprocess.run(
                [_bin("devpi", "devpi"), "--clientdir", str(clientdir), *args],
                check=True,
                capture_output=True,
            )

        client("use", url)
        client("login", "root", "--password", "root-pw")
        client("user", "-c", USER, f"password={PASSWORD}")
        client("login", USER, "--password", PASSWORD)
        # Not volatile: a release's files, once uploaded, are never replaced. No bases: nothing
        # comes from the upstream through it.
        client("index", "-c", "wheels", "bases=", "volatile=False")
        yield IndexHost("devpi", f"{url}/{USER}/wheels/", f"{url}/{USER}/wheels/+simple/")
