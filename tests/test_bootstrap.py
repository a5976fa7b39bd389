"""Bootstrap mode: the plan read from the sdists, and a tree built bottom-up on a real farm."""

from __future__ import annotations

import json
import time
import urllib.parse

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from tests.conftest import install_and_run
from tests.farm import DEFAULT_BUILDER, http_get
from tests.sdists import Upstream, free_port, pkg_info, pyproject, setuptools_sdist, write_sdist
from tests.wheels import make_wheel
from wheelwright.bootstrap.plan import (
    BootstrapError,
    Node,
    build_order_json,
    build_requirements,
    buildable,
    graph_json,
    lower_bound,
    order,
    plan,
    priorities,
    sdist_requirements,
)
from wheelwright.farm.settings import Farm
from wheelwright.indexhost.upload import upload

ENVIRONMENT = {
    "python_version": "3.11",
    "python_full_version": "3.11.7",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "os_name": "posix",
    "platform_release": "",
    "platform_version": "",
    "implementation_version": "3.11.7",
}


@pytest.fixture
def tree(tmp_path, index_host):
    """A farm's view of an upstream of its own and an index that holds setuptools."""
    upstream = Upstream(tmp_path / "upstream", free_port())
    upload(
        index_host + "legacy/", "uploader", "s3cret", make_wheel(tmp_path, "setuptools", "80.9.0")
    )
    farm = Farm(
        root=tmp_path / "farm",
        upstream=upstream.url,
        index_port=urllib.parse.urlsplit(index_host).port,
    )
    yield farm, upstream, tmp_path
    upstream.close()


def test_the_plan_reads_build_and_install_requirements_and_skips_what_the_index_has(tree):
    farm, upstream, tmp = tree
    upstream.add(setuptools_sdist(tmp, "leaf", "1.0"))
    upstream.add(setuptools_sdist(tmp, "leaf", "2.0"))
    upstream.add(setuptools_sdist(tmp, "tool", "1.0"))
    upstream.add(
        setuptools_sdist(tmp, "mid", "1.0", requires=["leaf<2", "never; python_version < '3'"])
    )
    upstream.add(
        setuptools_sdist(
            tmp,
            "top",
            "1.0",
            requires=["mid", "extra-only; extra == 'fast'"],
            build_requires=["tool"],
        )
    )
    nodes = plan(farm, [Requirement("top==1.0")], ENVIRONMENT)
    assert {k: n.needs for k, n in buildable(nodes).items()} == {
        "top==1.0": {"mid==1.0", "tool==1.0"},
        "mid==1.0": {"leaf==1.0"},
        "leaf==1.0": set(),
        "tool==1.0": set(),
    }
    assert order(nodes) == ["leaf==1.0", "tool==1.0", "mid==1.0", "top==1.0"]
    # what others need to build (their validation makes bytecode for those builds)
    assert build_requirements(nodes) == {"tool==1.0", "setuptools==80.9.0"}
    # fromager's graph.json: the top-level edge, build and install edges, what our index had
    graph = graph_json(nodes)
    assert graph[""]["edges"] == [{"key": "top==1.0", "req_type": "toplevel", "req": "top==1.0"}]
    assert {(e["req_type"], e["key"]) for e in graph["top==1.0"]["edges"]} == {
        ("build-system", "setuptools==80.9.0"),
        ("build-system", "tool==1.0"),
        ("install", "mid==1.0"),
    }
    assert graph["setuptools==80.9.0"]["pre_built"] is True
    assert [e["req"] for e in build_order_json(nodes, order(nodes))] == order(nodes)


