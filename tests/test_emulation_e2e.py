"""The aarch64 pool on this x86_64 machine: workers in a Debian arm64 root under qemu-user, one C
extension built for both architectures from one sdist, each wheel installed into its own
architecture's Python from our index alone."""

from __future__ import annotations

import json
import platform
import re
import subprocess
import sys

import pytest

from tests.conftest import build_backends, install_and_run, made_roots_cache, running_farm
from tests.sdists import CACHE, Listener, c_extension_sdist, flit_sdist, setuptools_sdist
from wheelwright.farm import emulation
from wheelwright.farm.pools import find_python
from wheelwright.farm.settings import Farm

NATIVE = f"{platform.machine()}-cp311"
EMULATED = "aarch64-cp311"
CAN_EMULATE = emulation.why_not("aarch64")

pytestmark = pytest.mark.skipif(
    platform.machine() != "x86_64", reason="emulates aarch64 on an x86_64 machine"
)


def test_why_not_says_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(emulation, "BINFMT", tmp_path)
    assert "binfmt_misc is not mounted" in emulation.why_not("aarch64")
    (tmp_path / "status").write_text("enabled\n")
    assert "no binfmt_misc entry runs aarch64 programs" in emulation.why_not("aarch64")
    entry = tmp_path / "qemu-aarch64"
    entry.write_text(f"enabled\ninterpreter {sys.executable}\nflags: OC\noffset 0\n")
    assert "without the F flag" in emulation.why_not("aarch64")
    entry.write_text("enabled\ninterpreter /nonexistent/qemu-aarch64\nflags: OCF\noffset 0\n")
    assert "names an interpreter that is not there" in emulation.why_not("aarch64")
    entry.write_text(f"enabled\ninterpreter {sys.executable}\nflags: OCF\noffset 0\n")
    assert emulation.why_not("aarch64") is None
    assert "natively" in emulation.why_not(platform.machine())


@pytest.fixture(scope="module")
def emulating_farm(tmp_path_factory, upstream):
    if CAN_EMULATE:
        pytest.fail(f"make test sets up aarch64 emulation, yet: {CAN_EMULATE}")
    with running_farm(
        tmp_path_factory, upstream, "--emulation", "--root-cache", str(made_roots_cache("arm64"))
    ) as farm:
        yield build_backends(farm, upstream)


