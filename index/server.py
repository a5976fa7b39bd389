"""The index host: serves the wheel and source indexes and takes authenticated uploads.

Reading is open to all; writing goes through the legacy upload API that `twine upload` speaks
(`POST /legacy/`, multipart form with `:action=file_upload` and `content`), with HTTP basic
auth. Wheels go to the wheel index at /simple/, sdists to the source index at /sources/simple/.

Run: python -m wheelwright.index.server --root DIR --port N --users FILE
"""

from __future__ import annotations

import argparse
import base64
import email.parser
import email.policy
import json
import logging
import os
import tempfile
from pathlib import Path

from packaging.utils import canonicalize_name
from twisted.internet import reactor
from twisted.web import resource, server, static

from wheelwright.index import accounts
from wheelwright.index.store import JSON_CONTENT_TYPE, AlreadyPublished, IndexStore, PublishError, StorageError

log = logging.getLogger("wheelwright.index")
MAX_UPLOAD = 2 << 30


def wants_json(accept: str | None, query_format: str | None) -> bool:
    """PEP 691 content negotiation: JSON when the client ranks it above HTML."""
    if query_format:
        return query_format == JSON_CONTENT_TYPE
    best_json = best_html = 0.0
    for item in (accept or "").split(","):
        media, *params = [p.strip() for p in item.split(";")]
        q = 1.0
        for p in params:
            if p.startswith("q="):
                try:
                    q = float(p[2:])
                except ValueError:
                    q = 0.0
        if media == JSON_CONTENT_TYPE:
            best_json = max(best_json, q)
        elif media in ("text/html", "application/vnd.pypi.simple.v1+html", "application/vnd.pypi.simple.latest+html"):
            best_html = max(best_html, q)
        elif media == "application/vnd.pypi.simple.latest+json":
            best_json = max(best_json, q)
    return best_json > best_html


class Listing(resource.Resource):
    """A directory with index.html and index.json: picks one by the Accept header."""

    isLeaf = False

    def __init__(self, directory: Path):
        super().__init__()
        self.directory = directory

    def render_GET(self, request):
        if not request.path.endswith(b"/"):
            request.redirect(request.path + b"/")
            return b""
        fmt = request.args.get(b"format", [b""])[0].decode() or None
        if wants_json(request.getHeader("accept"), fmt):
            request.setHeader("content-type", JSON_CONTENT_TYPE)
            name = "index.json"
        else:
            request.setHeader("content-type", "text/html; charset=utf-8")
            name = "index.html"
        request.setHeader("vary", "Accept")
        request.setHeader("cache-control", "no-cache")
        return (self.directory / name).read_bytes()


class SimpleRoot(Listing):
    def __init__(self, store: IndexStore):
        super().__init__(store.simple)
        self.store = store

    def getChild(self, path, request):
        if path == b"":
            return self
        name = path.decode("utf-8", "replace")
        if canonicalize_name(name) != name:
            return _Redirect(f"../{canonicalize_name(name)}/".encode())
        directory = self.store.project_dir(name)
        if not (directory / "index.json").exists():
            return resource.NoResource("no such project")
        return ProjectListing(directory)


class ProjectListing(Listing):
    def getChild(self, path, request):
        if path == b"":
            return self
        name = path.decode("utf-8", "replace")
        if name.startswith(".") or "/" in name or name.startswith("index."):
            return resource.NoResource()
        target = self.directory / name
        if not target.is_file():
            return resource.NoResource()
        return DistributionFile(str(target))


class DistributionFile(static.File):
    """A file served byte for byte: Twisted would label a .tar.gz `Content-Encoding: gzip`, and
    clients would then unpack it and see a different sha256."""

    contentEncodings: dict[str, str] = {}
    contentTypes = {".metadata": "text/plain; charset=utf-8", ".txt": "text/plain; charset=utf-8",
                    ".json": "application/json", ".whl": "application/octet-stream",
                    ".gz": "application/octet-stream", ".zip": "application/octet-stream"}
    defaultType = "application/octet-stream"


