from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.sdists import Upstream, free_port, wait_for_port
from wheelwright.index import accounts

WHEELWRIGHT = str(Path(sys.executable).with_name("wheelwright"))


@pytest.fixture(scope="session")
def upstream(tmp_path_factory):
    server = Upstream(tmp_path_factory.mktemp("upstream"), free_port())
    yield server
    server.close()


class FarmUnderTest:
    def __init__(self, state: Path):
        self.state = state

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run([WHEELWRIGHT, "--state", str(self.state), *args], capture_output=True, text=True)
        if check and proc.returncode != 0:
            raise AssertionError(f"wheelwright {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")
        return proc

    def build(self, pin: str) -> tuple[int, dict]:
        proc = self.cli("build", pin, "--wait", check=False)
        try:
            return proc.returncode, json.loads(proc.stdout)
        except json.JSONDecodeError:
            raise AssertionError(f"wheelwright build printed no JSON:\n{proc.stdout}{proc.stderr}") from None

    @property
    def status(self) -> dict:
        return json.loads(self.cli("status", "--json").stdout)


@pytest.fixture(scope="session")
def farm(tmp_path_factory, upstream):
    state = tmp_path_factory.mktemp("farm") / "farm"
    under_test = FarmUnderTest(state)
    under_test.cli("up", "--upstream", upstream.url, "--ui-port", str(free_port()),
                   "--worker-port", str(free_port()), "--index-port", str(free_port()))
    yield under_test
    under_test.cli("down", check=False)


def clean_pip_env() -> dict[str, str]:
    """pip and uv with nothing but what the test gives them: no machine-wide configuration."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_CACHE_DIR="1", PIP_DISABLE_PIP_VERSION_CHECK="1",
               UV_NO_CONFIG="1", UV_NO_CACHE="1")
    return env


@pytest.fixture
def index_host(tmp_path):
    """A real index host on 127.0.0.1; uploads as uploader / s3cret."""
    port = free_port()
    accounts.add(tmp_path / "users.json", "uploader", "s3cret")
    proc = subprocess.Popen([sys.executable, "-m", "wheelwright.index.server", "--root", str(tmp_path / "root"),
                             "--users", str(tmp_path / "users.json"), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port)
    yield f"http://127.0.0.1:{port}/"
    proc.terminate()
    proc.wait()
