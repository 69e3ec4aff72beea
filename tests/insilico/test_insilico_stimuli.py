"""The stimulus generators: screen convention (direction of drift, y up), frequencies, ranges, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from models.benchmark import FPS, FRAME_HEIGHT, FRAME_WIDTH
from models.insilico.stimuli import (
    Background,
    GratingProtocol,
    SparseNoiseProtocol,
    drifting_grating,
    gabor_patch,
)


@pytest.mark.parametrize(
    ("direction", "shift"),
    [(0.0, (0, 1)), (90.0, (-1, 0)), (180.0, (0, -1)), (270.0, (1, 0))],
)
def test_grating_drifts_toward_its_direction_with_y_up(direction: float, shift: tuple[int, int]) -> None:
    """sf 1/8 cycles/px at 30/8 Hz moves the pattern one pixel per frame: frame t+1 = frame t moved by `shift`
    (rows, cols); 90 deg moves content up the screen (toward row 0)."""
    video = drifting_grating(direction, 1 / 8, FPS / 8, 4, grey=100.0, contrast=0.5)
    moved = np.roll(video[0], shift, axis=(0, 1))
    inner = (slice(2, -2), slice(2, -2))
    np.testing.assert_allclose(video[1][inner], moved[inner], atol=1e-3)


def test_grating_frequencies_range_and_mean() -> None:
    sf, tf = 1 / 16, 2.0
    video = drifting_grating(30.0, sf, tf, 45, grey=80.0, contrast=1.0)
    assert video.shape == (45, FRAME_HEIGHT, FRAME_WIDTH) and video.dtype == np.float32
    assert video.min() >= 0.0 and video.max() <= 160.0 + 1e-3  # amplitude = min(grey, 255 - grey)
    assert video.max() > 159.0 and video.min() < 1.0
    # a pixel oscillates at tf: 45 frames = 3 whole cycles at 2 Hz, so its mean is the grey level
    pixel = video[:, 10, 20].astype(np.float64)
    assert pixel.mean() == pytest.approx(80.0, abs=0.5)
    spectrum = np.abs(np.fft.rfft(pixel - pixel.mean()))
    assert np.argmax(spectrum) == 3
    # along the drift direction (30 deg, y up) the spatial period is 1 / sf
    frame = video[0].astype(np.float64) - 80.0
    theta = np.deg2rad(30.0)
    u = np.arange(-20, 21)
    rows = np.rint(17 - u * np.sin(theta)).astype(int)
    cols = np.rint(32 + u * np.cos(theta)).astype(int)
    profile = frame[rows, cols]
    expected = 80.0 * np.cos(2 * np.pi * sf * ((cols - 31.5) * np.cos(theta) + (17.5 - rows) * np.sin(theta)))
    np.testing.assert_allclose(profile, expected, atol=1e-2)


def test_gabor_patch_is_centred_windowed_and_cycles_once_per_flash() -> None:
    frames = 8
    patch = gabor_patch((10.0, 40.0), 45.0, 1 / 12, FPS / frames, frames + 1, sigma=3.0, phase=0.3)
    energy = (patch[:frames] ** 2).mean(axis=0)
    assert np.unravel_index(energy.argmax(), energy.shape) in {
        (10, 40),
        (9, 40),
        (10, 39),
        (11, 40),
        (10, 41),
    }
    assert np.abs(patch[:, 10, 40]).max() <= 1.0 + 1e-6
    assert np.abs(patch[:, 10 + 12, 40]).max() < 1e-3  # 4 sigma away: nothing
    np.testing.assert_allclose(patch[frames], patch[0], atol=1e-5)  # one whole drift cycle per flash


def test_sparse_noise_clips_are_deterministic_and_score_only_whole_windows() -> None:
    p = SparseNoiseProtocol(flashes=100, clip_frames=120)
    video, events = p.clip(3, warmup=6, grey=80.0)
    again, events_again = p.clip(3, warmup=6, grey=80.0)
    np.testing.assert_array_equal(video, again)
    np.testing.assert_array_equal(events, events_again)
    assert video.shape == (126, FRAME_HEIGHT, FRAME_WIDTH)
    assert video.min() >= 0 and video.max() <= 255
    onsets, positions = events.T
    assert np.all(onsets >= 0) and np.all(onsets + p.response_frames <= p.clip_frames)
    assert np.all(np.diff(np.unique(onsets)) % p.flash_frames == 0)
    assert np.all(np.bincount(onsets)[np.unique(onsets)] == p.patches)  # every flash scores all its patches
    rows, cols = p.centres()
    assert p.positions == len(rows) * len(cols) and positions.max() < p.positions
    # each scored patch is on the screen where and when the event says (flash-long contrast at its centre)
    for onset, pos in events[:12]:
        r, c = int(rows[pos // len(cols)]), int(cols[pos % len(cols)])
        flash = video[6 + onset : 6 + onset + p.flash_frames, r, c]
        assert np.abs(flash - 80.0).max() > 10.0
    assert p.clips * p.flashes_per_clip >= p.flashes


def test_grating_protocol_runs_every_condition_once() -> None:
    g = GratingProtocol()
    conditions = g.conditions()
    assert len(conditions) == len(set(conditions)) == int(np.prod(g.shape))
    assert g.direction_deg[1] - g.direction_deg[0] == pytest.approx(360.0 / g.directions)
    clip = g.clip((4, 1, 2), warmup=9, grey=70.0)
    assert clip.shape == (9 + g.frames, FRAME_HEIGHT, FRAME_WIDTH)
    for tf in g.temporal_frequencies:  # the window holds whole cycles of each temporal frequency
        assert (g.window_frames * tf / FPS) == pytest.approx(round(g.window_frames * tf / FPS))


def test_background_is_the_mean_of_the_released_statistics() -> None:
    stats = {
        "videos": {"mean": np.full((36, 64, 5), 70.0)},
        "behavior": {"mean": np.array([[10.0, 14.0], [1.0, 3.0]])},
        "pupil_center": {"mean": np.array([100.0, 90.0])},
    }
    bg = Background.from_statistics(stats)
    assert bg.grey == pytest.approx(70.0)
    assert bg.behavior == pytest.approx((12.0, 2.0)) and bg.pupil_center == pytest.approx((100.0, 90.0))
    behavior, pupil = bg.traces(2, 7)
    assert behavior.shape == pupil.shape == (2, 7, 2) and np.all(behavior[..., 1] == 2.0)
