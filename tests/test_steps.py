"""Each stage's BuildStep, with Buildbot's own step test harness: the worker's side is the
harness's expectations; the master's side (index host, source archive, review queue) is real."""

from __future__ import annotations

import dataclasses
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from unittest import mock

from buildbot.process import remotetransfer
from buildbot.process.results import FAILURE, SKIPPED, SUCCESS, WARNINGS
from buildbot.test.reactor import TestReactorMixin
from buildbot.test.steps import (
    Expect,
    ExpectDownloadFile,
    ExpectRemoteRef,
    ExpectShell,
    ExpectUploadFile,
    TestBuildStepMixin,
)
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packaging.utils import parse_wheel_filename
from twisted.trial import unittest

from tests.sdists import Upstream, free_port, setuptools_sdist, wait_for_port
from tests.wheels import make_wheel
from wheelwright.common.files import sha256_of
from wheelwright.common.results import (
    BuildEnvReady,
    BuiltWheel,
    BundledLibrary,
    Failure,
    Installed,
    RepairedWheel,
    SourcePrepared,
    WheelsBuilt,
    WheelsRepaired,
    to_json,
)
from wheelwright.common.runtime import RESULT_PREFIX, WORKER_CACHE, WORKER_COMMAND
from wheelwright.farm.settings import UPLOAD_USER, Farm
from wheelwright.indexhost import accounts
from wheelwright.indexhost.upload import upload
from wheelwright.policy.package_settings import settings_for
from wheelwright.publishing.outbox import kept_wheels, publish_kept
from wheelwright.publishing.provenance import carried_by, is_ours
from wheelwright.sources import archive as source_archive
from wheelwright.sources.upstream import SourceError
from wheelwright.steps import (
    BuildWheel,
    DownloadSource,
    PrepareBuildEnv,
    PrepareSource,
    RepairWheel,
    UpdateIndex,
    ValidateInstallDeps,
)
from wheelwright.steps.base import ON_THE_WORKER, WORKER_CACHE_DIR, parse_result
from wheelwright.steps.download_source import CLEAR_BUILD_DIR
from wheelwright.steps.update_index import tag_fits

TOOL_COMMAND = ["/worker/bin/python", "-I", "-m", "wheelwright.worker.call"]
PASSWORD = "test-password"


def result_line(result) -> str:
    """A tool's report as its tool prints it: its result (common/results.py), or a raw dict."""
    data = result if isinstance(result, dict) else to_json(result)
    return f"some tool output\n{RESULT_PREFIX}{json.dumps(data)}\n"


def tool(name: str, *args: str) -> list[str]:
    return [*TOOL_COMMAND, f"wheelwright.worker.{name}", *args]


LIMITS = ["--limits", Farm(root=Path("/")).limits.as_json()]


def shell(command: list[str]) -> ExpectShell:
    """A tool's command as our steps send it: no environment printed but the worker's cache,
    the limits' own timeout."""
    return ExpectShell(
        workdir="build",
        command=command,
        log_environ=False,
        env={WORKER_CACHE: WORKER_CACHE_DIR},
        max_time=Farm(root=Path("/")).limits.wall_seconds + 600,
    )


class IndexHost:
    """A real index host in a process of its own."""

    def __init__(self, root: Path):
        self.port = free_port()
        accounts.add(root / "users.json", UPLOAD_USER, PASSWORD)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "wheelwright.indexhost.server",
                "--root",
                str(root / "index"),
                "--users",
                str(root / "users.json"),
                "--port",
                str(self.port),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)

    def close(self):
        self.proc.terminate()
        self.proc.wait()


class StepTest(TestBuildStepMixin, TestReactorMixin, unittest.TestCase):
    with_index = False
    # The tests of what the steps do run their tools as a worker without our command does (a
    # shell command); TestByTheWorkersCommand, as one with it.
    worker_commands = {"*": "99.99", WORKER_COMMAND: None}

    @classmethod
    def setUpClass(cls):
        cls.tmp = Path(tempfile.mkdtemp())
        if cls.with_index:
            cls.index = IndexHost(cls.tmp)
            cls.upstream = Upstream(cls.tmp / "upstream", free_port())

    @classmethod
    def tearDownClass(cls):
        if cls.with_index:
            cls.index.close()
            cls.upstream.close()
        shutil.rmtree(cls.tmp)

    def setUp(self):
        self.setup_test_reactor()
        self.farm = Farm(
            root=Path(tempfile.mkdtemp(dir=self.tmp)),
            index_port=self.index.port if self.with_index else 1,
            upstream=self.upstream.url if self.with_index else "http://127.0.0.1:1/simple/",
        )
        return self.setup_test_build_step()

    def setup(self, step, **properties):
        self.setup_build(worker_version=self.worker_commands)
        self.setup_step(step)
        defaults = {
            "package": "pkg",
            "version": "1.0",
            "interpreters": {"3.11": "/py/bin/python3.11"},
            "tool_command": TOOL_COMMAND,
            "index_url": self.farm.index_url,
            "buildername": "x86_64-cp311",
            "python_version": "3.11",
            "arch": "x86_64",
        }
        for name, value in {**defaults, **properties}.items():
            self.build.setProperty(name, value, "test")


HUNK = "--- a/pkg.py\n+++ b/pkg.py\n@@ -1 +1 @@\n-VALUE = 1\n+VALUE = 2\n"


