"""The production setup (docs/deploy.md): Buildbot on a real PostgreSQL server of the tests' own,
its password given in the environment as an operator keeps it; the masters' messages through a
real Crossbar router; our index host run apart from the farm (`index_host`), every wheel also
uploaded to a real pypiserver and a real devpi-server; the worker port speaking TLS only, with a
certificate the farm made, and a worker made by `wheelwright worker create`; a second master that
serves the UI while the first runs the builds."""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import build_backends, install_and_run, running_farm, serving_index
from tests.crossbar import REALM, crossbar_router
from tests.farm import DEFAULT_BUILDER, FarmUnderTest
from tests.indexhosts import PASSWORD, USER, devpi, pypiserver
from tests.postgres import postgres_server, query
from tests.sdists import flit_sdist, free_port
from tests.test_concurrency_e2e import twenty_builds_at_once
from wheelwright.farm.settings import UPLOAD_SECRET, UPLOAD_USER

pytestmark = pytest.mark.farm


@pytest.fixture(scope="module")
def database():
    with postgres_server() as url:
        yield url


@pytest.fixture(scope="module")
def own_index_host(tmp_path_factory):
    """Our index host as production runs it, on a machine of its own: not started by `up`. Yields
    its URL, where it keeps its files, and the password of the farm's upload account."""
    top, password = tmp_path_factory.mktemp("index-host"), secrets.token_urlsafe(16)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "wheelwright.indexhost.accounts",
            str(top / "users.json"),
            UPLOAD_USER,
        ],
        input=password + "\n",
        text=True,
        check=True,
    )
    with serving_index(top) as url:
        yield url, top / "root", password


@pytest.fixture(scope="module")
def mirrors(tmp_path_factory):
    with contextlib.ExitStack() as stack:
        yield [
            stack.enter_context(host(tmp_path_factory.mktemp(host.__name__)))
            for host in (pypiserver, devpi)
        ]


@pytest.fixture(scope="module")
def router(tmp_path_factory):
    with crossbar_router(tmp_path_factory.mktemp("crossbar")) as url:
        yield url


@pytest.fixture(scope="module")
def production(tmp_path_factory, upstream, database, own_index_host, mirrors, router):
    index_url, _, upload_password = own_index_host
    state = tmp_path_factory.mktemp("production") / "farm"
    (state / "secrets").mkdir(parents=True, mode=0o700)
    for name, password in (
        (UPLOAD_SECRET, upload_password),
        *((f"mirror-{m.name}", PASSWORD) for m in mirrors),
    ):
        (state / "secrets" / name).write_text(password)
        (state / "secrets" / name).chmod(0o600)
    settings = {
        "mirrors": [
            {"name": m.name, "upload_url": m.upload_url, "simple_url": m.simple_url, "user": USER}
            for m in mirrors
        ],
        "mq_realm": REALM,
    }
    with running_farm(
        tmp_path_factory,
        upstream,
        "--no-emulation",
        "--pools",
        "local",
        "--worker-tls",
        "--roles",
        "builds",
        "--mq-router",
        router,
        state=state,
        settings=settings,
        environ={"WHEELWRIGHT_DB_URL": database, "WHEELWRIGHT_INDEX_HOST": index_url},
    ) as farm:
        yield build_backends(farm, upstream)


def test_a_build_runs_on_postgresql_publishes_to_the_index_host_and_both_mirrors(
    production, database, upstream, mirrors, own_index_host, tmp_path
):
    upstream.add(flit_sdist(tmp_path, "onpostgres", "1.0", code="WHERE = 'postgresql'\n"))
    rc, result = production.build("onpostgres==1.0")
    assert rc == 0 and result["result"] == "success", result
    assert production.status["index"] == own_index_host[0] + "simple/"
    (wheel,) = result["wheels"]
    assert (own_index_host[1] / "wheels" / "simple" / "onpostgres" / wheel).exists()
    for index_url in (production.status["index"], *(m.simple_url for m in mirrors)):
        assert (
            install_and_run(
                production,
                tmp_path,
                "onpostgres==1.0",
                "import onpostgres; print(onpostgres.WHERE)",
                index_url=index_url,
            )
            == "postgresql\n"
        ), index_url
    # The build is in PostgreSQL's tables, not in a sqlite file beside the master.
    (row,) = query(
        database,
        "SELECT b.number, b.results FROM builds b JOIN builders r ON r.id = b.builderid "
        f"WHERE r.name = '{DEFAULT_BUILDER}' ORDER BY b.id DESC LIMIT 1",
    )
    assert row == (result["number"], 0)
    assert not (production.state / "master" / "state.sqlite").exists()
    password = database.split(":")[2].split("@")[0]
    farm_json = json.loads((production.state / "farm.json").read_text())
    assert (
        "db_url" not in farm_json and password not in (production.state / "farm.json").read_text()
    )


def test_twenty_builds_at_once_on_postgresql(production, upstream, own_index_host, tmp_path):
    twenty_builds_at_once(production, upstream, tmp_path, prefix="pg", index_root=own_index_host[1])


BUILDBOT_WORKER = str(Path(sys.executable).with_name("buildbot-worker"))


