"""A hostile build against a real farm: planted modules, .pth files and links, host sockets,
exhausting resources, a leaked environment, and anonymous control of the UI. Each test is one
escape attempt (or a few of one kind) that must be contained; docs/security.md counts them."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import textwrap
import uuid

import pytest
import requests

from tests.conftest import CANARY, wheel_index_has
from tests.farm import DEFAULT_BUILDER
from tests.sdists import setuptools_sdist
from wheelwright.farm.settings import FORCE_SCHEDULER

pytestmark = pytest.mark.farm


def attacking_sdist(dest, name: str, at_import: str = "", at_build: str = "") -> object:
    """A setuptools package whose setup.py runs at_import whenever the backend loads it (in
    get_requires_for_build_wheel and in the build) and at_build when it builds."""
    setup_py = "\n".join(
        [
            "import glob, os, socket, subprocess, sys",
            "from setuptools import setup",
            "from setuptools.command.build_py import build_py",
            "TOP = os.path.dirname(os.getcwd())  # the build directory: the tools' working directory",
            at_import,
            "class Attack(build_py):",
            "    def run(self):",
            textwrap.indent(at_build or "pass", " " * 8),
            "        super().run()",
            "setup(cmdclass={'build_py': Attack})",
            "",
        ]
    )
    return setuptools_sdist(dest, name, "1.0", setup_py=setup_py)


def planting(marker) -> str:
    """Code that plants, wherever it can, something that writes `marker` when run outside."""
    payload = f"import pathlib; pathlib.Path({str(marker)!r}).write_text('ran outside the sandbox')"
    return f"""
def plant(path, text):
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if os.path.lexists(path):
            os.unlink(path)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o755)
    except OSError:
        pass

PAYLOAD = {payload!r}
plant(os.path.join(TOP, "wheelwright", "__init__.py"), PAYLOAD)
plant(os.path.join(TOP, "wheelwright", "workers", "__init__.py"), PAYLOAD)
plant(os.path.join(TOP, "sitecustomize.py"), PAYLOAD)
for site in glob.glob(os.path.join(TOP, "*env", "lib", "python*", "site-packages")):
    plant(os.path.join(site, "zz-planted.pth"), PAYLOAD + "\\n")
    plant(os.path.join(site, "sitecustomize.py"), PAYLOAD)
for env in glob.glob(os.path.join(TOP, "*env")):
    plant(os.path.join(env, "bin", "python"), "#!/bin/sh\\necho planted > {marker}\\n")
"""


def test_planted_modules_pth_files_and_interpreters_never_run_outside(backends, upstream, tmp_path):
    marker = tmp_path / "planted-code-ran"
    upstream.add(
        attacking_sdist(tmp_path, "planter", at_import=planting(marker), at_build=planting(marker))
    )
    rc, result = backends.build("planter==1.0")
    # nothing it planted ran: not in the next step's tool, nor in the build environment's
    # interpreter, nor in the import test; and the build itself went through
    assert rc == 0, json.dumps(result)
    assert not marker.exists()


def test_planted_links_are_neither_followed_nor_published(backends, upstream, tmp_path):
    target = backends.state / "secrets" / "index-upload-password"
    before = target.read_text()
    links = f"""
for name, link in (("freeze.txt", {str(target)!r}), ("dist", "/"),
                   ("dist.build/linker-1.0-py2-none-any.whl", {str(target)!r}), ("test-env", "/")):
    try:
        path = os.path.join(TOP, name)
        if os.path.isdir(path) and not os.path.islink(path):
            os.rename(path, path + ".moved")
        os.symlink(link, path)
    except OSError:
        pass
"""
    upstream.add(attacking_sdist(tmp_path, "linker", at_build=links))
    rc, result = backends.build("linker==1.0")
    assert rc == 1
    assert (
        "linker-1.0-py2-none-any.whl, which is not a plain file"
        in result["failed_steps"]["build-wheel"]
    )
    assert target.read_text() == before
    assert before not in backends.logs(result["builder"], result["number"])
    assert not wheel_index_has(backends, "linker")


def test_no_socket_of_the_host_answers_a_build(backends, upstream, tmp_path):
    accepted = []
    path = f"/run/wheelwright-test-{uuid.uuid4().hex[:8]}.sock"
    servers = [socket.socket(socket.AF_UNIX) for _ in range(2)]
    for server, address in zip(servers, (path, "\0" + path), strict=True):
        server.bind(address)
        server.listen()
        server.settimeout(0.1)
    connect = f"""
for address in ({path!r}, {chr(0) + path!r}):
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(address)
    except OSError:
        continue
    raise SystemExit("connected to the host's socket " + repr(address))