class TestByTheWorkersCommand(StepTest):
    """A worker that has our command (worker/toolcommand.py) runs the tools by it, no client."""

    worker_commands = {"*": "99.99"}
    ARGV = [
        "wheelwright.worker.prepare_source",
        *("--sdist", "sdist/pkg-1.0.tar.gz", "--dest", "src"),
        *("--project", "pkg", "--version", "1.0", "--patches", "patches"),
    ]

    def command(self) -> Expect:
        return Expect(
            WORKER_COMMAND,
            {
                "workdir": "build",
                "argv": self.ARGV,
                "env": {WORKER_CACHE: WORKER_CACHE_DIR},
                "max_time": Farm(root=Path("/")).limits.wall_seconds + 600,
            },
        )

    async def test_a_tool_runs_by_the_workers_command_and_its_report_is_read(self):
        self.setup(PrepareSource(farm=self.farm), source_filename="pkg-1.0.tar.gz")
        report = {**to_json(SourcePrepared("src", [])), "timings": {"tool": 0.2}}
        self.expect_commands(
            self.command()
            .stdout(RESULT_PREFIX + json.dumps(report) + "\n")
            .update("elapsed", 0.25)  # the command's time on the worker, as every worker sends
            .exit(0)
        )
        self.expect_outcome(result=SUCCESS, state_string="unpacked, 0 patches applied")
        await self.run_step()
        # where the step's time went: the tool's own, the command's on the worker, the wait
        timings = self.get_nth_step(0).getProperty("timings")["prepare-source"]
        on_the_worker = f"worker {WORKER_COMMAND}{ON_THE_WORKER}"
        assert (timings["prepare_source: tool"], timings[on_the_worker]) == (0.2, 0.25)
        assert timings[f"worker {WORKER_COMMAND}"] >= 0

    def test_a_failing_tool_by_the_workers_command_fails_the_step_with_its_reason(self):
        self.setup(PrepareSource(farm=self.farm), source_filename="pkg-1.0.tar.gz")
        self.expect_commands(self.command().stdout(result_line(Failure("not an sdist"))).exit(1))
        self.expect_outcome(result=FAILURE)
        self.expect_log_file("reason", "not an sdist\n")
        return self.run_step()


class TestPrepareSource(StepTest):
    def test_sends_the_patches_for_this_version_in_name_order_and_unpacks(self):
        patches = self.farm.settings_dir / "patches"
        for folder, name in (
            ("pkg", "0002-all.patch"),
            ("pkg-1.0", "0001-this.patch"),
            ("pkg-2.0", "0000-other.patch"),
        ):
            (patches / folder).mkdir(parents=True)
            (patches / folder / name).write_text(HUNK)
        self.setup(PrepareSource(farm=self.farm), source_filename="pkg-1.0.tar.gz")
        self.expect_commands(
            ExpectDownloadFile(
                workerdest="patches/0001-this.patch",
                workdir="build",
                blocksize=262144,
                maxsize=None,
                mode=0o644,
                reader=ExpectRemoteRef(remotetransfer.FileReader),
            ).exit(0),
            ExpectDownloadFile(
                workerdest="patches/0002-all.patch",
                workdir="build",
                blocksize=262144,
                maxsize=None,
                mode=0o644,
                reader=ExpectRemoteRef(remotetransfer.FileReader),
            ).exit(0),
            shell(
                tool(
                    "prepare_source",
                    "--sdist",
                    "sdist/pkg-1.0.tar.gz",
                    "--dest",
                    "src",
                    "--project",
                    "pkg",
                    "--version",
                    "1.0",
                    "--patches",
                    "patches",
                )
            )
            .stdout(result_line(SourcePrepared("src", ["0001-this.patch", "0002-all.patch"])))
            .exit(0),
        )
        self.expect_outcome(result=SUCCESS, state_string="unpacked, 2 patches applied")
        self.expect_property("patches", ["0001-this.patch", "0002-all.patch"])
        return self.run_step()

    def test_a_patch_that_does_not_apply_fails_with_its_name(self):
        patch = self.farm.settings_dir / "patches" / "pkg" / "0001-x.patch"
        patch.parent.mkdir(parents=True)
        patch.write_text(HUNK)
        self.setup(PrepareSource(farm=self.farm), source_filename="pkg-1.0.tar.gz")
        self.expect_commands(
            ExpectDownloadFile(
                workerdest="patches/0001-x.patch",
                workdir="build",
                blocksize=262144,
                maxsize=None,
                mode=0o644,
                reader=ExpectRemoteRef(remotetransfer.FileReader),
            ).exit(0),
            shell(
                tool(
                    "prepare_source",
                    "--sdist",
                    "sdist/pkg-1.0.tar.gz",
                    "--dest",
                    "src",
                    "--project",
                    "pkg",
                    "--version",
                    "1.0",
                    "--patches",
                    "patches",
                )
            )
            .stdout(result_line(Failure("patch 0001-x.patch does not apply", patch="0001-x.patch")))
            .exit(1),
        )
        self.expect_outcome(result=FAILURE)
        self.expect_log_file("reason", f"{patch}: patch 0001-x.patch does not apply\n")
        return self.run_step()

    def test_a_file_that_is_not_a_patch_fails_naming_it_before_anything_runs(self):
        patch = self.farm.settings_dir / "patches" / "pkg-1.0" / "0001-notes.patch"
        patch.parent.mkdir(parents=True)
        patch.write_text("remember to fix the version check\n")
        self.setup(PrepareSource(farm=self.farm), source_filename="pkg-1.0.tar.gz")
        self.expect_outcome(result=FAILURE)
        self.expect_log_file("reason", f"{patch}:1: not a patch (no diff hunk in it)\n")
        return self.run_step()


