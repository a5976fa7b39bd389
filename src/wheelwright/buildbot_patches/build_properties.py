"""A build's properties are written after each step without rendering values that are plain.

After every step, before the next starts, Buildbot's `setBuildProperties` writes the build's
changed properties; it first renders all of them, walking every list and dict of every value with
a Deferred for each element. A build of ours has some 45 properties (its `timings` a dict of a
hundred entries by the end): 7 to 16 ms a step on this machine, on the master's one thread. The
values a build holds are plain once set (a step renders its renderables before it sets a
property), so this service compares and writes them as they are. Only a whole value may be a
renderable (`setProperty` takes nothing else that JSON cannot hold: a builder's `Interpolate`, say);
a build that holds one is rendered first, as Buildbot does.
"""

from __future__ import annotations

import copy

from buildbot.interfaces import IRenderable
from buildbot.util import service
from twisted.internet import defer


class PlainBuildProperties(service.BuildbotService):
    name = "plain-build-properties"

    async def startService(self):
        await super().startService()
        self.master.data.updates.setBuildProperties = self.set_build_properties

    def set_build_properties(self, buildid: int, properties) -> defer.Deferred:
        values = properties.getProperties().asDict()
        if any(IRenderable.providedBy(value) for value, _ in values.values()):
            # Buildbot's own, from its resource type: what `updates` held may be ours already.
            return self.master.data.rtypes.property.setBuildProperties(buildid, properties)
        return defer.ensureDeferred(self._write_changed(buildid, values))

    async def _write_changed(self, buildid: int, values: dict) -> None:
        written = await self.master.data.get(("builds", str(buildid), "properties"))
        # Copies: the database writes them from its thread while the build goes on.
        changed = {k: copy.deepcopy(v) for k, v in values.items() if written.get(k) != v}
        for name, (value, source) in changed.items():
            await self.master.db.builds.setBuildProperty(buildid, name, value, source)
        if changed:
            self.master.data.rtypes.property.generateUpdateEvent(buildid, changed)