def test_each_package_gets_the_build_backend_versions_it_asks_for(tree):
    # click wants flit_core<4 while others want flit_core>=4: one tree builds both
    farm, upstream, tmp = tree
    upstream.add(setuptools_sdist(tmp, "backend", "3.12"))
    upstream.add(setuptools_sdist(tmp, "backend", "4.2"))
    upstream.add(setuptools_sdist(tmp, "old-style", "1.0", build_requires=["backend<4"]))
    upstream.add(setuptools_sdist(tmp, "new-style", "1.0", build_requires=["backend>=4"]))
    upstream.add(
        setuptools_sdist(
            tmp, "app", "1.0", requires=["old-style", "new-style"], build_requires=["backend"]
        )
    )
    nodes = plan(farm, [Requirement("app")], ENVIRONMENT)
    assert nodes["old-style==1.0"].needs == {"backend==3.12"}
    assert nodes["new-style==1.0"].needs == {"backend==4.2"}
    assert nodes["app==1.0"].needs == {"backend==4.2", "old-style==1.0", "new-style==1.0"}
    assert order(nodes).index("backend==3.12") < order(nodes).index("old-style==1.0")


def test_several_roots_several_versions_and_constraints(tree):
    farm, upstream, tmp = tree
    for version in ("1.0", "2.0", "2.1"):
        upstream.add(setuptools_sdist(tmp, "lib", version))
    upstream.add(setuptools_sdist(tmp, "user", "1.0", requires=["lib"]))
    nodes = plan(farm, [Requirement("lib==1.0"), Requirement("lib==2.*")], ENVIRONMENT)
    assert set(buildable(nodes)) == {"lib==1.0", "lib==2.1"}
    nodes = plan(
        farm, [Requirement("user")], ENVIRONMENT, constraints={"lib": SpecifierSet("<2.1")}
    )
    assert set(buildable(nodes)) == {"user==1.0", "lib==2.0"}


def test_a_cycle_is_named(tree):
    farm, upstream, tmp = tree
    upstream.add(setuptools_sdist(tmp, "cyc-a", "1.0", requires=["cyc-b"]))
    upstream.add(setuptools_sdist(tmp, "cyc-b", "1.0", build_requires=["cyc-a"]))
    # building cyc-b needs cyc-a, which installs cyc-b
    with pytest.raises(
        BootstrapError,
        match=r"build cycle: cyc-b==1.0 -> cyc-b==1.0 \(the build environment of "
        r"cyc-b==1.0: setuptools>=70, cyc-a\); no in-tree backend",
    ):
        plan(farm, [Requirement("cyc-a")], ENVIRONMENT)


def test_a_cycle_through_install_requirements_is_named(tree):
    # validating a wheel installs its dependencies from our index: they are built first
    farm, upstream, tmp = tree
    upstream.add(setuptools_sdist(tmp, "ring-a", "1.0", requires=["ring-b"]))
    upstream.add(setuptools_sdist(tmp, "ring-b", "1.0", requires=["ring-a"]))
    with pytest.raises(
        BootstrapError, match="dependency cycle: ring-a==1.0 -> ring-b==1.0 -> ring-a==1.0"
    ):
        order(plan(farm, [Requirement("ring-a")], ENVIRONMENT))


def test_a_wheel_in_our_index_breaks_a_cycle(tree, index_host):
    farm, upstream, tmp = tree
    upload(index_host + "legacy/", "uploader", "s3cret", make_wheel(tmp, "cyc-c", "0.9"))
    upstream.add(setuptools_sdist(tmp, "cyc-c", "1.0", build_requires=["cyc-d"]))
    upstream.add(setuptools_sdist(tmp, "cyc-d", "1.0", build_requires=["cyc-c"]))
    nodes = plan(farm, [Requirement("cyc-c==1.0")], ENVIRONMENT)
    assert order(nodes) == ["cyc-d==1.0", "cyc-c==1.0"]  # cyc-d builds with our cyc-c 0.9


def test_what_upstream_lacks_is_named_with_who_needs_it(tree):
    farm, upstream, tmp = tree
    upstream.add(setuptools_sdist(tmp, "asks", "1.0", requires=["missing>=2"]))
    with pytest.raises(
        BootstrapError, match=r"no versions satisfy missing>=2 \(needed by asks 1.0\)"
    ):
        plan(farm, [Requirement("asks")], ENVIRONMENT)


