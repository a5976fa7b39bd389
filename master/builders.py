"""Workers and builders, made from the pool table: a builder per (architecture, Python version)."""

from __future__ import annotations

from buildbot.plugins import util, worker

from wheelwright.steps import PIPELINE
from wheelwright.workers.pools import Pool, builder_name


def make_workers(pools: list[Pool]) -> list:
    return [worker.Worker(name, util.Secret(f"worker-{name}"), max_builds=pool.max_builds)
            for pool in pools for name in pool.worker_names()]


def make_factory(farm) -> util.BuildFactory:
    return util.BuildFactory([step(farm=farm) for step in PIPELINE])


def make_builders(farm, pools: list[Pool]) -> list[util.BuilderConfig]:
    builders = []
    for pool in pools:
        for python, interpreter in pool.interpreters().items():
            builders.append(util.BuilderConfig(
                name=builder_name(pool.arch, python),
                workernames=pool.worker_names(),
                factory=make_factory(farm),
                tags=list(dict.fromkeys([pool.arch, f"cp{python.replace('.', '')}", pool.name])),
                properties={
                    "python": interpreter,
                    "python_version": python,
                    "arch": pool.arch,
                    "worker_python": pool.tool_python(),
                    "index_url": farm.index_url,
                },
            ))
    return builders
