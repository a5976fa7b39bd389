"""The index host: serves the wheel and source indexes and takes authenticated uploads.

Reading is open to all; writing goes through the legacy upload API that `twine upload` speaks
(`POST /legacy/`, multipart form with `:action=file_upload` and `content`), with HTTP basic
auth. Wheels go to the wheel index at /simple/, sdists to the source index at /sources/simple/.

Only an upload carries a body, and a body is refused before it is read unless it declares its
length, fits MAX_UPLOAD and comes with an upload account's password (checked in a thread while
the connection waits). Twisted keeps a large body in a temporary file and the form is parsed
from there; the password checks and the publishing run off the reactor thread, so one slow
upload never stalls the readers.

Run: python -m wheelwright.indexhost.server --root DIR --port N --users FILE
"""

from __future__ import annotations

import argparse
import base64
import binascii
import html
import json
import logging
import os
import re
import shutil
import tempfile
import urllib.parse
from pathlib import Path

import multipart
from packaging.utils import canonicalize_name
from packaging.version import Version
from twisted.internet import reactor, threads
from twisted.web import http, resource, server, static

from wheelwright.common.lookup import JSON_CONTENT_TYPE
from wheelwright.indexhost import accounts
from wheelwright.indexhost.store import AlreadyPublished, IndexStore, PublishError, StorageError

log = logging.getLogger("wheelwright.indexhost")
MAX_UPLOAD = 2 << 30
MAX_VERIFICATION = 256 << 10
# PEP 508 project names: anything else in a URL is no project of ours.
PROJECT_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?")


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
        elif media in (
            "text/html",
            "application/vnd.pypi.simple.v1+html",
            "application/vnd.pypi.simple.latest+html",
        ):
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
        if not PROJECT_NAME.fullmatch(name):
            return resource.NoResource("no such project")
        if canonicalize_name(name) != name:
            return _Redirect(f"../{canonicalize_name(name)}/".encode())
        directory = self.store.project_dir(name)
        if not (directory / "index.json").exists():
            return resource.NoResource("no such project")
        return ProjectListing(directory)


class HumanPages(resource.Resource):
    """GET /project/NAME/: a page for people, beside the PEP 503/691 pages installers read: each
    version's files with the build that made each, yanks and rebuilds marked."""

    isLeaf = True

    def __init__(self, store: IndexStore):
        super().__init__()
        self.store = store

    def render_GET(self, request):
        name = (request.postpath or [b""])[0].decode("utf-8", "replace")
        manifest = self.store.files(canonicalize_name(name)) if PROJECT_NAME.fullmatch(name) else {}
        if not manifest:
            return resource.NoResource("no such project").render(request)
        request.setHeader("content-type", "text/html; charset=utf-8")
        return human_page(canonicalize_name(name), manifest).encode()


def _web_url(url) -> str:
    """url if it is an http(s) address, else "": a `javascript:` or `data:` link is never drawn."""
    return url if isinstance(url, str) and url.split(":", 1)[0].lower() in ("http", "https") else ""


def human_page(project: str, manifest: dict) -> str:
    """A project's page for people; every field escaped, whoever wrote it."""
    rows = []
    for entry in sorted(
        manifest.values(), key=lambda e: (Version(e["version"]), e["filename"]), reverse=True
    ):
        made = entry.get("provenance", {})
        what = f"build {made.get('build_number')} of {made.get('builder')}"
        by = (
            f'<a href="{html.escape(_web_url(made["build_url"]))}">{html.escape(what)}</a>'
            if _web_url(made.get("build_url"))
            else html.escape(what)
            if made.get("build_url")
            else "seeded"
            if made.get("seeded")
            else ""
        )
        marks = ([f"yanked: {entry['yanked']}"] if entry.get("yanked") else []) + (
            [f"rebuild ({made['bump']}, {made.get('bump_number')})"] if made.get("bump") else []
        )
        marked = "".join(f" <b>{html.escape(str(mark))}</b>" for mark in marks)
        link = html.escape(f"../../simple/{project}/{urllib.parse.quote(entry['filename'])}")
        rows.append(
            f'<tr><td>{html.escape(entry["version"])}</td><td><a href="{link}">{html.escape(entry["filename"])}'
            f"</a>{marked}</td><td>{html.escape(str(entry['upload-time']))}</td><td>{by}</td>"
            f'<td><a href="{link}.provenance.json">provenance</a> <a href="{link}.freeze.txt">freeze</a></td></tr>'
        )
    return (
        f"<!DOCTYPE html>\n<html><head><title>{html.escape(project)}</title></head>"
        f"<body><h1>{html.escape(project)}</h1>\n"
        "<table><tr><th>version</th><th>file</th><th>published</th><th>made by</th><th></th></tr>\n"
        + "\n".join(rows)
        + "\n</table></body></html>\n"
    )


