"""The real-world corpus (tests/corpus.txt) on a real farm: three real trees bootstrapped from the
cached upstream, which between them build every sdist of the corpus; each wheel published,
installed from our index alone into a fresh venv and imported (the farm's validate-install-deps
step), then the roots installed together by pip, as a user of our index would."""

from __future__ import annotations

import json

import pytest
from packaging.utils import canonicalize_name

from tests.conftest import build_backends, install_and_run, running_farm
from tests.farm import DEFAULT_BUILDER, http_get
from tests.fetch_corpus import cached_sdist, corpus_stages
from tests.sdists import CACHE

pytestmark = pytest.mark.farm

TREES = {
    # zope.interface builds with setuptools<74, the rest with 80.9.0; python-dateutil with
    # setuptools_scm<8, pluggy with 8.x: two versions of two build backends in one tree
    "two versions of a backend, a C extension": [
        "zope.interface",
        "python-dateutil",
        "pluggy",
        "meson-python",
    ],
    # hatchling builds itself, and its in-tree backend asks for its dependencies only when run
    # (get_requires_for_build_wheel); hatch-vcs and hatch-fancy-pypi-readme are its plugins
    "hatchling and its plugins": ["attrs", "urllib3", "iniconfig", "pygments", "scikit-build-core"],
    "C extensions, legacy setup.py, a .zip sdist, dots in names": [
        "requests",
        "flask",
        "rich",
        "ruamel.yaml",
        "simplejson",
        "colorama",
        "six",
        "typing_extensions",
        "poetry-core",
        "pdm-backend",
        "wheel",
    ],
}
# What a user installs from the built corpus, and what they import.
IMPORTS = {
    "requests": "requests",
    "flask": "flask",
    "rich": "rich",
    "attrs": "attrs",
    "ruamel.yaml": "ruamel.yaml",
    "zope.interface": "zope.interface",
    "python-dateutil": "dateutil",
    "simplejson": "simplejson._speedups",
    "colorama": "colorama",
    "meson-python": "mesonpy",
    "scikit-build-core": "scikit_build_core",
}


@pytest.fixture(scope="module")
def backends(tmp_path_factory, upstream):
    """A farm of the corpus's own: what it builds would change what other tests' farm has."""
    with running_farm(tmp_path_factory, upstream) as farm:
        yield build_backends(farm, upstream)


def test_real_trees_bootstrap_the_whole_corpus_and_install_from_our_index(
    backends, upstream, tmp_path
):
    pins = [pin for stage in corpus_stages() for pin in stage]
    for pin in pins:
        upstream.add(cached_sdist(CACHE, pin))
    outcomes = {}
    for tree, roots in TREES.items():
        proc = backends.cli(
            "bootstrap", *roots, "--builder", DEFAULT_BUILDER, "--wait", check=False
        )
        try:
            outcomes[tree] = json.loads(proc.stdout)
        except json.JSONDecodeError:
            raise AssertionError(
                f"bootstrap of {tree} printed no JSON:\n{proc.stdout}{proc.stderr}"
            ) from None
        assert proc.returncode == 0, json.dumps(
            {k: outcomes[tree][k] for k in ("failed", "not_built")}, indent=1
        )
    built = {key for outcome in outcomes.values() for key in outcome["built"]}
    # together the trees built every sdist of the corpus, and our index serves each
    expected = {f"{canonicalize_name(p.split('==')[0])}=={p.split('==')[1]}" for p in pins}
    assert len(built) >= 40
    for key in expected | built:
        project, version = key.split("==")
        listing = json.loads(
            http_get(
                f"{backends.status['index']}{project}/", "application/vnd.pypi.simple.v1+json"
            )[1]
        )
        assert version in listing["versions"], key
    # two versions of setuptools, and the older one's License-File under 2.1 published with a warning
    setuptools = json.loads(
        http_get(f"{backends.status['index']}setuptools/", "application/vnd.pypi.simple.v1+json")[1]
    )
    old = next(f["filename"] for f in setuptools["files"] if "-73.0.1-" in f["filename"])
    provenance = json.loads(
        http_get(f"{backends.status['index']}setuptools/{old}.provenance.json")[1]
    )
    assert any("license-file" in w for w in provenance["metadata_warnings"])
    print(
        f"\ncorpus: {len(pins) + 2} real sdists tried, {len(expected & built) + 2} built and "
        f"installed ({len(built)} packages in three trees)"
    )
    wanted = [
        pin
        for pin in pins
        if canonicalize_name(pin.split("==")[0]) in {canonicalize_name(n) for n in IMPORTS}
    ]
    code = "; ".join(f"import {module}" for module in IMPORTS.values()) + "; print('imported')"
    assert install_and_run(backends, tmp_path, " ".join(wanted), code).strip() == "imported"
