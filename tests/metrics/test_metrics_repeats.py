"""Repeats found by video identity."""

from __future__ import annotations

import numpy as np

from models.metrics import group_repeats, true_length, video_fingerprint


def _video(rng: np.random.Generator, n_frames: int = 300) -> np.ndarray:
    return rng.integers(0, 256, size=(36, 64, n_frames)).astype(np.float32)


def _padded(video: np.ndarray, length: int) -> np.ndarray:
    out = np.full((*video.shape[:2], length), np.nan, dtype=video.dtype)
    out[..., : video.shape[-1]] = video
    return out


def test_group_repeats_by_identity(rng: np.random.Generator) -> None:
    a, b, c = _video(rng), _video(rng), _video(rng, 315)
    near_a = a.copy()
    near_a[5, 7, 299] += 1.0  # one pixel of the last frame differs: another stimulus
    videos = [b, a, c.copy(), a.copy(), near_a, b.copy(), c]
    np.testing.assert_array_equal(group_repeats(videos), [0, 1, 2, 1, 3, 0, 2])
    assert group_repeats([]).shape == (0,)


def test_padding_does_not_count(rng: np.random.Generator) -> None:
    a = _video(rng)
    padded = _padded(a, 315)
    assert true_length(padded) == 300 and true_length(a) == 300
    assert video_fingerprint(padded) == video_fingerprint(a)
    np.testing.assert_array_equal(group_repeats([a, padded, _padded(a, 330)]), [0, 0, 0])
    # the same first 300 frames of a longer clip are a different stimulus
    longer = np.concatenate([a, _video(rng, 15)], axis=-1)
    assert video_fingerprint(longer) != video_fingerprint(a)


def test_true_length_of_responses_and_integer_videos(rng: np.random.Generator) -> None:
    responses = np.full((10, 320), np.nan)
    responses[:, :288] = rng.random((10, 288))
    assert true_length(responses) == 288
    assert true_length(rng.integers(0, 255, size=(36, 64, 40), dtype=np.uint8)) == 40


def test_fingerprint_distinguishes_shape_and_dtype(rng: np.random.Generator) -> None:
    a = _video(rng)
    assert video_fingerprint(a) != video_fingerprint(a.reshape(64, 36, 300))
    assert video_fingerprint(a) != video_fingerprint(a.astype(np.float64))
    assert video_fingerprint(a[:, :, ::2]) == video_fingerprint(np.ascontiguousarray(a[:, :, ::2]))