def worker_of(database: str, builder: str, number: int) -> str:
    (row,) = query(
        database,
        "SELECT w.name FROM builds b JOIN builders r ON r.id = b.builderid JOIN workers w ON "
        f"w.id = b.workerid WHERE r.name = '{builder}' AND b.number = {number}",
    )
    return row[0]


def connected(farm, name: str) -> bool:
    (worker,) = farm.api(f"workers?name={name}")["workers"]
    return bool(worker["connected_to"])


def wait_for(predicate, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def test_a_worker_made_by_worker_create_reaches_the_master_only_over_tls(
    production, database, upstream, tmp_path
):
    # The farm's own workers make way: the worker below, a process of its own, takes local-1's name.
    for name in ("local-1", "local-2"):
        subprocess.run(
            [BUILDBOT_WORKER, "stop", str(production.state / "workers" / name)],
            check=True,
            capture_output=True,
        )
    made, plain = tmp_path / "made", tmp_path / "plain"
    production.cli("worker", "create", "local-1", "--pool", "local", "--dir", str(made))
    tac = (made / "buildbot.tac").read_text()
    assert "connection_string = 'tls:host=127.0.0.1:" in tac and ":trustRoots=master-ca'" in tac
    assert (made / "master-ca" / "master.pem").read_bytes() == (
        production.state / "secrets" / "worker-port.pem"
    ).read_bytes()
    # A worker that speaks plain PB to the same port, with local-2's right password, never attaches.
    port = json.loads((production.state / "farm.json").read_text())["worker_port"]
    password = (production.state / "secrets" / "worker-local-2").read_text().strip()
    subprocess.run(
        [BUILDBOT_WORKER, "create-worker", str(plain), f"127.0.0.1:{port}", "local-2", password],
        check=True,
        capture_output=True,
    )
    try:
        subprocess.run([BUILDBOT_WORKER, "start", str(made)], check=True, capture_output=True)
        # `start` waits for the worker to attach, and says it did not: the process runs on, retrying.
        assert (
            subprocess.run([BUILDBOT_WORKER, "start", str(plain)], capture_output=True).returncode
            != 0
        )
        assert (plain / "twistd.pid").exists()
        assert wait_for(lambda: connected(production, "local-1")), (
            made / "twistd.log"
        ).read_text()[-2000:]
        assert "BufferingTLSTransport" in (made / "twistd.log").read_text()

        upstream.add(flit_sdist(tmp_path, "overtls", "1.0"))
        rc, result = production.build("overtls==1.0")
        assert rc == 0, result
        assert worker_of(database, DEFAULT_BUILDER, result["number"]) == "local-1"
        assert not connected(production, "local-2")
        assert "message from master: attached" not in (plain / "twistd.log").read_text()
    finally:
        for basedir in (made, plain):
            subprocess.run([BUILDBOT_WORKER, "stop", str(basedir)], capture_output=True)
        production.cli("up")  # the farm's own workers again, for the tests after this one


def test_a_build_forced_through_the_ui_master_runs_on_the_builds_master(
    production, database, router, upstream, tmp_path
):
    """A second master, as on a machine of its own: its own state directory with the first's
    secrets and settings, the same database and router, no worker port. The build forced through
    it is run by the other master's worker, and both masters show it."""
    state = tmp_path / "ui-master"
    shutil.copytree(production.state / "secrets", state / "secrets")
    first = json.loads((production.state / "farm.json").read_text())
    (state / "farm.json").write_text(
        json.dumps(
            {
                **{
                    k: first[k]
                    for k in (
                        "upstream",
                        "pools",
                        "emulation",
                        "mq_router",
                        "mq_realm",
                        "worker_port",
                    )
                },
                "roles": ["ui"],
                "ui_port": free_port(),
                "settings": str(production.state / "overrides"),
            }
        )
    )
    ui = FarmUnderTest(state, production.environ)
    try:
        ui.cli("up")
        assert not (state / "workers").exists() or not list((state / "workers").iterdir())
        upstream.add(flit_sdist(tmp_path, "twomasters", "1.0"))
        rc, result = ui.build("twomasters==1.0")
        assert rc == 0 and result["result"] == "success", result
        assert result["build_url"].startswith(ui.status["ui"])
        assert worker_of(database, DEFAULT_BUILDER, result["number"]) in ("local-1", "local-2")
        masters = {m["masterid"]: m for m in ui.api("masters")["masters"]}
        assert len(masters) == 2 and all(m["active"] for m in masters.values()), masters
        for farm in (ui, production):
            (builder,) = farm.api(f"builders?name={DEFAULT_BUILDER}")["builders"]
            (build,) = farm.api(f"builders/{builder['builderid']}/builds/{result['number']}")[
                "builds"
            ]
            assert (
                build["complete"]
                and build["results"] == 0
                and "twomasters" in build["state_string"]
            )
            # Run by the master with the worker port (Buildbot names a master host:basedir).
            assert masters[build["masterid"]]["name"].endswith(str(production.state / "master")), (
                masters
            )
    finally:
        ui.cli("down", check=False)
