"""The index on disk and the index host serving it."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import requests

from tests.sdists import setuptools_sdist
from tests.wheels import make_wheel
from wheelwright.common.files import sha256_of
from wheelwright.common.lookup import published_as
from wheelwright.common.runtime import clean_pip_env
from wheelwright.indexhost import accounts
from wheelwright.indexhost.store import AlreadyPublished, IndexStore, PublishError
from wheelwright.indexhost.upload import UploadError, upload, yank

JSON = "application/vnd.pypi.simple.v1+json"


def publish(store: IndexStore, path: Path, **kwargs) -> dict:
    return store.publish(path.name, path, sha256=sha256_of(path), **kwargs)


def test_publish_writes_pep503_pep691_and_pep658(tmp_path):
    store = IndexStore(tmp_path / "index")
    wheel = make_wheel(tmp_path, "demo", "1.0", requires=["other>=1"])
    publish(store, wheel, provenance={"build_number": 7})
    project = store.project_dir("demo")
    listing = json.loads((project / "index.json").read_text())
    (entry,) = listing["files"]
    metadata = (project / f"{wheel.name}.metadata").read_bytes()
    assert entry["hashes"] == {"sha256": sha256_of(wheel)}
    assert entry["core-metadata"] == {"sha256": hashlib.sha256(metadata).hexdigest()}
    assert entry["requires-python"] == ">=3.8"
    assert listing["versions"] == ["1.0"]
    assert b"Requires-Dist: other>=1" in metadata
    html = (project / "index.html").read_text()
    assert f'href="{wheel.name}#sha256={sha256_of(wheel)}"' in html
    assert 'data-requires-python="&gt;=3.8"' in html
    assert json.loads((project / f"{wheel.name}.provenance.json").read_text()) == {
        "build_number": 7
    }
    assert json.loads((store.simple / "index.json").read_text())["projects"] == [{"name": "demo"}]


def test_metadata_installers_accept_is_published_with_warnings(tmp_path):
    # What setuptools 56 to 76 write into every wheel with a license file: License-File came
    # with Metadata-Version 2.4, and pip, uv and PyPI take it under 2.1 all the same.
    store = IndexStore(tmp_path / "index")
    wheel = make_wheel(tmp_path, "demo", "1.0", extra_metadata=["License-File: LICENSE"])
    entry = publish(store, wheel, provenance={"build_number": 7})
    (warning,) = entry["provenance"]["metadata_warnings"]
    assert "license-file introduced in metadata version 2.4" in warning
    provenance = json.loads(
        (store.project_dir("demo") / f"{wheel.name}.provenance.json").read_text()
    )
    assert provenance == {"build_number": 7, "metadata_warnings": [warning]}


@pytest.mark.parametrize(
    "options, field",
    [
        ({"requires": ["other >=>= 1"]}, "Requires-Dist"),
        ({"requires_python": "three"}, "Requires-Python"),
    ],
)
def test_metadata_installers_act_on_must_parse(tmp_path, options, field):
    store = IndexStore(tmp_path / "index")
    wheel = make_wheel(tmp_path, "demo", "1.0", **options)
    with pytest.raises(PublishError, match=f"METADATA's {field} does not parse"):
        publish(store, wheel)
    assert not store.project_dir("demo").exists() or not list(
        store.project_dir("demo").glob("*.whl")
    )


def test_a_published_file_is_never_replaced(tmp_path):
    store = IndexStore(tmp_path / "index")
    wheel = make_wheel(tmp_path, "demo", "1.0")
    publish(store, wheel)
    original = (store.project_dir("demo") / wheel.name).read_bytes()
    (tmp_path / "other").mkdir()
    other = make_wheel(tmp_path / "other", "demo", "1.0", requires=["changed"])
    with pytest.raises(AlreadyPublished):
        publish(store, other)
    assert (store.project_dir("demo") / wheel.name).read_bytes() == original


@pytest.mark.parametrize("case", ["bad-sha", "other-project-metadata", "not-a-zip", "bad-name"])
def test_refused_files_leave_the_index_as_it_was(tmp_path, case):
    store = IndexStore(tmp_path / "index")
    before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "index").rglob("*"))
    wheel = make_wheel(
        tmp_path,
        "demo",
        "1.0",
        metadata_name="someone-else" if case == "other-project-metadata" else None,
    )
    sha256 = sha256_of(wheel)
    filename = wheel.name
    if case == "bad-sha":
        sha256 = "0" * 64
    elif case == "not-a-zip":
        wheel.write_bytes(b"not a zip")
        sha256 = sha256_of(wheel)
    elif case == "bad-name":
        filename = "../demo-1.0-py3-none-any.whl"
    with pytest.raises(PublishError):
        store.publish(filename, wheel, sha256=sha256)
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "index").rglob("*")) == before


def test_concurrent_publishes_all_land_in_valid_listings(tmp_path):
    store = IndexStore(tmp_path / "index")
    wheels = [make_wheel(tmp_path, "many", f"1.{n}") for n in range(10)]
    wheels += [make_wheel(tmp_path, f"proj{n}", "1.0") for n in range(10)]
    threads = [threading.Thread(target=publish, args=(store, w)) for w in wheels]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    listed = json.loads((store.project_dir("many") / "index.json").read_text())["files"]
    assert sorted(f["filename"] for f in listed) == sorted(w.name for w in wheels[:10])
    projects = [
        p["name"] for p in json.loads((store.simple / "index.json").read_text())["projects"]
    ]
    assert projects == sorted(["many"] + [f"proj{n}" for n in range(10)])


def get(url: str, accept: str | None = None):
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(request) as response:
        return response.headers.get("content-type"), response.read(), response.url


def test_host_negotiates_json_or_html_and_redirects_to_the_normal_name(index_host, tmp_path):
    upload(index_host + "legacy/", "uploader", "s3cret", make_wheel(tmp_path, "Demo_Pkg", "1.0"))
    ctype, body, _ = get(index_host + "simple/demo-pkg/", JSON)
    assert ctype == JSON and json.loads(body)["name"] == "demo-pkg"
    ctype, body, _ = get(index_host + "simple/demo-pkg/", "text/html")
    assert ctype.startswith("text/html") and b"Demo_Pkg-1.0-py3-none-any.whl" in body
    ctype, _, _ = get(index_host + "simple/demo-pkg/", f"text/html;q=0.5, {JSON};q=0.9")
    assert ctype == JSON
    ctype, _, _ = get(index_host + "simple/demo-pkg/?format=" + urllib.parse.quote(JSON, safe=""))
    assert ctype == JSON
    _, _, url = get(index_host + "simple/Demo.Pkg/")
    assert url.endswith("/simple/demo-pkg/")
    with pytest.raises(urllib.error.HTTPError) as err:
        get(index_host + "simple/demo-pkg/.files.json")
    assert err.value.code == 404


def test_sdists_go_to_the_source_index(index_host, tmp_path):
    upload(
        index_host + "legacy/", "uploader", "s3cret", setuptools_sdist(tmp_path, "srcpkg", "1.0")
    )
    _, body, _ = get(index_host + "sources/simple/srcpkg/", JSON)
    assert [f["filename"] for f in json.loads(body)["files"]] == ["srcpkg-1.0.tar.gz"]
    with pytest.raises(urllib.error.HTTPError):
        get(index_host + "simple/srcpkg/")


def test_a_published_wheel_is_found_by_its_sha256(index_host, tmp_path):
    wheel = make_wheel(tmp_path, "hashed", "1.0")
    upload(index_host + "legacy/", "uploader", "s3cret", wheel)
    assert published_as(index_host + "simple/", sha256_of(wheel)) == ("hashed", wheel.name)
    assert published_as(index_host + "simple/", "0" * 64) is None
    with pytest.raises(urllib.error.HTTPError, match="404"):  # only sha256s are names
        get(index_host + "by-sha256/..%2Fsimple%2Findex.json")


def test_files_published_before_hashes_were_kept_are_found_after_a_restart(tmp_path):
    store = IndexStore(tmp_path)
    wheel = make_wheel(tmp_path, "older", "1.0")
    publish(store, wheel)
    for path in store.hashes.iterdir():
        path.unlink()
    assert store.find_hash(sha256_of(wheel)) is None
    store.reconcile()
    assert store.find_hash(sha256_of(wheel)) == f"older/{wheel.name}"


def test_uploads_need_the_right_password(index_host, tmp_path):
    wheel = make_wheel(tmp_path, "guarded", "1.0")
    with pytest.raises(UploadError) as err:
        upload(index_host + "legacy/", "uploader", "wrong", wheel)
    assert err.value.status == 401
    request = urllib.request.Request(
        index_host + "legacy/",
        data=b"x",
        method="POST",
        headers={"Authorization": "Basic " + base64.b64encode(b"nobody:s3cret").decode()},
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request)
    assert err.value.code == 401
    with pytest.raises(urllib.error.HTTPError):
        get(index_host + "simple/guarded/")


def test_a_password_found_right_is_not_hashed_again_and_a_wrong_or_changed_one_is(
    tmp_path, monkeypatch
):
    users = tmp_path / "users.json"
    accounts.add(users, "uploader", "s3cret")
    accounts.add(users, "other", "different")
    hashed = []
    slow = accounts._hash
    monkeypatch.setattr(accounts, "_hash", lambda *a: hashed.append(a[0]) or slow(*a))
    assert accounts.check(users, "uploader", "s3cret") and hashed == ["s3cret"]
    assert accounts.check(users, "uploader", "s3cret") and hashed == ["s3cret"]
    assert not accounts.check(users, "uploader", "wrong") and hashed[-1] == "wrong"
    assert not accounts.check(users, "other", "s3cret") and hashed[-1] == "s3cret"
    accounts.add(users, "uploader", "n3w")  # a changed password: the old one is refused
    assert not accounts.check(users, "uploader", "s3cret")
    assert accounts.check(users, "uploader", "n3w")
    assert hashed[-3:] == ["n3w", "s3cret", "n3w"]  # the new hash (add), then both checks


def twine_upload(index_host: str, wheel: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "twine",
            "upload",
            "--non-interactive",
            "--disable-progress-bar",
            "--repository-url",
            index_host + "legacy/",
            "-u",
            "uploader",
            "-p",
            "s3cret",
            str(wheel),
        ],
        capture_output=True,
        text=True,
    )


def test_twine_uploads_to_the_index_host(index_host, tmp_path):
    wheel = make_wheel(tmp_path, "twined", "1.0")
    proc = twine_upload(index_host, wheel)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _, body, _ = get(index_host + "simple/twined/", JSON)
    listing = json.loads(body)
    assert listing["files"][0]["hashes"]["sha256"] == sha256_of(wheel)
    # the same bytes again (an upload whose answer was lost) succeed and change nothing
    assert twine_upload(index_host, wheel).returncode == 0
    assert json.loads(get(index_host + "simple/twined/", JSON)[1]) == listing
    # other bytes under the published name never replace it
    other = tmp_path / "other"
    other.mkdir()
    make_wheel(other, "twined", "1.0", payload=b"other bytes")
    proc = twine_upload(index_host, other / wheel.name)
    assert proc.returncode != 0 and "409" in proc.stdout + proc.stderr
    assert json.loads(get(index_host + "simple/twined/", JSON)[1]) == listing


def test_a_yanked_version_is_taken_only_when_pinned(index_host, tmp_path):
    for version in ("1.0", "2.0"):
        upload(index_host + "legacy/", "uploader", "s3cret", make_wheel(tmp_path, "yanky", version))
    assert (
        requests.post(
            index_host + "yank/",
            data={"name": "yanky", "version": "2.0", "reason": "broken"},
            timeout=30,
        ).status_code
        == 401
    )
    answer = yank(index_host + "yank/", "uploader", "s3cret", "yanky", "2.0", "broken build")
    assert answer == {"files": ["yanky-2.0-py3-none-any.whl"], "yanked": "broken build"}
    listing = json.loads(get(index_host + "simple/yanky/", JSON)[1])
    assert {f["filename"]: f.get("yanked", False) for f in listing["files"]} == {
        "yanky-1.0-py3-none-any.whl": False,
        "yanky-2.0-py3-none-any.whl": "broken build",
    }
    assert (
        'data-yanked="broken build"' in get(index_host + "simple/yanky/", "text/html")[1].decode()
    )
    assert get(index_host + "simple/yanky/yanky-2.0-py3-none-any.whl")[1]  # never deleted
    for installer in ("pip", "uv"):
        assert installed(index_host, tmp_path / installer, installer, "yanky") == "1.0"
        assert (
            installed(index_host, tmp_path / f"{installer}-pinned", installer, "yanky==2.0")
            == "2.0"
        )
    yank(index_host + "yank/", "uploader", "s3cret", "yanky", "2.0", None)
    assert installed(index_host, tmp_path / "after", "pip", "yanky") == "2.0"
    with pytest.raises(UploadError, match="400.*no file"):
        yank(index_host + "yank/", "uploader", "s3cret", "yanky", "3.0", "nothing there")
    with pytest.raises(UploadError, match="400.*no file of nosuch 1.0"):
        yank(index_host + "yank/", "uploader", "s3cret", "nosuch", "1.0", "never built")
    assert get(index_host + "simple/")[1].count(b"nosuch") == 0


def installed(index_host: str, venv: Path, installer: str, requirement: str) -> str:
    """Install requirement from the index alone into a fresh venv; the version it took."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    cmd = (
        [sys.executable, "-m", "pip", "--python", python, "install"]
        if installer == "pip"
        else [str(Path(sys.executable).with_name("uv")), "pip", "install", "--python", python]
    )
    subprocess.run(
        [*cmd, "--index-url", index_host + "simple/", requirement],
        check=True,
        capture_output=True,
        env=clean_pip_env(),
    )
    return subprocess.run(
        [python, "-c", "import importlib.metadata as m; print(m.version('yanky'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def test_the_index_has_a_page_for_people_beside_the_ones_installers_read(index_host, tmp_path):
    wheel = make_wheel(tmp_path, "shown", "1.0")
    upload(
        index_host + "legacy/",
        "uploader",
        "s3cret",
        wheel,
        provenance={
            "build_url": "http://ui/#/builders/3/builds/7",
            "build_number": 7,
            "builder": "x86_64-cp311",
        },
    )
    yank(index_host + "yank/", "uploader", "s3cret", "shown", "1.0", "broken <b>")
    _, page, _ = get(index_host + "project/shown/")
    assert b'<a href="http://ui/#/builders/3/builds/7">build 7 of x86_64-cp311</a>' in page
    assert b"yanked: broken &lt;b&gt;" in page
    ctype, _, _ = get(index_host + "simple/shown/", JSON)
    assert ctype == JSON  # installers' pages as they were
    with pytest.raises(urllib.error.HTTPError, match="404"):
        get(index_host + "project/nothing-here/")


def test_the_project_page_escapes_every_field_and_draws_no_other_scheme():
    from wheelwright.indexhost.server import human_page

    page = human_page(
        "demo",
        {
            "a": {
                "version": "1.0",
                "filename": 'demo-1.0-py3-none-any.whl"><script>x</script>',
                "upload-time": "<img src=x onerror=alert(1)>",
                "yanked": "<b>gone</b>",
                "provenance": {
                    "build_url": "javascript:alert(1)",
                    "build_number": "<i>7</i>",
                    "builder": "<svg/onload=alert(1)>",
                },
            }
        },
    )
    for raw in ("<script>", "<img", "<svg", "<i>7", "javascript:", "<b>gone"):
        assert raw not in page, raw
    assert "build &lt;i&gt;7&lt;/i&gt; of &lt;svg/onload=alert(1)&gt;" in page


def test_a_login_failure_costs_the_same_for_an_unknown_user_and_guesses_are_rate_limited(
    tmp_path, monkeypatch
):
    users = tmp_path / "users.json"
    accounts.add(users, "uploader", "s3cret")
    hashed = []
    slow = accounts._hash
    monkeypatch.setattr(accounts, "_hash", lambda *a: hashed.append(a[0]) or slow(*a))
    monkeypatch.setattr(accounts, "_FAILURES", {})
    assert not accounts.check(users, "nobody", "guess") and hashed == ["guess"]
    for n in range(accounts.FAILURES_ALLOWED):
        assert not accounts.check(users, "uploader", f"guess{n}")
    assert len(hashed) == 1 + accounts.FAILURES_ALLOWED  # each failure hashed
    # the name has used its failures: even the right password waits for the window to pass
    assert not accounts.check(users, "uploader", "s3cret")
    assert len(hashed) == 1 + accounts.FAILURES_ALLOWED
    monkeypatch.setattr(accounts, "FAILURE_WINDOW", 0.0)
    assert accounts.check(users, "uploader", "s3cret")
