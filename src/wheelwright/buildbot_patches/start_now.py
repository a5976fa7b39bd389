"""A new build request goes to the build request distributor at once.

Buildbot's botmaster waits 0.1 s after each new request (a debounce, to take a burst of them in
one pass) before it looks for a worker: a tenth of a small build's whole overhead, and one more
tenth at every level of a bootstrap's tree. The distributor already takes requests that arrive
while it works in one pass, so this service hands it each new request's builder as it comes; the
botmaster's own, later look then finds nothing left to start.
"""

from __future__ import annotations

from buildbot.util import service


class StartNewRequestsAtOnce(service.BuildbotService):
    name = "start-new-requests-at-once"

    async def startService(self):
        await super().startService()
        self.consumer = await self.master.mq.startConsuming(
            self.request_added, ("buildrequests", None, "new")
        )

    async def stopService(self):
        self.consumer.stopConsuming()
        await super().stopService()

    def request_added(self, _key, request: dict) -> None:
        builder = self.master.botmaster.getBuilderById(request["builderid"])
        if builder is not None:
            self.master.botmaster.maybeStartBuildsForBuilder(builder.name)
