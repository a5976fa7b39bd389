"""New upstream releases of allow-listed projects, as Buildbot changes.

The upstream's changelog (the mirroring API of PyPI and its kin: XML-RPC `changelog_since_serial`)
returns every event since the last serial seen in one request, however long the allow-list: a poll
costs one request, and the builds it starts do their own downloads. An sdist uploaded for an
allow-listed project ("add source file ...") becomes a change carrying `package` and `version`,
which the `upstream-releases` scheduler builds on every builder. The first poll only notes where
the changelog stands: the farm builds what is released from then on (and what people force).
"""

from __future__ import annotations

import xmlrpc.client
from dataclasses import dataclass

import requests
from buildbot.changes import base
from buildbot.util.state import StateMixin
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version
from twisted.internet import threads
from twisted.python import log

from wheelwright.master.review import allowlist_for

CATEGORY = "upstream-release"
SDIST_ADDED = "add source file "


@dataclass(frozen=True)
class Release:
    project: str
    version: str
    sdist: str
    timestamp: int


def releases(events: list, allowlist: set[str]) -> list[Release]:
    """The sdists of allow-listed projects among changelog events (name, version, timestamp,
    action, serial), each (project, version) once."""
    found: dict[tuple[str, str], Release] = {}
    for name, version, timestamp, action, _ in events:
        project = canonicalize_name(name)
        if project not in allowlist or not action.startswith(SDIST_ADDED):
            continue
        try:
            version = str(Version(version))
        except InvalidVersion:
            log.msg(f"upstream-releases: {name} {version!r} is not a PEP 440 version; not built")
            continue
        found.setdefault((project, version), Release(project, version, action[len(SDIST_ADDED):], int(timestamp)))
    return list(found.values())


class Changelog:
    """The upstream's changelog, read through XML-RPC (marshalled by xmlrpc.client, carried by requests)."""

    def __init__(self, url: str, timeout: float = 60):
        self.url = url
        self.timeout = timeout

    def call(self, method: str, *params):
        response = requests.post(self.url, data=xmlrpc.client.dumps(params, method),
                                 headers={"Content-Type": "text/xml"}, timeout=self.timeout)
        response.raise_for_status()
        (result,), _ = xmlrpc.client.loads(response.content)
        return result

    def since(self, serial: int | None) -> tuple[list, int]:
        """The events after `serial`, and the serial to ask from next time. With no serial: none,
        and where the changelog stands now."""
        if serial is None:
            return [], self.call("changelog_last_serial")
        events = self.call("changelog_since_serial", serial)
        return events, max((event[4] for event in events), default=serial)


class FarmPoller(base.ReconfigurablePollingChangeSource, StateMixin):
    """A polling change source configured by the farm alone, named by its class."""

    compare_attrs = ("farm",)

    def checkConfig(self, farm, **kwargs):
        super().checkConfig(name=self.name, **kwargs)

    async def reconfigService(self, farm, **kwargs):
        self.farm = farm
        await super().reconfigService(name=self.name, **kwargs)


class UpstreamReleases(FarmPoller):
    name = "upstream-releases"

    def describe(self):
        return f"new releases of allow-listed projects at {self.farm.changelog_url}"

    async def poll(self):
        serial = await self.getState("last_serial", None)
        try:
            events, last = await threads.deferToThread(Changelog(self.farm.changelog_url).since, serial)
        except (requests.RequestException, xmlrpc.client.Error, ValueError) as exc:
            # Said in one line each poll; the next poll asks again from the same serial.
            log.msg(f"upstream-releases: cannot read the changelog at {self.farm.changelog_url}: {exc}")
            return
        if events:
            allowlist, warning = await threads.deferToThread(allowlist_for, self.farm)
            if warning:
                log.msg(f"upstream-releases: {warning}")
            for release in releases(events, allowlist):
                await self.master.data.updates.addChange(
                    author="upstream", comments=f"{release.project} {release.version} released upstream ({release.sdist})",
                    when_timestamp=release.timestamp, category=CATEGORY, project=release.project,
                    properties={"package": release.project, "version": release.version, "reason": "released upstream"})
        await self.setState("last_serial", last)
