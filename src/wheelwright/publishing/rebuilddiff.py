"""What changed between two builds of one version: read from the wheels themselves (the
provenance they carry, METADATA, RECORD), so any two published wheels can be compared.

    build environment   packages added, removed, changed (the pins each wheel carries)
    patches, settings   the patches applied and the package's settings
    Requires-Dist       added, removed
    files               added, removed, and those whose bytes differ (RECORD's hashes)

The .dist-info and .data folders are compared under one name, so a post-release bump is no
difference in itself; what the master adds (provenance, SBOM, RECORD) is left out.
"""

from __future__ import annotations

import csv
import hashlib
import io
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from packaging.metadata import Metadata
from packaging.utils import parse_wheel_filename

from wheelwright.common import lookup
from wheelwright.common.bounded import MAX_METADATA, open_zip, zip_member
from wheelwright.common.wheeledit import VERSION_HEADER
from wheelwright.publishing.provenance import carried_by, is_ours

MAX_RECORD = 64 << 20


@dataclass(frozen=True)
class WheelFacts:
    filename: str
    provenance: dict = field(default_factory=dict)
    requires: frozenset[str] = frozenset()
    members: dict[str, str] = field(
        default_factory=dict
    )  # name (folders made neutral) -> RECORD hash

    @property
    def build(self) -> str:
        return self.provenance.get("build_url") or "a build that recorded no provenance"


def _neutral(name: str, stem: str) -> str:
    top, sep, rest = name.partition("/")
    for suffix in (".dist-info", ".data"):
        if top == stem + suffix:
            return f"<{suffix[1:]}>{sep}{rest}"
    return name


def facts_of(wheel: Path) -> WheelFacts:
    with open_zip(wheel) as zf:
        dist_info = next(
            n.split("/")[0] for n in zf.namelist() if n.split("/")[0].endswith(".dist-info")
        )
        stem = dist_info[: -len(".dist-info")]
        record_info = zf.getinfo(f"{dist_info}/RECORD")
        if record_info.file_size > MAX_RECORD:
            raise ValueError(f"{wheel.name}: RECORD is larger than {MAX_RECORD >> 20} MiB")
        rows = csv.reader(io.StringIO(zf.read(record_info).decode()))
        members = {_neutral(row[0], stem): row[1] for row in rows if row and not is_ours(row[0])}
        raw = zip_member(zf, f"{dist_info}/METADATA", MAX_METADATA)
        metadata = Metadata.from_email(raw, validate=False)
    # A bump rewrites Version, and only that: compare METADATA without it.
    members["<dist-info>/METADATA"] = hashlib.sha256(
        VERSION_HEADER.sub(b"", raw, count=1)
    ).hexdigest()
    return WheelFacts(
        wheel.name,
        carried_by(wheel) or {},
        frozenset(map(str, metadata.requires_dist or [])),
        members,
    )


def _changes(title: str, before: dict, after: dict) -> list[str]:
    lines = [f"  + {k} {after[k]}".rstrip() for k in sorted(set(after) - set(before))]
    lines += [f"  - {k} {before[k]}".rstrip() for k in sorted(set(before) - set(after))]
    lines += [
        f"  ~ {k} {before[k]} -> {after[k]}"
        for k in sorted(set(before) & set(after))
        if before[k] != after[k]
    ]
    return [f"{title}:", *lines] if lines else [f"{title}: unchanged"]


def _patches(provenance: dict) -> dict:
    return provenance.get("patch_sha256s") or dict.fromkeys(provenance.get("patches") or [], "")


def report(before: WheelFacts, after: WheelFacts) -> str:
    """The difference between two builds' wheels, as text for a log."""
    old, new = before.provenance, after.provenance
    lines = [
        f"before: {before.filename} ({before.build})",
        f"after:  {after.filename} ({after.build})",
        "",
    ]
    lines += _changes("build environment", dict(old.get("freeze", [])), dict(new.get("freeze", [])))
    lines += _changes("patches", _patches(old), _patches(new))
    lines += _changes(
        "settings", old.get("package_settings") or {}, new.get("package_settings") or {}
    )
    lines += _changes(
        "Requires-Dist", dict.fromkeys(before.requires, ""), dict.fromkeys(after.requires, "")
    )
    files = _changes("files", {k: "" for k in before.members}, {k: "" for k in after.members})
    differ = sorted(
        k for k in set(before.members) & set(after.members) if before.members[k] != after.members[k]
    )
    if differ:
        files = [line for line in files if line != "files: unchanged"] or ["files:"]
        files += [f"  ~ {name} (other bytes)" for name in differ]
    lines += files
    if before.members == after.members:
        lines.append("\nthe wheel's files are identical, byte for byte")
    return "\n".join(lines) + "\n"


def builds_of(index_url: str, project: str, version: str) -> list[dict]:
    """Our index's wheels built from project==version (its bumps included), oldest first, each
    listing entry with its provenance."""
    found = []
    for entry in (lookup.listing(index_url, project) or {"files": []})["files"]:
        try:
            name, wheel_version, _, _ = parse_wheel_filename(entry["filename"])
        except ValueError:
            continue
        if wheel_version.public != version and not _bump_of(wheel_version, version):
            continue
        provenance = lookup.provenance(index_url, project, entry["filename"])
        if str(provenance.get("version") or wheel_version) == version:
            found.append({**entry, "provenance": provenance})
    return sorted(found, key=lambda e: (e.get("upload-time", ""), e["filename"]))


def _bump_of(wheel_version, version: str) -> bool:
    return wheel_version.is_postrelease and str(wheel_version).startswith(version + ".post")


def previous_build(
    index_url: str, project: str, version: str, filename: str, builder: str
) -> dict | None:
    """The build before the one that published filename, of that version, on that builder (a
    pure wheel: on any builder), with the same tags."""
    tags = parse_wheel_filename(filename)[3]
    earlier = []
    for entry in builds_of(index_url, project, version):
        if entry["filename"] == filename:
            break
        if parse_wheel_filename(entry["filename"])[3] == tags:
            earlier.append(entry)
    same_builder = [e for e in earlier if e["provenance"].get("builder") == builder]
    pure = lookup.is_pure(filename)
    candidates = same_builder or (earlier if pure else [])
    return candidates[-1] if candidates else None


def download(index_url: str, project: str, filename: str, dest_dir: Path) -> Path:
    target = dest_dir / filename
    with (
        urllib.request.urlopen(
            lookup.file_url(index_url, project, filename), timeout=300
        ) as response,
        open(target, "wb") as out,
    ):
        while block := response.read(1 << 20):
            out.write(block)
    return target
