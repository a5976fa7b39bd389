"""The master-worker connection (Buildbot's PB over TCP), as both ends set it up: each message is
sent at once. Nagle's algorithm holds a small segment until the previous one is acknowledged, and
the peer delays that acknowledgement (40 ms on Linux): a remote command's few small PB messages
cost a tenth of a second on localhost, for every command of every step. Buildbot sets only
SO_KEEPALIVE on this connection; the master's workers and each worker's buildbot.tac add this.

`python -m wheelwright.common.connection [--password-from-file] TAC` adds it to a worker's
buildbot.tac (once), with the start of the worker's tool server (wheelwright.worker.call) as the
worker starts and the worker's own command for our tools (wheelwright.worker.toolcommand); with
--password-from-file, the tac reads the worker's password from `worker-password` beside it.
"""

from __future__ import annotations

import stat
import sys
from pathlib import Path
from typing import Any

from wheelwright.common.files import write_atomic

# Each block is added once; a tac made before a block was written gets it then.
TAC_BLOCKS = (
    "\n# Wheelwright: messages to the master go out at once (wheelwright.common.connection).\n"
    "from wheelwright.common.connection import worker_sends_at_once\n"
    "worker_sends_at_once(s)\n",
    "\n# Wheelwright: the tool server starts with the worker (wheelwright.worker.call).\n"
    "from wheelwright.worker.call import start_with_worker\n"
    "start_with_worker(basedir)\n",
    "\n# Wheelwright: the command our tools run by (wheelwright.worker.toolcommand).\n"
    "from wheelwright.worker.toolcommand import register_tool_command\n"
    "register_tool_command()\n",
)


def send_at_once(transport: Any) -> None:
    """TCP_NODELAY on a PB connection's transport (a TLS one passes it to its TCP transport)."""
    transport.setTcpNoDelay(True)


def worker_sends_at_once(worker: Any) -> None:
    """From buildbot.tac: each connection the worker `s` makes to the master sends at once."""
    factory = worker.bf
    connected = factory.gotPerspective

    def got_perspective(perspective):
        send_at_once(perspective.broker.transport)
        return connected(perspective)

    factory.gotPerspective = got_perspective


# The worker's password kept beside its tac (mode 0600), not in it nor on a command line.
PASSWORD_FILE = "worker-password"
PASSWORD_FROM_FILE = (
    f"passwd = open(os.path.join(basedir, {PASSWORD_FILE!r})).read().strip()"
    "  # Wheelwright: kept beside, mode 0600"
)


def add_to_tac(tac: Path, password_from_file: bool = False) -> None:
    text = tac.read_text()
    missing = "".join(block for block in TAC_BLOCKS if block not in text)
    if password_from_file:
        lines = text.splitlines()
        found = [n for n, line in enumerate(lines) if line.startswith("passwd = ")]
        if len(found) != 1:
            raise SystemExit(f"{tac}: no single `passwd = ` line to read from {PASSWORD_FILE}")
        lines[found[0]] = PASSWORD_FROM_FILE
        text = "\n".join(lines) + "\n"
    if missing or password_from_file:  # whole or not at all, and as private as it was
        write_atomic(tac, (text + missing).encode(), mode=stat.S_IMODE(tac.stat().st_mode))


if __name__ == "__main__":
    args = sys.argv[1:]
    from_file = "--password-from-file" in args
    add_to_tac(Path(next(a for a in args if not a.startswith("--"))), from_file)
