"""Wheelwright's benchmarks. Each measures the farm and its baseline side by side, in one run,
and prints their ratio: numbers from different runs on these machines are not comparable.

    python bench/run.py            # everything, full sizes
    python bench/run.py --quick    # tiny sizes, to check that the benchmarks still work
    python bench/run.py --only publishing
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.farm import DEFAULT_BUILDER, FarmUnderTest  # noqa: E402
from tests.sdists import CACHE, Upstream, flit_sdist, free_port, setuptools_sdist  # noqa: E402
from tests.wheels import make_wheel  # noqa: E402
from wheelwright.bootstrap.plan import Node, lower_bound  # noqa: E402
from wheelwright.changes.upstream_pages import Changelog, releases  # noqa: E402
from wheelwright.changes.upstream_watch import decide, fetch_page  # noqa: E402
from wheelwright.cli.restclient import Api  # noqa: E402
from wheelwright.common import sandbox  # noqa: E402
from wheelwright.common.files import sha256_of  # noqa: E402
from wheelwright.common.runtime import WORKER_COMMAND, clean_pip_env  # noqa: E402
from wheelwright.common.sandbox import SANDBOX_TIME  # noqa: E402
from wheelwright.farm.settings import Farm  # noqa: E402
from wheelwright.indexhost.store import IndexStore  # noqa: E402
from wheelwright.steps import PIPELINE  # noqa: E402
from wheelwright.steps.base import ON_THE_WORKER  # noqa: E402


def verdict(ratio: float, goal: str, met: bool) -> str:
    return f"{ratio:.2f}x (goal {goal}: {'met' if met else 'MISSED'})"


def up_local(farm: FarmUnderTest, upstream: Upstream) -> None:
    """The farm up on the local pool's two workers, from the tests' upstream, on free ports."""
    farm.cli(
        "up",
        "--pools",
        "local",
        "--upstream",
        upstream.url,
        *("--ui-port", str(free_port())),
        *("--worker-port", str(free_port())),
        *("--index-port", str(free_port())),
    )


def bench_publishing(work: Path, quick: bool) -> None:
    """Publishing one wheel into a big index, against regenerating the whole index."""
    projects, per_project = (200, 10) if quick else (10_000, 10)
    store = IndexStore(work / "index")
    for n in range(projects):
        name = f"project-{n:05d}"
        directory = store.project_dir(name)
        directory.mkdir()
        manifest = {
            f"{name}-1.{v}-py3-none-any.whl": {
                "filename": f"{name}-1.{v}-py3-none-any.whl",
                "version": f"1.{v}",
                "sha256": "0" * 64,
                "size": 1000,
                "upload-time": "2026-01-01T00:00:00Z",
                "provenance": {},
            }
            for v in range(per_project)
        }
        (directory / ".files.json").write_text(json.dumps(manifest))
    started = time.perf_counter()
    store.regenerate()
    full = time.perf_counter() - started
    wheels = [make_wheel(work, "project-00042", f"2.{n}") for n in range(5)]
    times = []
    for wheel in wheels:
        started = time.perf_counter()
        store.publish(wheel.name, wheel, sha256=sha256_of(wheel))
        times.append(time.perf_counter() - started)
    one = statistics.median(times)
    print(f"publishing: index of {projects} projects, {projects * per_project} files")
    print(
        f"  regenerate all: {full * 1000:.0f} ms; publish one wheel: {one * 1000:.1f} ms (median of {len(times)})"
    )
    print(
        f"  ratio: {verdict(full / one, '>= 100x', full / one >= 100)}; "
        f"under 50 ms: {'met' if one < 0.05 else 'MISSED'}"
    )


def timings(farm: FarmUnderTest, build: dict) -> dict[str, dict[str, float]]:
    """Where the build's time went, as its steps recorded it (property `timings`): seconds by step
    and part (the step's wall time, each command on the worker, each tool's own parts)."""
    builderid = build["build_url"].split("/builders/")[1].split("/")[0]
    props = farm.api(f"builders/{builderid}/builds/{build['number']}?property=timings")["builds"][
        0
    ]["properties"]
    return props["timings"][0]


# The package's own commands, which a bare pip build runs too: its backend's two hooks and its
# install (the rest is the farm's overhead). Around each hook, the sandbox's own start and end
# is the farm's.
GET_REQUIRES = "prepare_build_env: get_requires_for_build_wheel"
HOOKS = {GET_REQUIRES: "prepare_build_env", "build_wheel: package build": "build_wheel"}
PACKAGE_INSTALL = "validate_install_deps: package install"


def package_own(steps: dict[str, dict[str, float]], hooks=tuple(HOOKS)) -> float:
    own = 0.0
    for parts in steps.values():
        own += parts.get(PACKAGE_INSTALL, 0)
        for hook in hooks:
            if hook in parts:
                own += parts[hook] - parts.get(f"{HOOKS[hook]}: {SANDBOX_TIME}", 0)
    return own


def overhead_report(total: float, steps: dict[str, dict[str, float]]) -> list[str]:
    own = package_own(steps)
    # get_requires_for_build_wheel counted as the farm's, as the first fifteen sessions did.
    before = total - package_own(steps, hooks=("build_wheel: package build",))
    # The steps after update-index (rebuild-diff, verify) run once the wheel is published.
    order = [step.name for step in PIPELINE]
    until_published = order[: order.index("update-index") + 1]
    steps = {step: steps[step] for step in order if step in steps}
    in_steps = sum(steps.get(step, {}).get("step", 0) for step in until_published)
    between = sum(steps.get(step, {}).get("before the step", 0) for step in until_published)
    lines = [
        f"    request -> published and validated {total:6.2f} s; the package's own build (its "
        f"backend's hooks) and install {own:.2f} s; overhead {total - own:.2f} s ({before:.2f} s "
        "with get_requires_for_build_wheel counted as the farm's)",
        f"    {'outside the steps':<48} {total - in_steps:6.2f} s",
        f"      {'build start, between steps (Buildbot)':<46} {between:6.2f} s",
        f"      {'request -> build start; listing written':<46} {total - in_steps - between:6.2f} s",
    ]
    for step, parts in steps.items():
        lines.append(f"    {step:<48} {parts.get('step', 0):6.2f} s")
        tools = sum(seconds for name, seconds in parts.items() if name.endswith(": tool"))
        if tools:  # what the worker's command took beyond the tool's own work
            name = next(n for n in (f"worker {WORKER_COMMAND}", "worker shell") if n in parts)
            on_worker = parts.get(name + ON_THE_WORKER, parts[name])
            parts = {
                **parts,
                "tool start-up (on the worker)": on_worker - tools,
                "round trip (Buildbot)": parts[name] - on_worker,
            }
        for name, seconds in sorted(parts.items(), key=lambda item: -item[1]):
            if name != "step" and seconds >= 0.005:
                lines.append(f"      {name:<46} {seconds:6.2f} s")
    return lines


def pip(*args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", *args], check=True, capture_output=True, env=clean_pip_env()
    )


def install_fresh(work: Path, index: str, requirement: str) -> None:
    venv = Path(tempfile.mkdtemp(dir=work))
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    pip("--python", str(venv / "bin" / "python"), "install", "--index-url", index, requirement)


def bare_build(work: Path, upstream: str, index: str, pin: str) -> float:
    """What the farm replaces: pip download, pip wheel (build requirements from our index), pip install."""
    out = Path(tempfile.mkdtemp(dir=work))
    started = time.perf_counter()
    pip(
        "download",
        "--no-deps",
        "--no-binary",
        ":all:",
        "--index-url",
        upstream,
        "--dest",
        str(out / "sdist"),
        pin,
    )
    (sdist,) = (out / "sdist").iterdir()
    pip("wheel", "--no-deps", "--index-url", index, "--wheel-dir", str(out / "wheel"), str(sdist))
    (wheel,) = (out / "wheel").iterdir()
    install_fresh(work, index, str(wheel))
    return time.perf_counter() - started


def farm_build(work: Path, farm: FarmUnderTest, pin: str) -> tuple[float, float, dict]:
    """The farm's build of pin and a fresh install from its index; also the time from the build
    request to its wheel published (validated before), and its timings. Published is when the
    index wrote the project's listing with the wheel in it (the page's mtime), read once the
    build has ended: polling the listing (or the master) while it builds took CPU from the build
    on this 2-core machine."""
    name, version = pin.split("==")
    state = Farm.load(farm.state)
    api = Api(state)
    api.login()  # first: the request is the force, as a release engineer logged in to the UI makes it
    listing = IndexStore(state.index_dir / "wheels").project_dir(name) / "index.html"
    started, wall = time.perf_counter(), time.time()
    (brid,) = api.force(name, version, [DEFAULT_BUILDER]).values()
    build = api.wait(brid)
    described = api.describe(state, build)
    assert described["result"] == "success", described
    assert f"{name}-{version}-" in listing.read_text(), f"{pin} was not published"
    requested = listing.stat().st_mtime - wall
    install_fresh(work, farm.status["index"], pin)
    return time.perf_counter() - started, requested, timings(farm, described)


def c_extension_sdist_slow(dest: Path, name: str, version: str, functions: int) -> Path:
    """A C extension that takes a while to compile: many functions, optimised."""
    body = "\n".join(
        f"static long f{n}(long x) {{ long s = 0; for (long i = 0; i < x; i++) s += (i * {n}) % 7; "
        f"return s; }}"
        for n in range(functions)
    )
    calls = " + ".join(f"f{n}(3)" for n in range(functions))
    module = name.replace("-", "_")
    return setuptools_sdist(
        dest,
        name,
        version,
        module=f"{module}_py",
        code="",
        setup_py=f"""\
        from setuptools import Extension, setup
        setup(ext_modules=[Extension("{module}", ["{module}.c"], extra_compile_args=["-O3"])], py_modules=[])
        """,
        extra={
            f"{module}.c": f"""\
        #include <Python.h>
        {body}
        static PyObject *answer(PyObject *self, PyObject *args) {{ return PyLong_FromLong({calls}); }}
        static PyMethodDef methods[] = {{{{"answer", answer, METH_NOARGS, ""}}, {{NULL, NULL, 0, NULL}}}};
        static struct PyModuleDef mod = {{PyModuleDef_HEAD_INIT, "{module}", NULL, -1, methods}};
        PyMODINIT_FUNC PyInit_{module}(void) {{ return PyModule_Create(&mod); }}
        """
        },
    )


def bench_farm_overhead(work: Path, quick: bool) -> None:
    """Force -> wheel published and installable, against a bare pip download + wheel + install."""
    upstream = Upstream(work / "upstream", free_port())

    def add(make, name: str, version: str) -> str:
        upstream.add(make(work, version))
        return f"{name}=={version}"

    farm = FarmUnderTest(work / "farm")
    try:
        up_local(farm, upstream)
        for backend in ("setuptools-80.9.0.tar.gz", "flit_core-3.12.0.tar.gz"):
            upstream.add(CACHE / backend)
            name, version = backend[: -len(".tar.gz")].rsplit("-", 1)
            assert farm.build(f"{name}=={version}")[0] == 0
        rounds = 1 if quick else 5  # a build varies by a tenth of a second from one to the next
        cases = [
            (
                "pure-Python, small",
                "benchpure",
                lambda d, v: flit_sdist(d, "benchpure", v),
                "<= 1.3x",
                1.3,
            ),
            (
                "C extension, slow to compile",
                "benchc",
                lambda d, v: c_extension_sdist_slow(d, "benchc", v, 50 if quick else 3000),
                "<= 1.05x",
                1.05,
            ),
        ]
        for label, name, make, goal, limit in cases:
            bare, farmed, requested, steps = [], [], [], []
            # Warmed up first, uncounted: the build backend's wheel in pip's and uv's caches, and
            # each of the two workers' first build (its tool server, its caches). The goals are
            # per build, in a running farm.
            bare_build(work, upstream.url, farm.status["index"], add(make, name, "0.1"))
            for version in ("0.2", "0.3"):
                farm_build(work, farm, add(make, name, version))
            for n in range(rounds):
                bare.append(
                    bare_build(
                        work, upstream.url, farm.status["index"], add(make, name, f"1.{n}.0")
                    )
                )
                seconds, request, timed = farm_build(work, farm, add(make, name, f"1.{n}.1"))
                farmed.append(seconds)
                requested.append(request)
                steps.append(timed)
            ratio = statistics.median(farmed) / statistics.median(bare)
            print(
                f"farm overhead, {label}: farm {statistics.median(farmed):.2f} s, bare pip "
                f"{statistics.median(bare):.2f} s (medians of {rounds}); ratio {verdict(ratio, goal, ratio <= limit)}"
            )
            middle = sorted(range(rounds), key=lambda i: requested[i])[rounds // 2]
            report = overhead_report(requested[middle], steps[middle])
            overhead = requested[middle] - package_own(steps[middle])
            if name == "benchpure":
                report[0] += f" (goal <= 1 s: {'met' if overhead <= 1 else 'MISSED'})"
            print("\n".join(report))
    finally:
        farm.cli("down", check=False)
        upstream.close()


def bench_upstream_watching(work: Path, quick: bool) -> None:
    """A poll cycle of the change source with 10, 1,000 and 10,000 allow-listed projects, nothing
    changed and 5 changed, both ways it watches, side by side: the changelog (then the changed
    projects' pages), and the pages with conditional requests (for upstreams without one);
    against reading every page in full."""
    upstream = Upstream(work / "upstream", free_port())
    print("watching upstream: requests, full pages and time per poll cycle")
    flat = True
    try:
        for size in (10, 100) if quick else (10, 1_000, 10_000):
            names = [f"watch{size}-{n:05d}" for n in range(size)]
            for name in names:
                write_page(upstream, name, ["1.0"])
                upstream.events.append(
                    (name, "1.0", 0, f"add source file {name}-1.0.tar.gz", len(upstream.events) + 1)
                )
            farm = Farm(root=work / f"farm-{size}", upstream=upstream.url)
            changelog = Changelog(farm.changelog_url)
            serial = changelog.call("changelog_last_serial")
            session, states = requests.Session(), {name: {} for name in names}
            for name in names:  # the first look at each page, as the farm makes once
                decide(
                    fetch_page(session, upstream.url, name, states[name]),
                    states[name],
                    lambda v: True,
                    0,
                    0,
                )
            for changed in (0, 5):
                for name in names[:changed]:
                    write_page(upstream, name, ["1.0", f"2.{changed}"])
                    upstream.events.append(
                        (
                            name,
                            f"2.{changed}",
                            0,
                            f"add source file {name}-2.{changed}.tar.gz",
                            len(upstream.events) + 1,
                        )
                    )
                cost = {}
                for way in ("changelog", "pages", "full pages"):
                    before, full, started = (
                        upstream.requests,
                        upstream.full_pages,
                        time.perf_counter(),
                    )
                    if way == "changelog":
                        events, serial = changelog.since(serial)
                        looked = sorted({r.project for r in releases(events, set(names))})
                    else:
                        looked = names
                    found = 0
                    for name in looked:
                        state = (
                            dict(states[name])
                            if way != "full pages"
                            else {"seen": states[name]["seen"]}
                        )
                        page = fetch_page(session, upstream.url, name, state)
                        found += len(decide(page, state, lambda v: True, 0, 0)) if page else 0
                    cost[way] = (
                        upstream.requests - before,
                        upstream.full_pages - full,
                        time.perf_counter() - started,
                    )
                    assert found == changed, (way, found)
                for name in names[:changed]:  # what the farm would keep after this cycle
                    fetch_page(session, upstream.url, name, states[name])
                    states[name]["seen"] = [*states[name]["seen"], f"2.{changed}"]
                flat = flat and cost["pages"][1] == changed and cost["changelog"][0] == 1 + changed
                print(
                    f"  {size:>6} allow-listed, {changed} changed: "
                    + "; ".join(
                        f"{way} {n} requests, {full} full, {t * 1000:.0f} ms"
                        for way, (n, full, t) in cost.items()
                    )
                    + f"; full/conditional time {cost['full pages'][2] / cost['pages'][2]:.1f}x"
                )
    finally:
        upstream.close()
    print(
        f"  full pages per cycle grow with the changes, not with the allow-list: {'met' if flat else 'MISSED'}"
    )


def write_page(upstream: Upstream, name: str, versions: list[str]) -> None:
    """A project page as an index writes it (its files are never fetched)."""
    directory = upstream.store.project_dir(name)
    directory.mkdir(exist_ok=True)
    upstream.store._write_listing(
        name,
        {
            f"{name}-{v}.tar.gz": {
                "filename": f"{name}-{v}.tar.gz",
                "version": v,
                "sha256": "0" * 64,
                "size": 1,
                "upload-time": "2026-01-01T00:00:00Z",
            }
            for v in versions
        },
    )


# A tree of the usual shape: a root over a few mid-level packages and many leaves, with a chain
# of build tools. Each: (seconds its build sleeps, what it needs).
BOOTSTRAP_TREE = {
    **{f"bt-leaf-{n}": (1 + n % 4, []) for n in range(1, 15)},
    "bt-tool-a": (1, []),
    "bt-tool-b": (2, ["bt-tool-a"]),
    "bt-mid-1": (3, ["bt-leaf-9", "bt-leaf-10", "bt-tool-b"]),
    "bt-mid-2": (2, ["bt-leaf-11", "bt-leaf-12"]),
    "bt-mid-3": (4, ["bt-leaf-13", "bt-leaf-14"]),
    "bt-root": (2, ["bt-mid-1", "bt-mid-2", "bt-mid-3", *(f"bt-leaf-{n}" for n in range(1, 9))]),
}


def sleepy_sdist(dest: Path, name: str, version: str, seconds: float, requires: list[str]) -> Path:
    return setuptools_sdist(
        dest,
        name,
        version,
        requires=requires,
        setup_py=f"""\
        import time
        from setuptools import setup
        from setuptools.command.build_py import build_py

        class Slow(build_py):
            def run(self):
                time.sleep({seconds})
                super().run()

        setup(cmdclass={{"build_py": Slow}})
        """,
    )


def bench_bootstrap(work: Path, quick: bool) -> None:
    """Bootstrap's makespan on the local pool's two workers, against the lower bound no schedule on
    two workers can beat (the longest chain of builds, or all the work shared out), both from the
    same builds' durations."""
    upstream = Upstream(work / "upstream", free_port())
    farm = FarmUnderTest(work / "farm")
    try:
        up_local(farm, upstream)
        upstream.add(CACHE / "setuptools-80.9.0.tar.gz")
        assert (
            farm.cli("bootstrap", "setuptools", "--builder", DEFAULT_BUILDER, "--wait").returncode
            == 0
        )
        # First a tree the farm never built (no durations to go by), then its next release, which
        # bootstrap orders by the first one's build times.
        for version, history in (
            ("1.0", "never built before"),
            ("1.1", "ordered by 1.0's build times"),
        ):
            for name, (seconds, needs) in BOOTSTRAP_TREE.items():
                upstream.add(
                    sleepy_sdist(
                        work,
                        name,
                        version,
                        0 if quick else seconds,
                        [f"{n}=={version}" for n in needs],
                    )
                )
            result = json.loads(
                farm.cli(
                    "bootstrap", f"bt-root=={version}", "--builder", DEFAULT_BUILDER, "--wait"
                ).stdout
            )
            nodes = {
                p["key"]: Node(p["project"], p["version"], set(p["after"])) for p in result["plan"]
            }
            bound = lower_bound(result["durations_s"], nodes, workers=2)
            ratio = result["makespan_s"] / bound
            print(
                f"bootstrap, {len(nodes)} packages on two workers, {history}: makespan {result['makespan_s']:.1f} s, "
                f"lower bound {bound:.1f} s (builds of {min(result['durations_s'].values()):.0f} to "
                f"{max(result['durations_s'].values()):.0f} s); ratio {verdict(ratio, '<= 1.15x', ratio <= 1.15)}"
            )
    finally:
        farm.cli("down", check=False)
        upstream.close()


# Real trees of the test corpus: one pure, one with a C extension (MarkupSafe) under it.
# The real trees, each with its rounds (a fresh farm and a fresh fromager each): a pure one, one
# with a C extension (setuptools, then MarkupSafe's build), and flask's nine packages.
FROMAGER_TREES = (("click==8.1.8", 3), ("MarkupSafe==3.0.2", 3), ("flask==3.1.0", 1))


def tool_venv(work: Path, name: str, *requirements: str) -> Path:
    """A venv of the benchmark's own, with requirements installed from the registry pip is
    configured with (the tools we compare with are not our dependencies)."""
    venv = work / name
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [
            str(venv / "bin" / "pip"),
            "install",
            "--quiet",
            "--disable-pip-version-check",
            *requirements,
        ],
        capture_output=True,
        check=True,
    )
    return venv


