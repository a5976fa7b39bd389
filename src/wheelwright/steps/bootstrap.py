"""BootstrapTree: a whole tree built bottom-up, as a build of the `bootstrap` builder (master side).

The step resolves the tree (bootstrap/plan.py) and keeps the plan as logs (`plan`,
`graph.json`, `build-order.json`), then triggers each package on the wheel builders once all it
needs is published (as the UpdateIndex steps of their builds end, not the builds): the longest
stretches of work first (from the durations of earlier bootstraps), no more at once than the
builders have workers. A failure skips what needs it; what a build finds that the sdist did not
say (a requirement the backend asks for when run, or one of the wheel's that PKG-INFO left out)
is planned and built, and that build triggered again. The `progress` log says what happens as it
happens; the outcome is the property `bootstrap_outcome`. It runs in the master, so the tree goes
on when the command that started it ends.
"""

from __future__ import annotations

import json
import time

from buildbot.process.properties import Properties
from buildbot.process.results import CANCELLED, FAILURE, SKIPPED, SUCCESS, WARNINGS
from buildbot.reporters.utils import getURLForBuild
from twisted.internet import defer, threads
from twisted.python import log

from wheelwright.bootstrap import plan as bootstrap
from wheelwright.common.lookup import IndexUnreachable
from wheelwright.sources import scan
from wheelwright.sources.upstream import SourceError
from wheelwright.steps.base import WheelwrightStep, count
from wheelwright.steps.update_index import UpdateIndex
from wheelwright.steps.validate_install_deps import BUILD_REQUIREMENT
from wheelwright.www.dashboard import NAME as DASHBOARD

TRIGGER_PREFIX = "bootstrap-"
# What a build can find that its sdist does not say, by the property its step sets.
DISCOVERED = {"build-backend": "missing_build_requires", "install": "missing_install_requires"}


def first_of(deferreds) -> defer.Deferred:
    """Fires when the first of deferreds does (their results left as they are)."""
    woken: defer.Deferred = defer.Deferred()

    def wake(result):
        if not woken.called:
            woken.callback(None)
        return result

    for d in deferreds:
        d.addBoth(wake)
    return woken


