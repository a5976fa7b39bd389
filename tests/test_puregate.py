"""The gate that lets one build of a version go first (policy/puregate.py), on its own."""

from __future__ import annotations

import asyncio

from buildbot.process.properties import Properties

from wheelwright.policy.puregate import PureWheelGate


class Master:
    """What the gate asks of Buildbot's master: request states, a message queue, the botmaster."""

    def __init__(self):
        self.complete: dict[int, bool] = {}
        self.consumers = []
        self.pokes = 0
        self.data = self
        self.mq = self
        self.botmaster = self

    async def get(self, path):
        return {"complete": self.complete[path[1]]}

    async def startConsuming(self, callback, routing):
        self.consumers.append((callback, routing))

    def maybeStartBuildsForAllBuilders(self):
        self.pokes += 1


class Request:
    def __init__(self, brid: int, **props):
        self.id = brid
        self.properties = Properties(**props)


def can_start(gate, master, request) -> bool:
    builder = type("Builder", (), {"master": master})()
    return asyncio.run(gate.can_start(builder, None, request))


def test_the_first_request_of_a_version_goes_alone_until_it_completes():
    gate, master = PureWheelGate(), Master()
    first, second = (
        Request(1, package="Pkg", version="1.0"),
        Request(2, package="pkg", version="1.0"),
    )
    other_version = Request(3, package="pkg", version="2.0")
    master.complete = {1: False, 2: False, 3: False}
    assert can_start(gate, master, first)
    assert not can_start(gate, master, second)  # the same project, however it is spelled
    assert can_start(gate, master, other_version)
    assert can_start(gate, master, first)  # asked again (a worker went away): still first
    # it listens for completions: Buildbot re-examines only the finished build's own builder
    assert [routing for _, routing in master.consumers] == [("buildrequests", None, "complete")]
    master.complete[1] = True  # its pure wheel published (or it failed): the next goes first
    assert can_start(gate, master, second)
    assert not can_start(gate, master, Request(4, package="pkg", version="1.0"))


def test_a_wheel_that_is_not_pure_lets_every_builder_go():
    gate, master = PureWheelGate(), Master()
    master.complete = {1: False, 2: False, 3: False}
    assert can_start(gate, master, Request(1, package="pkg", version="1.0"))
    gate.not_pure(master, Properties(package="pkg", version="1.0"))
    assert master.pokes == 1
    assert can_start(gate, master, Request(2, package="pkg", version="1.0"))
    assert can_start(gate, master, Request(3, package="pkg", version="1.0"))


def test_verify_builds_and_rebuilds_are_gated_apart():
    gate, master = PureWheelGate(), Master()
    master.complete = {1: False, 2: False, 3: False}
    assert can_start(gate, master, Request(1, package="pkg", version="1.0"))
    assert can_start(
        gate, master, Request(2, package="pkg", version="1.0", verify=True)
    )  # publishes nothing
    assert can_start(
        gate, master, Request(3, package="pkg", version="1.0", wheel_version="1.0.post1")
    )
