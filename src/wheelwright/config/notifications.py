"""Notifications (farm.json `notifications`), on Buildbot's own reporters: one message a build
request (a buildset: every builder the release was forced or released on), naming the package and
version, the builders that failed with the failing step and its one-line reason, and those that
built, each with its link.

    {"type": "webhook", "url": URL, "format": "json" | "slack", "mode": "failing" | "all"}
    {"type": "mail", "to": [ADDRESS], "from": ADDRESS, "smtp": "HOST:PORT", "mode": ...}
"""

from __future__ import annotations

from buildbot.process.results import SKIPPED, SUCCESS, WARNINGS, Results
from buildbot.reporters.generators.buildset import BuildSetCombinedStatusGenerator
from buildbot.reporters.http import HttpStatusPush
from buildbot.reporters.mail import MailNotifier
from buildbot.reporters.message import MessageFormatterFunction
from twisted.internet import defer

OK = (SUCCESS, WARNINGS, SKIPPED)
MODES = ("failing", "all")


def release_summary(context: dict) -> dict:
    """What one build request came to, as the message says it."""
    builds = context["builds"]

    def prop(build: dict, name: str):
        return (build.get("properties") or {}).get(name, [None])[0]

    rows = []
    for build in builds:
        failed = [s for s in build.get("steps") or [] if s.get("results") not in (*OK, None)]
        rows.append(
            {
                "builder": build["builder"]["name"],
                "result": Results[build["results"]] if build["results"] is not None else None,
                "url": build.get("url"),
                "failed_step": failed[0]["name"] if failed else None,
                "reason": failed[0]["state_string"] if failed else None,
            }
        )
    first = builds[0] if builds else {}
    results = context["buildset"].get("results")
    return {
        "package": prop(first, "package"),
        "version": prop(first, "wheel_version") or prop(first, "version"),
        "result": Results[results] if results is not None else None,
        "failed": [r for r in rows if r["result"] not in ("success", "warnings", "skipped")],
        "built": [r for r in rows if r["result"] in ("success", "warnings", "skipped")],
    }


def summary_text(summary: dict) -> str:
    lines = [
        f"{summary['package']} {summary['version']}: "
        + (
            f"failed on {', '.join(r['builder'] for r in summary['failed'])}"
            if summary["failed"]
            else "built"
        )
    ]
    for row in summary["failed"]:
        lines.append(f"- {row['builder']}: {row['failed_step']}: {row['reason']} ({row['url']})")
    for row in summary["built"]:
        lines.append(f"- {row['builder']}: built ({row['url']})")
    return "\n".join(lines) + "\n"


class _Formatter(MessageFormatterFunction):
    """The summary as the reporter sends it; the subject is its first line."""

    def __init__(self, render, template_type: str):
        super().__init__(render, template_type, want_properties=True, want_steps=True)

    def render_message_subject(self, context):
        return "wheelwright: " + summary_text(release_summary(context)).splitlines()[0]


class ReleaseGenerator(BuildSetCombinedStatusGenerator):
    """One report a buildset of a package's builds (not the bootstrap's or a yank's), in the
    reporter's mode: only those that failed somewhere, or all."""

    def __init__(self, formatter, mode: str = "failing"):
        super().__init__(formatter)
        self.mode = mode

    @defer.inlineCallbacks
    def generate(self, master, reporter, key, message):
        report = yield super().generate(master, reporter, key, message)
        packages = [
            b for b in report["builds"] if (b.get("properties") or {}).get("package", [None])[0]
        ]
        if not packages or (self.mode == "failing" and report["results"] in OK):
            return None
        return report


def notifiers(settings: list[dict]) -> list:
    """The reporters farm.json asks for."""
    found = []
    for n, spec in enumerate(settings):
        mode = spec.get("mode", "failing")
        if spec["type"] == "webhook":
            if spec.get("format", "json") == "slack":
                formatter = _Formatter(
                    lambda ctx: {"text": summary_text(release_summary(ctx))}, "json"
                )
            else:
                formatter = _Formatter(release_summary, "json")
            found.append(
                HttpStatusPush(
                    spec["url"],
                    name=f"notify-webhook-{n}",
                    generators=[ReleaseGenerator(formatter, mode)],
                )
            )
        else:
            host, _, port = spec.get("smtp", "localhost:25").rpartition(":")
            found.append(
                MailNotifier(
                    fromaddr=spec.get("from", "wheelwright@localhost"),
                    sendToInterestedUsers=False,
                    extraRecipients=spec["to"],
                    relayhost=host,
                    smtpPort=int(port),
                    name=f"notify-mail-{n}",
                    generators=[
                        ReleaseGenerator(
                            _Formatter(lambda ctx: summary_text(release_summary(ctx)), "plain"),
                            mode,
                        )
                    ],
                )
            )
    return found
