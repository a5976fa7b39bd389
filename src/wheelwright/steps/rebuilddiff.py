"""RebuildDiff: for a version built before, what changed against the previous build of it on this
builder (log `rebuild-diff`): build environment, patches and settings, Requires-Dist, the wheel's
files. Read from the published wheels; it never fails the build."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from buildbot.process.results import SKIPPED, SUCCESS
from twisted.internet import threads

from wheelwright.common.lookup import IndexUnreachable
from wheelwright.publishing.rebuilddiff import download, facts_of, previous_build, report
from wheelwright.steps.base import WheelwrightStep


def published_wheels(step) -> bool:
    return bool(step.getProperty("wheel_urls"))


class RebuildDiff(WheelwrightStep):
    name = "rebuild-diff"
    description = ["comparing with the previous build"]
    haltOnFailure = False
    flunkOnFailure = False
    warnOnFailure = True

    def __init__(self, **kwargs):
        super().__init__(
            doStepIf=published_wheels, hideStepIf=lambda results, _: results == SKIPPED, **kwargs
        )

    async def run(self):
        texts = []
        for url in self.getProperty("wheel_urls"):
            filename = url.rsplit("/", 1)[1]
            try:
                text = await threads.deferToThread(self._diff, filename)
            except (IndexUnreachable, OSError, ValueError, KeyError) as exc:
                return await self.fail(f"{filename}: cannot compare with the previous build: {exc}")
            if text:
                texts.append(text)
        if not texts:
            self.descriptionDone = ["first build of this version here"]
            return SKIPPED
        await self.addCompleteLog("rebuild-diff", "\n".join(texts))
        self.descriptionDone = ["compared with the previous build"]
        return SUCCESS

    def _diff(self, filename: str) -> str | None:
        index_url = self.farm.index_url
        previous = previous_build(
            index_url, self.package, self.version, filename, self.getProperty("buildername")
        )
        if previous is None:
            return None
        scratch = Path(tempfile.mkdtemp(prefix="rebuild-diff-", dir=self.farm.staging_dir))
        try:
            before = facts_of(download(index_url, self.package, previous["filename"], scratch))
            after = facts_of(download(index_url, self.package, filename, scratch))
            return report(before, after)
        finally:
            shutil.rmtree(scratch)
