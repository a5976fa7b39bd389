from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

# Importing buildbot.test (test_steps does) turns every later warning into an error, process-wide:
# load the farm's modules first, so Buildbot modules that warn on import (buildbot.util.ssl under
# Twisted 26.10) are already loaded by then, whatever order pytest imports the tests in.
import wheelwright.cli.main  # noqa: F401  isort: skip
import wheelwright.config.buildmaster  # noqa: F401  isort: skip

from tests.farm import MARKED_FARM, FarmUnderTest, http_get
from tests.sdists import CACHE, Upstream, free_port, wait_for_port
from wheelwright.common.runtime import clean_pip_env
from wheelwright.farm.roots import host_arch
from wheelwright.indexhost import accounts

# A worker root takes minutes to make (debootstrap; the aarch64 one mostly one core running qemu):
# the roots the selected tests need are made in the background, at the lowest priority, while
# the other tests run, and the tests that need them run last, in this order.
ROOTS_CACHE = CACHE.parent / "roots"
LATE_TESTS = {"test_containers_e2e.py": host_arch(), "test_emulation_e2e.py": "arm64"}
ROOT_MAKERS: dict[str, subprocess.Popen] = {}


@pytest.hookimpl(trylast=True)  # after `-m` deselected what will not run
def pytest_collection_modifyitems(session, config, items):
    late = {name: [item for item in items if item.path.name == name] for name in LATE_TESTS}
    if not any(late.values()) or hasattr(config, "workerinput"):  # xdist: its controller does
        return
    items[:] = [item for item in items if item.path.name not in LATE_TESTS] + [
        item for found in late.values() for item in found
    ]
    # Only a farm test needs a root: the quick loop (-m "not farm") makes none.
    needed = {
        LATE_TESTS[name]
        for name, found in late.items()
        if any(item.get_closest_marker("farm") for item in found)
    }
    ROOTS_CACHE.mkdir(parents=True, exist_ok=True)
    for arch in sorted(needed):
        with open(ROOTS_CACHE / f"background-{arch}.log", "w") as log:
            ROOT_MAKERS[arch] = subprocess.Popen(
                ["nice", "-n", "19", sys.executable, "-m", "wheelwright.farm.roots"]
                + ["--arch", arch, "--cache", str(ROOTS_CACHE)],
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,  # its debootstrap and qemu go with it (below)
            )


def pytest_unconfigure(config):
    """A run stopped early (-x, Ctrl-C) leaves no root maker behind: its half-made root is a
    temporary folder of the cache, which the next maker does not take."""
    for maker in ROOT_MAKERS.values():
        if maker.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(maker.pid, signal.SIGKILL)
            maker.wait()
            # debootstrap mounts /proc and more in the root it makes
            mounts = [
                line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()
            ]
            for mount in sorted(
                (m for m in mounts if m.startswith(f"{ROOTS_CACHE}/")), reverse=True
            ):
                subprocess.run(["umount", "-l", mount], capture_output=True)


def made_roots_cache(arch: str) -> Path:
    """The roots cache, once the background maker of arch's root (if any) is done with it."""
    maker = ROOT_MAKERS.get(arch)
    if maker and maker.wait() != 0:
        log = ROOTS_CACHE / f"background-{arch}.log"
        raise AssertionError(f"making the {arch} root failed: {log.read_text()[-3000:]}")
    return ROOTS_CACHE


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    # Before any fixture: a module or session fixture that starts a farm does so for this test.
    MARKED_FARM[0] = item.get_closest_marker("farm") is not None


LOG_TAIL_LINES = 60


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test on a farm reports the end of its master's and workers' logs: CI keeps only
    what pytest prints, and the farm's folder is gone with the machine."""
    report = yield
    if report.failed:
        # One farm may be several fixtures (`backends` is `farm`, its backends built): once each.
        farms = {
            v.state: v
            for v in getattr(item, "funcargs", {}).values()
            if isinstance(v, FarmUnderTest)
        }
        for farm in farms.values():
            logs = [farm.state / "master" / "twistd.log"]
            logs += sorted((farm.state / "workers").glob("*/twistd.log"))
            for log in filter(Path.exists, logs):
                tail = log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
                report.sections.append((f"end of {log}", "\n".join(tail)))
    return report


@pytest.fixture(scope="session")
def upstream(tmp_path_factory):
    server = Upstream(tmp_path_factory.mktemp("upstream"), free_port())
    yield server
    server.close()


