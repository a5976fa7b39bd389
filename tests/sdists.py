"""Sdists made by the tests themselves, and a hermetic upstream index that serves them."""

from __future__ import annotations

import collections
import functools
import hashlib
import io
import os
import socket
import subprocess
import tarfile
import textwrap
import threading
import time
import xmlrpc.client
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from wheelwright.common.files import sha256_of
from wheelwright.indexhost.store import IndexStore, parse_distribution_filename

# The build backends' own sdists, fetched once by `make test` (see Makefile): the farm builds
# them from source first, as it would in production.
CACHE = Path(__file__).parent / ".cache" / "sdists"


def pkg_info(name: str, version: str, requires: list[str] = ()) -> str:
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    lines += [f"Requires-Dist: {r}" for r in requires]
    return "\n".join(lines) + "\n"


def write_sdist(dest: Path, name: str, version: str, files: dict[str, str]) -> Path:
    """A .tar.gz sdist with PKG-INFO and `files` under <name>-<version>/."""
    top = f"{name}-{version}"
    path = dest / f"{name}-{version}.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for member, text in sorted(files.items()):
            data = textwrap.dedent(text).encode()
            info = tarfile.TarInfo(f"{top}/{member}")
            info.size = len(data)
            info.mtime = 1_700_000_000
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return path


def pyproject(
    name: str, version: str, requires: list[str], backend: str, dependencies: list[str] = ()
) -> str:
    deps = ", ".join(f'"{r}"' for r in dependencies)
    build = ", ".join(f'"{r}"' for r in requires)
    return f"""\
        [build-system]
        requires = [{build}]
        build-backend = "{backend}"

        [project]
        name = "{name}"
        version = "{version}"
        description = "a test package"
        dependencies = [{deps}]
        """


def setuptools_sdist(
    dest: Path,
    name: str,
    version: str,
    *,
    module: str | None = None,
    code: str = "VALUE = 1\n",
    requires: list[str] = (),
    build_requires: list[str] = (),
    setup_py: str | None = None,
    extra: dict[str, str] | None = None,
) -> Path:
    module = module or name.replace("-", "_")
    files = {
        "PKG-INFO": pkg_info(name, version, requires),
        "pyproject.toml": pyproject(
            name, version, ["setuptools>=70", *build_requires], "setuptools.build_meta", requires
        ),
        f"{module}.py": code,
    }
    if setup_py:
        files["setup.py"] = setup_py
    files.update(extra or {})
    return write_sdist(dest, name, version, files)


ANSWER = """\
        static PyObject *answer(PyObject *self, PyObject *args) {{ return PyLong_FromLong(42); }}
        static PyMethodDef methods[] = {{{{"answer", answer, METH_NOARGS, "the answer"}}, {{NULL, NULL, 0, NULL}}}};
"""
LIBYAML_VERSION = """\
        #include <yaml.h>
        static PyObject *version(PyObject *self, PyObject *args) {{
            return PyUnicode_FromString(yaml_get_version_string()); }}
        static PyMethodDef methods[] = {{{{"version", version, METH_NOARGS, "libyaml's"}}, {{NULL, NULL, 0, NULL}}}};
"""


def c_extension_sdist(
    dest: Path, name: str, version: str, body: str = ANSWER, libraries: list[str] = ()
) -> Path:
    """A setuptools C extension module named for the project: `body` defines its `methods`."""
    module = name.replace("-", "_")
    return setuptools_sdist(
        dest,
        name,
        version,
        module=f"{module}_py",
        code="",
        setup_py=f"""\
        from setuptools import Extension, setup
        setup(ext_modules=[Extension("{module}", ["{module}.c"], libraries={list(libraries)!r})], py_modules=[])
        """,
        extra={
            f"{module}.c": "        #include <Python.h>\n"
            + body.format()
            + f"""\
        static struct PyModuleDef mod = {{PyModuleDef_HEAD_INIT, "{module}", NULL, -1, methods}};
        PyMODINIT_FUNC PyInit_{module}(void) {{ return PyModule_Create(&mod); }}
        """
        },
    )


def libyaml_sdist(dest: Path, name: str, version: str) -> Path:
    """A C extension linked to the system's libyaml (libyaml-dev): its `version()` is libyaml's."""
    return c_extension_sdist(dest, name, version, LIBYAML_VERSION, ["yaml"])


def hiding_libyaml(python: str, code: str) -> subprocess.CompletedProcess:
    """python -c code on this machine, but with the system's libyaml an empty file: a wheel
    that still needs it fails to import."""
    system = os.path.realpath(subprocess.run(
        ["sh", "-c", "ldconfig -p | sed -n 's/.*libyaml-0.so.2 .*=> //p' | head -1"],
        capture_output=True, text=True, check=True,
    ).stdout.strip())  # fmt: skip
    return subprocess.run(
        ["bwrap", "--dev-bind", "/", "/", "--ro-bind", "/dev/null", system, python, "-c", code],
        capture_output=True,
        text=True,
    )


def flit_sdist(dest: Path, name: str, version: str, code: str = "VALUE = 1\n") -> Path:
    return write_sdist(
        dest,
        name,
        version,
        {
            "PKG-INFO": pkg_info(name, version),
            "pyproject.toml": pyproject(name, version, ["flit_core>=3.4,<4"], "flit_core.buildapi"),
            f"{name.replace('-', '_')}.py": code,
        },
    )


