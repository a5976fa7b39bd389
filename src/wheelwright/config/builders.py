"""Workers and builders, made from the pool table: a builder per (architecture, Python version),
taking the workers of every pool that carries that Python on that architecture.

What differs between pools (the interpreters' paths, the Python that runs our tools, the index's
address as the workers reach it) travels as worker properties.
"""

from __future__ import annotations

import time

from buildbot.plugins import util, worker
from buildbot.process.build import Build
from buildbot.worker.local import LocalWorker

from wheelwright.common.connection import send_at_once
from wheelwright.farm.pools import Pool, builder_name
from wheelwright.policy.lastgood import ConfigError
from wheelwright.policy.package_settings import settings_for
from wheelwright.policy.puregate import GATE
from wheelwright.publishing.reproducibility import prefer_another_worker
from wheelwright.steps import PIPELINE
from wheelwright.steps.bootstrap import BootstrapTree
from wheelwright.steps.yank import YankVersion


def container_image(farm, default: str):
    """The image for a build: the package's `container_image` setting, else the pool's."""

    @util.renderer
    def image(props):
        try:
            return settings_for(farm, props.getProperty("package"))[0].container_image or default
        except ConfigError:
            return default  # the build then fails in a step that names the broken file

    return image


def make_workers(farm, pools: list[Pool]) -> list:
    workers = []
    for pool in pools:
        properties = {
            "tool_command": pool.tool_command(),
            "interpreters": pool.interpreters(),
            "index_url": farm.index_url_for(pool),
            "pool": pool.name,
        }
        for name in pool.worker_names():
            password = util.Secret(f"worker-{name}")
            if pool.kind == "container":
                workers.append(
                    SendsAtOnceDockerLatentWorker(
                        name,
                        password,
                        docker_host=farm.docker_host,
                        image=container_image(farm, pool.image or ""),
                        masterFQDN=f"{farm.container_master_host}:{farm.worker_port}",
                        # The container's own cgroup is the outer wall of the build's limits (inside, the
                        # sandbox has rlimits only).
                        hostconfig={
                            "network_mode": farm.container_network,
                            "pids_limit": farm.limits.processes * 2,
                            "mem_limit": f"{farm.limits.memory_mb * 2}m",
                        },
                        autopull=False,
                        # One container per build, removed as soon as the build ends.
                        build_wait_timeout=0,
                        max_builds=pool.max_builds,
                        properties=properties,
                    )
                )
            else:
                workers.append(
                    SendsAtOnceWorker(
                        name, password, max_builds=pool.max_builds, properties=properties
                    )
                )
    return workers


class SendsAtOnce:
    """A worker whose connection sends each message at once (common/connection.py)."""

    def attached(self, conn):
        send_at_once(conn.mind.broker.transport)
        return super().attached(conn)  # type: ignore[misc]


class SendsAtOnceWorker(SendsAtOnce, worker.Worker):
    pass


class SendsAtOnceDockerLatentWorker(SendsAtOnce, worker.DockerLatentWorker):
    pass


class PackageBuild(Build):
    """A build whose summary is what its steps say of it ("flask 3.1.0: published flask-3.1.0-…"),
    not "build successful"."""

    clock: float | None = None  # when the build started, then when its last step ended

    def startBuild(self, workerforbuilder):
        self.clock = time.monotonic()
        return super().startBuild(workerforbuilder)

    def allStepsDone(self):
        if not self.text:
            return super().allStepsDone()
        return self.buildFinished(
            self.text + ([f"({self.stopped_reason})"] if self.stopped_reason else []), self.results
        )


def factory(steps) -> util.BuildFactory:
    made = util.BuildFactory(steps)
    made.buildClass = PackageBuild
    return made


def make_factory(farm) -> util.BuildFactory:
    return factory([step(farm=farm) for step in PIPELINE])


def make_builders(farm, pools: list[Pool]) -> list[util.BuilderConfig]:
    matrix: dict[tuple[str, str], list[Pool]] = {}
    for pool in pools:
        for python in pool.interpreters():
            matrix.setdefault((pool.arch, python), []).append(pool)
    return [
        util.BuilderConfig(
            name=builder_name(arch, python),
            workernames=[name for pool in carriers for name in pool.worker_names()],
            factory=make_factory(farm),
            tags=list(
                dict.fromkeys([arch, f"cp{python.replace('.', '')}", *(p.name for p in carriers)])
            ),
            properties={"python_version": python, "arch": arch},
            # Buildbot merges queued requests with the same (empty) source stamp into one build:
            # here every request is another package or version, and each must be built.
            collapseRequests=False,
            nextWorker=prefer_another_worker,
            # One build of a version first; the others once it knows whether its wheel is pure.
            canStartBuild=GATE.can_start,
        )
        for (arch, python), carriers in sorted(matrix.items())
    ]


# The worker of the builders whose steps run on the master and run no command (bootstrap, yank):
# in the master's own process.
ON_MASTER = "on-master"
BOOTSTRAP = "bootstrap"
YANK = "yank"


def master_worker(runs_builds: bool = True):
    """On a master that runs no builds the name stays (the builders name it) but never attaches."""
    if not runs_builds:
        return worker.Worker(ON_MASTER, None)
    return LocalWorker(ON_MASTER, max_builds=4)


def master_builders(farm) -> list[util.BuilderConfig]:
    """Whole trees, each a build of its own that triggers the wheel builders' builds; and yanks."""
    return [
        util.BuilderConfig(
            name=name,
            workernames=[ON_MASTER],
            factory=factory([step(farm=farm)]),
            tags=[name],
            collapseRequests=False,
        )
        for name, step in ((BOOTSTRAP, BootstrapTree), (YANK, YankVersion))
    ]
