"""What a rebuild publishes (post-release, local version, build number), the rewrite that gives a
finished wheel its new version, and the report of what changed between two builds."""

from __future__ import annotations

import subprocess
import sys
import zipfile

import pytest
from wheel.wheelfile import WheelError

from tests.wheels import make_wheel, record_line, wheel_files, write_wheel
from wheelwright.common.wheelcheck import WheelRefused, check_wheel
from wheelwright.common.wheeledit import rewrite
from wheelwright.policy.bumps import BumpError, next_bump
from wheelwright.publishing.provenance import embed
from wheelwright.publishing.rebuilddiff import facts_of, report


def test_post_bumps_count_up_from_our_own_post_releases():
    assert (
        next_bump("post", "2.28.2", ["2.28.2"], [0], ["2.28.2", "2.29.0"], "ww").version
        == "2.28.2.post1"
    )
    bump = next_bump("post", "2.28.2", ["2.28.2", "2.28.2.post1", "2.28.2.post2"], [0], [], "ww")
    assert (bump.version, bump.number, bump.build_tag) == ("2.28.2.post3", 3, 0)
    assert (
        next_bump("post", "1.0rc1", ["1.0rc1", "1.0", "1.0.post1"], [0], [], "ww").version
        == "1.0rc1.post1"
    )


def test_a_post_bump_that_upstream_could_collide_with_is_refused_naming_it():
    with pytest.raises(
        BumpError,
        match=r"2.28.2.post1 would collide with upstream, which publishes 2.28.2.post1: "
        r"use --bump local or --bump build-tag",
    ):
        next_bump("post", "2.28.2", ["2.28.2"], [0], ["2.28.2", "2.28.2.post1"], "ww")
    with pytest.raises(BumpError, match="1.0.post1 is a post release upstream"):
        next_bump("post", "1.0.post1", ["1.0.post1"], [0], ["1.0.post1"], "ww")
    with pytest.raises(
        BumpError, match="development release"
    ):  # 1.0.dev1.post1 would sort after 1.0
        next_bump("post", "1.0.dev1", ["1.0.dev1"], [0], [], "ww")


def test_local_bumps_carry_the_farms_label_and_count_up():
    assert next_bump("local", "2.28.2", ["2.28.2"], [0], [], "ww").version == "2.28.2+ww.1"
    bump = next_bump(
        "local", "1.0.post1", ["1.0.post1", "1.0.post1+ww.1", "1.0.post1+other.7"], [0], [], "ww"
    )
    assert (bump.version, bump.number) == ("1.0.post1+ww.2", 2)
    with pytest.raises(BumpError, match="local label already"):
        next_bump("local", "1.0+cpu", ["1.0+cpu"], [0], [], "ww")


def test_build_tag_bumps_take_the_next_build_number():
    bump = next_bump("build-tag", "1.0", ["1.0"], [0, 2, 1], [], "ww")
    assert (bump.version, bump.number, bump.build_tag) == ("1.0", 3, 3)
    with pytest.raises(BumpError, match="unknown bump 'minor'"):
        next_bump("minor", "1.0", ["1.0"], [0], [], "ww")


def wheel_to_rewrite(tmp_path, name: str, extra: dict[str, str]):
    """A wheel of name 1.0 with extra members, and an empty folder for what rewrites it."""
    files, dist_info = wheel_files(name, "1.0")
    wheel = write_wheel(tmp_path / f"{name}-1.0-py3-none-any.whl", {**files, **extra}, dist_info)
    out = tmp_path / "out"
    out.mkdir()
    return wheel, out


