"""Fetch the sdists the tests build, once, into the test cache: `make test` runs it.

    python tests/fetch_corpus.py DEST [--corpus FILE] [PIN ...]

Each pin's sdist is looked up on the upstream (pypi-simple's default endpoint, or
$WHEELWRIGHT_TEST_UPSTREAM), downloaded with its listed sha256 checked, and kept under its own
file name. What is cached already is not asked for again. This is the only place the tests'
material comes from the network; the tests themselves serve it from 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from packaging.utils import canonicalize_name, parse_sdist_filename
from packaging.version import Version
from pypi_simple import ACCEPT_JSON_PREFERRED, PYPI_SIMPLE_ENDPOINT, PyPISimple

CORPUS = Path(__file__).with_name("corpus.txt")


def corpus_stages(path: Path = CORPUS) -> list[list[str]]:
    """The corpus's pins, stage by stage."""
    stages: list[list[str]] = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line == "[stage]":
            stages.append([])
        elif line:
            stages[-1].append(line)
    return stages


def cached_sdist(dest: Path, pin: str) -> Path | None:
    name, version = pin.split("==")
    for path in dest.iterdir():
        if path.name.endswith((".tar.gz", ".zip")):
            found, found_version = parse_sdist_filename(path.name)
            if found == canonicalize_name(name) and found_version == Version(version):
                return path
    return None


def fetch(dest: Path, pins: list[str], upstream: str) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    with PyPISimple(endpoint=upstream, accept=ACCEPT_JSON_PREFERRED) as client:
        for pin in pins:
            if cached_sdist(dest, pin):
                continue
            name, version = pin.split("==")
            page = client.get_project_page(name)
            sdists = [
                p
                for p in page.packages
                if p.package_type == "sdist"
                and p.version
                and Version(p.version) == Version(version)
            ]
            if not sdists:
                sys.exit(f"fetch_corpus: {upstream} has no sdist of {pin}")
            tmp = dest / f".{sdists[0].filename}.part"
            client.download_package(sdists[0], tmp, verify=True)
            tmp.rename(dest / sdists[0].filename)
            print(f"fetched {sdists[0].filename}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dest", type=Path)
    parser.add_argument("--corpus", type=Path)
    parser.add_argument("pins", nargs="*")
    args = parser.parse_intermixed_args(argv)
    pins = (
        [*args.pins, *(pin for stage in corpus_stages(args.corpus) for pin in stage)]
        if args.corpus
        else args.pins
    )
    fetch(args.dest, pins, os.environ.get("WHEELWRIGHT_TEST_UPSTREAM", PYPI_SIMPLE_ENDPOINT))


if __name__ == "__main__":
    main()
