"""What our steps share: running a worker-side tool and moving files between master and worker."""

from __future__ import annotations

import contextlib
import json
import time
import typing

from buildbot.process import buildstep, remotecommand, remotetransfer
from buildbot.process.properties import Secret
from buildbot.process.results import EXCEPTION, FAILURE, SUCCESS, WARNINGS
from buildbot.reporters.utils import getURLForBuild
from buildbot.steps.worker import CompositeStepMixin
from twisted.internet import threads

from wheelwright.common.results import BadReport, Failure, from_json
from wheelwright.common.runtime import RESULT_PREFIX, WORKER_CACHE, WORKER_COMMAND
from wheelwright.farm.settings import UPLOAD_SECRET
from wheelwright.policy.lastgood import ConfigError
from wheelwright.policy.package_settings import settings_for
from wheelwright.policy.puregate import PURE_WHEEL_PUBLISHED

# Paths on the worker, relative to the builder's workdir.
SDIST_DIR = "sdist"
SRC_DIR = "src"
PATCHES_DIR = "patches"
ENV_DIR = "env"
DIST_DIR = "dist"
TEST_ENV_DIR = "test-env"
# The worker's cache, beside its builders' folders (<worker>/<builder>/build is the workdir).
WORKER_CACHE_DIR = "../../cache"
# The timings part of a command on the worker as the worker timed it (Buildbot's `elapsed`) is
# `worker <command>` and this: the rest of the master's wait for it is the round trip.
ON_THE_WORKER = ", on the worker"


T = typing.TypeVar("T")


def count(n: int, singular: str, plural: str | None = None) -> str:
    return f"{n} {singular if n == 1 else plural or singular + 's'}"


def parse_result(stdout: str) -> dict:
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            try:
                result = json.loads(line[len(RESULT_PREFIX) :])
            except ValueError:
                result = None
            return (
                result
                if isinstance(result, dict)
                else {"error": "the worker-side tool printed a broken result"}
            )
    return {"error": "the worker-side tool printed no result"}


def pure_wheel_not_published(step) -> bool:
    """A pure wheel is built once per version: the matrix's other builders skip the build."""
    return not step.getProperty(PURE_WHEEL_PUBLISHED)


def verifying(step) -> bool:
    """A verify build: it rebuilds a published wheel to compare, and publishes nothing."""
    return bool(step.getProperty("verify"))


def publishing(step) -> bool:
    return pure_wheel_not_published(step) and not verifying(step)


