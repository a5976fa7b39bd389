"""Twenty builds forced at once on a real farm, half of them publishing to one project: every
wheel lands, and every listing is valid and lists exactly the files the index holds."""

from __future__ import annotations

import json
import platform
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.farm import http_get
from tests.sdists import setuptools_sdist
from wheelwright.farm.pools import builder_name, find_python

pytestmark = pytest.mark.farm


class Anchors(HTMLParser):
    def __init__(self, html: str):
        super().__init__()
        self.hrefs = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.hrefs.append(dict(attrs)["href"])


def listing(farm, project: str) -> tuple[set[str], set[str]]:
    """The file names a project's PEP 691 JSON and PEP 503 HTML pages list."""
    url = farm.status["index"] + project + "/"
    as_json = json.loads(http_get(url, "application/vnd.pypi.simple.v1+json")[1])
    as_html = Anchors(http_get(url, "text/html")[1].decode())
    return {f["filename"] for f in as_json["files"]}, {
        h.split("#")[0].rsplit("/", 1)[-1] for h in as_html.hrefs
    }


def test_twenty_builds_at_once_publish_twenty_wheels_and_whole_listings(
    backends, upstream, tmp_path
):
    twenty_builds_at_once(backends, upstream, tmp_path)


def twenty_builds_at_once(
    backends, upstream, tmp_path, prefix: str = "", index_root: Path | None = None
) -> None:
    """Also run on the production setup (test_deploy_e2e.py): prefix keeps its projects apart;
    index_root is where its index host keeps the files."""
    crowd, solos = f"{prefix}crowd", [f"{prefix}solo{n}" for n in range(10)]
    pins = [f"{crowd}=={n}.0" for n in range(1, 11)] + [f"{solo}==1.0" for solo in solos]
    for pin in pins:
        name, version = pin.split("==")
        upstream.add(setuptools_sdist(tmp_path, name, version))
    builders = [
        builder_name(platform.machine(), v)
        for v in ("3.10", "3.11", "3.12", "3.13")
        if find_python(v)
    ]
    for n, pin in enumerate(pins):
        backends.cli("build", pin, "--builder", builders[n % len(builders)])
    backends.wait_until_idle(timeout=600)

    index_dir = (index_root or backends.state / "index") / "wheels" / "simple"
    projects = [crowd, *solos]
    published = 0
    for project in projects:
        on_disk = {p.name for p in (index_dir / project).glob("*.whl")}
        as_json, as_html = listing(backends, project)
        assert as_json == as_html == on_disk, project
        published += len(on_disk)
    assert len({p for p in (index_dir / crowd).glob("*.whl")}) == 10
    assert published == 20
    project_list = json.loads(
        http_get(backends.status["index"], "application/vnd.pypi.simple.v1+json")[1]
    )
    assert set(projects) <= {p["name"] for p in project_list["projects"]}
    assert not list(index_dir.rglob(".tmp*"))
    print(
        f"\n20 builds forced at once on {len(builders)} builders: 20 wheels published, "
        f"{len(projects)} listings valid and exact"
    )
