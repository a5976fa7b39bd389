"""The allow-list of projects we build, and the review queue of projects waiting for a human."""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path

from packaging.utils import canonicalize_name


def read_allowlist(path: Path) -> set[str]:
    if not path.exists():
        return set()
    names = set()
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(canonicalize_name(line))
    return names


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
