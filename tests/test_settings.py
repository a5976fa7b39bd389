"""Per-package settings, patches, the allow-list and the review queue, and the CLI's input checks."""

from __future__ import annotations

import json
import shutil

import pytest
from buildbot.process.properties import Properties
from packaging.specifiers import SpecifierSet

from wheelwright.cli.main import parse_pin
from wheelwright.config.builders import container_image
from wheelwright.farm.settings import Farm
from wheelwright.policy.lastgood import ConfigError
from wheelwright.policy.package_settings import (
    PackageSettings,
    SettingsError,
    patches_for,
    settings_for,
)
from wheelwright.policy.review import (
    AllowlistError,
    ReviewError,
    allowlist_for,
    decide,
    queue_for_review,
    read_allowlist,
)


def settings_file(farm: Farm, name: str, text: str):
    path = farm.settings_dir / "settings" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_settings_default_and_read(tmp_path):
    farm = Farm(root=tmp_path)
    assert settings_for(farm, "Some.Pkg") == (PackageSettings(), None)
    settings_file(
        farm, "some_pkg.yaml", "build_frontend: build\nimports: [some_pkg, some_pkg.sub]\n"
    )
    assert settings_for(farm, "Some.Pkg") == (
        PackageSettings(build_frontend="build", imports=["some_pkg", "some_pkg.sub"]),
        None,
    )


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "buld_frontend: pip\n",
            r"unknown setting buld_frontend \(did you mean build_frontend\?\)",
        ),
        (
            "build_frontend: poetry\n",
            r"build_frontend: Input should be 'build' or 'pip' \(got 'poetry'\)",
        ),
        ("imports: ['not a module']\n", r"imports: 'not a module' is not a module name"),
        # a string where a list belongs is no list of its letters
        ("imports: numpy\n", r"imports: Input should be a valid list \(got 'numpy'\)"),
        ("container_image: 5\n", r"container_image: Input should be a valid string \(got 5\)"),
        ("prereleases: 'yes'\n", r"prereleases: Input should be a valid boolean \(got 'yes'\)"),
        ("min_release_age: sixty\n", r"min_release_age: .* \(got 'sixty'\)"),
        ("rebuild_bump: major\n", r"rebuild_bump: Input should be 'post', 'local' or 'build-tag'"),
        ("system_requirements: [Lib_Yaml]\n", r"'Lib_Yaml' is not a Debian package name"),
        ("repair_off: ' '\n", r"repair_off: must say why repair is off"),
        # fromager's keys this farm does not act on yet are named as such, not as typos
        (
            "changelog:\n  '1.0': [fix]\n",
            r"changelog is a fromager setting this farm does not act on yet",
        ),
        ("env:\n  C FLAGS: -O3\n", r"env: 'C FLAGS' is not an environment variable's name"),
        ("config_settings:\n  mode: 3\n", r"config_settings: .* \(got "),
        ("- a list\n", "expected a mapping"),
    ],
)
def test_bad_settings_name_the_file(tmp_path, text, message):
    farm = Farm(root=tmp_path)
    path = settings_file(farm, "pkg.yaml", text)
    with pytest.raises(SettingsError, match=message) as err:
        settings_for(farm, "pkg")
    assert str(err.value).startswith(str(path))


def test_a_broken_settings_file_gives_way_to_its_last_good_version(tmp_path):
    farm = Farm(root=tmp_path)
    path = settings_file(farm, "pkg.yaml", "build_frontend: build\n")
    assert settings_for(farm, "pkg") == (PackageSettings(build_frontend="build"), None)
    path.write_text("build_frontend: pip\nimports: [\n")
    settings, warning = settings_for(farm, "pkg")
    assert settings == PackageSettings(build_frontend="build")
    assert (
        warning.startswith(f"{path}:3: not valid YAML") and "using its last good version" in warning
    )
    path.write_text("imports: [pkg]\n")
    assert settings_for(farm, "pkg") == (PackageSettings(imports=["pkg"]), None)
    never_good = settings_file(farm, "other.yaml", "colour: blue\n")
    with pytest.raises(ConfigError, match=f"{never_good}: unknown setting colour"):
        settings_for(farm, "other")


