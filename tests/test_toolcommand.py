"""The worker's own command for our tools (worker/toolcommand.py), run as a worker runs it, on
the real reactor with a real tool server: the tool's output and exit code reach the master's
side, through the server; an interrupt takes the tool and its sandbox; with no server to be had
the tool runs alone."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from twisted.internet import reactor, task
from twisted.trial import unittest

from tests.sdists import setuptools_sdist
from tests.test_toolserver import ENDLESS_BACKEND, servers_of
from wheelwright.common.runtime import RESULT_PREFIX, WORKER_CACHE
from wheelwright.worker.toolcommand import ToolCommand


class Worker:
    """What a command sees of the worker: its builder's folder and the updates it sends."""

    def __init__(self, basedir: Path):
        self.basedir = str(basedir)
        self.unicode_encoding = "utf-8"
        self.updates: list[tuple[str, object]] = []

    def send_update(self, status) -> None:
        self.updates.extend(status)

    def text(self, stream: str) -> str:
        return "".join(str(value) for key, value in self.updates if key == stream)

    def rc(self) -> object:
        (code,) = [value for key, value in self.updates if key == "rc"]
        return code


class TestToolCommand(unittest.TestCase):
    # Importing buildbot.test (other modules' helpers do) lowers every trial test's bound to 5 s;
    # these run real tools and sandboxes on the real reactor, the interrupt test sleeps 4 s alone.
    timeout = 120

    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.tmp)
        (self.tmp / "build").mkdir()
        self.cache = self.tmp / "cache"
        self.worker = Worker(self.tmp)
        self.addCleanup(self.kill_servers)

    def kill_servers(self) -> None:
        for pid in servers_of(self.cache):  # this test process is their worker: it outlives them
            os.kill(pid, signal.SIGKILL)

    def command(self, *argv: str, cache: bool = True) -> ToolCommand:
        env = {WORKER_CACHE: "../cache"} if cache else {}
        args = {"workdir": "build", "argv": list(argv), "env": env, "max_time": 600}
        return ToolCommand(self.worker, "test", args)

    def unpack(self, dest: str, cache: bool = True) -> ToolCommand:
        sdist = setuptools_sdist(self.tmp, "served", "1.0")
        return self.command(
            "wheelwright.worker.prepare_source",
            *("--sdist", str(sdist), "--dest", dest, "--project", "served", "--version", "1.0"),
            cache=cache,
        )

    def report(self) -> dict:
        last = self.worker.text("stdout").splitlines()[-1]
        assert last.startswith(RESULT_PREFIX), self.worker.updates
        return json.loads(last[len(RESULT_PREFIX) :])

    async def test_a_tool_runs_through_the_server_and_its_output_and_code_come_back(self):
        await self.unpack("src").doStart()
        assert self.worker.rc() == 0, self.worker.updates
        assert self.report()["src"] == "src"
        assert (self.tmp / "build" / "src" / "served.py").is_file()
        assert len(servers_of(self.cache)) == 1  # started for the call, in the worker's cache
        # A failing tool: its exit code and its stderr, as the shell command would send them.
        self.worker.updates.clear()
        await self.command("wheelwright.worker.prepare_source", "--sdist", "x").doStart()
        assert self.worker.rc() == 2
        assert "the following arguments are required" in self.worker.text("stderr")
        assert len(servers_of(self.cache)) == 1

    async def test_with_no_worker_cache_the_tool_runs_alone_and_answers_the_same(self):
        await self.unpack("src", cache=False).doStart()
        assert self.worker.rc() == 0, self.worker.updates
        assert self.report()["src"] == "src"
        assert servers_of(self.cache) == []

    async def test_an_interrupt_takes_the_tool_and_its_sandbox_with_it(self):
        src = self.tmp / "build" / "src"
        src.mkdir()
        (src / "pyproject.toml").write_text(
            '[build-system]\nrequires = []\nbuild-backend = "endless"\nbackend-path = ["."]\n'
        )
        (src / "endless.py").write_text(
            f"TOOLS = {str(self.cache / 'tools')!r}\n" + ENDLESS_BACKEND
        )
        command = self.command(
            "wheelwright.worker.prepare_build_env",
            *("--python", sys.executable, "--src", "src", "--env", "env"),
            *("--index", "http://127.0.0.1:9/simple/"),  # never asked: nothing is required
        )
        ran = command.doStart()
        deadline = time.monotonic() + 60
        while not (src / "alive").exists():
            assert time.monotonic() < deadline and not ran.called, self.worker.updates
            await task.deferLater(reactor, 0.1)
        assert (src / "reach").read_text() == "False"  # the server's folder is out of its reach
        command.doInterrupt()
        await ran  # the command ends (an interrupted command sends nothing more to the master)
        await task.deferLater(reactor, 3)
        last = (src / "alive").read_text()
        await task.deferLater(reactor, 1)
        assert (src / "alive").read_text() == last, "the backend outlived the interrupted step"
