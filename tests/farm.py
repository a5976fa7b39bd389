"""A farm driven through the `wheelwright` command, as a release engineer drives it: for the
end-to-end tests and the benchmarks."""

from __future__ import annotations

import functools
import json
import os
import platform
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import requests

from wheelwright.farm.pools import builder_name
from wheelwright.farm.settings import Farm

WHEELWRIGHT = str(Path(sys.executable).with_name("wheelwright"))
DEFAULT_BUILDER = builder_name(
    platform.machine(), f"{sys.version_info.major}.{sys.version_info.minor}"
)


def http_get(url: str, accept: str | None = None) -> tuple[int, bytes, str]:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read(), response.headers.get("content-type", "")
    except urllib.error.HTTPError as exc:
        return exc.code, b"", ""


def farm_on(index_host: str, root: Path, **options) -> Farm:
    """The configuration of a farm whose index host is index_host (for tests of master-side code)."""
    return Farm(root, index_port=int(index_host.rstrip("/").rsplit(":", 1)[1]), **options)


# Whether the running test is marked `farm` (set by conftest for each test; None outside pytest,
# as in the benchmarks): a test that starts a farm unmarked fails, so `pytest -m "not farm"` stays
# the quick loop it claims to be.
MARKED_FARM: list[bool | None] = [None]


class FarmUnderTest:
    def __init__(self, state: Path, environ: dict[str, str] | None = None):
        self.state = state
        # Settings given in the environment (WHEELWRIGHT_<SETTING>), as an operator keeps a password.
        self.environ = environ or {}

    def cli(
        self, *args: str, check: bool = True, timeout: float | None = None, human: bool = False
    ) -> subprocess.CompletedProcess:
        """Run the command as a script would (--json), or as a reader would (human)."""
        if args[:1] == ("up",) and MARKED_FARM[0] is False:
            raise AssertionError(
                "this test starts a farm: mark it @pytest.mark.farm (or its module: pytestmark)"
            )
        if args[:1] in (("build",), ("bootstrap",)):
            # The tests build projects they made up, which no index or allow-list knows yet.
            args = (*args, "--new-project")
        proc = subprocess.run(
            [WHEELWRIGHT, "--state", str(self.state), *(() if human else ("--json",)), *args],
            capture_output=True,
            text=True,
            env={**os.environ, **self.environ},
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"wheelwright {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}"
            )
        return proc

    def build(self, pin: str, *builders: str) -> tuple[int, dict]:
        """Force pin on the builders (default: the one of the farm's own Python) and wait."""
        selected = [arg for b in builders or (DEFAULT_BUILDER,) for arg in ("--builder", b)]
        proc = self.cli("build", pin, "--wait", *selected, check=False)
        try:
            return proc.returncode, json.loads(proc.stdout)
        except json.JSONDecodeError:
            raise AssertionError(
                f"wheelwright build printed no JSON:\n{proc.stdout}{proc.stderr}"
            ) from None

    def logs(self, builder: str, number: int) -> str:
        """Every log of a build, as the web UI shows them."""
        return "\n".join(self.step_logs({"builder": builder, "number": number}).values())

    def step_logs(self, build: dict) -> dict[str, str]:
        """The logs of a build (as `wheelwright build --wait` describes it), by name."""
        api = self.status["ui"] + "api/v2/"
        found = {}
        steps = json.loads(
            http_get(f"{api}builders/{build['builder']}/builds/{build['number']}/steps")[1]
        )["steps"]
        for step in steps:
            for log in json.loads(http_get(f"{api}steps/{step['stepid']}/logs")[1])["logs"]:
                found[
                    log["name"] if log["name"] not in found else f"{step['name']}/{log['name']}"
                ] = http_get(f"{api}logs/{log['logid']}/raw")[1].decode()
        return found

    def session(self) -> requests.Session:
        """A session of the web UI logged in as a release engineer (the farm's own account)."""
        session = requests.Session()
        password = (self.state / "secrets" / "www-password").read_text().strip()
        session.get(
            self.status["ui"] + "auth/login", auth=("wheelwright", password), timeout=30
        ).raise_for_status()
        return session

    def api(self, path: str) -> dict:
        return json.loads(http_get(self.status["ui"] + "api/v2/" + path)[1])

    def wait_until_idle(self, timeout: float = 180) -> None:
        """Until every build request is complete (but those of the aarch64 pool, with no worker here)."""
        remote = {
            b["builderid"] for b in self.api("builders")["builders"] if "aarch64" in b["name"]
        }
        deadline = time.monotonic() + timeout
        while any(
            not r["complete"] and r["builderid"] not in remote
            for r in self.api("buildrequests")["buildrequests"]
        ):
            if time.monotonic() > deadline:
                raise TimeoutError("the farm did not go idle")
            time.sleep(0.5)

    @functools.cached_property
    def status(self) -> dict:
        """The farm's addresses (they stay as `up` first set them)."""
        return json.loads(self.cli("status").stdout)
