"""The upstream change source against a hermetic upstream that serves PyPI's changelog."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from pathlib import Path

from buildbot.test.reactor import TestReactorMixin
from buildbot.test.util.changesource import ChangeSourceMixin
from twisted.python import log
from twisted.trial import unittest

from tests.conftest import wheel_index_has
from tests.farm import http_get
from tests.sdists import Upstream, free_port, setuptools_sdist
from wheelwright.master.changesource import CATEGORY, UpstreamReleases, releases
from wheelwright.master.farm import Farm


def test_only_sdists_of_allow_listed_projects_count_once_each():
    events = [
        ("Watched", "1.0", 10, "new release", 1),
        ("Watched", "1.0", 11, "add py3 file Watched-1.0-py3-none-any.whl", 2),
        ("Watched", "1.0", 12, "add source file watched-1.0.tar.gz", 3),
        ("watched", "1.0", 13, "add source file watched-1.0.zip", 4),
        ("other", "2.0", 14, "add source file other-2.0.tar.gz", 5),
        ("watched", "not a version", 15, "add source file watched-x.tar.gz", 6),
        ("watched", "2.0", 16, "remove file watched-2.0.tar.gz", 7),
    ]
    found = releases(events, {"watched"})
    assert [(r.project, r.version, r.sdist, r.timestamp) for r in found] == [("watched", "1.0", "watched-1.0.tar.gz", 12)]


@contextlib.contextmanager
def twisted_log():
    lines: list[str] = []

    def observe(event):
        lines.append(" ".join(str(m) for m in event.get("message", ())))

    log.addObserver(observe)
    try:
        yield lines
    finally:
        log.removeObserver(observe)


class TestUpstreamReleases(ChangeSourceMixin, TestReactorMixin, unittest.TestCase):
    async def setUp(self):
        self.setup_test_reactor()
        await self.setUpChangeSource()
        self.tmp = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.tmp)
        self.upstream = Upstream(self.tmp / "upstream", free_port())
        self.addCleanup(self.upstream.close)
        self.farm = Farm(root=self.tmp / "farm", upstream=self.upstream.url)
        self.farm.root.mkdir()
        self.farm.allowlist.write_text("watched\n")
        await self.attachChangeSource(UpstreamReleases(self.farm, pollInterval=60))

    async def test_a_new_sdist_of_an_allow_listed_project_is_a_change_and_one_request_a_poll(self):
        self.upstream.add(setuptools_sdist(self.tmp, "watched", "0.9"))  # before the farm watched: history
        await self.changesource.poll()
        self.assertEqual(self.master.data.updates.changesAdded, [])
        self.upstream.add(setuptools_sdist(self.tmp, "watched", "1.0"))
        self.upstream.add(setuptools_sdist(self.tmp, "unwatched", "1.0"))
        before = self.upstream.requests
        await self.changesource.poll()
        self.assertEqual(self.upstream.requests - before, 1)
        (change,) = self.master.data.updates.changesAdded
        self.assertEqual((change["category"], change["project"], change["properties"]),
                         (CATEGORY, "watched", {"package": "watched", "version": "1.0", "reason": "released upstream"}))
        self.assertIn("watched 1.0 released upstream (watched-1.0.tar.gz)", change["comments"])
        await self.changesource.poll()  # nothing new
        self.assertEqual(len(self.master.data.updates.changesAdded), 1)

    async def test_an_unreadable_changelog_is_logged_and_asked_again_from_the_same_serial(self):
        await self.changesource.poll()
        self.changesource.farm = Farm(root=self.farm.root, upstream=self.upstream.url,
                                      upstream_changelog=f"http://127.0.0.1:{free_port()}/pypi")
        self.upstream.add(setuptools_sdist(self.tmp, "watched", "1.0"))
        with twisted_log() as lines:
            await self.changesource.poll()
        self.assertTrue(any("cannot read the changelog at http://127.0.0.1:" in line for line in lines), lines)
        self.changesource.farm = self.farm
        await self.changesource.poll()
        self.assertEqual([c["properties"]["version"] for c in self.master.data.updates.changesAdded], ["1.0"])

    async def test_the_serial_survives_a_restart(self):
        await self.changesource.poll()
        self.upstream.add(setuptools_sdist(self.tmp, "watched", "1.0"))
        await self.changesource.disownServiceParent()
        await self.attachChangeSource(UpstreamReleases(self.farm, pollInterval=60))
        await self.changesource.poll()
        self.assertEqual([c["properties"]["version"] for c in self.master.data.updates.changesAdded], ["1.0"])


def test_a_release_upstream_of_an_allow_listed_project_is_built_and_published(backends, upstream, tmp_path):
    with open(backends.state / "allowlist.txt", "a") as allowlist:
        allowlist.write("\nreleased\n")
    upstream.add(setuptools_sdist(tmp_path, "unlisted", "1.0"))
    upstream.add(setuptools_sdist(tmp_path, "released", "1.0"))
    deadline = time.monotonic() + 120
    while not wheel_index_has(backends, "released") and time.monotonic() < deadline:
        time.sleep(0.5)
    backends.wait_until_idle()
    builds = backends.api("builds?property=package&property=version&property=scheduler")["builds"]
    started = [(b["properties"]["package"][0], b["properties"]["scheduler"][0]) for b in builds
               if "package" in b["properties"] and b["properties"]["package"][0] in ("released", "unlisted")]
    assert started and set(started) == {("released", "upstream-releases")}, started
    assert http_get(backends.status["index"] + "released/released-1.0-py3-none-any.whl")[0] == 200
