"""Reproducibility checks: a published wheel built again (on another worker if there is one, never
published) and compared with what the index serves.

The published wheel is what the worker built plus what the master added (provenance, SBOM, and
RECORD anew), and its provenance keeps `built_sha256`, the sha256 of what the worker built: a
rebuild with that sha256 is the same wheel bit for bit. Otherwise the members are compared by
hash, with a text diff for those that read as text.
"""

from __future__ import annotations

import difflib
import hashlib
import random
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from packaging.utils import parse_wheel_filename

from wheelwright.common.lookup import build_number
from wheelwright.common.wheelcheck import check_members
from wheelwright.publishing.provenance import is_ours
from wheelwright.publishing.rebuilddiff import builds_of

MAX_DIFF_LINES = 200
MAX_TEXT_MEMBER = 1 << 20


class NothingToVerify(Exception):
    pass


def plan_verify(farm, project: str, version: str) -> dict:
    """The properties of a verify build of project==version: its latest build's version, build
    number, and the worker to avoid (the one that built it)."""
    builds = builds_of(farm.index_url, project, version)
    if not builds:
        raise NothingToVerify(f"our index has no wheel of {project} {version} to verify: build it")
    latest = builds[-1]
    return {
        "wheel_version": str(parse_wheel_filename(latest["filename"])[1]),
        "build_tag": build_number(latest["filename"]),
        "avoid_worker": latest["provenance"].get("workername"),
    }


def prefer_another_worker(builder, workers, buildrequest):
    """A builder's nextWorker: for a verify build, a worker other than the one that built the
    wheel when one is free (else that one: a check on the same worker still catches the clock)."""
    avoid = buildrequest.properties.getProperty("avoid_worker")
    others = [w for w in workers if w.worker.workername != avoid]
    return random.choice(others or workers) if workers else None


@dataclass
class Comparison:
    reproducible: bool  # bit for bit
    differing: list[str] = field(default_factory=list)
    only_published: list[str] = field(default_factory=list)
    only_rebuilt: list[str] = field(default_factory=list)
    text: str = ""


def _members(zf: zipfile.ZipFile, skip) -> dict[str, bytes]:
    return {
        i.filename: zf.read(i) for i in zf.infolist() if not skip(i.filename) and not i.is_dir()
    }


def _text_diff(name: str, old: bytes, new: bytes) -> list[str]:
    if max(len(old), len(new)) > MAX_TEXT_MEMBER:
        return []
    try:
        a, b = old.decode(), new.decode()
    except UnicodeDecodeError:
        return []
    lines = list(
        difflib.unified_diff(
            a.splitlines(), b.splitlines(), f"published/{name}", f"rebuilt/{name}", lineterm=""
        )
    )
    return lines[:MAX_DIFF_LINES] + (
        [f"... ({len(lines) - MAX_DIFF_LINES} more lines)"] if len(lines) > MAX_DIFF_LINES else []
    )


def compare(published: Path, rebuilt: Path, built_sha256: str | None) -> Comparison:
    """The published wheel against a rebuild of it."""
    check_members(rebuilt)  # a build made it: no bomb before its members are read
    rebuilt_sha256 = hashlib.sha256(rebuilt.read_bytes()).hexdigest()
    if rebuilt_sha256 == built_sha256:
        return Comparison(
            True,
            text=f"reproducible: the rebuild is the wheel the worker built, bit for bit "
            f"(sha256 {rebuilt_sha256})\n",
        )
    with zipfile.ZipFile(published) as old_zip, zipfile.ZipFile(rebuilt) as new_zip:
        old = _members(old_zip, is_ours)
        new = _members(new_zip, lambda name: name.endswith(".dist-info/RECORD"))
    differing = sorted(n for n in set(old) & set(new) if old[n] != new[n])
    result = Comparison(False, differing, sorted(set(old) - set(new)), sorted(set(new) - set(old)))
    lines = [
        f"not reproducible: the rebuild's sha256 is {rebuilt_sha256}, the worker built {built_sha256}"
    ]
    if not (differing or result.only_published or result.only_rebuilt):
        lines.append(
            "the same files with the same bytes, but not the same archive (member dates, modes or order)"
        )
    lines += [f"only in the published wheel: {n}" for n in result.only_published]
    lines += [f"only in the rebuild: {n}" for n in result.only_rebuilt]
    for name in differing:
        lines.append(
            f"differs: {name} (sha256 {hashlib.sha256(old[name]).hexdigest()[:16]}… published, "
            f"{hashlib.sha256(new[name]).hexdigest()[:16]}… rebuilt)"
        )
        lines += _text_diff(name, old[name], new[name])
    result.text = "\n".join(lines) + "\n"
    return result