class _Redirect(resource.Resource):
    isLeaf = True

    def __init__(self, url: bytes):
        super().__init__()
        self.url = url

    def render_GET(self, request):
        request.redirect(self.url)
        return b""


class Upload(resource.Resource):
    isLeaf = True

    def __init__(self, stores: dict[str, IndexStore], users: Path):
        super().__init__()
        self.stores = stores
        self.users = users

    def render_POST(self, request):
        if not self._authorised(request):
            request.setResponseCode(401)
            request.setHeader("www-authenticate", 'Basic realm="wheelwright"')
            return b"authentication required\n"
        try:
            fields, upload = _parse_form(request)
            if fields.get(":action") != "file_upload":
                raise PublishError(f"unsupported :action {fields.get(':action')!r}")
            entry = self._publish(fields, upload)
        except AlreadyPublished as exc:
            return _error(request, 409, str(exc))
        except StorageError as exc:
            return _error(request, 507, str(exc))
        except PublishError as exc:
            return _error(request, 400, str(exc))
        log.info("published %s", entry["filename"])
        request.setHeader("content-type", "application/json")
        return json.dumps(entry).encode()

    def _publish(self, fields, upload):
        filename, data = upload
        store = self.stores["sources" if fields.get("filetype") == "sdist" else "wheels"]
        provenance = json.loads(fields.get("wheelwright_provenance") or "{}")
        extra = {}
        if "wheelwright_freeze" in fields:
            extra[".freeze.txt"] = fields["wheelwright_freeze"].encode()
        try:
            with tempfile.NamedTemporaryFile(dir=store.root, prefix=".upload-") as tmp:
                tmp.write(data)
                tmp.flush()
                return store.publish(filename, Path(tmp.name), sha256=fields.get("sha256_digest", ""),
                                     provenance=provenance, extra_files=extra)
        except OSError as exc:
            raise StorageError(f"{filename}: the index host could not store it ({exc.strerror})") from None

    def _authorised(self, request) -> bool:
        header = request.getHeader("authorization") or ""
        if not header.lower().startswith("basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        return accounts.check(self.users, user, password)


def _parse_form(request) -> tuple[dict[str, str], tuple[str, bytes]]:
    ctype = request.getHeader("content-type") or ""
    if not ctype.startswith("multipart/form-data"):
        raise PublishError("expected multipart/form-data")
    request.content.seek(0)
    body = request.content.read(MAX_UPLOAD + 1)
    if len(body) > MAX_UPLOAD:
        raise PublishError("upload too large")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + body
    )
    fields: dict[str, str] = {}
    upload = None
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name == "content":
            upload = (part.get_filename() or "", part.get_payload(decode=True))
        elif name:
            fields[name] = part.get_payload(decode=True).decode()
    if upload is None or not upload[0]:
        raise PublishError("the form has no file in 'content'")
    return fields, upload


def _error(request, code: int, message: str) -> bytes:
    log.warning("upload refused: %s", message)
    request.setResponseCode(code)
    request.setHeader("content-type", "text/plain; charset=utf-8")
    return (message + "\n").encode()


def make_site(root: Path, users: Path) -> server.Site:
    stores = {"wheels": IndexStore(root / "wheels"), "sources": IndexStore(root / "sources")}
    top = resource.Resource()
    top.putChild(b"simple", SimpleRoot(stores["wheels"]))
    sources = resource.Resource()
    sources.putChild(b"simple", SimpleRoot(stores["sources"]))
    top.putChild(b"sources", sources)
    upload = Upload(stores, users)
    top.putChild(b"legacy", upload)
    top.putChild(b"", upload)
    return server.Site(top)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m wheelwright.index.server")
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--users", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    port = reactor.listenTCP(args.port, make_site(args.root, args.users), interface=args.host)
    log.info("serving %s on http://%s:%d/ (pid %d)", args.root, args.host, port.getHost().port, os.getpid())
    reactor.run()


if __name__ == "__main__":
    main()
