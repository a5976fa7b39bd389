"""Scanning an sdist on the master before it is built, with guarddog's source heuristics.

guarddog parses a stranger's archive, so it runs in the build sandbox too (no network: its
lookups of popular-package lists fail at once and it goes on; it writes only a folder of its
own). Its rules are `threat-*` (what malware does: reading ~/.ssh, download and execute,
exfiltration) and `capability-*` (what much honest code does too: network, processes). A finding
is `low` (a capability), `medium` (a threat in the package's code, which honest trees trip
often: requests, flask, setuptools) or `high` (a threat in what runs when the sdist is built:
setup.py, or guarddog's `threat-setup-*` rules). One at or above the farm's `scan_hold_at`
(default `high`) holds a release nobody asked for by hand in the review queue. Outcomes are kept
by the sdist's sha256 in farm/scans/, with the reviewer who let a held one through.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
import tempfile
import threading
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from wheelwright.common import sandbox
from wheelwright.common.files import write_atomic
from wheelwright.common.runtime import ToolError, clean_pip_env

LEVELS = ("low", "medium", "high")
HOLD_LEVELS = (*LEVELS, "never")
SCAN_SECONDS = 300


@dataclass
class Scan:
    sha256: str
    findings: dict[str, list[str]] = field(default_factory=dict)  # rule -> "file:line: message"
    error: str | None = None
    approved_by: str | None = None

    def severe(self, hold_at: str) -> list[str]:
        """The findings at or above hold_at, as "rule: where: message"."""
        if hold_at == "never":
            return []
        return [
            f"{rule}: {where}"
            for rule, places in sorted(self.findings.items())
            for where in places
            if LEVELS.index(level(rule, where)) >= LEVELS.index(hold_at)
        ]

    def report(self) -> str:
        if self.error:
            return f"the scan could not run: {self.error}\n"
        if not self.findings:
            return "guarddog: no findings\n"
        return "".join(
            f"{rule}:\n" + "".join(f"  {where}\n" for where in places)
            for rule, places in sorted(self.findings.items())
        )


def level(rule: str, where: str) -> str:
    if rule.startswith("capability-"):
        return "low"
    path = where.split(":", 1)[0]
    return (
        "high"
        if rule.startswith("threat-setup-") or path.rsplit("/", 1)[-1] == "setup.py"
        else "medium"
    )


def _findings(output: dict) -> dict[str, list[str]]:
    found = {}
    for rule, matches in (output.get("results") or {}).items():
        if isinstance(matches, list) and matches:
            found[rule] = [
                f"{m.get('location', '?')}: {m.get('message', '')}"
                for m in matches
                if isinstance(m, dict)
            ]
        elif isinstance(matches, str) and matches:  # metadata rules answer with a sentence
            found[rule] = [matches]
    return found


def run_guarddog(sdist: Path, limits: sandbox.Limits = sandbox.Limits()) -> dict[str, list[str]]:
    """guarddog's findings on sdist, run in the sandbox. Raises RuntimeError if it cannot tell."""
    guarddog = shutil.which("guarddog", path=os.path.dirname(sys.executable))
    if guarddog is None:
        raise RuntimeError("guarddog is not installed beside the master")
    with tempfile.TemporaryDirectory(prefix="scan-") as scratch:
        home = Path(scratch)
        env = {**clean_pip_env(), "HOME": str(home), "TMPDIR": str(home)}
        # --no-sandbox: guarddog's own (Landlock) sandbox is not needed inside ours. /etc/ssl: the
        # public CA certificates, which pygit2 (imported by guarddog) insists on loading. At the
        # builds' priority: a build publishes once its sdist's scan is made, and scans that only
        # had the CPU the builds left held a tree's publishing back (flask's: setuptools waited
        # 6.5 s). `nice` had not lowered it anyway: the sandbox's session is a scheduling group.
        # Under the builds' limits (and a wall clock of its own): guarddog reads a stranger's
        # archive whole, and its parsers are no better bounded than ours were.
        output = io.BytesIO()
        try:
            sandbox.run(
                [guarddog, "pypi", "scan", str(sdist), "--output-format", "json", "--no-sandbox"],
                write=[home],
                read=[sdist.parent, Path("/etc/ssl")],
                cwd=home,
                env=env,
                what=f"scanning {sdist.name}",
                limits=replace(limits, wall_seconds=SCAN_SECONDS),
                output=output,
            )
            failed = ""
        except sandbox.LimitExceeded as exc:
            raise RuntimeError(str(exc)) from None
        except ToolError as exc:  # guarddog's exit code is not its verdict: its report is
            failed = str(exc)
    text = output.getvalue().decode(errors="replace")
    lines = [line for line in text.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"guarddog gave no report ({failed or 'exit 0'}): {text.strip()[-500:]}")
    return _findings(json.loads(lines[-1]))


# One lock per sdist being scanned in this master: a scan is made once, however many builds (a
# matrix's builders, a bootstrap's scans ahead) ask for it at the same time.
_SCANNING: dict[str, threading.Lock] = {}
_SCANNING_LOCK = threading.Lock()


def scanned(farm, sdist: Path, sha256: str) -> Scan:
    """The scan of the sdist with that sha256: kept from before, or made now and kept (in a
    thread; a caller that finds it being made waits for it)."""
    path = farm.root / "scans" / f"{sha256}.json"
    with _SCANNING_LOCK:
        lock = _SCANNING.setdefault(sha256, threading.Lock())
    with lock:
        if path.exists():
            return Scan(**json.loads(path.read_text()))
        try:
            scan = Scan(sha256, run_guarddog(sdist, farm.limits))
        except (RuntimeError, OSError, ValueError) as exc:
            return Scan(sha256, error=str(exc))  # not kept: the next build scans again
        _keep(path, scan)
        return scan


def approve(farm, sha256: str, reviewer: str) -> None:
    """Let a held sdist through."""
    path = farm.root / "scans" / f"{sha256}.json"
    scan = Scan(**json.loads(path.read_text())) if path.exists() else Scan(sha256)
    scan.approved_by = reviewer
    _keep(path, scan)


def _keep(path: Path, scan: Scan) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(
        path, (json.dumps(asdict(scan), indent=2) + "\n").encode()
    )  # builders scan one sdist at once