def test_the_lower_bound_is_the_longest_chain_or_the_work_shared_out():
    nodes = {
        "a": Node("a", "1"),
        "b": Node("b", "1", {"a"}),
        "c": Node("c", "1"),
        "d": Node("d", "1"),
    }
    assert lower_bound({"a": 2, "b": 3, "c": 1, "d": 1}, nodes, workers=2) == 5  # a then b
    assert (
        lower_bound({"a": 1, "b": 1, "c": 4, "d": 4}, nodes, workers=2) == 5
    )  # 10 s of work on two


@pytest.mark.farm
def test_a_tree_is_built_bottom_up_and_installs_from_our_index(backends, upstream, tmp_path):
    upstream.add(setuptools_sdist(tmp_path, "bs-leaf", "1.0", code="LEAF = 'leaf'\n"))
    upstream.add(setuptools_sdist(tmp_path, "bs-tool", "1.0"))
    upstream.add(
        setuptools_sdist(
            tmp_path,
            "bs-mid",
            "1.0",
            requires=["bs-leaf"],
            code="from bs_leaf import LEAF\nMID = LEAF + ' mid'\n",
        )
    )
    upstream.add(
        setuptools_sdist(
            tmp_path,
            "bs-top",
            "1.0",
            requires=["bs-mid"],
            build_requires=["bs-tool"],
            code="from bs_mid import MID\nTOP = MID + ' top'\n",
        )
    )
    http_log = backends.state / "master" / "http.log"
    asked_before = http_log.read_text().count("/raw HTTP")
    started = time.monotonic()
    proc = backends.cli(
        "bootstrap", "bs-top==1.0", "--builder", DEFAULT_BUILDER, "--wait", check=False
    )
    waited = time.monotonic() - started
    result = json.loads(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # --wait follows the progress log to its end, asking the master for it once a second (each
    # time half a dozen queries of the database the builds write to), not at every 0.2 s poll.
    assert "bs-top==1.0 built (4 of 4)" in proc.stderr
    asked = http_log.read_text().count("/raw HTTP") - asked_before
    assert 1 <= asked <= waited + 2, (asked, waited)
    assert [p["project"] for p in result["plan"]] == ["bs-leaf", "bs-tool", "bs-mid", "bs-top"]
    assert (
        set(result["built"]) == {"bs-leaf==1.0", "bs-tool==1.0", "bs-mid==1.0", "bs-top==1.0"}
        and not result["failed"]
    )
    graph = json.loads((backends.state / "logs" / "bootstrap" / "graph.json").read_text())
    assert graph[""]["edges"][0]["key"] == "bs-top==1.0"
    # the bootstrap is a build of its own in the waterfall, its plan and progress as logs
    (tree_build,) = [b for b in backends.api("builders/bootstrap/builds")["builds"]]
    logs = backends.logs("bootstrap", tree_build["number"])
    assert '"key": "bs-top==1.0"' in logs and "bs-top==1.0 built (4 of 4)" in logs
    assert result["build_url"].endswith(f"/builds/{tree_build['number']}")
    assert tree_build["state_string"] == "bootstrap bs-top==1.0: 4 packages built"
    # its tree as a picture (Graphviz), linked from the build: each package green and linked to its build
    status, svg, ctype = http_get(
        f"{backends.status['ui']}plugins/wsgi_dashboards/packages/tree/"
        f"{tree_build['builderid']}/{tree_build['number']}.svg"
    )
    assert status == 200 and ctype == "image/svg+xml" and svg.count(b'fill="palegreen"') == 4, svg[
        :300
    ]
    assert (
        b"bs&#45;top==1.0" in svg and result["built"]["bs-leaf==1.0"][0].encode() in svg
    )  # dot writes - as &#45;
    builds = {
        b["properties"]["package"][0]: b
        for b in backends.api("builds?property=package&property=build_requirement")["builds"]
        if b["properties"].get("package", [""])[0].startswith("bs-")
    }
    # bs-top's build needs bs-tool: the bootstrap said so to bs-tool's build, and to none other
    assert {p for p, b in builds.items() if b["properties"]["build_requirement"][0]} == {"bs-tool"}
    # each started once what it needs was published (its UpdateIndex step ended), maybe before
    # that build's last steps
    published_at = {
        project: next(
            s["complete_at"]
            for s in backends.api(f"builds/{build['buildid']}/steps")["steps"]
            if s["name"] == "update-index" and s["results"] == 0
        )
        for project, build in builds.items()
    }
    for project, needs in (("bs-mid", ["bs-leaf"]), ("bs-top", ["bs-mid", "bs-tool"])):
        assert all(published_at[n] <= builds[project]["started_at"] for n in needs), project
    # ... and not only once that build ended (its rebuild-diff and verify steps, Buildbot's own
    # bookkeeping): bs-top started before bs-mid's build was seen to end
    assert logs.index("bs-top==1.0 started") < logs.index("bs-mid==1.0 built"), logs
    assert (
        install_and_run(backends, tmp_path, "bs-top==1.0", "import bs_top; print(bs_top.TOP)")
        == "leaf mid top\n"
    )


def test_the_longest_stretch_of_work_goes_first():
    nodes = {
        "short": Node("short", "1"),
        "long": Node("long", "1"),
        "new": Node("new", "1"),
        "top": Node("top", "1", {"short", "long", "new"}),
    }
    assert priorities(nodes, {"short": 2, "long": 9, "top": 3}) == {
        "top": 3,
        "short": 5,
        "long": 12,
        "new": 6,
    }
    assert priorities(nodes, {}) == {"top": 1, "short": 2, "long": 2, "new": 2}


@pytest.mark.farm
def test_a_failure_skips_what_needs_it(backends, upstream, tmp_path):
    upstream.add(
        setuptools_sdist(
            tmp_path, "bs-broken", "1.0", setup_py="raise SystemExit('this one does not build')\n"
        )
    )
    upstream.add(setuptools_sdist(tmp_path, "bs-fine", "1.0"))
    upstream.add(
        setuptools_sdist(tmp_path, "bs-needs-broken", "1.0", requires=["bs-broken", "bs-fine"])
    )
    proc = backends.cli(
        "bootstrap", "bs-needs-broken", "--builder", DEFAULT_BUILDER, "--wait", check=False
    )
    result = json.loads(proc.stdout)
    assert proc.returncode == 1
    assert list(result["failed"]) == ["bs-broken==1.0"] and "bs-fine==1.0" in result["built"]
    assert result["not_built"] == {"bs-needs-broken==1.0": "needs bs-broken==1.0"}


def test_what_a_failure_blocks_is_found_whatever_the_order_of_the_tree():
    """One pass in the tree's order missed `top` (it comes before `mid`, which needs the failed
    `tool`): nothing ran, nothing was ready, and the bootstrap waited for ever."""
    from wheelwright.steps.bootstrap import BootstrapTree

    pending = {
        "top": Node("top", "1", {"mid"}),
        "mid": Node("mid", "1", {"tool"}),
        "free": Node("free", "1"),
    }
    assert BootstrapTree.blocked(pending, {"tool"}) == ["mid", "top"]


@pytest.mark.farm
def test_a_bootstrap_whose_build_requirement_fails_ends_and_says_what_it_blocked(
    backends, upstream, tmp_path
):
    upstream.add(
        setuptools_sdist(
            tmp_path, "bs-failing-tool", "1.0", setup_py="raise SystemExit('tool breaks')\n"
        )
    )
    upstream.add(setuptools_sdist(tmp_path, "bs-z-mid", "1.0", build_requires=["bs-failing-tool"]))
    upstream.add(setuptools_sdist(tmp_path, "bs-a-top", "1.0", requires=["bs-z-mid"]))
    proc = backends.cli(
        "bootstrap", "bs-a-top", "--builder", DEFAULT_BUILDER, "--wait", check=False, timeout=120
    )
    result = json.loads(proc.stdout)
    assert proc.returncode == 1
    assert list(result["failed"]) == ["bs-failing-tool==1.0"]
    assert result["not_built"] == {
        "bs-z-mid==1.0": "needs bs-failing-tool==1.0",
        "bs-a-top==1.0": "needs bs-z-mid==1.0",
    }


@pytest.mark.farm
def test_a_stop_ends_a_bootstrap_at_once_with_its_builds(backends, upstream, tmp_path):
    """A Stop from the REST API (as the UI's button sends it) ends a bootstrap whose build sleeps
    for minutes: the bootstrap and that build end within seconds, and the worker is free."""
    from wheelwright.cli.restclient import Api

    slow = "import time\ntime.sleep(300)\nfrom setuptools import setup\nsetup()\n"
    upstream.add(setuptools_sdist(tmp_path, "bs-slow", "1.0", setup_py=slow))
    upstream.add(setuptools_sdist(tmp_path, "bs-after-slow", "1.0", requires=["bs-slow"]))
    brid = json.loads(
        backends.cli("bootstrap", "bs-after-slow", "--builder", DEFAULT_BUILDER).stdout
    )["buildrequest"]
    deadline = time.monotonic() + 120

    def building() -> bool:  # the bootstrap step says how many of its builds run
        steps = [backends.api(f"builds/{b['buildid']}/steps")["steps"] for b in builds]
        return any("1 building" in (s["state_string"] or "") for found in steps for s in found)

    while not (builds := backends.api(f"buildrequests/{brid}/builds")["builds"]) or not building():
        assert time.monotonic() < deadline, json.dumps(
            [
                [
                    (s["name"], s["state_string"])
                    for s in backends.api(f"builds/{b['buildid']}/steps")["steps"]
                ]
                for b in builds
            ]
        )
        time.sleep(0.5)
    api = Api(Farm.load(backends.state))
    api.login()
    stop = {"jsonrpc": "2.0", "method": "stop", "id": 1, "params": {"reason": "enough"}}
    stopped = time.monotonic()
    answer = api.session.post(api.base + f"builds/{builds[0]['buildid']}", json=stop, timeout=30)
    assert answer.status_code == 200, answer.text
    backends.wait_until_idle(timeout=60)  # every request: the bootstrap's and bs-slow's
    assert time.monotonic() - stopped < 30  # not bs-slow's 300 s
    bootstrap = backends.api(f"builds/{builds[0]['buildid']}")["builds"][0]
    assert bootstrap["results"] == 6, bootstrap  # CANCELLED
    steps = backends.api(f"builds/{bootstrap['buildid']}/steps")["steps"]
    assert any(s["state_string"].startswith("stopped") for s in steps), steps


def test_requirements_are_read_whatever_the_sdists_top_folder_is_called(tmp_path):
    sdist = setuptools_sdist(
        tmp_path, "Old.Style", "1.0", requires=["dep>=1"], build_requires=["tool"]
    )
    renamed = sdist.rename(
        tmp_path / "old_style-1.0.tar.gz"
    )  # the name the index lists, not the folder's
    assert sdist_requirements(renamed) == (["setuptools>=70", "tool"], ["dep>=1"])


@pytest.mark.farm
def test_a_build_requirement_only_the_backend_names_when_run_is_built_by_the_bootstrap(
    backends, upstream, tmp_path
):
    # an in-tree backend that asks for bs-dyn-helper in get_requires_for_build_wheel, which no
    # file of the sdist names: the plan cannot see it; the build finds it, the bootstrap builds it
    upstream.add(setuptools_sdist(tmp_path, "bs-dyn-helper", "1.0", code="HELPED = True\n"))
    upstream.add(
        write_sdist(
            tmp_path,
            "bs-dyn",
            "1.0",
            {
                "PKG-INFO": pkg_info("bs-dyn", "1.0"),
                "pyproject.toml": pyproject(
                    "bs-dyn", "1.0", ["setuptools>=70"], "dynbackend"
                ).replace(
                    'build-backend = "dynbackend"',
                    'build-backend = "dynbackend"\nbackend-path = ["."]',
                )
                + '\n[tool.setuptools]\npy-modules = ["bs_dyn"]\n',
                "dynbackend.py": """\
            from setuptools import build_meta
            from setuptools.build_meta import *  # noqa: F403

            def get_requires_for_build_wheel(config_settings=None):
                return [*build_meta.get_requires_for_build_wheel(config_settings), "bs-dyn-helper"]

            def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
                import bs_dyn_helper  # it must really be there
                return build_meta.build_wheel(wheel_directory, config_settings, metadata_directory)
            """,
                "bs_dyn.py": "VALUE = 1\n",
            },
        )
    )
    plan_only = json.loads(backends.cli("bootstrap", "bs-dyn==1.0", "--dry-run").stdout)
    assert [p["key"] for p in plan_only["plan"]] == ["bs-dyn==1.0"]
    proc = backends.cli(
        "bootstrap", "bs-dyn==1.0", "--builder", DEFAULT_BUILDER, "--wait", check=False
    )
    result = json.loads(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert result["discovered"] == {"bs-dyn==1.0": ["bs-dyn-helper"]}
    assert set(result["built"]) == {"bs-dyn-helper==1.0", "bs-dyn==1.0"}
    graph = json.loads((backends.state / "logs" / "bootstrap" / "graph.json").read_text())
    assert {
        "key": "bs-dyn-helper==1.0",
        "req_type": "build-backend",
        "req": "bs-dyn-helper",
    } in graph["bs-dyn==1.0"]["edges"]


@pytest.mark.farm
def test_a_bootstrap_goes_on_when_the_command_that_started_it_ends(backends, upstream, tmp_path):
    upstream.add(setuptools_sdist(tmp_path, "bs-alone", "1.0", requires=["bs-alone-dep"]))
    upstream.add(setuptools_sdist(tmp_path, "bs-alone-dep", "1.0"))
    started = json.loads(backends.cli("bootstrap", "bs-alone", "--builder", DEFAULT_BUILDER).stdout)
    assert set(started) == {"buildrequest"}  # the command is gone; the master builds the tree
    backends.wait_until_idle()
    assert (
        install_and_run(backends, tmp_path, "bs-alone==1.0", "import bs_alone; print('ok')")
        == "ok\n"
    )


def test_a_plan_takes_the_newest_release_whose_requires_python_admits_the_builders(
    tree, monkeypatch
):
    """sphinx 9.2.0 requires Python >= 3.13: a bootstrap for cp311 builders takes the release
    before it, one for cp313 builders takes it (the page's Requires-Python, PEP 503/691)."""
    import dataclasses

    from wheelwright.bootstrap import plan as planning
    from wheelwright.bootstrap.plan import plan_tree

    farm, upstream, tmp_path = tree
    for version in ("1.0", "2.0"):
        upstream.add(setuptools_sdist(tmp_path, "rp-lib", version))
    listed = planning.list_sdists

    def with_requires_python(index_url, project, hosts=()):
        return [
            dataclasses.replace(s, requires_python=">=3.13") if s.version == "2.0" else s
            for s in listed(index_url, project, hosts)
        ]

    monkeypatch.setattr(planning, "list_sdists", with_requires_python)
    cp311, cp313 = "x86_64-cp311", "x86_64-cp313"
    assert plan_tree(farm, ["rp-lib"], "", 0, [cp311])[0].keys() == {"", "rp-lib==1.0"}
    assert plan_tree(farm, ["rp-lib"], "", 0, [cp313])[0].keys() == {"", "rp-lib==2.0"}
    assert plan_tree(farm, ["rp-lib"], "", 2, [cp311])[0].keys() == {"", "rp-lib==1.0"}
    # Builders of two Pythons: each gets its own newest release, and only that one.
    nodes, keys = plan_tree(farm, ["rp-lib"], "", 0, [cp311, cp313, "aarch64-cp313"])
    assert sorted(keys) == ["rp-lib==1.0", "rp-lib==2.0"]
    assert nodes["rp-lib==1.0"].builders == {cp311}
    assert nodes["rp-lib==2.0"].builders == {cp313, "aarch64-cp313"}
    # What both plans hold is built on every builder, which the plan leaves unsaid.
    upstream.add(setuptools_sdist(tmp_path, "rp-app", "1.0", requires=["rp-lib"]))
    nodes, _ = plan_tree(farm, ["rp-app"], "", 0, [cp311, cp313])
    assert nodes["rp-app==1.0"].builders == set()
    assert nodes["rp-app==1.0"].needs == {"rp-lib==1.0", "rp-lib==2.0"}


def test_a_release_whose_build_requirement_is_not_upstream_falls_back_and_says_so(tree):
    """platformdirs 4.14.6 needs python-sbom[hatch] to build, which the upstream lacks: the plan
    takes the newest release it can build, says why in the plan, and a constraint that allows
    no other fails naming both the release and the requirement it lacks."""
    from wheelwright.bootstrap.plan import plan_tree, planned_json

    farm, upstream, tmp = tree
    upstream.add(setuptools_sdist(tmp, "fb-lib", "1.0"))
    upstream.add(setuptools_sdist(tmp, "fb-lib", "2.0", build_requires=["fb-missing[hatch]"]))
    upstream.add(setuptools_sdist(tmp, "fb-app", "1.0", requires=["fb-lib"]))
    nodes, keys = plan_tree(farm, ["fb-app"], "", 0)
    assert keys == ["fb-lib==1.0", "fb-app==1.0"]
    (said,) = [n for n in planned_json(nodes, keys) if n["project"] == "fb-lib"]
    assert said["fallback"] == (
        "fb-lib 2.0 cannot be built here: its build requirements: "
        "no versions satisfy fb-missing[hatch]"
    )
    assert not nodes["fb-app==1.0"].fallback
    # Asked for by name, the same.
    assert plan_tree(farm, ["fb-lib"], "", 0)[1] == ["fb-lib==1.0"]
    # A constraint can forbid the fallback: the plan fails and says what was missing.
    with pytest.raises(BootstrapError) as caught:
        plan_tree(farm, ["fb-app"], "fb-lib==2.0", 0)
    assert "fb-lib 2.0 cannot be built here" in str(caught.value)
    assert "fb-missing[hatch]" in str(caught.value)
    assert "needed by fb-app 1.0" in str(caught.value)


def test_a_build_tool_the_system_provides_is_not_planned(tree):
    import dataclasses

    farm, upstream, tmp = tree
    upstream.add(setuptools_sdist(tmp, "st-app", "1.0", build_requires=["ninja>=1.8"]))
    with pytest.raises(BootstrapError, match="ninja"):  # the upstream here has no ninja
        plan(farm, [Requirement("st-app")], ENVIRONMENT)
    system = dataclasses.replace(farm, system_tools={"ninja": "ninja"})
    nodes = plan(system, [Requirement("st-app")], ENVIRONMENT)
    assert order(nodes) == ["st-app==1.0"]
    assert not any("ninja" in req for _, req, _ in nodes["st-app==1.0"].edges)
