"""The production setup (docs/deploy.md): Buildbot on a real PostgreSQL server of the tests' own,
its password given in the environment as an operator keeps it."""

from __future__ import annotations

import json

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
    with running_farm(tmp_path_factory, upstream, "--no-emulation", "--pools", "local",
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
