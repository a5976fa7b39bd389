"""Which releases of allow-listed projects upstream to build: read from the projects' PEP 691/503
pages, fetched with conditional requests (an unchanged page costs a 304, or, where the upstream
sends `X-PyPI-Last-Serial`, nothing to parse).

A project's state (JSON, kept by the change source) holds the page's validators, the versions
already decided on (built, or passed over), and the releases waiting out their cooldown. The
first look at a project only notes what it has: the farm builds what is released from then on.

A release is built when its sdist is on the page (a release whose wheels came first is built when
its sdist comes), it is not yanked (a yanked one is looked at again if it is unyanked), an
allow-list line wants its version (pre-releases only where the package's settings allow them, or
a line names one), and it is older than the cooldown (`min_release_age`).
"""

from __future__ import annotations

from dataclasses import dataclass

import requests
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version
from pypi_simple import ACCEPT_JSON_PREFERRED, ProjectPage

SERIAL_HEADER = "X-PyPI-Last-Serial"


@dataclass(frozen=True)
class Release:
    project: str
    version: str
    sdist: str
    timestamp: int


def page_url(upstream: str, project: str) -> str:
    return f"{upstream.rstrip('/')}/{canonicalize_name(project)}/"


def fetch_page(
    session: requests.Session, upstream: str, project: str, state: dict, conditional: bool = True
) -> ProjectPage | None:
    """The project's page, or None if it has not changed since the state's validators. Updates
    the validators in state. A project upstream lacks has an empty page."""
    headers = {"Accept": ACCEPT_JSON_PREFERRED}
    if conditional and state.get("etag"):
        headers["If-None-Match"] = state["etag"]
    if conditional and state.get("last_modified"):
        headers["If-Modified-Since"] = state["last_modified"]
    response = session.get(page_url(upstream, project), headers=headers, timeout=60)
    if response.status_code == 304:
        return None
    if response.status_code == 404:
        return ProjectPage(project=project, packages=[], repository_version=None, last_serial=None)
    response.raise_for_status()
    serial = response.headers.get(SERIAL_HEADER)
    unchanged = conditional and serial is not None and serial == state.get("serial")
    state.update(
        etag=response.headers.get("ETag"),
        last_modified=response.headers.get("Last-Modified"),
        serial=serial,
    )
    return None if unchanged else ProjectPage.from_response(response, project)


def decide(
    page: ProjectPage,
    state: dict,
    wants,
    min_age: float,
    now: float,
    announced: frozenset[str] = frozenset(),
) -> list[Release]:
    """The releases on the page to build now; notes them (and those passed over) in state.
    wants(version) says whether the allow-list and the package's settings want a version; on a
    first look, the versions a changelog announced are new, the rest history."""
    first_look = "seen" not in state
    seen = set(state.get("seen", []))
    was_waiting, waiting = state.get("waiting", {}), {}
    found = []
    for package in page.packages:
        if package.package_type != "sdist" or not package.version:
            continue
        try:
            version = str(Version(package.version))
        except InvalidVersion:
            continue
        if version in seen or package.is_yanked:
            continue
        if (first_look and version not in announced) or not wants(version):
            seen.add(version)
            continue
        uploaded = (
            package.upload_time.timestamp()
            if package.upload_time
            else was_waiting.get(version, now)
        )
        if min_age > 0 and now - uploaded < min_age:
            waiting[version] = uploaded
            continue
        seen.add(version)
        found.append(
            Release(canonicalize_name(page.project), version, package.filename, int(uploaded))
        )
    state.update(seen=sorted(seen, key=Version), waiting=waiting)
    return found


def due(state: dict, min_age: float, now: float) -> bool:
    """Whether a release waiting out its cooldown is due (its page is then fetched in full)."""
    return any(now - uploaded >= min_age for uploaded in state.get("waiting", {}).values())