class TestParseResult(unittest.TestCase):
    def test_the_last_result_line_counts_and_garbage_is_an_error(self):
        self.assertEqual(parse_result(result_line({"a": 1}) + result_line({"a": 2})), {"a": 2})
        self.assertEqual(
            parse_result(f"{RESULT_PREFIX}{{not json\n"),
            {"error": "the worker-side tool printed a broken result"},
        )
        self.assertEqual(
            parse_result(f"{RESULT_PREFIX}[1]\n"),
            {"error": "the worker-side tool printed a broken result"},
        )
        self.assertEqual(
            parse_result("nothing\n"), {"error": "the worker-side tool printed no result"}
        )


class TestPrepareBuildEnv(StepTest):
    def command(self, *system):
        return tool(
            "prepare_build_env",
            "--python",
            "/py/bin/python3.11",
            "--src",
            "src",
            "--env",
            "env",
            "--index",
            self.farm.index_url,
            *system,
            *LIMITS,
        )

    def test_the_packages_system_requirements_are_checked_and_recorded(self):
        (self.farm.settings_dir / "settings").mkdir(parents=True)
        (self.farm.settings_dir / "settings" / "pkg.yaml").write_text(
            "system_requirements: [libyaml-dev, gfortran]\n"
        )
        self.setup(PrepareBuildEnv(farm=self.farm))
        installed = {"libyaml-dev": "0.2.5-1", "gfortran": "4:12.2.0-3"}
        self.expect_commands(
            shell(self.command("--system", "libyaml-dev", "--system", "gfortran"))
            .stdout(result_line(BuildEnvReady("/w/env/bin/python", [], [], "", installed)))
            .exit(0)
        )
        self.expect_outcome(result=SUCCESS, state_string="0 build requirements installed")
        self.expect_property("system_packages", installed)
        return self.run_step()

    def test_installs_build_requirements(self):
        self.setup(PrepareBuildEnv(farm=self.farm))
        self.expect_commands(
            shell(self.command())
            .stdout(
                result_line(
                    BuildEnvReady(
                        "/w/env/bin/python", ["setuptools>=70"], [], "setuptools==80.9.0\n"
                    )
                )
            )
            .exit(0)
        )
        self.expect_outcome(result=SUCCESS, state_string="1 build requirement installed")
        self.expect_property("build_requires", ["setuptools>=70"])
        self.expect_property("build_freeze", "setuptools==80.9.0\n")
        self.expect_log_file("pip-freeze", "setuptools==80.9.0\n")
        self.expect_property("build_env_python", "/w/env/bin/python")
        return self.run_step()

    async def test_a_requirement_our_index_lacks_goes_to_review(self):
        self.setup(PrepareBuildEnv(farm=self.farm))
        self.expect_commands(
            shell(self.command())
            .stdout(
                result_line(
                    Failure(
                        "build requirement hatchling is not in the index", missing=["hatchling"]
                    )
                )
            )
            .exit(1)
        )
        self.expect_outcome(
            result=FAILURE, state_string="build requirement hatchling is not in the index (failure)"
        )
        await self.run_step()
        queue = json.loads(self.farm.review_queue.read_text())
        self.assertEqual(
            queue["hatchling"]["requests"][0]["reason"], "build requirement of pkg 1.0"
        )