def fromager_bootstrap(
    work: Path, fromager: Path, upstream: Upstream, pin: str, projects: list[str]
) -> float:
    """fromager bootstrapping pin from our test upstream (each project's settings point its
    resolver there), in one process, from scratch."""
    top = Path(tempfile.mkdtemp(dir=work))
    settings = top / "overrides" / "settings"
    settings.mkdir(parents=True)
    for project in projects:
        (settings / f"{project.replace('-', '_')}.yaml").write_text(
            f"resolver_dist:\n  sdist_server_url: {upstream.url}\n"
        )
    env = clean_pip_env() | {
        "PATH": f"{fromager / 'bin'}:{os.environ['PATH']}"
    }  # it runs the uv beside it
    started = time.perf_counter()
    proc = subprocess.run(
        [
            str(fromager / "bin" / "fromager"),
            "--sdists-repo",
            str(top / "sdists"),
            "--wheels-repo",
            str(top / "wheels"),
            "--work-dir",
            str(top / "work"),
            "--settings-dir",
            str(settings),
            "--patches-dir",
            str(top / "overrides" / "patches"),
            "bootstrap",
            pin,
        ],
        capture_output=True,
        text=True,
        cwd=top,
        env=env,
    )
    if proc.returncode:
        raise AssertionError(
            f"fromager bootstrap {pin} failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
        )
    return time.perf_counter() - started


