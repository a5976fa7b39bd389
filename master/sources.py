"""The source archive: every sdist we built from, verified, kept in our source index.

A rebuild takes the sdist from the archive and never asks upstream again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from wheelwright.index.upload import UploadError, upload
from wheelwright.index.upstream import Sdist, SourceError, download_verified, find_sdist


@dataclass(frozen=True)
class ArchivedSdist:
    path: Path
    sdist: Sdist
    origin: str  # "archive" or the upstream index it came from
    archive_url: str


def obtain_sdist(farm, project: str, version: str | None, upload_user: str, upload_password: str) -> ArchivedSdist:
    """The verified sdist of project==version on the master's disk, archived in our source index."""
    try:
        archived = find_sdist(farm.sources_url, project, version) if version else None
    except SourceError:
        archived = None
    if archived is not None:
        path = download_verified(archived, farm.source_cache)
        return ArchivedSdist(path, archived, "archive", archived.url)
    found = find_sdist(farm.upstream, project, version)
    path = download_verified(found, farm.source_cache)
    try:
        upload(farm.upload_url, upload_user, upload_password, path, provenance={"upstream_url": found.url})
    except UploadError as exc:
        # Another builder of the matrix archived it meanwhile: the same file, or the archive is wrong.
        if exc.status != 409 or _archived_sha256(farm, found) != found.sha256:
            raise
    return ArchivedSdist(path, found, farm.upstream, f"{farm.sources_url}{found.project}/{found.filename}")


def _archived_sha256(farm, sdist: Sdist) -> str | None:
    try:
        archived = find_sdist(farm.sources_url, sdist.project, sdist.version)
    except SourceError:
        return None
    return archived.sha256 if archived.filename == sdist.filename else None
