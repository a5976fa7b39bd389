"""VerifyReproducible: a verify build's wheel, fetched to the master (never published) and
compared with the one our index serves under the same name (log `reproducibility`); the outcome
goes into that wheel's provenance."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from buildbot.process.results import FAILURE, SUCCESS
from twisted.internet import threads

from wheelwright.common.lookup import IndexUnreachable, provenance
from wheelwright.common.wheelcheck import WheelRefused
from wheelwright.farm.settings import UPLOAD_USER
from wheelwright.indexhost.upload import UploadError, add_verification
from wheelwright.publishing.rebuilddiff import download
from wheelwright.publishing.reproducibility import compare
from wheelwright.steps.base import DIST_DIR, WritesToIndex, count, verifying
from wheelwright.steps.update_index import MAX_WHEEL_SIZE, wheel_name_problem


class VerifyReproducible(WritesToIndex):
    name = "verify-reproducible"
    description = ["comparing with the published wheel"]

    def __init__(self, **kwargs):
        super().__init__(
            doStepIf=verifying, hideStepIf=lambda results, step: not verifying(step), **kwargs
        )

    async def run(self):
        scratch = Path(tempfile.mkdtemp(prefix="verify-", dir=self.farm.staging_dir))
        try:
            outcomes = [
                await self._verify(filename, scratch)
                for filename in self.getProperty("wheel_filenames")
            ]
        except (IndexUnreachable, UploadError, OSError, WheelRefused) as exc:
            return await self.fail(f"could not compare: {exc}")
        finally:
            shutil.rmtree(scratch)
        if any(isinstance(o, str) for o in outcomes):
            return await self.fail(next(o for o in outcomes if isinstance(o, str)))
        await self.addCompleteLog(
            "reproducibility", "".join(f"{name}\n{c.text}\n" for name, c in outcomes)
        )
        reproducible = all(c.reproducible for _, c in outcomes)
        self.setProperty("reproducible", reproducible, self.name)
        if reproducible:
            self.descriptionDone = ["reproducible, bit for bit"]
            self.build_summary = "reproducible, bit for bit"
            return SUCCESS
        differing = sorted(
            {m for _, c in outcomes for m in c.differing + c.only_published + c.only_rebuilt}
        )
        self.setProperty("differing_members", differing, self.name)
        self.descriptionDone = [
            f"not reproducible: {count(len(differing), 'member')} differ"
            f"{': ' + ', '.join(differing[:3]) if differing else ''}"
        ]
        return FAILURE

    async def _verify(self, filename: str, scratch: Path):
        problem = wheel_name_problem(self, filename)
        if problem:  # the worker's word, as update-index takes it: "../x" is no wheel's name
            return problem
        rebuilt = scratch / "rebuilt" / filename
        if not await self.fetch_file(f"{DIST_DIR}/{filename}", rebuilt, MAX_WHEEL_SIZE):
            return f"could not bring {filename} back from the worker"
        index_url = self.farm.index_url
        try:
            published = await threads.deferToThread(
                download, index_url, self.package, filename, scratch
            )
        except OSError:
            return (
                f"our index has no {filename} to compare with (its builds make other wheels here)"
            )
        made_by = await threads.deferToThread(provenance, index_url, self.package, filename)
        comparison = await threads.deferToThread(
            compare, published, rebuilt, made_by.get("built_sha256")
        )
        await threads.deferToThread(
            add_verification,
            self.farm.index_root + "verification/",
            UPLOAD_USER,
            self.upload_password,
            self.package,
            filename,
            {
                "build_url": await self.build_url(),
                "builder": self.getProperty("buildername"),
                "workername": self.getProperty("workername"),
                "reproducible": comparison.reproducible,
                "differing": comparison.differing
                + comparison.only_published
                + comparison.only_rebuilt,
                "checked_at": int(self.master.reactor.seconds()),
            },
        )
        return filename, comparison
