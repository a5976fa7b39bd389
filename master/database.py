"""The embedded SQLite database commits without waiting for the disk.

Buildbot keeps SQLite in WAL mode and opens a connection for each of its transactions (about a
hundred a build: its steps, logs and properties). Closing the last connection checkpoints the WAL
into the database and deletes it, and SQLite's default `synchronous=FULL` waits for the disk at
every commit: five fsyncs a transaction, which a busy disk stretches to tens of milliseconds. So
the master keeps one idle connection open to each SQLite database (the WAL stays; SQLite
checkpoints it every thousand pages), and commits with `synchronous=NORMAL`: in WAL mode the
database stays whole through any crash and no commit is lost when a process dies; only the last
commits before a power cut or an OS crash may be, which a restarted farm sees as builds it never
finished. PostgreSQL is left as configured.
"""

from __future__ import annotations

import sqlite3
import threading

from sqlalchemy import event
from sqlalchemy.pool import Pool

_kept_open: dict[str, sqlite3.Connection] = {}  # database file -> its idle connection
_lock = threading.Lock()


def _commit_without_fsync(dbapi_connection, _record) -> None:
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    dbapi_connection.execute("pragma synchronous = normal")
    path = dbapi_connection.execute("pragma database_list").fetchone()[2]
    if not path or dbapi_connection.execute("pragma journal_mode").fetchone()[0] != "wal":
        return  # in memory, or before Buildbot's first connection turned WAL on
    with _lock:
        if path not in _kept_open:
            kept = sqlite3.connect(path, check_same_thread=False)
            kept.execute("select count(*) from sqlite_master").fetchall()  # opens the WAL
            _kept_open[path] = kept


def relax_sqlite_commits() -> None:
    """For every SQLite connection the master opens from now on (once per process)."""
    if not event.contains(Pool, "connect", _commit_without_fsync):
        event.listen(Pool, "connect", _commit_without_fsync)