def bench_fromager(work: Path, quick: bool) -> None:
    """Bootstrapping a real tree onto a fresh farm (the local pool's two workers, every install
    validated) against fromager bootstrapping the same tree (one process, no validation), from the
    same upstream on 127.0.0.1, side by side."""
    fromager = tool_venv(work, "fromager-venv", "fromager")
    upstream = Upstream(work / "upstream", free_port())
    for sdist in sorted(CACHE.glob("*.tar.gz")) + sorted(CACHE.glob("*.zip")):
        upstream.add(sdist)
    try:
        for pin, rounds in FROMAGER_TREES[:1] if quick else FROMAGER_TREES:
            ours, theirs = [], []
            for n in range(1 if quick else rounds):
                farm = FarmUnderTest(work / f"farm-{pin}-{n}")
                try:
                    up_local(farm, upstream)
                    plan = json.loads(
                        farm.cli("bootstrap", pin, "--builder", DEFAULT_BUILDER, "--dry-run").stdout
                    )["plan"]
                    # In turn first and second (what one leaves to the disk slows the other), each
                    # started with nothing left to write.
                    for turn in (0, 1) if n % 2 == 0 else (1, 0):
                        os.sync()
                        if turn == 0:
                            projects = sorted({p["project"] for p in plan})
                            theirs.append(
                                fromager_bootstrap(work, fromager, upstream, pin, projects)
                            )
                            continue
                        started = time.perf_counter()
                        result = json.loads(
                            farm.cli(
                                "bootstrap", pin, "--builder", DEFAULT_BUILDER, "--wait"
                            ).stdout
                        )
                        ours.append(time.perf_counter() - started)
                        assert result["result"] == "success", result
                finally:
                    farm.cli("down", check=False)
            # Each round's pair measured back to back: the median of their ratios.
            ratios = [a / b for a, b in zip(ours, theirs, strict=True)]
            ratio = statistics.median(ratios)
            print(
                f"bootstrap {pin} ({len(plan)} packages) from scratch: farm {statistics.median(ours):.1f} s, "
                f"fromager {statistics.median(theirs):.1f} s (medians of {len(ours)}); "
                f"ratio {verdict(ratio, '<= 0.7x', ratio <= 0.7)}"
                + (
                    " (rounds, farm / fromager: "
                    + ", ".join(
                        f"{r:.2f}x = {a:.1f} / {b:.1f} s"
                        for r, a, b in zip(ratios, ours, theirs, strict=True)
                    )
                    + ")"
                    if len(ours) > 1
                    else ""
                )
            )
            durations = result["durations_s"]
            nodes = {
                p["key"]: Node(p["project"], p["version"], set(p["after"])) for p in result["plan"]
            }
            print(
                f"  the farm's makespan {result['makespan_s']:.1f} s (last round): its {len(durations)} builds "
                f"took {sum(durations.values()):.1f} s in all ({min(durations.values()):.1f} to "
                f"{max(durations.values()):.1f} s each); no schedule on two workers beats "
                f"{lower_bound(durations, nodes, workers=2):.1f} s"
            )
    finally:
        upstream.close()