class TestBuildWheel(StepTest):
    def command(self, frontend="build", *extra, wheel_version="1.0"):
        return tool(
            "build_wheel",
            "--python",
            "/py/bin/python3.11",
            "--env-python",
            "/w/env/bin/python",
            "--src",
            "src",
            "--dist",
            "dist",
            "--project",
            "pkg",
            "--version",
            "1.0",
            "--wheel-version",
            wheel_version,
            "--frontend",
            frontend,
            *extra,
            *LIMITS,
        )

    def test_builds_the_wheel(self):
        self.setup(BuildWheel(farm=self.farm), build_env_python="/w/env/bin/python")
        requires = ["dep>=1; python_version >= '3'"]
        self.expect_commands(
            shell(self.command())
            .stdout(
                result_line(
                    WheelsBuilt([BuiltWheel("pkg-1.0-py3-none-any.whl", "ab" * 32, requires)])
                )
            )
            .exit(0),
        )
        self.expect_outcome(result=SUCCESS, state_string="pkg-1.0-py3-none-any.whl")
        self.expect_property("wheel_filenames", ["pkg-1.0-py3-none-any.whl"])
        self.expect_property("wheel_sha256s", ["ab" * 32])
        self.expect_property("wheel_requires", [['dep>=1; python_version >= "3"']])
        return self.run_step()

    async def test_a_report_that_is_not_what_the_tool_writes_fails_the_step(self):
        self.setup(BuildWheel(farm=self.farm), build_env_python="/w/env/bin/python")
        wheel = {"filename": "pkg-1.0-py3-none-any.whl", "sha256": ["ab"], "requires": []}
        self.expect_commands(shell(self.command()).stdout(result_line({"wheels": [wheel]})).exit(0))
        self.expect_outcome(result=FAILURE)
        await self.run_step()
        self.assertIn(
            "wheel reported what it does not write: BuiltWheel.sha256: ['ab'] is not a str",
            self.get_nth_step(0).logs["reason"].stdout,
        )

    async def test_requirements_the_worker_reports_must_parse(self):
        self.setup(BuildWheel(farm=self.farm), build_env_python="/w/env/bin/python")
        self.expect_commands(
            shell(self.command())
            .stdout(
                result_line(
                    WheelsBuilt([BuiltWheel("pkg-1.0-py3-none-any.whl", "ab" * 32, ["dep>=>=1"])])
                )
            )
            .exit(0),
        )
        self.expect_outcome(result=FAILURE)
        await self.run_step()
        self.assertIn(
            "the wheel tool reported requirements that do not parse",
            self.get_nth_step(0).logs["reason"].stdout,
        )

    def test_per_package_setting_chooses_the_frontend(self):
        (self.farm.settings_dir / "settings").mkdir(parents=True)
        (self.farm.settings_dir / "settings" / "pkg.yaml").write_text("build_frontend: pip\n")
        self.setup(BuildWheel(farm=self.farm), build_env_python="/w/env/bin/python")
        self.expect_commands(
            shell(self.command("pip"))
            .stdout(
                result_line(Failure("building the wheel with pip (no network) failed (exit 1)"))
            )
            .exit(1),
        )
        self.expect_outcome(
            result=FAILURE,
            state_string="building the wheel with pip (no network) failed (exit 1) (failure)",
        )
        return self.run_step()

    def test_a_rebuild_asks_for_its_build_number(self):
        self.setup(BuildWheel(farm=self.farm), build_env_python="/w/env/bin/python", build_tag=2)
        self.expect_commands(
            shell(self.command("build", "--build-tag", "2"))
            .stdout(
                result_line(WheelsBuilt([BuiltWheel("pkg-1.0-2-py3-none-any.whl", "ab" * 32, [])]))
            )
            .exit(0),
        )
        self.expect_outcome(result=SUCCESS, state_string="pkg-1.0-2-py3-none-any.whl")
        return self.run_step()

    def test_a_post_rebuild_asks_for_its_version(self):
        self.setup(
            BuildWheel(farm=self.farm),
            build_env_python="/w/env/bin/python",
            wheel_version="1.0.post1",
            bump="post",
        )
        self.expect_commands(
            shell(self.command(wheel_version="1.0.post1"))
            .stdout(
                result_line(
                    WheelsBuilt([BuiltWheel("pkg-1.0.post1-py3-none-any.whl", "ab" * 32, [])])
                )
            )
            .exit(0),
        )
        self.expect_outcome(result=SUCCESS, state_string="pkg-1.0.post1-py3-none-any.whl")
        return self.run_step()

    def test_broken_settings_warn_and_the_last_good_ones_stand_in(self):
        path = self.farm.settings_dir / "settings" / "pkg.yaml"
        path.parent.mkdir(parents=True)
        path.write_text("build_frontend: pip\n")
        settings_for(self.farm, "pkg")  # an earlier build read them
        path.write_text("build_frontend: build\nimports: [a\n")
        self.setup(BuildWheel(farm=self.farm), build_env_python="/w/env/bin/python")
        self.expect_commands(
            shell(self.command("pip"))
            .stdout(
                result_line(WheelsBuilt([BuiltWheel("pkg-1.0-py3-none-any.whl", "ab" * 32, [])]))
            )
            .exit(0),
        )
        self.expect_outcome(result=WARNINGS, state_string="pkg-1.0-py3-none-any.whl (warnings)")
        self.expect_log_file(
            "settings-warning",
            f"{path}:3: not valid YAML (expected ',' or ']', but got '<stream end>'); "
            f"using its last good version, kept at {self.farm.last_good_dir}/settings/pkg.yaml\n",
        )
        return self.run_step()

    def test_broken_settings_fail_naming_file_and_line(self):
        (self.farm.settings_dir / "settings").mkdir(parents=True)
        (self.farm.settings_dir / "settings" / "pkg.yaml").write_text(
            "imports: [a\nbuild_frontend: pip\n"
        )
        self.setup(BuildWheel(farm=self.farm), build_env_python="/w/env/bin/python")
        self.expect_outcome(result=FAILURE)
        self.expect_log_file(
            "reason",
            f"{self.farm.settings_dir}/settings/pkg.yaml:2: not valid YAML "
            "(expected ',' or ']', but got ':')\n",
        )
        return self.run_step()


