"""What versions of a project our index has, with nothing but the standard library (the
worker-side tools use it too)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

from packaging.requirements import Requirement
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import Version

JSON_CONTENT_TYPE = "application/vnd.pypi.simple.v1+json"


class IndexUnreachable(Exception):
    pass


def _read(index_url: str, url: str, accept: str = JSON_CONTENT_TYPE) -> bytes | None:
    """What our index serves at url (None for a 404); IndexUnreachable when it cannot say."""
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, headers={"Accept": accept}), timeout=60
        ) as response:
            return response.read()
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise IndexUnreachable(f"our index answered {exc.code} for {url}") from None
    except urllib.error.URLError as exc:
        raise IndexUnreachable(
            f"our index at {index_url} cannot be reached: {exc.reason}"
        ) from None


def listing(index_url: str, project: str) -> dict | None:
    """Our index's PEP 691 listing of project (None if it has no such project)."""
    found = _read(index_url, f"{index_url.rstrip('/')}/{canonicalize_name(project)}/")
    return None if found is None else json.loads(found)


def projects(index_url: str) -> list[str]:
    """The projects our index has (its PEP 691 project list)."""
    return sorted(
        p["name"] for p in json.loads(_read(index_url, index_url) or b"{}").get("projects", [])
    )


def index_versions(index_url: str, project: str) -> list[str] | None:
    """The versions our index lists for project (PEP 700), or None if it has no such project."""
    found = listing(index_url, project)
    return None if found is None else found.get("versions", [])


def unsatisfied(requirement: Requirement, versions: list[str]) -> str | None:
    """Why no version our index has satisfies the requirement, or None if one does."""
    if any(requirement.specifier.contains(v, prereleases=True) for v in versions):
        return None
    return f"{requirement} (our index has {', '.join(versions) or 'no version'})"


def short_of(index_url: str, requirements: list[Requirement]) -> tuple[list[str], list[str]]:
    """What our index lacks for these requirements: the projects it does not have at all, and why
    no version it has satisfies the others."""
    missing, unsatisfiable = set(), []
    for requirement in requirements:
        versions = index_versions(index_url, requirement.name)
        if versions is None:
            missing.add(canonicalize_name(requirement.name))
        elif problem := unsatisfied(requirement, versions):
            unsatisfiable.append(problem)
    return sorted(missing), unsatisfiable


def build_number(filename: str) -> int:
    """A wheel's build number (0 when it has none)."""
    build = parse_wheel_filename(filename)[2]
    return build[0] if build else 0


def is_pure(filename: str) -> bool:
    """A `none-any` wheel: one wheel serves every builder."""
    return all(t.abi == "none" and t.platform == "any" for t in parse_wheel_filename(filename)[3])


def wheels_of(index_url: str, project: str, version: str) -> list[dict]:
    """The listing entries of the wheels of project==version our index has."""
    found = []
    for entry in (listing(index_url, project) or {"files": []})["files"]:
        try:
            if parse_wheel_filename(entry["filename"])[1] == Version(version):
                found.append(entry)
        except InvalidWheelFilename:
            continue
    return found


def published_pure_wheel(
    index_url: str, project: str, version: str, build_tag: int = 0
) -> dict | None:
    """The provenance of a pure (`none-any`) wheel of project==version with that build number in
    our index, if there is one."""
    for entry in wheels_of(index_url, project, version):
        if build_number(entry["filename"]) == build_tag and is_pure(entry["filename"]):
            return {
                "filename": entry["filename"],
                **provenance(index_url, project, entry["filename"]),
            }
    return None


def published_as(index_url: str, sha256: str) -> tuple[str, str] | None:
    """(project, filename) of the file our index published with that sha256, if any."""
    found = _read(
        index_url, urllib.parse.urljoin(index_url, f"../by-sha256/{sha256}"), "text/plain"
    )
    if found is None:
        return None
    project, _, filename = found.decode().partition("/")
    return project, filename


def file_url(index_url: str, project: str, filename: str) -> str:
    return f"{index_url.rstrip('/')}/{canonicalize_name(project)}/{filename}"


def provenance(index_url: str, project: str, filename: str) -> dict:
    """Which build made a file of our index (the provenance.json beside it)."""
    with urllib.request.urlopen(
        file_url(index_url, project, filename) + ".provenance.json", timeout=60
    ) as response:
        return json.load(response)


def wheel_requires(index_url: str, project: str, version: str) -> list[str]:
    """The Requires-Dist of project==version as our index has it (the PEP 658 metadata of one of
    its wheels)."""
    from packaging.metadata import Metadata

    for entry in wheels_of(index_url, project, version):
        with urllib.request.urlopen(
            file_url(index_url, project, entry["filename"]) + ".metadata", timeout=60
        ) as response:
            return [
                str(r)
                for r in Metadata.from_email(response.read(), validate=False).requires_dist or []
            ]
    return []
