"""Index hosts of other kinds (pypiserver, devpi, a company's Artifactory) that every wheel our
index publishes is also uploaded to, with twine: the upload protocol they all take (master side).

Our index stays the one the farm builds from and the record of what was published (provenance,
yanks, PEP 658 metadata, the source archive); a mirror gets the same file, and keeps it: an upload
of a file it already holds is refused there, never replaced.

farm.json: "mirrors": [{"name": "devpi", "upload_url": "https://devpi.internal/team/wheels/",
"simple_url": "https://devpi.internal/team/wheels/+simple/", "user": "wheelwright"}]; the password
in the secrets folder as `mirror-<name>`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import requests
from pypi_simple import NoSuchProjectError, PyPISimple

from wheelwright.common.files import sha256_of
from wheelwright.farm.control import farm_environment
from wheelwright.indexhost.store import parse_distribution_filename


@dataclass(frozen=True)
class Mirror:
    name: str
    upload_url: str
    simple_url: str
    user: str

    @property
    def secret(self) -> str:
        return f"mirror-{self.name}"


@dataclass(frozen=True)
class MirrorResult:
    mirror: str
    published: bool
    # The upload was refused but the mirror lists this very file (same sha256): nothing to do.
    already_there: bool
    said: str


def mirrors_of(farm) -> list[Mirror]:
    return [Mirror(**entry) for entry in farm.mirrors]


def publish(farm, mirror: Mirror, path: Path, timeout: float = 300) -> MirrorResult:
    """Upload one file with twine; its password reaches twine in the environment, not on a command line."""
    try:
        password = farm.secret(mirror.secret)
    except FileNotFoundError:
        return MirrorResult(
            mirror.name,
            False,
            False,
            f"no password: write it to {farm.secrets_dir / mirror.secret}",
        )
    env = {
        **farm_environment(),
        "TWINE_USERNAME": mirror.user,
        "TWINE_PASSWORD": password,
        "TWINE_NON_INTERACTIVE": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    try:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "twine",
                "upload",
                "--disable-progress-bar",
                "--repository-url",
                mirror.upload_url,
                os.fspath(path),
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return MirrorResult(
            mirror.name, False, False, f"no answer from {mirror.upload_url} within {timeout:g} s"
        )
    said = (proc.stdout + proc.stderr).strip()
    if proc.returncode == 0:
        return MirrorResult(mirror.name, True, False, said)
    # Each kind of host refuses a file it holds in words of its own (409, 400, 403): its listing says.
    held = held_by(mirror, path)
    return MirrorResult(
        mirror.name,
        False,
        held == sha256_of(path),
        said
        + (
            f"\n{mirror.name} lists {path.name} already, "
            + (
                "the same file"
                if held == sha256_of(path)
                else f"with another sha256 ({held}): left alone"
            )
            if held
            else ""
        ),
    )


def held_by(mirror: Mirror, path: Path) -> str | None:
    """The sha256 of the file of this name the mirror lists (HTML or PEP 691), if it lists one."""
    project = parse_distribution_filename(path.name).project
    try:
        with PyPISimple(mirror.simple_url) as client:
            page = client.get_project_page(project)
    except (NoSuchProjectError, requests.RequestException):
        return None
    return next((p.digests.get("sha256") for p in page.packages if p.filename == path.name), None)
