"""Reading a package index: find a project's sdist and download it, verified by sha256.

pypi-simple speaks PEP 691 JSON and falls back to the PEP 503 HTML page.
"""

from __future__ import annotations

import hashlib
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import requests
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import InvalidSdistFilename, canonicalize_name, parse_sdist_filename
from packaging.version import InvalidVersion, Version

from wheelwright.common.files import atomic_file, sha256_of

SDIST_PREFERENCE = (".tar.gz", ".zip")
# What an upstream may hand us: a project's page, and one sdist.
MAX_PAGE = 64 << 20
MAX_SDIST = 1 << 30


class SourceError(Exception):
    """The source could not be had, or could not be trusted."""


@dataclass(frozen=True)
class Sdist:
    project: str
    version: str
    filename: str
    url: str
    sha256: str
    # The Python versions the release supports, as the index's page says (PEP 503/691).
    requires_python: str | None = None

    def supports(self, python: str) -> bool:
        """Whether the release's Requires-Python admits Python `python` (X.Y); an unreadable
        one admits every Python, as pip treats it."""
        if not self.requires_python:
            return True
        try:
            return SpecifierSet(self.requires_python).contains(python, prereleases=True)
        except InvalidSpecifier:
            return True


def _project_page(index_url: str, project: str):
    """The project's page (PEP 691 JSON where the index speaks it), None if it has no such
    project; read to MAX_PAGE at most, then parsed by pypi-simple."""
    # Imported here: pypi-simple (with Beautiful Soup) takes a fifth of a second to import, and
    # most `wheelwright` commands never read a page.
    from pypi_simple import ACCEPT_JSON_PREFERRED, ProjectPage

    url = urllib.parse.urljoin(index_url.rstrip("/") + "/", f"{project}/")
    with (
        requests.Session() as session,
        session.get(url, headers={"Accept": ACCEPT_JSON_PREFERRED}, stream=True, timeout=60) as r,
    ):
        if r.status_code == 404:
            return None
        r.raise_for_status()
        data = b"".join(_capped(r, MAX_PAGE, f"{url}: the page"))
        kind = r.headers.get("content-type", "").split(";")[0].strip()
        if kind.startswith("application/vnd.pypi.simple.v1+json") or kind == "application/json":
            import json

            return ProjectPage.from_json_data(json.loads(data), r.url)
        return ProjectPage.from_html(project, data.decode(r.encoding or "utf-8", "replace"), r.url)


def _capped(response: requests.Response, limit: int, what: str):
    """The response's body in blocks, refused past limit bytes (whatever it said it was)."""
    if int(response.headers.get("content-length") or 0) > limit:
        raise SourceError(f"{what} is larger than {limit >> 20} MiB; refused")
    read = 0
    for block in response.iter_content(1 << 20):
        read += len(block)
        if read > limit:
            raise SourceError(f"{what} is larger than {limit >> 20} MiB; refused")
        yield block


def files_hosts(index_url: str, extra: Sequence[str] = ()) -> set[str]:
    """The hosts an index's pages may send us to for files: its own, the file host of the public
    index when it is that one (pip's own constant), and those the settings allow."""
    from pip._internal.models.index import PyPI
    from pypi_simple import PYPI_SIMPLE_ENDPOINT

    hosts = {urllib.parse.urlsplit(index_url).netloc, *extra}
    if index_url.rstrip("/") == PYPI_SIMPLE_ENDPOINT.rstrip("/"):
        hosts.add(PyPI.file_storage_domain)
    return hosts


