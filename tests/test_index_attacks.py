"""Attacks on the index host, each against a real one on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys

import requests

from tests.farm import http_get
from tests.sdists import free_port, wait_for_port
from tests.wheels import make_wheel
from wheelwright.common.files import sha256_of
from wheelwright.indexhost import accounts
from wheelwright.indexhost.store import IndexStore
from wheelwright.indexhost.upload import upload

JSON = "application/vnd.pypi.simple.v1+json"


def raw_request(index_host: str, head: str, body: bytes = b"", timeout: float = 10) -> bytes:
    """Send head (and body) and read the answer until the host closes or stops talking."""
    port = int(index_host.rsplit(":", 1)[1].strip("/"))
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        conn.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        answer = b""
        try:
            while chunk := conn.recv(65536):
                answer += chunk
        except TimeoutError:
            pass
    return answer


def test_an_encoded_slash_in_a_project_name_serves_nothing_outside_the_index(index_host, tmp_path):
    # A folder elsewhere that looks like a project (it has an index.json) must stay unreachable.
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "index.json").write_text("{}")
    (outside / "secret.txt").write_text("farm secret")
    encoded = str(outside).replace("/", "%2F")
    for path in (
        f"simple/{encoded}/secret.txt",
        f"simple/{encoded}/",
        f"simple/..%2F..%2F{encoded}/secret.txt",
        "simple/%2E%2E/%2E%2E/users.json",
    ):
        status, body, _ = http_get(index_host + path)
        assert status == 404 and b"farm secret" not in body, path


def test_an_unauthenticated_oversized_upload_is_refused_before_its_body_is_read(index_host):
    # Only the head is sent: the answer must come without the 3 GiB the head announces.
    head = (
        "POST /legacy/ HTTP/1.1\nHost: x\nContent-Type: multipart/form-data; boundary=b\n"
        f"Content-Length: {3 << 30}\n"
    )
    answer = raw_request(index_host, head)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    answer = raw_request(index_host, head.replace(str(3 << 30), str(1 << 20)))
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    wrong = base64.b64encode(b"uploader:wrong").decode()
    answer = raw_request(
        index_host, head.replace(str(3 << 30), str(1 << 20)) + f"Authorization: Basic {wrong}\n"
    )
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    chunked = head.replace(f"Content-Length: {3 << 30}", "Transfer-Encoding: chunked")
    assert raw_request(index_host, chunked).startswith(b"HTTP/1.1 411")


def test_a_form_that_is_not_utf8_is_a_clear_400(index_host, tmp_path):
    wheel = make_wheel(tmp_path, "latin", "1.0")
    response = requests.post(
        index_host + "legacy/",
        auth=("uploader", "s3cret"),
        timeout=30,
        data={
            ":action": "file_upload",
            "sha256_digest": sha256_of(wheel),
            "wheelwright_freeze": "caf\xe9==1.0".encode("latin-1"),
        },
        files={"content": (wheel.name, wheel.read_bytes())},
    )
    assert response.status_code == 400 and "not UTF-8" in response.text
    garbage = requests.post(
        index_host + "legacy/",
        auth=("uploader", "s3cret"),
        timeout=30,
        data=b"\xff\xfe",
        headers={"Content-Type": "multipart/form-data; boundary=zz"},
    )
    assert garbage.status_code == 400
    assert http_get(index_host + "simple/latin/")[0] == 404


def test_a_project_name_made_of_markup_is_refused_and_never_reaches_a_page(index_host, tmp_path):
    sdist = tmp_path / 'x"><img src=x onerror=alert(1)>-1.0.tar.gz'
    sdist.write_bytes(b"not really")
    response = requests.post(
        index_host + "legacy/",
        auth=("uploader", "s3cret"),
        timeout=30,
        data={":action": "file_upload", "filetype": "sdist", "sha256_digest": sha256_of(sdist)},
        files={"content": (sdist.name, sdist.read_bytes())},
    )
    assert response.status_code == 400 and "not a valid project name" in response.text
    for path in ("simple/", "sources/simple/"):
        assert b"<img" not in http_get(index_host + path, "text/html")[1]


def test_a_publish_cut_off_between_link_and_listing_is_completed_by_a_retry_and_at_start(tmp_path):
    root, users = tmp_path / "root", tmp_path / "users.json"
    accounts.add(users, "uploader", "s3cret")
    store = IndexStore(root / "wheels")
    # What a crash leaves: the side files and the linked file, and no manifest entry.
    for name in ("retried", "restarted"):
        wheel = make_wheel(tmp_path, name, "1.0")
        project = store.project_dir(name)
        project.mkdir()
        (project / f"{wheel.name}.provenance.json").write_text('{"build_number": 3}')
        os.link(wheel, project / wheel.name)
    port = free_port()
    host = f"http://127.0.0.1:{port}/"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "wheelwright.indexhost.server",
            "--root",
            str(root),
            "--users",
            str(users),
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_port(port)
        # the host lists at start what it found on disk, with the provenance that was written
        listing = json.loads(http_get(host + "simple/restarted/", JSON)[1])
        assert [f["filename"] for f in listing["files"]] == ["restarted-1.0-py3-none-any.whl"]
        assert json.loads(
            http_get(host + "simple/restarted/restarted-1.0-py3-none-any.whl.provenance.json")[1]
        ) == {"build_number": 3}
        # and the uploader's retry of the same bytes is a success, not a 409
        entry = upload(
            host + "legacy/", "uploader", "s3cret", tmp_path / "retried-1.0-py3-none-any.whl"
        )
        assert entry["sha256"] == sha256_of(tmp_path / "retried-1.0-py3-none-any.whl")
        assert [
            f["filename"] for f in json.loads(http_get(host + "simple/retried/", JSON)[1])["files"]
        ] == ["retried-1.0-py3-none-any.whl"]
        assert {p["name"] for p in json.loads(http_get(host + "simple/", JSON)[1])["projects"]} == {
            "retried",
            "restarted",
        }
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait()
    assert "restarted-1.0-py3-none-any.whl was on disk but unlisted; listed" in proc.stderr.read()