class TestRepairWheel(StepTest):
    BUILT = "pkg-1.0-cp311-cp311-linux_x86_64.whl"
    REPAIRED = "pkg-1.0-cp311-cp311-manylinux_2_17_x86_64.whl"

    def command(self, *extra):
        return tool("repair_wheel", "--dist", "dist", "--src", "src", *extra, *LIMITS)

    def test_the_repaired_wheel_is_the_one_published_and_its_libraries_are_recorded(self):
        self.setup(RepairWheel(farm=self.farm), wheel_filenames=[self.BUILT])
        library = BundledLibrary(
            "libyaml-0.so.2",
            "/usr/lib/x86_64-linux-gnu/libyaml-0.so.2.0.9",
            "pkg.libs/libyaml-0-8ec1a697.so.2.0.9",
            "cd" * 32,
            "ef" * 32,
            "libyaml-0-2",
            "0.2.5-1",
        )
        verdict = f"manylinux_2_17_x86_64 by its symbols; published as {self.REPAIRED}"
        self.expect_commands(
            shell(self.command())
            .stdout(
                result_line(
                    WheelsRepaired([RepairedWheel(self.REPAIRED, "ab" * 32, verdict, [library])])
                )
            )
            .exit(0)
        )
        self.expect_outcome(result=SUCCESS, state_string=f"{self.REPAIRED}; bundled libyaml-0.so.2")
        self.expect_property("wheel_filenames", [self.REPAIRED])
        self.expect_property("wheel_sha256s", ["ab" * 32])
        self.expect_property(
            "repair",
            {self.REPAIRED: {"verdict": verdict, "bundled": [dataclasses.asdict(library)]}},
        )
        return self.run_step()

    def test_a_package_can_turn_repair_off_saying_why_or_leave_libraries_out(self):
        (self.farm.settings_dir / "settings").mkdir(parents=True)
        (self.farm.settings_dir / "settings" / "pkg.yaml").write_text(
            "repair_off: links the CUDA driver, which no wheel may carry\n"
            "repair_exclude: [libcuda.so.1]\n"
        )
        self.setup(RepairWheel(farm=self.farm), wheel_filenames=[self.BUILT])
        off = "links the CUDA driver, which no wheel may carry"
        self.expect_commands(
            shell(self.command("--exclude", "libcuda.so.1", "--off", off))
            .stdout(result_line(WheelsRepaired([RepairedWheel(self.BUILT, "ab" * 32, off)])))
            .exit(0)
        )
        self.expect_outcome(result=SUCCESS, state_string=f"repair off: {off}")
        self.expect_property("wheel_filenames", [self.BUILT])
        return self.run_step()

    def test_a_wheel_auditwheel_cannot_repair_fails_with_its_reason(self):
        self.setup(RepairWheel(farm=self.farm), wheel_filenames=[self.BUILT])
        why = (
            "auditwheel repairing pkg-1.0-cp311-cp311-linux_x86_64.whl failed: cannot repair to "
            "manylinux_2_5_x86_64 because of too-recent versioned symbols"
        )
        self.expect_commands(shell(self.command()).stdout(result_line(Failure(why))).exit(1))
        self.expect_outcome(result=FAILURE, state_string=f"{why} (failure)")
        return self.run_step()


class TestValidateInstallDeps(StepTest):
    with_index = True

    def setup_requiring(self, *requirements):
        """The step, after a build-wheel that read these requirements from the one wheel."""
        self.setup(
            ValidateInstallDeps(farm=self.farm),
            wheel_filenames=["pkg-1.0-py3-none-any.whl"],
            wheel_requires=[list(requirements)],
        )

    async def test_unknown_dependency_is_queued_and_fails(self):
        self.setup_requiring("newthing>=1")
        self.expect_outcome(
            result=FAILURE,
            state_string="install-time dependency newthing is not in the allow-list "
            "or the index: queued for review (failure)",
        )
        await self.run_step()
        self.assertIn("newthing", json.loads(self.farm.review_queue.read_text()))

    def test_allow_listed_but_unbuilt_dependency_fails_without_review(self):
        self.farm.root.mkdir(parents=True, exist_ok=True)
        self.farm.allowlist.write_text("# reviewed\nNewThing\n")
        self.setup_requiring("newthing>=1")
        self.expect_outcome(
            result=FAILURE,
            state_string="install-time dependency newthing is allow-listed but not built yet (failure)",
        )
        return self.run_step()

    async def test_a_version_our_index_lacks_fails_naming_what_it_has(self):
        upload(
            self.farm.upload_url, UPLOAD_USER, PASSWORD, make_wheel(self.farm.root, "older", "2.0")
        )
        self.setup_requiring("older>=3")
        self.expect_outcome(
            result=FAILURE,
            state_string="install-time dependency older>=3 (our index has 2.0) is not "
            "satisfied by our index (failure)",
        )
        await self.run_step()

    async def test_known_dependencies_are_installed_from_our_index(self):
        upload(
            self.farm.upload_url, UPLOAD_USER, PASSWORD, make_wheel(self.farm.root, "known", "2.0")
        )
        self.setup_requiring("known>=1")
        self.expect_commands(
            shell(
                tool(
                    "validate_install_deps",
                    "install",
                    "--python",
                    "/py/bin/python3.11",
                    "--wheel",
                    "dist/pkg-1.0-py3-none-any.whl",
                    "--index",
                    self.farm.index_url,
                    "--env",
                    "test-env",
                    *LIMITS,
                )
            )
            .stdout(result_line(Installed(["pkg"])))
            .exit(0),
        )
        self.expect_outcome(result=SUCCESS)
        self.expect_property("install_requires", ["known>=1"])
        await self.run_step()


