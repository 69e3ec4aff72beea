"""Repeats by video identity: the release ships no stimulus id, so identical videos mean the same stimulus."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np


def true_length(array: np.ndarray) -> int:
    """Frames before the first NaN along the last (time) axis: a trial's true length in a NaN-padded file."""
    if not np.issubdtype(array.dtype, np.floating):
        return int(array.shape[-1])
    nan_frames = np.isnan(array.reshape(-1, array.shape[-1])).any(axis=0)
    return int(np.argmax(nan_frames)) if nan_frames.any() else int(array.shape[-1])


def video_fingerprint(video: np.ndarray) -> str:
    """Hex digest of a video (H, W, T) over its true length: equal for identical frames (same dtype).

    NaN padding beyond the true length does not count, so the same clip padded to different lengths
    gets the same fingerprint.
    """
    video = np.asarray(video)
    if video.ndim < 1:
        raise ValueError(f"video must have a time axis, got shape {video.shape}")
    trimmed = np.ascontiguousarray(video[..., : true_length(video)])
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{trimmed.dtype.str}{trimmed.shape}".encode())
    digest.update(memoryview(trimmed).cast("B"))
    return digest.hexdigest()


def group_repeats(videos: Iterable[np.ndarray]) -> np.ndarray:
    """Stimulus id per trial (int64), numbered 0, 1, ... in order of first appearance; repeats share an id."""
    ids: dict[str, int] = {}
    out = [ids.setdefault(video_fingerprint(v), len(ids)) for v in videos]
    return np.asarray(out, dtype=np.int64)