def test_a_broken_allowlist_gives_way_to_its_last_good_version(tmp_path):
    farm = Farm(root=tmp_path)
    farm.allowlist.write_text("not a name\n")
    with pytest.raises(ConfigError, match="allowlist.txt:1"):
        allowlist_for(farm)
    farm.allowlist.write_text("requests\n")
    assert allowlist_for(farm) == ({"requests": [SpecifierSet()]}, None)
    farm.allowlist.write_text("requests\nurllib3\nnot a name\n")
    allowlist, warning = allowlist_for(farm)
    assert set(allowlist) == {"requests"}
    assert warning.startswith(f"{farm.allowlist}:3: 'not a name' is not a project name")


def test_patches_for_every_version_and_this_one_in_name_order(tmp_path):
    for folder, name in [
        ("my_pkg", "0003-c.patch"),
        ("my-pkg-1.0", "0001-a.patch"),
        ("my_pkg-1.0.0", "0002-b.patch"),
        ("my_pkg-2.0", "0000-other-version.patch"),
        ("my_pkg", "notes.txt"),
    ]:
        (tmp_path / "patches" / folder).mkdir(parents=True, exist_ok=True)
        (tmp_path / "patches" / folder / name).write_text("")
    assert [p.name for p in patches_for(tmp_path, "My.Pkg", "1.0")] == [
        "0001-a.patch",
        "0002-b.patch",
        "0003-c.patch",
    ]
    assert patches_for(tmp_path, "unrelated", "1.0") == []


def read_allowlist_text(tmp_path, text: str):
    (tmp_path / "one.txt").write_text(text)
    return read_allowlist(tmp_path / "one.txt")


def test_allowlist_and_review_queue(tmp_path):
    (tmp_path / "allowlist.txt").write_text(
        "# reviewed\nRequests  # by ops\n\nzope.interface\ntorch==2.1.*\ntorch == 2.2.*\nnumpy>=2\n"
    )
    allowlist = read_allowlist(tmp_path / "allowlist.txt")
    assert set(allowlist) == {"requests", "zope-interface", "torch", "numpy"}
    assert [allowlist.wants("torch", v) for v in ("2.0.1", "2.1.2", "2.2.0", "2.3.0")] == [
        False,
        True,
        True,
        False,
    ]
    assert allowlist.wants("numpy", "2.1.0") and not allowlist.wants("numpy", "1.26.4")
    assert not allowlist.wants("numpy", "2.2.0rc1") and allowlist.wants(
        "numpy", "2.2.0rc1", prereleases=True
    )
    assert allowlist.wants("requests", "2.32.3") and not allowlist.wants("flask", "3.0")
    assert read_allowlist_text(tmp_path, "numpy==2.2.0rc1\n").wants("numpy", "2.2.0rc1")
    (tmp_path / "extras.txt").write_text("requests[socks]\n")
    with pytest.raises(AllowlistError, match="a name and version specifiers only"):
        read_allowlist(tmp_path / "extras.txt")
    (tmp_path / "bad.txt").write_text("requests\nnot a name\n")
    with pytest.raises(
        AllowlistError, match=f"{tmp_path}/bad.txt:2: 'not a name' is not a project name"
    ):
        read_allowlist(tmp_path / "bad.txt")
    queue = tmp_path / "review-queue.json"
    queue_for_review(
        queue, "New_Thing", "build requirement of a 1.0", "http://ui/#/builders/1/builds/1"
    )
    queue_for_review(
        queue, "new-thing", "build requirement of a 1.0", "http://ui/#/builders/1/builds/1"
    )
    queue_for_review(
        queue, "new-thing", "install-time dependency of b 2.0", "http://ui/#/builders/1/builds/2"
    )
    entries = json.loads(queue.read_text())
    assert list(entries) == ["new-thing"]
    assert [r["reason"] for r in entries["new-thing"]["requests"]] == [
        "build requirement of a 1.0",
        "install-time dependency of b 2.0",
    ]


