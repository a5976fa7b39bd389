"""REST responses are written on the reactor's thread (buildbot_patches/rest_write.py): Buildbot 4.3.0
wrote them from a pool thread, and a chunk could be lost to a race in Twisted's transport."""

from __future__ import annotations

import json
import threading

from buildbot.test.util.www import FakeRequest
from buildbot.www.rest import V2RootResource
from twisted.internet import threads
from twisted.trial import unittest

from wheelwright.buildbot_patches.rest_write import write_rest_responses_on_the_reactor

BUILDS = {"builds": [{"buildid": n, "state_string": "built " * 20} for n in range(3000)]}


class WritingRequest(FakeRequest):
    """Remembers which thread wrote each part of the body."""

    def __init__(self):
        super().__init__(b"/api/v2/builds")
        self.writers: list[threading.Thread] = []

    def write(self, data):
        self.writers.append(threading.current_thread())
        super().write(data)


class TestRestWrites(unittest.TestCase):
    def setUp(self):
        write_rest_responses_on_the_reactor()

    async def render(self, request) -> None:
        # As Buildbot's renderRest calls it, on the real reactor's thread pool.
        encoder = json.JSONEncoder(sort_keys=True)
        await threads.deferToThread(V2RootResource._write_json_data, request, encoder, BUILDS)

    async def test_a_large_response_is_written_whole_by_the_reactor_thread(self):
        request = WritingRequest()
        await self.render(request)
        assert request.writers and set(request.writers) == {threading.main_thread()}
        assert json.loads(request.written) == BUILDS
        assert request.headers[b"content-length"] == [str(len(request.written)).encode()]

    async def test_nothing_is_written_to_a_request_that_went_away(self):
        request = WritingRequest()
        request.channel = None  # the client hung up while the JSON was being encoded
        await self.render(request)
        assert request.written == b"" and request.writers == []

    async def test_a_head_request_gets_the_length_and_no_body(self):
        request = WritingRequest()
        request.method = b"HEAD"
        await self.render(request)
        assert request.written == b""
        assert int(request.headers[b"content-length"][0]) == len(json.dumps(BUILDS, sort_keys=True))
