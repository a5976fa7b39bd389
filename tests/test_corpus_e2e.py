"""The real-world corpus (tests/corpus.txt) built on a real farm: every sdist from the cached
upstream, stage by stage, each wheel published, installed from our index alone into a fresh
venv and imported (the farm's own validate-install-deps step), then the roots installed together
by pip, as a user of our index would."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

from packaging.utils import canonicalize_name

from tests.conftest import install_and_run
from tests.farm import http_get
from tests.fetch_corpus import cached_sdist, corpus_stages
from tests.sdists import CACHE

# What a user installs from the built corpus, and what they import.
ROOTS = {"requests": "requests", "flask": "flask", "rich": "rich", "attrs": "attrs", "ruamel.yaml": "ruamel.yaml",
         "zope.interface": "zope.interface", "python-dateutil": "dateutil", "simplejson": "simplejson._speedups",
         "colorama": "colorama", "markupsafe": "markupsafe._speedups", "meson-python": "mesonpy",
         "scikit-build-core": "scikit_build_core"}


def test_the_real_world_corpus_builds_publishes_and_installs(backends, upstream, tmp_path):
    stages = corpus_stages()
    for pin in (pin for stage in stages for pin in stage):
        upstream.add(cached_sdist(CACHE, pin))
    outcomes = {}
    with ThreadPoolExecutor(max_workers=2) as pool:  # the local pool's two workers
        for stage in stages:
            outcomes.update(zip(stage, pool.map(backends.build, stage)))
    failed = {pin: result.get("failed_steps") or result["result"] for pin, (rc, result) in outcomes.items() if rc != 0}
    built = len(outcomes) - len(failed)
    print(f"\ncorpus: {len(outcomes) + 2} real sdists tried, {built + 2} built (with the backends' two)")
    assert not failed, json.dumps(failed, indent=1)
    # every wheel of the corpus is in our index, with its provenance
    for pin, (_, result) in outcomes.items():
        for wheel in result["wheels"]:
            project = pin.split("==")[0]
            assert http_get(f"{backends.status['index']}{project}/{wheel}.provenance.json")[0] == 200, wheel
    setuptools_73 = [w for w in outcomes["setuptools==73.0.1"][1]["wheels"]]
    provenance = json.loads(http_get(f"{backends.status['index']}setuptools/{setuptools_73[0]}.provenance.json")[1])
    assert any("license-file" in w for w in provenance["metadata_warnings"])  # published, with the warning
    code = "; ".join(f"import {module}" for module in ROOTS.values()) + "; print('imported')"
    roots = {canonicalize_name(name) for name in ROOTS}
    pins = [pin for stage in stages for pin in stage if canonicalize_name(pin.split("==")[0]) in roots]
    assert len(pins) == len(ROOTS)
    assert install_and_run(backends, tmp_path, " ".join(pins), code).strip() == "imported"
