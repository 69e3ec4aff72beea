"""A short soak (bench/soak.py, ~25 s): concurrent 30 Hz streams + scoring submissions against a server
subprocess. 0 errors, every frame answered, no stream left open, clean exit, RSS growth < 5 % after warm-up.

Deadline misses: the issue's target (none) is for a quiet machine at a load inside the measured capacity; CI
shares its cores, so this test allows a small fraction (SENSORIUM_SOAK_MAX_MISS_FRACTION, default 0.05). The long
run and its conditions are in docs/benchmarks/soak.md. SENSORIUM_SOAK_SECONDS runs it longer.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SECONDS = float(os.environ.get("SENSORIUM_SOAK_SECONDS", "25"))
MAX_MISS_FRACTION = float(os.environ.get("SENSORIUM_SOAK_MAX_MISS_FRACTION", "0.05"))
STREAMS = 2


@pytest.mark.slow
def test_short_soak_has_no_errors_leaks_or_memory_growth(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    command = [sys.executable, str(ROOT / "bench" / "soak.py"), "--streams", str(STREAMS), "--seconds",
               str(SECONDS), "--submit-every", str(SECONDS / 3), "--warmup", str(SECONDS / 3), "--json", str(out)]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=SECONDS + 180)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(out.read_text())
    assert report["errors"] == 0 and report["server_errors_total"] == 0, report["error_samples"]
    assert report["server_exit_code"] == 0
    expected = STREAMS * report["fps"] * SECONDS
    assert report["frames"] >= 0.95 * expected
    assert report["server_frames_total"] == report["frames"]  # every frame sent was answered
    assert report["server_active_streams_at_end"] == 0
    assert report["submissions"] >= 2
    assert report["rss_growth_pct"] is not None and report["rss_growth_pct"] < 5.0
    assert report["deadline_misses"] <= MAX_MISS_FRACTION * report["frames"], report["latency_ms"]
