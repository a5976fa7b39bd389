"""The `wheelwright` command: drive a farm from scripts.

wheelwright up [--upstream URL]     create (first time), upgrade and start the farm
wheelwright down                    stop it
wheelwright status                  where its UI, index and source index are
wheelwright doctor                  what each pool still lacks, and the command that fixes it
wheelwright build NAME==VERSION     force a build through the master's REST API (--wait)
wheelwright rebuild NAME==VERSION   the same, published with a bump (--bump post|local|build-tag)
wheelwright verify NAME==VERSION    build a published version again and compare, publishing nothing
wheelwright diff NAME==VERSION      what changed between two builds of a version
wheelwright bootstrap REQUIREMENT... build them and all they need, bottom-up (--dry-run: the plan)
wheelwright review [approve|reject NAME]  the review queue; approving allow-lists and builds it
wheelwright which WHEEL|SHA256|NAME==VERSION  the build, logs, sdist and environment a wheel came from
wheelwright seed FILE...            publish wheels that cannot be built from source, marked seeded
wheelwright worker create NAME --pool POOL   what another machine runs to be that worker (--dir: make it here)
wheelwright user add NAME [--role releng|admin]   a user who may force, rebuild and stop in the UI
wheelwright yank NAME==VERSION --reason TEXT      installers skip it unless pinned (unyank: undo)

Each command answers for a reader; with --json, as JSON for scripts.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import getpass
import importlib.metadata
import json
import os
import re
import secrets
import sys
import tempfile
import time
from functools import reduce
from pathlib import Path

from buildbot.process.results import SUCCESS, Results, worst_status
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import InvalidWheelFilename, parse_wheel_filename
from packaging.version import Version

from wheelwright.bootstrap import plan as bootstrap
from wheelwright.cli.restclient import Api, build_url
from wheelwright.common import lookup
from wheelwright.common.files import sha256_of
from wheelwright.common.lookup import IndexUnreachable
from wheelwright.common.runtime import DISTRIBUTION
from wheelwright.farm import control, tls
from wheelwright.farm.pools import POOLS
from wheelwright.farm.settings import (
    BOOTSTRAP_SCHEDULER,
    BUMPS,
    CLI_SECRET,
    CLI_USER,
    UPLOAD_SECRET,
    UPLOAD_USER,
    USER_ROLES,
    Farm,
    FarmSettingsError,
)
from wheelwright.indexhost import accounts
from wheelwright.indexhost.upload import UploadError, upload
from wheelwright.policy.lastgood import ConfigError
from wheelwright.policy.package_settings import SettingsError, check_folder
from wheelwright.policy.review import ReviewError, decide, pulled_in, read_queue
from wheelwright.publishing import rebuilddiff
from wheelwright.publishing.provenance import carried_by
from wheelwright.publishing.yanks import yank_and_log
from wheelwright.sources import scan
from wheelwright.sources.upstream import SourceError

STATE_VARIABLE = "WHEELWRIGHT_STATE"
PLAIN_EVERY = 10.0
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_NO_WORKER = 0, 1, 2, 3, 4
EXIT_CODES = """exit codes:
  0  done
  1  a build failed, or the command did
  2  usage or settings: a wrong argument, farm.json or a package's settings, a missing file
  3  the farm, our index or the upstream cannot be reached
  4  queued, but no worker can take the build"""


def _farm(args) -> Farm:
    return Farm.load(args.state)


def cmd_up(args) -> int:
    farm = _farm(args)
    changes = {
        k: getattr(args, k)
        for k in (
            "upstream",
            "ui_port",
            "worker_port",
            "index_port",
            "listen",
            "docker_host",
            "container_network",
            "container_master_host",
            "emulation",
            "root_cache",
            "db_url",
            "mq_router",
            "worker_tls",
            "public_host",
        )
        if getattr(args, k) is not None
    }
    for listed in ("pools", "roles"):
        if getattr(args, listed):
            changes[listed] = getattr(args, listed).split(",")
    if args.settings:
        changes["settings"] = args.settings.resolve()
    farm = dataclasses.replace(
        farm, **changes, from_environment=farm.from_environment - set(changes)
    )
    for line in control.up(farm):
        print(line, file=sys.stderr)
    for problem in check_folder(farm.settings_dir):  # builds of those packages would fail
        print(f"settings: {problem}", file=sys.stderr)
    Api(farm).login(again=True)  # a session for the commands to come: none of them logs in anew
    if args.json:
        emit(args, {"ui": farm.ui_url, "index": farm.index_url, "state": str(farm.root)})
        return 0
    print(
        f"farm is up: UI {farm.ui_url}  index {farm.index_url}  state {farm.root}\n"
        f"to force builds in the UI, log in as {CLI_USER} (password in {farm.secrets_dir / CLI_SECRET}) "
        "or add yourself: wheelwright user add NAME"
    )
    return 0


def cmd_doctor(args) -> int:
    """Exit 0 when the farm and every pool it runs here has what it needs, 1 when not."""
    from wheelwright.farm import doctor

    farm = _farm(args)
    problems = doctor.check(farm)
    if args.json:
        emit(args, [dataclasses.asdict(p) for p in problems])
    else:
        for problem in problems:
            print(problem)
        if not problems:
            pools = ", ".join(pool.name for pool in farm.pools_here())
            print(f"ok: the farm and its pools here ({pools}) have what they need")
    return 1 if problems else 0


def cmd_settings(args) -> int:
    """Check the whole settings folder as builds would read it: exit 1 on any problem."""
    farm = _farm(args)
    problems = check_folder(args.settings or farm.settings_dir)
    if args.json:
        emit(args, problems)
    else:
        for problem in problems:
            print(problem)
        if not problems:
            print(f"ok: {args.settings or farm.settings_dir} holds no problem")
    return 1 if problems else 0


def cmd_down(args) -> int:
    control.down(_farm(args))
    return 0


def cmd_status(args) -> int:
    farm = _farm(args)
    status: dict = {"ui": farm.ui_url, "index": farm.index_url, "sources": farm.sources_url}
    if farm.upstream_watch_file.exists():  # written by the master once it has chosen
        status["watching"] = json.loads(farm.upstream_watch_file.read_text())["said"]
    processes = status["processes"] = control.health(farm)
    emit(args, status)
    down = sorted(name for name, said in processes.items() if said != "up")
    if down:
        print(f"wheelwright: down: {', '.join(down)} (hint: wheelwright up)", file=sys.stderr)
        return EXIT_UNREACHABLE
    return 0


class UsageError(Exception):
    """A command given wrongly: the message says how to give it (exit 2)."""


def emit(args, answer) -> None:
    """A command's answer on stdout: JSON with --json (for scripts), else as a reader reads it
    (YAML's block layout: the same keys, no braces or quotes)."""
    if args.json:
        print(json.dumps(answer, indent=2))
    else:
        import yaml

        print(yaml.safe_dump(answer, sort_keys=False, allow_unicode=True, width=100).rstrip("\n"))


def parse_pin(text: str, newest: bool = False) -> tuple[str, str]:
    """NAME==VERSION as (name, version); with newest, a bare NAME too, as (name, "") (the build
    takes the newest release upstream, as the UI's force form does)."""
    try:
        req = Requirement(text)
    except InvalidRequirement as exc:
        raise UsageError(f"{text!r} is not NAME==VERSION ({exc})") from None
    specs = list(req.specifier)
    if newest and not specs and not req.extras and req.marker is None:
        return req.name, ""
    if len(specs) != 1 or specs[0].operator != "==" or "*" in specs[0].version:
        raise UsageError(
            f"{text!r} must pin one version, as NAME==VERSION"
            + (" (or be a bare NAME: its newest release)" if newest else "")
        )
    return req.name, specs[0].version


def known_or_refused(farm: Farm, names: list[str], new_project: bool) -> None:
    """A project neither in our index nor on the allow-list is refused, with the names that are
    close to it: `numpi` would build an unrelated project. --new-project builds it anyway."""
    if new_project:
        return
    from difflib import get_close_matches

    from packaging.utils import canonicalize_name

    from wheelwright.policy.review import allowlist_for

    known = set(lookup.projects(farm.index_url)) | set(allowlist_for(farm)[0])
    for name in names:
        wanted = canonicalize_name(name)
        if wanted in known:
            continue
        close = get_close_matches(wanted, sorted(known), n=3, cutoff=0.75)
        raise UsageError(
            f"{name} is neither in our index nor on the allow-list"
            + (f"; did you mean {' or '.join(close)}?" if close else "")
            + " To build it all the same: --new-project"
        )


@contextlib.contextmanager
def progress(what: str):
    """On a terminal, a line on stderr that says which step a build is in (rich); elsewhere a
    plain line on stderr when the step changes and every PLAIN_EVERY s (a CI job that prints
    nothing for long is killed as stuck); scripts read the JSON result on stdout."""
    if not sys.stderr.isatty():
        started = time.monotonic()
        said: list[str] = []
        said_at = [0.0]

        def plain(text: str) -> None:
            now = time.monotonic()
            if said[-1:] != [text] or now - said_at[0] >= PLAIN_EVERY:
                print(f"wheelwright: {what}: {text} ({now - started:.0f} s)", file=sys.stderr)
                said.append(text)
                said_at[0] = now

        yield plain
        return
    import rich.console  # here: only a terminal needs it, and it is slow to import
    import rich.progress

    with rich.progress.Progress(
        rich.progress.SpinnerColumn(),
        rich.progress.TextColumn("{task.description}"),
        rich.progress.TimeElapsedColumn(),
        console=rich.console.Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task(what)
        yield lambda text: bar.update(task, description=f"{what}: {text}")


def cmd_build(args) -> int:
    farm = _farm(args)
    package, version = parse_pin(args.pin, newest=args.command == "build")
    if args.command == "build":
        known_or_refused(farm, [package], args.new_project)
    api = Api(farm)
    requests_by_builder = api.force(
        package,
        version,
        args.builder,
        rebuild=args.command == "rebuild",
        bump=getattr(args, "bump", None),
        verify=args.command == "verify",
    )
    if not args.wait:
        emit(args, {"buildrequests": requests_by_builder})
        return 0
    builds = []
    for builderid, brid in requests_by_builder.items():
        if api.has_worker(int(builderid)):
            name = api.get(f"builders/{builderid}")["builders"][0]["name"]
            with progress(f"{package} {version or '(newest)'} on {name}") as show:
                builds.append(api.describe(farm, api.wait(brid, show=show)))
        else:
            # Queued until one of its pool's workers connects; waiting here could take forever.
            name = api.get(f"builders/{builderid}")["builders"][0]["name"]
            builds.append(
                {
                    "result": "pending",
                    "builder": name,
                    "buildrequest": brid,
                    "summary": "no worker of this builder's pool is connected; the build stays queued",
                }
            )
    done = [b for b in builds if b["result"] != "pending"]
    output = (
        builds[0]
        if len(builds) == 1
        else {
            "result": Results[reduce(worst_status, (Results.index(b["result"]) for b in done))]
            if done
            else "pending",
            "builds": builds,
        }
    )
    emit(args, output)
    if not done:
        return EXIT_NO_WORKER
    return 0 if all(b["result"] in ("success", "warnings", "skipped") for b in done) else 1


def cmd_bootstrap(args) -> int:
    farm = _farm(args)
    constraints = args.constraints.read_text() if args.constraints else ""
    try:
        roots = [Requirement(text).name for text in args.requirements]
    except InvalidRequirement as exc:
        raise UsageError(f"not a requirement: {exc}") from None
    known_or_refused(farm, roots, args.new_project)
    if args.dry_run:
        try:
            nodes, keys = bootstrap.plan_tree(
                farm,
                args.requirements,
                constraints,
                args.versions or 0,
                args.builder or farm.local_builders(),
            )
        except (bootstrap.BootstrapError, IndexUnreachable, SourceError) as exc:
            print(f"wheelwright: {exc}", file=sys.stderr)
            return 1
        planned = bootstrap.planned_json(nodes, keys)
        emit(args, {"plan": planned})
        return 0
    api = Api(farm)
    (brid,) = api.force_scheduler(
        BOOTSTRAP_SCHEDULER,
        {
            "builderNames": ["bootstrap"],
            "requirements": " ".join(args.requirements),
            "constraints": constraints,
            "versions": args.versions or 0,
            "builders": " ".join(args.builder or []),
            "reason": f"wheelwright bootstrap {' '.join(args.requirements)}",
        },
    ).values()
    if not args.wait:
        emit(args, {"buildrequest": brid})
        return 0
    with progress(f"bootstrap {' '.join(args.requirements)}") as show:
        build = api.wait(brid, follow="progress", show=show)
    outcome = api.property(build, "bootstrap_outcome") or {}
    emit(
        args,
        {
            "build_url": build_url(farm, build),
            "result": Results[build["results"]],
            **outcome,
            **({} if outcome else {"failed_steps": api.describe(farm, build)["failed_steps"]}),
        },
    )
    return 0 if build["results"] == SUCCESS else 1


def cmd_review(args) -> int:
    farm = _farm(args)
    if args.action == "list":
        queue = read_queue(farm.review_queue)
        for entry in queue.values():
            if not entry.get("held"):  # a held release's project is allow-listed already
                entry["would pull in"] = _pulled_in(farm, entry["project"])
        waiting = read_queue(farm.review_waiting)
        emit(args, {**queue, **({"after approval": waiting} if waiting else {})})
        return 0
    try:
        pulls = _pulled_in(farm, args.project) if args.with_deps else []
        if isinstance(pulls, str):
            raise ReviewError(pulls)
        entry = decide(farm, args.project, args.action == "approve", args.reviewer, args.note)
        for project in pulls:
            decide(
                farm,
                project,
                True,
                args.reviewer,
                f"with {entry['project']}: {args.note}",
                queued=False,
            )
    except (ReviewError, ConfigError) as exc:
        print(f"wheelwright: {exc}", file=sys.stderr)
        return 1
    output = {
        {"approve": "approved", "reject": "rejected"}[args.action]: entry["project"],
        "requests": entry["requests"],
        **({"with": pulls} if args.with_deps else {}),
    }
    held = entry.get("held", [])
    if (
        args.with_deps and not args.no_build
    ):  # the whole tree, bottom-up, then the builds that waited
        output["bootstrap"] = Api(farm).force_scheduler(
            BOOTSTRAP_SCHEDULER,
            {
                "builderNames": ["bootstrap"],
                "requirements": entry["project"],
                "constraints": "",
                "versions": 0,
                "builders": " ".join(farm.local_builders()),
                "reason": f"{entry['project']} approved with its dependencies",
            },
        )
        emit(args, output)
        return 0
    if args.action == "approve":
        for release in held:  # the scan's findings were read: these very bytes may be built
            scan.approve(farm, release["sha256"], args.reviewer)
    if args.action == "approve" and not args.no_build:
        api = Api(
            farm
        )  # the held releases, or a new package's latest, on every builder with a worker here
        output["buildrequests"] = [
            api.force(entry["project"], version, farm.local_builders())
            for version in [r["version"] for r in held] or [""]
        ]
    emit(args, output)
    return 0


def _pulled_in(farm, project: str) -> list[str] | str:
    """What approving project would pull in, or why that cannot be told."""
    try:
        return pulled_in(farm, project)
    except (bootstrap.BootstrapError, SourceError, IndexUnreachable) as exc:
        return f"cannot tell: {exc}"


def cmd_which(args) -> int:
    """Where a wheel came from: the build, its logs, the sdist, the build environment. The target
    is a wheel file found anywhere (what it carries, and whether our index published it), a file
    name, a sha256, or NAME==VERSION."""
    farm = _farm(args)
    path = Path(args.target)
    if args.target.endswith(".whl") and path.is_file():
        sha256 = sha256_of(path)
        published = lookup.published_as(farm.index_url, sha256)
        carried = carried_by(path)
        if carried is None and published is None:
            print(
                f"wheelwright: {path.name} carries no provenance of ours, and our index has no file with its "
                f"sha256 {sha256}",
                file=sys.stderr,
            )
            return 1
        where = lookup.file_url(farm.index_url, *published) if published else None
        emit(
            args,
            {
                "wheel": path.name,
                "sha256": sha256,
                "published_by_our_index": where,
                **(carried or {}),
            },
        )
        return 0
    if re.fullmatch(r"[0-9a-fA-F]{64}", args.target):
        published = lookup.published_as(farm.index_url, args.target.lower())
        if published is None:
            print(f"wheelwright: our index has no file with sha256 {args.target}", file=sys.stderr)
            return 1
        project, filename = published
        version = str(parse_wheel_filename(filename)[1])
    elif args.target.endswith(".whl"):
        filename = path.name
        try:
            project, parsed = parse_wheel_filename(filename)[:2]
            version = str(parsed)
        except InvalidWheelFilename as exc:
            raise SystemExit(f"wheelwright: {exc}") from None
    else:
        filename = None
        project, version = parse_pin(args.target)
    found = []
    for entry in lookup.wheels_of(farm.index_url, project, str(version)):
        if filename in (None, entry["filename"]):
            url = lookup.file_url(farm.index_url, project, entry["filename"])
            found.append(
                {
                    "wheel": entry["filename"],
                    "url": url,
                    "sha256": entry["hashes"]["sha256"],
                    "build_environment": url + ".freeze.txt",
                    **lookup.provenance(farm.index_url, project, entry["filename"]),
                }
            )
    if not found:
        print(f"wheelwright: our index has no wheel {args.target}", file=sys.stderr)
        return 1
    emit(args, found if len(found) > 1 else found[0])
    return 0


def cmd_diff(args) -> int:
    """What changed between two builds of NAME==VERSION: by default its two latest builds (on
    --builder, if given); --from and --to name others (wheel file names in our index, or files)."""
    farm = _farm(args)
    project, version = parse_pin(args.pin)
    builds = [
        b
        for b in rebuilddiff.builds_of(farm.index_url, project, str(Version(version)))
        if args.builder in (None, b["provenance"].get("builder"))
    ]
    names = [b["filename"] for b in builds]
    before = args.before or (names[-2] if len(names) > 1 else None)
    after = args.after or (names[-1] if names else None)
    if before is None or after is None:
        print(
            f"wheelwright: our index has fewer than two builds of {project} {version}"
            f"{' on ' + args.builder if args.builder else ''} to compare",
            file=sys.stderr,
        )
        return 1
    with tempfile.TemporaryDirectory() as scratch:
        facts = []
        for name in (before, after):
            path = Path(name)
            if not path.is_file():
                if name not in names:
                    print(
                        f"wheelwright: {name} is no build of {project} {version} in our index",
                        file=sys.stderr,
                    )
                    return 1
                path = rebuilddiff.download(farm.index_url, project, name, Path(scratch))
            facts.append(rebuilddiff.facts_of(path))
    report = rebuilddiff.report(*facts)
    if args.json:
        emit(args, {"before": before, "after": after, "report": report.splitlines()})
    else:
        print(report, end="")
    return 0


def cmd_seed(args) -> int:
    farm = _farm(args)
    password = farm.secret(UPLOAD_SECRET)
    log = farm.logs_dir / "seed.log"
    failed, seeded = 0, []
    for path in args.files:
        provenance = {"seeded": True, "seeded_from": str(path.resolve()), "reason": args.reason}
        try:
            entry = upload(farm.upload_url, UPLOAD_USER, password, path, provenance=provenance)
        except UploadError as exc:
            print(f"wheelwright: {exc}", file=sys.stderr)
            failed += 1
            continue
        line = (
            f"{entry['upload-time']} seeded {entry['filename']} sha256={entry['sha256']} "
            f"from {path}: {args.reason}\n"
        )
        with open(log, "a") as f:
            f.write(line)
        seeded.append(entry)
        if not args.json:
            print(line, end="")
    if args.json:
        emit(args, seeded)
    return 1 if failed else 0


def cmd_yank(args) -> int:
    """Yank (or unyank) a version's wheels in our index: pip takes them only when pinned."""
    farm = _farm(args)
    project, version = parse_pin(args.pin)
    reason = args.reason if args.command == "yank" else None
    try:
        answer = yank_and_log(
            farm,
            farm.secret(UPLOAD_SECRET),
            project,
            version,
            reason,
            args.file,
            args.by,
            getattr(args, "note", ""),
        )
    except UploadError as exc:
        print(f"wheelwright: {exc}", file=sys.stderr)
        return 1
    emit(args, {**answer, "by": args.by})
    return 0


def cmd_worker(args) -> int:
    farm = _farm(args)
    pool = POOLS.get(args.pool)
    if pool is None or args.name not in pool.worker_names():
        known = ", ".join(f"{p.name} ({', '.join(p.worker_names())})" for p in POOLS.values())
        raise SystemExit(
            f"wheelwright: {args.name} is not a worker of pool {args.pool}; the pools: {known}"
        )
    if pool.name not in farm.pools:
        raise SystemExit(
            f"wheelwright: this farm does not run pool {pool.name}: "
            f"wheelwright up --pools {','.join([*farm.pools, pool.name])}"
        )
    try:
        password = farm.secret(f"worker-{args.name}")
    except FileNotFoundError:
        raise SystemExit("wheelwright: no password for it yet: run wheelwright up first") from None
    master = args.master or f"{farm.reachable_host}:{farm.worker_port}"
    host = master.rsplit(":", 1)[0]
    if farm.worker_tls and host not in tls.names_in(tls.certificate(farm)[2]):
        raise SystemExit(
            f"wheelwright: the master's certificate is not for {host}: wheelwright up --public-host {host} "
            "(a certificate the farm made is made again), or give one for it (worker_tls_cert)"
        )
    if args.dir:
        try:
            control.create_worker_at(farm, args.dir.resolve(), args.name, password, master)
        except control.FarmError as exc:
            raise SystemExit(f"wheelwright: {exc}") from None
        print(f"created {args.dir}: start it with buildbot-worker start {args.dir}")
    else:
        try:
            version = control.publish_worker_tools(farm)
        except (control.FarmError, UploadError) as exc:
            raise SystemExit(f"wheelwright: {exc}") from None
        print(
            control.remote_worker_script(farm, pool, args.name, master, password, version), end=""
        )
    return 0


def cmd_user(args) -> int:
    """Add (or reset) a user of the web UI; prints the password unless one comes on stdin."""
    farm = _farm(args)
    if not farm.secrets_dir.is_dir():
        raise SystemExit(
            f"wheelwright: {farm.secrets_dir} does not exist: run `wheelwright up` first"
        )
    password = (
        sys.stdin.readline().rstrip("\n") if args.password_stdin else secrets.token_urlsafe(18)
    )
    if len(password) < 12:
        raise SystemExit("wheelwright: a password needs 12 characters at least")
    accounts.add(farm.www_users, args.name, password, USER_ROLES[args.role])
    emit(
        args,
        {
            "user": args.name,
            "roles": USER_ROLES[args.role],
            **({} if args.password_stdin else {"password": password}),
        },
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command line: global options, then the commands by what they act on."""
    # The global options, accepted before the command and after it (as uv's and fromager's are).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--state",
        type=Path,
        default=argparse.SUPPRESS,
        help=f"the farm's state directory (${STATE_VARIABLE}, else ./farm)",
    )
    common.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print each answer as JSON, for scripts (default: for a reader)",
    )
    common.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show the traceback of an error, not only its line",
    )
    parser = argparse.ArgumentParser(
        prog="wheelwright",
        description=__doc__,
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"%(prog)s {importlib.metadata.version(DISTRIBUTION)}",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser = functools.partial(sub.add_parser, parents=[common])  # type: ignore[method-assign]
    _farm_commands(sub)
    _build_commands(sub)
    _index_commands(sub)
    return parser


def _farm_commands(sub) -> None:
    """The farm itself: its processes, its checks, its workers elsewhere and its users."""
    p = sub.add_parser("up", help="create, upgrade and start the farm")
    p.add_argument("--upstream", help="upstream index (default: the one pip itself defaults to)")
    p.add_argument(
        "--settings",
        type=Path,
        help="settings directory in fromager's layout (default: <state>/overrides)",
    )
    p.add_argument("--ui-port", type=int)
    p.add_argument("--worker-port", type=int)
    p.add_argument("--index-port", type=int)
    p.add_argument("--pools", help="comma-separated pools from farm/pools.py (default: local)")
    p.add_argument(
        "--listen", help="interface for the worker port and the index (default 127.0.0.1)"
    )
    p.add_argument(
        "--docker-host", help="Docker API for container pools, e.g. unix:///run/docker.sock"
    )
    p.add_argument("--container-network", help="the network containers join (an internal one)")
    p.add_argument(
        "--container-master-host", help="the master's and index's address on that network"
    )
    p.add_argument(
        "--emulation",
        action=argparse.BooleanOptionalAction,
        help="run workers of a remote pool's architecture here under qemu when none are at hand (default: on)",
    )
    p.add_argument(
        "--root-cache", help="where the root filesystems of emulated workers are made and kept"
    )
    p.add_argument(
        "--worker-tls",
        dest="worker_tls",
        action=argparse.BooleanOptionalAction,
        help="the worker port speaks TLS (a certificate the farm makes, or farm.json worker_tls_cert)",
    )
    p.add_argument(
        "--public-host",
        help="the master's address as other machines reach it (remote workers, their index)",
    )
    p.add_argument(
        "--db",
        dest="db_url",
        help="Buildbot's database, e.g. postgresql://USER@HOST/DB (default: sqlite)",
    )
    p.add_argument(
        "--mq-router", help="several masters: the Crossbar router's ws:// URL (see docs/deploy.md)"
    )
    p.add_argument("--roles", help="what this master runs: ui, builds or ui,builds (the default)")
    p.set_defaults(func=cmd_up)
    sub.add_parser("down", help="stop the farm").set_defaults(func=cmd_down)
    p = sub.add_parser(
        "doctor", help="check what the farm and each pool need beyond Python (up checks it too)"
    )
    p.set_defaults(func=cmd_doctor)
    p = sub.add_parser("settings", help="package settings and patches")
    settings_sub = p.add_subparsers(dest="settings_action", required=True)
    p = settings_sub.add_parser(
        "check", help="check every settings file and patch folder, as builds would read them"
    )
    p.add_argument("--settings", type=Path, help="the folder (default: the farm's)")
    p.set_defaults(func=cmd_settings)
    p = sub.add_parser("status", help="where the farm's parts are")
    p.set_defaults(func=cmd_status)
    p = sub.add_parser("worker", help="workers on other machines")
    worker_sub = p.add_subparsers(dest="worker_action", required=True)
    p = worker_sub.add_parser(
        "create", help="print what another machine runs to be one of a pool's workers"
    )
    p.add_argument("name", help="one of the pool's worker names (farm/pools.py), e.g. aarch64-1")
    p.add_argument("--pool", required=True)
    p.add_argument(
        "--master",
        metavar="HOST:PORT",
        help="the worker port as that machine reaches it (default: public_host and worker_port)",
    )
    p.add_argument(
        "--dir", type=Path, help="make the worker's folder here instead (to run it on this machine)"
    )
    p.set_defaults(func=cmd_worker)
    p = sub.add_parser("user", help="manage who may steer the farm from its web UI")
    user_sub = p.add_subparsers(dest="user_action", required=True)
    p = user_sub.add_parser("add", help="add a user (or give one a new password and role)")
    p.add_argument("name")
    p.add_argument("--role", choices=sorted(USER_ROLES), default="releng")
    p.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from stdin instead of making one",
    )
    p.set_defaults(func=cmd_user)


def _build_commands(sub) -> None:
    """What starts builds: one package, a tree, the review queue."""
    for name, text in (
        ("build", "force a build of NAME==VERSION"),
        ("rebuild", "build NAME==VERSION again, published with a bump"),
        (
            "verify",
            "build a published NAME==VERSION again (on another worker if one is free), "
            "publish nothing, and say whether it reproduces bit for bit",
        ),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("pin", metavar="NAME[==VERSION]" if name == "build" else "NAME==VERSION")
        if name == "build":
            p.add_argument(
                "--new-project",
                action="store_true",
                help="build a project neither our index nor the allow-list knows",
            )
        if name == "rebuild":
            p.add_argument(
                "--bump",
                choices=BUMPS,
                help="post: VERSION.postN; local: VERSION+<label>.N; build-tag: "
                "build number N (default: the package's or the farm's)",
            )
        p.add_argument(
            "--builder", action="append", help="only this builder (repeatable; default: all)"
        )
        p.add_argument(
            "--wait",
            action="store_true",
            help="wait and print the result; exit 1 unless it succeeded",
        )
        p.set_defaults(func=cmd_build)
    p = sub.add_parser("bootstrap", help="build projects and everything they need, bottom-up")
    p.add_argument(
        "requirements",
        nargs="+",
        metavar="REQUIREMENT",
        help="NAME, NAME==VERSION or any PEP 508 "
        "requirement; each is resolved on its own, so two versions of one project may both be asked for",
    )
    p.add_argument(
        "--constraints", type=Path, help="a constraints file: pins every resolution must keep to"
    )
    p.add_argument(
        "--versions", type=int, help="build the newest N versions each requirement allows"
    )
    p.add_argument(
        "--builder", action="append", help="only this builder (repeatable; default: all)"
    )
    p.add_argument("--dry-run", action="store_true", help="print the plan and build nothing")
    p.add_argument(
        "--new-project",
        action="store_true",
        help="build roots neither our index nor the allow-list knows",
    )
    p.add_argument(
        "--wait",
        action="store_true",
        help="follow the bootstrap build, its progress on stderr, and print "
        "its outcome; exit 1 unless every package was built",
    )
    p.set_defaults(func=cmd_bootstrap)
    p = sub.add_parser("review", help="the review queue: list it, approve or reject a project")
    p.add_argument("action", nargs="?", choices=["list", "approve", "reject"], default="list")
    p.add_argument("project", nargs="?")
    p.add_argument(
        "--note", default="", help="why (logged in farm/logs/review.log and the allow-list)"
    )
    p.add_argument("--reviewer", default=getpass.getuser())
    p.add_argument(
        "--no-build", action="store_true", help="approve without building its latest release now"
    )
    p.add_argument(
        "--with-deps",
        action="store_true",
        help="approve too the projects it would pull in, and build "
        "them all bottom-up (a bootstrap), then what waited",
    )
    p.set_defaults(func=cmd_review)


def _index_commands(sub) -> None:
    """What our index holds: where a wheel came from, yanks, two builds compared, seeds."""
    p = sub.add_parser("which", help="where a wheel came from: the build that made it")
    p.add_argument(
        "target",
        metavar="WHEEL|SHA256|NAME==VERSION",
        help="a wheel file (what it carries), a wheel's file name, its sha256, or NAME==VERSION",
    )
    p.set_defaults(func=cmd_which)
    for name, text in (
        ("yank", "yank a version (PEP 592): installers take it only when pinned"),
        ("unyank", "take a yank back"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("pin", metavar="NAME==VERSION")
        p.add_argument("--file", help="only this file of the version")
        p.add_argument("--by", default=getpass.getuser(), help="who (logged in farm/logs/yank.log)")
        if name == "yank":
            p.add_argument("--reason", required=True, help="why (shown to installers)")
        else:
            p.add_argument("--note", default="", help="why (logged)")
        p.set_defaults(func=cmd_yank)
    p = sub.add_parser("diff", help="what changed between two builds of a version")
    p.add_argument("pin", metavar="NAME==VERSION")
    p.add_argument("--builder", help="only builds of this builder")
    p.add_argument(
        "--from",
        dest="before",
        metavar="WHEEL",
        help="the earlier build's wheel (default: the one before the latest)",
    )
    p.add_argument(
        "--to", dest="after", metavar="WHEEL", help="the later build's wheel (default: the latest)"
    )
    p.set_defaults(func=cmd_diff)
    p = sub.add_parser(
        "seed", help="publish wheels that cannot be built from source, marked as seeded"
    )
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument(
        "--reason", required=True, help="why these are seeded rather than built (logged)"
    )
    p.set_defaults(func=cmd_seed)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Set here, not as the parser's defaults: the option is one object shared with every command's
    # parser, and a default set on it would undo a --state given before the command.
    if not hasattr(args, "state"):
        args.state = Path(os.environ.get(STATE_VARIABLE) or "farm")
    args.debug = getattr(args, "debug", False)
    args.json = getattr(args, "json", False)
    if args.func is cmd_review and args.action != "list" and not args.project:
        parser.error(f"review {args.action} needs a PROJECT")
    try:
        return args.func(args)
    except Exception as exc:
        if args.debug:
            raise
        code, line = said_of(exc)
        print(f"wheelwright: {line}", file=sys.stderr)
        return code
    except KeyboardInterrupt:
        return 130


def said_of(exc: Exception) -> tuple[int, str]:
    """An error as the one line a user reads and the exit code a script reads (EXIT_CODES)."""
    import requests

    if isinstance(exc, control.FarmError):
        return EXIT_FAILED, str(exc)
    if isinstance(exc, UsageError):
        return EXIT_USAGE, str(exc)
    if isinstance(exc, FarmSettingsError | SettingsError | ConfigError):
        return EXIT_USAGE, f"{exc} (fix the setting, then run the command again)"
    if isinstance(exc, FileNotFoundError):
        return EXIT_USAGE, f"{exc.filename}: no such file"
    if isinstance(exc, IndexUnreachable):
        return EXIT_UNREACHABLE, f"{exc} (is the farm up? wheelwright status)"
    if isinstance(exc, requests.ConnectionError | ConnectionError):
        return EXIT_UNREACHABLE, (
            "the farm's master does not answer: is the farm up? (make up, or wheelwright up)"
        )
    if isinstance(exc, SourceError):
        return EXIT_UNREACHABLE, str(exc)
    return EXIT_FAILED, (
        f"unexpected {type(exc).__name__}: {exc} (run again with --debug for the traceback, "
        "and report it)"
    )


if __name__ == "__main__":
    sys.exit(main())
