"""The README's first command, end to end on a small dataset: every step runs and the report says so."""

import re
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_demo_runs_every_step_and_prints_the_report(tmp_path: Path) -> None:
    work = tmp_path / "demo"
    cmd = [sys.executable, "-m", "server.cli", "demo", "--workdir", str(work)]
    cmd += ["--mice", "1", "--neurons", "40", "--epochs", "1"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=880)
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-3000:]

    headers = re.findall(r"^== (\d+)\. (.*)$", out, flags=re.MULTILINE)
    titles = [title for _, title in headers]
    for expected in ("synthetic SENSORIUM", "train", "export", "serve", "rig", "predict", "leaderboard"):
        assert any(expected in t for t in titles), (expected, titles)

    # The rig streamed a whole trial at 30 Hz and reported its percentiles.
    assert re.search(r"rig: 300 frames from 1 trial\(s\)", out), out
    assert re.search(r"round trip\s+[\d.]+\s+[\d.]+\s+[\d.]+", out)
    # Model, oracle and baseline scored on both tracks; the oracle ranks first on each leaderboard.
    for track in ("main", "bonus"):
        for label in ("model", "oracle", "mean response"):
            assert re.search(rf"^\s+{label}\s+{track}\s+-?[\d.]+", out, flags=re.MULTILINE), (label, track)
        assert re.search(rf"^\s+{track}: model / oracle single-trial correlation = ", out, flags=re.MULTILINE)
    # Offline validation on the public oracle tier gives the server's number.
    offline = re.search(r"model on the oracle tier, offline\s*: single-trial r\s+(-?[\d.]+)", out)
    served = re.search(r"model on the oracle tier, on the server\s*: single-trial r\s+(-?[\d.]+)", out)
    assert offline and served and offline.group(1) == served.group(1), out[-3000:]
    boards = re.findall(r"^\s+1\s+(\S+)\s+[\d.]+", out, flags=re.MULTILINE)
    assert boards == ["oracle", "oracle"], boards
    # The server was stopped with SIGTERM and drained cleanly.
    assert "server stopped (exit 0)" in out
    assert (work / "repo").is_dir() and (work / "run" / "best.pt").is_file()
