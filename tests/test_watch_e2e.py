"""A farm watching an upstream that has no changelog (as PyPI's CDN answers XML-RPC from here: 405):
new releases of allow-listed projects are built by themselves, a thousand quiet projects cost
conditional requests only."""

from __future__ import annotations

import json
import time

import pytest
from buildbot.process.results import FAILURE

from tests.conftest import running_farm, wheel_index_has
from tests.sdists import CACHE, Upstream, free_port, setuptools_sdist
from tests.test_scan import malicious_sdist

pytestmark = pytest.mark.farm

QUIET = [f"quiet-{n:04}" for n in range(1000)]


@pytest.fixture(scope="module")
def watched(tmp_path_factory):
    upstream = Upstream(tmp_path_factory.mktemp("pages-only"), free_port(), changelog=False)
    for name in QUIET:  # pages as an index writes them (their files are never fetched)
        upstream.store.project_dir(name).mkdir()
        upstream.store._write_listing(
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
    with running_farm(tmp_path_factory, upstream) as farm:
        upstream.add(CACHE / "setuptools-80.9.0.tar.gz")
        assert farm.build("setuptools==80.9.0")[0] == 0
        yield farm, upstream
    upstream.close()


def wait_for(predicate, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError
        time.sleep(0.5)


def test_a_new_release_is_built_by_itself_and_quiet_pages_cost_only_304s(watched, tmp_path):
    farm, upstream = watched
    upstream.add(setuptools_sdist(tmp_path, "fresh", "0.9"))  # history: not built
    (farm.state / "allowlist.txt").write_text("".join(f"{n}\n" for n in ["fresh", *QUIET]))
    # status names the way the farm chose, once it has chosen
    wait_for(lambda: "watching" in json.loads(farm.cli("status").stdout))
    assert "pages with conditional requests" in json.loads(farm.cli("status").stdout)["watching"]
    wait_for(lambda: upstream.full_pages >= 1001 + 1, timeout=60)  # every page looked at once
    time.sleep(3)  # a whole cycle more: the unchanged pages answer 304
    full, not_modified = upstream.full_pages, upstream.not_modified
    time.sleep(8)
    assert upstream.full_pages == full and upstream.not_modified - not_modified >= 1001
    upstream.add(setuptools_sdist(tmp_path, "fresh", "1.0"))
    wait_for(lambda: wheel_index_has(farm, "fresh"))
    farm.wait_until_idle()
    builds = farm.api("builds?property=package&property=version&property=scheduler")["builds"]
    started = [
        (b["properties"]["version"][0], b["properties"]["scheduler"][0])
        for b in builds
        if b["properties"].get("package", [None])[0] == "fresh"
    ]
    assert started and set(started) == {("1.0", "upstream-releases")}, started


def test_a_malicious_release_is_held_for_review_and_an_approval_lets_it_through(watched, tmp_path):
    farm, upstream = watched
    for name in ("hijacked", "honest"):
        upstream.add(setuptools_sdist(tmp_path, name, "0.9"))
    with open(farm.state / "allowlist.txt", "a") as allowlist:
        allowlist.write("hijacked\nhonest\n")
    # their first look (history) is taken once a second look has begun
    wait_for(lambda: all(upstream.page_looks[f"/simple/{n}/"] >= 2 for n in ("hijacked", "honest")))
    upstream.add(malicious_sdist(tmp_path, "hijacked", "1.0"))
    upstream.add(setuptools_sdist(tmp_path, "honest", "1.0"))
    wait_for(lambda: wheel_index_has(farm, "honest"))
    wait_for(lambda: "hijacked" in json.loads(farm.cli("review").stdout))
    farm.wait_until_idle()
    assert not wheel_index_has(farm, "hijacked")
    (held,) = json.loads(farm.cli("review").stdout)["hijacked"]["held"]
    assert held["version"] == "1.0" and any(
        f.startswith("threat-filesystem-read: hijacked-1.0/setup.py") for f in held["findings"]
    ), held
    builds = farm.api("builds?property=package")["builds"]
    held_builds = [b for b in builds if b["properties"].get("package", [None])[0] == "hijacked"]
    assert held_builds and all(
        b["results"] == FAILURE and "hijacked-1.0.tar.gz held for review" in b["state_string"]
        for b in held_builds
    ), held_builds
    farm.cli("review", "approve", "hijacked", "--note", "read setup.py: a test's")
    wait_for(lambda: wheel_index_has(farm, "hijacked"))
    provenance = json.loads(farm.cli("which", "hijacked==1.0").stdout)
    assert provenance["scan_findings"]["threat-filesystem-read"] >= 1
