"""The whole farm: a real master, a real worker process, the index host, real pip builds of
sdists served by a hermetic upstream on 127.0.0.1."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import pty
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import uuid
import zipfile
from pathlib import Path

import pytest
import requests
from buildbot.process.results import SUCCESS

from tests.conftest import install_and_run, wheel_index_has
from tests.farm import DEFAULT_BUILDER, WHEELWRIGHT, http_get
from tests.sdists import (
    Listener,
    c_extension_sdist,
    calling_out_sdist,
    flit_sdist,
    hiding_libyaml,
    libyaml_sdist,
    pkg_info,
    setuptools_sdist,
    write_sdist,
)
from tests.wheels import make_wheel
from wheelwright.cli.restclient import Api
from wheelwright.common.runtime import clean_pip_env
from wheelwright.farm.control import MASTER_CFG
from wheelwright.farm.pools import POOLS, builder_name
from wheelwright.farm.settings import Farm

pytestmark = pytest.mark.farm


# Built once, by whichever of the tests that read them runs first: each test runs alone too.
@pytest.fixture(scope="module")
def purepkg(backends, upstream, tmp_path_factory):
    sdist = flit_sdist(
        tmp_path_factory.mktemp("purepkg"), "purepkg", "1.0", code="VALUE = 'pure'\n"
    )
    upstream.add(sdist)
    return backends.build("purepkg==1.0")


@pytest.fixture(scope="module")
def cext(backends, upstream, tmp_path_factory):
    upstream.add(c_extension_sdist(tmp_path_factory.mktemp("cext"), "cext", "1.0"))
    return backends.build("cext==1.0")


def test_build_backends_build_themselves_into_the_empty_index(backends):
    status, body, ctype = http_get(
        backends.status["index"] + "setuptools/", accept="application/vnd.pypi.simple.v1+json"
    )
    assert status == 200 and ctype == "application/vnd.pypi.simple.v1+json"
    files = json.loads(body)["files"]
    assert [f["filename"] for f in files] == ["setuptools-80.9.0-py3-none-any.whl"]
    provenance = json.loads(
        http_get(
            backends.status["index"]
            + "setuptools/setuptools-80.9.0-py3-none-any.whl.provenance.json"
        )[1]
    )
    assert (
        provenance["builder"]
        and provenance["build_number"] >= 1
        and "/builds/" in provenance["build_url"]
    )
    assert http_get(backends.status["sources"] + "setuptools/setuptools-80.9.0.tar.gz")[0] == 200


def test_pure_python_package_installs_from_our_index(backends, purepkg, tmp_path):
    rc, result = purepkg
    assert rc == 0, result
    (wheel,) = result["wheels"]
    assert wheel.startswith("purepkg-1.0-") and wheel.endswith("-none-any.whl")
    assert result["build_url"].startswith(backends.status["ui"])
    assert (
        install_and_run(backends, tmp_path, "purepkg==1.0", "import purepkg; print(purepkg.VALUE)")
        == "pure\n"
    )
    assert (
        install_and_run(
            backends, tmp_path, "purepkg==1.0", "import purepkg; print(purepkg.VALUE)", "uv"
        )
        == "pure\n"
    )


def test_index_speaks_pep691_and_serves_core_metadata(backends, purepkg):
    index = backends.status["index"]
    status, body, ctype = http_get(index + "purepkg/", accept="application/vnd.pypi.simple.v1+json")
    (entry,) = json.loads(body)["files"]
    assert ctype == "application/vnd.pypi.simple.v1+json"
    metadata = http_get(index + "purepkg/" + entry["filename"] + ".metadata")[1]
    assert hashlib.sha256(metadata).hexdigest() == entry["core-metadata"]["sha256"]
    assert b"Name: purepkg" in metadata
    html = http_get(index + "purepkg/", accept="text/html")[1].decode()
    assert f'data-core-metadata="sha256={entry["core-metadata"]["sha256"]}"' in html
    assert f"#sha256={entry['hashes']['sha256']}" in html
    freeze = http_get(index + "purepkg/" + entry["filename"] + ".freeze.txt")[1].decode()
    assert "flit-core==3.12.0" in freeze


def test_c_extension_package(backends, cext, tmp_path):
    rc, result = cext
    assert rc == 0, result
    (wheel,) = result["wheels"]
    cp = f"cp{sys.version_info.major}{sys.version_info.minor}"  # the default builder's Python
    # repaired (auditwheel): the most portable manylinux policy its symbols allow
    assert wheel.startswith(f"cext-1.0-{cp}-{cp}-manylinux") and wheel.endswith(
        f"_{platform.machine()}.whl"
    )
    traced = json.loads(backends.cli("which", "cext==1.0").stdout)
    assert traced["repair"][wheel]["verdict"].startswith("manylinux_")
    assert traced["repair"][wheel]["bundled"] == []  # it needs nothing beyond libc
    assert (
        install_and_run(backends, tmp_path, "cext==1.0", "import cext; print(cext.answer())")
        == "42\n"
    )


def test_patches_are_applied(backends, upstream, tmp_path):
    upstream.add(setuptools_sdist(tmp_path, "patched", "1.0", code="VALUE = 'upstream'\n"))
    patch_dir = backends.state / "overrides" / "patches" / "patched-1.0"
    patch_dir.mkdir(parents=True)
    (patch_dir / "0001-ours.patch").write_text(
        "--- a/patched.py\n+++ b/patched.py\n@@ -1 +1 @@\n-VALUE = 'upstream'\n+VALUE = 'patched'\n"
    )
    rc, result = backends.build("patched==1.0")
    assert rc == 0, result
    assert (
        install_and_run(backends, tmp_path, "patched==1.0", "import patched; print(patched.VALUE)")
        == "patched\n"
    )


def test_a_settings_file_broken_while_the_farm_runs_gives_way_to_its_last_good_version(
    backends, upstream, tmp_path
):
    for version in ("1.0", "2.0"):
        upstream.add(setuptools_sdist(tmp_path, "edited", version, module="edited_mod"))
    settings = backends.state / "overrides" / "settings" / "edited.yaml"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text("build_frontend: pip\nimports: [edited_mod]\n")
    rc, result = backends.build("edited==1.0")
    assert rc == 0 and result["result"] == "success", result
    settings.write_text("build_frontend: pip\nimports: [edited_mod\n")
    rc, result = backends.build("edited==2.0")
    assert rc == 0 and result["result"] == "warnings", result
    (warning,) = result["warnings"]["build-wheel"]
    assert warning.startswith(f"{settings}:3: not valid YAML") and "last good version" in warning
    assert "--frontend pip" in backends.logs(result["builder"], result["number"])
    assert result["wheels"] == ["edited-2.0-py3-none-any.whl"]
    assert (
        install_and_run(
            backends, tmp_path, "edited==2.0", "import edited_mod; print(edited_mod.VALUE)"
        )
        == "1\n"
    )


def test_patch_that_does_not_apply_fails_naming_it(backends, upstream, tmp_path):
    upstream.add(setuptools_sdist(tmp_path, "badpatch", "1.0"))
    patch_dir = backends.state / "overrides" / "patches" / "badpatch"
    patch_dir.mkdir(parents=True)
    (patch_dir / "0001-stale.patch").write_text(
        "--- a/badpatch.py\n+++ b/badpatch.py\n@@ -1 +1 @@\n-NOT THERE\n+X\n"
    )
    rc, result = backends.build("badpatch==1.0")
    assert rc == 1
    assert "patch 0001-stale.patch does not apply" in result["failed_steps"]["prepare-source"]
    assert not wheel_index_has(backends, "badpatch")


def test_unknown_install_dependency_goes_to_review_and_nothing_is_published(
    backends, upstream, tmp_path
):
    upstream.add(setuptools_sdist(tmp_path, "needsnew", "1.0", requires=["brand-new-dep>=1"]))
    rc, result = backends.build("needsnew==1.0")
    assert rc == 1
    assert "brand-new-dep" in result["failed_steps"]["validate-install-deps"]
    queue = json.loads((backends.state / "review-queue.json").read_text())
    assert "brand-new-dep" in queue
    assert queue["brand-new-dep"]["requests"][0]["requested_by"] == result["build_url"]
    assert not wheel_index_has(backends, "needsnew")


def test_missing_build_requirement_goes_to_review(backends, upstream, tmp_path):
    upstream.add(
        write_sdist(
            tmp_path,
            "needshatch",
            "1.0",
            {
                "PKG-INFO": pkg_info("needshatch", "1.0"),
                "pyproject.toml": '[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n',
            },
        )
    )
    rc, result = backends.build("needshatch==1.0")
    assert rc == 1
    assert result["failed_steps"]["prepare-build-env"].startswith(
        "build requirement hatchling is not in the index"
    )
    assert "hatchling" in json.loads((backends.state / "review-queue.json").read_text())
    assert not wheel_index_has(backends, "needshatch")


def test_checksum_mismatch_fails_and_archives_nothing(backends, upstream, tmp_path):
    served = upstream.add(setuptools_sdist(tmp_path, "tampered", "1.0"))
    served.write_bytes(served.read_bytes() + b"\0")
    rc, result = backends.build("tampered==1.0")
    assert rc == 1
    assert "sha256 mismatch" in result["failed_steps"]["download-source"]
    assert not wheel_index_has(backends, "tampered")
    assert http_get(backends.status["sources"] + "tampered/")[0] == 404


def test_build_has_no_network(backends, upstream, tmp_path):
    listener = Listener()
    upstream.add(calling_out_sdist(tmp_path, "phonehome", "1.0", "127.0.0.1", listener.port))
    rc, result = backends.build("phonehome==1.0")
    listener.close()
    assert rc == 1
    assert "build-wheel" in result["failed_steps"]
    assert listener.accepted == []
    assert not wheel_index_has(backends, "phonehome")


def test_a_local_build_cannot_read_the_farms_secrets(backends, upstream, tmp_path):
    secret = backends.state / "secrets" / "index-upload-password"
    tac = backends.state / "workers" / "local-1" / "buildbot.tac"
    upstream.add(
        setuptools_sdist(
            tmp_path,
            "snoops",
            "1.0",
            setup_py=f"""\
        from setuptools import setup
        from setuptools.command.build_py import build_py

        class Snoop(build_py):
            def run(self):
                for path in ("{secret}", "{tac}"):
                    try:
                        text = open(path).read()
                    except OSError:
                        continue
                    if text:
                        raise SystemExit("read " + path + ": " + text)
                super().run()

        setup(cmdclass={{"build_py": Snoop}})
        """,
        )
    )
    rc, result = backends.build("snoops==1.0")
    assert rc == 0, result
    assert secret.read_text() not in backends.logs(result["builder"], result["number"])


def test_a_local_build_writes_nothing_outside_its_build_directory_and_leaves_no_process(
    backends, upstream, tmp_path
):
    token = uuid.uuid4().hex
    targets = [
        tmp_path / "escaped",
        backends.state / "workers" / "local-1" / "escaped",
        Path.home() / f"escaped-{token}",
    ]
    upstream.add(
        setuptools_sdist(
            tmp_path,
            "escapes",
            "1.0",
            setup_py=f"""\
        import subprocess, sys
        from setuptools import setup
        from setuptools.command.build_py import build_py

        class Escape(build_py):
            def run(self):
                for path in {[str(t) for t in targets]!r}:
                    try:
                        open(path, "w").write("escaped")
                    except OSError:
                        pass
                subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", "{token}"],
                                 start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
                super().run()

        setup(cmdclass={{"build_py": Escape}})
        """,
        )
    )
    rc, result = backends.build("escapes==1.0")
    assert rc == 0, result
    assert [t for t in targets if t.exists()] == []
    assert subprocess.run(["pgrep", "-f", token]).returncode == 1, (
        "a process the build started is still running"
    )


def test_rebuild_reuses_the_archive_and_never_overwrites(backends, upstream, cext):
    index = backends.status["index"]
    before = json.loads(http_get(index + "cext/", accept="application/vnd.pypi.simple.v1+json")[1])[
        "files"
    ]
    (upstream.store.project_dir("cext") / "cext-1.0.tar.gz").unlink()  # upstream lost it
    rc, result = backends.build("cext==1.0")
    assert "download-source" not in result["failed_steps"]
    # The wheel carries this build's provenance, so its bytes differ: refused, the published file stays.
    assert rc == 1 and "already in the index" in result["failed_steps"]["update-index"]
    after = json.loads(http_get(index + "cext/", accept="application/vnd.pypi.simple.v1+json")[1])[
        "files"
    ]
    assert after == before


def test_rebuilding_a_published_pure_wheel_says_who_built_it(backends, purepkg):
    rc, result = backends.build("purepkg==1.0")
    assert rc == 0, result
    assert result["wheels"] == [] and "/builds/" in result["pure_wheel_published_by"]


def test_shipped_master_config_passes_checkconfig(farm):
    buildbot = str(Path(sys.executable).with_name("buildbot"))
    proc = subprocess.run(
        [buildbot, "checkconfig", str(farm.state / "master")], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Config file is good!" in proc.stdout


def test_seeded_wheels_are_marked_and_logged_and_serve_as_dependencies(
    backends, upstream, tmp_path
):
    wheel = make_wheel(tmp_path, "seedpkg", "1.0")
    proc = backends.cli("seed", str(wheel), "--reason", "no sdist upstream", human=True)
    assert "seeded seedpkg-1.0-py3-none-any.whl" in proc.stdout
    assert "no sdist upstream" in (backends.state / "logs" / "seed.log").read_text()
    provenance = json.loads(
        http_get(backends.status["index"] + f"seedpkg/{wheel.name}.provenance.json")[1]
    )
    assert provenance["seeded"] is True and "build_url" not in provenance
    upstream.add(setuptools_sdist(tmp_path, "usesseed", "1.0", requires=["seedpkg"]))
    rc, result = backends.build("usesseed==1.0")
    assert rc == 0, result
    assert (
        install_and_run(
            backends, tmp_path, "usesseed==1.0", "import seedpkg, usesseed; print(seedpkg.VALUE)"
        )
        == "1\n"
    )


def test_force_form_asks_for_package_and_version(farm):
    with urllib.request.urlopen(farm.status["ui"] + "api/v2/forceschedulers/build") as response:
        (scheduler,) = json.load(response)["forceschedulers"]

    def names(fields):
        for f in fields:
            yield f["name"]
            yield from names(f.get("fields", []))

    fields = set(names(scheduler["all_fields"]))
    assert {"package", "version"} <= fields
    # the tests' farms add the remote aarch64 pool, as an operator would
    local, remote = POOLS["local"], POOLS["aarch64"]
    assert set(scheduler["builder_names"]) == {
        *(builder_name(local.arch, v) for v in local.interpreters()),
        *(builder_name(remote.arch, v) for v in remote.pythons),
    }
    assert Farm(root=farm.state).pools == ["local"]  # the embedded default: what runs here


def test_the_force_form_refuses_a_bad_version_clearly(farm):
    body = {
        "jsonrpc": "2.0",
        "method": "force",
        "id": 1,
        "params": {
            "builderNames": [DEFAULT_BUILDER],
            "package": "purepkg",
            "version": "one point oh",
        },
    }
    answer = (
        farm.session()
        .post(farm.status["ui"] + "api/v2/forceschedulers/build", json=body, timeout=30)
        .json()
    )
    assert "'one point oh' is not a valid version" in json.dumps(answer)


def test_up_again_and_down_then_up_keep_the_farm_working(farm):
    farm.cli("up")
    assert http_get(farm.status["ui"])[0] == 200
    farm.cli("down")
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(farm.status["ui"], timeout=5)
    # A master made by an earlier install names that install's master.cfg: up points it at ours.
    tac = farm.state / "master" / "buildbot.tac"
    ours = tac.read_text()
    tac.write_text(ours.replace(str(MASTER_CFG), "/gone/wheelwright/master/master.cfg"))
    farm.cli("up")
    assert tac.read_text() == ours
    rc, result = farm.build("no-such-project==1.0")
    assert rc == 1
    assert "no-such-project is not on" in result["failed_steps"]["download-source"]


def test_the_command_resumes_its_login_session_and_logs_in_anew_when_it_is_refused(
    backends, upstream, tmp_path
):
    # A login costs the master a PBKDF2 check: `up` logs in once, and the commands after it
    # resume that session (kept beside the password, for the farm's user alone).
    http_log = backends.state / "master" / "http.log"
    kept = backends.state / "secrets" / "www-session.json"
    assert kept.stat().st_mode & 0o777 == 0o600
    logins = http_log.read_text().count("/auth/login")
    upstream.add(flit_sdist(tmp_path, "kept-session", "1.0"))
    assert backends.build("kept-session==1.0")[0] == 0
    assert http_log.read_text().count("/auth/login") == logins
    # a session the master no longer knows (a master started anew may not): logged in anew
    session = json.loads(kept.read_text())
    session["cookies"] = {name: "forgotten" for name in session["cookies"]}
    kept.write_text(json.dumps(session))
    upstream.add(flit_sdist(tmp_path, "kept-session", "1.1"))
    rc, result = backends.build("kept-session==1.1")
    assert rc == 0, result
    assert http_log.read_text().count("/auth/login") == logins + 1
    assert json.loads(kept.read_text())["cookies"] != session["cookies"]


def test_a_release_engineer_yanks_and_unyanks_a_version(backends, upstream, tmp_path):
    for version in ("1.0", "2.0"):
        upstream.add(flit_sdist(tmp_path, "yankable", version))
        assert backends.build(f"yankable=={version}")[0] == 0
    out = json.loads(
        backends.cli("yank", "yankable==2.0", "--reason", "leaks memory", "--by", "alice").stdout
    )
    assert out == {
        "files": ["yankable-2.0-py2.py3-none-any.whl"],
        "yanked": "leaks memory",
        "by": "alice",
    }
    code = "import importlib.metadata as m; print(m.version('yankable'))"
    assert install_and_run(backends, tmp_path / "latest", "yankable", code) == "1.0\n"
    assert install_and_run(backends, tmp_path / "pinned", "yankable==2.0", code) == "2.0\n"
    assert (
        "yank yankable-2.0-py2.py3-none-any.whl by alice: leaks memory"
        in (backends.state / "logs" / "yank.log").read_text()
    )
    backends.cli("unyank", "yankable==2.0", "--note", "fixed upstream")
    assert install_and_run(backends, tmp_path / "again", "yankable", code) == "2.0\n"


def test_a_release_engineer_yanks_from_the_web_ui_and_nobody_anonymous_can(
    backends, upstream, tmp_path
):
    upstream.add(flit_sdist(tmp_path, "uiyank", "1.0"))
    assert backends.build("uiyank==1.0")[0] == 0
    body = {
        "jsonrpc": "2.0",
        "method": "force",
        "id": 1,
        "params": {
            "builderNames": ["yank"],
            "package": "uiyank",
            "version": "1.0",
            "yank_reason": "broken on musl",
        },
    }
    url = backends.status["ui"] + "api/v2/forceschedulers/yank"
    assert requests.post(url, json=body, timeout=30).status_code == 403
    answer = backends.session().post(url, json=body, timeout=30).json()
    (brid,) = answer["result"][1].values()
    backends.wait_until_idle()
    assert yank_step(backends, brid) == "yanked uiyank-1.0-py2.py3-none-any.whl"
    listing = json.loads(
        http_get(backends.status["index"] + "uiyank/", "application/vnd.pypi.simple.v1+json")[1]
    )
    assert [f["yanked"] for f in listing["files"]] == ["broken on musl"]
    assert (
        "yank uiyank-1.0-py2.py3-none-any.whl by wheelwright: broken on musl"
        in (backends.state / "logs" / "yank.log").read_text()
    )
    unreasoned = {**body, "params": {**body["params"], "yank_reason": ""}}
    (brid,) = backends.session().post(url, json=unreasoned, timeout=30).json()["result"][1].values()
    backends.wait_until_idle()
    assert "a yank needs its reason" in yank_step(backends, brid)


def yank_step(farm, brid: int) -> str:
    (build,) = farm.api(f"buildrequests/{brid}/builds")["builds"]
    steps = farm.api(f"builds/{build['buildid']}/steps")["steps"]
    return {step["name"]: step["state_string"] for step in steps}["yank"]


def test_on_a_terminal_build_wait_shows_which_step_the_build_is_in(backends, upstream, tmp_path):
    # Its setup.py takes seconds, in prepare-build-env and in build-wheel: the progress, asked
    # for once a second, meets one of them whatever the machine's speed.
    slow = "import time\nfrom setuptools import setup\ntime.sleep(1.5)\nsetup()\n"
    upstream.add(setuptools_sdist(tmp_path, "shown-progress", "1.0", setup_py=slow))
    primary, secondary = pty.openpty()  # stderr is a terminal; stdout, for scripts, is not
    proc = subprocess.Popen(
        [
            WHEELWRIGHT,
            "--state",
            str(backends.state),
            "build",
            "shown-progress==1.0",
            "--builder",
            DEFAULT_BUILDER,
            "--wait",
            "--new-project",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=secondary,
    )
    os.close(secondary)
    seen = b""
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # the terminal closed: the command is done
            break
        if not chunk:
            break
        seen += chunk
    result = json.loads(proc.stdout.read())
    assert proc.wait() == 0 and result["result"] == "success"
    assert b"shown-progress 1.0 on " + DEFAULT_BUILDER.encode() in seen
    assert any(
        step in seen for step in (b"build-wheel", b"prepare-build-env", b"validate-install-deps")
    ), seen[-500:]


def test_wait_hears_that_a_build_is_done_from_the_master_without_asking_again(
    backends, upstream, tmp_path
):
    # Asked only once in ten minutes, the wait returns when the build ends because the master's
    # websocket tells it so: the build request is asked for before and after, and nothing else.
    slow = "import time\nfrom setuptools import setup\ntime.sleep(1)\nsetup()\n"
    upstream.add(setuptools_sdist(tmp_path, "told-done", "1.0", setup_py=slow))
    api = Api(Farm.load(backends.state))
    ((_, brid),) = api.force("told-done", "1.0", [DEFAULT_BUILDER]).items()
    asked, get = [], api.get
    api.get = lambda path, **params: asked.append(path) or get(path, **params)
    done: list[dict] = []
    waiting = threading.Thread(target=lambda: done.append(api.wait(brid, every=600)), daemon=True)
    waiting.start()
    waiting.join(timeout=180)
    assert done and done[0]["results"] == SUCCESS, "the wait was not told the build is done"
    assert asked.count(f"buildrequests/{brid}") == 2, asked


def test_worker_create_installs_the_worker_tools_from_the_farms_own_index(backends, tmp_path):
    """The script `worker create` prints installs our worker-side tools from the farm's own index
    (published there the first time, built from this checkout), not from a checkout."""
    script = backends.cli("worker", "create", "local-1", "--pool", "local").stdout
    (line,) = [x for x in script.splitlines() if "wheelwright-farm==" in x]
    command = line.split("  #")[0].split()
    assert command[1:6] == ["install", "--no-deps", "--index-url", backends.status["index"],
                            f"wheelwright-farm=={importlib.metadata.version('wheelwright-farm')}"]  # fmt: skip
    venv = tmp_path / "tools"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin" / "pip"), *command[1:]],
        check=True,
        capture_output=True,
        env=clean_pip_env(),
    )
    probe = "import wheelwright.worker.call, wheelwright.common.unpack; print('ok')"
    assert (
        subprocess.run(
            [str(venv / "bin" / "python"), "-I", "-c", probe], capture_output=True, text=True
        ).stdout
        == "ok\n"
    )
    # Asked again, the index has that version: nothing is built or published anew.
    listing = json.loads(
        http_get(
            backends.status["index"] + "wheelwright-farm/", "application/vnd.pypi.simple.v1+json"
        )[1]
    )
    assert backends.cli("worker", "create", "local-1", "--pool", "local").stdout == script
    again = json.loads(
        http_get(
            backends.status["index"] + "wheelwright-farm/", "application/vnd.pypi.simple.v1+json"
        )[1]
    )
    assert again["files"] == listing["files"] and len(listing["files"]) == 1


def test_a_wheel_linking_a_system_library_is_published_manylinux_with_it_inside(
    backends, upstream, tmp_path
):
    """libyaml, a system library the build links: repair bundles it, the provenance traces it to
    Debian's package, and the wheel from our index imports where the system has no libyaml."""
    upstream.add(libyaml_sdist(tmp_path, "withyaml", "1.0"))
    settings = backends.state / "overrides" / "settings" / "withyaml.yaml"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text("system_requirements: [libyaml-dev]\n")
    rc, result = backends.build("withyaml==1.0")
    assert rc == 0, json.dumps(result, indent=2)
    (wheel,) = result["wheels"]
    assert ".manylinux_2_" in wheel and wheel.endswith(f"_{platform.machine()}.whl")
    traced = json.loads(backends.cli("which", "withyaml==1.0").stdout)
    (library,) = traced["repair"][wheel]["bundled"]
    assert library["soname"] == "libyaml-0.so.2" and library["package"] == "libyaml-0-2"
    assert library["bundled_as"].startswith("withyaml.libs/libyaml-0-")
    # the system package the settings asked for, with its version, in provenance and SBOM
    version = traced["system_packages"]["libyaml-dev"]
    assert version == library["package_version"]  # libyaml-dev and libyaml-0-2: one source
    wheels = tmp_path / "downloaded"
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "-d", wheels,
         "--index-url", backends.status["index"], "withyaml==1.0"],
        check=True, capture_output=True, env=clean_pip_env(),
    )  # fmt: skip
    with zipfile.ZipFile(next(wheels.glob("*.whl"))) as zf:
        sbom = json.loads(zf.read("withyaml-1.0.dist-info/sboms/build-environment.cdx.json"))
    assert f"pkg:deb/debian/libyaml-dev@{version}" in {c.get("purl") for c in sbom["components"]}
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install",
         "--index-url", backends.status["index"], "withyaml==1.0"],
        check=True, capture_output=True, env=clean_pip_env(),
    )  # fmt: skip
    said = hiding_libyaml(
        str(venv / "bin" / "python"), "import withyaml; print(withyaml.version())"
    )
    assert said.returncode == 0 and said.stdout.startswith("0."), said.stderr


def test_status_checks_each_process_and_fails_when_a_worker_is_down(backends):
    said = json.loads(backends.cli("status").stdout)["processes"]
    assert said["master"] == "up" and said["index host"] == "up"
    assert said["worker local-1"] == said["worker local-2"] == "up"
    buildbot_worker = str(Path(WHEELWRIGHT).with_name("buildbot-worker"))
    subprocess.run(
        [buildbot_worker, "stop", str(backends.state / "workers" / "local-2")],
        check=True,
        capture_output=True,
    )
    try:
        proc = backends.cli("status", check=False)
        assert proc.returncode == 3, proc.stdout + proc.stderr
        assert json.loads(proc.stdout)["processes"]["worker local-2"].startswith("down: ")
        assert proc.stderr == "wheelwright: down: worker local-2 (hint: wheelwright up)\n"
    finally:
        backends.cli("up")  # the farm's own workers again, for the tests after this one
    assert backends.cli("status").returncode == 0
