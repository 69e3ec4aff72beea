"""A new recording served in minutes, end to end with the public commands (each in its own process):

synth -> train on 2 mice -> export -> serve --watch -> synth a new mouse -> `rig --record` a few of its trials
(streamed to an old model) -> adapt -> export into the served repository -> the server picks the new model up
-> a rig streams to it; meanwhile another rig streams to an old model at 30 Hz without an error or a deadline
miss. Tiny sizes and one epoch: the point is the workflow, not the model's quality (bench/bench_adapt.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
sys.path.append(str(TESTS))  # area_modules; appended: tests/<area> folders must not shadow packages
from area_modules import load_module  # noqa: E402

ops = load_module("ops_support", TESTS / "ops" / "ops_support.py")  # serve subprocess helpers
CLI = [sys.executable, "-m", "server.cli"]
LOW_PRIORITY = ["nice", "-n", "19"]  # fitting and exporting on the serving host: the server keeps the CPU
OLD_RIG_TRIALS = 4  # 4 x 10 s at 30 Hz: streams through adapt, export, pick-up and the new model's first rig


def run(*args: str, prefix: list[str] | None = None, timeout: float = 300) -> str:
    done = subprocess.run([*(prefix or []), *CLI, *args], capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{args[0]} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done.stdout


def sessions(public: Path) -> list[str]:
    return sorted(p.name for p in public.iterdir() if p.is_dir())


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_new_recording_is_adapted_exported_and_served_while_rigs_run(tmp_path: Path) -> None:
    from client.predictor import PredictorClient
    from models.data.reader import open_mouse

    data, new, rec = tmp_path / "synth", tmp_path / "new", tmp_path / "recording"
    base_run, new_run, repo = tmp_path / "run", tmp_path / "run-new", tmp_path / "repo"
    small = ["--neurons", "30", "--train-trials", "6", "--repeats", "2", "--ood-repeats", "1",
             "--none-trials", "0"]  # fmt: skip
    run("data", "synth", "--out", str(data), "--mice", "2", *small, "--no-oracle")
    run("train", "--data", str(data / "public"), "--out", str(base_run), "--epochs", "1", "--batch-size", "2",
        "--clip-frames", "40", "--val-trials", "2", "--no-progress")  # fmt: skip
    run("export", str(base_run), "--repo", str(repo))
    run("data", "synth", "--like", str(data), "--out", str(new), "--no-oracle")
    old_mouse, (new_mouse,) = sessions(data / "public")[0], sessions(new / "public")
    assert new_mouse not in sessions(data / "public")

    server = ops.launch(repo, tmp_path, "--watch", "0.5", name="serve")
    old_rig = None
    try:
        ops.wait_serving(server.target, server.proc, server.log_path)
        # The rig records the new mouse's trials (its responses stand in for the measured ones) while it
        # streams them to a model that exists (the new mouse has none yet).
        recorded = run("rig", "--target", server.target, "--data", str(new / "public"), "--mouse", new_mouse,
                       "--model", old_mouse, "--tier", "train", "--tier", "oracle", "--trials", "4", "--fps", "300",
                       "--json", "--record", str(rec))  # fmt: skip
        assert json.loads(recorded)["frames"] == 8 * 300
        recording = open_mouse(rec / new_mouse, validate="full")
        assert list(recording.tiers) == ["train"] * 4 + ["oracle"] * 4

        old_rig = subprocess.Popen(
            [*CLI, "rig", "--target", server.target, "--data", str(data / "public"), "--mouse", old_mouse,
             "--tier", "live_test_main", "--trials", str(OLD_RIG_TRIALS), "--fps", "30", "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        summary = run("adapt", "--base", str(base_run), "--data", str(rec), "--out", str(new_run), "--epochs", "2",
                      "--no-progress", prefix=LOW_PRIORITY)  # fmt: skip
        assert summary.startswith(f"adapted {new_mouse}: 0.7 min of data (4 train trials), "), summary
        run("export", str(new_run), "--repo", str(repo), prefix=LOW_PRIORITY)
        exported = time.monotonic()
        with PredictorClient(server.target) as client:
            while not any(m.name == new_mouse and m.version().step_ready for m in client.list_models()):
                assert time.monotonic() - exported < 20, server.log()[-3000:]
                time.sleep(0.1)
            info = client.get_model(new_mouse).version()
        assert info.provenance["adapted_from"]["mice"][new_mouse]["train_trials"] == 4
        streamed = run("rig", "--target", server.target, "--data", str(new / "public"), "--mouse", new_mouse,
                       "--tier", "live_test_main", "--frames", "90", "--fps", "30", "--json")  # fmt: skip
        new_rig = json.loads(streamed)
        assert new_rig["frames"] == 90 and new_rig["model"] == new_mouse
        assert old_rig.poll() is None, "the old model's rig ended before the new model streamed: no overlap"
        out, err = old_rig.communicate(timeout=120)
        assert old_rig.returncode == 0, err[-3000:]
        old = json.loads(out)
        assert old["frames"] == OLD_RIG_TRIALS * 300 and old["deadline_misses"] == 0, old
        assert "watch: " in server.log() and f"{new_mouse}-step/1 loaded" in server.log()
    finally:
        if old_rig is not None and old_rig.poll() is None:
            old_rig.kill()
        assert server.stop() == 0
