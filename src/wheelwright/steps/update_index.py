"""UpdateIndex: bring the wheel back to the master, check it again, and publish it through the
index host's authenticated upload API. Workers never hold the publishing credentials."""

from __future__ import annotations

import os
import re
from pathlib import Path
from zipfile import BadZipFile

from buildbot.process.results import SKIPPED, SUCCESS, WARNINGS
from buildbot.util import asyncSleep
from packaging.tags import Tag
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version
from twisted.internet import threads
from wheel.wheelfile import WheelError

from wheelwright.common.bounded import MAX_METADATA, open_zip, zip_member
from wheelwright.common.files import sha256_of
from wheelwright.common.lookup import build_number, file_url, is_pure
from wheelwright.common.wheelcheck import WheelRefused
from wheelwright.farm.settings import FORCE_SCHEDULER, UPLOAD_USER
from wheelwright.indexhost.store import PublishError, parse_distribution_filename
from wheelwright.indexhost.upload import UploadError, upload
from wheelwright.policy.review import builds_to_force, forget_built
from wheelwright.publishing import mirrors
from wheelwright.publishing.outbox import keep, retryable
from wheelwright.publishing.provenance import embed
from wheelwright.steps.base import DIST_DIR, WheelwrightStep, WritesToIndex, count, publishing
from wheelwright.steps.download_source import report_scan

MAX_WHEEL_SIZE = 4 << 30


# The platform tags a Linux builder of an architecture makes: its own, and the manylinux ones
# auditwheel gives (every pool is glibc's: a musllinux wheel is none of its making).
LINUX_PLATFORM = r"(linux|manylinux1|manylinux2010|manylinux2014|manylinux_\d+_\d+)_{arch}"


def tag_fits(tag: Tag, python: str, arch: str) -> bool:
    """Whether a wheel tag is exactly one the builder for Python `python` on `arch` may make: a pure
    Python tag (py*-none-any, built once for every builder), or one for this architecture and for
    this Python (or, with the stable ABI abi3, an older one)."""
    if tag.platform == "any":
        return tag.abi == "none" and (
            tag.interpreter.startswith("py") or tag.interpreter == _cp(python)
        )
    if not re.fullmatch(LINUX_PLATFORM.format(arch=re.escape(arch)), tag.platform):
        return False
    ours = _cp(python)
    if tag.abi == "abi3":
        return re.fullmatch(r"cp3\d+", tag.interpreter) is not None and int(
            tag.interpreter[3:]
        ) <= int(ours[3:])
    if tag.interpreter.startswith("cp"):
        return tag.interpreter == ours and tag.abi in (ours, "none")
    return tag.abi == "none" and tag.interpreter in ("py3", f"py{ours[2:]}")


def _cp(python: str) -> str:
    return "cp" + python.replace(".", "")