# Real sdists of the corpus: the largest member count, links inside, a C extension, a zip.
UNPACKED = (
    "setuptools-80.9.0.tar.gz",
    "pdm_backend-2.4.3.tar.gz",
    "markupsafe-3.0.2.tar.gz",
    "colorama-0.4.0.zip",
)


def _extract_in_process(sdist: Path, into: Path) -> None:
    """How prepare-source unpacked before: tarfile's (or zipfile's) own extraction, in the
    tool's process, with the `data` filter (the new unpacker's baseline for speed)."""
    import tarfile
    import zipfile

    if sdist.name.endswith(".zip"):
        with zipfile.ZipFile(sdist) as zf:
            zf.extractall(into)
    else:
        with tarfile.open(sdist) as tar:
            tar.extractall(into, filter="data")


def bench_unpacking(work: Path, quick: bool) -> None:
    """prepare-source's unpacking of real sdists: the sandboxed, link-refusing unpacker against
    tarfile's extraction in process, alternating, medians of the rounds."""
    from wheelwright.worker.prepare_source import unpack

    rounds = 3 if quick else 11
    print(f"\n## unpacking real sdists ({rounds} rounds, alternating; medians)")
    print("| sdist | members | in process, tarfile data filter | sandboxed unpacker | ratio |")
    print("| --- | --- | --- | --- | --- |")
    for name in UNPACKED:
        sdist = next(CACHE.glob(name), None) or next(CACHE.glob(name.lower()), None)
        if sdist is None:
            print(f"| {name} | not in {CACHE} (make test fetches it) | | | |")
            continue
        project, _, version = sdist.name.rsplit(".", 2 if sdist.name.endswith(".gz") else 1)[
            0
        ].rpartition("-")
        old: list[float] = []
        new: list[float] = []
        for n in range(rounds):
            for kind, times in (("old", old), ("new", new)):
                folder = work / sdist.name / f"{kind}{n}"
                folder.mkdir(parents=True)
                started = time.perf_counter()
                if kind == "old":
                    _extract_in_process(sdist, folder)
                else:
                    unpack(sdist, folder / "src", project=project, version=version)
                times.append(time.perf_counter() - started)
        members = sum(1 for _ in (work / sdist.name / "old0").rglob("*"))
        a, b = statistics.median(old), statistics.median(new)
        print(f"| {sdist.name} | {members} | {a:.3f} s | {b:.3f} s | {b / a:.2f}x |")


