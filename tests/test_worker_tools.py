"""The worker-side tools as plain Python: unpacking hostile sdists, patches, results."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.tags import sys_tags

from tests.farm import farm_on
from tests.sdists import setuptools_sdist
from tests.test_hostile import HOSTILE_SDISTS
from tests.wheels import make_wheel, record_line, wheel_files, write_wheel
from wheelwright.common import sandbox
from wheelwright.common.files import ZIP_EPOCH
from wheelwright.common.lookup import published_pure_wheel
from wheelwright.common.results import Failure, Installed, from_json
from wheelwright.common.runtime import RESULT_PREFIX, WORKER_CACHE, ToolError, clean_pip_env
from wheelwright.common.sandbox import LimitExceeded
from wheelwright.common.wheelcheck import check_wheel
from wheelwright.indexhost.upload import upload
from wheelwright.policy.bumps import BumpError, plan_rebuild
from wheelwright.steps.base import parse_result
from wheelwright.worker import prepare_source as source
from wheelwright.worker.build_wheel import (
    build,
    check_wheels,
    retag,
    source_date_epoch,
    take_wheels,
)
from wheelwright.worker.environments import (
    BYTECODE_PREFIX,
    LOWEST_PRIORITY,
    activated,
    create_venv,
    environment_bytecode,
    fresh_dir,
    interpreter_facts,
    run_tool,
    sandboxed_hooks,
    uv_pip,
)
from wheelwright.worker.prepare_build_env import freeze, install_from_index, prepare
from wheelwright.worker.validate_install_deps import check_tags, install, public


def test_an_sdist_of_another_project_or_version_is_refused(tmp_path):
    sdist = setuptools_sdist(tmp_path, "asked", "2.0")
    with pytest.raises(ToolError, match=r"the sdist is asked 2.0, but asked 1.0 was asked for"):
        source.unpack(sdist, tmp_path / "src", project="asked", version="1.0")
    with pytest.raises(ToolError, match=r"but other 2.0 was asked for"):
        source.unpack(sdist, tmp_path / "src", project="other", version="2.0")


def test_unpacks_and_applies_patches_in_name_order(tmp_path):
    sdist = setuptools_sdist(tmp_path, "good", "1.0", code="A = 1\n")
    src = source.unpack(sdist, tmp_path / "src", project="good", version="1.0")
    patches = tmp_path / "patches"
    patches.mkdir()
    (patches / "0002-second.patch").write_text(
        "--- a/good.py\n+++ b/good.py\n@@ -1 +1 @@\n-A = 2\n+A = 3\n"
    )
    (patches / "0001-first.patch").write_text(
        "--- a/good.py\n+++ b/good.py\n@@ -1 +1 @@\n-A = 1\n+A = 2\n"
    )
    assert source.apply_patches(src, list(patches.iterdir())) == [
        "0001-first.patch",
        "0002-second.patch",
    ]
    assert (src / "good.py").read_text() == "A = 3\n"
    with pytest.raises(ToolError, match="patch 0001-first.patch does not apply"):
        source.apply_patches(src, [patches / "0001-first.patch"])


def test_the_tool_prints_its_error_as_a_result_line(tmp_path):
    sdist = HOSTILE_SDISTS["absolute member"](tmp_path / "evil-1.0.tar.gz")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "wheelwright.worker.prepare_source",
            "--sdist",
            str(sdist),
            "--dest",
            str(tmp_path / "src"),
            "--project",
            "evil",
            "--version",
            "1.0",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert proc.stdout.splitlines()[-1].startswith(RESULT_PREFIX + '{"error": "member \'/tmp')


def test_build_requirements_come_from_our_index_or_fail_clearly(index_host, tmp_path):
    upload(index_host + "legacy/", "uploader", "s3cret", make_wheel(tmp_path, "backend", "1.0"))
    env_python = create_venv(sys.executable, str(tmp_path / "env"))
    simple = index_host + "simple/"
    with pytest.raises(ToolError, match="build requirement missing-one is not in the index") as err:
        install_from_index(sys.executable, env_python, ["backend", "missing_one>=1"], simple)
    assert err.value.details == {"missing": ["missing-one"]}
    with pytest.raises(
        ToolError, match=r"backend>=2 \(our index has 1.0\) is not satisfied by our index"
    ):
        install_from_index(sys.executable, env_python, ["backend>=2"], simple)
    install_from_index(
        sys.executable, env_python, ["backend>=1", 'never; python_version < "3"'], simple
    )
    pip_freeze = subprocess.run(
        [sys.executable, "-m", "pip", "--python", env_python, "freeze", "--all"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert pip_freeze.split() == ["backend==1.0"]
    # read from the .dist-info folders, without running the environment's interpreter
    assert freeze(tmp_path / "env") == "backend==1.0\n"


def test_a_wheel_the_builders_python_cannot_install_fails_validation(tmp_path):
    check_tags(sys.executable, make_wheel(tmp_path, "fine", "1.0"))
    other = make_wheel(tmp_path, "other", "1.0", tag="cp27-cp27m-win32")
    with pytest.raises(ToolError, match="is tagged cp27-cp27m-win32, which this builder's Python"):
        check_tags(sys.executable, other)
    # one tag of ours beside a foreign one is not enough: every tag must fit
    both = make_wheel(tmp_path, "both", "1.0", tag="py3.cp27-none-any.win32")
    with pytest.raises(ToolError, match="which this builder's Python"):
        check_tags(sys.executable, both)


def test_only_plain_files_that_are_wheels_of_the_package_leave_the_build(tmp_path):
    out, dist = tmp_path / "out", tmp_path / "dist"
    out.mkdir()
    dist.mkdir()
    target = tmp_path / "farm-file"
    target.write_text("the farm's")
    (out / "demo-1.0-py3-none-any.whl").symlink_to(target)
    with pytest.raises(ToolError, match="demo-1.0-py3-none-any.whl, which is not a plain file"):
        take_wheels(out, dist, "demo", "1.0")
    (out / "demo-1.0-py3-none-any.whl").unlink()
    make_wheel(out, "other", "1.0")
    with pytest.raises(ToolError, match="not a wheel of demo 1.0"):
        take_wheels(out, dist, "demo", "1.0")
    (out / "other-1.0-py3-none-any.whl").unlink()
    make_wheel(out, "demo", "1.0")
    take_wheels(out, dist, "demo", "1.0")
    assert [p.name for p in dist.iterdir()] == [
        "demo-1.0-py3-none-any.whl"
    ] and target.read_text() == "the farm's"


def test_a_wheel_the_index_would_refuse_is_refused_before_any_tool_reads_it(tmp_path):
    """`wheel tags`, a bump and uv's install would read it next: the index's checks come first."""
    import zipfile

    out, dist = tmp_path / "out", tmp_path / "dist"
    out.mkdir()
    dist.mkdir()
    wheel = make_wheel(out, "demo", "1.0")
    with zipfile.ZipFile(wheel, "a") as zf:
        zf.writestr("../../escaped.pth", "import os")  # not in RECORD, and a path out
    with pytest.raises(ToolError, match="a wheel the index would refuse: .*'../../escaped.pth'"):
        take_wheels(out, dist, "demo", "1.0")


def test_a_rebuild_retags_its_wheels_with_the_build_number_and_nothing_else_passes(tmp_path):
    dist = tmp_path / "dist"
    dist.mkdir()
    make_wheel(dist, "demo", "1.0")
    retag(dist, 3)
    (wheel,) = check_wheels(dist, "demo", "1.0", build_tag=3)
    assert wheel["filename"] == "demo-1.0-3-py3-none-any.whl"
    check_wheel(dist / wheel["filename"], wheel["filename"], "demo", "1.0")  # RECORD still true
    with pytest.raises(ToolError, match="does not carry build number 4"):
        check_wheels(dist, "demo", "1.0", build_tag=4)


def test_the_next_build_number_counts_from_the_wheels_our_index_has(index_host, tmp_path):
    simple = index_host + "simple/"
    farm = farm_on(index_host, tmp_path / "farm", rebuild_bump="build-tag")

    def next_build_tag(version: str) -> int:
        return plan_rebuild(farm, "demo", version)[0].build_tag

    with pytest.raises(BumpError, match="our index has no wheel of demo 1.0 to rebuild"):
        next_build_tag("1.0")
    upload(index_host + "legacy/", "uploader", "s3cret", make_wheel(tmp_path, "demo", "1.0"))
    assert next_build_tag("1.0") == 1
    dist = tmp_path / "dist"
    dist.mkdir()
    make_wheel(dist, "demo", "1.0")
    retag(dist, 1)
    upload(
        index_host + "legacy/",
        "uploader",
        "s3cret",
        dist / "demo-1.0-1-py3-none-any.whl",
        provenance={"build_number": 7},
    )
    assert next_build_tag("1.0") == 2
    assert published_pure_wheel(simple, "demo", "1.0", build_tag=1)["build_number"] == 7
    assert published_pure_wheel(simple, "demo", "1.0", build_tag=2) is None


def test_an_sdist_dated_1970_builds_with_the_earliest_date_a_zip_can_hold(tmp_path):
    # pdm-backend's sdists date their members 1970; its wheel builder refuses dates before 1980
    (tmp_path / "PKG-INFO").write_text("Metadata-Version: 2.1\nName: old\nVersion: 1\n")
    os.utime(tmp_path / "PKG-INFO", (0, 0))
    assert source_date_epoch(tmp_path) == str(ZIP_EPOCH)
    os.utime(tmp_path / "PKG-INFO", (1_700_000_000, 1_700_000_000))
    assert source_date_epoch(tmp_path) == "1700000000"


def test_the_import_test_takes_the_public_modules():
    # ruamel.yaml.clib's _ruamel_yaml needs ruamel.yaml, which depends on it, not the other way
    assert public(["_ruamel_yaml", "ruamel"]) == ["ruamel"]
    assert public(["_cffi_backend"]) == ["_cffi_backend"]


def test_an_import_of_a_package_the_wheel_does_not_declare_is_reported_not_fatal(
    index_host, tmp_path
):
    # ruamel.yaml.clib's extension imports ruamel.yaml, which depends on it: the wheel is fine alone
    files, dist_info = wheel_files("cext", "1.0")
    files["_cext.py"] = "from absent_parent import thing\n"
    del files["cext.py"]
    wheel = write_wheel(tmp_path / "cext-1.0-py3-none-any.whl", files, dist_info)
    result = install(sys.executable, wheel, index_host + "simple/", tmp_path / "env", [])
    assert result == Installed(imported=[], undeclared={"_cext": "absent_parent"})
    # a module of its own that fails is still a failure
    files["_cext.py"] = "raise ImportError('broken inside')\n"
    broken = write_wheel(tmp_path / "cext-1.0-py3-none-any.whl", files, dist_info)
    with pytest.raises(ToolError, match="importing _cext failed"):
        install(sys.executable, broken, index_host + "simple/", tmp_path / "env2", [])


def test_a_module_that_needs_a_dependency_of_an_extra_is_skipped_and_said(index_host, tmp_path):
    # black 24.10.0's blackd raises ImportError without its `d` extra's aiohttp
    files, dist_info = wheel_files("blk", "1.0", requires=['aiohttp>=3.10; extra == "d"'])
    files["blkd.py"] = (
        "try:\n    import aiohttp\nexcept ImportError as ie:\n"
        "    raise ImportError(f'aiohttp dependency is not installed: {ie}. "
        "Please re-install black with the [d] extra') from None\n"
    )
    wheel = write_wheel(tmp_path / "blk-1.0-py3-none-any.whl", files, dist_info)
    result = install(sys.executable, wheel, index_host + "simple/", tmp_path / "env", [])
    assert result == Installed(imported=["blk"], skipped={"blkd": "aiohttp"})
    # the same error with no such extra declared is the wheel's own failure
    files, dist_info = wheel_files("blk", "1.0")
    files["blkd.py"] = "raise ImportError('aiohttp dependency is not installed')\n"
    (tmp_path / "plain").mkdir()
    plain = write_wheel(tmp_path / "plain" / "blk-1.0-py3-none-any.whl", files, dist_info)
    with pytest.raises(ToolError, match="importing blk, blkd failed"):
        install(sys.executable, plain, index_host + "simple/", tmp_path / "env2", [])


def test_an_import_report_the_package_replaced_with_a_fifo_is_refused_unread(index_host, tmp_path):
    # At exit, after the import script wrote its report, the package's code puts a FIFO there.
    files, dist_info = wheel_files("fifoer", "1.0")
    files["fifoer.py"] = (
        "import atexit, os\n"
        "def plant():\n"
        "    os.unlink('undeclared.txt')\n"
        "    os.mkfifo('undeclared.txt')\n"
        "atexit.register(plant)\n"
    )
    wheel = write_wheel(tmp_path / "fifoer-1.0-py3-none-any.whl", files, dist_info)
    with pytest.raises(
        ToolError, match="import test's report is not a plain file of at most 1 MiB"
    ):
        install(sys.executable, wheel, index_host + "simple/", tmp_path / "env", [])


def test_an_import_report_the_package_rewrote_is_refused(index_host, tmp_path):
    files, dist_info = wheel_files("forger", "1.0")
    files["forger.py"] = (
        "import atexit\n"
        "atexit.register(lambda: open('undeclared.txt', 'w').write('forger <b>x</b> y\\n'))\n"
    )
    wheel = write_wheel(tmp_path / "forger-1.0-py3-none-any.whl", files, dist_info)
    with pytest.raises(ToolError, match="the import test's report is not what it writes"):
        install(sys.executable, wheel, index_host + "simple/", tmp_path / "env", [])


@pytest.mark.parametrize(
    "error",
    [
        ToolError("patch 0001-x.patch does not apply", patch="0001-x.patch"),
        ToolError("build requirement hatchling is not in the index", missing=["hatchling"]),
        LimitExceeded("a fork bomb was stopped: it hit the process limit", limit="process limit"),
    ],
    ids=["patch", "missing", "limit"],
)
def test_every_failure_a_tool_raises_is_reported_as_one(tmp_path, monkeypatch, capsys, error):
    """What a ToolError carries is a field of the Failure the step reads back."""
    monkeypatch.chdir(tmp_path)
    # run_tool gives its process a private TMPDIR and HOME (in the folder it runs in): this
    # test's process gets its own back, or every later test's temporary files go to a removed one.
    monkeypatch.setenv("TMPDIR", os.environ.get("TMPDIR", tempfile.gettempdir()))
    monkeypatch.setenv("HOME", os.environ["HOME"])
    monkeypatch.setattr(tempfile, "tempdir", tempfile.tempdir)

    def failing(argv):
        raise error

    assert run_tool(failing) == 1
    report = parse_result(capsys.readouterr().out)
    assert from_json(Failure, report) == Failure(str(error), **error.details)


def test_an_interpreters_markers_and_tags_are_read_once_until_it_changes(tmp_path, monkeypatch):
    monkeypatch.setenv(WORKER_CACHE, str(tmp_path / "cache"))
    starts = tmp_path / "starts"
    python = tmp_path / "python3"
    python.write_text(f'#!/bin/sh\necho start >> {starts}\nexec {sys.executable} "$@"\n')
    python.chmod(0o755)
    facts = interpreter_facts(str(python))
    assert facts["markers"] == default_environment()
    assert facts["tags"] == [str(t) for t in sys_tags()]
    assert interpreter_facts(str(python)) == facts
    assert starts.read_text().count("start") == 1  # the second came from the worker's cache
    python.write_text(python.read_text() + "# upgraded\n")
    interpreter_facts(str(python))
    assert starts.read_text().count("start") == 2


# An in-tree backend whose build_wheel hook, once pyproject-hooks' script has written its report,
# puts something else in the report's place (at exit, still in the sandbox).
PLANTING_BACKEND = """\
import atexit, os, sys

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    report = os.path.join(sys.argv[2], "output.json")

    def plant():
        os.unlink(report)
        if KIND == "link":
            os.symlink(SECRET, report)
        elif KIND == "folder link":  # the report's folder, replaced by a link to one of ours
            os.rename(sys.argv[2], sys.argv[2] + ".moved")
            os.symlink(SECRET, sys.argv[2])
            return
        elif KIND == "fifo":
            os.mkfifo(report)
        else:
            with open(report, "w") as f:
                f.write('{"return_val": "x.whl", "pad": "' + "x" * (2 << 20) + '"}')

    atexit.register(plant)
    return "x.whl"