def test_a_bumped_wheel_is_renamed_inside_and_out_and_still_checks(tmp_path):
    wheel, out = wheel_to_rewrite(
        tmp_path, "My_Pkg", {"My_Pkg-1.0.data/scripts/tool": "#!python\n"}
    )
    bumped = rewrite(wheel, out, version="1.0.post1")
    assert bumped.name == "My_Pkg-1.0.post1-py3-none-any.whl"
    names = zipfile.ZipFile(bumped).namelist()
    assert {n.split("/")[0] for n in names} == {
        "My_Pkg.py",
        "My_Pkg-1.0.post1.dist-info",
        "My_Pkg-1.0.post1.data",
    }
    check_wheel(
        bumped, bumped.name, "my-pkg", "1.0.post1"
    )  # RECORD rewritten, METADATA's Version too
    before, after = zipfile.ZipFile(wheel), zipfile.ZipFile(bumped)
    assert after.read("My_Pkg.py") == before.read("My_Pkg.py")
    assert after.getinfo("My_Pkg.py").date_time == before.getinfo("My_Pkg.py").date_time
    local = rewrite(wheel, out, version="1.0+ww.1")
    assert local.name == "My_Pkg-1.0+ww.1-py3-none-any.whl"
    check_wheel(local, local.name, "my-pkg", "1.0+ww.1")
    # and installers agree
    target = tmp_path / "target"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--target",
            str(target),
            str(bumped),
        ],
        check=True,
    )
    assert (target / "My_Pkg-1.0.post1.dist-info" / "METADATA").read_text().count(
        "Version: 1.0.post1"
    ) == 1


def test_a_rewrite_is_reproducible_and_refuses_a_wheel_whose_record_lies(tmp_path):
    wheel = make_wheel(tmp_path, "pkg", "1.0")
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir(), second.mkdir()
    added = {"wheelwright/provenance.json": b"{}"}
    assert (
        rewrite(wheel, first, add=added).read_bytes()
        == rewrite(wheel, second, add=added).read_bytes()
    )
    files, dist_info = wheel_files("pkg", "1.0")
    files["pkg.py"] = "VALUE = 2\n"  # after RECORD was written
    (tmp_path / "liar").mkdir()
    liar = write_wheel(
        tmp_path / "liar" / wheel.name,
        files,
        dist_info,
        record="".join(record_line(n, c.encode()) for n, c in wheel_files("pkg", "1.0")[0].items()),
    )
    with pytest.raises(WheelError, match="Hash mismatch for file 'pkg.py'"):
        rewrite(liar, tmp_path, version="1.0.post1")
    assert not (tmp_path / "pkg-1.0.post1-py3-none-any.whl").exists()  # no partial file left
    with pytest.raises(FileExistsError):  # never over the wheel it reads
        rewrite(wheel, wheel.parent, add=added)


def deflated_wheel(path, files: dict[str, str], dist_info: str, record_at: int = -1):
    """A wheel of files deflated at level 1 (our rewrite would compress at 6), its RECORD true
    and at position record_at among the members."""
    data = {name: content.encode() for name, content in files.items()}
    record = "".join(record_line(n, c) for n, c in data.items()) + f"{dist_info}/RECORD,,\n"
    members = list(data.items())
    position = len(members) + 1 + record_at if record_at < 0 else record_at
    members.insert(position, (f"{dist_info}/RECORD", record.encode()))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, content in members:
            zf.writestr(name, content)
    return path


def test_provenance_is_added_without_compressing_the_wheels_members_again(tmp_path):
    files, dist_info = wheel_files("pkg", "1.0")
    files["pkg.py"] = "VALUE = 'x'\n" * 2000
    wheel = deflated_wheel(tmp_path / "pkg-1.0-py3-none-any.whl", files, dist_info)
    (tmp_path / "out").mkdir()
    added = {"wheelwright/provenance.json": b'{"build_number": 7}'}
    stamped = rewrite(wheel, tmp_path / "out", add=added)
    check_wheel(stamped, stamped.name, "pkg", "1.0")  # RECORD lists the new file truly
    with zipfile.ZipFile(wheel) as before:
        kept = before.getinfo(f"{dist_info}/RECORD").header_offset
    # Every byte before the old RECORD, each member as the backend compressed it.
    assert stamped.read_bytes()[:kept] == wheel.read_bytes()[:kept]
    with zipfile.ZipFile(stamped) as after:
        assert after.read(f"{dist_info}/wheelwright/provenance.json") == b'{"build_number": 7}'
        assert after.namelist()[-1] == f"{dist_info}/RECORD"


