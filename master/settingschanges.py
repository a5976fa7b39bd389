"""Edits to a package's settings or patches, as Buildbot changes: the versions our index has are
rebuilt with them (with the package's or the farm's rebuild bump, master/bumps.py), so the index never keeps wheels made under
settings that are no longer ours.

Every poll it hashes, per package, the settings file and each patches folder (fromager's layout,
see settings.py). A digest that differs from the last poll's is a change: a settings file or a
`patches/<name>/` folder rebuilds the newest version our index has; `patches/<name>-<version>/`
rebuilds that version. A package our index has no wheel of is left alone: its first build takes
the settings as they are. The first poll only notes the digests.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from packaging.utils import InvalidName
from packaging.version import Version
from twisted.internet import threads
from twisted.python import log

from wheelwright.index.lookup import index_versions
from wheelwright.master.bumps import BumpError, plan_rebuild
from wheelwright.master.changesource import FarmPoller
from wheelwright.master.settings import owner

CATEGORY = "settings-change"


def digests(settings_dir: Path) -> dict[str, str]:
    """"project" or "project==version" -> a digest of its settings file or patches folder."""
    found: dict = {}
    candidates = [*settings_dir.glob("settings/*.yaml"), *settings_dir.glob("patches/*/*.patch")]
    for path in sorted(candidates):
        try:
            key = owner(path.parent if path.suffix == ".patch" else path, settings_dir)
        except InvalidName:
            continue
        if key is None:
            continue
        digest = found.setdefault("==".join(filter(None, key)), hashlib.sha256())
        digest.update(f"{path.relative_to(settings_dir)}\0".encode() + path.read_bytes() + b"\0")
    return {key: digest.hexdigest() for key, digest in found.items()}


def rebuilds(before: dict[str, str], now: dict[str, str], farm) -> list[tuple[str, str, dict]]:
    """(project, version, the bump's properties) for each package whose settings changed and that
    our index has a wheel of; the newest version is the newest sdist our source archive has (our
    index lists its rebuilds' bumped versions too)."""
    found = {}
    for key in sorted(set(before) | set(now)):
        if before.get(key) == now.get(key):
            continue
        project, _, version = key.partition("==")
        if not version:
            versions = index_versions(farm.sources_url, project) or []
            version = str(max(map(Version, versions))) if versions else ""
        try:
            found[(project, version)] = plan_rebuild(farm, project, version)[0].as_properties() if version else None
        except BumpError as exc:
            log.msg(f"settings-changes: not rebuilding {project} {version}: {exc}")
    return [(project, version, bump) for (project, version), bump in found.items() if bump]


class SettingsChanges(FarmPoller):
    name = "settings-changes"

    def describe(self):
        return f"edits to the settings and patches in {self.farm.settings_dir}"

    async def poll(self):
        before = await self.getState("digests", None)
        now = await threads.deferToThread(digests, self.farm.settings_dir)
        if before is not None and before != now:
            for project, version, bump in await threads.deferToThread(rebuilds, before, now, self.farm):
                await self.master.data.updates.addChange(
                    author="settings", comments=f"settings or patches of {project} changed: rebuilding {version}",
                    category=CATEGORY, project=project,
                    properties={"package": project, "version": version, **bump,
                                "reason": "settings or patches changed"})
        await self.setState("digests", now)
