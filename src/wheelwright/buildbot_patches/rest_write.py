"""REST responses are written to their connection on the reactor's thread.

Buildbot 4.3.0 encodes a REST response's JSON in a thread of the pool, and writes it to the
request from that thread too (`V2RootResource._write_json_data`, a static method that
`renderRest` calls through `deferToThread`). Twisted's transports are not thread-safe: a write
from the pool that meets the reactor flushing the same connection can drop a chunk. CI saw it
once under a bootstrap's load, as a `wheelwright bootstrap --wait` that died on a gzip body that
would not decode. Buildbot fixed it after 4.3.0 (commit 0a6cd7fca0, "www/rest: JSON response
write on main thread"; `_write_json_data` became a method that writes through the reactor). Until
a release has it, the JSON is still encoded in the pool and written by the reactor.
"""

from __future__ import annotations

import json

from buildbot.util import unicode2bytes
from buildbot.www.rest import V2RootResource, _is_request_finished
from twisted.internet import reactor, threads


def write_json_data(request, encoder: json.JSONEncoder, data) -> None:
    """Called in a pool thread: the whole body is encoded here, and written by the reactor."""
    body = unicode2bytes("".join(encoder.iterencode(data)))
    threads.blockingCallFromThread(reactor, _write, request, body)


def _write(request, body: bytes) -> None:
    if _is_request_finished(request):
        return
    request.setHeader(b"content-length", unicode2bytes(str(len(body))))
    if request.method != b"HEAD":
        request.write(body)


def write_rest_responses_on_the_reactor() -> None:
    """Only Buildbot's static, thread-writing form is replaced; a fixed Buildbot is left alone."""
    if isinstance(V2RootResource.__dict__["_write_json_data"], staticmethod):
        V2RootResource._write_json_data = staticmethod(write_json_data)
