"""Upload accounts of the index host: a JSON file of salted PBKDF2 password hashes."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from pathlib import Path

ROUNDS = 100_000


def _hash(password: str, salt: bytes) -> str:
    return hashlib.pbkdf2_hmac("sha256", password.encode(), salt, ROUNDS).hex()


def add(users: Path, user: str, password: str) -> None:
    table = json.loads(users.read_text()) if users.exists() else {}
    salt = os.urandom(16)
    table[user] = {"salt": salt.hex(), "pbkdf2_sha256": _hash(password, salt)}
    tmp = users.with_suffix(".tmp")
    tmp.write_text(json.dumps(table, indent=1))
    os.chmod(tmp, 0o600)
    os.replace(tmp, users)


def check(users: Path, user: str, password: str) -> bool:
    try:
        row = json.loads(users.read_text())[user]
    except (FileNotFoundError, KeyError, ValueError):
        return False
    return hmac.compare_digest(row["pbkdf2_sha256"], _hash(password, bytes.fromhex(row["salt"])))
