"""The embedded SQLite database keeps its connection and commits without waiting for the disk.

Buildbot opens SQLite with SQLAlchemy's NullPool: a new connection for each of its transactions
(about a hundred a build: its steps, logs and properties), each one re-reading the schema (a few
milliseconds of the master's only database thread, a sixth of its time in a build). Closing the
last connection also checkpoints the WAL into the database and deletes it, and SQLite's default
`synchronous=FULL` waits for the disk at every commit: five fsyncs a transaction, which a busy
disk stretches to tens of milliseconds. So the master's SQLite engine pools its connections
(SQLAlchemy's own default for a database file: Buildbot runs one database thread for SQLite, so
one connection serves it, and the WAL stays), and commits with `synchronous=NORMAL`: in WAL mode
the database stays whole through any crash and no commit is lost when a process dies; only the
last commits before a power cut or an OS crash may be, which a restarted farm sees as builds it
never finished. PostgreSQL is left as configured.
"""

from __future__ import annotations

import sqlite3

from buildbot.db import enginestrategy
from sqlalchemy import event
from sqlalchemy.pool import Pool, QueuePool

_buildbot_special_case_sqlite = enginestrategy.special_case_sqlite


def _pooled_sqlite(u, kwargs):
    if u.database:  # a file (in memory, Buildbot's own pool is already one connection)
        kwargs.setdefault("poolclass", QueuePool)
    return _buildbot_special_case_sqlite(u, kwargs)


def _commit_without_fsync(dbapi_connection, _record) -> None:
    if isinstance(dbapi_connection, sqlite3.Connection):
        dbapi_connection.execute("pragma synchronous = normal")


def tune_sqlite() -> None:
    """For every SQLite engine the master makes from now on (once per process)."""
    enginestrategy.special_case_sqlite = _pooled_sqlite
    if not event.contains(Pool, "connect", _commit_without_fsync):
        event.listen(Pool, "connect", _commit_without_fsync)
