"""BuildWheel: build the wheel on the worker with the network cut off; keep the build
environment's `pip freeze` as a log (and, on publishing, beside the wheel)."""

from __future__ import annotations

from wheelwright.master.lastgood import ConfigError
from wheelwright.master.settings import settings_for
from wheelwright.steps.tool import DIST_DIR, FREEZE_FILE, SRC_DIR, WheelwrightStep


class BuildWheel(WheelwrightStep):
    name = "build-wheel"
    description = ["building wheel (no network)"]

    async def run(self):
        try:
            settings = await self.read_config("settings", settings_for, self.package)
        except ConfigError as exc:
            return await self.fail(str(exc))
        result = await self.run_tool(
            "wheel", "--env-python", self.getProperty("build_env_python"), "--src", SRC_DIR, "--dist", DIST_DIR,
            "--project", self.package, "--version", self.version, "--frontend", settings.build_frontend,
            "--freeze", FREEZE_FILE, *(["--build-tag", str(self.build_tag)] if self.build_tag else []))
        freeze = await self.getFileContentFromWorker(FREEZE_FILE)
        if freeze is not None:
            await self.addCompleteLog("pip-freeze", freeze)
        if "error" in result:
            return await self.fail(result["error"])
        self.setProperty("build_frontend", settings.build_frontend, self.name)
        self.setProperty("wheel_filenames", [w["filename"] for w in result["wheels"]], self.name)
        self.setProperty("wheel_sha256s", [w["sha256"] for w in result["wheels"]], self.name)
        self.descriptionDone = [", ".join(w["filename"] for w in result["wheels"])]
        return self.succeeded()