class WheelwrightStep(buildstep.ShellMixin, CompositeStepMixin, buildstep.BuildStep):
    """A pipeline stage: runs wheelwright.worker.<tool> on the worker."""

    haltOnFailure = True
    flunkOnFailure = True
    warnOnWarnings = True
    warned = False  # set when a broken configuration file gave way to its last good version
    build_summary: str | None = None  # what the build as a whole did, when this step says it

    def __init__(self, farm=None, **kwargs):
        # Buildbot prints a command's whole environment atop its log unless told not to.
        kwargs.setdefault("logEnviron", False)
        if farm is not None:  # the tool's own limits stop the package's code first, naming them
            kwargs.setdefault("maxTime", farm.limits.wall_seconds + 600)
        kwargs = self.setupShellMixin(kwargs, prohibitArgs=["command"])
        kwargs.setdefault("workdir", "build")
        kwargs.setdefault("doStepIf", pure_wheel_not_published)
        super().__init__(**kwargs)
        self.farm = farm

    @property
    def subject(self) -> str:
        """What the build is about, as its summary names it."""
        return " ".join(filter(None, (self.package, self.wheel_version)))

    def getResultSummary(self) -> dict[str, str]:
        # The build's summary (waterfall, builder and build pages) names the package and version,
        # and what became of it: this step's word on the build, or its reason for failing.
        summary = super().getResultSummary()
        failed = self.results in (FAILURE, EXCEPTION) and self.descriptionDone
        said = self.build_summary or (" ".join(self.descriptionDone) if failed else None)
        if said:
            summary["build"] = f"{self.subject}: {said}"
        return summary

    @property
    def package(self) -> str:
        return self.getProperty("package")

    @property
    def version(self) -> str:
        return self.getProperty("version")

    @property
    def wheel_version(self) -> str:
        """The version the wheels carry: a rebuild's bump (post-release, local), else the sdist's."""
        return self.getProperty("wheel_version") or self.version

    @property
    def build_tag(self) -> int:
        """The build number of a rebuild (0: none)."""
        return self.getProperty("build_tag", 0)

    @property
    def waiting_build(self) -> dict:
        """This build, as the review queue remembers a build to force again after an approval."""
        return {
            "package": self.package,
            "version": self.version,
            "builder": self.getProperty("buildername"),
        }

    @property
    def python(self) -> str:
        """The builder's interpreter on this worker (worker properties say where each Python is)."""
        return self.getProperty("interpreters")[self.getProperty("python_version")]

    async def build_url(self) -> str:
        builderid = await self.master.data.updates.findBuilderId(self.getProperty("buildername"))
        return getURLForBuild(self.master, builderid, self.build.number)

    @property
    def limits(self) -> list[str]:
        """The sandbox's limits, as the tools that run the package's code take them."""
        return ["--limits", self.farm.limits.as_json()]

    def startStep(self, remote):
        started = time.monotonic()
        # Buildbot's own work between steps (and before the first): the build's start, each
        # step's records and the properties written after it.
        if isinstance(getattr(self.build, "clock", None), float):
            self.note_time("before the step", started - self.build.clock)
        done = super().startStep(remote)

        def noted(result):
            self.build.clock = time.monotonic()
            self.note_time("step", self.build.clock - started)
            return result

        return done.addBoth(noted)

    def note_time(self, part: str, seconds: float) -> None:
        """Where this build's time went: the `timings` property, seconds by step and part."""
        timings = dict(self.getProperty("timings") or {})
        step = dict(timings.get(self.name, {}))
        step[part] = round(step.get(part, 0) + seconds, 3)
        timings[self.name] = step
        self.setProperty("timings", timings, "timings")

    @contextlib.contextmanager
    def timing(self, part: str):
        started = time.monotonic()
        try:
            yield
        finally:
            self.note_time(part, time.monotonic() - started)

    async def runCommand(self, command):
        part = f"worker {command.remote_command}"
        with self.timing(part):
            result = await super().runCommand(command)
        elapsed = command.updates.get("elapsed") or [None]
        if isinstance(elapsed[-1], (int, float)):
            self.note_time(part + ON_THE_WORKER, elapsed[-1])
        return result

    async def run_tool(self, tool: str, kind: type[T], *args: str) -> T | Failure:
        """Run wheelwright.worker.<tool> on the worker; its report, checked to be a `kind`."""
        # The tool runs in a fork of the worker's tool server (worker/toolserver.py), which has
        # its imports done and runs with -I: the working directory (the build's) is not on
        # sys.path, nor anything from the environment; the package's code cannot plant a module
        # our tool would import. The worker's own command hands it the call
        # (worker/toolcommand.py); a worker without it runs the pool's client (farm/pools.py).
        argv = [f"wheelwright.worker.{tool}", *args]
        env = {WORKER_CACHE: WORKER_CACHE_DIR}
        if self.workerVersion(WORKER_COMMAND):
            call = {"workdir": self.workdir, "argv": argv, "env": env, "max_time": self.maxTime}
            cmd = remotecommand.RemoteCommand(WORKER_COMMAND, call, collectStdout=True)
            cmd.useLog(await self.stdio_log(), closeWhenFinished=True)
        else:
            cmd = await self.makeRemoteShellCommand(
                collectStdout=True, command=[*self.getProperty("tool_command"), *argv], env=env
            )
        await self.runCommand(cmd)
        report = parse_result(cmd.stdout)
        timings = report.pop("timings", None)
        for part, seconds in (timings if isinstance(timings, dict) else {}).items():
            if isinstance(seconds, (int, float)):
                self.note_time(f"{tool}: {part}", seconds)
        try:
            if cmd.didFail() or "error" in report:
                return from_json(Failure, report)
            return from_json(kind, report)
        except BadReport as exc:
            if cmd.didFail():
                return Failure(f"{tool} failed (exit {cmd.rc})")
            return Failure(f"{tool} reported what it does not write: {exc}")

    async def stdio_log(self):
        try:
            return self.getLog("stdio")
        except KeyError:
            return await self.addLog("stdio")

    async def read_config(self, what: str, read, *args):
        """Configuration for this build, read by read(farm, *args) -> (value, warning). A broken
        file whose last good version stands in warns (log `<what>-warning`); with none, ConfigError."""
        value, warning = await threads.deferToThread(read, self.farm, *args)
        if warning:
            self.warned = True
            await self.addCompleteLog(f"{what}-warning", warning + "\n")
        return value

    async def package_settings(self):
        """The package's settings (policy/package_settings.py), or None once the step has failed
        naming the broken file (one with no last good copy)."""
        try:
            return await self.read_config("settings", settings_for, self.package)
        except ConfigError as exc:
            await self.fail(str(exc))
            return None

    def succeeded(self) -> int:
        return WARNINGS if self.warned else SUCCESS

    async def fail(self, reason: str) -> int:
        """End the step failed, with the reason as its summary and in a log of its own."""
        self.descriptionDone = [reason[:200]]
        await self.addCompleteLog("reason", reason + "\n")
        return FAILURE

    async def send_file(self, path, workerdest: str) -> bool:
        with open(path, "rb") as fp:
            args = {
                "workerdest": workerdest,
                "workdir": self.workdir,
                "reader": remotetransfer.FileReader(fp),
                "maxsize": None,
                "blocksize": 256 * 1024,
                "mode": 0o644,
            }
            cmd = remotecommand.RemoteCommand("downloadFile", args)
            await self.runCommand(cmd)
        return not cmd.didFail()

    async def fetch_file(self, workersrc: str, masterdest, maxsize: int | None = None) -> bool:
        writer = remotetransfer.FileWriter(str(masterdest), maxsize, 0o644)
        args = {
            "workersrc": workersrc,
            "workdir": self.workdir,
            "writer": writer,
            "maxsize": maxsize,
            "blocksize": 256 * 1024,
            "keepstamp": False,
        }
        cmd = remotecommand.RemoteCommand("uploadFile", args)
        try:
            await self.runCommand(cmd)
        finally:
            writer.cancel()
        if cmd.didFail():
            writer.purge()
            return False
        return True


class WritesToIndex(WheelwrightStep):
    """A master-side step that writes to the index host (publish, archive, yank, record), with
    the upload password, a secret only the master holds."""

    renderables = ["upload_password"]

    def __init__(self, upload_password=None, **kwargs):
        super().__init__(**kwargs)
        self.upload_password = upload_password or Secret(UPLOAD_SECRET)