"""


def planter_tree(top, backend: str):
    """A source tree whose in-tree backend is `backend`."""
    src = top / "src"
    src.mkdir()
    (src / "PKG-INFO").write_text("Metadata-Version: 2.1\nName: planter\nVersion: 1.0\n")
    (src / "pyproject.toml").write_text(
        '[build-system]\nrequires = []\nbuild-backend = "planter_backend"\nbackend-path = ["."]\n'
    )
    (src / "planter_backend.py").write_text(backend)
    return src


@pytest.mark.parametrize("kind", ["link", "fifo", "huge", "folder link"])
def test_a_hook_that_plants_its_report_is_refused_unread(tmp_path, monkeypatch, capsys, kind):
    secret = tmp_path / "secret.json"  # a JSON file of the worker's, outside the sandbox
    secret.write_text('{"return_val": "x.whl", "traceback": "THE-SECRET"}')
    if kind == "folder link":  # a folder of the worker's holding a report-shaped file
        (tmp_path / "secrets").mkdir()
        secret = secret.rename(tmp_path / "secrets" / "output.json").parent
    src = planter_tree(tmp_path, f"KIND = {kind!r}\nSECRET = {str(secret)!r}\n" + PLANTING_BACKEND)
    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))  # as the tool has it from its start
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    env_python = create_venv(sys.executable, str(tmp_path / "env"))
    # The folder cannot be replaced (it is a mount point in the sandbox): only its report went.
    refused = (
        "the backend's hook wrote no report"
        if kind == "folder link"
        else "left a report that is not a plain file of at most 1 MiB"
    )
    with pytest.raises(ToolError, match=refused):
        build(sys.executable, env_python, src, tmp_path / "dist", "planter", "1.0", "build")
    said = capsys.readouterr()
    assert "THE-SECRET" not in said.out + said.err


# An in-tree backend that says where its bytecode is (the file's inode: Python writes bytecode
# anew, never in place), tries to change the standard library's, and builds an empty wheel.
BYTECODE_BACKEND = """\
import base64, email.message, hashlib, os, sys, zipfile

