"""PrepareBuildEnv: a fresh venv on the worker with the build requirements, from our index only.
A requirement our index lacks goes to the review queue and fails the build."""

from __future__ import annotations

from buildbot.process.results import SUCCESS
from twisted.internet import threads

from wheelwright.master.review import queue_for_review
from wheelwright.steps.tool import ENV_DIR, SRC_DIR, WheelwrightStep, count


class PrepareBuildEnv(WheelwrightStep):
    name = "prepare-build-env"
    description = ["installing build requirements"]

    async def run(self):
        result = await self.run_tool("buildenv", "--python", self.python, "--src", SRC_DIR, "--env", ENV_DIR,
                                     "--index", self.getProperty("index_url"), *self.limits)
        build_url = await self.build_url()
        for project in result.get("missing", []):
            await threads.deferToThread(queue_for_review, self.farm.review_queue, project,
                                        f"build requirement of {self.package} {self.version}", build_url)
        if "error" in result:
            return await self.fail(result["error"])
        self.setProperty("build_env_python", result["env_python"], self.name)
        requirements = result["build_system_requires"] + result["backend_requires"]
        self.setProperty("build_requires", requirements, self.name)
        self.setProperty("build_freeze", result["freeze"], self.name)
        await self.addCompleteLog("pip-freeze", result["freeze"])
        self.descriptionDone = [f"{count(len(requirements), 'build requirement')} installed"]
        return SUCCESS
