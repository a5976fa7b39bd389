"""Per-package settings, patches, the allow-list and the review queue, and the CLI's input checks."""

from __future__ import annotations

import json

import pytest
from buildbot.process.properties import Properties

from wheelwright.master.builders import container_image
from wheelwright.master.cli import parse_pin
from wheelwright.master.review import AllowlistError, queue_for_review, read_allowlist
from wheelwright.master.settings import PackageSettings, SettingsError, load_settings, patches_for


def test_settings_default_and_read(tmp_path):
    assert load_settings(tmp_path, "Some.Pkg") == PackageSettings()
    (tmp_path / "settings").mkdir()
    (tmp_path / "settings" / "some_pkg.yaml").write_text("build_frontend: build\nimports: [some_pkg, some_pkg.sub]\n")
    assert load_settings(tmp_path, "Some.Pkg") == PackageSettings(build_frontend="build", imports=["some_pkg", "some_pkg.sub"])


@pytest.mark.parametrize("text, message", [
    ("buld_frontend: pip\n", "unknown setting buld_frontend"),
    ("build_frontend: poetry\n", "build_frontend must be one of pip, build"),
    ("imports: ['not a module']\n", "imports must be a list of module names"),
    ("- a list\n", "expected a mapping"),
])
def test_bad_settings_name_the_file(tmp_path, text, message):
    (tmp_path / "settings").mkdir()
    path = tmp_path / "settings" / "pkg.yaml"
    path.write_text(text)
    with pytest.raises(SettingsError, match=message) as err:
        load_settings(tmp_path, "pkg")
    assert str(err.value).startswith(str(path))


def test_patches_for_every_version_and_this_one_in_name_order(tmp_path):
    for folder, name in [("my_pkg", "0003-c.patch"), ("my-pkg-1.0", "0001-a.patch"), ("my_pkg-1.0.0", "0002-b.patch"),
                         ("my_pkg-2.0", "0000-other-version.patch"), ("my_pkg", "notes.txt")]:
        (tmp_path / "patches" / folder).mkdir(parents=True, exist_ok=True)
        (tmp_path / "patches" / folder / name).write_text("")
    assert [p.name for p in patches_for(tmp_path, "My.Pkg", "1.0")] == ["0001-a.patch", "0002-b.patch", "0003-c.patch"]
    assert patches_for(tmp_path, "unrelated", "1.0") == []


def test_allowlist_and_review_queue(tmp_path):
    (tmp_path / "allowlist.txt").write_text("# reviewed\nRequests  # by ops\n\nzope.interface\n")
    assert read_allowlist(tmp_path / "allowlist.txt") == {"requests", "zope-interface"}
    (tmp_path / "bad.txt").write_text("requests\nnot a name\n")
    with pytest.raises(AllowlistError, match=f"{tmp_path}/bad.txt:2: 'not a name' is not a project name"):
        read_allowlist(tmp_path / "bad.txt")
    queue = tmp_path / "review-queue.json"
    queue_for_review(queue, "New_Thing", "build requirement of a 1.0", "http://ui/#/builders/1/builds/1")
    queue_for_review(queue, "new-thing", "build requirement of a 1.0", "http://ui/#/builders/1/builds/1")
    queue_for_review(queue, "new-thing", "install-time dependency of b 2.0", "http://ui/#/builders/1/builds/2")
    entries = json.loads(queue.read_text())
    assert list(entries) == ["new-thing"]
    assert [r["reason"] for r in entries["new-thing"]["requests"]] == [
        "build requirement of a 1.0", "install-time dependency of b 2.0"]


def test_build_takes_one_pinned_version():
    assert parse_pin("Foo_Bar==1.2.3") == ("Foo_Bar", "1.2.3")
    for bad in ("foo", "foo>=1", "foo==1.*", "foo==1,!=2", "not a name==1"):
        with pytest.raises(SystemExit):
            parse_pin(bad)


def test_the_container_image_is_chosen_from_the_package_settings(tmp_path):
    (tmp_path / "settings").mkdir()
    (tmp_path / "settings" / "needs-fortran.yaml").write_text("container_image: localhost/worker:fortran\n")
    (tmp_path / "settings" / "broken.yaml").write_text("container_image: [\n")
    image = container_image(tmp_path, "localhost/worker:default")
    for package, expected in (("needs-fortran", "localhost/worker:fortran"), ("plain", "localhost/worker:default"),
                              ("broken", "localhost/worker:default")):
        rendered = []
        Properties(package=package).render(image).addCallback(rendered.append)
        assert rendered == [expected]
