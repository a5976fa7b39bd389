"""The production setup (docs/deploy.md): Buildbot on a real PostgreSQL server of the tests' own,
its password given in the environment as an operator keeps it; the worker port speaking TLS
only, with a certificate the farm made, and a worker made by `wheelwright worker create`."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import build_backends, install_and_run, running_farm
from tests.farm import DEFAULT_BUILDER
from tests.postgres import postgres_server, query
from tests.sdists import flit_sdist
from tests.test_concurrency_e2e import twenty_builds_at_once


@pytest.fixture(scope="module")
def database():
    with postgres_server() as url:
        yield url


@pytest.fixture(scope="module")
def production(tmp_path_factory, upstream, database):
    with running_farm(tmp_path_factory, upstream, "--no-emulation", "--pools", "local", "--worker-tls",
                      environ={"WHEELWRIGHT_DB_URL": database}) as farm:
        yield build_backends(farm, upstream)


def test_a_build_runs_on_postgresql_whose_password_stays_out_of_the_farm_files(production, database, upstream,
                                                                              tmp_path):
    upstream.add(flit_sdist(tmp_path, "onpostgres", "1.0", code="WHERE = 'postgresql'\n"))
    rc, result = production.build("onpostgres==1.0")
    assert rc == 0, result
    assert install_and_run(production, tmp_path, "onpostgres==1.0", "import onpostgres; print(onpostgres.WHERE)") \
        == "postgresql\n"
    # The build is in PostgreSQL's tables, not in a sqlite file beside the master.
    (row,) = query(database, "SELECT b.number, b.results FROM builds b JOIN builders r ON r.id = b.builderid "
                             f"WHERE r.name = '{DEFAULT_BUILDER}' ORDER BY b.id DESC LIMIT 1")
    assert row == (result["number"], 0)
    assert not (production.state / "master" / "state.sqlite").exists()
    password = database.split(":")[2].split("@")[0]
    farm_json = json.loads((production.state / "farm.json").read_text())
    assert "db_url" not in farm_json and password not in (production.state / "farm.json").read_text()


def test_twenty_builds_at_once_on_postgresql(production, upstream, tmp_path):
    twenty_builds_at_once(production, upstream, tmp_path, prefix="pg")


BUILDBOT_WORKER = str(Path(sys.executable).with_name("buildbot-worker"))


def worker_of(database: str, builder: str, number: int) -> str:
    (row,) = query(database, "SELECT w.name FROM builds b JOIN builders r ON r.id = b.builderid JOIN workers w ON "
                             f"w.id = b.workerid WHERE r.name = '{builder}' AND b.number = {number}")
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


def test_a_worker_made_by_worker_create_reaches_the_master_only_over_tls(production, database, upstream, tmp_path):
    # The farm's own workers make way: the worker below, a process of its own, takes local-1's name.
    for name in ("local-1", "local-2"):
        subprocess.run([BUILDBOT_WORKER, "stop", str(production.state / "workers" / name)], check=True,
                       capture_output=True)
    made, plain = tmp_path / "made", tmp_path / "plain"
    production.cli("worker", "create", "local-1", "--pool", "local", "--dir", str(made))
    tac = (made / "buildbot.tac").read_text()
    assert "connection_string = 'tls:host=127.0.0.1:" in tac and ":trustRoots=master-ca'" in tac
    assert (made / "master-ca" / "master.pem").read_bytes() == (production.state / "secrets" / "worker-port.pem").read_bytes()
    # A worker that speaks plain PB to the same port, with local-2's right password, never attaches.
    port = json.loads((production.state / "farm.json").read_text())["worker_port"]
    password = (production.state / "secrets" / "worker-local-2").read_text().strip()
    subprocess.run([BUILDBOT_WORKER, "create-worker", str(plain), f"127.0.0.1:{port}", "local-2", password], check=True,
                   capture_output=True)
    try:
        subprocess.run([BUILDBOT_WORKER, "start", str(made)], check=True, capture_output=True)
        # `start` waits for the worker to attach, and says it did not: the process runs on, retrying.
        assert subprocess.run([BUILDBOT_WORKER, "start", str(plain)], capture_output=True).returncode != 0
        assert (plain / "twistd.pid").exists()
        assert wait_for(lambda: connected(production, "local-1")), (made / "twistd.log").read_text()[-2000:]
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
