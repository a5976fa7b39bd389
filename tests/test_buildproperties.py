"""A build's properties are written after each step without rendering plain values
(buildbot_patches/build_properties.py), on Buildbot's own data API, database and message queue."""

from __future__ import annotations

from types import SimpleNamespace

from buildbot.process.properties import Interpolate, Properties
from buildbot.test import fakedb
from buildbot.test.fake import fakemaster
from buildbot.test.reactor import TestReactorMixin
from twisted.trial import unittest

from wheelwright.buildbot_patches.build_properties import PlainBuildProperties

BUILD = 20


class TestPlainBuildProperties(TestReactorMixin, unittest.TestCase):
    async def setUp(self):
        self.setup_test_reactor()
        self.master = await fakemaster.make_master(self, wantMq=True, wantData=True, wantDb=True)
        await self.master.db.insert_test_data(
            [
                fakedb.Master(id=1),
                fakedb.Worker(id=2, name="w"),
                fakedb.Builder(id=3, name="x86_64-py3.11"),
                fakedb.Buildset(id=4),
                fakedb.BuildRequest(id=5, buildsetid=4, builderid=3),
                fakedb.Build(id=BUILD, buildrequestid=5, builderid=3, workerid=2, masterid=1),
            ]
        )
        self.service = PlainBuildProperties()
        await self.service.setServiceParent(self.master)
        await self.master.startService()
        self.addCleanup(self.master.stopService)
        self.build = SimpleNamespace(properties=Properties())
        self.build.getProperties = lambda: self.build.properties
        self.written: list[str] = []
        write = self.master.db.builds.setBuildProperty

        def recording(buildid, name, value, source):
            self.written.append(name)
            return write(buildid, name, value, source)

        self.master.db.builds.setBuildProperty = recording

    async def set_build_properties(self) -> dict:
        await self.master.data.updates.setBuildProperties(BUILD, self.build)
        return await self.master.db.builds.getBuildProperties(BUILD)

    async def test_plain_values_are_written_without_rendering_and_only_when_changed(self):
        def no_rendering(*_):
            raise AssertionError("a plain value was rendered")

        self.build.properties.render = no_rendering
        timings = {"download-source": {"step": 0.1, "worker shell": 0.05}}
        self.build.properties.setProperty("timings", timings, "timings")
        self.build.properties.setProperty("package", "flask", "Force Build Form")
        assert await self.set_build_properties() == {
            "timings": (timings, "timings"),
            "package": ("flask", "Force Build Form"),
        }
        self.build.properties.setProperty("timings", {**timings, "prepare-source": {}}, "timings")
        await self.set_build_properties()
        assert self.written == ["timings", "package", "timings"]
        assert self.master.mq.productions[-1] == (
            ("builds", str(BUILD), "properties", "update"),
            {"timings": ({**timings, "prepare-source": {}}, "timings")},
        )

    async def test_a_renderable_value_is_rendered_as_buildbot_renders_it_after_a_restart_too(self):
        await self.service.stopService()
        await self.service.startService()
        self.build.properties.setProperty("package", "flask", "Force Build Form")
        self.build.properties.setProperty("label", Interpolate("%(prop:package)s!"), "Builder")
        assert (await self.set_build_properties())["label"] == ("flask!", "Builder")
