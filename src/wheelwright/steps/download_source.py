"""DownloadSource: the sdist of package==version, verified and archived on the master side, then
sent to the worker. Workers never reach upstream themselves."""

from __future__ import annotations

from buildbot.process.results import SUCCESS
from twisted.internet import defer, threads

from wheelwright.changes.upstream_pages import SCHEDULER as UPSTREAM_SCHEDULER
from wheelwright.common.lookup import IndexUnreachable, published_pure_wheel
from wheelwright.farm.settings import UPLOAD_USER
from wheelwright.indexhost.upload import UploadError
from wheelwright.policy.lastgood import ConfigError
from wheelwright.policy.package_settings import settings_for
from wheelwright.policy.puregate import PURE_WHEEL_PUBLISHED
from wheelwright.policy.review import queue_for_review
from wheelwright.sources.archive import obtain_sdist
from wheelwright.sources.scan import scanned
from wheelwright.sources.upstream import SourceError
from wheelwright.steps.base import SDIST_DIR, WritesToIndex, verifying

# The last build's directory is renamed aside at once, and deleted (with any that an interrupted
# deletion left) in the background: thousands of files, a tenth of a second no build should wait
# for. Folders the package's code left unwritable are opened first; only folders: the files of
# its environments are links to the worker's uv cache, whose modes are not ours to change.
CLEAR_BUILD_DIR = (
    'mv -T -- "$1" "$1.trash-$$" 2>/dev/null; '
    '(find "$1".trash-* -type d ! -perm -u=rwx -exec chmod u+rwx {} \\; ; rm -rf -- "$1".trash-*) '
    "</dev/null >/dev/null 2>&1 & "
    '! [ -e "$1" ] && ! [ -L "$1" ]'
)


async def report_scan(step, scan) -> None:
    """A scan in the step's log `scan` and the build's property `scan_findings`."""
    await step.addCompleteLog("scan", scan.report())
    step.setProperty(
        "scan_findings", {rule: len(places) for rule, places in scan.findings.items()}, step.name
    )


class DownloadSource(WritesToIndex):
    name = "download-source"
    description = ["downloading source"]

    def __init__(self, **kwargs):
        super().__init__(doStepIf=True, **kwargs)

    async def run(self):
        # The worker clears the last build's directory while the master finds the sdist.
        clearing = defer.ensureDeferred(self.clear_build_dir())
        archived = await self.find_sdist()
        cleared = await clearing
        if isinstance(archived, int):  # skipped (a pure wheel), or failed
            return archived
        if cleared:
            return await self.fail(cleared)
        sdist = archived.sdist
        if self.getProperty("scheduler") == UPSTREAM_SCHEDULER:  # a new release waits for its scan
            with self.timing("scan"):
                held = await self.scan(archived.path, sdist)
            if held:
                return await self.fail(held)
        else:
            # Asked for by hand or by a bootstrap: never held, so it is scanned beside the build
            # and the publishing step reports it (the provenance carries it).
            self.build.scan_running = threads.deferToThread(
                scanned, self.farm, archived.path, sdist.sha256
            )
        self.setProperty("version", sdist.version, self.name)
        self.setProperty("source_filename", sdist.filename, self.name)
        self.setProperty("source_sha256", sdist.sha256, self.name)
        self.setProperty("source_url", archived.archive_url, self.name)
        self.setProperty("source_origin", archived.origin, self.name)
        await self.addURL(sdist.filename, archived.archive_url)
        await self.addCompleteLog(
            "source",
            (
                f"sdist:   {sdist.filename}\nsha256:  {sdist.sha256} (verified)\n"
                f"from:    {archived.fetched_from}\n"
                f"archive: {archived.archive_url}\n"
            ),
        )
        if not await self.send_file(archived.path, f"{SDIST_DIR}/{sdist.filename}"):
            return await self.fail(f"could not send {sdist.filename} to the worker")
        if archived.commit:
            self.setProperty("source_commit", archived.commit, self.name)
        self.descriptionDone = [f"{sdist.filename} ({archived.origin})"]
        return SUCCESS

    async def find_sdist(self):
        """The sdist, verified and archived; or the step's result when there is none to build: a
        pure wheel already published, or a failure."""
        version = self.version or None
        if version and not verifying(self):  # a verify build rebuilds what was published
            try:
                with self.timing("pure wheel lookup"):
                    pure = await threads.deferToThread(
                        published_pure_wheel,
                        self.farm.index_url,
                        self.package,
                        self.wheel_version,
                        self.build_tag,
                    )
            except IndexUnreachable as exc:
                return await self.fail(str(exc))
            if pure:
                return await self.skip_pure_wheel(pure)
        try:
            settings = await self.read_config("settings", settings_for, self.package)
            with self.timing("sdist"):
                archived = await threads.deferToThread(
                    obtain_sdist,
                    self.farm,
                    self.package,
                    version,
                    UPLOAD_USER,
                    self.upload_password,
                    settings.source,
                )
        except (SourceError, UploadError, OSError, ConfigError) as exc:
            return await self.fail(str(exc))
        return archived

    async def clear_build_dir(self) -> str | None:
        """Why the build directory could not be cleared, if it could not."""
        clear = await self.makeRemoteShellCommand(
            workdir=".", command=["sh", "-c", CLEAR_BUILD_DIR, "sh", self.workdir]
        )
        await self.runCommand(clear)
        return f"could not clear the build directory ({clear.rc})" if clear.didFail() else None

    async def scan(self, path, sdist) -> str | None:
        """Scan the sdist (log `scan`, property `scan_findings`); a new release with a finding at or
        above the farm's `scan_hold_at` is held for review: why."""
        scan = await threads.deferToThread(scanned, self.farm, path, sdist.sha256)
        await report_scan(self, scan)
        if scan.approved_by:
            return None
        severe = scan.severe(self.farm.scan_hold_at) or (
            [f"the scan could not run: {scan.error}"] if scan.error else []
        )
        if not severe:
            return None
        await threads.deferToThread(
            queue_for_review,
            self.farm.review_queue,
            self.package,
            f"release {sdist.version} held: the scan found {len(severe)} at {self.farm.scan_hold_at} or above",
            await self.build_url(),
            {"version": sdist.version, "sha256": sdist.sha256, "findings": severe[:50]},
        )
        return (
            f"{sdist.filename} held for review (wheelwright review): {len(severe)} finding(s) at "
            f"{self.farm.scan_hold_at} or above, the first: {severe[0]}"
        )

    async def skip_pure_wheel(self, pure: dict) -> int:
        by = (
            f"build {pure.get('build_number')} of {pure.get('builder')}"
            if not pure.get("seeded")
            else "seeding"
        )
        self.setProperty(PURE_WHEEL_PUBLISHED, pure.get("build_url") or by, self.name)
        if pure.get("build_url"):
            await self.addURL(f"{pure['filename']} ({by})", pure["build_url"])
        self.descriptionDone = [f"pure wheel already published by {by}"]
        self.build_summary = self.descriptionDone[0]
        return SUCCESS
