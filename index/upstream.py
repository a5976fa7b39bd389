"""Reading a package index: find a project's sdist and download it, verified by sha256.

pypi-simple speaks PEP 691 JSON and falls back to the PEP 503 HTML page.
"""

from __future__ import annotations

import hashlib
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import requests
from packaging.specifiers import SpecifierSet
from packaging.utils import InvalidSdistFilename, canonicalize_name, parse_sdist_filename
from packaging.version import InvalidVersion, Version

from wheelwright.common.files import atomic_file, sha256_of

SDIST_PREFERENCE = (".tar.gz", ".zip")


class SourceError(Exception):
    """The source could not be had, or could not be trusted."""


@dataclass(frozen=True)
class Sdist:
    project: str
    version: str
    filename: str
    url: str
    sha256: str


def _project_page(index_url: str, project: str):
    """The project's page (PEP 691 JSON where the index speaks it), None if it has no such project."""
    # Imported here: pypi-simple (with Beautiful Soup) takes a fifth of a second to import, and
    # most `wheelwright` commands never read a page.
    from pypi_simple import ACCEPT_JSON_PREFERRED, NoSuchProjectError, PyPISimple

    with PyPISimple(index_url, accept=ACCEPT_JSON_PREFERRED) as client:
        try:
            return client.get_project_page(project)
        except NoSuchProjectError:
            return None


def list_sdists(index_url: str, project: str) -> list[Sdist]:
    """Every release's sdist of project on the index (yanked ones left out), newest first, the
    preferred kind of archive where a release has two."""
    wanted = canonicalize_name(project)
    page = _project_page(index_url, wanted)
    if page is None:
        raise SourceError(f"{project} is not on {index_url}")
    best: dict[Version, tuple] = {}
    for pkg in page.packages:
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
        Sdist(wanted, str(v), pkg.filename, pkg.url, pkg.digests["sha256"])
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
    index_url: str, project: str, version: str | None = None, specifier: SpecifierSet | None = None
) -> Sdist:
    """The sdist of `project==version` on the index (with no version: the latest final release,
    of those the specifier allows)."""
    for sdist in list_sdists(index_url, project):
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
        for block in response.iter_content(1 << 20):
            digest.update(block)
            out.write(block)
        if digest.hexdigest() != sdist.sha256:
            raise SourceError(
                f"{sdist.filename}: sha256 mismatch: downloaded {digest.hexdigest()}, "
                f"the index lists {sdist.sha256}"
            )
    return target
