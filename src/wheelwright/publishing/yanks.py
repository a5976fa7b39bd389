"""Yanks (PEP 592) of versions in our index, from the CLI or the web UI's yank form: the index
host marks the files (never deleting them), and farm/logs/yank.log says who and why."""

from __future__ import annotations

import time

from wheelwright.farm.settings import UPLOAD_USER, one_line
from wheelwright.indexhost.upload import UploadError, yank


def yank_and_log(
    farm,
    password: str,
    project: str,
    version: str,
    reason: str | None,
    filename: str | None,
    by: str,
    note: str = "",
) -> dict:
    """Yank project==version (or the one file) with the reason, or unyank it (reason None), and log
    it; returns the index's answer. Raises UploadError."""
    for text, what in ((reason or "", "reason"), (note, "note"), (by, "name")):
        one_line(text, what, UploadError)
    answer = yank(
        farm.index_root + "yank/", UPLOAD_USER, password, project, version, reason, filename
    )
    action = "yank" if reason else "unyank"
    farm.logs_dir.mkdir(parents=True, exist_ok=True)
    with open(farm.logs_dir / "yank.log", "a") as log:
        log.write(
            f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {action} {' '.join(answer['files'])} "
            f"by {by}: {reason or note}\n"
        )
    return answer
