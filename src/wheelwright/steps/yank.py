"""YankVersion: the web UI's yank form (release engineers only, like every form), on the master."""

from __future__ import annotations

from buildbot.process.results import SUCCESS
from twisted.internet import threads

from wheelwright.indexhost.upload import UploadError
from wheelwright.publishing.yanks import yank_and_log
from wheelwright.steps.base import WritesToIndex


class YankVersion(WritesToIndex):
    name = "yank"
    description = ["yanking"]

    def __init__(self, **kwargs):
        super().__init__(doStepIf=True, **kwargs)

    async def run(self):
        unyank = bool(self.getProperty("unyank"))
        reason = None if unyank else self.getProperty("yank_reason", "").strip()
        if not unyank and not reason:
            return await self.fail("a yank needs its reason (installers show it)")
        by = self.getProperty("owner") or "someone in the web UI"
        try:
            answer = await threads.deferToThread(
                yank_and_log,
                self.farm,
                self.upload_password,
                self.package,
                self.version,
                reason,
                self.getProperty("file") or None,
                by,
                self.getProperty("yank_reason", ""),
            )
        except UploadError as exc:
            return await self.fail(str(exc))
        self.descriptionDone = [
            f"{'unyanked' if unyank else 'yanked'} {', '.join(answer['files'])}"[:200]
        ]
        self.build_summary = self.descriptionDone[0]
        return SUCCESS
