"""The worker's own Buildbot command for a stage's tool (common/runtime.py's WORKER_COMMAND),
registered from buildbot.tac (common/connection.py).

It hands the call to the worker's tool server from the worker's own process, as worker/call.py
does from a process of its own: a shell command costs the worker a fork of itself and the client's
interpreter before the server forks the tool, about half of a call's start-up. The tool's stdout
and stderr come back through pipes and go to the master as a shell command's do, then its exit
code. A step sends this command where the worker has it (a worker tells the master its commands
as it connects) and the shell command where not (steps/base.py).
"""

from __future__ import annotations

import _socket
import codecs
import contextlib
import os
import select
import subprocess
import time

from buildbot_worker.commands import base, registry
from twisted.internet import threads

from wheelwright.common.runtime import WORKER_CACHE, WORKER_COMMAND
from wheelwright.worker import call

READ_SIZE = 1 << 16
# Once a tool is killed, what it started (uv, the sandbox) may hold its output open a moment.
DRAIN_SECONDS = 10


class ToolCommand(base.Command):
    """args: workdir (in the builder's folder), argv (the tool's module and its arguments), env
    (added to the worker's), max_time (seconds; the step's bound, past the tool's own limits)."""

    requiredArgs = ["workdir", "argv", "env"]

    def setup(self, args):
        self.server: _socket.socket | None = None
        self.alone: subprocess.Popen | None = None
        self.deadline_call = None

    def start(self):
        workdir = os.path.join(self.protocol_command.basedir, self.args["workdir"])
        env = {**os.environ, **self.args["env"]}
        self.sendStatus([("header", f"{' '.join(self.args['argv'])}\n in dir {workdir}\n")])
        if self.args.get("max_time"):
            self.deadline_call = self._reactor.callLater(self.args["max_time"], self.timed_out)
        pool = self._reactor.getThreadPool()
        ran = threads.deferToThreadPool(self._reactor, pool, self.run, workdir, env)

        def ended(code: int) -> None:
            if self.deadline_call and self.deadline_call.active():
                self.deadline_call.cancel()
            self.sendStatus([("rc", code)])

        return ran.addCallback(ended)

    def run(self, workdir: str, env: dict[str, str]) -> int:
        """In a thread of the worker's pool: the tool's run, its output relayed as it comes."""
        argv = self.args["argv"]
        out, out_end = os.pipe()
        err, err_end = os.pipe()
        try:
            self.start_tool(argv, workdir, env, (out_end, err_end))
        except BaseException:
            os.close(out)
            os.close(err)
            raise
        finally:
            os.close(out_end)
            os.close(err_end)
        if self.interrupted:  # while the call was being made
            self.interrupt()
        self.relay({out: "stdout", err: "stderr"})
        if self.alone:
            return self.alone.wait()
        assert self.server is not None
        code = call.exit_code(self.server)
        self.server.close()
        if code is None:
            self.say("stderr", call.SERVER_ENDED + "\n")
            return -1 if self.interrupted else 2
        return code

    def start_tool(self, argv: list[str], workdir: str, env: dict[str, str], ends: tuple[int, int]):
        """The call to the worker's server; where there is none to be had, the tool runs in a
        process of its own."""
        cache = os.path.join(workdir, env[WORKER_CACHE]) if env.get(WORKER_CACHE) else None
        with open(os.devnull, "rb") as null:
            self.server = call.server(cache, os.getpid())
            if self.server and not call.send_call(
                self.server, argv, workdir, env, (null.fileno(), *ends)
            ):
                self.server.close()
                self.server = None
            if self.server is None:
                self.alone = subprocess.Popen(
                    call.alone(argv),
                    cwd=workdir,
                    env=env,
                    stdin=null,
                    stdout=ends[0],
                    stderr=ends[1],
                )

    def relay(self, streams: dict[int, str]) -> None:
        """Each pipe's text to the master as it comes, until every end is closed."""
        decoders = {
            fd: codecs.getincrementaldecoder(self.protocol_command.unicode_encoding)("replace")
            for fd in streams
        }
        drained_at = None
        try:
            while decoders:
                if self.interrupted and drained_at is None:
                    drained_at = time.monotonic() + DRAIN_SECONDS
                if drained_at is not None and time.monotonic() > drained_at:
                    return
                for fd in select.select(list(decoders), [], [], 1)[0]:
                    data = os.read(fd, READ_SIZE)
                    text = decoders[fd].decode(data, final=not data)
                    if text:
                        self.say(streams[fd], text)
                    if not data:
                        del decoders[fd]
        finally:
            for fd in streams:
                os.close(fd)

    def say(self, stream: str, text: str) -> None:
        self._reactor.callFromThread(self.sendStatus, [(stream, text)])

    def timed_out(self) -> None:
        self.sendStatus([("header", f"command timed out: {self.args['max_time']} seconds\n")])
        self.interrupt()

    def interrupt(self) -> None:
        """The server kills the tool when its caller goes; a tool run alone is killed here."""
        self.interrupted = True
        if self.server:
            with contextlib.suppress(OSError):
                self.server.shutdown(_socket.SHUT_RDWR)
        if self.alone:
            self.alone.kill()


def register_tool_command() -> None:
    """From buildbot.tac, before the worker connects (it tells the master its commands then)."""
    registry.commandRegistry[WORKER_COMMAND] = ToolCommand