def test_build_takes_one_pinned_version():
    from wheelwright.cli.main import UsageError

    assert parse_pin("Foo_Bar==1.2.3") == ("Foo_Bar", "1.2.3")
    for bad in ("foo", "foo>=1", "foo==1.*", "foo==1,!=2", "not a name==1"):
        with pytest.raises(UsageError):
            parse_pin(bad)
    # `build NAME`: the newest release (the version left for the build to find)
    assert parse_pin("foo", newest=True) == ("foo", "")
    with pytest.raises(UsageError, match="or be a bare NAME"):
        parse_pin("foo>=1", newest=True)


def test_the_container_image_is_chosen_from_the_package_settings(tmp_path):
    farm = Farm(root=tmp_path)
    settings_file(farm, "needs-fortran.yaml", "container_image: localhost/worker:fortran\n")
    settings_file(farm, "broken.yaml", "container_image: [\n")
    image = container_image(farm, "localhost/worker:default")
    for package, expected in (
        ("needs-fortran", "localhost/worker:fortran"),
        ("plain", "localhost/worker:default"),
        ("broken", "localhost/worker:default"),
    ):
        rendered = []
        Properties(package=package).render(image).addCallback(rendered.append)
        assert rendered == [expected]


def test_approving_allow_lists_and_logs_and_rejecting_only_logs(tmp_path):
    farm = Farm(root=tmp_path)
    farm.allowlist.write_text("already")  # no newline at the end
    for project in ("New_Thing", "spam"):
        queue_for_review(
            farm.review_queue,
            project,
            "install-time dependency of a 1.0",
            "http://ui/#/builders/1/builds/1",
        )
    entry = decide(farm, "new-thing", approve=True, reviewer="ann", note="looked at it")
    assert entry["requests"][0]["reason"] == "install-time dependency of a 1.0"
    decide(farm, "spam", approve=False, reviewer="ann", note="typosquat")
    assert set(read_allowlist(farm.allowlist)) == {"already", "new-thing"}
    assert "new-thing  # approved by ann" in farm.allowlist.read_text()
    assert json.loads(farm.review_queue.read_text()) == {}
    log = (farm.logs_dir / "review.log").read_text().splitlines()
    assert [line.split(" ", 1)[1] for line in log] == [
        "approved new-thing by ann: looked at it",
        "rejected spam by ann: typosquat",
    ]
    with pytest.raises(ReviewError, match="spam is not in the review queue"):
        decide(farm, "spam", approve=True, reviewer="ann", note="")


def test_a_note_or_name_cannot_add_a_line_to_the_allowlist_or_the_logs(tmp_path):
    farm = Farm(root=tmp_path)
    queue_for_review(farm.review_queue, "spam", "install-time dependency of a 1.0", "http://ui/")
    for note, reviewer in (("ok\nevil  # approved by root", "ann"), ("ok", "ann\revil")):
        with pytest.raises(ReviewError, match="may not hold a line break"):
            decide(farm, "spam", approve=True, reviewer=reviewer, note=note)
    assert read_allowlist(farm.allowlist) == [] if farm.allowlist.exists() else True
    assert not (farm.logs_dir / "review.log").exists()
    assert "spam" in json.loads(farm.review_queue.read_text())  # nothing was decided


def test_a_yank_reason_cannot_add_a_line_to_the_yank_log(tmp_path):
    from wheelwright.indexhost.upload import UploadError
    from wheelwright.publishing.yanks import yank_and_log

    farm = Farm(root=tmp_path)
    with pytest.raises(UploadError, match="may not hold a line break"):
        yank_and_log(farm, "pw", "demo", "1.0", "broken\n2026 yank x by root", None, "ann")
    assert not (farm.logs_dir / "yank.log").exists()


