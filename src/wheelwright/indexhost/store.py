"""The package index on disk: atomic publishing and per-project listings.

Layout under a root (one root for wheels, another for sources)::

    simple/index.html, simple/index.json                 the project list
    simple/<project>/index.html, index.json              PEP 503 / PEP 691 listing
    simple/<project>/<file>                              the distribution
    simple/<project>/<file>.metadata                     PEP 658 core metadata (wheels)
    simple/<project>/<file>.provenance.json              which build made it
    simple/<project>/.files.json                         manifest the listings are made from

Every file a client can reach is written under a temporary name and renamed or linked into
place, so a reader sees either nothing or the whole file. A distribution file is linked, never
renamed, into place: the link fails if the name exists, so a published file is never replaced.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import html
import json
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from packaging.metadata import Metadata
from packaging.utils import (
    InvalidName,
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from wheelwright.common.files import sha256_of, write_atomic
from wheelwright.common.wheelcheck import WheelRefused, check_wheel

API_VERSION = "1.1"
MANIFEST = ".files.json"


class PublishError(Exception):
    """The file was refused; the index is unchanged."""


class AlreadyPublished(PublishError):
    pass


class StorageError(PublishError):
    """The index could not write (a full disk, say); nothing was published."""


@dataclass(frozen=True)
class Distribution:
    filename: str
    project: str
    version: str
    kind: str  # "wheel" or "sdist"


def parse_distribution_filename(filename: str) -> Distribution:
    if "/" in filename or "\\" in filename or filename.startswith("."):
        raise PublishError(f"{filename!r} is not a plain file name")
    try:
        if filename.endswith(".whl"):
            name, version, _, _ = parse_wheel_filename(filename)
            return Distribution(filename, project_name(name), str(version), "wheel")
        name, version = parse_sdist_filename(filename)
    except (InvalidWheelFilename, InvalidSdistFilename) as exc:
        raise PublishError(str(exc)) from None
    return Distribution(filename, project_name(name), str(version), "sdist")


def project_name(name: str) -> str:
    """The canonical form of a PEP 508 project name; anything else is refused, so that no name
    leads outside the index or into its pages as markup."""
    try:
        return canonicalize_name(name, validate=True)
    except InvalidName:
        raise PublishError(f"{name!r} is not a valid project name") from None


def wheel_metadata(path: Path, dist: Distribution) -> tuple[bytes, list[str]]:
    """The wheel's METADATA and the warnings about it, after checking everything in the wheel
    (see wheelcheck)."""
    try:
        return check_wheel(path, dist.filename, dist.project, dist.version)
    except WheelRefused as exc:
        raise PublishError(str(exc)) from None


class IndexStore:
    def __init__(self, root: Path | str):
        self.root = Path(root)
        self.simple = self.root / "simple"
        self.simple.mkdir(parents=True, exist_ok=True)
        # sha256 -> "project/filename" of each published file, for `wheelwright which SHA256`
        self.hashes = self.root / "by-sha256"
        self.hashes.mkdir(exist_ok=True)
        if not (self.simple / "index.json").exists():
            self._write_project_list()

    def project_dir(self, project: str) -> Path:
        return self.simple / project_name(project)

    @contextlib.contextmanager
    def _locked(self, project_dir: Path):
        project_dir.mkdir(exist_ok=True)
        with open(project_dir / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def files(self, project: str) -> dict:
        try:
            return json.loads((self.project_dir(project) / MANIFEST).read_text())
        except FileNotFoundError:
            return {}

    def projects(self) -> list[str]:
        return sorted(p.name for p in self.simple.iterdir() if (p / MANIFEST).exists())

    def publish(
        self,
        filename: str,
        source: Path,
        *,
        sha256: str,
        provenance: dict | None = None,
        extra_files: dict[str, bytes] | None = None,
    ) -> dict:
        """Publish `source` as `filename`; returns its manifest entry.

        `extra_files` are published beside it as `<filename><suffix>` (for example the build
        environment's pip freeze). Raises PublishError, leaving the index as it was.
        """
        dist = parse_distribution_filename(filename)
        actual = sha256_of(source)
        if actual != sha256:
            raise PublishError(f"{filename}: sha256 is {actual}, the uploader said {sha256}")
        metadata, warnings = wheel_metadata(source, dist) if dist.kind == "wheel" else (None, [])
        requires_python = None
        if metadata is not None:
            requires_python = Metadata.from_email(metadata, validate=False).requires_python
        if warnings:
            provenance = {**(provenance or {}), "metadata_warnings": warnings}
        project_dir = self.project_dir(dist.project)
        new_project = not (project_dir / MANIFEST).exists()
        with self._locked(project_dir):
            target = project_dir / filename
            manifest = self.files(dist.project)
            # The same bytes again (an upload whose answer was lost) is a no-op, and completes a
            # publish that a crash cut off between linking the file and listing it.
            relinked = target.exists() and sha256_of(target) == actual
            if relinked and filename in manifest:
                return manifest[filename]
            if target.exists() and not relinked:
                raise AlreadyPublished(
                    f"{filename} is already in the index; published files are never replaced"
                )
            entry = {
                "filename": filename,
                "version": dist.version,
                "sha256": actual,
                "size": source.stat().st_size,
                "upload-time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "provenance": provenance or {},
            }
            if requires_python:
                entry["requires-python"] = str(requires_python)
            side_files = {
                f"{filename}.provenance.json": json.dumps(
                    entry["provenance"], indent=2, sort_keys=True
                ).encode()
            }
            if metadata is not None:
                side_files[f"{filename}.metadata"] = metadata
                entry["metadata-sha256"] = hashlib.sha256(metadata).hexdigest()
            side_files.update(
                {f"{filename}{suffix}": data for suffix, data in (extra_files or {}).items()}
            )
            try:
                for name, data in side_files.items():
                    write_atomic(project_dir / name, data)
                if not relinked:
                    self._link_new(source, target)
                write_atomic(
                    project_dir / MANIFEST,
                    json.dumps({**manifest, filename: entry}, indent=1, sort_keys=True).encode(),
                )
                self._write_listing(dist.project, {**manifest, filename: entry})
                self._note_hash(dist.project, entry)
            except AlreadyPublished:
                raise
            except OSError as exc:
                self._roll_back(
                    dist.project, [*([] if relinked else [filename]), *side_files], manifest
                )
                raise StorageError(
                    f"{filename}: not published, the index could not write it ({exc.strerror})"
                ) from None
        if new_project:
            with self._locked(self.simple):
                self._write_project_list()
        return entry

    def add_verification(self, project: str, filename: str, record: dict) -> None:
        """Add a reproducibility check of a published file to its provenance (the manifest's and
        the .provenance.json beside it)."""
        project_dir = self.project_dir(project)
        if not (project_dir / MANIFEST).exists():
            raise PublishError(f"our index has no file {filename} of {project}")
        with self._locked(project_dir):
            manifest = self.files(project)
            if filename not in manifest:
                raise PublishError(f"our index has no file {filename} of {project}")
            provenance = manifest[filename].get("provenance", {})
            provenance = {
                **provenance,
                "verifications": [*provenance.get("verifications", []), record],
            }
            manifest[filename] = {**manifest[filename], "provenance": provenance}
            write_atomic(
                project_dir / f"{filename}.provenance.json",
                json.dumps(provenance, indent=2, sort_keys=True).encode(),
            )
            write_atomic(
                project_dir / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode()
            )

    def _note_hash(self, project: str, entry: dict) -> None:
        path = self.hashes / entry["sha256"]
        if not path.exists():
            write_atomic(path, f"{project}/{entry['filename']}".encode())

    def find_hash(self, sha256: str) -> str | None:
        """ "project/filename" of the published file with that sha256, if there is one."""
        if not re.fullmatch(r"[0-9a-f]{64}", sha256):
            return None
        try:
            return (self.hashes / sha256).read_text()
        except FileNotFoundError:
            return None

    def _roll_back(self, project: str, names: list[str], manifest: dict) -> None:
        """Undo a publish that failed halfway (a full disk, say): its files go first, which frees
        the space to put the manifest and listings back as they were."""
        project_dir = self.project_dir(project)
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(project_dir / name)
        if manifest:
            write_atomic(
                project_dir / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode()
            )
            self._write_listing(project, manifest)
        else:
            for name in (MANIFEST, "index.json", "index.html"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(project_dir / name)

    def yank(
        self, project: str, version: str, reason: str | None, filename: str | None = None
    ) -> list[str]:
        """Mark the files of project==version (or the one named) yanked with the reason (PEP 592),
        or not yanked with reason None. Files are never deleted. Returns the files changed."""
        project_dir = self.project_dir(project)
        what = f"{filename} of {project} {version}" if filename else f"{project} {version}"
        if not (project_dir / MANIFEST).exists():  # no lock file left behind for a project we lack
            raise PublishError(f"our index has no file of {what}")
        with self._locked(project_dir):
            manifest = self.files(project)
            names = [
                n
                for n, e in manifest.items()
                if _same_version(e["version"], version) and filename in (None, n)
            ]
            if not names:
                raise PublishError(f"our index has no file of {what}")
            for name in names:
                entry = {k: v for k, v in manifest[name].items() if k != "yanked"}
                manifest[name] = {**entry, "yanked": reason} if reason is not None else entry
            write_atomic(
                project_dir / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode()
            )
            self._write_listing(project, manifest)
        return sorted(names)

    def reconcile(self) -> list[str]:
        """Make manifests and listings agree with the files on disk (after a crash): a file that
        is there but unlisted is listed, a listed file that is not there is dropped, and
        leftover temporary files go. Returns what it changed, for the log."""
        changes = []
        for project_dir in sorted(
            p for p in self.simple.iterdir() if p.is_dir() and not p.is_symlink()
        ):
            with self._locked(project_dir):
                for tmp in project_dir.glob(".tmp-*"):
                    tmp.unlink()
                manifest = self.files(project_dir.name)
                on_disk = {
                    p.name
                    for p in project_dir.iterdir()
                    if p.is_file()
                    and not p.is_symlink()
                    and p.name.endswith((".whl", ".tar.gz", ".zip"))
                }
                fixed = {name: entry for name, entry in manifest.items() if name in on_disk}
                changes += [
                    f"{project_dir.name}: {name} is listed but missing; unlisted"
                    for name in set(manifest) - on_disk
                ]
                for name in sorted(on_disk - set(manifest)):
                    fixed[name] = self._entry_on_disk(project_dir, name)
                    changes.append(f"{project_dir.name}: {name} was on disk but unlisted; listed")
                if fixed != manifest:
                    write_atomic(
                        project_dir / MANIFEST, json.dumps(fixed, indent=1, sort_keys=True).encode()
                    )
                    self._write_listing(project_dir.name, fixed)
                for entry in fixed.values():  # files published before the index kept their hashes
                    self._note_hash(project_dir.name, entry)
        if changes:
            with self._locked(self.simple):
                self._write_project_list()
        return changes

    @staticmethod
    def _entry_on_disk(project_dir: Path, filename: str) -> dict:
        path = project_dir / filename
        entry = {
            "filename": filename,
            "version": parse_distribution_filename(filename).version,
            "sha256": sha256_of(path),
            "size": path.stat().st_size,
            "upload-time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(path.stat().st_mtime)),
            "provenance": {},
        }
        with contextlib.suppress(OSError, ValueError):
            entry["provenance"] = json.loads(
                (project_dir / f"{filename}.provenance.json").read_text()
            )
        metadata = project_dir / f"{filename}.metadata"
        if metadata.is_file():
            raw = metadata.read_bytes()
            entry["metadata-sha256"] = hashlib.sha256(raw).hexdigest()
            requires_python = Metadata.from_email(raw, validate=False).requires_python
            if requires_python:
                entry["requires-python"] = str(requires_python)
        return entry

    def regenerate(self) -> int:
        """Rewrite every listing from the manifests (after a repair by hand); returns how many."""
        projects = self.projects()
        for project in projects:
            with self._locked(self.project_dir(project)):
                self._write_listing(project, self.files(project))
        with self._locked(self.simple):
            self._write_project_list()
        return len(projects)

    @staticmethod
    def _link_new(source: Path, target: Path) -> None:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
                while block := src.read(1 << 20):
                    out.write(block)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, 0o644)
            try:
                os.link(tmp, target)
            except FileExistsError:
                raise AlreadyPublished(f"{target.name} is already in the index") from None
        finally:
            os.unlink(tmp)

    def _write_listing(self, project: str, manifest: dict) -> None:
        project_dir = self.project_dir(project)
        entries = [manifest[name] for name in sorted(manifest)]
        files = []
        links = []
        for e in entries:
            f = {
                "filename": e["filename"],
                "url": e["filename"],
                "hashes": {"sha256": e["sha256"]},
                "size": e["size"],
                "upload-time": e["upload-time"],
            }
            attrs = f' href="{html.escape(e["filename"])}#sha256={e["sha256"]}"'
            if "requires-python" in e:
                f["requires-python"] = e["requires-python"]
                attrs += f' data-requires-python="{html.escape(e["requires-python"])}"'
            if "yanked" in e:
                f["yanked"] = e["yanked"] or True
                attrs += f' data-yanked="{html.escape(e["yanked"])}"'
            if "metadata-sha256" in e:
                f["core-metadata"] = f["data-dist-info-metadata"] = {"sha256": e["metadata-sha256"]}
                value = f"sha256={e['metadata-sha256']}"
                attrs += f' data-core-metadata="{value}" data-dist-info-metadata="{value}"'
            files.append(f)
            links.append(f"    <a{attrs}>{html.escape(e['filename'])}</a><br/>")
        versions = sorted({e["version"] for e in entries})
        listing = {
            "meta": {"api-version": API_VERSION},
            "name": project,
            "versions": versions,
            "files": files,
        }
        write_atomic(project_dir / "index.json", json.dumps(listing, indent=1).encode())
        write_atomic(project_dir / "index.html", _html_page(f"Links for {project}", links).encode())

    def _write_project_list(self) -> None:
        projects = self.projects()
        listing = {
            "meta": {"api-version": API_VERSION},
            "projects": [{"name": p} for p in projects],
        }
        links = [f'    <a href="{html.escape(p)}/">{html.escape(p)}</a><br/>' for p in projects]
        write_atomic(self.simple / "index.json", json.dumps(listing, indent=1).encode())
        write_atomic(self.simple / "index.html", _html_page("Simple index", links).encode())


def _same_version(a: str, b: str) -> bool:
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return a == b


def _html_page(title: str, links: list[str]) -> str:
    body = "\n".join(links)
    return (
        "<!DOCTYPE html>\n<html>\n  <head>\n"
        f'    <meta name="pypi:repository-version" content="{API_VERSION}">\n'
        f"    <title>{html.escape(title)}</title>\n  </head>\n  <body>\n"
        f"    <h1>{html.escape(title)}</h1>\n{body}\n  </body>\n</html>\n"
    )