class HashLookup(resource.Resource):
    """GET /by-sha256/<sha256>: "project/filename" of the file published with that sha256."""

    def __init__(self, store: IndexStore):
        super().__init__()
        self.store = store

    def getChild(self, path, request):
        found = self.store.find_hash(path.decode("ascii", "replace"))
        if found is None:
            return resource.NoResource("no file with that sha256")
        return static.Data(found.encode(), "text/plain; charset=utf-8")


class ProjectListing(Listing):
    def getChild(self, path, request):
        if path == b"":
            return self
        name = path.decode("utf-8", "replace")
        if name.startswith(".") or "/" in name or name.startswith("index."):
            return resource.NoResource()
        target = self.directory / name
        if target.is_symlink() or not target.is_file():
            return resource.NoResource()
        return DistributionFile(str(target))


class DistributionFile(static.File):
    """A file served byte for byte: Twisted would label a .tar.gz `Content-Encoding: gzip`, and
    clients would then unpack it and see a different sha256."""

    contentEncodings: dict[str, str] = {}
    contentTypes = {
        ".metadata": "text/plain; charset=utf-8",
        ".txt": "text/plain; charset=utf-8",
        ".json": "application/json",
        ".whl": "application/octet-stream",
        ".gz": "application/octet-stream",
        ".zip": "application/octet-stream",
    }
    defaultType = "application/octet-stream"


class _Redirect(resource.Resource):
    isLeaf = True

    def __init__(self, url: bytes):
        super().__init__()
        self.url = url

    def render_GET(self, request):
        request.redirect(self.url)
        return b""


def basic_credentials(header: bytes | None) -> tuple[str, str] | None:
    if not header or header[:6].lower() != b"basic ":
        return None
    try:
        user, sep, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


class GuardedRequest(server.Request):
    """A request whose body is refused before it is read (see the module's docstring)."""

    refused = False
    authenticated = None  # a Deferred firing with the account's name, once a body is announced

    def gotLength(self, length):
        super().gotLength(length)
        if not length and not self.requestHeaders.hasHeader(b"transfer-encoding"):
            return
        if length is None:
            return self._refuse(411, "an upload must declare its Content-Length")
        if length > MAX_UPLOAD:
            return self._refuse(413, f"an upload may be {MAX_UPLOAD} bytes at most")
        credentials = basic_credentials(
            self.requestHeaders.getRawHeaders(b"authorization", [None])[0]
        )
        if credentials is None:
            return self._refuse(401, "authentication required")
        transport = self.channel.transport
        transport.pauseProducing()  # nothing more of the body is read until the password is checked
        self.authenticated = threads.deferToThread(
            accounts.check, self.channel.site.users, *credentials
        )

        def checked(ok):
            if not ok:
                self._refuse(401, "authentication required")
                return None
            transport.resumeProducing()
            return credentials[0]

        self.authenticated.addCallback(checked)

    def _refuse(self, code: int, message: str) -> None:
        self.refused = True
        log.warning("upload refused before its body was read: %s", message)
        body = (message + "\n").encode()
        head = (
            f"HTTP/1.1 {code} {http.RESPONSES.get(code, b'').decode()}\r\n"
            "Content-Type: text/plain; charset=utf-8\r\nConnection: close\r\n"
            + ('WWW-Authenticate: Basic realm="wheelwright"\r\n' if code == 401 else "")
            + f"Content-Length: {len(body)}\r\n\r\n"
        )
        self.channel.transport.write(head.encode() + body)
        self.channel.transport.loseConnection()


