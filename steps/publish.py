"""UpdateIndex: bring the wheel back to the master, check it again, and publish it through the
index host's authenticated upload API. Workers never hold the publishing credentials."""

from __future__ import annotations

import os

from buildbot.process.properties import Secret
from buildbot.process.results import SUCCESS
from packaging.utils import canonicalize_name
from packaging.version import Version
from twisted.internet import threads

from wheelwright.index.store import PublishError, parse_distribution_filename, sha256_of
from wheelwright.index.upload import UploadError, upload
from wheelwright.master.farm import UPLOAD_SECRET, UPLOAD_USER
from wheelwright.steps.tool import DIST_DIR, FREEZE_FILE, WheelwrightStep, count

MAX_WHEEL_SIZE = 4 << 30


class UpdateIndex(WheelwrightStep):
    name = "update-index"
    description = ["publishing"]
    renderables = ["upload_password"]

    def __init__(self, upload_password=Secret(UPLOAD_SECRET), **kwargs):
        super().__init__(**kwargs)
        self.upload_password = upload_password

    async def run(self):
        wheels = list(zip(self.getProperty("wheel_filenames"), self.getProperty("wheel_sha256s")))
        for filename, _ in wheels:
            problem = self._check_name(filename)
            if problem:
                return await self.fail(problem)
        staging = self.farm.staging_dir / str(self.build.buildid)
        freeze = await self.getFileContentFromWorker(FREEZE_FILE)
        provenance = await self._provenance()
        urls = []
        for filename, sha256 in wheels:
            staged = staging / filename
            if not await self.fetch_file(f"{DIST_DIR}/{filename}", staged, MAX_WHEEL_SIZE):
                return await self.fail(f"could not bring {filename} back from the worker")
            actual = await threads.deferToThread(sha256_of, staged)
            if actual != sha256:
                return await self.fail(f"{filename}: sha256 on the master is {actual}, the worker reported {sha256}")
            try:
                await threads.deferToThread(upload, self.farm.upload_url, UPLOAD_USER, self.upload_password, staged,
                                            provenance=provenance, freeze=freeze)
            except UploadError as exc:
                return await self.fail(f"not published: {exc}")
            os.unlink(staged)
            url = f"{self.farm.index_url}{canonicalize_name(self.package)}/{filename}"
            urls.append(url)
            await self.addURL(filename, url)
        self.setProperty("wheel_urls", urls, self.name)
        self.descriptionDone = [f"published {count(len(urls), 'wheel')}"]
        return SUCCESS

    def _check_name(self, filename: str) -> str | None:
        try:
            dist = parse_distribution_filename(filename)
        except PublishError as exc:
            return str(exc)
        if dist.kind != "wheel" or dist.project != canonicalize_name(self.package) or Version(dist.version) != Version(self.version):
            return f"{filename} is not a wheel of {self.package} {self.version}; not published"
        return None

    async def _provenance(self) -> dict:
        keys = ("source_filename", "source_sha256", "source_url", "patches", "build_requires", "build_frontend",
                "python", "workername")
        return {
            "build_url": await self.build_url(),
            "builder": self.getProperty("buildername"),
            "build_number": self.build.number,
            **{k: self.getProperty(k) for k in keys},
        }
