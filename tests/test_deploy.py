"""The deployment settings without a farm: what the environment overrides and what is never
written to farm.json, the worker port's endpoints, the certificate the farm makes, and what
`wheelwright worker create` says."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import stat
import subprocess
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from buildbot.db.enginestrategy import create_engine as buildbot_engine
from buildbot_worker.pb import Worker
from sqlalchemy import event
from twisted.internet import tcp

from tests.farm import WHEELWRIGHT
from tests.indexhosts import PASSWORD, USER, devpi, pypiserver
from tests.wheels import make_wheel
from wheelwright.common.connection import add_to_tac, worker_sends_at_once
from wheelwright.common.files import sha256_of
from wheelwright.config.buildmaster import assemble
from wheelwright.farm import control, tls
from wheelwright.farm.database import tune_sqlite
from wheelwright.farm.pools import POOLS
from wheelwright.farm.settings import Farm
from wheelwright.publishing import mirrors


def test_the_environment_overrides_farm_json_and_is_never_written_to_it(tmp_path):
    (tmp_path / "farm.json").write_text(
        json.dumps({"db_url": "sqlite:///state.sqlite", "ui_port": 8011})
    )
    environ = {
        "WHEELWRIGHT_DB_URL": "postgresql://farm:s3cret@db.internal/buildbot",
        "WHEELWRIGHT_UI_PORT": "9000",
    }
    farm = Farm.load(tmp_path, environ)
    assert (farm.db_url, farm.ui_port) == ("postgresql://farm:s3cret@db.internal/buildbot", 9000)
    farm.save()
    kept = json.loads((tmp_path / "farm.json").read_text())
    assert (kept["db_url"], kept["ui_port"]) == ("sqlite:///state.sqlite", 8011)
    assert "s3cret" not in (tmp_path / "farm.json").read_text()


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"WHEELWRIGHT_UI_PORT": "eighty"}, "WHEELWRIGHT_UI_PORT: not JSON"),
        ({"WHEELWRIGHT_DB_URL": "oracle://x"}, "db_url must be a sqlite:// or postgresql:// URL"),
        ({"WHEELWRIGHT_ROLES": '["ui", "coffee"]'}, "roles must be one or both of ui, builds"),
        (
            {"WHEELWRIGHT_POOL_INDEX_URLS": '{"sparc": "http://x/simple/"}'},
            "pool_index_urls: unknown pools",
        ),
    ],
)
def test_bad_deployment_settings_are_named(tmp_path, environ, message):
    with pytest.raises(ValueError, match=message):
        Farm.load(tmp_path, environ)


def test_each_pool_reaches_the_index_at_its_own_address(tmp_path):
    farm = Farm(
        tmp_path,
        public_host="farm.example",
        pool_index_urls={"containers": "http://mirror:3141/simple/"},
    )
    assert farm.index_url_for(POOLS["local"]) == "http://127.0.0.1:8080/simple/"
    # Remote machines cannot reach the master's loopback.
    assert farm.index_url_for(POOLS["aarch64"]) == "http://farm.example:8080/simple/"
    assert farm.index_url_for(POOLS["containers"]) == "http://mirror:3141/simple/"


def test_the_master_config_follows_the_deployment_settings(tmp_path):
    (tmp_path / "master").mkdir()
    (tmp_path / "farm.json").write_text(
        json.dumps(
            {
                "db_url": "postgresql://farm@db/buildbot",
                "worker_tls": True,
                "mq_router": "ws://router:8081/ws",
                "roles": ["ui"],
            }
        )
    )
    (tmp_path / "secrets").mkdir(mode=0o700)
    tls.ensure_certificate(Farm.load(tmp_path))
    config = assemble(str(tmp_path / "master"))
    assert config["db"] == {"db_url": "postgresql://farm@db/buildbot"}
    assert config["mq"] == {"type": "wamp", "router_url": "ws://router:8081/ws", "realm": "realm1"}
    assert config["multiMaster"] is True
    assert config["protocols"] == {
        "pb": {"port": "tcp:0:interface=127.0.0.1"}
    }  # a UI master takes no worker
    (tmp_path / "farm.json").write_text(json.dumps({"worker_tls": True, "listen": "0.0.0.0"}))
    port = assemble(str(tmp_path / "master"))["protocols"]["pb"]["port"]
    assert port.startswith("ssl:9989:interface=0.0.0.0:privateKey=") and port.endswith(
        "worker-port.pem"
    )


def test_the_farm_makes_its_certificate_again_when_the_master_gets_a_new_address(tmp_path):
    (tmp_path / "secrets").mkdir()
    farm = Farm(tmp_path, worker_tls=True)
    assert tls.ensure_certificate(farm) and not tls.ensure_certificate(farm)
    cert, key, trusted = tls.certificate(farm)
    assert tls.names_in(cert) == {"127.0.0.1"} and trusted == cert
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    ssl.create_default_context(cafile=str(trusted))  # a certificate a client can trust as its root
    moved = Farm(tmp_path, worker_tls=True, public_host="farm.example")
    assert tls.ensure_certificate(moved) and tls.names_in(cert) == {"127.0.0.1", "farm.example"}


def test_endpoint_values_with_separators_are_escaped():
    assert (
        tls.client_endpoint("::1", 9989, "/srv/a:b")
        == r"tls:host=\:\:1:port=9989:trustRoots=/srv/a\:b"
    )


def test_worker_create_prints_what_the_other_machine_runs(tmp_path):
    farm = Farm(tmp_path, worker_tls=True, public_host="farm.example")
    (tmp_path / "secrets").mkdir()
    tls.ensure_certificate(farm)
    script = control.remote_worker_script(
        farm, POOLS["aarch64"], "aarch64-1", "farm.example:9989", "pw", "0.1.0"
    )
    # the worker-side tools from the farm's own index, as the remote pool reaches it
    assert (
        "/opt/wheelwright/bin/pip install --no-deps --index-url "
        f"http://farm.example:{farm.index_port}/simple/ wheelwright-farm==0.1.0"
    ) in script
    assert "buildbot-worker==" in script and "BEGIN CERTIFICATE" in script
    assert (
        "-m wheelwright.common.connection --password-from-file "
        "/var/lib/wheelwright/aarch64-1/buildbot.tac"
    ) in script
    assert (
        "--connection-string=tls:host=farm.example:port=9989:trustRoots=master-ca /var/lib/wheelwright/aarch64-1 "
        "farm.example:9989 aarch64-1 see-worker-password"
    ) in script
    # the password is never on a command line: the worker reads it from a file, mode 0600
    assert "pw" not in script.split()
    assert "install -m 600 PASSWORD-FILE /var/lib/wheelwright/aarch64-1/worker-password" in script


def test_a_worker_tac_reads_its_password_from_the_file_beside_it(tmp_path):
    from wheelwright.common.connection import add_to_tac

    subprocess.run(
        [str(Path(WHEELWRIGHT).with_name("buildbot-worker")), "create-worker", "--relocatable",
         str(tmp_path), "127.0.0.1:9989", "w-1", "see-worker-password"],
        check=True, capture_output=True,
    )  # fmt: skip
    (tmp_path / "worker-password").write_text("s3cret\n")
    add_to_tac(tmp_path / "buildbot.tac", password_from_file=True)
    tac = (tmp_path / "buildbot.tac").read_text()
    assert "see-worker-password" not in tac
    scope: dict = {"__file__": str(tmp_path / "buildbot.tac")}
    exec(tac.split("\ns = Worker(")[0], scope)  # the tac up to the worker it makes
    assert scope["passwd"] == "s3cret"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["aarch64-9", "--pool", "aarch64"], "aarch64-9 is not a worker of pool aarch64"),
        (
            ["aarch64-1", "--pool", "aarch64"],
            "this farm does not run pool aarch64: wheelwright up --pools local,aarch64",
        ),
    ],
)
def test_worker_create_refuses_what_the_master_would_not_take(tmp_path, args, message):
    proc = subprocess.run(
        [WHEELWRIGHT, "--state", str(tmp_path), "worker", "create", *args],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0 and message in proc.stderr


@pytest.mark.parametrize("kind", [pypiserver, devpi], ids=lambda kind: kind.__name__)
def test_a_mirror_keeps_the_file_it_holds_and_says_so(tmp_path, kind):
    """Real pypiserver and devpi-server: the same file twice is no failure; another file of the
    same name is refused and left alone; a wrong password is a failure that says why."""
    for name in ("first", "second"):
        (tmp_path / name).mkdir()
    first = make_wheel(tmp_path / "first", "mirrored", "1.0", payload=b"first")
    second = make_wheel(tmp_path / "second", "mirrored", "1.0", payload=b"second")
    (tmp_path / "farm" / "secrets").mkdir(parents=True)
    with kind(tmp_path / "host") as host:
        farm = Farm(
            tmp_path / "farm",
            mirrors=[
                {
                    "name": host.name,
                    "upload_url": host.upload_url,
                    "simple_url": host.simple_url,
                    "user": USER,
                }
            ],
        )
        (mirror,) = mirrors.mirrors_of(farm)
        assert not mirrors.publish(farm, mirror, first).published
        assert "no password" in mirrors.publish(farm, mirror, first).said
        (tmp_path / "farm" / "secrets" / mirror.secret).write_text("wrong")
        refused = mirrors.publish(farm, mirror, first)
        assert (
            not refused.published
            and not refused.already_there
            and mirrors.held_by(mirror, first) is None
        )
        (tmp_path / "farm" / "secrets" / mirror.secret).write_text(PASSWORD)
        assert mirrors.publish(farm, mirror, first).published
        again = mirrors.publish(farm, mirror, first)
        assert (
            again.published or again.already_there
        )  # devpi takes the same bytes again; pypiserver refuses them
        other = mirrors.publish(farm, mirror, second)
        assert not other.published and not other.already_there and "another sha256" in other.said
        assert mirrors.held_by(mirror, second) == sha256_of(first)


def test_the_operators_certificate_is_used_as_given_and_never_made_again(tmp_path):
    signed = tmp_path / "given"
    signed.mkdir()
    tls.make_self_signed(signed / "cert.pem", signed / "key.pem", names=["farm.example"])
    farm = Farm(
        tmp_path,
        worker_tls=True,
        worker_tls_cert=str(signed / "cert.pem"),
        worker_tls_key=str(signed / "key.pem"),
        worker_tls_ca=str(signed / "ca.pem"),
        public_host="other.example",
    )
    assert not tls.ensure_certificate(farm) and not (tmp_path / "secrets").exists()
    assert tls.certificate(farm) == (signed / "cert.pem", signed / "key.pem", signed / "ca.pem")
    assert tls.server_endpoint(farm).endswith(
        f"privateKey={signed / 'key.pem'}:certKey={signed / 'cert.pem'}"
    )


def test_a_workers_connection_to_the_master_sends_each_message_at_once(tmp_path):
    # The tac the farm makes runs the hook, once however often the farm adds it.
    control.create_worker_at(Farm(tmp_path), tmp_path / "w", "local-1", "pw", "127.0.0.1:9989")
    tac = tmp_path / "w" / "buildbot.tac"
    add_to_tac(tac)
    assert tac.read_text().count("worker_sends_at_once(s)") == 1
    assert tac.read_text().count("start_with_worker(basedir)") == 1
    assert tac.stat().st_mode & 0o077 == 0  # the worker's password stays private
    compile(tac.read_text(), str(tac), "exec")
    # The hook, on a real worker service and a real TCP connection.
    worker = Worker("127.0.0.1", 9989, "local-1", "pw", str(tmp_path / "w"), 600)
    connected = []
    worker.bf.gotPerspective = connected.append  # what the factory does next, recorded
    worker_sends_at_once(worker)
    with (
        socket.create_server(("127.0.0.1", 0)) as server,
        socket.create_connection(server.getsockname()) as sock,
    ):
        perspective = SimpleNamespace(broker=SimpleNamespace(transport=tcp.Connection(sock, None)))
        assert not sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        worker.bf.gotPerspective(perspective)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    assert connected == [perspective]


# A process that writes its PID to its pidfile once its SIGTERM handler is set, and on SIGTERM
# notes whether the master's process was still there.
STOPPABLE = """
import os, signal, sys, time
pidfile, master, ignores = sys.argv[1], sys.argv[2], sys.argv[3] == "ignores"
def stopped(*_):
    try:
        os.kill(int(open(master).read()), 0)
        seen = "master running"
    except (FileNotFoundError, ProcessLookupError):
        seen = "master gone"
    with open(pidfile + ".seen", "w") as out:
        out.write(seen)
    sys.exit(0)
