"""PrepareBuildEnv: a fresh venv on the worker with the build requirements, from our index only.
A requirement our index lacks goes to the review queue and fails the build."""

from __future__ import annotations

from buildbot.process.results import FAILURE, SUCCESS
from packaging.utils import InvalidName, canonicalize_name
from twisted.internet import threads

from wheelwright.common.results import BuildEnvReady, Failure
from wheelwright.policy.review import queue_for_review
from wheelwright.steps.base import ENV_DIR, SRC_DIR, WheelwrightStep, count

MAX_REPORTED = 20
MAX_FREEZE = 256 << 10


def reported_projects(names) -> list[str]:
    """The project names a worker reported missing, as far as they are names: a worker runs
    strangers' code, and what it says goes into the review queue."""
    found: list[str] = []
    for name in names if isinstance(names, list) else []:
        try:
            found.append(canonicalize_name(name, validate=True))
        except (InvalidName, TypeError):
            continue
    return found[:MAX_REPORTED]


class PrepareBuildEnv(WheelwrightStep):
    name = "prepare-build-env"
    description = ["installing build requirements"]

    async def run(self):
        settings = await self.package_settings()
        if settings is None:
            return FAILURE
        result = await self.run_tool(
            "prepare_build_env",
            BuildEnvReady,
            "--python",
            self.python,
            "--src",
            SRC_DIR,
            "--env",
            ENV_DIR,
            "--index",
            self.getProperty("index_url"),
            *[arg for name in settings.system_requirements for arg in ("--system", name)],
            *[
                arg
                for name, command in sorted(
                    {**self.farm.system_tools, **settings.system_tools}.items()
                )
                for arg in ("--system-tool", f"{name}={command}")
            ],
            *settings.hook_args(),
            *self.limits,
        )
        build_url = await self.build_url()
        missing = reported_projects(result.missing if isinstance(result, Failure) else [])
        if missing:  # a bootstrap plans and builds them, then this build again
            self.setProperty("missing_build_requires", missing, self.name)
        for project in missing:
            await threads.deferToThread(
                queue_for_review,
                self.farm.review_queue,
                project,
                f"build requirement of {self.package} {self.version}",
                build_url,
                waiting=self.waiting_build,
            )
        if isinstance(result, Failure):
            return await self.fail(result.error)
        self.setProperty("build_env_python", result.env_python, self.name)
        requirements = result.build_system_requires + result.backend_requires
        self.setProperty("build_requires", requirements, self.name)
        freeze = result.freeze[:MAX_FREEZE]  # what a worker says is capped here too
        self.setProperty("build_freeze", freeze, self.name)
        if result.system_packages:  # in the provenance and the SBOM
            self.setProperty("system_packages", result.system_packages, self.name)
        if result.system_tools:  # in the provenance: what the system gave instead of our index
            self.setProperty("system_tools", result.system_tools, self.name)
            await self.addCompleteLog(
                "system-tools",
                "".join(f"{n}: from the system, {v}\n" for n, v in result.system_tools.items()),
            )
        await self.addCompleteLog("pip-freeze", freeze)
        self.descriptionDone = [f"{count(len(requirements), 'build requirement')} installed"]
        return SUCCESS
