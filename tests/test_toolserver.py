"""The worker's tool server (worker/toolserver.py, worker/call.py), with real processes: a call
answers as the tool alone would, goes through the server once one runs, kills the tool when the
caller is killed, and the server starts and leaves with its worker and is out of the sandbox's
reach."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.sdists import free_port, setuptools_sdist
from wheelwright.common.runtime import RESULT_PREFIX, WORKER_CACHE
from wheelwright.farm import control
from wheelwright.farm.pools import POOLS
from wheelwright.farm.settings import Farm
from wheelwright.worker import call as client

CALL = POOLS["local"].tool_command()  # the file itself, without `site`


def servers_of(cache: Path) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"wheelwright.worker.toolserver" in argv and str(cache / "tools").encode() in argv:
            found.append(int(proc.name))
    # A server forks a child per call, with its argv: a child that is still ending is no server.
    return [pid for pid in found if _parent(pid) not in found]


def _parent(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


@pytest.fixture
def cache(tmp_path):
    cache = tmp_path / "cache"
    yield cache
    for pid in servers_of(cache):  # this test process is their worker: it outlives them
        os.kill(pid, signal.SIGKILL)


def call(cache: Path | None, cwd: Path, *argv: str, **kwargs) -> subprocess.CompletedProcess:
    env = {name: value for name, value in os.environ.items() if name != WORKER_CACHE}
    return subprocess.run(
        [*CALL, *argv],
        cwd=cwd,
        env={**env, WORKER_CACHE: str(cache)} if cache else env,
        capture_output=True,
        text=True,
        **kwargs,
    )


def unpack(cache: Path | None, tmp_path: Path, dest: str, **kwargs) -> subprocess.CompletedProcess:
    sdist = setuptools_sdist(tmp_path, "served", "1.0")
    return call(
        cache,
        tmp_path,
        "wheelwright.worker.prepare_source",
        *("--sdist", str(sdist), "--dest", str(tmp_path / dest)),
        *("--project", "served", "--version", "1.0"),
        **kwargs,
    )


def result(proc: subprocess.CompletedProcess) -> dict:
    last = proc.stdout.splitlines()[-1]
    assert last.startswith(RESULT_PREFIX), proc.stdout + proc.stderr
    report = json.loads(last[len(RESULT_PREFIX) :])
    report.pop("timings")
    return report


def test_a_call_goes_through_the_server_and_answers_as_the_tool_alone(cache, tmp_path):
    first = unpack(cache, tmp_path, "one")
    assert first.returncode == 0 and (tmp_path / "one" / "served.py").is_file()
    (server,) = servers_of(cache)
    # The next call is the server's: stopped, it keeps the call waiting; going on, it answers.
    os.kill(server, signal.SIGSTOP)
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            unpack(cache, tmp_path, "two", timeout=3)
    finally:
        os.kill(server, signal.SIGCONT)
    second = unpack(cache, tmp_path, "three")
    assert second.returncode == 0 and result(second) == {
        **result(first),
        "src": str(tmp_path / "three"),
    }
    # A failing tool's exit code, stderr and result line come back through the server as well.
    refused = call(cache, tmp_path, "wheelwright.worker.prepare_source", "--sdist", "x")
    assert refused.returncode == 2 and "the following arguments are required" in refused.stderr
    assert servers_of(cache) == [server]
    # With no worker cache named there is no server: the tool runs in the caller's process (which,
    # started without `site`, starts again with it to import the tool), and answers the same.
    alone = unpack(None, tmp_path, "four")
    assert alone.returncode == 0 and result(alone) == {
        **result(first),
        "src": str(tmp_path / "four"),
    }
    assert servers_of(cache) == [server]


# A backend whose get_requires_for_build_wheel never ends, saying so every tenth of a second;
# it also says whether it can see the tool server's folder.
ENDLESS_BACKEND = """\
import os, time

def get_requires_for_build_wheel(config_settings=None):
    with open("reach", "w") as out:
        out.write(str(os.path.exists(TOOLS)))
    while True:
        with open("alive.tmp", "w") as out:
            out.write(str(time.time()))
        os.replace("alive.tmp", "alive")
        time.sleep(0.1)
