"""`sensorium-serve rig` and `predict` against the fake servicer: pacing, JSON shape, the submission written."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest

from client.predict import submission_frames
from client.rig import run_rig
from client.submission import read_submission
from client.trials import open_session, trial_inputs
from models.benchmark import SKIP_FRAMES
from server.cli import main


def test_rig_paces_frames_and_keeps_one_in_flight(fake_server, fake, public_dir: Path) -> None:
    fake_server.servicer.compute_seconds = 0.002
    folder = open_session(public_dir, fake.MODEL)
    trial = trial_inputs(folder, 1)
    fps = 100.0
    report = asyncio.run(run_rig(fake_server.target, [trial], fps))
    n = trial.n_frames
    assert len(report.frames) == n and [f.sequence for f in report.frames] == list(range(n))
    assert fake_server.servicer.max_in_flight == 1
    arrivals = np.diff(fake_server.servicer.frame_arrivals)
    # Frames leave on the clock: never early, on average one period apart, the whole trial ~ (n - 1) / fps.
    assert np.median(arrivals) == pytest.approx(1 / fps, rel=0.2)
    assert (
        fake_server.servicer.frame_arrivals[-1] - fake_server.servicer.frame_arrivals[0]
        >= (n - 1) / fps * 0.98
    )
    assert min(f.send_lag for f in report.frames) >= 0
    assert all(f.latency >= 0.002 for f in report.frames)  # includes the simulated compute
    d = report.to_dict()
    assert d["deadline_misses"] == sum(f.latency + f.send_lag > 1 / fps for f in report.frames)


def test_rig_counts_deadline_misses(fake_server, fake, public_dir: Path) -> None:
    fake_server.servicer.compute_seconds = 0.03  # slower than the 100 fps budget
    trial = trial_inputs(open_session(public_dir, fake.MODEL), 1)
    short = type(trial)(trial.mouse, trial.index, trial.video[:5], trial.behavior[:5], trial.pupil_center[:5])
    report = asyncio.run(run_rig(fake_server.target, [short], 100.0))
    assert report.to_dict()["deadline_misses"] == 5
    assert report.to_dict()["late_sends"] == 4  # every frame after the first waited for its predecessor


def test_rig_cli_json(fake_server, fake, public_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "rig",
        "--target",
        fake_server.target,
        "--data",
        str(public_dir),
        "--mouse",
        fake.MODEL,
        "--tier",
        "final_test_main",
        "--fps",
        "200",
        "--trials",
        "2",
        "--frames",
        "10",
        "--json",
    ]
    assert main(argv) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["frames"] == 20 and d["trials"] == [1, 2] and d["fps"] == 200 and d["version"] == 1
    assert set(d["round_trip_ms"]) == {"p50", "p90", "p99", "mean", "max"}
    assert set(d["breakdown_ms"]) == {"client", "network", "queue", "compute", "server_other"}
    assert d["round_trip_ms"]["p50"] <= d["round_trip_ms"]["p99"] <= d["round_trip_ms"]["max"]
    assert isinstance(d["deadline_misses"], int) and d["budget_ms"] == pytest.approx(5.0)


def test_rig_cli_table_and_errors(
    fake_server, fake, public_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "rig",
        "--target",
        fake_server.target,
        "--data",
        str(public_dir),
        "--mouse",
        fake.MODEL,
        "--fps",
        "200",
        "--tier",
        "oracle",
        "--frames",
        "5",
        "--uint8",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "round trip" in out and "deadline misses:" in out and "network" in out
    with pytest.raises(SystemExit, match=r"rig: .*no such session folder"):
        main([*argv[:6], "nope", *argv[7:]])


def test_submission_frames_are_the_last_t_minus_skip_outputs() -> None:
    t, r, n = 80, 19, 3
    clip = np.arange((t - r + 1) * n, dtype=np.float32).reshape(t - r + 1, n)
    out = submission_frames(clip, r - 1, t)
    assert out.shape == (n, t - SKIP_FRAMES)
    np.testing.assert_array_equal(out, clip[-(t - SKIP_FRAMES) :].T)
    # A warm-up longer than the skip: the first frames after it repeat the first output.
    late = submission_frames(clip[5:], r - 1 + 5 + SKIP_FRAMES - (r - 1), t + SKIP_FRAMES - (r - 1))
    assert late.shape[1] == t + SKIP_FRAMES - (r - 1) - SKIP_FRAMES
    with pytest.raises(ValueError, match="clip output has"):
        submission_frames(clip, r, t)


def test_predict_cli_writes_the_official_file(fake_server, fake, public_dir: Path, tmp_path: Path) -> None:
    argv = [
        "predict",
        "--target",
        fake_server.target,
        "--data",
        str(public_dir),
        "--tier",
        "final_test_main",
        "--out",
        str(tmp_path),
    ]
    assert main(argv) == 0
    path = tmp_path / "predictions_final_main.parquet.brotli"
    rows = read_submission(path)
    folder = open_session(public_dir, fake.MODEL)
    assert [(r.mouse, r.trial_index) for r in rows] == [(fake.MODEL, i) for i in (1, 2, 4)]
    # Scored units by hand: graph output x response_std (1 in the fake's metadata) x 1 / std[n, t] of the
    # released time-resolved statistics, floored at 1 % of their mean, frame t = the trial file's frame.
    std = np.load(public_dir / fake.MODEL / "meta/statistics/responses/all/std.npy").astype(np.float64)
    assert std.shape == (fake.NEURONS, 65)  # (N, T) over the mouse's padded length
    floor = 0.01 * np.nanmean(std)
    precision = np.where(std > floor, 1 / np.where(std > floor, std, 1), 1 / floor)
    assert np.ptp(precision[:, SKIP_FRAMES:58]) > 0  # really time resolved: a collapsed std would fail below
    for row in rows:
        trial = trial_inputs(folder, row.trial_index)
        np.testing.assert_array_equal(row.neuron_ids, fake.UNIT_IDS)
        assert row.prediction.shape == (fake.NEURONS, trial.n_frames - SKIP_FRAMES)
        output = fake.responses(trial.video, trial.behavior)[-(trial.n_frames - SKIP_FRAMES) :].T
        expected = output * precision[:, SKIP_FRAMES : trial.n_frames]
        np.testing.assert_allclose(row.prediction, expected, rtol=1e-5)
    assert not list(tmp_path.glob("*.partial"))