signal.signal(signal.SIGTERM, signal.SIG_IGN if ignores else stopped)
with open(pidfile + ".tmp", "w") as out:
    out.write(str(os.getpid()))
os.rename(pidfile + ".tmp", pidfile)
time.sleep(600)
"""


def test_down_stops_the_master_before_its_workers_and_kills_what_ignores_sigterm(tmp_path):
    # A master waiting for ever for a build (Buildbot's, when a worker left as the build started)
    # ignores SIGTERM: down kills it, and stops the workers and the index host all the same.
    farm = Farm(tmp_path)
    master = farm.master_dir / "twistd.pid"
    worker = farm.workers_dir / "local-1" / "twistd.pid"
    index = farm.index_dir / "index.pid"
    procs = []
    try:
        for pidfile, ignores in ((master, "ignores"), (worker, "stops"), (index, "stops")):
            pidfile.parent.mkdir(parents=True)
            procs.append(
                subprocess.Popen(["python3", "-c", STOPPABLE, str(pidfile), str(master), ignores])
            )
        for pidfile in (master, worker, index):
            deadline = time.monotonic() + 30
            while not pidfile.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        control.down(farm, patience=1)
        assert [proc.wait(timeout=10) for proc in procs] == [-signal.SIGKILL, 0, 0]
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    assert (worker.parent / "twistd.pid.seen").read_text() == "master gone"
    assert not any(pidfile.exists() for pidfile in (master, worker, index))


def test_the_masters_sqlite_keeps_its_connection_and_commits_without_an_fsync(tmp_path):
    tune_sqlite()
    # Buildbot's engine for the embedded database, used as Buildbot's one database thread uses it.
    engine = buildbot_engine("sqlite:///state.sqlite", basedir=str(tmp_path))
    opened = []
    event.listen(
        engine.pool, "connect", lambda dbapi_connection, _record: opened.append(dbapi_connection)
    )

    def transactions():
        with engine.begin() as conn:
            conn.exec_driver_sql("create table builds (number integer)")
        for number in range(3):
            with engine.begin() as conn:
                conn.exec_driver_sql("insert into builds values (?)", (number,))
                assert conn.exec_driver_sql("pragma synchronous").scalar() == 1  # NORMAL, not FULL

    database_thread = threading.Thread(target=transactions)
    database_thread.start()
    database_thread.join()
    # The connection Buildbot opened to turn WAL on served every transaction; without the pool,
    # each opened its own (and read the schema again).
    assert opened == []
    # Without a connection kept open, SQLite checkpointed (fsyncs) and deleted the WAL.
    assert (tmp_path / "state.sqlite-wal").stat().st_size > 0
    with engine.connect() as conn:  # another thread than the one that opened it
        assert conn.exec_driver_sql("select count(*) from builds").scalar() == 3


def test_the_local_workers_share_one_uv_cache_and_one_bytecode_cache(tmp_path):
    farm = Farm(tmp_path)
    one, two = farm.workers_dir / "local-1", farm.workers_dir / "local-2"
    (two / "cache" / "uv").mkdir(parents=True)  # a worker made before the cache was shared
    (two / "cache" / "uv" / "old").write_text("unpacked wheels")
    for basedir in (one, two, one):
        control.share_caches(farm, basedir)
    for kind in ("uv", "bytecode"):
        shared = (farm.workers_dir / f"{kind}-cache").resolve()
        assert (one / "cache" / kind).resolve() == (two / "cache" / kind).resolve() == shared
        # The farm's folder may move: the link is relative.
        assert os.readlink(one / "cache" / kind) == f"../../{kind}-cache"
        assert stat.S_IMODE(shared.stat().st_mode) == 0o700


def test_the_command_says_its_version_and_the_distribution_its_licence():
    import importlib.metadata

    from wheelwright.common.runtime import DISTRIBUTION

    proc = subprocess.run([WHEELWRIGHT, "--version"], capture_output=True, text=True, check=True)
    assert proc.stdout == f"wheelwright {importlib.metadata.version(DISTRIBUTION)}\n"
    meta = importlib.metadata.metadata(DISTRIBUTION)
    # Buildbot, which the master imports, is GPL-2.0: ours must be compatible with it
    assert meta["License-Expression"] == "GPL-2.0-or-later", meta["License-Expression"]
    assert meta.get_all("License-File") == ["LICENSE"]
    licence = Path(__file__).resolve().parent.parent / "LICENSE"
    assert "GNU GENERAL PUBLIC LICENSE\n                       Version 2" in licence.read_text()
