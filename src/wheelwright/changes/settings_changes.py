"""Edits to a package's settings or patches, as Buildbot changes: the versions our index has are
rebuilt with them (with the package's or the farm's rebuild bump, policy/bumps.py), so the index
never keeps wheels made under settings that are no longer ours.

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

from wheelwright.changes.upstream_pages import FarmPoller
from wheelwright.common.lookup import index_versions
from wheelwright.policy.bumps import BumpError, plan_rebuild
from wheelwright.policy.package_settings import owner

CATEGORY = "settings-change"


def digests(settings_dir: Path) -> dict[str, str]:
    """ "project" or "project==version" -> a digest of its settings file or patches folder."""
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


def rebuild_properties(farm, project: str, version: str | None) -> tuple[str, dict] | None:
    """The version to rebuild after project's settings changed (with no version: the newest our
    source archive has a sdist of; our index lists its rebuilds' bumped versions too), and the
    bump's properties; None if our index has no wheel of it, or the bump is refused (logged)."""
    if not version:
        versions = index_versions(farm.sources_url, project) or []
        version = str(max(map(Version, versions))) if versions else ""
    if not version:
        return None
    try:
        return version, plan_rebuild(farm, project, version)[0].as_properties()
    except BumpError as exc:
        log.msg(f"settings-changes: not rebuilding {project} {version}: {exc}")
        return None


def rebuilds(before: dict[str, str], now: dict[str, str], farm) -> list[tuple[str, str, dict]]:
    """(project, version, the bump's properties) for each package whose settings changed and that
    our index has a wheel of."""
    found = {}
    for key in sorted(set(before) | set(now)):
        if before.get(key) != now.get(key):
            project, _, version = key.partition("==")
            planned = rebuild_properties(farm, project, version or None)
            if planned:
                found[(project, planned[0])] = planned[1]
    return [(project, version, bump) for (project, version), bump in found.items()]


class SettingsChanges(FarmPoller):
    name = "settings-changes"

    def describe(self):
        return f"edits to the settings and patches in {self.farm.settings_dir}"

    async def poll(self):
        before = await self.getState("digests", None)
        now = await threads.deferToThread(digests, self.farm.settings_dir)
        if before is not None and before != now:
            for project, version, bump in await threads.deferToThread(
                rebuilds, before, now, self.farm
            ):
                await self.master.data.updates.addChange(
                    author="settings",
                    comments=f"settings or patches of {project} changed: rebuilding {version}",
                    category=CATEGORY,
                    project=project,
                    properties={
                        "package": project,
                        "version": version,
                        **bump,
                        "reason": "settings or patches changed",
                    },
                )
        await self.setState("digests", now)
