"""Where a farm keeps its state, and the addresses of its parts.

`wheelwright up` writes farm.json at the top of the state directory; master.cfg and the CLI read it.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from wheelwright.common.files import write_atomic
from wheelwright.common.sandbox import Limits
from wheelwright.farm.pools import POOLS, builder_name
from wheelwright.sources.scan import HOLD_LEVELS

FARM_FILE = "farm.json"
# A setting in the environment wins over farm.json: WHEELWRIGHT_DB_URL, WHEELWRIGHT_POOLS='["local"]'
# (JSON, for all but text settings).
ENVIRONMENT_PREFIX = "WHEELWRIGHT_"
MASTER_ROLES = ("ui", "builds")
# The web UI's users' roles (www/auth.py): each grants these Buildbot roles.
USER_ROLES = {"releng": ["releng"], "admin": ["admin", "releng"]}
# The force form (and `wheelwright build`): builds are also forced through it after a review.
FORCE_SCHEDULER = "build"
# The forms bootstrap and yank are forced through.
BOOTSTRAP_SCHEDULER = "bootstrap"
YANK_SCHEDULER = "yank"
UPLOAD_USER = "wheelwright"
UPLOAD_SECRET = "index-upload-password"
# The account `wheelwright` logs in to the web UI's REST API with (an admin), and its password.
CLI_USER = "wheelwright"
CLI_SECRET = "www-password"


# What a rebuild publishes (policy/bumps.py): the farm's default, or a package's own.
BUMPS = ("post", "local", "build-tag")


class FarmSettingsError(ValueError):
    """farm.json (or a WHEELWRIGHT_ setting) that cannot be used: the message names the file."""


def one_line(text: str, what: str, error: type[Exception] = ValueError) -> str:
    """text, which goes into a line of a log or of allowlist.txt: a line break or other control
    character in it could add lines of its own (an approval nobody gave), so it is refused."""
    if any(ord(c) < 32 or 127 <= ord(c) < 160 or c in "\u2028\u2029" for c in text):
        raise error(f"the {what} may not hold a line break or other control character")
    return text


def default_upstream() -> str:
    """PyPI's simple API, as pypi-simple names it (imported only when asked: sources/upstream.py)."""
    from pypi_simple import PYPI_SIMPLE_ENDPOINT

    return PYPI_SIMPLE_ENDPOINT


