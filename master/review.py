"""The allow-list of projects we build, and the review queue of projects waiting for a human."""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path

from packaging.utils import InvalidName, canonicalize_name

from wheelwright.master.lastgood import ConfigError, read_last_good


class AllowlistError(ConfigError):
    pass


def read_allowlist(path: Path) -> set[str]:
    """Project names, one a line; `#` starts a comment. A bad line is an error naming it."""
    if not path.exists():
        return set()
    names = set()
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            names.add(canonicalize_name(line, validate=True))
        except InvalidName:
            raise AllowlistError(f"{path}:{number}: {line!r} is not a project name") from None
    return names


def allowlist_for(farm) -> tuple[set[str], str | None]:
    """The allow-list for a build, and a warning when the file is broken and its last good
    version stands in."""
    return read_last_good(farm.allowlist, read_allowlist, farm.last_good_dir / farm.allowlist.name)


def queue_for_review(queue: Path, project: str, reason: str, requested_by: str) -> None:
    """Add project to the review queue (once; later requests are added to its entry)."""
    queue.parent.mkdir(parents=True, exist_ok=True)
    with open(queue.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        entries = read_queue(queue)
        name = canonicalize_name(project)
        entry = entries.setdefault(name, {"project": name, "first_seen": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                          "requests": []})
        request = {"reason": reason, "requested_by": requested_by}
        if request not in entry["requests"]:
            entry["requests"].append(request)
        tmp = queue.with_suffix(".tmp")
        tmp.write_text(json.dumps(entries, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, queue)


def read_queue(queue: Path) -> dict:
    return json.loads(queue.read_text()) if queue.exists() else {}
