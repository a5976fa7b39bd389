"""New upstream releases of allow-listed projects, as Buildbot changes.

Two ways to watch, chosen by the farm at its first poll and said once (its log, `wheelwright
status`, farm/logs/upstream-watching.json):

- changelog: where the upstream has one (the mirroring API of PyPI and its kin, XML-RPC
  `changelog_since_serial`), one request a poll returns every event since the last serial; the
  pages of the allow-listed projects it names are then read.
- pages: any PEP 503/691 upstream (devpi, a proxy, PyPI's CDN, which refuses XML-RPC). The
  allow-listed projects' pages are read with conditional requests, a slice of them each poll, so
  that every project is looked at once per `upstream_poll_interval` at a flat cost.

Either way a page decides what is built (changes/upstream_watch.py): sdists only, not yanked,
wanted by the allow-list (and pre-releases only where allowed), after the cooldown. Each release
becomes a change carrying `package` and `version`, which the `upstream-releases` scheduler builds
on every builder. What the farm has seen is kept in the master's database: a restart neither
repeats nor loses a release.
"""

from __future__ import annotations

import xmlrpc.client
from xml.parsers.expat import ExpatError

import requests
from buildbot.changes import base
from buildbot.util.state import StateMixin
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version
from twisted.internet import threads
from twisted.python import log

from wheelwright.changes.upstream_watch import Release, decide, due, fetch_page
from wheelwright.policy.lastgood import ConfigError
from wheelwright.policy.package_settings import PackageSettings, settings_for
from wheelwright.policy.review import allowlist_for

CATEGORY = "upstream-release"
SCHEDULER = "upstream-releases"  # the scheduler that builds these changes
SDIST_ADDED = "add source file "


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
        found.setdefault(
            (project, version),
            Release(project, version, action[len(SDIST_ADDED) :], int(timestamp)),
        )
    return list(found.values())


class Changelog:
    """The upstream's changelog, read through XML-RPC (marshalled by xmlrpc.client, carried by requests)."""

    def __init__(self, url: str, timeout: float = 60):
        self.url = url
        self.timeout = timeout

    def call(self, method: str, *params):
        response = requests.post(
            self.url,
            data=xmlrpc.client.dumps(params, method),
            headers={"Content-Type": "text/xml"},
            timeout=self.timeout,
        )
        response.raise_for_status()
        (result,), _ = xmlrpc.client.loads(response.content)
        return result

    def since(self, serial: int) -> tuple[list, int]:
        """The events after serial, and the serial to ask from next time."""
        events = self.call("changelog_since_serial", serial)
        return events, max((event[4] for event in events), default=serial)


def choose_watch(farm) -> dict:
    """How to watch this upstream: its changelog if it answers one, else its pages. Raises
    requests.ConnectionError/Timeout when it cannot tell (the upstream is unreachable)."""
    try:
        serial = Changelog(farm.changelog_url).call("changelog_last_serial")
    except (requests.ConnectionError, requests.Timeout):
        raise
    except (requests.RequestException, xmlrpc.client.Error, ValueError, ExpatError) as exc:
        return {
            "way": "pages",
            "upstream": farm.upstream,
            "why": f"no changelog at {farm.changelog_url} ({exc})",
        }
    return {
        "way": "changelog",
        "upstream": farm.upstream,
        "changelog": farm.changelog_url,
        "serial": serial,
    }


class FarmPoller(base.ReconfigurablePollingChangeSource, StateMixin):
    """A polling change source configured by the farm alone, named by its class."""

    compare_attrs = ("farm",)

    def checkConfig(self, farm, **kwargs):
        super().checkConfig(name=self.name, **kwargs)

    async def reconfigService(self, farm, **kwargs):
        self.farm = farm
        await super().reconfigService(name=self.name, **kwargs)


# Polls per upstream_poll_interval: each reads the changelog, or a slice of the pages.
SLICES = 10


