"""A new build request reaches the build request distributor at once (buildbot_patches/start_now.py), on
Buildbot's own botmaster and message queue."""

from __future__ import annotations

from types import SimpleNamespace

from buildbot.process.botmaster import BotMaster
from buildbot.test import fakedb
from buildbot.test.fake import fakemaster
from buildbot.test.reactor import TestReactorMixin
from twisted.trial import unittest

from wheelwright.buildbot_patches.start_now import StartNewRequestsAtOnce

BUILDER = "x86_64-py3.11"


class TestStartNewRequestsAtOnce(TestReactorMixin, unittest.TestCase):
    async def setUp(self):
        self.setup_test_reactor()
        self.master = await fakemaster.make_master(self, wantMq=True, wantData=True, wantDb=True)
        await self.master.db.insert_test_data([fakedb.Builder(id=3, name=BUILDER)])
        self.botmaster = BotMaster()
        self.master.botmaster = self.botmaster
        await self.botmaster.setServiceParent(self.master)
        self.botmaster._builders_byid = {3: SimpleNamespace(name=BUILDER)}
        self.asked: list[list[str]] = []
        self.botmaster.brd.maybeStartBuildsOn = self.asked.append
        await self.master.startService()
        self.addCleanup(self.master.stopService)

    def new_request(self) -> None:
        message = {"brid": 7, "bsid": 5, "builderid": 3, "buildername": BUILDER}
        self.master.mq.callConsumer(("buildrequests", "7", "new"), message)

    async def test_buildbot_alone_asks_the_distributor_a_tenth_of_a_second_later(self):
        self.new_request()
        assert self.asked == []
        self.reactor.advance(0.1)
        assert self.asked == [[BUILDER]]

    async def test_the_service_asks_it_at_once(self):
        await StartNewRequestsAtOnce().setServiceParent(self.master)
        self.new_request()
        assert self.asked == [[BUILDER]]