class Upload(resource.Resource):
    isLeaf = True

    def __init__(self, stores: dict[str, IndexStore]):
        super().__init__()
        self.stores = stores

    def render_POST(self, request):
        if request.refused:
            return server.NOT_DONE_YET  # answered already, and the connection is closing
        if request.authenticated is None:
            return _error(request, 401, "authentication required", authenticate=True)
        ctype = request.getHeader("content-type") or ""
        request.authenticated.addCallback(
            lambda user: (
                None
                if user is None
                else threads.deferToThread(self._publish, ctype, request.content)
            )
        )
        request.authenticated.addCallbacks(
            lambda entry: self._published(request, entry),
            lambda failure: _answer_failure(request, failure),
        )
        return server.NOT_DONE_YET

    def _published(self, request, entry) -> None:
        if entry is None or request.refused:
            return
        log.info("published %s", entry["filename"])
        request.setHeader("content-type", "application/json")
        request.write(json.dumps(entry).encode())
        request.finish()

    def _publish(self, ctype: str, body) -> dict:
        """In a thread: parse the form from the body's file and publish its file."""
        with tempfile.TemporaryDirectory(prefix=".upload-", dir=self.stores["wheels"].root) as tmp:
            fields, filename, path = _parse_form(ctype, body, Path(tmp))
            if fields.get(":action") != "file_upload":
                raise PublishError(f"unsupported :action {fields.get(':action')!r}")
            store = self.stores["sources" if fields.get("filetype") == "sdist" else "wheels"]
            try:
                provenance = json.loads(fields.get("wheelwright_provenance") or "{}")
            except ValueError:
                raise PublishError("wheelwright_provenance is not JSON") from None
            if not isinstance(provenance, dict):
                raise PublishError("wheelwright_provenance is not a JSON object")
            extra = {}
            if "wheelwright_freeze" in fields:
                extra[".freeze.txt"] = fields["wheelwright_freeze"].encode()
            try:
                return store.publish(
                    filename,
                    path,
                    sha256=fields.get("sha256_digest", ""),
                    provenance=provenance,
                    extra_files=extra,
                )
            except OSError as exc:
                raise StorageError(
                    f"{filename}: the index host could not store it ({exc.strerror})"
                ) from None


def _answer_failure(request, failure) -> None:
    """Answer a failed upload or form action: a refusal with its status, anything else a 500."""
    codes = {AlreadyPublished: 409, StorageError: 507, PublishError: 400}
    for kind, code in codes.items():
        if failure.check(kind):
            request.write(_error(request, code, str(failure.value)))
            break
    else:
        log.error("request failed: %s", failure.getTraceback())
        request.write(_error(request, 500, "the index host failed to take the request"))
    request.finish()


class FormAction(resource.Resource):
    """POST of a small form by an upload account, acted on in a thread; answers JSON."""

    isLeaf = True

    def __init__(self, store: IndexStore):
        super().__init__()
        self.store = store

    def act(self, fields: dict[str, str]) -> dict:
        raise NotImplementedError

    def render_POST(self, request):
        if request.refused:
            return server.NOT_DONE_YET
        if request.authenticated is None:
            return _error(request, 401, "authentication required", authenticate=True)
        try:
            fields = {k.decode(): v[0].decode() for k, v in request.args.items()}
        except UnicodeDecodeError:
            return _error(request, 400, "a form field is not UTF-8 text")
        request.authenticated.addCallback(
            lambda user: None if user is None else threads.deferToThread(self.act, fields)
        )
        request.authenticated.addCallbacks(
            lambda answer: self._done(request, answer),
            lambda failure: _answer_failure(request, failure),
        )
        return server.NOT_DONE_YET

    def _done(self, request, answer) -> None:
        if answer is None or request.refused:
            return
        log.info("%s: %s", type(self).__name__.lower(), json.dumps(answer))
        request.setHeader("content-type", "application/json")
        request.write(json.dumps(answer).encode())
        request.finish()


