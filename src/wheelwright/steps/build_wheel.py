"""BuildWheel: build the wheel on the worker, in the sandbox (no network)."""

from __future__ import annotations

from buildbot.process.results import FAILURE
from packaging.requirements import InvalidRequirement, Requirement

from wheelwright.common.lookup import is_pure
from wheelwright.common.results import Failure, WheelsBuilt
from wheelwright.policy.puregate import GATE
from wheelwright.steps.base import DIST_DIR, SRC_DIR, WheelwrightStep


class BuildWheel(WheelwrightStep):
    name = "build-wheel"
    description = ["building wheel (no network)"]

    async def run(self):
        settings = await self.package_settings()
        if settings is None:
            return FAILURE
        result = await self.run_tool(
            "build_wheel",
            WheelsBuilt,
            "--python",
            self.python,
            "--env-python",
            self.getProperty("build_env_python"),
            "--src",
            SRC_DIR,
            "--dist",
            DIST_DIR,
            "--project",
            self.package,
            "--version",
            self.version,
            "--wheel-version",
            self.wheel_version,
            "--frontend",
            settings.build_frontend,
            *(["--build-tag", str(self.build_tag)] if self.build_tag else []),
            *settings.hook_args(),
            *self.limits,
        )
        if isinstance(result, Failure):
            return await self.fail(result.error)
        try:  # the worker read them from the wheel the package's code made: parsed before anything uses them
            requires = [sorted({str(Requirement(r)) for r in w.requires}) for w in result.wheels]
        except InvalidRequirement as exc:
            return await self.fail(
                f"the wheel tool reported requirements that do not parse: {exc!r}"
            )
        self.setProperty("wheel_requires", requires, self.name)
        self.setProperty("build_frontend", settings.build_frontend, self.name)
        self.setProperty("package_settings", settings.model_dump(), self.name)
        self.setProperty("wheel_filenames", [w.filename for w in result.wheels], self.name)
        self.setProperty("wheel_sha256s", [w.sha256 for w in result.wheels], self.name)
        self.descriptionDone = [", ".join(w.filename for w in result.wheels)]
        if not all(is_pure(w.filename) for w in result.wheels):
            GATE.not_pure(self.master, self.build.getProperties())
        return self.succeeded()