class TestUpdateIndex(StepTest):
    with_index = True

    def setUp(self):
        d = super().setUp()
        self.farm.secrets_dir.mkdir(parents=True)
        return d

    def upload_expectations(self, wheel: Path):
        return (
            ExpectUploadFile(
                workersrc=f"dist/{wheel.name}",
                workdir="build",
                blocksize=262144,
                maxsize=4 << 30,
                keepstamp=False,
                writer=ExpectRemoteRef(remotetransfer.FileWriter),
            )
            .upload_string(wheel.read_bytes())
            .exit(0),
        )

    async def test_publishes_the_wheel_with_its_freeze_and_provenance(self):
        wheel = make_wheel(self.farm.root, "pubpkg", "1.0")
        self.setup(
            UpdateIndex(farm=self.farm, upload_password=PASSWORD),
            package="pubpkg",
            wheel_filenames=[wheel.name],
            wheel_sha256s=[sha256_of(wheel)],
            build_freeze="flit_core==3.12.0\n",
        )
        self.expect_commands(*self.upload_expectations(wheel))
        self.expect_outcome(result=SUCCESS, state_string="published 1 wheel")
        url = f"{self.farm.index_url}pubpkg/{wheel.name}"
        self.expect_property("wheel_urls", [url])
        await self.run_step()
        published = self.farm.root / "published" / wheel.name
        published.parent.mkdir()
        with urllib.request.urlopen(url) as response:
            published.write_bytes(response.read())
        # It carries its provenance and the SBOM of its build environment; the build's own
        # members are untouched, and RECORD is true (the index checked it).
        carried = carried_by(published)
        self.assertEqual(
            (carried["build_number"], carried["built_sha256"], carried["freeze"]),
            (self.build.number, sha256_of(wheel), [["flit-core", "3.12.0"]]),
        )
        with zipfile.ZipFile(published) as zf, zipfile.ZipFile(wheel) as original:
            sbom = json.loads(zf.read("pubpkg-1.0.dist-info/sboms/build-environment.cdx.json"))
            self.assertEqual(
                {n: zf.read(n) for n in zf.namelist() if not is_ours(n)},
                {n: original.read(n) for n in original.namelist() if not is_ours(n)},
            )
        self.assertEqual([c["purl"] for c in sbom["components"]], ["pkg:pypi/flit-core@3.12.0"])
        self.assertIsNone(JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(sbom)))
        self.assertEqual(sbom["metadata"]["component"]["name"], "pubpkg")
        with urllib.request.urlopen(url + ".freeze.txt") as response:
            self.assertEqual(response.read(), b"flit_core==3.12.0\n")
        with urllib.request.urlopen(url + ".provenance.json") as response:
            self.assertEqual(json.load(response)["build_number"], self.build.number)

    async def test_a_wheel_that_differs_from_what_the_worker_reported_is_not_published(self):
        wheel = make_wheel(self.farm.root, "swapped", "1.0")
        self.setup(
            UpdateIndex(farm=self.farm, upload_password=PASSWORD),
            package="swapped",
            wheel_filenames=[wheel.name],
            wheel_sha256s=["00" * 32],
        )
        self.expect_commands(*self.upload_expectations(wheel))
        self.expect_outcome(result=FAILURE)
        await self.run_step()
        with self.assertRaises(urllib.error.HTTPError):
            urllib.request.urlopen(f"{self.farm.index_url}swapped/")

    def test_a_wheel_of_another_project_is_refused_before_transfer(self):
        self.setup(
            UpdateIndex(farm=self.farm, upload_password=PASSWORD),
            wheel_filenames=["other-1.0-py3-none-any.whl"],
            wheel_sha256s=["00" * 32],
        )
        self.expect_outcome(
            result=FAILURE,
            state_string="other-1.0-py3-none-any.whl is not a wheel of pkg 1.0; not "
            "published (failure)",
        )
        return self.run_step()

    def test_a_verify_build_takes_no_path_for_a_wheel_name(self):
        """A verify build brings the worker's wheel back under the name the worker reported: one
        that is a path ("../..") is refused before anything is transferred, as update-index does."""
        from wheelwright.steps.verify import VerifyReproducible

        self.farm.staging_dir.mkdir(parents=True, exist_ok=True)
        self.setup(
            VerifyReproducible(farm=self.farm, upload_password=PASSWORD),
            verify=True,
            wheel_filenames=["../../../escaped-1.0-py3-none-any.whl"],
        )
        self.expect_outcome(
            result=FAILURE,
            state_string="'../../../escaped-1.0-py3-none-any.whl' is not a plain file name (failure)",
        )
        return self.run_step()

    async def test_an_unreachable_index_fails_the_build_and_keeps_the_wheel_for_a_retry(self):
        wheel = make_wheel(self.farm.root, "kept", "1.0")
        reachable = self.farm
        self.farm = dataclasses.replace(reachable, index_port=free_port(), publish_retry_delays=[])
        self.setup(
            UpdateIndex(farm=self.farm, upload_password=PASSWORD),
            package="kept",
            wheel_filenames=[wheel.name],
            wheel_sha256s=[sha256_of(wheel)],
        )
        self.expect_commands(*self.upload_expectations(wheel))
        self.expect_outcome(result=FAILURE)
        await self.run_step()
        kept = self.farm.staging_dir / str(self.build.buildid) / wheel.name
        self.assertEqual(kept_wheels(self.farm.staging_dir), [kept])
        self.assertEqual(carried_by(kept)["build_number"], self.build.number)
        reason = self.get_nth_step(0).logs["reason"].stdout
        self.assertIn("did not answer", reason)
        self.assertIn(f"kept at {kept}", reason)
        kept_bytes = kept.read_bytes()
        (outcome,) = publish_kept(reachable, PASSWORD)  # what the master's retry service does
        self.assertTrue(outcome.startswith(f"{wheel.name}: published, made by http"), outcome)
        self.assertEqual(kept_wheels(self.farm.staging_dir), [])
        with urllib.request.urlopen(f"{reachable.index_url}kept/{wheel.name}") as response:
            self.assertEqual(response.read(), kept_bytes)
        with urllib.request.urlopen(
            f"{reachable.index_url}kept/{wheel.name}.provenance.json"
        ) as response:
            self.assertEqual(json.load(response)["build_number"], self.build.number)

    def test_a_wheel_without_this_builds_number_is_refused(self):
        self.setup(
            UpdateIndex(farm=self.farm, upload_password=PASSWORD),
            build_tag=2,
            wheel_filenames=["pkg-1.0-1-py3-none-any.whl"],
            wheel_sha256s=["00" * 32],
        )
        self.expect_outcome(
            result=FAILURE,
            state_string="pkg-1.0-1-py3-none-any.whl does not carry this build's "
            "number (2); not published (failure)",
        )
        return self.run_step()

    def test_every_tag_must_fit_the_builder_exactly(self):
        # a platform that merely contains the architecture's name, or one tag of ours beside
        # another builder's, is not this builder's wheel
        for filename in (
            "pkg-1.0-cp311-cp311-linux_x86_64_v2.whl",
            "pkg-1.0-cp311-cp311-linux_x86_64.linux_aarch64.whl",
            "pkg-1.0-cp311-cp311-manylinux_2_17_x86_64.win_amd64.whl",
            "pkg-1.0-cp311-cp312-linux_x86_64.whl",
            "pkg-1.0-cp312-abi3-linux_x86_64.whl",
            "pkg-1.0-cp311-none-any.whl"[:-4] + "_x86_64.whl",
        ):
            self.assertFalse(
                all(tag_fits(t, "3.11", "x86_64") for t in parse_wheel_filename(filename)[3]),
                filename,
            )
        for filename in (
            "pkg-1.0-py2.py3-none-any.whl",
            "pkg-1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
            "pkg-1.0-cp38-abi3-linux_x86_64.whl",
            "pkg-1.0-cp311-none-any.whl",
            "pkg-1.0-py3-none-linux_x86_64.whl",
        ):
            self.assertTrue(
                all(tag_fits(t, "3.11", "x86_64") for t in parse_wheel_filename(filename)[3]),
                filename,
            )

    def test_a_wheel_for_another_python_or_platform_is_refused(self):
        self.setup(
            UpdateIndex(farm=self.farm, upload_password=PASSWORD),
            wheel_filenames=[
                "pkg-1.0-cp312-cp312-linux_x86_64.whl",
                "pkg-1.0-cp311-cp311-linux_aarch64.whl",
            ],
            wheel_sha256s=["00" * 32] * 2,
        )
        self.expect_outcome(
            result=FAILURE,
            state_string="pkg-1.0-cp312-cp312-linux_x86_64.whl is not for this builder "
            "(Python 3.11 on x86_64); not published (failure)",
        )
        return self.run_step()

    async def test_a_pure_wheel_another_builder_published_meanwhile_is_skipped(self):
        wheel = make_wheel(self.farm.root, "raced", "1.0")
        upload(
            self.farm.upload_url,
            UPLOAD_USER,
            PASSWORD,
            wheel,
            provenance={"build_number": 1, "build_url": "http://other/builds/1"},
        )
        self.setup(
            UpdateIndex(farm=self.farm, upload_password=PASSWORD),
            package="raced",
            wheel_filenames=[wheel.name],
            wheel_sha256s=[sha256_of(wheel)],
        )
        self.expect_commands(*self.upload_expectations(wheel))
        self.expect_outcome(
            result=SKIPPED,
            state_string="pure wheel raced-1.0-py3-none-any.whl already published by "
            "another builder (skipped)",
        )
        await self.run_step()