class BootstrapTree(WheelwrightStep):
    name = "bootstrap"

    @property
    def subject(self) -> str:
        return f"bootstrap {self.getProperty('requirements', '')}"

    description = ["planning the tree"]

    def __init__(self, **kwargs):
        super().__init__(doStepIf=True, **kwargs)
        self.stopping: defer.Deferred = defer.Deferred()

    async def run(self):
        builders = self.getProperty("builders") or self.farm.local_builders()
        try:
            nodes, keys = await threads.deferToThread(
                bootstrap.plan_tree,
                self.farm,
                self.getProperty("requirements", "").split(),
                self.getProperty("constraints") or "",
                int(self.getProperty("versions") or 0),
                builders,
            )
        except (bootstrap.BootstrapError, SourceError, IndexUnreachable) as exc:
            return await self.fail(str(exc))
        planned = bootstrap.planned_json(nodes, keys)
        await self.addCompleteLog("plan", json.dumps(planned, indent=2) + "\n")
        await self.keep_plan(nodes)
        self.progress = await self.addLog("progress")
        self.nodes = nodes
        defer.ensureDeferred(self.scan_ahead(keys)).addErrback(
            log.err, "scanning a bootstrap's sdists ahead of its builds"
        )
        consumers = await self.follow_publications()
        try:
            outcome = await self.drive(builders)
        finally:
            for consumer in consumers:
                consumer.stopConsuming()
        await self.keep_plan(nodes)
        self.setProperty("bootstrap_outcome", {"plan": planned, **outcome}, self.name)
        builderid = await self.master.data.updates.findBuilderId(self.getProperty("buildername"))
        await self.addURL(
            "the tree (picture)",
            f"{self.farm.ui_url}plugins/wsgi_dashboards/{DASHBOARD}/tree/"
            f"{builderid}/{self.build.number}.svg",
        )
        self.descriptionDone = [
            f"{count(len(outcome['built']), 'package')} built"
            + (f", {len(outcome['failed'])} failed" if outcome["failed"] else "")
            + (f", {len(outcome['not_built'])} skipped" if outcome["not_built"] else "")
        ]
        self.build_summary = self.descriptionDone[0]
        if self.stopping.called:
            self.descriptionDone = [f"stopped; {self.descriptionDone[0]}"]
            return CANCELLED
        return FAILURE if outcome["failed"] or outcome["not_built"] else SUCCESS

    async def scan_ahead(self, keys: list[str]) -> None:
        """Scan the tree's sdists the plan read, one after the other in build order, while the
        first builds run: a build publishes once its sdist's scan is made, which is then made or
        under way. One thread at a time, from the reactor: a stopping master waits for one scan."""
        for key in keys:
            sdist = self.nodes[key].sdist
            path = self.farm.source_cache / sdist.filename if sdist else None
            if sdist and path and path.is_file():  # one the plan did not read, its build scans
                await threads.deferToThread(scan.scanned, self.farm, path, sdist.sha256)

    async def keep_plan(self, nodes) -> None:
        graph = json.dumps(bootstrap.graph_json(nodes), indent=2) + "\n"
        order = (
            json.dumps(bootstrap.build_order_json(nodes, bootstrap.order(nodes)), indent=2) + "\n"
        )
        folder = self.farm.logs_dir / "bootstrap"
        await threads.deferToThread(folder.mkdir, parents=True, exist_ok=True)
        for name, text in (("graph.json", graph), ("build-order.json", order)):
            await threads.deferToThread((folder / name).write_text, text)

    async def say(self, line: str) -> None:
        await self.progress.addStdout(f"{time.strftime('%H:%M:%S')} {line}\n")

    async def drive(self, builders: list[str]) -> dict:
        started = time.monotonic()
        history = await threads.deferToThread(self.farm.bootstrap_durations)
        slots = max(1, self.farm.workers_for(builders))
        pending, running = dict(bootstrap.buildable(self.nodes)), {}  # type: ignore[var-annotated]
        built, failed, not_built, durations, discovered = {}, {}, {}, {}, {}  # type: ignore[var-annotated]
        first = bootstrap.priorities(self.nodes, history)
        while pending or running:
            self.show_progress(built, running, failed)
            if self.stopping.called:
                await self.say(f"stopped: {', '.join(sorted(pending)) or 'nothing'} not started")
                not_built.update({k: "the bootstrap was stopped" for k in [*pending, *running]})
                await self.stop_builds(running)
                pending.clear()
                break
            for key in self.blocked(pending, failed.keys() | not_built.keys()):
                not_built[key] = (
                    f"needs {', '.join(sorted(pending.pop(key).needs & (failed.keys() | not_built.keys())))}"
                )
                await self.say(f"{key} not built: {not_built[key]}")
            ready = sorted(
                (k for k, n in pending.items() if n.needs <= built.keys() | self.published),
                key=lambda k: (-first.get(k, 0), k),
            )
            # a build that has published is ending (its worker is free in a moment)
            for key in ready[: slots - len(running.keys() - self.published)]:
                on = sorted(self.nodes[key].builders) or builders
                running[key] = await self.trigger(pending.pop(key), on)
                await self.say(f"{key} started on {', '.join(on)}")
            self.show_progress(built, running, failed)
            done = [k for k, d in running.items() if d.called]
            if not done and not running:
                # nothing runs and nothing can start: what is left waits on what never comes
                for key, node in sorted(pending.items()):
                    unmet = node.needs - built.keys() - self.published
                    not_built[key] = f"needs {', '.join(sorted(unmet))}, which was not built"
                    await self.say(f"{key} not built: {not_built[key]}")
                pending.clear()
                break
            if not done:
                await first_of([*running.values(), self.published_more, self.stopping])
                continue
            for key in done:
                builds = await self.builds_of(await running.pop(key))
                durations[key] = max((b["duration"] for b in builds), default=0)
                if builds and all(b["results"] in (SUCCESS, WARNINGS, SKIPPED) for b in builds):
                    built[key] = [b["url"] for b in builds]
                    await self.say(
                        f"{key} built ({len(built)} of {len(bootstrap.buildable(self.nodes))})"
                    )
                    continue
                found = {
                    kind: sorted({m for b in builds for m in b["properties"].get(prop) or []})
                    for kind, prop in DISCOVERED.items()
                }
                if any(found.values()) and key not in discovered:
                    discovered[key] = [m for missing in found.values() for m in missing]
                    for kind, missing in found.items():
                        new = await threads.deferToThread(
                            bootstrap.plan_discovered,
                            self.farm,
                            self.nodes,
                            key,
                            missing,
                            kind,
                            {},
                            builders,
                        )
                        pending.update({k: self.nodes[k] for k in new})
                    pending[key] = self.nodes[key]
                    first = bootstrap.priorities(self.nodes, history)
                    await self.say(
                        f"{key} needs {', '.join(discovered[key])}, which its sdist did not say: "
                        "building them, then it again"
                    )
                    continue
                failed[key] = {
                    b["builder"]: {"url": b["url"], "failed_steps": b["failed_steps"]}
                    for b in builds
                } or "no build ran"
                await self.say(f"{key} FAILED: {json.dumps(failed[key])}")
        await threads.deferToThread(
            self.farm.add_bootstrap_durations,
            {self.nodes[k].project: d for k, d in durations.items() if k in built},
        )
        return {
            "built": built,
            "failed": failed,
            "not_built": not_built,
            "discovered": discovered,
            "makespan_s": round(time.monotonic() - started, 2),
            "durations_s": durations,
        }

    def show_progress(self, built: dict, running: dict, failed: dict) -> None:
        """The step's summary is the tree's progress (the UI and `bootstrap --wait` show it)."""
        self.description = [
            f"{len(built)} of {len(bootstrap.buildable(self.nodes))} built, {len(running)} building"
            + (f", {len(failed)} failed" if failed else "")
        ]
        self.updateSummary()

    @staticmethod
    def blocked(pending: dict, lost) -> list[str]:
        """The pending keys that need, directly or through other pending keys, one of lost (the
        failed and the skipped): found to the end, not in one pass whose order could miss one."""
        lost, found = set(lost), []
        changed = True
        while changed:
            changed = False
            for key, node in pending.items():
                if key not in found and node.needs & lost:
                    found.append(key)
                    lost.add(key)
                    changed = True
        return found

    def interrupt(self, reason):
        """A Stop from the UI or REST: the tree ends now, its running builds left to end (or be
        stopped) on their own builders, nothing more started."""
        if not self.stopping.called:
            self.stopping.callback(None)
        return super().interrupt(reason)

    async def follow_publications(self) -> list:
        """Follow the master's messages to know as soon as a package of the tree is published on
        every builder (the UpdateIndex steps of its builds succeeded; what needs it may start) and
        not only once its builds end: the start of builds, for their requests, and the end of
        steps."""
        self.published: set[str] = set()
        self.published_more: defer.Deferred = defer.Deferred()
        self.requests: dict[str, set[int]] = {}  # by key, its builds' requests (trigger)
        request_of: dict[int, int] = {}  # by build id
        published: set[int] = set()  # requests whose build published

        def build_started(_, build):
            request_of[build["buildid"]] = build["buildrequestid"]

        def step_finished(_, step):
            if step["name"] != UpdateIndex.name or step["results"] not in (SUCCESS, WARNINGS):
                return
            published.add(request_of.get(step["buildid"], -1))
            now = {k for k, requests in self.requests.items() if requests <= published}
            if now - self.published:
                self.published |= now
                woken, self.published_more = self.published_more, defer.Deferred()
                woken.callback(None)

        return [
            await self.master.mq.startConsuming(build_started, ("builds", None, "new")),
            await self.master.mq.startConsuming(
                step_finished, ("builds", None, "steps", None, "finished")
            ),
        ]

    async def trigger(self, node, builders: list[str]) -> defer.Deferred:
        """Trigger node's build on every builder; fires with their (result, brids) pairs."""
        waiting = []
        self.requests[node.key] = set()
        for builder in builders:
            scheduler = self.master.scheduler_manager.namedServices[TRIGGER_PREFIX + builder]
            props = Properties()
            for name, value in (
                ("package", node.project),
                ("version", node.version),
                ("reason", f"bootstrap build {self.build.number}: {node.key}"),
                (BUILD_REQUIREMENT, node.key in bootstrap.build_requirements(self.nodes)),
                ("fallback", node.fallback or None),  # in the wheel's provenance
            ):
                props.setProperty(name, value, "bootstrap")
            ids, results = scheduler.trigger(
                waited_for=True,
                set_props=props,
                parent_buildid=self.build.buildid,
                parent_relationship="bootstrap",
            )
            _, requests = await ids
            self.requests[node.key].update(requests.values())
            waiting.append(results)
        return defer.gatherResults(waiting, consumeErrors=True)

    async def stop_builds(self, running: dict) -> None:
        """Stop the builds this bootstrap started that still run, and cancel those not yet begun,
        as Buildbot's own Trigger step does when its build is stopped."""
        reason = {"reason": f"bootstrap build {self.build.number} was stopped"}
        for key in running:
            for brid in self.requests.get(key, ()):
                for build in await self.master.data.get(("buildrequests", brid, "builds")):
                    if not build["complete"]:
                        await self.master.data.control("stop", reason, ("builds", build["buildid"]))
                try:
                    await self.master.data.control("cancel", reason, ("buildrequests", brid))
                except Exception as exc:  # claimed meanwhile: its build was stopped above
                    log.msg(f"bootstrap: request {brid} not cancelled: {exc}")

    async def builds_of(self, outcomes: list) -> list[dict]:
        """The builds the triggered requests ran: builder, result, duration, URL, properties and the
        summaries of their failed steps."""
        found = []
        for _, brids in outcomes:
            for builderid, brid in brids.items():
                for build in await self.master.data.get(("buildrequests", brid, "builds")):
                    properties = await self.master.data.get(
                        ("builds", build["buildid"], "properties")
                    )
                    steps = await self.master.data.get(("builds", build["buildid"], "steps"))
                    builder = await self.master.data.get(("builders", builderid))
                    found.append(
                        {
                            "builder": builder["name"],
                            "results": build["results"],
                            "duration": (
                                build["complete_at"] - build["started_at"]
                            ).total_seconds(),
                            "url": getURLForBuild(self.master, builderid, build["number"]),
                            "properties": {name: value for name, (value, _) in properties.items()},
                            "failed_steps": {
                                s["name"]: s["state_string"]
                                for s in steps
                                if s["results"] not in (None, SUCCESS, SKIPPED, WARNINGS)
                            },
                        }
                    )
        return found