def in_root(farm, script: str) -> str:
    """script run by sh in the farm's arm64 root (its own /tmp), as its workers run."""
    root = Farm.load(farm.state).roots_dir / "debian-bookworm-arm64"
    return subprocess.run(
        [
            "bwrap",
            "--bind",
            str(root),
            "/",
            "--dev-bind",
            "/dev",
            "/dev",
            "--proc",
            "/proc",
            "--tmpfs",
            "/tmp",
            "--clearenv",
            "--setenv",
            "PATH",
            emulation.PATH,
            "--",
            "sh",
            "-ec",
            script,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


@pytest.mark.farm
def test_workers_run_in_the_arm64_root(emulating_farm):
    workers = {w["name"]: w for w in emulating_farm.api("workers")["workers"]}
    for name in ("aarch64-emulated-1", "aarch64-emulated-2"):
        assert workers[name]["connected_to"], f"{name} is not connected"
    builders = {b["name"]: b for b in emulating_farm.api("builders")["builders"]}
    assert {"aarch64", "aarch64-emulated"} <= set(builders[EMULATED]["tags"])
    # Debian's arm64 root has Python 3.11 alone: the other aarch64 builders wait for real machines.
    assert "aarch64-cp312" in builders
    assert (
        in_root(emulating_farm, "python3 -c 'import platform; print(platform.machine())'").strip()
        == "aarch64"
    )


@pytest.mark.farm
def test_one_c_extension_for_both_architectures(emulating_farm, upstream, tmp_path):
    upstream.add(c_extension_sdist(tmp_path, "twoarch", "1.0"))
    rc, result = emulating_farm.build("twoarch==1.0", NATIVE, EMULATED)
    assert rc == 0, json.dumps(result, indent=2)
    wheels = {b["builder"]: b["wheels"] for b in result["builds"]}
    # each repaired by auditwheel on its own architecture: manylinux tags of that architecture
    for builder, arch in ((NATIVE, platform.machine()), (EMULATED, "aarch64")):
        (wheel,) = wheels[builder]
        assert re.fullmatch(rf"twoarch-1\.0-cp311-cp311-manylinux\S*_{arch}\.whl", wheel), wheels

    index = emulating_farm.status["index"]
    native = install_and_run(
        emulating_farm,
        tmp_path,
        "twoarch==1.0",
        "import platform, twoarch; print(platform.machine(), twoarch.answer(), twoarch.__file__)",
        base_python=find_python("3.11"),
    )
    assert native.split()[:2] == [platform.machine(), "42"]
    assert native.split()[2].endswith(f".cpython-311-{platform.machine()}-linux-gnu.so")
    # pip in the arm64 root, with no configuration but our index, picks the aarch64 wheel.
    emulated = in_root(
        emulating_farm,
        f"""
        python3 -m venv --without-pip /tmp/venv
        /opt/wheelwright/bin/python -m pip --python /tmp/venv/bin/python install --quiet --disable-pip-version-check \\
            --no-cache-dir --index-url {index} twoarch==1.0
        /tmp/venv/bin/python -c \\
            'import platform, twoarch; print(platform.machine(), twoarch.answer(), twoarch.__file__)'
    """,
    )
    assert emulated.split()[:2] == ["aarch64", "42"]
    assert emulated.split()[2].endswith(".cpython-311-aarch64-linux-gnu.so")


@pytest.mark.farm
def test_a_pure_wheel_is_built_once_for_both(emulating_farm, upstream, tmp_path):
    upstream.add(flit_sdist(tmp_path, "pureboth", "1.0"))
    rc, first = emulating_farm.build("pureboth==1.0", NATIVE)
    assert rc == 0 and first["wheels"] == ["pureboth-1.0-py2.py3-none-any.whl"], json.dumps(
        first, indent=2
    )
    rc, second = emulating_farm.build("pureboth==1.0", EMULATED)
    assert rc == 0, json.dumps(second, indent=2)
    assert second["pure_wheel_published_by"] and not second["wheels"]


@pytest.mark.farm
def test_the_sandbox_holds_under_emulation(emulating_farm, upstream, tmp_path):
    """A build on the emulated worker reaches no socket of the host and reads neither the
    worker's own password (in its buildbot.tac, also through the worker's /proc) nor the farm's
    secrets."""
    listener = Listener()
    tac = emulating_farm.state / "workers" / "aarch64-emulated-1" / "buildbot.tac"
    secret = emulating_farm.state / "secrets" / "worker-aarch64-emulated-1"
    upstream.add(
        setuptools_sdist(
            tmp_path,
            "probes",
            "1.0",
            setup_py=f"""\
        import platform, socket
        from setuptools import setup
        from setuptools.command.build_py import build_py

        class Probe(build_py):
            def run(self):
                assert platform.machine() == "aarch64", platform.machine()
                leaks = []
                try:
                    socket.create_connection(("127.0.0.1", {listener.port}), timeout=5)
                    leaks.append("network")
                except OSError:
                    pass
                # also through the worker's own processes: /proc/PID/cwd and /proc/PID/root
                import glob
                for path in ("{tac}", "{secret}", *glob.glob("/proc/*/cwd/buildbot.tac"),
                             *glob.glob("/proc/*/root{tac}")):
                    try:
                        leaks.append(path + ": " + open(path).read()[:20])
                    except OSError:
                        pass
                if leaks:
                    raise SystemExit("LEAKED " + " ".join(leaks))
                super().run()

        setup(cmdclass={{"build_py": Probe}})
        """,
        )
    )
    rc, result = emulating_farm.build("probes==1.0", EMULATED)
    listener.close()
    assert rc == 0, json.dumps(result, indent=2)
    assert listener.accepted == []


@pytest.mark.farm
def test_a_real_c_extension_builds_for_aarch64(emulating_farm, upstream, tmp_path):
    """MarkupSafe from the corpus (setuptools, its optional C speedups) on the emulated builder."""
    upstream.add(CACHE / "markupsafe-3.0.2.tar.gz")
    rc, result = emulating_farm.build("MarkupSafe==3.0.2", EMULATED)
    assert rc == 0, json.dumps(result, indent=2)
    assert result["wheels"] == [
        "markupsafe-3.0.2-cp311-cp311-manylinux2014_aarch64.manylinux_2_17_aarch64.whl"
    ]
    out = in_root(
        emulating_farm,
        f"""
        python3 -m venv --without-pip /tmp/venv
        /opt/wheelwright/bin/python -m pip --python /tmp/venv/bin/python install --quiet --disable-pip-version-check \\
            --no-cache-dir --index-url {emulating_farm.status["index"]} MarkupSafe==3.0.2
        /tmp/venv/bin/python -c 'import markupsafe._speedups as s; print(s.__file__)'
    """,
    )
    assert out.strip().endswith("_speedups.cpython-311-aarch64-linux-gnu.so")
