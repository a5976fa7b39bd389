"""The index under faults and contention: a full disk, many publishers at once, a race for one name."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from html.parser import HTMLParser

import pytest

from tests.farm import http_get
from tests.wheels import make_wheel
from wheelwright.common.files import sha256_of
from wheelwright.indexhost.store import IndexStore, StorageError
from wheelwright.indexhost.upload import UploadError, upload

JSON = "application/vnd.pypi.simple.v1+json"


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB filesystem made for the test."""
    mountpoint = tmp_path / "small"
    mountpoint.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mountpoint)], check=True)
    yield mountpoint
    subprocess.run(["umount", str(mountpoint)], check=True)


def test_a_full_disk_publishes_nothing_partial_and_says_so(small_disk, tmp_path):
    store = IndexStore(small_disk / "index")
    first = make_wheel(tmp_path, "demo", "1.0")
    store.publish(first.name, first, sha256=sha256_of(first))
    listing_before = (store.project_dir("demo") / "index.json").read_bytes()
    files_before = sorted(os.listdir(store.project_dir("demo")))
    big = make_wheel(tmp_path, "demo", "2.0", payload=os.urandom(1_500_000))
    with pytest.raises(StorageError, match="No space left on device"):
        store.publish(big.name, big, sha256=sha256_of(big))
    assert (store.project_dir("demo") / "index.json").read_bytes() == listing_before
    assert sorted(os.listdir(store.project_dir("demo"))) == files_before
    again = make_wheel(tmp_path, "demo", "3.0")
    store.publish(again.name, again, sha256=sha256_of(again))
    assert [
        f["filename"]
        for f in json.loads((store.project_dir("demo") / "index.json").read_text())["files"]
    ] == [first.name, again.name]


class Links(HTMLParser):
    def __init__(self, text: str):
        super().__init__()
        self.hrefs = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.hrefs.append(dict(attrs)["href"].split("#")[0])


def test_twenty_publishers_at_once_all_land_in_exact_listings(index_host, tmp_path):
    wheels = [make_wheel(tmp_path, "shared", f"1.{n}") for n in range(10)]
    wheels += [make_wheel(tmp_path, f"own{n}", "1.0") for n in range(10)]
    errors = []

    def publish(wheel):
        try:
            upload(index_host + "legacy/", "uploader", "s3cret", wheel)
        except UploadError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=publish, args=(w,)) for w in wheels]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for project, expected in [("shared", wheels[:10])] + [
        (f"own{n}", [wheels[10 + n]]) for n in range(10)
    ]:
        listing = json.loads(http_get(f"{index_host}simple/{project}/", JSON)[1])
        html = http_get(f"{index_host}simple/{project}/", "text/html")[1].decode()
        names = sorted(w.name for w in expected)
        assert sorted(f["filename"] for f in listing["files"]) == names
        assert sorted(Links(html).hrefs) == names
        for f in listing["files"]:
            assert http_get(f"{index_host}simple/{project}/{f['filename']}")[0] == 200
    projects = json.loads(http_get(f"{index_host}simple/", JSON)[1])["projects"]
    assert len(projects) == 11


def test_two_publishes_of_one_name_at_once_one_wins_and_the_file_is_never_replaced(
    index_host, tmp_path
):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    contenders = [
        make_wheel(tmp_path / "a", "race", "1.0"),
        make_wheel(tmp_path / "b", "race", "1.0", requires=["x"]),
    ]
    outcomes = {}

    def publish(wheel):
        try:
            upload(index_host + "legacy/", "uploader", "s3cret", wheel)
            outcomes[wheel] = 200
        except UploadError as exc:
            outcomes[wheel] = exc.status

    threads = [threading.Thread(target=publish, args=(w,)) for w in contenders]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes.values()) == [200, 409]
    (winner,) = [w for w, status in outcomes.items() if status == 200]
    assert http_get(f"{index_host}simple/race/{winner.name}")[1] == winner.read_bytes()
