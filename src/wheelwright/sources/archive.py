"""The source archive: every sdist we built from, verified, kept in our source index.

A rebuild takes the sdist from the archive and never asks upstream again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name

from wheelwright.common.files import sha256_of
from wheelwright.indexhost.upload import UploadError, upload
from wheelwright.sources.upstream import Sdist, SourceError, download_verified, find_sdist
from wheelwright.sources.vcs import sdist_from_git, sdist_from_url


@dataclass(frozen=True)
class ArchivedSdist:
    path: Path
    sdist: Sdist
    origin: str  # "archive", "upstream" or "git"
    archive_url: str
    fetched_from: str  # where the bytes came from, for the log
    commit: str | None = None


def obtain_sdist(
    farm,
    project: str,
    version: str | None,
    upload_user: str,
    upload_password: str,
    source: dict | None = None,
) -> ArchivedSdist:
    """The verified sdist of project==version on the master's disk, archived in our source index
    (made from the git repository or archive `source` names, where the package's settings name one)."""
    try:
        archived = find_sdist(farm.sources_url, project, version) if version else None
    except SourceError:
        archived = None
    if archived is not None:
        path = download_verified(archived, farm.source_cache)
        return ArchivedSdist(
            path, archived, "archive", archived.url, "our source archive (rebuild)"
        )
    if source:
        if not version:
            raise SourceError(
                f"{project}'s source is not an sdist upstream: name the version to build"
            )
        made = (
            sdist_from_git(
                source["git"], source.get("ref", "${version}"), project, version, farm.source_cache
            )
            if "git" in source
            else sdist_from_url(source["url"], project, version, farm.source_cache)
        )
        found = Sdist(
            canonicalize_name(project), version, made.path.name, made.url, sha256_of(made.path)
        )
        provenance, origin, commit, path = (
            made.provenance,
            "git" if made.commit else "url",
            made.commit,
            made.path,
        )
        fetched_from = (
            f"git {made.url} {made.ref} (commit {made.commit})" if made.commit else made.url
        )
    else:
        found = find_sdist(farm.upstream, project, version, extra_hosts=farm.upstream_files_hosts)
        provenance, origin, fetched_from, commit = (
            {"upstream_url": found.url},
            "upstream",
            found.url,
            None,
        )
        path = download_verified(found, farm.source_cache)
    try:
        upload(farm.upload_url, upload_user, upload_password, path, provenance=provenance)
    except UploadError as exc:
        # Another builder of the matrix archived it meanwhile: the same file, or the archive is wrong.
        if exc.status != 409 or _archived_sha256(farm, found) != found.sha256:
            raise
    return ArchivedSdist(
        path,
        found,
        origin,
        f"{farm.sources_url}{found.project}/{found.filename}",
        fetched_from,
        commit,
    )


def _archived_sha256(farm, sdist: Sdist) -> str | None:
    try:
        archived = find_sdist(farm.sources_url, sdist.project, sdist.version)
    except SourceError:
        return None
    return archived.sha256 if archived.filename == sdist.filename else None
