"""The packages dashboard inside the Buildbot UI (Buildbot's wsgi_dashboards plugin, Flask): our
index's projects with their versions against the builders, each cell the latest build of that
version there (its result, linking to the build, the wheel, its provenance and freeze), yanked
and rebuilt files marked; recent publishes; the review queue with Approve and Reject for release
engineers; and a search that opens the build of a wheel given its file name or sha256.

Everything is read where it lives: builds from the master's data API, files from the index host.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import subprocess
from pathlib import Path

from buildbot.process.results import statusToString
from buildbot.www import auth
from flask import Flask, abort, current_app, redirect, render_template, request
from packaging.utils import canonicalize_name, parse_wheel_filename
from twisted.internet import reactor
from twisted.internet.threads import blockingCallFromThread

from wheelwright.common import lookup
from wheelwright.farm.settings import FORCE_SCHEDULER
from wheelwright.policy.review import ReviewError, decide, read_queue
from wheelwright.sources import scan

NAME = "packages"
RECENT = 300


def make_app(farm) -> Flask:
    app = Flask(__name__, root_path=str(Path(__file__).parent))
    app.config["FARM"] = farm
    app.add_url_rule("/index.html", view_func=index)
    app.add_url_rule("/find", view_func=find)
    app.add_url_rule("/tree/<int:builderid>/<int:number>.svg", view_func=bootstrap_tree)
    app.add_url_rule("/review", methods=["POST"], view_func=review)
    return app


def _farm():
    return current_app.config["FARM"]


def _api(*path, **kwargs):
    return current_app.buildbot_api.dataGet(path, **kwargs)  # type: ignore[attr-defined]


def _user() -> dict:
    """Who is looking (Buildbot's session cookie, a JWT signed by the master)."""
    www = current_app.buildbot_api.master.www  # type: ignore[attr-defined]
    for name, value in request.cookies.items():
        if name.startswith("TWISTED_SESSION"):
            try:
                return auth.parse_user_info_from_token(value, www.site.session_secret)
            except Exception:  # a stale or forged cookie: anonymous
                return {}
    return {}


def _csrf(info: dict) -> str:
    secret = current_app.buildbot_api.master.www.site.session_secret  # type: ignore[attr-defined]
    return hmac.new(
        secret.encode(), f"review:{info.get('email')}".encode(), hashlib.sha256
    ).hexdigest()


def index():
    farm, info = _farm(), _user()
    releng = "releng" in info.get("groups", [])
    builders = {b["builderid"]: b["name"] for b in _api("builders")}
    wheel_builders = sorted(n for n in builders.values() if "-cp" in n)
    latest, recent, durations = _recent_builds(builders)
    return render_template(
        "dashboard.html",
        trees=_trees(),
        projects=_projects(farm, latest, durations, wheel_builders),
        builders=wheel_builders,
        recent=recent[:20],
        queue=read_queue(farm.review_queue),
        releng=releng,
        token=_csrf(info) if releng else "",
        waiting=read_queue(farm.review_waiting),
        index_root=farm.index_root,
    )


def _recent_builds(builders: dict) -> tuple[dict, list[dict], dict[str, list[float]]]:
    """The latest build of each (project, version, builder), the recent builds that made wheels,
    and each project's build durations, oldest first."""
    latest: dict[tuple[str, str, str], dict] = {}
    recent: list[dict] = []
    durations: dict[str, list[float]] = {}
    for build in _api("builds", order=["-buildid"], limit=RECENT, fields=None):
        props = _api("builds", build["buildid"], "properties")
        package = props.get("package", [None])[0]
        if not package:
            continue
        version = props.get("wheel_version", props.get("version", [""]))[0]
        build = {
            **build,
            "builder": builders.get(build["builderid"]),
            "package": package,
            "version": version,
            "result": statusToString(build["results"]) if build["complete"] else "building",
            "url": f"#/builders/{build['builderid']}/builds/{build['number']}",
            "wheels": props.get("wheel_urls", [[]])[0],
        }
        latest.setdefault((canonicalize_name(package), version, build["builder"]), build)
        if build["complete"]:
            durations.setdefault(canonicalize_name(package), []).insert(
                0, (build["complete_at"] - build["started_at"]).total_seconds()
            )
        if build["wheels"]:
            recent.append(build)
    return latest, recent, durations


def _projects(farm, latest: dict, durations: dict, wheel_builders: list[str]) -> list[dict]:
    """Each project of our index: its versions, their files, and a cell a builder."""
    projects = []
    for project in lookup.projects(farm.index_url):
        files = (lookup.listing(farm.index_url, project) or {}).get("files", [])
        versions = sorted(
            {str(parse_wheel_filename(f["filename"])[1]) for f in files}, reverse=True
        )
        projects.append(
            {
                "name": project,
                "durations": bars(durations.get(project, [])),
                "sizes": bars([f["size"] for f in sorted(files, key=lambda f: f["upload-time"])]),
                "versions": [
                    {
                        "version": v,
                        "files": [
                            _file(farm, project, f)
                            for f in files
                            if str(parse_wheel_filename(f["filename"])[1]) == v
                        ],
                        "cells": [latest.get((project, v, b)) for b in wheel_builders],
                    }
                    for v in versions
                ],
            }
        )
    return projects


def _trees() -> list[dict]:
    """The last three bootstraps, each with its tree's picture."""
    return [
        {
            "url": f"#/builders/{b['builderid']}/builds/{b['number']}",
            "summary": b["state_string"],
            "picture": f"plugins/wsgi_dashboards/{NAME}/tree/{b['builderid']}/{b['number']}.svg",
        }
        for builder in _api("builders")
        if builder["name"] == "bootstrap"
        for b in _api("builders", builder["builderid"], "builds", order=["-number"], limit=3)
        if b["complete"]
    ]


def find():
    """The build of a wheel, from its file name or sha256."""
    farm = _farm()
    query = request.args.get("q", "").strip()
    if re.fullmatch(r"[0-9a-fA-F]{64}", query):
        found = lookup.published_as(farm.index_url, query.lower())
    else:
        try:
            found = (str(parse_wheel_filename(Path(query).name)[0]), Path(query).name)
        except ValueError:
            found = None
    if not found:
        return render_template("notfound.html", query=query), 404
    try:
        made_by = lookup.provenance(farm.index_url, *found)
    except OSError:
        return render_template("notfound.html", query=query), 404
    builderid = next(
        (b["builderid"] for b in _api("builders") if b["name"] == made_by.get("builder")), None
    )
    if builderid is None:
        return redirect(lookup.file_url(farm.index_url, *found) + ".provenance.json")
    return redirect(f"{farm.ui_url}#/builders/{builderid}/builds/{made_by['build_number']}")


def bootstrap_tree(builderid: int, number: int):
    """A bootstrap's tree (Graphviz), each package coloured by its result and linked to its build."""
    builds = _api("builders", builderid, "builds", number)
    if not builds:
        abort(404)
    outcome = _api("builds", builds["buildid"], "properties").get("bootstrap_outcome", [None])[0]
    if not outcome:
        abort(404, "that bootstrap has no tree yet")
    svg = subprocess.run(
        ["dot", "-Tsvg"], input=tree_dot(outcome), capture_output=True, text=True, check=True
    )
    return svg.stdout, 200, {"Content-Type": "image/svg+xml"}


def review():
    """Approve or reject a project of the review queue: release engineers only."""
    farm, info = _farm(), _user()
    if "releng" not in info.get("groups", []) or not hmac.compare_digest(
        request.form.get("token", ""), _csrf(info)
    ):
        abort(403)
    project, approve = (
        request.form.get("project", ""),
        request.form.get("decision") == "approve",
    )
    try:
        entry = decide(farm, project, approve, info["email"], request.form.get("note", ""))
    except ReviewError as exc:
        abort(400, str(exc))
    if approve:
        held = entry.get("held", [])
        for release in held:
            scan.approve(farm, release["sha256"], info["email"])
        scheduler = current_app.buildbot_api.master.scheduler_manager.namedServices[FORCE_SCHEDULER]  # type: ignore[attr-defined]
        for version in [r["version"] for r in held] or [""]:
            blockingCallFromThread(
                reactor,
                scheduler.force,
                info["email"],
                builderNames=farm.local_builders(),
                package=entry["project"],
                version=version,
                reason=f"approved by {info['email']} in the dashboard",
            )
    return redirect(f"{farm.ui_url}#/{NAME}")


def bars(values: list[float], width: int = 120, height: int = 24) -> str:
    """A small bar chart (inline SVG) of values, oldest first."""
    values = values[-30:]
    if not values:
        return ""
    top, step = max(values) or 1, width / len(values)
    rects = "".join(
        f'<rect x="{i * step:.1f}" y="{height - v / top * height:.1f}" width="{max(step - 1, 1):.1f}" '
        f'height="{v / top * height:.1f}"><title>{v:g}</title></rect>'
        for i, v in enumerate(values)
    )
    return f'<svg width="{width}" height="{height}" fill="steelblue">{rects}</svg>'


COLOURS = {"built": "palegreen", "failed": "salmon", "not_built": "lightgrey"}


def tree_dot(outcome: dict) -> str:
    """A bootstrap's plan and outcome in Graphviz's language: each package after what it needs."""
    state = {key: kind for kind in COLOURS for key in outcome.get(kind, {})}
    lines = ["digraph tree {", "  rankdir=BT; node [shape=box, style=filled, fontname=Helvetica];"]
    for node in outcome.get("plan", []):
        key = node["key"]
        urls = outcome.get("built", {}).get(key) or []
        link = f', URL="{urls[0]}", target="_top"' if urls else ""
        lines.append(f'  "{key}" [fillcolor={COLOURS.get(state.get(key, ""), "white")}{link}];')
        lines += [f'  "{key}" -> "{need}";' for need in node.get("after", [])]
    return "\n".join([*lines, "}"]) + "\n"


def _file(farm, project: str, entry: dict) -> dict:
    url = lookup.file_url(farm.index_url, project, entry["filename"])
    build = parse_wheel_filename(entry["filename"])[2]
    return {
        "filename": entry["filename"],
        "url": url,
        "yanked": entry.get("yanked"),
        "rebuilt": bool(build),
        "provenance": url + ".provenance.json",
        "freeze": url + ".freeze.txt",
    }
