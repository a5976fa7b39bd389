"""A stranger's first minutes: a machine where bubblewrap cannot make a sandbox. `doctor` says so
with the fix, and `up` starts the rest of the farm but no local worker that would fail every build."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.farm import WHEELWRIGHT, http_get
from tests.sdists import free_port

pytestmark = pytest.mark.farm

# bubblewrap replaced by /bin/false in a mount namespace of the command's own: installed, but it
# makes no sandbox, as on a kernel that refuses user namespaces.
MASKED = [
    "unshare",
    "--mount",
    "--propagation",
    "private",
    "sh",
    "-c",
    'mount --bind /bin/false "$(command -v bwrap)" && exec "$@"',
    "masked",
]


def test_doctor_names_what_is_missing_with_its_fix(tmp_path):
    state = tmp_path / "farm"
    proc = subprocess.run(
        [*MASKED, WHEELWRIGHT, "--state", str(state), "doctor"], capture_output=True, text=True
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "local: cannot make the build's sandbox: bubblewrap refuses" in proc.stdout
    assert "(fix: sysctl -w kernel.unprivileged_userns_clone=1" in proc.stdout
    assert "Traceback" not in proc.stderr
    found = json.loads(
        subprocess.run(
            [*MASKED, WHEELWRIGHT, "--state", str(state), "doctor", "--json"],
            capture_output=True,
            text=True,
        ).stdout
    )
    assert [p["where"] for p in found] == ["local"]
    healthy = subprocess.run([WHEELWRIGHT, "--state", str(state), "doctor"], capture_output=True)
    assert healthy.returncode == 0 and healthy.stdout.startswith(b"ok:")


def test_up_where_bubblewrap_does_not_work_starts_the_farm_but_not_the_local_pool(
    tmp_path, upstream
):
    state = tmp_path / "farm"
    ports = [str(free_port()) for _ in range(3)]
    try:
        proc = subprocess.run(
            [*MASKED, WHEELWRIGHT, "--state", str(state), "up", "--upstream", upstream.url,
             "--pools", "local", "--ui-port", ports[0], "--worker-port", ports[1],
             "--index-port", ports[2], "--no-emulation"],
            capture_output=True,
            text=True,
            timeout=300,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "local: not started: cannot make the build's sandbox" in proc.stderr
        assert "(fix: sysctl" in proc.stderr
        # the rest of the farm is up: its UI and its index answer
        assert http_get(f"http://127.0.0.1:{ports[0]}/api/v2/builders")[0] == 200
        assert http_get(f"http://127.0.0.1:{ports[2]}/simple/")[0] == 200
        workers = sorted((state / "workers").glob("local-*/twistd.pid"))
        assert not [p for p in workers if os.path.exists(f"/proc/{p.read_text().strip()}")]
    finally:
        subprocess.run([WHEELWRIGHT, "--state", str(state), "down"], capture_output=True)


def test_a_name_nobody_knows_is_refused_with_what_is_close_and_a_bare_name_builds_the_newest(
    backends, upstream, tmp_path
):
    from tests.farm import DEFAULT_BUILDER
    from tests.sdists import setuptools_sdist

    for version in ("1.0", "1.1"):
        upstream.add(setuptools_sdist(tmp_path, "fr-newest", version))
    farm = [WHEELWRIGHT, "--state", str(backends.state)]
    built = subprocess.run(
        [*farm, "build", "fr-newest", "--builder", DEFAULT_BUILDER, "--wait", "--new-project"],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    # for a reader by default; the same answer as JSON with --json, for scripts
    assert "\nwheels:\n- fr_newest-1.1-py3-none-any.whl\n" in built.stdout
    assert not built.stdout.lstrip().startswith("{")
    which = [*farm, "which", "fr-newest==1.1"]
    traced = json.loads(subprocess.run([*which, "--json"], capture_output=True, text=True).stdout)
    said = subprocess.run(which, capture_output=True, text=True).stdout
    assert f"build_url: {traced['build_url']}\n" in said
    # not on a terminal: plain progress lines on stderr, a CI log sees the build go on
    assert f"wheelwright: fr-newest (newest) on {DEFAULT_BUILDER}: " in built.stderr
    # now in our index: a typo of it is refused, naming it, and nothing is queued
    before = len(backends.api("buildrequests")["buildrequests"])
    for command in (["bootstrap", "fr-newset"], ["build", "fr-newset==1.1"]):
        proc = subprocess.run([*farm, *command], capture_output=True, text=True)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr == (
            "wheelwright: fr-newset is neither in our index nor on the allow-list; did you mean "
            "fr-newest? To build it all the same: --new-project\n"
        )
    assert len(backends.api("buildrequests")["buildrequests"]) == before
