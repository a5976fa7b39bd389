"""Wheels built but not published because the index host could not take them (unreachable, or
failing): kept on the master beside what publishing them needs, and published by a service of
the master that retries every `kept_retry_interval` seconds. A kept wheel keeps the provenance
of the build that made it, so the index still traces it to that build."""

from __future__ import annotations

import json
from pathlib import Path

from buildbot.util import poll, service
from twisted.internet import threads
from twisted.python import log

from wheelwright.common.files import write_atomic
from wheelwright.farm.settings import UPLOAD_SECRET, UPLOAD_USER, Farm
from wheelwright.indexhost.upload import UploadError, upload

MANIFEST_SUFFIX = ".publish.json"


def retryable(exc: UploadError) -> bool:
    """No answer, or the index host failing (a full disk, say): later may work. A refusal will not."""
    return exc.status is None or exc.status >= 500


def keep(wheel: Path, provenance: dict, freeze: str | None) -> None:
    manifest = wheel.with_name(wheel.name + MANIFEST_SUFFIX)
    write_atomic(
        manifest,
        (json.dumps({"provenance": provenance, "freeze": freeze}, indent=2) + "\n").encode(),
    )


def kept_wheels(staging_dir: Path) -> list[Path]:
    return sorted(
        m.with_name(m.name[: -len(MANIFEST_SUFFIX)])
        for m in staging_dir.glob(f"*/*{MANIFEST_SUFFIX}")
    )


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
            upload(
                farm.upload_url,
                UPLOAD_USER,
                password,
                wheel,
                provenance=kept["provenance"],
                freeze=kept["freeze"],
            )
        except UploadError as exc:
            if retryable(exc):
                outcomes.append(f"{wheel.name}: still kept, not published: {exc}")
                continue
            outcomes.append(f"{wheel.name}: dropped, the index refused it: {exc}")
        else:
            outcomes.append(
                f"{wheel.name}: published, made by {kept['provenance'].get('build_url')}"
            )
        _forget(wheel)
    return outcomes


class KeptWheelPublisher(service.BuildbotService):
    name = "kept-wheel-publisher"
    farm: Farm | None = None

    def checkConfig(self, farm):
        pass

    async def reconfigService(self, farm):
        self.farm = farm
        await self._schedule()

    async def startService(self):
        await super().startService()
        await self._schedule()

    async def stopService(self):
        await self.retry.stop()
        await super().stopService()

    async def _schedule(self):
        """(Re)start the retries at the farm's interval, once the service runs and is configured."""
        if self.retry.running:
            await self.retry.stop()
        if self.running and self.farm:
            self.retry.start(interval=self.farm.kept_retry_interval)

    @poll.method
    async def retry(self):
        farm = self.farm
        assert farm is not None  # _schedule starts the retries once the farm is configured
        if kept_wheels(farm.staging_dir):
            for outcome in await threads.deferToThread(
                publish_kept, farm, farm.secret(UPLOAD_SECRET)
            ):
                log.msg(f"kept wheel {outcome}")