"""
    upstream.add(attacking_sdist(tmp_path, "socketeer", at_import=connect, at_build=connect))
    try:
        rc, result = backends.build("socketeer==1.0")
        for server in servers:
            with contextlib.suppress(TimeoutError):  # nothing connected, as it must be
                accepted.append(server.accept())
    finally:
        for server in servers:
            server.close()
        os.unlink(path)
    assert accepted == []
    assert rc == 0, json.dumps(result)


EXHAUSTERS = {
    "a fork bomb": (
        "subprocess.run(['bash', '-c', 'f(){ f | f & }; f; sleep 60'])",
        "process limit",
    ),
    "a memory hog": ("hog = [bytearray(1 << 20) for _ in range(64 << 10)]", "memory limit"),
    "a disk filler": (
        """
while True:
    with open(os.path.join(os.getcwd(), 'fill-%d' % len(os.listdir('.'))), 'wb') as f:
        f.write(bytes(8 << 20))""",
        "disk limit",
    ),
    "an endless printer": ("while True: print('x' * 200)", "output limit"),
}


@pytest.mark.parametrize("attack", EXHAUSTERS)
def test_a_build_that_exhausts_a_resource_fails_naming_the_limit_and_the_worker_goes_on(
    backends, upstream, tmp_path, attack
):
    code, limit = EXHAUSTERS[attack]
    name = "exhaust-" + attack.split()[-1].replace(" ", "-")
    upstream.add(attacking_sdist(tmp_path, name, at_build=code))
    rc, result = backends.build(f"{name}==1.0")
    assert rc == 1
    assert f"it hit the {limit}" in result["failed_steps"]["build-wheel"], json.dumps(result)
    assert not wheel_index_has(backends, name)
    # the worker that ran it takes the next build as if nothing happened
    upstream.add(setuptools_sdist(tmp_path, f"after-{name}", "1.0"))
    rc, result = backends.build(f"after-{name}==1.0")
    assert rc == 0, json.dumps(result)


def test_anonymous_visitors_may_look_but_not_steer(backends):
    ui = backends.status["ui"]
    assert requests.get(ui + "api/v2/builders", timeout=30).status_code == 200
    before = len(backends.api("buildrequests")["buildrequests"])
    force = {
        "jsonrpc": "2.0",
        "method": "force",
        "id": 1,
        "params": {"builderNames": [DEFAULT_BUILDER], "package": "anything", "version": "1.0"},
    }
    answer = requests.post(ui + f"api/v2/forceschedulers/{FORCE_SCHEDULER}", json=force, timeout=30)
    assert answer.status_code in (401, 403), answer.text
    build = backends.api("builds")["builds"][0]
    stop = {"jsonrpc": "2.0", "method": "stop", "id": 1, "params": {"reason": "anonymous"}}
    assert requests.post(
        ui + f"api/v2/builds/{build['buildid']}", json=stop, timeout=30
    ).status_code in (401, 403)
    worker = backends.api("workers")["workers"][0]
    pause = {"jsonrpc": "2.0", "method": "pause", "id": 1, "params": {"reason": "anonymous"}}
    assert requests.post(
        ui + f"api/v2/workers/{worker['workerid']}", json=pause, timeout=30
    ).status_code in (401, 403)
    assert not backends.api(f"workers/{worker['workerid']}")["workers"][0]["paused"]
    assert len(backends.api("buildrequests")["buildrequests"]) == before


def test_a_release_engineer_logs_in_and_steers(backends, upstream, tmp_path):
    proc = backends.cli("user", "add", "alice", "--role", "releng")
    password = json.loads(proc.stdout)["password"]
    session = requests.Session()
    ui = backends.status["ui"]
    assert (
        session.get(ui + "auth/login", auth=("alice", "wrong-password"), timeout=30).status_code
        == 401
    )
    assert session.get(ui + "auth/login", auth=("alice", password), timeout=30).ok
    upstream.add(setuptools_sdist(tmp_path, "alicepkg", "1.0"))
    force = {
        "jsonrpc": "2.0",
        "method": "force",
        "id": 1,
        "params": {
            "builderNames": [DEFAULT_BUILDER],
            "package": "alicepkg",
            "version": "1.0",
            "reason": "alice's",
        },
    }
    answer = session.post(ui + f"api/v2/forceschedulers/{FORCE_SCHEDULER}", json=force, timeout=30)
    assert answer.ok and "result" in answer.json(), answer.text
    backends.wait_until_idle()


def test_no_variable_of_the_shell_that_started_the_farm_reaches_any_log(
    backends, upstream, tmp_path
):
    # conftest put CANARY in the environment `wheelwright up` ran in; this build and every one
    # before it ran since
    upstream.add(setuptools_sdist(tmp_path, "canarypkg", "1.0"))
    assert backends.build("canarypkg==1.0")[0] == 0
    texts = []
    for build in backends.api("builds")["builds"]:
        for step in backends.api(f"builds/{build['buildid']}/steps")["steps"]:
            for log in backends.api(f"steps/{step['stepid']}/logs")["logs"]:
                texts.append(
                    requests.get(
                        backends.status["ui"] + f"api/v2/logs/{log['logid']}/raw", timeout=30
                    ).text
                )
    assert len(texts) >= 10
    assert not [t for t in texts if CANARY in t]
