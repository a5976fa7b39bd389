"""Settings and patches kept in a git repository (production), in place of the directory the
embedded default watches (settingschanges.py).

`wheelwright up` (control.py) clones the repository (`settings_git`, branch `settings_branch`) into the
settings directory; Buildbot's GitPoller watches it every `settings_poll_interval` seconds, and
each commit is a change whose paths map to packages as the directory watcher maps its files
(settings.owner). The `settings-git` scheduler brings the checkout to that commit, so builds read
the settings it holds, then rebuilds what the commit changed, with the package's or the farm's
rebuild bump.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import ClassVar

from buildbot.changes.gitpoller import GitPoller
from buildbot.plugins import util
from buildbot.process.properties import Properties
from buildbot.schedulers.base import ReconfigurableBaseScheduler
from packaging.utils import InvalidName
from twisted.internet import threads
from twisted.python import log

from wheelwright.changes.settings_changes import rebuild_properties
from wheelwright.policy.package_settings import owner

CATEGORY = "settings-git"


def settings_poller(farm) -> GitPoller:
    return GitPoller(
        repourl=farm.settings_git,
        branches=[farm.settings_branch],
        category=CATEGORY,
        pollInterval=farm.settings_poll_interval,
        pollAtLaunch=True,
        workdir=str(farm.root / "master" / "settings-gitpoller"),
    )


def changed_packages(settings_dir: Path, paths: list[str]) -> list[tuple[str, str | None]]:
    """(project, version or None) for each settings file or patches folder among changed paths."""
    found = []
    for path in paths:
        full = settings_dir / path
        try:
            key = owner(full.parent if full.suffix == ".patch" else full, settings_dir)
        except (InvalidName, ValueError):
            continue
        if key and key not in found:
            found.append(key)
    return found


class SettingsFromGit(ReconfigurableBaseScheduler):
    compare_attrs: ClassVar = ("farm",)

    def __init__(self, name, farm, builderNames, **kwargs):
        super().__init__(name=name, farm=farm, builderNames=builderNames, **kwargs)

    def checkConfig(self, farm, builderNames, **kwargs):
        super().checkConfig(builderNames=builderNames, **kwargs)

    async def reconfigService(self, farm, builderNames, **kwargs):
        self.farm = farm
        await super().reconfigService(builderNames=builderNames, **kwargs)

    async def activate(self):
        await super().activate()
        if self.enabled:
            await self.startConsumingChanges(change_filter=util.ChangeFilter(category=CATEGORY))

    async def gotChange(self, change, important):
        rebuilds = await threads.deferToThread(
            self._checkout_and_plan, change.revision, change.files
        )
        for project, version, bump in rebuilds:
            await self.addBuildsetForSourceStampsWithDefaults(
                reason=f"settings or patches changed in {change.revision[:12]}",
                properties=Properties(
                    package=project,
                    version=version,
                    reason="settings or patches changed",
                    settings_commit=change.revision,
                    **bump,
                ),
            )

    def _checkout_and_plan(self, revision: str, paths: list[str]) -> list[tuple[str, str, dict]]:
        git = ["git", "-C", str(self.farm.settings_dir)]
        subprocess.run([*git, "fetch", "--quiet", "origin"], check=True, capture_output=True)
        subprocess.run(
            [*git, "checkout", "--quiet", "--detach", revision], check=True, capture_output=True
        )
        found = []
        for project, version in changed_packages(self.farm.settings_dir, paths):
            planned = rebuild_properties(self.farm, project, version)
            if planned:
                found.append((project, *planned))
            else:
                log.msg(
                    f"settings-git: {project} changed in {revision[:12]}; our index has no wheel of it to rebuild"
                )
        return found
