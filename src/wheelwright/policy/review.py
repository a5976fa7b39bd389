"""The allow-list of projects we build, and the review queue of projects waiting for a human."""

from __future__ import annotations

import contextlib
import fcntl
import json
import time
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import InvalidName, canonicalize_name
from packaging.version import Version

from wheelwright.bootstrap.plan import buildable, plan_tree
from wheelwright.common.files import write_atomic
from wheelwright.farm.settings import one_line
from wheelwright.policy.lastgood import ConfigError, read_last_good


class AllowlistError(ConfigError):
    pass


class Allowlist(dict[str, list]):
    """Project name -> the specifiers of its lines: a release is wanted if any line allows it
    (`torch==2.1.*` and `torch==2.2.*` on two lines: both series)."""

    def wants(self, project: str, version: str, prereleases: bool = False) -> bool:
        parsed = Version(version)
        # A specifier that names a pre-release (==2.0rc1) wants it even where pre-releases are not.
        return any(
            spec.contains(parsed, prereleases=True)
            and (prereleases or spec.prereleases or not parsed.is_prerelease)
            for spec in self.get(canonicalize_name(project), [])
        )


def read_allowlist(path: Path) -> Allowlist:
    """A project a line, bare (every release) or with PEP 440 specifiers (`numpy>=2`); `#` starts a
    comment. A bad line is an error naming it."""
    found = Allowlist()
    if not path.exists():
        return found
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            requirement = Requirement(line)
            name = canonicalize_name(requirement.name, validate=True)
        except (InvalidRequirement, InvalidName):
            raise AllowlistError(
                f"{path}:{number}: {line!r} is not a project name (with specifiers)"
            ) from None
        if requirement.extras or requirement.marker or requirement.url:
            raise AllowlistError(f"{path}:{number}: {line!r}: a name and version specifiers only")
        found.setdefault(name, []).append(requirement.specifier)
    return found


def allowlist_for(farm) -> tuple[Allowlist, str | None]:
    """The allow-list for a build, and a warning when the file is broken and its last good
    version stands in."""
    return read_last_good(farm.allowlist, read_allowlist, farm.last_good_dir / farm.allowlist.name)


@contextlib.contextmanager
def _locked_queue(queue: Path):
    """The queue's entries, read and written back under its lock."""
    queue.parent.mkdir(parents=True, exist_ok=True)
    with open(queue.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        entries = read_queue(queue)
        yield entries
        write_atomic(queue, (json.dumps(entries, indent=2, sort_keys=True) + "\n").encode())


def queue_for_review(
    queue: Path,
    project: str,
    reason: str,
    requested_by: str,
    held: dict | None = None,
    waiting: dict | None = None,
) -> None:
    """Add project to the review queue (once; later requests are added to its entry). held: a
    release the scan held (version, sha256, findings), let through by an approval; waiting: the
    build that failed for want of the project (package, version, builder), forced again once
    the project is approved and its wheel published."""
    with _locked_queue(queue) as entries:
        name = canonicalize_name(project)
        entry = entries.setdefault(name, {"project": name, "first_seen": _now(), "requests": []})
        request = {
            "reason": reason,
            "requested_by": requested_by,
            **({"waiting": waiting} if waiting else {}),
        }
        if request not in entry["requests"]:
            entry["requests"].append(request)
        if held and held["sha256"] not in {h["sha256"] for h in entry.setdefault("held", [])}:
            entry["held"].append(held)


def decide(
    farm, project: str, approve: bool, reviewer: str, note: str, queued: bool = True
) -> dict:
    """Take project off the review queue; approved, it joins the allow-list. The decision is
    logged in farm/logs/review.log. Returns the queue entry. queued=False: a project not in the
    queue may be approved too (one that an approval --with-deps pulls in)."""
    name = canonicalize_name(project)
    one_line(reviewer, "reviewer's name", ReviewError)
    one_line(note, "note", ReviewError)
    with _locked_queue(farm.review_queue) as entries:
        if name not in entries and queued:
            raise ReviewError(
                f"{name} is not in the review queue ({', '.join(sorted(entries)) or 'it is empty'})"
            )
        entry = entries.pop(name, {"project": name, "requests": []})
        if approve:
            with _locked_queue(farm.review_waiting) as waiting:
                waiting[name] = [
                    *waiting.get(name, []),
                    *(
                        dict(r["waiting"], state=f"waiting for {name}'s wheel")
                        for r in entry["requests"]
                        if "waiting" in r
                    ),
                ]
        if approve and name not in read_allowlist(farm.allowlist):
            text = farm.allowlist.read_text() if farm.allowlist.exists() else ""
            with open(farm.allowlist, "a") as allowlist:
                allowlist.write(
                    ("\n" if text and not text.endswith("\n") else "")
                    + f"{name}  # approved by {reviewer} {_now()}: {note}\n"
                )
    farm.logs_dir.mkdir(parents=True, exist_ok=True)
    with open(farm.logs_dir / "review.log", "a") as log:
        log.write(
            f"{_now()} {'approved' if approve else 'rejected'} {name} by {reviewer}: {note}\n"
        )
    return entry


def pulled_in(farm, project: str) -> list[str]:
    """The projects an approval of project would pull in: those its latest release's tree needs
    built that are neither allow-listed nor in our index (read from metadata, building nothing)."""
    allowlist = read_allowlist(farm.allowlist)
    nodes, _ = plan_tree(farm, [project], "", 0)
    return sorted(
        {n.project for n in buildable(nodes).values() if n.project not in allowlist}
        - {canonicalize_name(project)}
    )


def forget_built(farm, project: str) -> bool:
    """A project our index now has a wheel of leaves the review queue (a bootstrap or a forced
    build made it): the builds that waited on it wait for its wheel, as after an approval. A
    release the scan held stays for its reviewer. Returns whether it was in the queue."""
    name = canonicalize_name(project)
    with _locked_queue(farm.review_queue) as entries:
        entry = entries.get(name)
        if entry is None or entry.get("held"):
            return False
        del entries[name]
    waited = [
        dict(r["waiting"], state=f"waiting for {name}'s wheel")
        for r in entry["requests"]
        if "waiting" in r
    ]
    if waited:
        with _locked_queue(farm.review_waiting) as waiting:
            waiting[name] = [*waiting.get(name, []), *waited]
    return True


def builds_to_force(farm, project: str, builder: str, pure: bool) -> list[dict]:
    """The builds that waited on an approved project, now that its wheel is published on builder
    (every builder, for a pure wheel): marked forced, and returned. A build also waiting on a
    project still in the queue stays for that one's approval."""
    name = canonicalize_name(project)
    with _locked_queue(farm.review_queue) as queue:
        blocked = {
            (r["waiting"]["package"], r["waiting"]["builder"])
            for entry in queue.values()
            for r in entry["requests"]
            if "waiting" in r
        }
    chosen = []
    with _locked_queue(farm.review_waiting) as waiting:
        for build in waiting.get(name, []):
            if build["state"].startswith("waiting") and (pure or build["builder"] == builder):
                if (build["package"], build["builder"]) in blocked:
                    build["state"] = "waiting for another review"
                else:
                    build["state"] = f"forced again {_now()}"
                    chosen.append(build)
    return chosen


class ReviewError(ValueError):
    pass


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def read_queue(queue: Path) -> dict:
    return json.loads(queue.read_text()) if queue.exists() else {}
