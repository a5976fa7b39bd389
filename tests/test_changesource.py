"""The upstream change source against hermetic upstreams: one that serves PyPI's changelog, and
one with nothing but its pages."""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import time
from pathlib import Path

import pytest
from buildbot.test.reactor import TestReactorMixin
from buildbot.test.util.changesource import ChangeSourceMixin
from twisted.python import log
from twisted.trial import unittest

from tests.conftest import wheel_index_has
from tests.farm import http_get
from tests.sdists import Upstream, free_port, setuptools_sdist
from tests.wheels import make_wheel
from wheelwright.changes.upstream_pages import CATEGORY, SLICES, UpstreamReleases, releases
from wheelwright.common.files import sha256_of
from wheelwright.farm.settings import Farm


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
    assert [(r.project, r.version, r.sdist, r.timestamp) for r in found] == [
        ("watched", "1.0", "watched-1.0.tar.gz", 12)
    ]


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
        self.upstream.add(
            setuptools_sdist(self.tmp, "watched", "0.9")
        )  # before the farm watched: history
        await self.changesource.poll()
        self.assertEqual(self.master.data.updates.changesAdded, [])
        self.assertEqual(self.changesource.watch["way"], "changelog")
        self.upstream.add(setuptools_sdist(self.tmp, "watched", "1.0"))
        self.upstream.add(setuptools_sdist(self.tmp, "unwatched", "1.0"))
        before = self.upstream.requests
        await self.changesource.poll()
        # the changelog, then the page of the one allow-listed project it names
        self.assertEqual(self.upstream.requests - before, 2)
        (change,) = self.master.data.updates.changesAdded
        self.assertEqual(
            (change["category"], change["project"], change["properties"]),
            (
                CATEGORY,
                "watched",
                {"package": "watched", "version": "1.0", "reason": "released upstream"},
            ),
        )
        self.assertIn("watched 1.0 released upstream (watched-1.0.tar.gz)", change["comments"])
        await self.changesource.poll()  # nothing new
        self.assertEqual(len(self.master.data.updates.changesAdded), 1)

    async def test_an_unreadable_changelog_is_logged_and_asked_again_from_the_same_serial(self):
        await self.changesource.poll()
        self.changesource.farm = Farm(
            root=self.farm.root,
            upstream=self.upstream.url,
            upstream_changelog=f"http://127.0.0.1:{free_port()}/pypi",
        )
        self.upstream.add(setuptools_sdist(self.tmp, "watched", "1.0"))
        with twisted_log() as lines:
            await self.changesource.poll()
        self.assertTrue(
            any("cannot read the changelog at http://127.0.0.1:" in line for line in lines), lines
        )
        self.changesource.farm = self.farm
        await self.changesource.poll()
        self.assertEqual(
            [c["properties"]["version"] for c in self.master.data.updates.changesAdded], ["1.0"]
        )

    async def test_the_serial_survives_a_restart(self):
        await self.changesource.poll()
        self.upstream.add(setuptools_sdist(self.tmp, "watched", "1.0"))
        await self.changesource.disownServiceParent()
        await self.attachChangeSource(UpstreamReleases(self.farm, pollInterval=60))
        await self.changesource.poll()
        self.assertEqual(
            [c["properties"]["version"] for c in self.master.data.updates.changesAdded], ["1.0"]
        )