class UpdateIndex(WritesToIndex):
    name = "update-index"
    description = ["publishing"]

    def __init__(self, **kwargs):
        super().__init__(doStepIf=publishing, **kwargs)

    async def run(self):
        wheels = list(
            zip(self.getProperty("wheel_filenames"), self.getProperty("wheel_sha256s"), strict=True)
        )
        for filename, _ in wheels:
            problem = wheel_name_problem(self, filename)
            if problem:
                return await self.fail(problem)
        staging = self.farm.staging_dir / str(self.build.buildid)
        freeze = self.getProperty("build_freeze")
        if getattr(
            self.build, "scan_running", None
        ):  # the scan DownloadSource started beside the build
            with self.timing("scan"):
                await report_scan(self, await self.build.scan_running)
        with self.timing("provenance"):
            common = await self._provenance()
        urls, warnings, mirrored = [], [], []
        for filename, sha256 in wheels:
            provenance = {**common, "built_sha256": sha256}
            stamped = await self.stamped(filename, sha256, staging, provenance, freeze)
            if isinstance(stamped, str):
                return await self.fail(stamped)
            try:
                with self.timing("upload"):
                    entry = await self._upload(stamped, provenance, freeze)
            except UploadError as exc:
                if retryable(exc):
                    await threads.deferToThread(keep, stamped, provenance, freeze)
                    attempts = count(len(self.farm.publish_retry_delays) + 1, "attempt")
                    return await self.fail(
                        f"not published, kept at {stamped}: the master publishes it when the index "
                        f"takes it (it tries every {self.farm.kept_retry_interval:g} s). "
                        f"{attempts}, the last: {exc}"
                    )
                os.unlink(stamped)
                if exc.status == 409 and is_pure(filename):
                    # Another builder of the matrix published this pure wheel while we built it.
                    self.descriptionDone = [
                        f"pure wheel {filename} already published by another builder"
                    ]
                    self.build_summary = self.descriptionDone[0]
                    return SKIPPED
                return await self.fail(f"not published: {exc}")
            with self.timing("mirrors"):
                mirrored += [
                    await threads.deferToThread(mirrors.publish, self.farm, m, stamped)
                    for m in mirrors.mirrors_of(self.farm)
                ]
            os.unlink(stamped)
            warnings += [
                f"{filename}: {w}\n"
                for w in entry.get("provenance", {}).get("metadata_warnings", [])
            ]
            url = file_url(self.farm.index_url, self.package, filename)
            urls.append(url)
            await self.addURL(filename, url)
        if warnings:  # deviations from the metadata spec that installers accept
            await self.addCompleteLog("metadata-warnings", "".join(warnings))
        if mirrored:
            await self.addCompleteLog("mirrors", "".join(map(_mirrored, mirrored)))
        self.setProperty("wheel_urls", urls, self.name)
        self.descriptionDone = [f"published {count(len(urls), 'wheel')}"]
        self.build_summary = f"published {', '.join(url.rsplit('/', 1)[1] for url in urls)}"
        with self.timing("after review"):
            await threads.deferToThread(forget_built, self.farm, self.package)
            await self.force_waiting(all(is_pure(url.rsplit("/", 1)[1]) for url in urls))
        failed = sorted({r.mirror for r in mirrored if not (r.published or r.already_there)})
        if failed:  # published in our index all the same: the mirrors are copies
            self.descriptionDone.append(f"not on {', '.join(failed)} (see log mirrors)")
            return WARNINGS
        return SUCCESS

    async def stamped(
        self, filename: str, sha256: str, staging: Path, provenance: dict, freeze: str | None
    ) -> Path | str:
        """The worker's wheel brought back, checked against what the worker said of it and
        stamped with its provenance (a new file in staging); or why it cannot be published."""
        built = staging / "built" / filename
        if not await self.fetch_file(f"{DIST_DIR}/{filename}", built, MAX_WHEEL_SIZE):
            return f"could not bring {filename} back from the worker"
        try:
            actual = await threads.deferToThread(sha256_of, built)
            if actual != sha256:
                return f"{filename}: sha256 on the master is {actual}, the worker reported {sha256}"
            python = self.getProperty("python_version")
            excluded = await threads.deferToThread(excludes_python, built, python)
            if excluded:
                return (
                    f"{filename} requires Python {excluded}; this builder runs {python}: "
                    "not published (bootstrap plans choose a release that fits)"
                )
            with self.timing("provenance"):
                return await threads.deferToThread(embed, built, staging, provenance, freeze or "")
        except (WheelRefused, BadZipFile, WheelError, KeyError, ValueError) as exc:
            return (
                f"{filename}: cannot carry its provenance: {exc}"  # the index would refuse it too
            )
        finally:
            built.unlink()
            built.parent.rmdir()

    async def force_waiting(self, pure: bool) -> None:
        """Force again the builds that failed waiting on this project's review (log `after-review`)."""
        builds = await threads.deferToThread(
            builds_to_force, self.farm, self.package, self.getProperty("buildername"), pure
        )
        for build in builds:
            await self.master.scheduler_manager.namedServices[FORCE_SCHEDULER].force(
                "wheelwright",
                builderNames=[build["builder"]],
                package=build["package"],
                version=build["version"],
                reason=f"{self.package} approved and published",
            )
        if builds:
            await self.addCompleteLog(
                "after-review",
                "".join(
                    f"forced again: {b['package']} {b['version']} on {b['builder']}\n"
                    for b in builds
                ),
            )

    async def _upload(self, stamped, provenance: dict, freeze: str | None) -> dict:  # type: ignore[return]
        """Upload, retrying while the index host does not answer or fails (the last attempt
        returns or raises)."""
        for delay in [*self.farm.publish_retry_delays, None]:
            try:
                return await threads.deferToThread(
                    upload,
                    self.farm.upload_url,
                    UPLOAD_USER,
                    self.upload_password,
                    stamped,
                    provenance=provenance,
                    freeze=freeze,
                )
            except UploadError as exc:
                if delay is None or not retryable(exc):
                    raise
                self.description = [f"index host: {str(exc)[:80]}; retrying in {delay:g} s"]
                self.updateSummary()
                await asyncSleep(delay, self.master.reactor)

    async def _provenance(self) -> dict:
        keys = (
            "source_filename",
            "source_sha256",
            "source_url",
            "source_commit",
            "patches",
            "build_requires",
            "build_frontend",
            "package_settings",
            "patch_sha256s",
            "settings_commit",
            "scan_findings",
            "python_version",
            "arch",
            "workername",
            "pool",
            "version",
            "bump",
            "bump_number",
            "build_tag",
            "reason",
            "imports_skipped",
            "fallback",
            "repair",
            "system_packages",
            "system_tools",
        )
        return {
            "build_url": await self.build_url(),
            "python": self.python,
            "builder": self.getProperty("buildername"),
            "build_number": self.build.number,
            "package": self.package,
            "published_at": int(self.master.reactor.seconds()),
            "wheel_version": self.wheel_version,
            **{k: self.getProperty(k) for k in keys},
        }


