"""Client of the index host's upload API (the legacy API that twine speaks)."""

from __future__ import annotations

import json
from pathlib import Path

import requests

from wheelwright.common.files import sha256_of
from wheelwright.indexhost.store import parse_distribution_filename


class UploadError(Exception):
    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


def upload(
    upload_url: str,
    user: str,
    password: str,
    path: Path,
    *,
    provenance: dict | None = None,
    freeze: str | None = None,
    timeout: float = 300,
) -> dict:
    """Publish `path`; returns the index's manifest entry for it. Raises UploadError."""
    dist = parse_distribution_filename(path.name)
    fields = {
        ":action": "file_upload",
        "protocol_version": "1",
        "name": dist.project,
        "version": dist.version,
        "filetype": "bdist_wheel" if dist.kind == "wheel" else "sdist",
        "sha256_digest": sha256_of(path),
        "wheelwright_provenance": json.dumps(provenance or {}),
    }
    if freeze is not None:
        fields["wheelwright_freeze"] = freeze
    try:
        with open(path, "rb") as f:
            response = requests.post(
                upload_url,
                data=fields,
                files={"content": (path.name, f)},
                auth=(user, password),
                timeout=timeout,
            )
    except requests.RequestException as exc:
        raise UploadError(f"the index host at {upload_url} did not answer: {exc}") from None
    if response.status_code != 200:
        raise UploadError(
            f"{path.name}: the index refused it ({response.status_code}): {response.text.strip()}",
            response.status_code,
        )
    return response.json()


def post_form(
    url: str, user: str, password: str, fields: dict[str, str], timeout: float = 60
) -> dict:
    """POST a form to one of the index host's actions (yank, verification); returns its answer."""
    try:
        response = requests.post(url, data=fields, auth=(user, password), timeout=timeout)
    except requests.RequestException as exc:
        raise UploadError(f"the index host at {url} did not answer: {exc}") from None
    if response.status_code != 200:
        raise UploadError(
            f"the index refused it ({response.status_code}): {response.text.strip()}",
            response.status_code,
        )
    return response.json()


def yank(
    yank_url: str,
    user: str,
    password: str,
    project: str,
    version: str,
    reason: str | None,
    filename: str | None = None,
    timeout: float = 60,
) -> dict:
    """Yank project==version (or one file of it) with the reason, or unyank it (reason None)."""
    fields = {
        "name": project,
        "version": version,
        "reason": reason or "",
        "filename": filename or "",
    }
    return post_form(yank_url, user, password, fields, timeout)


def add_verification(
    verification_url: str, user: str, password: str, project: str, filename: str, record: dict
) -> dict:
    """Add a reproducibility check's record to a published file's provenance."""
    fields = {"name": project, "filename": filename, "record": json.dumps(record)}
    return post_form(verification_url, user, password, fields)