def say(hook):
    mine = os.stat(__spec__.cached).st_ino if os.path.exists(__spec__.cached) else None
    print("HOOK", hook, __spec__.cached, mine, flush=True)
    print("STDLIB", os.path.exists(email.message.__spec__.cached), flush=True)
    for name, act in [
        ("replace", lambda: open(email.message.__spec__.cached, "wb").write(b"POISON")),
        ("add", lambda: open(os.path.join(os.path.dirname(email.message.__spec__.cached), "x.pyc"), "wb")),
    ]:
        try:
            act()
            print("STDLIB", name, "done", flush=True)
        except OSError as exc:
            print("STDLIB", name, exc.strerror, flush=True)

def get_requires_for_build_wheel(config_settings=None):
    say("get_requires")
    return []

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    say("build")
    name = "planter-1.0-py3-none-any.whl"
    files = {
        "planter-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\\nName: planter\\nVersion: 1.0\\n",
        "planter-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n",
    }
    record = "".join(
        f"{n},sha256={base64.urlsafe_b64encode(hashlib.sha256(d).digest()).decode().rstrip('=')},{len(d)}\\n"
        for n, d in files.items()
    ) + "planter-1.0.dist-info/RECORD,,\\n"
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as wheel:
        for n, d in files.items():
            wheel.writestr(n, d)
        wheel.writestr("planter-1.0.dist-info/RECORD", record)
    return name
