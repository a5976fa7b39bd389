"""Notifications on a real farm: a version that fails on every builder it was forced on yields
one webhook message and one mail, each naming the package, its version, the builders and the
reason from the failing step, received by a real HTTP server and a real SMTP server (aiosmtpd)
on 127.0.0.1."""

from __future__ import annotations

import email
import json
import platform
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller

from tests.conftest import running_farm
from tests.sdists import free_port, pkg_info, write_sdist

pytestmark = pytest.mark.farm

FAILING_BACKEND = """\
def get_requires_for_build_wheel(config_settings=None):
    return []
def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    raise SystemExit("the compiler is missing a header")
"""


class Receiver(BaseHTTPRequestHandler):
    said: list = []

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.said.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


class Mailbox:
    def __init__(self):
        self.mails: list[email.message.Message] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        self.mails.append(email.message_from_bytes(envelope.content))
        return "250 OK"


def test_a_failed_release_is_told_once_by_webhook_and_by_mail(tmp_path_factory, upstream, tmp_path):
    hook = ThreadingHTTPServer(("127.0.0.1", free_port()), Receiver)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    mailbox = Mailbox()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    smtp.start()
    settings = {
        "notifications": [
            {"type": "webhook", "url": f"http://127.0.0.1:{hook.server_port}/hook"},
            {"type": "mail", "to": ["releng@example.org"], "smtp": f"127.0.0.1:{smtp.port}"},
        ]
    }
    try:
        with running_farm(tmp_path_factory, upstream, settings=settings) as farm:
            builders = sorted(
                b["name"]
                for b in farm.api("builders")["builders"]
                if b["name"].startswith(platform.machine() + "-cp")
            )[:2]
            assert len(builders) == 2, builders  # a release forced on two builders at once
            upstream.add(
                write_sdist(
                    tmp_path,
                    "told",
                    "1.0",
                    {
                        "PKG-INFO": pkg_info("told", "1.0"),
                        "pyproject.toml": '[build-system]\nrequires = []\nbuild-backend = "fails"\n'
                        'backend-path = ["."]\n',
                        "fails.py": FAILING_BACKEND,
                    },
                )
            )
            rc, result = farm.build("told==1.0", *builders)
            assert rc == 1, json.dumps(result, indent=2)
            deadline = time.monotonic() + 30
            while (not Receiver.said or not mailbox.mails) and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(2)  # a second message would come within this
    finally:
        hook.shutdown()
        smtp.stop()
    (said,) = Receiver.said
    assert said["package"] == "told" and said["version"] == "1.0" and said["result"] == "failure"
    assert sorted(r["builder"] for r in said["failed"]) == builders and said["built"] == []
    for row in said["failed"]:
        assert row["failed_step"] == "build-wheel" and "/builds/" in row["url"]
        assert row["reason"].startswith("building the wheel with build (no network) failed")
    (mail,) = mailbox.mails
    assert mail["To"] == "releng@example.org"
    subject, _, failed_on = mail["Subject"].partition(": failed on ")
    assert subject == "wheelwright: told 1.0" and sorted(failed_on.split(", ")) == builders
    text = mail.get_payload(decode=True).decode() if not mail.is_multipart() else str(mail)
    assert all(f"- {b}: build-wheel: building the wheel" in text for b in builders), text
