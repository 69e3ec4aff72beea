"""Recording what a rig streamed (client.recording, `rig --record`) as a session folder in the released layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from client.recording import RecordingError, SessionRecorder
from models.data import layout
from models.data.reader import open_mouse
from server.cli import main

SESSION = "dynamic01234-5-6-Video-" + "d" * 32


def _frames(rng: np.random.Generator, n_frames: int, n_neurons: int) -> list[tuple[np.ndarray, ...]]:
    return [
        (
            rng.integers(0, 256, (36, 64)).astype(np.float32),
            rng.normal([40.0, 1.0], [5.0, 0.5]).astype(np.float32),
            rng.normal([120.0, 100.0], 3.0).astype(np.float32),
            rng.gamma(0.5, 4.0, n_neurons).astype(np.float32),
        )
        for _ in range(n_frames)
    ]


def test_recorder_writes_the_released_layout_with_train_statistics(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    unit_ids, coords = np.array([3, 9, 12, 40]), rng.integers(-500, 500, (4, 3))
    trials = [("train", _frames(rng, 12, 4)), ("oracle", _frames(rng, 10, 4)), ("train", _frames(rng, 11, 4))]
    with SessionRecorder(tmp_path / "rec", SESSION, unit_ids, coords) as recorder:
        for tier, frames in trials:
            for frame in frames:
                recorder.add_frame(*frame)
            recorder.end_trial(tier)
        assert not (tmp_path / "rec" / SESSION).exists()  # written on close, not before
    mouse = open_mouse(tmp_path / "rec" / SESSION, validate="full")
    assert list(mouse.tiers) == ["train", "oracle", "train"] and mouse.lengths.tolist() == [12, 10, 11]
    assert mouse.padded_length == 12 and np.array_equal(mouse.unit_ids, unit_ids)
    assert np.array_equal(mouse.coordinates, coords)
    for i, (_, frames) in enumerate(trials):
        np.testing.assert_array_equal(mouse.video(i), np.stack([f[0] for f in frames], axis=-1))
        np.testing.assert_array_equal(mouse.behavior(i), np.stack([f[1] for f in frames], axis=-1))
        np.testing.assert_array_equal(mouse.pupil_center(i), np.stack([f[2] for f in frames], axis=-1))
        np.testing.assert_array_equal(mouse.responses(i), np.stack([f[3] for f in frames], axis=-1))
    # statistics over the train trials only, per frame index (frame 11 is reached by one train trial)
    train = [np.stack([f[3] for f in frames], axis=-1) for tier, frames in trials if tier == "train"]
    std = mouse.statistics[layout.RESPONSES]["std"]
    np.testing.assert_allclose(std[:, 0], np.std([t[:, 0] for t in train], axis=0), rtol=1e-5)
    np.testing.assert_allclose(std[:, 11], 0.0, atol=1e-6)
    assert not list((tmp_path / "rec").glob(".*"))  # the spool is gone


def test_recorder_refuses_bad_frames_and_keeps_going(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    recorder = SessionRecorder(tmp_path, SESSION, [1, 2], rng.integers(0, 9, (2, 3)))
    video, behavior, pupil, responses = _frames(rng, 1, 2)[0]
    with pytest.raises(RecordingError, match=r"videos: shape \[36, 63\]"):
        recorder.add_frame(video[:, :63], behavior, pupil, responses)
    with pytest.raises(RecordingError, match=r"responses: shape \[3\], expected \[2\]"):
        recorder.add_frame(video, behavior, pupil, np.ones(3))
    with pytest.raises(RecordingError, match="behavior: NaN"):
        recorder.add_frame(video, np.array([np.nan, 1.0]), pupil, responses)
    with pytest.raises(RecordingError, match="no frames"):
        recorder.end_trial()
    recorder.add_frame(video, behavior, pupil, responses)
    with pytest.raises(RecordingError, match="tier: 'training' is not one of"):
        recorder.end_trial("training")
    assert recorder.end_trial("oracle") == 0
    with pytest.raises(RecordingError, match="no 'train' trial"):
        recorder.close()
    recorder.add_frame(video, behavior, pupil, responses)
    assert recorder.end_trial() == 1
    assert recorder.close() == tmp_path / SESSION and list(open_mouse(tmp_path / SESSION).tiers) == [
        "oracle",
        "train",
    ]
    with pytest.raises(FileExistsError):
        SessionRecorder(tmp_path, SESSION, [1, 2], np.zeros((2, 3)))


def test_recorder_keeps_finished_trials_when_the_rig_fails(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    recorder = SessionRecorder(tmp_path, SESSION, [1, 2], np.zeros((2, 3)))
    with pytest.raises(RuntimeError, match="rig crashed"), recorder:
        for frame in _frames(rng, 5, 2):
            recorder.add_frame(*frame)
        recorder.end_trial("train")
        recorder.add_frame(*_frames(rng, 1, 2)[0])  # an unfinished trial is dropped
        raise RuntimeError("rig crashed")
    assert open_mouse(tmp_path / SESSION).lengths.tolist() == [5]


def test_rig_record_writes_what_it_streamed(
    fake_server, fake, public_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`rig --record` streams a session's train and oracle trials to another model (--model) and writes them,
    with the session's responses as the rig's measurement, in the released layout."""
    source = open_mouse(public_dir / fake.MODEL)
    train, oracle = source.trials("train").tolist(), source.trials("oracle").tolist()
    assert len(train) >= 2 and len(oracle) >= 1
    k = max(len(train), len(oracle))  # every train trial: the statistics are then over the same trials
    argv = ["rig", "--target", fake_server.target, "--data", str(public_dir), "--mouse", fake.MODEL,
            "--model", fake.MODEL, "--tier", "train", "--tier", "oracle", "--trials", str(k), "--fps", "300",
            "--json", "--record", str(tmp_path / "rec")]  # fmt: skip
    assert main(argv) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    streamed = train + oracle
    assert report["trials"] == streamed and report["frames"] == int(source.lengths[streamed].sum())
    assert f"recorded {len(streamed)} trials" in captured.err
    recorded = open_mouse(tmp_path / "rec" / fake.MODEL, validate="full")
    assert list(recorded.tiers) == ["train"] * len(train) + ["oracle"] * len(oracle)
    for new, old in enumerate(streamed):
        for read in ("video", "behavior", "pupil_center", "responses"):
            np.testing.assert_array_equal(getattr(recorded, read)(new), getattr(source, read)(old))
    frames = int(source.lengths[train].max())  # statistics over the train trials, per frame index
    for kind in (layout.RESPONSES, layout.BEHAVIOR, layout.VIDEOS):
        for stat in ("mean", "std"):
            np.testing.assert_allclose(
                recorded.statistics[kind][stat][..., :frames],
                source.statistics[kind][stat][..., :frames],
                rtol=1e-5,
                atol=1e-5,
            )
    with pytest.raises(SystemExit, match="not empty"):  # never overwrites a recording
        main(argv)
