"""Writer of one mouse folder in the released layout (see `models.data.layout`).

Trials are written one at a time (streaming: nothing but running sums stays in memory), NaN-padded to the
mouse's fixed length, in float32. `close()` writes the tiers, neurons and the statistics over the train tier,
time resolved as SENSORIUM.md describes them: video (36, 64, T), responses (N, T), behaviour / pupil (2, T),
per frame index over the train trials that reach that frame (NaN where none does).
Test-tier responses are written as zeros (the public release hides them), unless `hide_test_responses=False`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from models.benchmark import TEST_TIERS, TIER_TRAIN, TIERS
from models.data import layout

log = logging.getLogger(__name__)


class _RunningStats:
    """Per (feature, frame) count, sum, sum of squares, min and max over trials (float64)."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.count = np.zeros(shape[-1], dtype=np.int64)
        self.sum = np.zeros(shape, dtype=np.float64)
        self.sumsq = np.zeros(shape, dtype=np.float64)
        self.min = np.full(shape, np.inf)
        self.max = np.full(shape, -np.inf)

    def add(self, x: np.ndarray) -> None:
        t = x.shape[-1]
        x64 = x.astype(np.float64)
        self.count[:t] += 1
        self.sum[..., :t] += x64
        self.sumsq[..., :t] += x64 * x64
        np.minimum(self.min[..., :t], x64, out=self.min[..., :t])
        np.maximum(self.max[..., :t], x64, out=self.max[..., :t])

    def result(self) -> dict[str, np.ndarray]:
        with np.errstate(invalid="ignore", divide="ignore"):
            n = np.where(self.count > 0, self.count, np.nan)
            mean = self.sum / n
            var = np.maximum(self.sumsq / n - mean * mean, 0.0)
        empty = self.count == 0
        mn, mx = self.min.copy(), self.max.copy()
        mn[..., empty] = np.nan
        mx[..., empty] = np.nan
        return {
            "mean": mean.astype(np.float32),
            "std": np.sqrt(var).astype(np.float32),
            "min": mn.astype(np.float32),
            "max": mx.astype(np.float32),
        }


class MouseWriter:
    """Write a mouse folder trial by trial; call `close()` (or use as a context manager) at the end."""

    def __init__(
        self,
        path: Path | str,
        unit_ids: np.ndarray,
        coordinates: np.ndarray,
        n_trials: int,
        padded_length: int,
        hide_test_responses: bool = True,
    ) -> None:
        self.path = Path(path)
        self.unit_ids = np.asarray(unit_ids, dtype=np.int64)
        self.coordinates = np.rint(np.asarray(coordinates)).astype(np.int64)
        if self.unit_ids.ndim != 1 or self.coordinates.shape != (self.unit_ids.size, 3):
            raise ValueError(
                f"unit_ids (N,) and coordinates (N, 3) expected, got {unit_ids.shape}, {coordinates.shape}"
            )
        self.n_neurons = int(self.unit_ids.size)
        self.n_trials = int(n_trials)
        self.padded_length = int(padded_length)
        self.hide_test_responses = hide_test_responses
        self.tiers = np.full(self.n_trials, "", dtype="<U16")
        self._stats = {
            kind: _RunningStats((*layout.leading_shape(kind, self.n_neurons), self.padded_length))
            for kind in layout.KINDS
        }
        for kind in layout.KINDS:
            (self.path / "data" / kind).mkdir(parents=True, exist_ok=True)

    def write_trial(
        self,
        index: int,
        tier: str,
        video: np.ndarray,
        responses: np.ndarray,
        behavior: np.ndarray,
        pupil_center: np.ndarray,
        same_video_as: int | None = None,
    ) -> None:
        """Arrays in the released layout (time last), unpadded: video (36, 64, T), responses (N, T), (2, T) x2.

        `same_video_as`: index of an already written trial that showed the identical video (a repeat); the
        video file is then a hard link to that trial's (same bytes, no extra disk), where the filesystem allows.
        """
        if tier not in TIERS:
            raise ValueError(f"unknown tier {tier!r}")
        if not 0 <= index < self.n_trials:
            raise IndexError(f"trial index {index} outside 0..{self.n_trials - 1}")
        arrays = {
            layout.VIDEOS: video,
            layout.RESPONSES: responses,
            layout.BEHAVIOR: behavior,
            layout.PUPIL_CENTER: pupil_center,
        }
        length = int(np.shape(behavior)[-1])
        if not 0 < length <= self.padded_length:
            raise ValueError(f"trial {index}: length {length} outside 1..{self.padded_length}")
        for kind, arr in arrays.items():
            expected = (*layout.leading_shape(kind, self.n_neurons), length)
            if np.shape(arr) != expected:
                raise ValueError(f"trial {index} {kind}: shape {np.shape(arr)}, expected {expected}")
        if tier == TIER_TRAIN:
            for kind, arr in arrays.items():
                self._stats[kind].add(np.asarray(arr))
        if self.hide_test_responses and tier in TEST_TIERS:
            arrays[layout.RESPONSES] = np.zeros_like(responses)
        if same_video_as is not None and self._link_video(same_video_as, index):
            del arrays[layout.VIDEOS]
        for kind, arr in arrays.items():
            padded = np.full((*np.shape(arr)[:-1], self.padded_length), np.nan, dtype=layout.TRIAL_DTYPE)
            padded[..., :length] = arr
            np.save(layout.trial_file(self.path, kind, index), padded)
        self.tiers[index] = tier

    def _link_video(self, source: int, index: int) -> bool:
        src = layout.trial_file(self.path, layout.VIDEOS, source)
        dst = layout.trial_file(self.path, layout.VIDEOS, index)
        try:
            dst.unlink(missing_ok=True)
            os.link(src, dst)
        except OSError:
            return False
        return True

    def close(self) -> Path:
        """Write tiers, neurons and train-tier statistics. Every trial must have been written."""
        missing = np.flatnonzero(self.tiers == "")
        if missing.size:
            raise RuntimeError(f"{self.path}: trials {missing[:5].tolist()}... were never written")
        if not (self.tiers == TIER_TRAIN).any():
            raise RuntimeError(f"{self.path}: no train trials, statistics undefined")
        for rel, arr in (
            (layout.TIERS_FILE, self.tiers),
            (layout.UNIT_IDS, self.unit_ids),
            (layout.COORDINATES, self.coordinates),
        ):
            (self.path / rel).parent.mkdir(parents=True, exist_ok=True)
            np.save(self.path / rel, arr)
        for kind, running in self._stats.items():
            for stat, arr in running.result().items():
                path = layout.statistics_file(self.path, kind, stat)
                path.parent.mkdir(parents=True, exist_ok=True)
                np.save(path, arr)
        log.debug("wrote %s (%d trials, %d neurons)", self.path, self.n_trials, self.n_neurons)
        return self.path

    def __enter__(self) -> MouseWriter:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            self.close()