"""


def test_a_killed_caller_takes_its_tool_and_sandbox_with_it_and_the_server_is_out_of_reach(
    cache, tmp_path
):
    src = tmp_path / "src"
    src.mkdir()
    (src / "pyproject.toml").write_text(
        '[build-system]\nrequires = []\nbuild-backend = "endless"\nbackend-path = ["."]\n'
    )
    (src / "endless.py").write_text(f"TOOLS = {str(cache / 'tools')!r}\n" + ENDLESS_BACKEND)
    assert unpack(cache, tmp_path, "warm").returncode == 0  # the server runs
    caller = subprocess.Popen(
        [
            *CALL,
            "wheelwright.worker.prepare_build_env",
            *("--python", sys.executable, "--src", str(src), "--env", str(tmp_path / "env")),
            *("--index", "http://127.0.0.1:9/simple/"),  # never asked: nothing is required
        ],
        stdout=subprocess.DEVNULL,
        env={**os.environ, WORKER_CACHE: str(cache)},
        cwd=tmp_path,
    )
    deadline = time.monotonic() + 60
    while not (src / "alive").exists():
        assert time.monotonic() < deadline and caller.poll() is None, "the hook never ran"
        time.sleep(0.1)
    assert (src / "reach").read_text() == "False"
    caller.kill()
    caller.wait()
    time.sleep(3)
    last = (src / "alive").read_text()
    time.sleep(1)
    assert (src / "alive").read_text() == last, "the backend outlived the killed step"


def test_the_server_leaves_with_its_worker(tmp_path):
    cache = tmp_path / "cache"
    sdist = setuptools_sdist(tmp_path, "served", "1.0")
    worker = (
        "import subprocess, sys; sys.exit(subprocess.run(sys.argv[1:]).returncode)"  # then exits
    )
    subprocess.run(
        [sys.executable, "-c", worker, *CALL, "wheelwright.worker.prepare_source"]
        + ["--sdist", str(sdist), "--dest", str(tmp_path / "src")]
        + ["--project", "served", "--version", "1.0"],
        env={**os.environ, WORKER_CACHE: str(cache)},
        check=True,
        capture_output=True,
    )
    assert list((cache / "tools").glob("*.log"))  # a server started
    deadline = time.monotonic() + 30
    while servers_of(cache) or list((cache / "tools").glob("*.sock")):
        assert time.monotonic() < deadline, "the server outlived its worker"
        time.sleep(0.2)


def test_a_worker_starts_its_tool_server_as_it_starts_and_the_server_leaves_with_it(tmp_path):
    # A worker as the farm makes it (its tac has our blocks); no master answers: no build runs.
    basedir = tmp_path / "worker"
    control.create_worker_at(Farm(tmp_path), basedir, "local-1", "pw", f"127.0.0.1:{free_port()}")
    control.name_pythons(basedir, [sys.executable])
    worker = subprocess.Popen(
        [str(Path(sys.executable).with_name("buildbot-worker")), "start", "--nodaemon", basedir],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while not list((basedir / "cache" / "tools").glob("*.sock")):
            assert worker.poll() is None and time.monotonic() < deadline, "no server started"
            time.sleep(0.1)
        # Before any build, the server makes ready what every build of the named interpreter
        # uses: its facts, its standard library's bytecode, an empty venv.
        made = [basedir / "cache" / kind for kind in ("interpreters", "bytecode", "venvs")]
        while not all(folder.is_dir() and list(folder.glob("[!.]*")) for folder in made):
            assert time.monotonic() < deadline, f"not made ready: {made}"
            time.sleep(0.1)
        # The first stage's call finds it: the server it started is the one a call asks for.
        (server,) = servers_of(basedir / "cache")
        assert unpack(basedir / "cache", tmp_path, "src").returncode == 0
        assert servers_of(basedir / "cache") == [server]
        (log,) = (basedir / "cache" / "tools").glob("*.log")
        assert log.read_text() == ""  # the worker's visit, which called nothing, was no error
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    deadline = time.monotonic() + 30
    while servers_of(basedir / "cache"):
        assert time.monotonic() < deadline, "the server outlived its worker"
        time.sleep(0.2)


def test_the_client_names_the_worker_cache_as_the_steps_do():
    # The client runs with the standard library alone, so it spells the variable again.
    assert client.WORKER_CACHE == WORKER_CACHE