def clear_build_dir():
    return ExpectShell(
        workdir=".",
        command=["sh", "-c", CLEAR_BUILD_DIR, "sh", "build"],
        log_environ=False,
        max_time=Farm(root=Path("/")).limits.wall_seconds + 600,
    ).exit(0)


class TestDownloadSource(StepTest):
    with_index = True

    def expectations(self, filename: str):
        return (
            clear_build_dir(),
            ExpectDownloadFile(
                workerdest=f"sdist/{filename}",
                workdir="build",
                blocksize=262144,
                maxsize=None,
                mode=0o644,
                reader=ExpectRemoteRef(remotetransfer.FileReader),
            ).exit(0),
        )

    async def test_downloads_verifies_archives_then_rebuilds_reuse_the_archive(self):
        sdist = setuptools_sdist(self.farm.root, "fetchme", "1.0")
        self.upstream.add(sdist)
        self.setup(DownloadSource(farm=self.farm, upload_password=PASSWORD), package="fetchme")
        self.expect_commands(*self.expectations(sdist.name))
        self.expect_outcome(result=SUCCESS, state_string="fetchme-1.0.tar.gz (upstream)")
        self.expect_property("source_sha256", sha256_of(sdist))
        self.expect_property("source_url", f"{self.farm.sources_url}fetchme/fetchme-1.0.tar.gz")
        await self.run_step()

    async def test_a_build_directory_that_cannot_be_cleared_gets_no_sdist(self):
        # the clearing runs while the master finds the sdist: its failure still stops the step
        # before anything is sent to the worker
        sdist = setuptools_sdist(self.farm.root, "stuck", "1.0")
        self.upstream.add(sdist)
        self.setup(DownloadSource(farm=self.farm, upload_password=PASSWORD), package="stuck")
        self.expect_commands(clear_build_dir().exit(1))
        self.expect_outcome(
            result=FAILURE, state_string="could not clear the build directory (1) (failure)"
        )
        await self.run_step()

    async def test_a_rebuild_takes_the_archived_sdist(self):
        sdist = setuptools_sdist(self.farm.root, "archived", "1.0")
        upload(self.farm.upload_url, UPLOAD_USER, PASSWORD, sdist)
        self.setup(DownloadSource(farm=self.farm, upload_password=PASSWORD), package="archived")
        self.expect_commands(*self.expectations(sdist.name))
        self.expect_outcome(result=SUCCESS, state_string="archived-1.0.tar.gz (archive)")
        self.expect_property("source_origin", "archive")
        await self.run_step()

    async def test_another_builder_archiving_the_same_sdist_meanwhile_is_no_failure(self):
        sdist = setuptools_sdist(self.farm.root, "raced", "1.0")
        self.upstream.add(sdist)
        real_find = source_archive.find_sdist

        def archived_by_another_builder(index_url, project, version=None, **options):
            if index_url == self.farm.sources_url and not hasattr(
                archived_by_another_builder, "raced"
            ):
                archived_by_another_builder.raced = (
                    True  # our look into the archive came just before theirs
                )
                upload(self.farm.upload_url, UPLOAD_USER, PASSWORD, sdist)
                raise SourceError("not archived yet")
            return real_find(index_url, project, version, **options)

        self.setup(
            DownloadSource(farm=self.farm, upload_password=PASSWORD), package="raced", version="1.0"
        )
        self.expect_commands(*self.expectations(sdist.name))
        self.expect_outcome(result=SUCCESS, state_string="raced-1.0.tar.gz (upstream)")
        self.expect_property("source_url", f"{self.farm.sources_url}raced/raced-1.0.tar.gz")
        with mock.patch.object(source_archive, "find_sdist", archived_by_another_builder):
            await self.run_step()

    async def test_a_published_pure_wheel_skips_the_build(self):
        wheel = make_wheel(self.farm.root, "already", "1.0")
        upload(
            self.farm.upload_url,
            UPLOAD_USER,
            PASSWORD,
            wheel,
            provenance={
                "build_number": 4,
                "builder": "x86_64-cp310",
                "build_url": "http://ui/#/builders/3/builds/4",
            },
        )
        self.setup(DownloadSource(farm=self.farm, upload_password=PASSWORD), package="already")
        self.expect_commands(clear_build_dir())
        self.expect_outcome(
            result=SUCCESS, state_string="pure wheel already published by build 4 of x86_64-cp310"
        )
        self.expect_property("pure_wheel_published_by", "http://ui/#/builders/3/builds/4")
        await self.run_step()

    def test_a_project_upstream_does_not_have_fails_clearly(self):
        self.setup(DownloadSource(farm=self.farm, upload_password=PASSWORD), package="nowhere")
        self.expect_commands(clear_build_dir())
        self.expect_outcome(
            result=FAILURE, state_string=f"nowhere is not on {self.farm.upstream} (failure)"
        )
        return self.run_step()