@dataclass(frozen=True)
class Farm:
    root: Path
    upstream: str = field(default_factory=default_upstream)
    host: str = "127.0.0.1"
    ui_port: int = 8010
    worker_port: int = 9989
    index_port: int = 8080
    settings: Path | None = None
    # The embedded default: the pools that run on this machine. Remote pools (aarch64) are the
    # operator's to add: `wheelwright up --pools local,aarch64`.
    pools: list[str] = field(default_factory=lambda: ["local"])
    # A remote pool with an emulated stand-in (aarch64) gets workers here, under qemu, where the
    # machine can run them (farm/emulation.py); off once real machines serve it.
    emulation: bool = True
    # Where the Debian roots of emulated pools are made and kept between farms (a few hundred MB).
    root_cache: str = str(Path.home() / ".cache" / "wheelwright" / "roots")
    # The interface the worker port and the index listen on: containers and remote workers need
    # more than loopback ("0.0.0.0", or the container network's gateway).
    listen: str = "127.0.0.1"
    # The master's address as other machines reach it: remote pools' workers connect to it and
    # install from the index there (`wheelwright worker create`). Default: `host`.
    public_host: str | None = None
    # A pool's own address of the index, where its workers reach it otherwise (a mirror near them,
    # a proxy): pool name -> simple/ URL.
    pool_index_urls: dict = field(default_factory=dict)
    # The worker port speaks TLS (farm/tls.py): with the operator's certificate and key (PEM) and
    # the authority that signed it, or a self-signed one the farm makes.
    worker_tls: bool = False
    worker_tls_cert: str | None = None
    worker_tls_key: str | None = None
    worker_tls_ca: str | None = None
    # Container pools: the Docker API (a Docker engine, or podman's), the network their
    # containers join, and the master's address on it.
    docker_host: str | None = None
    container_network: str | None = None
    container_master_host: str | None = None
    # When the index host does not take a wheel: the step's retries (seconds between them), then
    # the wheel is kept on the master and a service retries it every kept_retry_interval.
    publish_retry_delays: list[float] = field(default_factory=lambda: [2, 10, 30])
    kept_retry_interval: float = 60
    # New upstream releases of allow-listed projects start builds: the upstream's changelog
    # (XML-RPC; default: `pypi` beside the upstream's `simple/`), read every poll interval (0: never).
    upstream_changelog: str | None = None
    upstream_poll_interval: int = 300
    # Hosts (host or host:port) the upstream's pages may send us to for sdists, besides its own
    # (and the public index's file host when it is that one); any other is refused.
    upstream_files_hosts: list[str] = field(default_factory=list)
    # A new upload waits this long (seconds) before it is built: a hijacked release is often
    # yanked within hours. A package's settings may say otherwise.
    min_release_age: float = 0
    # A new release's sdist is scanned (sources/scan.py); a finding at this level or above holds
    # it for review: low, medium, high or never.
    scan_hold_at: str = "high"
    # Edits to the settings and patches rebuild what they change: looked for this often (0: never).
    settings_poll_interval: int = 60
    # Production: the settings and patches in a git repository (cloned into the settings
    # directory, watched by Buildbot's GitPoller; changes/settings_git.py).
    settings_git: str | None = None
    settings_branch: str = "main"
    # What a rebuild publishes (policy/bumps.py: post, local or build-tag; a package's settings
    # may choose another), and the label of local bumps (2.28.2+<label>.1).
    rebuild_bump: str = "post"
    local_label: str = "wheelwright"
    # What each command that runs a package's code may use (see common/sandbox.py, Limits).
    build_limits: dict = field(default_factory=dict)
    # Buildbot's database: the embedded sqlite file by default; PostgreSQL for production
    # (`postgresql://user@host/db`, the driver from the `postgresql` extra). A password is best
    # kept out of farm.json: in WHEELWRIGHT_DB_URL, or in the user's ~/.pgpass.
    db_url: str = "sqlite:///state.sqlite"
    # Several masters share the database and a Crossbar router: its ws:// URL and realm (Buildbot's
    # `wamp` message queue). None: one master, Buildbot's `simple` queue.
    mq_router: str | None = None
    mq_realm: str = "realm1"
    # Which parts this master runs: "ui" (the web UI and REST API), "builds" (the worker port, and
    # the builds its workers run). One master runs both; see docs/deploy.md.
    roles: list[str] = field(default_factory=lambda: list(MASTER_ROLES))
    # Index hosts of other kinds that every published wheel is also uploaded to (publishing/mirrors.py).
    mirrors: list = field(default_factory=list)
    # Build requirements the system provides: PyPI name -> the command on the worker's PATH (e.g.
    # {"cmake": "cmake", "ninja": "ninja"}). Neither installed nor planned; the build runs the
    # system's. A package's settings may add their own.
    system_tools: dict = field(default_factory=dict)
    # Who is told of a release's builds (config/notifications.py): webhooks and mail, each
    # {"type": "webhook", "url": ...} or {"type": "mail", "to": [...], "smtp": "HOST:PORT"}.
    notifications: list = field(default_factory=list)
    # Our own index host where it runs on another machine (its static tree behind a web server,
    # its upload API behind TLS; docs/deploy.md): `up` starts none here. None: `up` runs it.
    index_host: str | None = None
    # The settings that came from the environment (WHEELWRIGHT_<SETTING>), never written to farm.json.
    from_environment: frozenset = field(default=frozenset(), repr=False, compare=False)

    @property
    def limits(self) -> Limits:
        return Limits(**self.build_limits)

    @property
    def settings_dir(self) -> Path:
        return self.settings or self.root / "overrides"

    @property
    def changelog_url(self) -> str:
        return self.upstream_changelog or urljoin(self.upstream, "../pypi")

    @property
    def index_root(self) -> str:
        return self.index_host or f"http://{self.host}:{self.index_port}/"

    @property
    def index_url(self) -> str:
        return self.index_root + "simple/"

    @property
    def sources_url(self) -> str:
        return self.index_root + "sources/simple/"

    @property
    def upload_url(self) -> str:
        return self.index_root + "legacy/"

    @property
    def reachable_host(self) -> str:
        return self.public_host or self.host

    def index_url_for(self, pool) -> str:
        """Our index's address as a pool's workers reach it."""
        if pool.name in self.pool_index_urls:
            return self.pool_index_urls[pool.name]
        if self.index_host:
            return self.index_url
        if pool.kind == "container" and self.container_master_host:
            return f"http://{self.container_master_host}:{self.index_port}/simple/"
        if pool.kind == "remote":
            return f"http://{self.reachable_host}:{self.index_port}/simple/"
        return self.index_url

    @property
    def ui_url(self) -> str:
        return f"http://{self.host}:{self.ui_port}/"

    master_dir = property(lambda self: self.root / "master")
    workers_dir = property(lambda self: self.root / "workers")
    index_dir = property(lambda self: self.root / "index")
    secrets_dir = property(lambda self: self.root / "secrets")
    www_users = property(lambda self: self.root / "secrets" / "www-users.json")
    source_cache = property(lambda self: self.root / "master" / "sources")
    # A build's wheels on their way to the index, and those kept when it could not take them.
    staging_dir = property(lambda self: self.root / "master" / "staging")
    review_queue = property(lambda self: self.root / "review-queue.json")
    # The builds that waited on a project now approved, and what became of them.
    review_waiting = property(lambda self: self.root / "review-waiting.json")
    allowlist = property(lambda self: self.root / "allowlist.txt")
    logs_dir = property(lambda self: self.root / "logs")
    roots_dir = property(lambda self: self.root / "roots")
    last_good_dir = property(lambda self: self.root / "master" / "last-good")

    def pools_here(self) -> list:
        pools = [POOLS[name] for name in self.pools]
        stand_ins = [p.emulated() for p in pools if self.emulation and p.emulated()]
        return pools + stand_ins

    def local_builders(self) -> list[str]:
        """The wheel builders whose workers run here or start on demand (not remote pools)."""
        return sorted(
            {
                builder_name(p.arch, v)
                for p in self.pools_here()
                if p.kind != "remote"
                for v in p.interpreters()
            }
        )

    def workers_for(self, builders: list[str]) -> int:
        """How many workers serve those builders: how many builds may run at once."""
        return sum(
            len(p.worker_names())
            for p in self.pools_here()
            if any(builder_name(p.arch, v) in builders for v in p.interpreters())
        )

    @property
    def bootstrap_durations_file(self) -> Path:
        return self.logs_dir / "bootstrap" / "durations.json"

    def bootstrap_durations(self) -> dict[str, float]:
        """How long each project's last bootstrapped build took: the next bootstrap's estimates."""
        try:
            return json.loads(self.bootstrap_durations_file.read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def add_bootstrap_durations(self, durations: dict[str, float]) -> None:
        self.bootstrap_durations_file.parent.mkdir(parents=True, exist_ok=True)
        merged = {**self.bootstrap_durations(), **durations}
        write_atomic(
            self.bootstrap_durations_file, json.dumps(merged, indent=1, sort_keys=True).encode()
        )

    @property
    def upstream_watch_file(self) -> Path:
        return self.logs_dir / "upstream-watching.json"

    def note_upstream_watch(self, watch: dict) -> None:
        """Say how the master watches the upstream (for `wheelwright status`)."""
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(self.upstream_watch_file, (json.dumps(watch, indent=2) + "\n").encode())

    def save(self) -> None:
        path = self.root / FARM_FILE
        kept = json.loads(path.read_text()) if path.exists() else {}
        data = {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in asdict(self).items()
            if k not in ("root", "from_environment") and k not in self.from_environment
        }
        data.update({k: kept[k] for k in self.from_environment if k in kept})
        self.root.mkdir(parents=True, exist_ok=True)
        write_atomic(path, (json.dumps(data, indent=2) + "\n").encode())

    @classmethod
    def load(cls, root: Path | str, environ: dict[str, str] | None = None) -> Farm:
        root = Path(root).resolve()
        path = root / FARM_FILE
        try:
            data = json.loads(path.read_text()) if path.exists() else {}
        except json.JSONDecodeError as exc:
            raise FarmSettingsError(f"{path}, line {exc.lineno}: {exc.msg}") from None
        if not isinstance(data, dict):
            raise FarmSettingsError(f"{path}: must hold one JSON object of settings")
        overrides = settings_from_environment(os.environ if environ is None else environ)
        data.update(overrides)
        known = {f.name for f in fields(cls)} - {"root", "from_environment"}
        unknown_pools = set(data.get("pools", [])) - set(POOLS)
        if unknown_pools:
            raise FarmSettingsError(
                f"{path}: unknown pools {', '.join(sorted(unknown_pools))} (known: {', '.join(POOLS)})"
            )
        unknown = set(data) - known
        if unknown:
            raise FarmSettingsError(f"{path}: unknown keys {', '.join(sorted(unknown))}")
        try:
            Limits(**data.get("build_limits", {}))
        except TypeError as exc:
            raise FarmSettingsError(f"{path}: build_limits: {exc}") from None
        if data.get("scan_hold_at", "high") not in HOLD_LEVELS:
            raise FarmSettingsError(f"{path}: scan_hold_at must be one of {', '.join(HOLD_LEVELS)}")
        if data.get("rebuild_bump", "post") not in BUMPS:
            raise FarmSettingsError(f"{path}: rebuild_bump must be one of {', '.join(BUMPS)}")
        if not re.fullmatch(r"[a-z][a-z0-9]*", data.get("local_label", "x")):
            raise FarmSettingsError(
                f"{path}: local_label must be lowercase letters and digits, starting with a letter"
            )
        if data.get("settings"):
            data["settings"] = Path(data["settings"])
        if set(data.get("pool_index_urls", {})) - set(POOLS):
            raise FarmSettingsError(
                f"{path}: pool_index_urls: unknown pools (known: {', '.join(POOLS)})"
            )
        _check_tables(path, data)
        for mirror in data.get("mirrors", []):
            if (
                not isinstance(mirror, dict)
                or set(mirror) != {"name", "upload_url", "simple_url", "user"}
                or not re.fullmatch(r"[a-z0-9][a-z0-9-]*", str(mirror["name"]))
            ):
                raise FarmSettingsError(
                    f"{path}: mirrors: each is {{name (a-z, 0-9, -), upload_url, simple_url, user}}: {mirror!r}"
                )
        if data.get("index_host") and not data["index_host"].endswith("/"):
            raise FarmSettingsError(
                f"{path}: index_host must end with / (the index's root, above simple/)"
            )
        if data.get("worker_tls_key") and not data.get("worker_tls_cert"):
            raise FarmSettingsError(f"{path}: worker_tls_key without worker_tls_cert")
        if not data.get("roles", MASTER_ROLES) or set(data.get("roles", MASTER_ROLES)) - set(
            MASTER_ROLES
        ):
            raise FarmSettingsError(
                f"{path}: roles must be one or both of {', '.join(MASTER_ROLES)}"
            )
        if urlsplit(data.get("db_url", "sqlite://")).scheme.split("+")[0] not in (
            "sqlite",
            "postgresql",
            "mysql",
        ):
            raise FarmSettingsError(
                f"{path}: db_url must be a sqlite:// or postgresql:// URL (SQLAlchemy's form)"
            )
        return cls(root=root, from_environment=frozenset(overrides), **data)

    @property
    def multi_master(self) -> bool:
        return self.mq_router is not None

    def secret(self, name: str) -> str:
        return (self.secrets_dir / name).read_text().strip()


TEXT_SETTINGS = {f.name for f in fields(Farm) if f.type in ("str", "str | None", "Path | None")}


def settings_from_environment(environ) -> dict:
    """WHEELWRIGHT_<SETTING> variables: text as it is, any other setting as JSON."""
    found = {}
    for f in fields(Farm):
        value = environ.get(ENVIRONMENT_PREFIX + f.name.upper())
        if value is None or f.name in ("root", "from_environment"):
            continue
        try:
            found[f.name] = value if f.name in TEXT_SETTINGS else json.loads(value)
        except ValueError:
            raise FarmSettingsError(
                f"{ENVIRONMENT_PREFIX}{f.name.upper()}: not JSON: {value!r}"
            ) from None
    return found


def _check_tables(path: Path, data: dict) -> None:
    """farm.json's system_tools and notifications, checked before they are used."""
    tools = data.get("system_tools", {})
    if not isinstance(tools, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v and "/" not in v for k, v in tools.items()
    ):
        raise FarmSettingsError(
            f'{path}: system_tools maps PyPI names to commands on PATH: {{"cmake": "cmake"}}'
        )
    for notify in data.get("notifications", []):
        kind = notify.get("type") if isinstance(notify, dict) else None
        allowed = {
            "webhook": {"type", "url", "format", "mode"},
            "mail": {"type", "to", "from", "smtp", "mode"},
        }.get(str(kind))
        if (
            allowed is None
            or set(notify) - allowed
            or notify.get("mode", "failing") not in ("failing", "all")
            or kind == "webhook"
            and not (
                isinstance(notify.get("url"), str)
                and notify.get("format", "json") in ("json", "slack")
            )
            or kind == "mail"
            and not (
                isinstance(notify.get("to"), list)
                and notify["to"]
                and all(isinstance(a, str) and "@" in a for a in notify["to"])
                and re.fullmatch(r"[^:]+:\d+", str(notify.get("smtp", "localhost:25")))
            )
        ):
            raise FarmSettingsError(
                f"{path}: notifications: each is {{type: webhook, url, format: json|slack, "
                f"mode: failing|all}} or {{type: mail, to: [addresses], from, smtp: HOST:PORT, "
                f"mode}}: {notify!r}"
            )
