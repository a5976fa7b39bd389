"""The benchmarks' smoke run (tiny sizes): they keep working. No time is asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "run.py"


def test_publishing_benchmark_runs_and_prints_its_ratio():
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--only", "publishing"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "publishing: index of 200 projects, 2000 files" in proc.stdout
    assert "ratio: " in proc.stdout


def test_upstream_watching_benchmark_runs_and_counts_requests():
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--only", "upstream-watching"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "100 allow-listed, 5 changed: changelog 6 requests, 5 full" in proc.stdout
    assert (
        "pages 100 requests, 5 full" in proc.stdout
        and "full pages 100 requests, 100 full" in proc.stdout
    )