class UpstreamReleases(FarmPoller):
    name = "upstream-releases"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.watch: dict | None = None
        self.cursor = 0
        self.states: dict[str, dict] = {}  # project -> its state, as in the master's database
        self.session = requests.Session()

    async def reconfigService(self, farm, **kwargs):
        self.watch = None  # the upstream may be another: choose again
        await super().reconfigService(farm, **kwargs)

    def describe(self):
        return f"new releases of allow-listed projects at {self.farm.upstream}"

    async def poll(self):
        if self.watch is None:
            self.watch = await self._choose()
            if self.watch is None:
                return
        allowlist, warning = await threads.deferToThread(allowlist_for, self.farm)
        if warning:
            log.msg(f"upstream-releases: {warning}")
        if self.watch["way"] == "changelog":
            announced = await self._changelog(allowlist)
            if announced is None:
                return
        else:
            announced = dict.fromkeys(self._next_slice(sorted(allowlist)), frozenset())
        now = self.master.reactor.seconds()
        for project in allowlist:  # and the releases whose cooldown is over (kept across restarts)
            if project not in self.states:
                self.states[project] = await self.getState(f"page:{project}", {})
            waiting = self.states[project].get("waiting")
            if (
                project not in announced
                and waiting
                and due(self.states[project], self._min_age(project), now)
            ):
                announced[project] = frozenset()
        for project, versions in announced.items():
            await self._look_at(project, versions, allowlist, now)

    async def _choose(self) -> dict | None:
        try:
            watch = await threads.deferToThread(choose_watch, self.farm)
        except requests.RequestException as exc:
            log.msg(f"upstream-releases: cannot reach the upstream at {self.farm.upstream}: {exc}")
            return None
        said = {
            "changelog": f"reading the changelog at {watch.get('changelog')}",
            "pages": "reading the allow-listed projects' pages with conditional requests, "
            f"{SLICES} slices every {self.farm.upstream_poll_interval} s ({watch.get('why')})",
        }
        log.msg(f"upstream-releases: watching {self.farm.upstream} by {said[watch['way']]}")
        await threads.deferToThread(
            self.farm.note_upstream_watch, {**watch, "said": said[watch["way"]]}
        )
        if watch["way"] == "changelog" and await self.getState("last_serial", None) is None:
            await self.setState("last_serial", watch["serial"])
        return watch

    async def _changelog(self, allowlist) -> dict[str, frozenset[str]] | None:
        """The allow-listed projects the changelog names since the last poll, with the versions
        whose sdists it announces."""
        serial = await self.getState("last_serial")
        try:
            events, last = await threads.deferToThread(
                Changelog(self.farm.changelog_url).since, serial
            )
        except (requests.RequestException, xmlrpc.client.Error, ValueError, ExpatError) as exc:
            # Said in one line each poll; the next poll asks again from the same serial.
            log.msg(
                f"upstream-releases: cannot read the changelog at {self.farm.changelog_url}: {exc}"
            )
            return None
        announced: dict[str, set[str]] = {}
        for release in releases(events, allowlist):
            announced.setdefault(release.project, set()).add(release.version)
        await self.setState("last_serial", last)
        return {project: frozenset(versions) for project, versions in announced.items()}

    def _next_slice(self, projects: list[str]) -> list[str]:
        size = -(-len(projects) // SLICES)
        if self.cursor >= len(projects):
            self.cursor = 0
        chosen = projects[self.cursor : self.cursor + size]
        self.cursor += size
        return chosen

    def _settings(self, project: str):
        try:
            return settings_for(self.farm, project)[0]
        except ConfigError:
            return PackageSettings()  # its builds fail naming the broken file

    def _min_age(self, project: str) -> float:
        age = self._settings(project).min_release_age
        return self.farm.min_release_age if age is None else age

    async def _look_at(
        self, project: str, announced: frozenset[str], allowlist, now: float
    ) -> None:
        state = dict(self.states[project])
        min_age = self._min_age(project)
        try:
            page = await threads.deferToThread(
                fetch_page,
                self.session,
                self.farm.upstream,
                project,
                state,
                conditional=not due(state, min_age, now),
            )
        except (requests.RequestException, ValueError) as exc:
            log.msg(
                f"upstream-releases: cannot read {project}'s page at {self.farm.upstream}: {exc}"
            )
            return
        prereleases = self._settings(project).prereleases
        found = (
            []
            if page is None
            else decide(
                page,
                state,
                lambda version: allowlist.wants(project, version, prereleases),
                min_age,
                now,
                announced,
            )
        )
        for release in found:
            await self.master.data.updates.addChange(
                author="upstream",
                comments=f"{release.project} {release.version} released upstream ({release.sdist})",
                when_timestamp=release.timestamp,
                category=CATEGORY,
                project=release.project,
                properties={
                    "package": release.project,
                    "version": release.version,
                    "reason": "released upstream",
                },
            )
        if state != self.states[project]:
            self.states[project] = state
            await self.setState(f"page:{project}", state)