"""


def built_with_bytecode(tmp_path, monkeypatch, capsys) -> dict[str, list[str]]:
    """Prepare the build environment, then build, with the in-tree BYTECODE_BACKEND on a worker
    with a cache; returns what its hooks said, by the line's first word."""
    monkeypatch.setenv(WORKER_CACHE, str(tmp_path / "cache"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    src = planter_tree(tmp_path, BYTECODE_BACKEND).resolve()
    (src / "pyproject.toml").write_text(
        (src / "pyproject.toml").read_text().replace("planter_backend", "bytecode_backend")
    )
    (src / "planter_backend.py").rename(src / "bytecode_backend.py")
    ready = prepare(
        sys.executable,
        src,
        (tmp_path / "env").resolve(),
        "http://127.0.0.1:9/simple/",
        sandbox.Limits(),
    )
    build(sys.executable, ready.env_python, src, tmp_path / "dist", "planter", "1.0", "build")
    said: dict[str, list[str]] = {}
    for line in capsys.readouterr().out.splitlines():
        word, _, rest = line.partition(" ")
        said.setdefault(word, []).append(rest)
    return said


def test_the_build_reads_the_bytecode_get_requires_compiled_and_none_lands_in_the_tree(
    tmp_path, monkeypatch, capsys
):
    said = built_with_bytecode(tmp_path, monkeypatch, capsys)
    (get_requires, first), (build_hook, second) = [line.split(" ", 1) for line in said["HOOK"]]
    assert (get_requires, build_hook) == ("get_requires", "build")
    # The same file: the build did not compile the backend again.
    cached, inode = first.split(" ")
    assert inode != "None" and first == second, said["HOOK"]
    assert cached.startswith("/bytecode/")  # the prefix, inside the sandbox
    on_worker = (
        tmp_path / "bytecode" / os.path.relpath(cached, "/bytecode" + str(tmp_path.resolve()))
    )
    assert on_worker.is_file()
    assert not [
        p for p in (tmp_path / "src").rglob("*") if "pycache" in p.name or p.suffix == ".pyc"
    ]
    # Python found the standard library's bytecode through the prefix (or it would compile it).
    assert said["STDLIB"][0] == "True"


def test_a_hook_cannot_change_the_standard_librarys_bytecode_other_builds_read(
    tmp_path, monkeypatch, capsys
):
    said = built_with_bytecode(tmp_path, monkeypatch, capsys)
    assert said["STDLIB"][1:3] == ["replace Read-only file system", "add Read-only file system"]
    (mirror,) = [p for p in (tmp_path / "cache" / "bytecode").iterdir()]
    poisoned = [p for p in mirror.rglob("*.pyc") if p.read_bytes().startswith(b"POISON")]
    assert not poisoned and not list(mirror.rglob("x.pyc"))


def installed(tmp_path, env_python: str, version: str, ran: Path) -> None:
    """envpkg==version installed in the environment, with a .pth line that says when it runs."""
    files, dist_info = wheel_files("envpkg", version)
    files["envpkg.py"] = f"VERSION = {version!r}\n"
    files["envpkg.pth"] = f"import os; open({str(ran)!r}, 'w')\n"
    wheel = write_wheel(tmp_path / f"envpkg-{version}-py3-none-any.whl", files, dist_info)
    subprocess.run(uv_pip(env_python, "install", "--offline", str(wheel)), check=True)


def test_the_environments_bytecode_is_made_once_by_the_worker_and_read_only_in_hooks(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv(WORKER_CACHE, str(tmp_path / "cache"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    env_dir = (tmp_path / "env").resolve()
    env_python = create_venv(sys.executable, str(env_dir))
    ran = tmp_path / "pth-ran"  # the environment's interpreter would run it: not the compiling
    installed(tmp_path, env_python, "1.0", ran)
    # The first build with these packages starts the compiling and goes on without it.
    assert environment_bytecode(sys.executable, env_dir) == []
    stores = tmp_path / "cache" / "bytecode"
    deadline = time.monotonic() + 60
    # Done when the store is in place and the maker has cleared its folder (just after).
    while time.monotonic() < deadline and (
        not list(stores.glob("env-*")) or list(stores.glob(".making-*"))
    ):
        time.sleep(0.1)
    (store,) = stores.glob("env-*")
    assert not ran.exists() and not list(stores.glob(".making-*"))
    (pyc,) = store.rglob("envpkg.*.pyc")
    assert int.from_bytes(pyc.read_bytes()[4:8], "little") == 0b11  # checked against its source
    # A hook imports the package from that bytecode (the same file) and cannot change it.
    report = tmp_path / "tmp" / "report"
    report.mkdir()
    (report / "output.json").write_text("{}")
    src = tmp_path / "src"
    src.mkdir()
    runner = sandboxed_hooks(
        sys.executable,
        env_dir,
        activated(clean_pip_env(), env_dir),
        [src],
        "a hook",
        sandbox.Limits(),
        fresh_dir(tmp_path / "bytecode"),
    )
    probe = (
        "import os, envpkg\nprint('PYC', os.stat(envpkg.__spec__.cached).st_ino)\n"
        "try:\n    open(envpkg.__spec__.cached, 'wb')\nexcept OSError as exc:\n"
        "    print('WRITE', exc.strerror)\n"
    )
    capsys.readouterr()
    runner([env_python, "-c", probe, str(report)], cwd=str(src))
    said = capsys.readouterr().out
    assert f"PYC {pyc.stat().st_ino}\n" in said and "WRITE Read-only file system" in said, said
    # Another environment with the same packages, elsewhere (the other worker's), reads it there.
    elsewhere = (tmp_path / "other" / "env").resolve()
    installed(tmp_path, create_venv(sys.executable, str(elsewhere)), "1.0", ran)
    (site,) = elsewhere.glob("lib/python*/site-packages")
    assert environment_bytecode(sys.executable, elsewhere) == [
        sandbox.Bind(store, BYTECODE_PREFIX + str(site))
    ]
    # Other sources, another one: it is made for what the environment's packages hold.
    installed(tmp_path, env_python, "2.0", ran)
    assert environment_bytecode(sys.executable, env_dir) == []
    assert len([*stores.glob("env-*"), *stores.glob(".making-env-*")]) == 2


def test_the_environments_bytecode_is_compiled_in_a_session_at_the_lowest_priority():
    # Where the kernel groups a session's processes (autogroup), nice alone ranks the compiling
    # only within its own session, beside the builds as an equal: the session's priority drops.
    probe = (
        "import os\n"
        "group = open('/proc/self/autogroup').read() if os.path.exists('/proc/self/autogroup') else ''\n"
        "print(os.getpriority(os.PRIO_PROCESS, 0), group.split()[-1] if group else 'none')\n"
    )
    said = subprocess.run(
        [*LOWEST_PRIORITY, sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        start_new_session=True,  # as the compiling is started
    ).stdout.split()
    assert said[0] == "19" and said[1] in ("19", "none"), said


def made_store(stores: Path) -> Path | None:
    """The environment bytecode the worker made in the background, once made."""
    deadline = time.monotonic() + 60
    while not list(stores.glob("env-*")) and list(stores.glob(".making-env-*")):
        assert time.monotonic() < deadline, "the environment's bytecode was not made in 60 s"
        time.sleep(0.1)
    return next(stores.glob("env-*"), None)


def test_a_build_requirements_validation_makes_the_bytecode_of_its_dependents_environments(
    index_host, tmp_path, monkeypatch
):
    # A bootstrap's setuptools: its validation environment holds what MarkupSafe's build
    # environment will (setuptools alone), so it makes that environment's bytecode beforehand.
    monkeypatch.setenv(WORKER_CACHE, str(tmp_path / "cache"))
    files, dist_info = wheel_files("backend", "1.0")
    files["backend_impl.py"] = "def hook():\n    return []\n"
    built = write_wheel(tmp_path / "backend-1.0-py3-none-any.whl", files, dist_info)
    stores = tmp_path / "cache" / "bytecode"
    install(sys.executable, built, index_host + "simple/", tmp_path / "plain-env", [])
    assert made_store(stores) is None  # a wheel no build needs: nothing compiled for builds
    install(
        sys.executable,
        built,
        index_host + "simple/",
        tmp_path / "test-env",
        [],
        bytecode_for_builds=True,
    )
    store = made_store(stores)
    assert store and sorted(p.name.split(".")[0] for p in store.rglob("*.pyc")) == [
        "backend",
        "backend_impl",
    ]
    # The published wheel (provenance added to its .dist-info) in a dependent's build
    # environment, elsewhere: its hooks read that bytecode.
    files[f"{dist_info}/provenance.json"] = "{}"
    (tmp_path / "published").mkdir()
    published = write_wheel(tmp_path / "published" / built.name, files, dist_info)
    build_env = (tmp_path / "dependent" / "env").resolve()
    env_python = create_venv(sys.executable, str(build_env))
    subprocess.run(uv_pip(env_python, "install", "--offline", str(published)), check=True)
    (site,) = build_env.glob("lib/python*/site-packages")
    assert environment_bytecode(sys.executable, build_env) == [
        sandbox.Bind(store, BYTECODE_PREFIX + str(site))
    ]
    # A wheel built here whose RECORD claims another's sources (uv installs it as it is) does not
    # get the bytecode store of the packages it claims to be.
    liar = dict(files, **{"backend.py": "import os\n"})
    record = "".join(
        record_line(n, c.encode() if isinstance(c, str) else c) for n, c in files.items()
    )
    (tmp_path / "liar").mkdir()
    lying = write_wheel(
        tmp_path / "liar" / built.name, liar, dist_info, record=record + f"{dist_info}/RECORD,,\n"
    )
    shutil.rmtree(store)
    install(
        sys.executable,
        lying,
        index_host + "simple/",
        tmp_path / "liar-env",
        [],
        bytecode_for_builds=True,
    )
    assert made_store(stores) is None


def test_a_pyproject_an_earlier_hook_replaced_with_a_fifo_is_refused_unread(tmp_path, monkeypatch):
    # get_requires_for_build_wheel could write the tree; build-wheel reads pyproject.toml outside.
    src = planter_tree(tmp_path, PLANTING_BACKEND)
    (src / "pyproject.toml").unlink()
    os.mkfifo(src / "pyproject.toml")
    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    env_python = create_venv(sys.executable, str(tmp_path / "env"))
    with pytest.raises(ToolError, match="pyproject.toml is not a plain file of at most 1 MiB"):
        build(sys.executable, env_python, src, tmp_path / "dist", "planter", "1.0", "build")


def test_an_environment_links_the_uv_cache_and_the_sandbox_cannot_change_it(
    index_host, tmp_path, monkeypatch
):
    monkeypatch.setenv(WORKER_CACHE, str(tmp_path / "cache"))
    code = "VALUE = 1\n"
    wheel = make_wheel(tmp_path, "linked", "1.0")  # linked.py holds `code`
    upload(index_host + "legacy/", "uploader", "s3cret", wheel)
    env_dir = tmp_path / "env"
    env_python = create_venv(sys.executable, str(env_dir))
    install_from_index(sys.executable, env_python, ["linked"], index_host + "simple/")
    (installed,) = env_dir.glob("lib/python*/site-packages/linked.py")
    # The premise: the file is the cache's own (one inode), so a change to it would reach every
    # later build on this worker.
    cached = [p for p in (tmp_path / "cache").rglob("linked.py") if p.samefile(installed)]
    assert cached and installed.stat().st_nlink >= 2
    build = tmp_path / "build"
    build.mkdir()
    attack = f"""if 1:
        import os
        for name, act in [
            ("write", lambda: open({str(installed)!r}, "a").write("POISONED = 1\\n")),
            ("chmod", lambda: os.chmod({str(installed)!r}, 0o777)),
            ("link", lambda: os.link({str(installed)!r}, "stolen.py")),
            ("replace", lambda: os.rename("mine.py", {str(installed)!r})),
        ]:
            try:
                act()
                print(name, "done")
            except OSError as exc:
                print(name, exc.strerror)
        """
    open(build / "mine.py", "w").close()
    proc = subprocess.run(
        sandbox.command([sys.executable, "-c", attack], write=[build], read=[env_dir], cwd=build),
        cwd=build,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:4] == [
        "write Read-only file system",
        "chmod Read-only file system",
        "link Invalid cross-device link",
        "replace Invalid cross-device link",
    ], proc.stdout
    assert cached[0].read_text() == code and installed.read_text() == code


def test_build_environments_are_copies_of_one_empty_venv_the_worker_makes_once(
    tmp_path, monkeypatch
):
    monkeypatch.setenv(WORKER_CACHE, str(tmp_path / "cache"))
    envs = [tmp_path / f"env{n}" for n in range(3)]
    pythons = [create_venv(sys.executable, str(envs[0]))]
    (template,) = (tmp_path / "cache" / "venvs").iterdir()  # no half-made one left beside it
    made = (template / "pyvenv.cfg").stat().st_ino
    pythons += [create_venv(sys.executable, str(env)) for env in envs[1:]]
    assert list((tmp_path / "cache" / "venvs").iterdir()) == [template]
    assert (template / "pyvenv.cfg").stat().st_ino == made
    for env, python in zip(envs, pythons, strict=True):
        prefixes = subprocess.run(
            [python, "-c", "import sys; print(sys.prefix, sys.base_prefix)"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert prefixes == [str(env), sys.base_prefix]
        assert not list(env.glob("lib/python*/site-packages/*"))
        for path in env.rglob("*"):  # nothing names the template; no file is the template's own
            if path.is_file() and not path.is_symlink():
                assert str(template).encode() not in path.read_bytes(), path
                assert not path.samefile(template / path.relative_to(env))


def test_an_interpreter_the_worker_lacks_fails_the_environment_clearly(tmp_path, monkeypatch):
    monkeypatch.setenv(WORKER_CACHE, str(tmp_path / "cache"))
    missing = str(tmp_path / "no-python3.99")
    with pytest.raises(ToolError, match=f"creating a virtual environment with {missing} failed"):
        create_venv(missing, str(tmp_path / "env"))


def test_a_wheel_planted_with_an_earlier_ones_name_size_and_time_is_validated_itself(
    index_host, tmp_path, monkeypatch
):
    # uv keys a local wheel in the worker's cache (shared, linked from) by its path and time,
    # both of which a build controls: a rebuild's wheel made to look like the last one must not
    # be validated as the last one's files.
    monkeypatch.setenv(WORKER_CACHE, str(tmp_path / "cache"))
    dist = tmp_path / "dist"
    dist.mkdir()
    files, dist_info = wheel_files("planted", "1.0")
    first = write_wheel(dist / "planted-1.0-py3-none-any.whl", files, dist_info)
    install(sys.executable, first, index_host + "simple/", tmp_path / "env-1", ["planted"])
    seen = os.stat(first)
    first.unlink()
    files["planted.py"] = "VALUE = 2\n"  # as long as the first's
    second = write_wheel(dist / "planted-1.0-py3-none-any.whl", files, dist_info)
    os.utime(second, ns=(seen.st_atime_ns, seen.st_mtime_ns))
    assert os.stat(second).st_size == seen.st_size
    install(sys.executable, second, index_host + "simple/", tmp_path / "env-2", ["planted"])
    (installed,) = (tmp_path / "env-2").glob("lib/python*/site-packages/planted.py")
    assert installed.read_text() == "VALUE = 2\n"


def test_repair_bundles_a_system_library_and_the_wheel_imports_where_it_is_absent(tmp_path):
    from tests.sdists import hiding_libyaml, libyaml_sdist
    from wheelwright.worker.repair_wheel import repair

    sdist = libyaml_sdist(tmp_path, "rp-yaml", "1.0")
    src = tmp_path / "src"
    shutil.unpack_archive(sdist, src)
    (src,) = src.iterdir()
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", dist, src],
        check=True, capture_output=True, env=clean_pip_env(),
    )  # fmt: skip
    (built,) = dist.glob("*.whl")
    assert built.name.endswith("-linux_x86_64.whl")
    kept = Path(shutil.copy(built, tmp_path))  # repair replaces it in dist
    (wheel,) = repair(dist, src, sandbox.Limits(), [], None).wheels
    # the most portable policy its symbols allow, libyaml inside, traced to Debian's package
    assert wheel.filename.endswith(f".manylinux_2_17_{platform.machine()}.whl")
    assert [p.name for p in dist.iterdir()] == [wheel.filename]
    (library,) = wheel.bundled
    assert library.soname == "libyaml-0.so.2" and library.package == "libyaml-0-2"
    assert library.bundled_as.startswith("rp_yaml.libs/libyaml-0-")
    assert library.package_version and len(library.system_sha256) == 64
    check_wheel(dist / wheel.filename, wheel.filename, "rp-yaml", "1.0")
    # installed where the system has no libyaml, the repaired wheel imports; the built one not
    for name, path in (("repaired", dist / wheel.filename), ("built", kept)):
        venv = tmp_path / name
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install",
             "--no-deps", "--no-index", path],
            check=True, capture_output=True, env=clean_pip_env(),
        )  # fmt: skip
    said = hiding_libyaml(
        str(tmp_path / "repaired" / "bin" / "python"), "import rp_yaml; print(rp_yaml.version())"
    )
    assert said.returncode == 0 and said.stdout.startswith("0."), said.stderr
    unrepaired = hiding_libyaml(str(tmp_path / "built" / "bin" / "python"), "import rp_yaml")
    assert unrepaired.returncode != 0 and "libyaml" in unrepaired.stderr


def test_a_pure_wheel_or_a_package_whose_repair_is_off_is_published_as_built(tmp_path):
    from wheelwright.worker.repair_wheel import repair

    dist = tmp_path / "dist"
    dist.mkdir()
    pure = make_wheel(dist, "rp-pure", "1.0")
    (src := tmp_path / "src").mkdir()
    (src / "PKG-INFO").write_text("Metadata-Version: 2.1\nName: rp-pure\nVersion: 1.0\n")
    (wheel,) = repair(dist, src, sandbox.Limits(), [], None).wheels
    assert wheel.filename == pure.name and wheel.verdict == "pure: nothing to repair"
    compiled = dist / "rp_c-1.0-cp311-cp311-linux_x86_64.whl"
    pure.rename(compiled)
    (wheel,) = repair(dist, src, sandbox.Limits(), [], "a driver no wheel may carry").wheels
    assert wheel.filename == compiled.name
    assert wheel.verdict == "repair off: a driver no wheel may carry"


def test_a_tools_result_is_read_whatever_the_build_left_unterminated():
    code = (
        "import sys\nfrom wheelwright.worker.environments import emit\n"
        "sys.stdout.write('cc1: warning: a line the compiler never ended')\nemit({'wheels': []})\n"
    )
    said = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    assert parse_result(said) == {"wheels": []}


def test_system_requirements_missing_on_the_worker_are_named_with_the_command_to_install():
    from wheelwright.worker.prepare_build_env import system_requirements

    assert set(system_requirements(["gcc", "patch"])) == {"gcc", "patch"}  # make up installs them
    with pytest.raises(ToolError) as caught:
        system_requirements(["gcc", "wheelwright-no-such-package", "gfortran-99"])
    assert str(caught.value) == (
        "system packages missing on this worker: wheelwright-no-such-package, gfortran-99 (the "
        "package's system_requirements); install them: apt-get install -y "
        "wheelwright-no-such-package gfortran-99"
    )


NINJA_BACKEND = """\
import shutil, subprocess
def get_requires_for_build_wheel(config_settings=None):
    return ["ninja>=1.8"]  # meson-python's way: the build tool, asked for when run
def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    raise SystemExit("ninja " + subprocess.run([shutil.which("ninja"), "--version"],
                     capture_output=True, text=True).stdout.strip())
"""


def test_a_build_tool_the_system_provides_is_not_installed_and_the_build_runs_the_systems(
    tmp_path, monkeypatch, capsys
):
    """ninja from farm.json's system_tools: our index (unreachable here) is never asked for it,
    the provenance records the system's, and the backend finds it on PATH in the sandbox."""
    from wheelwright.worker.prepare_build_env import tool_versions

    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    src = planter_tree(tmp_path, NINJA_BACKEND).resolve()
    unreachable = "http://127.0.0.1:9/simple/"
    ready = prepare(
        sys.executable,
        src,
        (tmp_path / "env").resolve(),
        unreachable,
        sandbox.Limits(),
        tools={"ninja": "ninja"},
    )
    assert ready.backend_requires == ["ninja>=1.8"] and "ninja" not in ready.freeze
    system = subprocess.run(["ninja", "--version"], capture_output=True, text=True).stdout.strip()
    assert ready.system_tools == {"ninja": f"{system} ({shutil.which('ninja')})"}
    capsys.readouterr()
    with pytest.raises(ToolError):  # the backend says which ninja it ran, and stops
        build(sys.executable, ready.env_python, src, tmp_path / "dist", "planter", "1.0", "build")
    assert f"ninja {system}\n" in capsys.readouterr().out  # the sandbox's PATH has it too
    with pytest.raises(ToolError, match=r"taken from the system \(cmake-9 on PATH\)"):
        tool_versions({"cmake": "cmake-9"}, ["cmake>=3.15"])


ENV_BACKEND = """\
import os
def get_requires_for_build_wheel(config_settings=None):
    print("REQUIRES", os.environ.get("WW_OPT"), sorted((config_settings or {}).items()))
    return []
def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    raise SystemExit(f"BUILD {os.environ.get('WW_OPT')} {sorted((config_settings or {}).items())}")
"""


def test_a_packages_env_and_config_settings_reach_its_hooks_as_fromager_gives_them(
    tmp_path, monkeypatch, capsys
):
    """fromager's env (each $VAR expanded from the build's environment and the keys before it)
    and config_settings (a key repeated: a list), in both hooks the farm calls."""
    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    src = planter_tree(tmp_path, ENV_BACKEND).resolve()
    env = ["WW_BASE=-O2", "WW_OPT=$WW_BASE -g $WW_UNSET"]
    with pytest.raises(ToolError, match=r"env WW_OPT: .* names \$WW_UNSET, which is not set"):
        prepare(sys.executable, src, (tmp_path / "e0").resolve(), "http://127.0.0.1:9/simple/",
                sandbox.Limits(), settings_env=env)  # fmt: skip
    env = ["WW_BASE=-O2", "WW_OPT=$WW_BASE -g"]
    config = ["setup-args=-Dblas=openblas", "setup-args=-Dlapack=openblas", "mode=fast"]
    ready = prepare(
        sys.executable,
        src,
        (tmp_path / "env").resolve(),
        "http://127.0.0.1:9/simple/",
        sandbox.Limits(),
        settings_env=env,
        settings_config=config,
    )
    expected = "[('mode', 'fast'), ('setup-args', ['-Dblas=openblas', '-Dlapack=openblas'])]"
    assert f"REQUIRES -O2 -g {expected}\n" in capsys.readouterr().out
    with pytest.raises(ToolError):
        build(sys.executable, ready.env_python, src, tmp_path / "dist", "planter", "1.0", "build",
              settings_env=env, settings_config=config)  # fmt: skip
    assert f"BUILD -O2 -g {expected}\n" in capsys.readouterr().out
