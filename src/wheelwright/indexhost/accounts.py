"""Accounts as a JSON file of salted PBKDF2 password hashes, each with its roles: the index
host's upload accounts, and the release engineers of the farm's web UI."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from wheelwright.common.files import write_atomic

ROUNDS = 100_000
# Passwords this process has found right, as keyed hashes under a key it alone holds, by user
# and stored hash: PBKDF2 is slow on purpose (60 ms here), and every upload and every login of
# the farm's command checks the same password again. A wrong password still costs the full
# PBKDF2, and a changed password (a new salt and hash) is checked anew.
_KEY = os.urandom(32)
_FOUND_RIGHT: dict[tuple[str, str], bytes] = {}
# An unknown user's password is hashed all the same, so a failure takes as long whether or not
# the user exists. After FAILURES_ALLOWED failures of one name within FAILURE_WINDOW seconds,
# that name is refused unchecked until the window has passed: guessing goes no faster than that.
_NOBODY = {"salt": os.urandom(16).hex(), "pbkdf2_sha256": ""}
FAILURES_ALLOWED = 10
FAILURE_WINDOW = 60.0
_FAILURES: dict[str, list[float]] = {}
_FAILURES_LOCK = threading.Lock()


def _recent_failures(user: str, now: float) -> list[float]:
    with _FAILURES_LOCK:
        kept = [t for t in _FAILURES.get(user, []) if now - t < FAILURE_WINDOW]
        _FAILURES[user] = kept
        if not kept:
            del _FAILURES[user]
        return kept


def _failed(user: str, now: float) -> None:
    with _FAILURES_LOCK:
        if len(_FAILURES) > 100_000:  # a flood of names: start again rather than grow for ever
            _FAILURES.clear()
        _FAILURES.setdefault(user, []).append(now)


def _hash(password: str, salt: bytes) -> str:
    return hashlib.pbkdf2_hmac("sha256", password.encode(), salt, ROUNDS).hex()


def _table(users: Path) -> dict:
    try:
        return json.loads(users.read_text())
    except (FileNotFoundError, ValueError):
        return {}


def add(users: Path, user: str, password: str, roles: Sequence[str] = ()) -> None:
    table = _table(users)
    salt = os.urandom(16)
    table[user] = {"salt": salt.hex(), "pbkdf2_sha256": _hash(password, salt), "roles": list(roles)}
    write_atomic(users, json.dumps(table, indent=1).encode(), mode=0o600)


def check(users: Path, user: str, password: str) -> bool:
    now = time.monotonic()
    if len(_recent_failures(user, now)) >= FAILURES_ALLOWED:
        return False
    found = _table(users).get(user)
    exists = isinstance(found, dict)
    row: dict = found if isinstance(found, dict) else _NOBODY
    known = (user, row["pbkdf2_sha256"])
    keyed = hmac.digest(_KEY, password.encode(), "sha256")
    if exists and hmac.compare_digest(_FOUND_RIGHT.get(known, b""), keyed):
        return True
    right = hmac.compare_digest(row["pbkdf2_sha256"], _hash(password, bytes.fromhex(row["salt"])))
    if right and exists:
        _FOUND_RIGHT[known] = keyed
        return True
    _failed(user, now)
    return False


def roles(users: Path, user: str) -> list[str]:
    row = _table(users).get(user)
    return list(row.get("roles", [])) if isinstance(row, dict) else []


def main(argv=None) -> None:
    """An index host on a machine of its own: add the farm's upload account, password on stdin."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m wheelwright.indexhost.accounts",
        description="add an upload account (or give it a new password), read from stdin",
    )
    parser.add_argument("users", type=Path, help="the index host's --users file")
    parser.add_argument("name")
    args = parser.parse_args(argv)
    password = sys.stdin.readline().strip()
    if not password:
        raise SystemExit("no password on stdin")
    add(args.users, args.name, password)


if __name__ == "__main__":
    main()