def calling_out_sdist(dest: Path, name: str, version: str, host: str, port: int) -> Path:
    """A package whose build connects to host:port and fails if it cannot."""
    return setuptools_sdist(
        dest,
        name,
        version,
        setup_py=f"""\
        import socket
        from setuptools import setup
        from setuptools.command.build_py import build_py

        class CallOut(build_py):
            def run(self):
                socket.create_connection(("{host}", {port}), timeout=5).sendall(b"secrets")
                super().run()

        setup(cmdclass={{"build_py": CallOut}})
        """,
    )


class Listener:
    """A TCP server that counts the connections it accepts."""

    def __init__(self, host: str = "127.0.0.1"):
        self.accepted = []
        self.socket = socket.socket()
        self.socket.bind((host, 0))
        self.socket.listen()
        self.port = self.socket.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        try:
            while True:
                self.accepted.append(self.socket.accept())
        except OSError:
            pass

    def close(self):
        self.socket.close()


class Upstream:
    """An index on 127.0.0.1 that the farm downloads sdists from: its files served as they lie,
    project pages as PEP 691 JSON or PEP 503 HTML with an ETag that conditional requests are
    answered by (counted: full pages sent, 304s, looks at each page), and beside `simple/` the changelog that PyPI's
    mirroring API serves (XML-RPC at `pypi`), an event for each sdist added; with changelog=False
    that answers 405, as PyPI's CDN does to XML-RPC."""

    def __init__(self, root: Path, port: int, changelog: bool = True):
        self.store = IndexStore(root)
        self.url = f"http://127.0.0.1:{port}/simple/"
        self.changelog = changelog
        self.events: list[tuple] = []
        self.requests = 0
        self.full_pages = 0
        self.not_modified = 0
        self.page_looks: collections.Counter[str] = collections.Counter()  # by page path
        self.server = ThreadingHTTPServer(
            ("127.0.0.1", port), functools.partial(_UpstreamHandler, self, root)
        )
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def add(self, sdist: Path) -> Path:
        dist = parse_distribution_filename(sdist.name)
        served = self.store.project_dir(dist.project) / sdist.name
        if not served.exists():  # the backends' sdists are added by every farm that builds them
            self.store.publish(sdist.name, sdist, sha256=sha256_of(sdist))
            self.events.append(
                (
                    dist.project,
                    dist.version,
                    int(time.time()),
                    f"add source file {sdist.name}",
                    len(self.events) + 1,
                )
            )
        return served

    def changelog_since_serial(self, serial: int) -> list[tuple]:
        return self.events[serial:]

    def changelog_last_serial(self) -> int:
        return len(self.events)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _UpstreamHandler(SimpleHTTPRequestHandler):
    def __init__(self, upstream: Upstream, root: Path, *args):
        self.upstream = upstream
        super().__init__(*args, directory=str(root))

    def do_GET(self):
        self.upstream.requests += 1
        page = Path(self.translate_path(self.path))
        if not (self.path.endswith("/") and (page / "index.html").is_file()):
            super().do_GET()
            return
        self.upstream.page_looks[self.path] += 1
        json_page = (
            "application/vnd.pypi.simple.v1+json" in self.headers.get("Accept", "")
            and (page / "index.json").is_file()
        )
        body = (page / ("index.json" if json_page else "index.html")).read_bytes()
        etag = f'"{hashlib.sha256(body).hexdigest()[:20]}"'
        if self.headers.get("If-None-Match") == etag:
            self.upstream.not_modified += 1
            self.send_response(304)
            self.send_header("ETag", etag)
            self.end_headers()
            return
        self.upstream.full_pages += 1
        self.send_response(200)
        self.send_header(
            "Content-Type", "application/vnd.pypi.simple.v1+json" if json_page else "text/html"
        )
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", etag)
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        self.upstream.requests += 1
        if self.path != "/pypi" or not self.upstream.changelog:
            self.send_error(404 if self.path != "/pypi" else 405)
            return
        params, method = xmlrpc.client.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if method not in ("changelog_since_serial", "changelog_last_serial"):
            body = xmlrpc.client.dumps(xmlrpc.client.Fault(1, f"no method {method}"))
        else:
            body = xmlrpc.client.dumps(
                (getattr(self.upstream, method)(*params),), methodresponse=True
            )
        self.send_response(200)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(body.encode())))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args):
        pass


_HANDED_OUT: set[int] = set()
# pytest-xdist's processes (-n 2) each take ports of their own remainder, so two never hand out
# the same port and a test never waits on another process's server. Not port % 2: Linux offers
# odd ports to bind(0).
_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:])
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))


def free_port() -> int:
    """A port nothing listens on, and never one this process was given before: the kernel may
    offer the same free port twice in a row (a farm's index and worker ports once collided)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _HANDED_OUT and port // 2 % _WORKERS == _WORKER:
            _HANDED_OUT.add(port)
            return port


def wait_for_port(port: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


def wait_for_socket(path: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return
        time.sleep(0.05)
    raise TimeoutError(f"no socket at {path}")