# A secret in the shell that runs `wheelwright up`: it must reach no worker and no log.
CANARY = f"canary-{uuid.uuid4().hex}"


@contextlib.contextmanager
def running_farm(
    tmp_path_factory,
    upstream,
    *up_args: str,
    environ: dict[str, str] | None = None,
    state: Path | None = None,
    settings: dict | None = None,
):
    """A farm of its own, up for the duration of the with block. The aarch64 pool's builders are
    there, waiting for remote workers: the tests that emulate aarch64 say --emulation. `settings`
    go to farm.json beside the tests' own."""
    state = state or tmp_path_factory.mktemp("farm") / "farm"
    state.mkdir(exist_ok=True)
    # farm.json settings `up` keeps: an unreachable index is retried within seconds, not minutes,
    # upstream's changelog is read every 2 s, and edits to settings (which many tests make) start
    # no rebuilds but in the test that turns that on.
    # Limits low enough for the exhausting builds to hit them soon, high enough for real builds.
    (state / "farm.json").write_text(
        json.dumps(
            {
                "publish_retry_delays": [1, 1],
                "kept_retry_interval": 2,
                "upstream_poll_interval": 2,
                "settings_poll_interval": 0,
                "build_limits": {
                    "memory_mb": 1536,
                    "processes": 256,
                    "disk_mb": 512,
                    "output_mb": 4,
                    "output_stop_mb": 64,
                },
                **(settings or {}),
            }
        )
    )
    under_test = FarmUnderTest(state, environ)
    os.environ["DEPLOY_TOKEN"] = CANARY
    try:  # a farm that came up halfway is stopped too
        under_test.cli(
            "up",
            "--upstream",
            upstream.url,
            "--pools",
            "local,aarch64",
            "--ui-port",
            str(free_port()),
            "--worker-port",
            str(free_port()),
            "--index-port",
            str(free_port()),
            *(up_args or ("--no-emulation",)),
        )
        yield under_test
    finally:
        under_test.cli("down", check=False)


@pytest.fixture(scope="session")
def farm(tmp_path_factory, upstream):
    with running_farm(tmp_path_factory, upstream) as under_test:
        yield under_test


@contextlib.contextmanager
def serving_index(top: Path):
    """Our index host on 127.0.0.1, as a process of its own: its files in top/root, its upload
    accounts in top/users.json. Yields its URL."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "wheelwright.indexhost.server", "--root", str(top / "root"), "--users",
         str(top / "users.json"), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}/"
    finally:
        proc.terminate()
        proc.wait()


@pytest.fixture
def index_host(tmp_path):
    """A real index host on 127.0.0.1; uploads as uploader / s3cret."""
    accounts.add(tmp_path / "users.json", "uploader", "s3cret")
    with serving_index(tmp_path) as url:
        yield url


def wheel_index_has(farm, project: str) -> bool:
    return http_get(f"{farm.status['index']}{project}/")[0] == 200


def install_and_run(
    farm,
    tmp_path: Path,
    pin: str,
    code: str,
    installer: str = "pip",
    base_python: str = sys.executable,
    index_url: str | None = None,
) -> str:
    """A fresh venv of base_python, the packages (pins separated by spaces) installed from our index
    (or index_url) alone, then `code` run in it."""
    index_url = index_url or farm.status["index"]
    venv = tmp_path / f"venv-{installer}-{Path(base_python).name}-{uuid.uuid4().hex[:6]}"
    subprocess.run([base_python, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    if installer == "pip":
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "--python",
            python,
            "install",
            "--index-url",
            index_url,
            *pin.split(),
        ]
    else:
        uv = str(Path(sys.executable).with_name("uv"))
        cmd = [uv, "pip", "install", "--python", python, "--index-url", index_url, *pin.split()]
    subprocess.run(cmd, check=True, env=clean_pip_env(), capture_output=True)
    return subprocess.run(
        [python, "-I", "-c", code], check=True, capture_output=True, text=True, cwd=tmp_path
    ).stdout


BACKENDS = ["setuptools==80.9.0", "flit_core==3.12.0"]


@pytest.fixture(scope="session")
def backends(farm, upstream):
    """setuptools and flit_core, built by the farm from their own sdists into the empty index."""
    return build_backends(farm, upstream)


def build_backends(farm, upstream):
    for pin in BACKENDS:
        name, version = pin.split("==")
        upstream.add(CACHE / f"{name}-{version}.tar.gz")
        rc, result = farm.build(pin)
        assert rc == 0 and result["result"] == "success", json.dumps(result)
    return farm