REPAIRED = ["markupsafe-3.0.2.tar.gz", "simplejson-3.19.3.tar.gz"]


def bench_repair(work: Path, quick: bool) -> None:
    """repair-wheel's cost beside the C build it follows: each real sdist's wheel compiled as
    build-wheel's pip frontend does (no isolation, setuptools from this venv), then repaired by
    the worker tool (auditwheel in the sandbox), medians of the rounds."""
    from wheelwright.worker.repair_wheel import repair

    rounds = 1 if quick else 5
    print(f"\n## repair against the C build it follows ({rounds} rounds; medians)")
    print("| sdist | C build | repair | repair's share | wheel |")
    print("| --- | --- | --- | --- | --- |")
    for name in REPAIRED:
        sdist = CACHE / name
        if not sdist.exists():
            print(f"| {name} | not in {CACHE} (make test fetches it) | | | |")
            continue
        builds, repairs, made = [], [], ""
        for n in range(rounds):
            dist = work / name / f"dist{n}"
            started = time.perf_counter()
            pip(
                "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(dist), str(sdist)
            )
            builds.append(time.perf_counter() - started)
            src = work / name / f"src{n}"
            shutil.unpack_archive(sdist, src)
            (tree,) = src.iterdir()
            started = time.perf_counter()
            with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
                (wheel,) = repair(dist, tree, sandbox.Limits(), [], None).wheels
            repairs.append(time.perf_counter() - started)
            made = wheel.filename
        a, b = statistics.median(builds), statistics.median(repairs)
        print(f"| {name} | {a:.2f} s | {b:.2f} s | {100 * b / a:.1f} % | {made} |")


BENCHMARKS = {
    "unpacking": bench_unpacking,
    "repair": bench_repair,
    "publishing": bench_publishing,
    "farm-overhead": bench_farm_overhead,
    "bootstrap": bench_bootstrap,
    "upstream-watching": bench_upstream_watching,
    "fromager": bench_fromager,
}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes: check the benchmarks work"
    )
    parser.add_argument("--only", choices=sorted(BENCHMARKS), action="append")
    args = parser.parse_args()
    for name in args.only or BENCHMARKS:
        with tempfile.TemporaryDirectory() as work:
            BENCHMARKS[name](Path(work), args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