def test_a_wheel_whose_record_is_not_last_gets_its_provenance_all_the_same(tmp_path):
    files, dist_info = wheel_files("pkg", "1.0")
    wheel = deflated_wheel(tmp_path / "pkg-1.0-py3-none-any.whl", files, dist_info, record_at=0)
    (tmp_path / "out").mkdir()
    stamped = rewrite(wheel, tmp_path / "out", add={"wheelwright/provenance.json": b"{}"})
    check_wheel(stamped, stamped.name, "pkg", "1.0")
    assert f"{dist_info}/wheelwright/provenance.json" in zipfile.ZipFile(stamped).namelist()


def test_a_wheel_whose_record_lies_still_lies_after_its_provenance_and_the_index_refuses_it(
    tmp_path,
):
    # The rewrite keeps the members' bytes unread; the index checks them all before publishing.
    files, dist_info = wheel_files("pkg", "1.0")
    honest = "".join(record_line(n, c.encode()) for n, c in files.items())
    files["pkg.py"] = "VALUE = 2\n"  # after RECORD was written
    liar = write_wheel(tmp_path / "pkg-1.0-py3-none-any.whl", files, dist_info, record=honest)
    (tmp_path / "out").mkdir()
    stamped = rewrite(liar, tmp_path / "out", add={"wheelwright/provenance.json": b"{}"})
    with pytest.raises(WheelRefused, match="pkg.py"):
        check_wheel(stamped, stamped.name, "pkg", "1.0")


def test_the_rebuild_diff_names_what_changed_and_not_the_bump(tmp_path):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    files, dist_info = wheel_files("pkg", "1.0", requires=["idna>=3"])
    first = write_wheel(tmp_path / "pkg-1.0-py3-none-any.whl", files, dist_info)
    files, dist_info = wheel_files("pkg", "1.0", requires=["idna>=3", "certifi"])
    files["pkg.py"] = "VALUE = 2\n"
    files["pkg_extra.py"] = ""
    second = rewrite(
        write_wheel(tmp_path / "b" / "pkg-1.0-py3-none-any.whl", files, dist_info),
        tmp_path / "a",
        version="1.0.post1",
    )
    before = embed(
        first,
        tmp_path / "a",
        {
            "package": "pkg",
            "wheel_version": "1.0",
            "build_url": "http://b/1",
            "package_settings": {"imports": []},
            "patch_sha256s": {},
        },
        "setuptools==80.9.0\nwheel==0.45.1\n",
    )
    after_dir = tmp_path / "after"
    after_dir.mkdir()
    after = embed(
        second,
        after_dir,
        {
            "package": "pkg",
            "wheel_version": "1.0.post1",
            "build_url": "http://b/2",
            "package_settings": {"imports": ["pkg"]},
            "patch_sha256s": {"0001.patch": "ab"},
        },
        "setuptools==80.9.1\npackaging==25.0\n",
    )
    text = report(facts_of(before), facts_of(after))
    assert text.splitlines() == [
        "before: pkg-1.0-py3-none-any.whl (http://b/1)",
        "after:  pkg-1.0.post1-py3-none-any.whl (http://b/2)",
        "",
        "build environment:",
        "  + packaging 25.0",
        "  - wheel 0.45.1",
        "  ~ setuptools 80.9.0 -> 80.9.1",
        "patches:",
        "  + 0001.patch ab",
        "settings:",
        "  ~ imports [] -> ['pkg']",
        "Requires-Dist:",
        "  + certifi",
        "files:",
        "  + pkg_extra.py",
        "  ~ <dist-info>/METADATA (other bytes)",
        "  ~ pkg.py (other bytes)",
    ]
    # The same wheel bumped: nothing but the version differs, so nothing is reported.
    (tmp_path / "c").mkdir()
    bumped = embed(
        rewrite(first, tmp_path / "b", version="1.0.post2"),
        tmp_path / "c",
        {"package": "pkg", "wheel_version": "1.0.post2"},
        "",
    )
    assert "the wheel's files are identical, byte for byte" in report(
        facts_of(first), facts_of(bumped)
    )


def test_a_wheel_a_build_planted_bad_members_in_is_refused_before_it_is_read(tmp_path):
    # The worker's bump and the master's provenance both rewrite what a build made.
    planted, out = wheel_to_rewrite(tmp_path, "pkg", {"../../escaped.py": "x = 1\n"})
    with pytest.raises(WheelRefused, match="escaped.py"):
        rewrite(planted, out, version="1.0.post1")
    assert list(out.iterdir()) == []
