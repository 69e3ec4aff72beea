"""Clients against the real server (server.app on a free loopback port) and the server's ONNX test model."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from client.errors import InvalidArgumentError, NotFoundError
from client.predictor import AsyncPredictorClient, PredictorClient
from client.rig import PROTOCOLS, run_rig
from client.submission import read_submission
from client.trials import open_session, trial_inputs
from models.benchmark import SKIP_FRAMES
from models.data.normalisation import ScoredUnits
from server.cli import main


def test_models_and_typed_errors(live) -> None:
    with PredictorClient(live.target) as client:
        client.wait_ready()
        assert [m.name for m in client.list_models()] == [live.mouse]
        info = client.get_model(live.mouse).version()
        np.testing.assert_array_equal(info.unit_ids, live.unit_ids)
        assert info.receptive_field == live.receptive_field and info.clip_ready and info.step_ready
        with pytest.raises(NotFoundError, match="GetModel: NOT_FOUND"):
            client.get_model("no-such-mouse")
        with pytest.raises(NotFoundError):
            client.open_stream("no-such-mouse")
        bad = np.zeros((10, 30, 64), np.float32)
        with pytest.raises(InvalidArgumentError, match="video"):
            client.predict_clip(live.mouse, bad, np.zeros((10, 2), np.float32), np.zeros((10, 2), np.float32))


def test_stream_equals_clip_and_in_process(live) -> None:
    trial = trial_inputs(open_session(live.data, live.mouse), 1)
    reference = live.clip_in_process(trial.video, trial.behavior, trial.pupil_center)
    warm = live.receptive_field - 1
    with PredictorClient(live.target) as client:
        clip = client.predict_clip(live.mouse, trial.video, trial.behavior, trial.pupil_center)
        assert clip.first_frame == warm
        np.testing.assert_allclose(clip.responses, reference, atol=1e-4)
        with client.open_stream(live.mouse) as stream:
            streamed = [
                stream.send(*f) for f in zip(trial.video, trial.behavior, trial.pupil_center, strict=True)
            ]
    assert [r.warm for r in streamed] == [t >= warm for t in range(trial.n_frames)]
    np.testing.assert_allclose(np.stack([r.responses for r in streamed[warm:]]), reference, atol=1e-4)
    assert all(r.compute_seconds > 0 and r.server_seconds >= r.compute_seconds for r in streamed)


def test_uint8_frames_equal_float_frames(live) -> None:
    trial = trial_inputs(open_session(live.data, live.mouse), 2)  # pixels are whole numbers 0..255

    async def run(frames: np.ndarray) -> np.ndarray:
        async with AsyncPredictorClient(live.target) as client, await client.open_stream(live.mouse) as s:
            out = [await s.send(frames[t], trial.behavior[t], trial.pupil_center[t]) for t in range(20)]
        return np.stack([r.responses for r in out])

    as_float = asyncio.run(run(trial.video))
    as_uint8 = asyncio.run(run(trial.video.astype(np.uint8)))
    np.testing.assert_allclose(as_uint8, as_float, atol=1e-5)


def test_rig_over_the_real_server(live) -> None:
    folder = open_session(live.data, live.mouse)
    trials = [trial_inputs(folder, i) for i in (1, 2)]
    report = asyncio.run(run_rig(live.target, trials, fps=120.0))
    d = report.to_dict()
    assert d["frames"] == sum(t.n_frames for t in trials) and d["version"] == 1
    assert d["breakdown_ms"]["compute"]["p50"] > 0 and d["batch_size"]["max"] >= 1
    # The parts of the time never exceed the whole, frame by frame.
    for f in report.frames:
        r = f.response
        assert r.queue_seconds + r.compute_seconds <= r.server_seconds + 1e-6
        assert r.server_seconds <= r.round_trip_seconds


def test_rig_measures_both_protocols_alike(live, capsys: pytest.CaptureFixture[str]) -> None:
    """--protocol kserve: one Triton sequence per trial over ModelStreamInfer, the same answers and report."""
    folder = open_session(live.data, live.mouse)
    trials = [trial_inputs(folder, i) for i in (1, 2)]
    reports = {p: asyncio.run(run_rig(live.target, trials, fps=120.0, protocol=p)) for p in PROTOCOLS}
    sensorium, kserve = reports["sensorium"], reports["kserve"]
    assert kserve.to_dict()["protocol"] == "kserve" and kserve.version == sensorium.version == 1
    assert len(kserve.frames) == len(sensorium.frames) == sum(t.n_frames for t in trials)
    for a, b in zip(sensorium.frames, kserve.frames, strict=True):
        assert (a.trial, a.sequence, a.response.warm) == (b.trial, b.sequence, b.response.warm)
        np.testing.assert_allclose(b.response.responses, a.response.responses, rtol=0, atol=1e-6)
        r = b.response
        assert r.compute_seconds > 0 and r.queue_seconds + r.compute_seconds <= r.server_seconds + 1e-6
        assert r.server_seconds <= r.round_trip_seconds and r.batch_size == 1
    assert live.server_sessions() == 0  # every trial's last frame ended its sequence
    main(["rig", "--target", live.target, "--data", str(live.data), "--mouse", live.mouse, "--frames", "12",
          "--fps", "120", "--protocol", "kserve", "--json"])  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    assert (out["protocol"], out["frames"], out["version"]) == ("kserve", 12, 1)
    assert out["breakdown_ms"]["compute"]["p50"] > 0
    with pytest.raises(SystemExit):
        main(["rig", "--target", live.target, "--data", str(live.data), "--mouse", live.mouse,
              "--protocol", "triton"])  # fmt: skip


def test_predict_cli_over_the_real_server(live, tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sub.parquet.brotli"
    argv = [
        "predict",
        "--target",
        live.target,
        "--data",
        str(live.data),
        "--tier",
        "final_test_main",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    assert "wrote 2 trials of final_test_main" in capsys.readouterr().out
    folder = open_session(live.data, live.mouse)
    rows = read_submission(out)
    assert [(r.mouse, r.trial_index) for r in rows] == [(live.mouse, 1), (live.mouse, 2)]
    # the file is in scored units: graph output x the model's response_std x the released precision per frame
    with PredictorClient(live.target) as client:
        response_std = client.get_model(live.mouse).version().response_std.astype(np.float64)
    units = ScoredUnits.from_mouse(folder)
    for row in rows:
        trial = trial_inputs(folder, row.trial_index)
        np.testing.assert_array_equal(row.neuron_ids, live.unit_ids)
        assert row.prediction.shape == (live.n_neurons, trial.n_frames - SKIP_FRAMES)
        reference = live.clip_in_process(trial.video, trial.behavior, trial.pupil_center)
        raw = reference[-(trial.n_frames - SKIP_FRAMES) :].T * response_std[:, None]
        expected = raw * units.precision[:, SKIP_FRAMES : trial.n_frames]
        np.testing.assert_allclose(row.prediction, expected, rtol=1e-4, atol=1e-4)


def test_rig_cli_json_over_the_real_server(live, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "rig",
        "--target",
        live.target,
        "--data",
        str(live.data),
        "--mouse",
        live.mouse,
        "--tier",
        "live_test_main",
        "--fps",
        "60",
        "--json",
        "--uint8",
    ]
    assert main(argv) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["frames"] == 64 and d["trials"] == [3] and d["model"] == live.mouse