class TestUpstreamPages(ChangeSourceMixin, TestReactorMixin, unittest.TestCase):
    """An upstream with no changelog (405, as PyPI's CDN answers XML-RPC): its pages are watched."""

    async def setUp(self):
        self.setup_test_reactor()
        self.reactor.advance(time.time())  # upload times are the upstream's real ones
        await self.setUpChangeSource()
        self.tmp = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.tmp)
        self.upstream = Upstream(self.tmp / "upstream", free_port(), changelog=False)
        self.addCleanup(self.upstream.close)
        self.farm = Farm(root=self.tmp / "farm", upstream=self.upstream.url)
        self.farm.root.mkdir()
        self.farm.allowlist.write_text("watched\n")
        await self.attachChangeSource(UpstreamReleases(self.farm, pollInterval=60))

    async def cycle(self) -> list[str]:
        """A whole poll interval (every slice), and the versions it started builds of."""
        before = len(self.master.data.updates.changesAdded)
        for _ in range(SLICES):
            await self.changesource.poll()
        return [c["properties"]["version"] for c in self.master.data.updates.changesAdded[before:]]

    def settings(self, text: str) -> None:
        path = self.farm.settings_dir / "settings" / "watched.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    async def test_it_says_how_it_watches_and_builds_what_is_released_from_then_on(self):
        self.upstream.add(setuptools_sdist(self.tmp, "watched", "0.9"))
        self.assertEqual(await self.cycle(), [])  # history
        self.assertEqual(self.changesource.watch["way"], "pages")
        said = json.loads(self.farm.upstream_watch_file.read_text())["said"]
        self.assertIn("reading the allow-listed projects' pages with conditional requests", said)
        self.upstream.add(setuptools_sdist(self.tmp, "watched", "1.0"))
        self.assertEqual(await self.cycle(), ["1.0"])
        self.assertEqual(await self.cycle(), [])

    async def test_a_release_whose_sdist_comes_after_its_wheels_is_built_when_the_sdist_comes(self):
        await self.cycle()
        self.upstream.store.publish(
            "watched-2.0-py3-none-any.whl",
            make_wheel(self.tmp, "watched", "2.0"),
            sha256=sha256_of(self.tmp / "watched-2.0-py3-none-any.whl"),
        )
        self.assertEqual(await self.cycle(), [])
        self.upstream.add(setuptools_sdist(self.tmp, "watched", "2.0"))
        self.assertEqual(await self.cycle(), ["2.0"])

    async def test_yanked_pre_and_unwanted_releases_are_not_built(self):
        self.farm.allowlist.write_text("watched>=2\n")
        await self.cycle()
        self.upstream.add(setuptools_sdist(self.tmp, "watched", "1.5"))  # the specifier says no
        self.upstream.add(setuptools_sdist(self.tmp, "watched", "2.1rc1"))  # a pre-release
        self.upstream.add(setuptools_sdist(self.tmp, "watched", "2.1"))
        self.upstream.store.yank("watched", "2.1", "broken")
        self.assertEqual(await self.cycle(), [])
        self.upstream.store.yank("watched", "2.1", None)  # unyanked: now it is built
        self.assertEqual(await self.cycle(), ["2.1"])
        self.settings("prereleases: true\n")
        self.upstream.add(setuptools_sdist(self.tmp, "watched", "2.2rc1"))
        self.assertEqual(await self.cycle(), ["2.2rc1"])  # 2.1rc1 was passed over when it came

    async def test_a_cooldown_waits_before_building_a_new_upload(self):
        self.settings("min_release_age: 3600\n")
        await self.cycle()
        self.upstream.add(setuptools_sdist(self.tmp, "watched", "3.0"))
        self.assertEqual(await self.cycle(), [])
        self.reactor.advance(1800)
        self.assertEqual(await self.cycle(), [])
        self.reactor.advance(1801)
        requests_before = self.upstream.full_pages
        self.assertEqual(await self.cycle(), ["3.0"])
        self.assertEqual(
            self.upstream.full_pages - requests_before, 1
        )  # looked at again in full when due

    async def test_nothing_is_repeated_or_lost_across_a_restart(self):
        await self.cycle()
        self.upstream.add(setuptools_sdist(self.tmp, "watched", "1.0"))
        self.assertEqual(await self.cycle(), ["1.0"])
        await self.changesource.disownServiceParent()
        self.upstream.add(setuptools_sdist(self.tmp, "watched", "1.1"))  # while the master was down
        await self.attachChangeSource(UpstreamReleases(self.farm, pollInterval=60))
        self.assertEqual(await self.cycle(), ["1.1"])

    async def test_a_thousand_projects_cost_conditional_requests_only(self):
        names = [f"quiet-{n:04}" for n in range(999)]
        for name in names:  # pages as the upstream's store writes them, without their files
            self.upstream.store.project_dir(name).mkdir()
            self.upstream.store._write_listing(
                name,
                {
                    f"{name}-1.0.tar.gz": {
                        "filename": f"{name}-1.0.tar.gz",
                        "version": "1.0",
                        "sha256": "0" * 64,
                        "size": 1,
                        "upload-time": "2026-01-01T00:00:00Z",
                    }
                },
            )
        self.upstream.add(setuptools_sdist(self.tmp, "watched", "1.0"))
        self.farm.allowlist.write_text("".join(f"{n}\n" for n in ["watched", *names]))
        self.assertEqual(await self.cycle(), [])
        self.assertEqual(self.upstream.full_pages, 1000)  # the first look at each
        self.upstream.add(setuptools_sdist(self.tmp, "watched", "2.0"))
        full, not_modified = self.upstream.full_pages, self.upstream.not_modified
        self.assertEqual(await self.cycle(), ["2.0"])
        self.assertEqual(
            (self.upstream.full_pages - full, self.upstream.not_modified - not_modified), (1, 999)
        )


@pytest.mark.farm
def test_a_release_upstream_of_an_allow_listed_project_is_built_and_published(
    backends, upstream, tmp_path
):
    with open(backends.state / "allowlist.txt", "a") as allowlist:
        allowlist.write("\nreleased\n")
    upstream.add(setuptools_sdist(tmp_path, "unlisted", "1.0"))
    upstream.add(setuptools_sdist(tmp_path, "released", "1.0"))
    deadline = time.monotonic() + 120
    while not wheel_index_has(backends, "released") and time.monotonic() < deadline:
        time.sleep(0.5)
    backends.wait_until_idle()
    builds = backends.api("builds?property=package&property=version&property=scheduler")["builds"]
    started = [
        (b["properties"]["package"][0], b["properties"]["scheduler"][0])
        for b in builds
        if "package" in b["properties"]
        and b["properties"]["package"][0] in ("released", "unlisted")
    ]
    assert started and set(started) == {("released", "upstream-releases")}, started
    assert http_get(backends.status["index"] + "released/released-1.0-py3-none-any.whl")[0] == 200