def test_the_last_build_directory_is_gone_at_once_and_deleted_behind_the_build():
    # As a worker's user, not root (for whom no folder is unwritable). The build folder holds a
    # folder the package's code made unwritable and an environment's file linked to uv's cache.
    as_worker = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    with tempfile.TemporaryDirectory() as top:
        builder, cache = Path(top) / "builder", Path(top) / "cache"
        locked = builder / "build" / "src" / "locked"
        locked.mkdir(parents=True)
        (locked / "file").write_text("left behind")
        cache.mkdir()
        (cache / "module.py").write_text("cached")
        (cache / "module.py").chmod(0o644)
        (builder / "build" / "env").mkdir()
        os.link(cache / "module.py", builder / "build" / "env" / "module.py")
        locked.chmod(0)
        if os.geteuid() == 0:
            shutil.chown(top, "nobody")
            for path in (builder, *builder.rglob("*"), cache, *cache.iterdir()):
                os.chown(path, pwd.getpwnam("nobody").pw_uid, -1, follow_symlinks=False)
        for _ in range(2):  # the second time, there is no directory to clear
            clear = subprocess.run(
                [*(as_worker if os.geteuid() == 0 else []), "sh", "-c", CLEAR_BUILD_DIR]
                + ["sh", "build"],
                cwd=builder,
            )
            assert clear.returncode == 0 and not (builder / "build").exists()
        deadline = time.monotonic() + 60
        while list(builder.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert list(builder.iterdir()) == []
        cached = (cache / "module.py").stat()
        assert (cached.st_mode & 0o777, cached.st_nlink) == (0o644, 1)


def test_a_wheel_whose_requires_python_excludes_the_builder_is_named(tmp_path):
    from wheelwright.steps.update_index import excludes_python

    wheel = make_wheel(tmp_path, "newpy", "1.0", requires_python=">=3.13")
    assert excludes_python(wheel, "3.11") == ">=3.13"
    assert excludes_python(wheel, "3.13") is None
    assert excludes_python(make_wheel(tmp_path, "anypy", "1.0"), "3.11") is None  # >=3.8
