"""Wheels built but not published because the index host could not take them (unreachable, or
failing): kept on the master beside what publishing them needs, and published by a service of
the master that retries every `staged_retry_interval` seconds. A kept wheel keeps the provenance
of the build that made it, so the index still traces it to that build."""

from __future__ import annotations

import json
import os
from pathlib import Path

from buildbot.util import service
from twisted.internet import defer, task, threads
from twisted.python import log

from wheelwright.index.upload import UploadError, upload
from wheelwright.master.farm import UPLOAD_SECRET, UPLOAD_USER

MANIFEST_SUFFIX = ".publish.json"


def retryable(exc: UploadError) -> bool:
    """No answer, or the index host failing (a full disk, say): later may work. A refusal will not."""
    return exc.status is None or exc.status >= 500


def keep(wheel: Path, provenance: dict, freeze: str | None) -> None:
    manifest = wheel.with_name(wheel.name + MANIFEST_SUFFIX)
    tmp = manifest.with_name(f".{manifest.name}.tmp")
    tmp.write_text(json.dumps({"provenance": provenance, "freeze": freeze}, indent=2) + "\n")
    os.replace(tmp, manifest)


def kept_wheels(staging_dir: Path) -> list[Path]:
    return sorted(m.with_name(m.name[: -len(MANIFEST_SUFFIX)]) for m in staging_dir.glob(f"*/*{MANIFEST_SUFFIX}"))


def _forget(wheel: Path) -> None:
    wheel.unlink(missing_ok=True)
    wheel.with_name(wheel.name + MANIFEST_SUFFIX).unlink()
    if not any(wheel.parent.iterdir()):
        wheel.parent.rmdir()


def publish_kept(farm, password: str) -> list[str]:
    """Try to publish every kept wheel; returns what became of each."""
    outcomes = []
    for wheel in kept_wheels(farm.staging_dir):
        kept = json.loads(wheel.with_name(wheel.name + MANIFEST_SUFFIX).read_text())
        try:
            upload(farm.upload_url, UPLOAD_USER, password, wheel, provenance=kept["provenance"], freeze=kept["freeze"])
        except UploadError as exc:
            if retryable(exc):
                outcomes.append(f"{wheel.name}: still kept, not published: {exc}")
                continue
            outcomes.append(f"{wheel.name}: dropped, the index refused it: {exc}")
        else:
            outcomes.append(f"{wheel.name}: published, made by {kept['provenance'].get('build_url')}")
        _forget(wheel)
    return outcomes


class KeptWheelPublisher(service.BuildbotService):
    name = "kept-wheel-publisher"
    farm = None
    loop = None

    def checkConfig(self, farm):
        pass

    async def reconfigService(self, farm):
        self.farm = farm
        self._restart()

    async def startService(self):
        await super().startService()
        self._restart()

    async def stopService(self):
        if self.loop and self.loop.running:
            self.loop.stop()
        await super().stopService()

    def _restart(self):
        if self.loop and self.loop.running:
            self.loop.stop()
        if self.running and self.farm:
            self.loop = task.LoopingCall(lambda: defer.ensureDeferred(self.retry()))
            self.loop.clock = self.master.reactor
            self.loop.start(self.farm.staged_retry_interval, now=False)

    async def retry(self):
        try:
            if kept_wheels(self.farm.staging_dir):
                outcomes = await threads.deferToThread(publish_kept, self.farm, self.farm.secret(UPLOAD_SECRET))
                for outcome in outcomes:
                    log.msg(f"kept wheel {outcome}")
        except Exception:  # the next round tries again
            log.err(None, "publishing kept wheels")
