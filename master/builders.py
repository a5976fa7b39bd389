"""Workers and builders, made from the pool table: a builder per (architecture, Python version)."""

from __future__ import annotations

import sys

from buildbot.plugins import util, worker

from wheelwright.steps import PIPELINE
from wheelwright.workers.pools import Pool, builder_name, find_python


def make_workers(pools: list[Pool]) -> list:
    return [worker.Worker(name, util.Secret(f"worker-{name}"), max_builds=pool.max_builds)
            for pool in pools for name in pool.worker_names()]


def make_factory(farm) -> util.BuildFactory:
    return util.BuildFactory([step(farm=farm) for step in PIPELINE])


def make_builders(farm, pools: list[Pool]) -> list[util.BuilderConfig]:
    builders = []
    for pool in pools:
        for python in pool.pythons:
            tag = f"cp{python.replace('.', '')}"
            builders.append(util.BuilderConfig(
                name=builder_name(pool.arch, python),
                workernames=pool.worker_names(),
                factory=make_factory(farm),
                tags=[pool.arch, tag, pool.name],
                properties={
                    "python": find_python(python),
                    "python_version": python,
                    "arch": pool.arch,
                    # Local workers run from the master's own environment.
                    "worker_python": sys.executable,
                    "index_url": farm.index_url,
                },
            ))
    return builders