def test_the_settings_model_takes_the_frontends_and_bumps_the_farm_knows():
    import typing

    from wheelwright.common.runtime import FRONTENDS
    from wheelwright.farm.settings import BUMPS

    fields = PackageSettings.model_fields
    assert set(typing.get_args(fields["build_frontend"].annotation)) == set(FRONTENDS)
    (bumps, _) = typing.get_args(fields["rebuild_bump"].annotation)
    assert set(typing.get_args(bumps)) == set(BUMPS)


def test_settings_check_names_every_file_no_build_would_read_and_every_bad_one(tmp_path):
    """fromager's lint: misnamed files and folders are silently skipped by builds, so the check
    names them, with the bad files, a line each, and exits 1; a good folder exits 0."""
    import subprocess

    from tests.farm import WHEELWRIGHT

    settings = tmp_path / "overrides"
    (settings / "settings").mkdir(parents=True)
    (settings / "settings" / "numpy.yml").write_text("imports: [numpy]\n")
    (settings / "settings" / "Flask.yaml").write_text("imports: [flask]\n")
    (settings / "settings" / "lxml.yaml").write_text("imports: lxml\n")
    (settings / "settings" / "pillow.yaml").write_text("imports: [PIL]\n")
    for folder in ("NumPy-2.0.0", "numpy-2.0.0", "pillow"):
        (settings / "patches" / folder).mkdir(parents=True)
    (settings / "patches" / "numpy-2.0.0" / "0001-fix.diff").write_text("x")
    (settings / "patches" / "pillow" / "0001-fix.patch").write_text("@@ -1 +1 @@\n-a\n+b\n")

    def check(*args):
        return subprocess.run(
            [WHEELWRIGHT, "--state", str(tmp_path), "settings", "check", *args],
            capture_output=True,
            text=True,
        )

    said = check("--settings", str(settings))
    assert said.returncode == 1, said.stderr
    assert said.stdout.splitlines() == [
        f"{settings}/settings/Flask.yaml: not read: name it flask.yaml (the project's canonical "
        "name, - or _)",
        f"{settings}/settings/lxml.yaml: imports: Input should be a valid list (got 'lxml')",
        f"{settings}/settings/numpy.yml: not read: settings files are named NAME.yaml",
        f"{settings}/patches/NumPy-2.0.0: not read: patches live in folders named NAME or "
        "NAME-VERSION (the project's canonical name)",
        f"{settings}/patches/numpy-2.0.0/0001-fix.diff: not applied: patches are named *.patch",
    ]
    for path in (*(settings / "settings").glob("[Fln]*"), settings / "patches" / "NumPy-2.0.0"):
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    (settings / "patches" / "numpy-2.0.0" / "0001-fix.diff").unlink()
    said = check("--settings", str(settings))
    assert said.returncode == 0 and said.stdout.startswith("ok:"), said.stdout


def test_a_project_built_meanwhile_leaves_the_review_queue_and_its_waiters_follow_it(tmp_path):
    """tomli, queued as a build's unknown dependency, then built by a bootstrap: the queue forgets
    it, and the build that waited on it waits for its wheel (forced again once published). A
    release the scan held stays for its reviewer."""
    from wheelwright.policy.review import (
        builds_to_force,
        forget_built,
        queue_for_review,
        read_queue,
    )

    farm = Farm(root=tmp_path)
    waiting = {"package": "app", "version": "1.0", "builder": "x86_64-cp311"}
    queue_for_review(farm.review_queue, "tomli", "dependency of app 1.0", "b/1", waiting=waiting)
    held = {"version": "2.0", "sha256": "ab" * 32, "findings": []}
    queue_for_review(farm.review_queue, "held-one", "scan", "b/2", held=held)
    assert forget_built(farm, "tomli") and not forget_built(farm, "held-one")
    assert list(read_queue(farm.review_queue)) == ["held-one"]
    (forced,) = builds_to_force(farm, "tomli", "x86_64-cp311", pure=True)
    assert forced["package"] == "app" and forced["state"].startswith("forced again")
    assert not forget_built(farm, "never-queued")
