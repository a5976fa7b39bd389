"""Latent container workers: every build in a fresh container through Buildbot's
DockerLatentWorker, on a network that reaches only the master, with the build itself offline."""

from __future__ import annotations

import json

import pytest

from tests.conftest import install_and_run, made_roots_cache, wheel_index_has
from tests.farm import FarmUnderTest, http_get
from tests.podman import Podman
from tests.sdists import CACHE, Listener, c_extension_sdist, calling_out_sdist, free_port
from wheelwright.farm.pools import POOLS, builder_name
from wheelwright.farm.roots import host_arch

pytestmark = pytest.mark.farm

CONTAINERS = POOLS["containers"]
BUILDER = builder_name(CONTAINERS.arch, CONTAINERS.pythons[0])
CP = "cp" + CONTAINERS.pythons[0].replace(".", "")


@pytest.fixture(scope="module")
def podman(tmp_path_factory):
    engine = Podman(tmp_path_factory.mktemp("podman"), made_roots_cache(host_arch()))
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def container_farm(tmp_path_factory, upstream, podman):
    farm = FarmUnderTest(tmp_path_factory.mktemp("container-farm") / "farm")
    try:  # a farm that came up halfway is stopped too
        farm.cli(
            "up",
            "--pools",
            "containers",
            "--upstream",
            upstream.url,
            "--ui-port",
            str(free_port()),
            "--worker-port",
            str(free_port()),
            "--index-port",
            str(free_port()),
            "--listen",
            "0.0.0.0",
            "--docker-host",
            podman.docker_host,
            "--container-network",
            podman.network,
            "--container-master-host",
            podman.gateway,
        )
        upstream.add(CACHE / "setuptools-80.9.0.tar.gz")
        rc, result = farm.build("setuptools==80.9.0", BUILDER)
        assert rc == 0, json.dumps(result)
        yield farm
    finally:
        farm.cli("down", check=False)


def test_builds_run_in_fresh_containers_that_are_removed(
    container_farm, podman, upstream, tmp_path
):
    upstream.add(c_extension_sdist(tmp_path, "incontainer", "1.0"))
    rc, result = container_farm.build("incontainer==1.0", BUILDER)
    assert rc == 0, json.dumps(result)
    (wheel,) = result["wheels"]
    assert wheel.startswith(f"incontainer-1.0-{CP}-{CP}-")
    provenance = json.loads(
        http_get(container_farm.status["index"] + f"incontainer/{wheel}.provenance.json")[1]
    )
    assert provenance["pool"] == "containers" and provenance["python"] == "/usr/bin/python3.11"
    assert podman.wait_for_no_containers() == []
    logs = container_farm.logs(BUILDER, result["number"])
    assert (
        "/proc of the container" in logs or "/proc private" in logs
    )  # the sandbox said what it had
    assert (container_farm.state / "secrets" / "index-upload-password").read_text() not in logs
    out = install_and_run(
        container_farm,
        tmp_path,
        "incontainer==1.0",
        "import incontainer; print(incontainer.answer())",
    )
    assert out == "42\n"


def test_a_build_that_opens_a_connection_fails_in_its_container(
    container_farm, podman, upstream, tmp_path
):
    listener = Listener("0.0.0.0")
    upstream.add(calling_out_sdist(tmp_path, "callsout", "1.0", podman.gateway, listener.port))
    rc, result = container_farm.build("callsout==1.0", BUILDER)
    listener.close()
    assert rc == 1
    assert "build-wheel" in result["failed_steps"]
    assert listener.accepted == []
    assert not wheel_index_has(container_farm, "callsout")
    assert podman.wait_for_no_containers() == []
