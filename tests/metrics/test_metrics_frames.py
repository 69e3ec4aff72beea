"""Which frames are scored: the skip, the 300-frame limit, alignment of shorter predictions, bad shapes."""

from __future__ import annotations

import numpy as np
import pytest

from models.benchmark import SCORED_FRAMES, SKIP_FRAMES
from models.metrics import (
    Scoreboard,
    accepted_prediction_frames,
    align,
    correlation_to_average,
    fev_feve,
    single_trial_correlation,
)


def _pair(rng: np.random.Generator, n_frames: int, n_neurons: int = 6) -> tuple[np.ndarray, np.ndarray]:
    target = rng.normal(size=(n_neurons, n_frames)).astype(np.float32)
    prediction = (target + rng.normal(size=target.shape)).astype(np.float32)
    return prediction, target


def test_accepted_frame_counts() -> None:
    assert accepted_prediction_frames(300) == {300: 0, 250: SKIP_FRAMES}
    assert accepted_prediction_frames(315) == {315: 0, 265: SKIP_FRAMES, 250: SKIP_FRAMES}
    assert accepted_prediction_frames(120) == {120: 0, 70: SKIP_FRAMES}


@pytest.mark.parametrize("n_frames", [51, 120, 300, 315])
def test_align_picks_scored_window(rng: np.random.Generator, n_frames: int) -> None:
    frames = np.arange(n_frames, dtype=np.float64)[None, :].repeat(3, axis=0)
    for n_pred in accepted_prediction_frames(n_frames):
        prediction = frames[:, n_frames - n_pred :]  # a prediction's last frame is the trial's last frame
        pred, targ = align(prediction, frames)
        expected = np.arange(SKIP_FRAMES, min(n_frames, SCORED_FRAMES))
        np.testing.assert_array_equal(targ[0], expected)
        if n_pred == n_frames - SKIP_FRAMES or n_pred == n_frames:
            np.testing.assert_array_equal(pred[0], expected)
    # exactly-the-scored-frames form of a long trial: its frames are 50..299
    if n_frames > SCORED_FRAMES:
        scored = frames[:, SKIP_FRAMES:SCORED_FRAMES]
        np.testing.assert_array_equal(align(scored, frames)[0], scored)


def test_skip_respected(rng: np.random.Generator) -> None:
    pairs = [_pair(rng, 300) for _ in range(3)]
    ids = [0, 0, 1]
    before = (
        single_trial_correlation(*zip(*pairs, strict=True)),
        correlation_to_average(*zip(*pairs, strict=True), ids),
        fev_feve(*zip(*pairs, strict=True), ids),
    )
    changed = []
    for prediction, target in pairs:
        p, t = prediction.copy(), target.copy()
        p[:, :SKIP_FRAMES] = rng.normal(size=(p.shape[0], SKIP_FRAMES)) * 100
        t[:, :SKIP_FRAMES] = -7.0
        changed.append((p, t))
    after = (
        single_trial_correlation(*zip(*changed, strict=True)),
        correlation_to_average(*zip(*changed, strict=True), ids),
        fev_feve(*zip(*changed, strict=True), ids),
    )
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_array_equal(before[1], after[1])
    np.testing.assert_array_equal(np.asarray(before[2]), np.asarray(after[2]))
    # and the streaming path agrees that the warm-up never counts
    boards = [Scoreboard(), Scoreboard()]
    for board, trials in zip(boards, (pairs, changed), strict=True):
        for (p, t), i in zip(trials, ids, strict=True):
            board.add("m", p, t, stimulus=i)
    assert boards[0].result() == boards[1].result()


def test_frames_beyond_300_ignored(rng: np.random.Generator) -> None:
    prediction, target = _pair(rng, 315)
    reference = single_trial_correlation([prediction[:, :300]], [target[:, :300]])
    p, t = prediction.copy(), target.copy()
    p[:, SCORED_FRAMES:] = 1e3
    t[:, SCORED_FRAMES:] = -1e3
    np.testing.assert_array_equal(single_trial_correlation([p], [t]), reference)
    # the three accepted forms of a 315-frame prediction give the same score
    for n_pred in (315, 265, 250):
        short = p[:, 315 - n_pred :] if n_pred != 250 else p[:, SKIP_FRAMES:SCORED_FRAMES]
        np.testing.assert_array_equal(single_trial_correlation([short], [t]), reference)


def test_shorter_prediction_aligned_to_last_frames(rng: np.random.Generator) -> None:
    prediction, target = _pair(rng, 300)
    full = single_trial_correlation([prediction], [target])
    np.testing.assert_array_equal(single_trial_correlation([prediction[:, SKIP_FRAMES:]], [target]), full)
    # the first 250 frames of the full prediction are *not* what a 250-frame prediction means
    assert not np.array_equal(single_trial_correlation([prediction[:, :250]], [target]), full)


@pytest.mark.parametrize(
    ("pred_shape", "target_shape", "message"),
    [
        ((5, 249), (5, 300), "prediction has 249 frames for a 300-frame trial; accepted: 300 (every frame"),
        ((5, 300), (5, 315), "prediction has 300 frames for a 315-frame trial; accepted: 315"),
        ((4, 250), (5, 300), "prediction has 4 neurons, the target has 5"),
        ((5, 50), (5, 50), "target has 50 frames; a scored trial needs more than the 50"),
        ((250,), (5, 300), "prediction must be 2-D (neurons, frames), got shape (250,)"),
        ((5, 250), (1, 5, 300), "target must be 2-D (neurons, frames), got shape (1, 5, 300)"),
    ],
)
def test_bad_shapes_rejected(
    pred_shape: tuple[int, ...], target_shape: tuple[int, ...], message: str
) -> None:
    with pytest.raises(ValueError, match=r"trial 3: .*" + _escape(message)):
        align(np.zeros(pred_shape, np.float32), np.zeros(target_shape, np.float32), where="trial 3")


def test_bad_dtype_rejected() -> None:
    with pytest.raises(ValueError, match="prediction must hold real numbers, got dtype complex128"):
        align(np.zeros((2, 300), complex), np.zeros((2, 300)))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_scored_values_rejected(rng: np.random.Generator, bad: float) -> None:
    prediction, target = _pair(rng, 300)
    prediction[2, 120] = bad
    with pytest.raises(
        ValueError, match=r"trial 0: prediction holds .* at neuron row 2, scored frame 70 \(trial frame 120\)"
    ):
        single_trial_correlation([prediction], [target])
    board = Scoreboard()
    with pytest.raises(
        ValueError,
        match=r"mouse m trial 9: prediction holds .* neuron row 2, scored frame 70 \(trial frame 120\)",
    ):
        board.add("m", prediction, target, trial=9)
    # NaN inside the skipped warm-up is not scored, so it is accepted
    prediction[2, 120] = 0.0
    prediction[1, 10] = bad
    board.add("m", prediction, target)
    assert np.isfinite(single_trial_correlation([prediction], [target])).all()


def _escape(text: str) -> str:
    import re

    return re.escape(text)
