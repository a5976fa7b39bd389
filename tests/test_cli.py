"""The command as a stranger meets it: one line for each error, never a traceback unless asked,
and exit codes a script can act on."""

from __future__ import annotations

import json
import os
import subprocess

from tests.farm import WHEELWRIGHT
from tests.sdists import free_port


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [WHEELWRIGHT, *args], capture_output=True, text=True, env={**os.environ, **(env or {})}
    )


def one_line(proc: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wheelwright: "), proc.stderr
    return lines[0]


def test_a_bad_farm_json_is_named_with_its_line_and_exits_2(tmp_path):
    (tmp_path / "farm.json").write_text('{"ui_port": 80,\n')
    proc = run("status", "--state", str(tmp_path))  # the global option after the command
    assert proc.returncode == 2
    assert f"{tmp_path / 'farm.json'}, line 2: Expecting property name" in one_line(proc)


def test_a_farm_that_is_down_exits_3_with_a_hint(tmp_path):
    (tmp_path / "farm.json").write_text(json.dumps({"ui_port": free_port()}))
    proc = run("build", "six==1.17.0", env={"WHEELWRIGHT_STATE": str(tmp_path)})
    assert proc.returncode == 3
    assert "is the farm up?" in one_line(proc)


def test_a_missing_constraints_file_exits_2_and_debug_shows_the_traceback(tmp_path):
    proc = run("--state", str(tmp_path), "bootstrap", "six", "--constraints", "/no/such/file")
    assert proc.returncode == 2
    assert one_line(proc) == "wheelwright: /no/such/file: no such file"
    debug = run("bootstrap", "six", "--constraints", "/no/such/file", "--debug")
    assert "Traceback" in debug.stderr and "FileNotFoundError" in debug.stderr


def test_the_help_documents_the_exit_codes():
    text = run("--help").stdout
    for code in ("0  done", "2  usage or settings", "3  the farm", "4  queued"):
        assert code in text


def test_waiting_off_a_terminal_prints_a_plain_line_when_the_step_changes_and_every_few_seconds(
    capsys, monkeypatch
):
    from wheelwright.cli import main as cli

    clock = [100.0]
    monkeypatch.setattr(cli.time, "monotonic", lambda: clock[0])
    with cli.progress("six 1.17.0 on x86_64-cp311") as show:
        for step, at in (("download-source", 100), ("download-source", 101), ("build", 102)):
            clock[0] = at
            show(step)
        clock[0] = 102 + cli.PLAIN_EVERY
        show("build")
    assert capsys.readouterr().err.splitlines() == [
        "wheelwright: six 1.17.0 on x86_64-cp311: download-source (0 s)",
        "wheelwright: six 1.17.0 on x86_64-cp311: build (2 s)",
        f"wheelwright: six 1.17.0 on x86_64-cp311: build ({2 + cli.PLAIN_EVERY:.0f} s)",
    ]


def test_the_state_folder_is_the_one_given_before_or_after_the_command_or_in_the_environment(
    tmp_path,
):
    for n in (1, 2, 3):
        (tmp_path / f"s{n}").mkdir()
        (tmp_path / f"s{n}" / "farm.json").write_text(json.dumps({"ui_port": 9000 + n}))
    said = [
        run("--state", str(tmp_path / "s1"), "status").stdout,
        run("status", "--state", str(tmp_path / "s2")).stdout,
        run("status", env={"WHEELWRIGHT_STATE": str(tmp_path / "s3")}).stdout,
        run("--state", str(tmp_path / "s1"), "status", env={"WHEELWRIGHT_STATE": "x"}).stdout,
    ]
    assert [text.splitlines()[0] for text in said] == [
        "ui: http://127.0.0.1:9001/",
        "ui: http://127.0.0.1:9002/",
        "ui: http://127.0.0.1:9003/",
        "ui: http://127.0.0.1:9001/",
    ]


def test_a_missing_interpreter_fails_its_builder_not_the_pool():
    """A fresh Debian machine has one Python: the local pool still builds for it, and doctor
    names the builders that cannot."""
    import dataclasses

    from wheelwright.farm import doctor
    from wheelwright.farm.pools import POOLS

    local = POOLS["local"]
    some = dataclasses.replace(local, pythons=(*local.pythons, "3.99"))
    (missing,) = [p for p in doctor.local_pool(some) if "3.99" in p.what]
    assert not missing.blocks and "cp399 cannot build" in missing.what
    (alone,) = [p for p in doctor.local_pool(dataclasses.replace(local, pythons=("3.99",)))]
    assert alone.blocks
