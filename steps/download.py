"""DownloadSource: the sdist of package==version, verified and archived on the master side, then
sent to the worker. Workers never reach upstream themselves."""

from __future__ import annotations

from buildbot.process.properties import Secret
from buildbot.process.results import SUCCESS
from twisted.internet import threads

from wheelwright.index.upload import UploadError
from wheelwright.index.upstream import SourceError
from wheelwright.master.farm import UPLOAD_SECRET, UPLOAD_USER
from wheelwright.master.sources import obtain_sdist
from wheelwright.steps.tool import SDIST_DIR, WheelwrightStep


class DownloadSource(WheelwrightStep):
    name = "download-source"
    description = ["downloading source"]
    renderables = ["upload_password"]

    def __init__(self, upload_password=Secret(UPLOAD_SECRET), **kwargs):
        super().__init__(**kwargs)
        self.upload_password = upload_password

    async def run(self):
        await self.runRmdir(self.workdir, abandonOnFailure=True)
        version = self.version or None
        try:
            archived = await threads.deferToThread(
                obtain_sdist, self.farm, self.package, version, UPLOAD_USER, self.upload_password)
        except (SourceError, UploadError, OSError) as exc:
            return await self.fail(str(exc))
        sdist = archived.sdist
        self.setProperty("version", sdist.version, self.name)
        self.setProperty("source_filename", sdist.filename, self.name)
        self.setProperty("source_sha256", sdist.sha256, self.name)
        self.setProperty("source_url", archived.archive_url, self.name)
        self.setProperty("source_origin", archived.origin, self.name)
        await self.addURL(sdist.filename, archived.archive_url)
        await self.addCompleteLog("source", (
            f"sdist:   {sdist.filename}\nsha256:  {sdist.sha256} (verified)\n"
            f"from:    {'our source archive (rebuild)' if archived.origin == 'archive' else sdist.url}\n"
            f"archive: {archived.archive_url}\n"))
        if not await self.send_file(archived.path, f"{SDIST_DIR}/{sdist.filename}"):
            return await self.fail(f"could not send {sdist.filename} to the worker")
        self.descriptionDone = [f"{sdist.filename} ({'archive' if archived.origin == 'archive' else 'upstream'})"]
        return SUCCESS
