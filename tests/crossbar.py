"""A Crossbar router of the tests' own on 127.0.0.1: the message queue several Buildbot masters
share (Buildbot's `wamp` mq). Crossbar comes from its venv under tests/.cache/services (made by `make test`)."""

from __future__ import annotations

import contextlib
import json
import subprocess
from pathlib import Path

from tests.sdists import CACHE, free_port, wait_for_port

CROSSBAR = CACHE.parent / "services" / "crossbar" / "bin" / "crossbar"
REALM = "buildbot"


def router_config(port: int) -> dict:
    # Buildbot's WAMP client has no authentication: the realm lets anyone on its port in, so the
    # router listens where only the masters reach it (docs/deploy.md).
    everything = {"call": True, "register": True, "publish": True, "subscribe": True}
    return {
        "version": 2,
        "controller": {},
        "workers": [
            {
                "type": "router",
                "realms": [
                    {
                        "name": REALM,
                        "roles": [
                            {
                                "name": "anonymous",
                                "permissions": [
                                    {
                                        "uri": "",
                                        "match": "prefix",
                                        "allow": everything,
                                        "disclose": {"caller": False, "publisher": False},
                                        "cache": True,
                                    }
                                ],
                            }
                        ],
                    }
                ],
                "transports": [
                    {
                        "type": "websocket",
                        "endpoint": {"type": "tcp", "interface": "127.0.0.1", "port": port},
                    }
                ],
            }
        ],
    }


@contextlib.contextmanager
def crossbar_router(top: Path):
    """Yields the router's ws:// URL."""
    if not CROSSBAR.exists():
        raise AssertionError(f"{CROSSBAR} is missing: make test installs it")
    port, cbdir = free_port(), top / ".crossbar"
    cbdir.mkdir(parents=True)
    (cbdir / "config.json").write_text(json.dumps(router_config(port), indent=1))
    with open(top / "crossbar.log", "wb") as log:
        proc = subprocess.Popen(
            [str(CROSSBAR), "start", "--cbdir", str(cbdir)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=top,
        )
    try:
        wait_for_port(port, timeout=120)
        yield f"ws://127.0.0.1:{port}/ws"
    finally:
        proc.terminate()
        proc.wait(timeout=60)
