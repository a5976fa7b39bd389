"""The farm's REST client: the master's Buildbot API (api/v2), logged in as the farm's own
account, for the `wheelwright` command."""

from __future__ import annotations

import contextlib
import json
import re
import sys
import time
import typing

import requests
import websocket
from buildbot.process.results import SKIPPED, SUCCESS, WARNINGS, Results

from wheelwright.common.files import write_atomic
from wheelwright.farm.pools import POOLS
from wheelwright.farm.settings import CLI_SECRET, CLI_USER, FORCE_SCHEDULER, Farm
from wheelwright.policy.puregate import PURE_WHEEL_PUBLISHED

# The command's session with the master, kept beside its password for the next command: a login
# checks the password with PBKDF2 on the master (a tenth of a second and more on a small one).
SESSION = "www-session.json"


def build_url(farm: Farm, build: dict) -> str:
    return f"{farm.ui_url}#/builders/{build['builderid']}/builds/{build['number']}"


class Api:
    def __init__(self, farm: Farm):
        self.base = farm.ui_url + "api/v2/"
        self.session = requests.Session()
        self.farm = farm
        self.logged_in = self.resumed = False
        self.log_ids: dict[tuple[int, str], int] = {}

    def login(self, again: bool = False) -> None:
        """Log in as the farm's own account (control endpoints are for release engineers), or
        resume the session an earlier command kept; again: a new login, that session refused."""
        if self.logged_in and not again:
            return
        kept = self.farm.secrets_dir / SESSION
        if not again and self._resume(kept):
            self.logged_in = self.resumed = True
            return
        try:
            password = self.farm.secret(CLI_SECRET)
        except OSError:
            raise SystemExit(
                f"wheelwright: no credentials in {self.farm.secrets_dir}: run `wheelwright up` "
                "first, or use an account of your own in the web UI"
            ) from None
        response = self.session.get(
            self.farm.ui_url + "auth/login",
            auth=(CLI_USER, password),
            timeout=30,
            allow_redirects=False,
        )
        if response.status_code >= 400:
            raise SystemExit(f"wheelwright: the master refused our login ({response.status_code})")
        self.logged_in, self.resumed = True, False
        session = {"ui_url": self.farm.ui_url, "cookies": self.session.cookies.get_dict()}
        with contextlib.suppress(OSError):  # kept to save the next command a login, if it can be
            write_atomic(kept, json.dumps(session).encode(), mode=0o600)

    def _resume(self, kept) -> bool:
        try:
            session = json.loads(kept.read_text())
        except (OSError, ValueError):
            return False
        if not isinstance(session, dict) or session.get("ui_url") != self.farm.ui_url:
            return False  # a session with a master that was at another address
        for name, value in (session.get("cookies") or {}).items():
            self.session.cookies.set(name, value)
        return bool(session.get("cookies"))

    def get(self, path: str, **params) -> dict:
        response = self.session.get(self.base + path, params=params, timeout=30)
        response.raise_for_status()
        return response.json()

    def force(
        self,
        package: str,
        version: str,
        builders: list[str] | None,
        rebuild: bool = False,
        bump: str | None = None,
        verify: bool = False,
    ) -> dict[str, int]:
        if not builders:
            scheduler = self.get(f"forceschedulers/{FORCE_SCHEDULER}")["forceschedulers"][0]
            builders = scheduler["builder_names"]
        return self.force_scheduler(
            FORCE_SCHEDULER,
            {
                "builderNames": builders,
                "package": package,
                "version": version,
                "rebuild": rebuild,
                "bump": bump or "",
                "verify": verify,
                "reason": f"wheelwright {'rebuild' if rebuild else 'verify' if verify else 'build'} "
                f"{package}=={version}",
            },
        )

    def force_scheduler(self, scheduler: str, params: dict) -> dict[str, int]:
        """Post to a force form; returns its build requests by builder id."""
        body: dict[str, typing.Any] = {
            "jsonrpc": "2.0",
            "method": "force",
            "id": 1,
            "params": params,
        }
        self.login()
        url = self.base + f"forceschedulers/{scheduler}"
        response = self.session.post(url, json=body, timeout=30)
        if response.status_code in (401, 403) and self.resumed:  # the kept session has expired
            self.login(again=True)
            response = self.session.post(url, json=body, timeout=30)
        answer = response.json()
        if "error" in answer:
            raise SystemExit(
                f"wheelwright: the master refused the build: {answer['error'].get('message')}"
            )
        _, requests_by_builder = answer["result"]
        return requests_by_builder

    def copy_log(self, brid: int, slug: str, shown: int) -> int:
        """Print the lines of a running build's log past the first `shown`; returns how many there are."""
        logid = self.log_ids.get((brid, slug)) or self._log_id(brid, slug)
        if logid is None:
            return shown
        lines = self.session.get(self.base + f"logs/{logid}/raw", timeout=30).text.splitlines()
        for line in lines[shown:]:
            print(line, file=sys.stderr, flush=True)
        return len(lines)

    def _log_id(self, brid: int, slug: str) -> int | None:
        """The id of the first log named slug of the request's builds, looked up once it is there
        (a log keeps its id; four queries less each time the log is copied)."""
        for build in self.get(f"buildrequests/{brid}/builds")["builds"]:
            for step in self.get(f"builds/{build['buildid']}/steps")["steps"]:
                for log in self.get(f"steps/{step['stepid']}/logs")["logs"]:
                    if log["slug"] == slug:
                        self.log_ids[(brid, slug)] = log["logid"]
                        return log["logid"]
        return None

    def property(self, build: dict, name: str):
        return self.get(f"builds/{build['buildid']}", property=name)["builds"][0]["properties"].get(
            name, [None]
        )[0]

    def log_tail(self, stepid: int, lines: int = 15, slug: str = "stdio") -> str:
        """The end of a step's log (stdio: usually where it says why it failed)."""
        logs = {log["slug"]: log for log in self.get(f"steps/{stepid}/logs")["logs"]}
        if slug not in logs:
            return ""
        response = self.session.get(self.base + f"logs/{logs[slug]['logid']}/raw", timeout=30)
        return "\n".join(response.text.splitlines()[-lines:])

    def warnings(self, stepid: int) -> list[str]:
        logs = self.get(f"steps/{stepid}/logs")["logs"]
        return [
            self.log_tail(stepid, slug=log["slug"])
            for log in logs
            if log["slug"].endswith("-warning")
        ]

    def has_worker(self, builderid: int) -> bool:
        """Whether a worker can take the builder's builds now: local workers run with the farm,
        container workers start on demand, remote ones must be connected."""
        tags = self.get(f"builders/{builderid}")["builders"][0]["tags"]
        if any(POOLS[t].kind != "remote" for t in tags if t in POOLS):
            return True
        workers = self.get(f"builders/{builderid}/workers")["workers"]
        return any(w["connected_to"] for w in workers)

    def wait(self, brid: int, follow: str | None = None, show=None, every: float = 1) -> dict:
        """The build of a request once it is complete, told by the master's websocket as it
        happens (asked every `every` s where no websocket reaches the master); with follow, that
        log of its step is copied to stderr as it grows; show(text) is told which step it is in.
        Those two take half a dozen queries of the database the builds write to, on the master
        that runs them: they are asked every `every` s, and once more at the end."""
        shown = 0
        with self.completion(brid) as completed:
            while True:
                request = self.get(f"buildrequests/{brid}")["buildrequests"][0]
                if follow:
                    shown = self.copy_log(brid, follow, shown)
                if request["complete"]:
                    break
                if show:
                    show(self.current_step(brid))
                completed(every)
        builds = self.get(f"buildrequests/{brid}/builds")["builds"]
        return builds[-1] if builds else {}

    @contextlib.contextmanager
    def completion(self, brid: int):
        """completed(timeout): returns when the master says the request is complete, or after
        timeout s. Subscribed before the caller first asks, so that no completion falls between."""
        ws = self._subscribed(f"buildrequests/{brid}/complete")
        if ws is None:  # no websocket reaches the master (a proxy without them): ask
            yield time.sleep
            return

        def completed(timeout: float) -> None:
            if not ws.connected:  # the master went away: the next ask says what became of it
                time.sleep(timeout)
                return
            ws.settimeout(timeout)
            try:
                ws.recv()
            except websocket.WebSocketTimeoutException:
                pass
            except (OSError, websocket.WebSocketException):
                ws.shutdown()  # asked from now on

        try:
            yield completed
        finally:
            ws.close()

    def _subscribed(self, path: str) -> websocket.WebSocket | None:
        """A websocket of the master's (Buildbot's /ws) that says when `path` happens."""
        url = re.sub(r"^http", "ws", self.farm.ui_url) + "ws"
        cookies = "; ".join(f"{c.name}={c.value}" for c in self.session.cookies)
        ws = None
        try:
            ws = websocket.create_connection(url, timeout=30, cookie=cookies or None)
            ws.send(json.dumps({"cmd": "startConsuming", "path": path, "_id": 1}))
            if json.loads(ws.recv()).get("code") == 200:
                return ws
        except (OSError, ValueError, websocket.WebSocketException):
            pass
        if ws is not None:
            ws.close()
        return None

    def current_step(self, brid: int) -> str:
        builds = self.get(f"buildrequests/{brid}/builds")["builds"]
        if not builds:
            return "queued"
        running = [
            s
            for s in self.get(f"builds/{builds[-1]['buildid']}/steps")["steps"]
            if not s["complete"]
        ]
        return (
            f"{running[-1]['name']}: {running[-1]['state_string']}"
            if running
            else builds[-1]["state_string"]
        )

    def describe(self, farm: Farm, build: dict) -> dict:
        if not build:
            return {"result": "cancelled", "wheels": []}
        props = self.get(f"builds/{build['buildid']}", property="*")["builds"][0]["properties"]
        builder = self.get(f"builders/{build['builderid']}")["builders"][0]["name"]
        steps = self.get(f"builds/{build['buildid']}/steps")["steps"]
        failed = [s for s in steps if s["results"] not in (None, SUCCESS, SKIPPED, WARNINGS)]
        return {
            "result": Results[build["results"]],
            "builder": builder,
            "number": build["number"],
            "build_url": build_url(farm, build),
            "summary": build["state_string"],
            "failed_steps": {s["name"]: s["state_string"] for s in failed},
            "log_tails": {s["name"]: self.log_tail(s["stepid"]) for s in failed},
            "warnings": {
                s["name"]: self.warnings(s["stepid"]) for s in steps if s["results"] == WARNINGS
            },
            "wheels": props.get("wheel_filenames", [[]])[0],
            "wheel_urls": props.get("wheel_urls", [[]])[0],
            **(
                {"pure_wheel_published_by": props[PURE_WHEEL_PUBLISHED][0]}
                if PURE_WHEEL_PUBLISHED in props
                else {}
            ),
            **{
                name: props[name][0]
                for name in ("reproducible", "differing_members")
                if name in props
            },
        }
