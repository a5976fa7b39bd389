"""A PostgreSQL server of the tests' own: Debian's binaries, a cluster in a temporary directory,
listening on 127.0.0.1 only, with a password (scram-sha-256) for the farm's user."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.sdists import free_port, wait_for_port

USER = DATABASE = "wheelwright"


def postgres_bin(program: str) -> str:
    """Debian keeps the server's programs off PATH, under /usr/lib/postgresql/<major>/bin."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{program}")) or [shutil.which(program)]
    if not found[-1]:
        raise AssertionError(f"{program} not found: apt-get install postgresql (make test does)")
    return found[-1]


def _as_postgres(cmd: list[str]) -> list[str]:
    # The server refuses to run as root: as root, run it as Debian's postgres user.
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@contextlib.contextmanager
def postgres_server():
    """Yields the SQLAlchemy URL (postgresql://wheelwright:PASSWORD@127.0.0.1:PORT/wheelwright)."""
    top = Path(tempfile.mkdtemp(prefix="wheelwright-pg-"))
    data, password, port = top / "data", secrets.token_urlsafe(16), free_port()
    (top / "pwfile").write_text(password + "\n")
    if os.geteuid() == 0:
        account = pwd.getpwnam("postgres")
        os.chown(top, account.pw_uid, account.pw_gid)
        os.chown(top / "pwfile", account.pw_uid, account.pw_gid)
    subprocess.run(
        _as_postgres(
            [
                postgres_bin("initdb"),
                "-D",
                str(data),
                "-U",
                USER,
                "--auth=scram-sha-256",
                f"--pwfile={top / 'pwfile'}",
                "-E",
                "UTF8",
                "--locale=C",
            ]
        ),
        check=True,
        capture_output=True,
    )
    pg_ctl = postgres_bin("pg_ctl")
    subprocess.run(
        _as_postgres(
            [
                pg_ctl,
                "-D",
                str(data),
                "-l",
                str(top / "server.log"),
                "-w",
                "start",
                "-o",
                f"-c listen_addresses=127.0.0.1 -p {port} -k {top}",
            ]
        ),
        check=True,
        capture_output=True,
    )
    try:
        wait_for_port(port)
        subprocess.run(
            [
                "psql",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-U",
                USER,
                "-d",
                "postgres",
                "-c",
                f"CREATE DATABASE {DATABASE}",
            ],
            check=True,
            capture_output=True,
            env={**os.environ, "PGPASSWORD": password},
        )
        yield f"postgresql://{USER}:{password}@127.0.0.1:{port}/{DATABASE}"
    finally:
        subprocess.run(
            _as_postgres([pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"]), capture_output=True
        )
        shutil.rmtree(top, ignore_errors=True)


def query(url: str, sql: str) -> list[tuple]:
    import psycopg2  # the `postgresql` extra's driver, as the master uses it

    with contextlib.closing(psycopg2.connect(url)) as connection, connection.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchall()
