"""A real container engine for the tests: podman serving the Docker API on a unix socket, a worker
image built from local material, and an internal network that reaches the master and nothing else."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

from tests.sdists import wait_for_socket

TOP = Path(__file__).resolve().parent.parent
# "localhost/": podman names a local image so, and Buildbot looks images up by their exact tag.
IMAGE = "localhost/wheelwright-worker:bookworm"
# runc: crun fails on this machine's hybrid cgroups; ulimits within the machine's hard limits.
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]
[engine]
runtime = "runc"
"""


class Podman:
    def __init__(self, root: Path, cache: Path):
        self.root = root
        (root / "containers.conf").write_text(CONTAINERS_CONF)
        self.env = {**os.environ, "CONTAINERS_CONF": str(root / "containers.conf")}
        self.flags = ["--root", str(root / "storage"), "--runroot", str(root / "run")]
        self.socket = root / "podman.sock"
        self.docker_host = f"unix://{self.socket}"
        self.service = subprocess.Popen(
            ["podman", *self.flags, "system", "service", "--time=0", self.docker_host],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_socket(self.socket)
        made = subprocess.run(
            [str(TOP / "containers" / "debian-image.sh"), IMAGE, str(cache)],
            env={**self.env, "PODMAN": " ".join(["podman", *self.flags]), "PYTHON": sys.executable},
            capture_output=True,
            text=True,
        )
        assert made.returncode == 0, f"the worker image was not made:\n{made.stderr[-3000:]}"
        self.network = f"wwtest-{uuid.uuid4().hex[:8]}"
        self.podman("network", "create", "--internal", self.network)
        (subnet,) = json.loads(self.podman("network", "inspect", self.network))[0]["subnets"]
        self.gateway = subnet["gateway"]

    def podman(self, *args: str) -> str:
        return subprocess.run(
            ["podman", *self.flags, *args], env=self.env, check=True, capture_output=True, text=True
        ).stdout

    def containers(self) -> list[str]:
        return self.podman("ps", "--all", "--format", "{{.Names}}").split()

    def wait_for_no_containers(self, timeout: float = 30) -> list[str]:
        """The containers left once Buildbot has had time to remove a finished build's."""
        deadline = time.monotonic() + timeout
        while (left := self.containers()) and time.monotonic() < deadline:
            time.sleep(0.5)
        return left

    def close(self) -> None:
        # A container Buildbot was still removing as the last farm stopped goes first; the reset
        # then unmounts the storage, so it can be deleted. It was refused once (exit 125) with a
        # container's removal under way: it is asked again before it fails, saying why.
        self.podman("rm", "--all", "--force")
        self.podman("network", "rm", "--force", self.network)
        self.service.terminate()
        self.service.wait()
        for _ in range(3):
            reset = subprocess.run(
                ["podman", *self.flags, "system", "reset", "--force"],
                env=self.env,
                capture_output=True,
                text=True,
            )
            if reset.returncode == 0:
                return
            time.sleep(2)
        raise AssertionError(f"podman system reset failed: {reset.stderr[-2000:]}")