def list_sdists(index_url: str, project: str, extra_hosts: Sequence[str] = ()) -> list[Sdist]:
    """Every release's sdist of project on the index (yanked ones left out), newest first, the
    preferred kind of archive where a release has two. A file elsewhere than the index's own
    host or an allowed files host is refused: the page does not choose where we connect."""
    wanted = canonicalize_name(project)
    page = _project_page(index_url, wanted)
    if page is None:
        raise SourceError(f"{project} is not on {index_url}")
    allowed = files_hosts(index_url, extra_hosts)
    best: dict[Version, tuple] = {}
    for pkg in page.packages:
        host = urllib.parse.urlsplit(pkg.url).netloc
        if urllib.parse.urlsplit(pkg.url).scheme not in ("http", "https") or host not in allowed:
            raise SourceError(
                f"{index_url} lists {pkg.filename} at {host or pkg.url!r}, which is neither its "
                f"own host nor an allowed files host; refused (farm.json upstream_files_hosts)"
            )
        try:
            name, pkg_version = parse_sdist_filename(pkg.filename)
        except (InvalidSdistFilename, InvalidVersion):
            continue
        if canonicalize_name(name) != wanted or pkg.is_yanked or not pkg.digests.get("sha256"):
            continue
        rank = -SDIST_PREFERENCE.index(_suffix(pkg.filename))
        if pkg_version not in best or rank > best[pkg_version][0]:
            best[pkg_version] = (rank, pkg)
    return [
        Sdist(wanted, str(v), pkg.filename, pkg.url, pkg.digests["sha256"], pkg.requires_python)
        for v, (_, pkg) in sorted(best.items(), reverse=True)
    ]


def upstream_versions(index_url: str, project: str) -> list[str]:
    """Every version the index has of project, in any kind of file, yanked ones too (empty if it
    has no such project)."""
    page = _project_page(index_url, canonicalize_name(project))
    if page is None:
        return []
    return sorted({*(page.versions or []), *(pkg.version for pkg in page.packages if pkg.version)})


def find_sdist(
    index_url: str,
    project: str,
    version: str | None = None,
    specifier: SpecifierSet | None = None,
    extra_hosts: Sequence[str] = (),
) -> Sdist:
    """The sdist of `project==version` on the index (with no version: the latest final release,
    of those the specifier allows)."""
    for sdist in list_sdists(index_url, project, extra_hosts):
        if version is not None and Version(sdist.version) == Version(version):
            return sdist
        if version is None and (specifier or SpecifierSet()).contains(sdist.version):
            return sdist
    wanted_version = (
        f"=={version}" if version else f"{specifier}" if specifier else " (any final release)"
    )
    raise SourceError(f"no sdist of {canonicalize_name(project)}{wanted_version} on {index_url}")


def _suffix(filename: str) -> str:
    return next(s for s in SDIST_PREFERENCE if filename.endswith(s))


def open_on_same_host(session: requests.Session, url: str, hops: int = 5) -> requests.Response:
    """GET url, following redirects only within its host: the index vouched for that host's file."""
    host = urllib.parse.urlsplit(url).netloc
    for _ in range(hops + 1):
        response = session.get(url, stream=True, timeout=60, allow_redirects=False)
        if not response.is_redirect:
            response.raise_for_status()
            return response
        target = urllib.parse.urljoin(url, response.headers["location"])
        response.close()
        if urllib.parse.urlsplit(target).netloc != host:
            raise SourceError(f"{url} redirects to another host ({target}); refused")
        url = target
    raise SourceError(f"{url}: more than {hops} redirects")


def download_verified(
    sdist: Sdist, dest_dir: Path, session: requests.Session | None = None
) -> Path:
    """Download `sdist` into dest_dir; the file appears only if its sha256 matches. One there
    already with that sha256 (a bootstrap's plan read it) is not downloaded again."""
    session = session or requests.Session()
    dest_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    target = dest_dir / sdist.filename
    if target.is_file() and sha256_of(target) == sdist.sha256:
        return target
    with atomic_file(target) as out, open_on_same_host(session, sdist.url) as response:
        for block in _capped(response, MAX_SDIST, sdist.filename):
            digest.update(block)
            out.write(block)
        if digest.hexdigest() != sdist.sha256:
            raise SourceError(
                f"{sdist.filename}: sha256 mismatch: downloaded {digest.hexdigest()}, "
                f"the index lists {sdist.sha256}"
            )
    return target