class Yank(FormAction):
    """PEP 592 yanks: POST /yank/ with name, version, optional filename and reason (empty: unyank).
    Files are never deleted; installers skip a yanked file unless pinned."""

    def act(self, fields):
        names = self.store.yank(
            fields.get("name", ""),
            fields.get("version", ""),
            fields.get("reason") or None,
            fields.get("filename") or None,
        )
        return {"files": names, "yanked": fields.get("reason") or None}


class Verification(FormAction):
    """POST /verification/ with name, filename and record (JSON): a reproducibility check of a
    published file, added to its provenance. The file itself never changes."""

    def act(self, fields):
        try:
            record = json.loads(fields.get("record", ""))
        except ValueError:
            raise PublishError("record is not JSON") from None
        if not isinstance(record, dict) or len(fields["record"]) > MAX_VERIFICATION:
            raise PublishError(f"record must be a JSON object of at most {MAX_VERIFICATION} bytes")
        self.store.add_verification(fields.get("name", ""), fields.get("filename", ""), record)
        return {"file": fields.get("filename"), "verification": record}


def _parse_form(ctype: str, body, tmp: Path) -> tuple[dict[str, str], str, Path]:
    """The form's text fields and its file, copied to tmp (from disk, a block at a time)."""
    mime, options = multipart.parse_options_header(ctype)
    if mime != "multipart/form-data" or not options.get("boundary"):
        raise PublishError("expected multipart/form-data")
    body.seek(0)
    fields: dict[str, str] = {}
    upload = None
    try:
        for part in multipart.MultipartParser(
            body, options["boundary"], part_limit=64, memory_limit=16 << 20, disk_limit=MAX_UPLOAD
        ):
            if part.name == "content" and part.filename:
                path = tmp / "content"
                with open(path, "wb") as out:
                    part.file.seek(0)
                    shutil.copyfileobj(part.file, out, 1 << 20)
                upload = (os.path.basename(part.filename), path)
            elif part.name:
                fields[part.name] = part.raw.decode("utf-8")
    except UnicodeDecodeError:
        raise PublishError("a form field is not UTF-8 text") from None
    except multipart.MultipartError as exc:
        raise PublishError(f"a malformed form: {exc}") from None
    if upload is None or not upload[0]:
        raise PublishError("the form has no file in 'content'")
    return fields, *upload


def _error(request, code: int, message: str, authenticate: bool = False) -> bytes:
    log.warning("upload refused: %s", message)
    request.setResponseCode(code)
    if authenticate:
        request.setHeader("www-authenticate", 'Basic realm="wheelwright"')
    request.setHeader("content-type", "text/plain; charset=utf-8")
    return (message + "\n").encode()


def make_site(root: Path, users: Path) -> server.Site:
    stores = {"wheels": IndexStore(root / "wheels"), "sources": IndexStore(root / "sources")}
    top = resource.Resource()
    top.putChild(b"simple", SimpleRoot(stores["wheels"]))
    sources = resource.Resource()
    sources.putChild(b"simple", SimpleRoot(stores["sources"]))
    top.putChild(b"sources", sources)
    upload = Upload(stores)
    top.putChild(b"yank", Yank(stores["wheels"]))
    top.putChild(b"verification", Verification(stores["wheels"]))
    top.putChild(b"by-sha256", HashLookup(stores["wheels"]))
    top.putChild(b"project", HumanPages(stores["wheels"]))
    top.putChild(b"legacy", upload)
    top.putChild(b"", upload)
    site = server.Site(top, requestFactory=GuardedRequest)
    site.users = users
    return site


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m wheelwright.indexhost.server")
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--users", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for kind in ("wheels", "sources"):
        for change in IndexStore(args.root / kind).reconcile():
            log.warning("%s index: %s", kind, change)
    port = reactor.listenTCP(args.port, make_site(args.root, args.users), interface=args.host)
    log.info(
        "serving %s on http://%s:%d/ (pid %d)",
        args.root,
        args.host,
        port.getHost().port,
        os.getpid(),
    )
    reactor.run()


if __name__ == "__main__":
    main()
