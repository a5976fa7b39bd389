"""What versions of a project our index has, with nothing but the standard library (the
worker-side tools use it too)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from packaging.requirements import Requirement
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import Version

from wheelwright.index.store import JSON_CONTENT_TYPE


class IndexUnreachable(Exception):
    pass


def _listing(index_url: str, project: str) -> dict | None:
    url = f"{index_url.rstrip('/')}/{canonicalize_name(project)}/"
    request = urllib.request.Request(url, headers={"Accept": JSON_CONTENT_TYPE})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise IndexUnreachable(f"our index answered {exc.code} for {url}") from None
    except urllib.error.URLError as exc:
        raise IndexUnreachable(f"our index at {index_url} cannot be reached: {exc.reason}") from None


def index_versions(index_url: str, project: str) -> list[str] | None:
    """The versions our index lists for project (PEP 700), or None if it has no such project."""
    listing = _listing(index_url, project)
    return None if listing is None else listing.get("versions", [])


def unsatisfied(requirement: Requirement, versions: list[str]) -> str | None:
    """Why no version our index has satisfies the requirement, or None if one does."""
    if any(requirement.specifier.contains(v, prereleases=True) for v in versions):
        return None
    return f"{requirement} (our index has {', '.join(versions) or 'no version'})"


def _wheels(index_url: str, project: str, version: str):
    """(listing entry, build number, tags) of each wheel of project==version our index lists."""
    for entry in (_listing(index_url, project) or {"files": []})["files"]:
        try:
            _, found, build, tags = parse_wheel_filename(entry["filename"])
        except InvalidWheelFilename:
            continue
        if found == Version(version):
            yield entry, build[0] if build else 0, tags


def next_build_tag(index_url: str, project: str, version: str) -> int | None:
    """The build number a rebuild of project==version gets: one more than its wheels' highest
    (a wheel with none counts 0); None if our index has no wheel of it."""
    tags = [build for _, build, _ in _wheels(index_url, project, version)]
    return max(tags) + 1 if tags else None


def published_pure_wheel(index_url: str, project: str, version: str, build_tag: int = 0) -> dict | None:
    """The provenance of a pure (`none-any`) wheel of project==version with that build number in
    our index, if there is one."""
    for entry, build, tags in _wheels(index_url, project, version):
        if build == build_tag and all(t.abi == "none" and t.platform == "any" for t in tags):
            url = f"{index_url.rstrip('/')}/{canonicalize_name(project)}/{entry['filename']}.provenance.json"
            with urllib.request.urlopen(url, timeout=60) as response:
                return {"filename": entry["filename"], **json.load(response)}
    return None