def excludes_python(wheel, python: str | None) -> str | None:
    """The wheel's Requires-Python when it excludes Python `python` (X.Y), else None: pip would
    never install it there, and a builder publishes only what its own Python installs."""
    from packaging.metadata import Metadata
    from packaging.specifiers import InvalidSpecifier

    if not python:
        return None
    with open_zip(wheel) as zf:
        name = next((n for n in zf.namelist() if n.endswith(".dist-info/METADATA")), None)
        if name is None:
            return None  # the index refuses it for that
        raw = zip_member(zf, name, MAX_METADATA)
    try:
        specifier = Metadata.from_email(raw, validate=False).requires_python
    except (ValueError, InvalidSpecifier):
        return None  # the index says what is wrong with it
    if specifier is None or specifier.contains(python, prereleases=True):
        return None
    return str(specifier)


def wheel_name_problem(step: WheelwrightStep, filename: str) -> str | None:
    """Why a wheel's name, as a worker reported it, may not be taken: not a wheel of this build's
    package, version, build number and builder (and so never a path of its own)."""
    try:
        dist = parse_distribution_filename(filename)
    except PublishError as exc:
        return str(exc)
    if (
        dist.kind != "wheel"
        or dist.project != canonicalize_name(step.package)
        or Version(dist.version) != Version(step.wheel_version)
    ):
        return f"{filename} is not a wheel of {step.package} {step.wheel_version}; not published"
    if build_number(filename) != step.build_tag:
        return f"{filename} does not carry this build's number ({step.build_tag or 'none'}); not published"
    python, arch = step.getProperty("python_version"), step.getProperty("arch")
    if not all(tag_fits(t, python, arch) for t in parse_wheel_filename(filename)[3]):
        return f"{filename} is not for this builder (Python {python} on {arch}); not published"
    return None


def _mirrored(result) -> str:
    said = "uploaded" if result.published else "held already" if result.already_there else "FAILED"
    return f"{result.mirror}: {said}\n{result.said}\n\n"
