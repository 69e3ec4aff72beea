"""A `GroundTruth` generated on the fly (benchmarks, memory tests): full-size submissions without a full-size
dataset on disk.

Responses of trial i = signal[stimulus] + a window of a fixed noise bank, put in scored units with a
time-resolved (N, T) response precision like `FolderGroundTruth` does (one add and one multiply per trial,
nothing stored per trial, so the benchmark pays the real per-frame standardisation); `prediction` gives a matching model output (the signal plus another noise window, frames
after the skip), so a client can generate a whole submission from the same seed. Memory: the signals
(stimuli x N x T float32) and the bank (N x (T + 1021) float32), shared by all mice.
"""

from __future__ import annotations

from typing import Final

import numpy as np

from models.benchmark import MOVIE_FRAMES, SKIP_FRAMES
from models.data.normalisation import ScoredUnits
from server.scoring.ground_truth import TrialInfo

_BANK_EXTRA: Final = 1021  # noise bank columns beyond one trial; windows start at different offsets


class SyntheticGroundTruth:
    def __init__(
        self,
        mice: int = 5,
        neurons: int = 8000,
        stimuli: int = 6,
        trials: int = 60,
        frames: int = MOVIE_FRAMES,
        tier: str = "final_test_main",
        seed: int = 0,
    ) -> None:
        rng = np.random.default_rng(seed)
        self.tier = tier
        self.frames = frames
        self._mice = [f"dynamic{29515 + m}-1-1-Video-{m:032x}" for m in range(mice)]
        self._unit_ids = {
            name: rng.permutation(np.arange(neurons, dtype=np.int64) * 3 + 1000 + m)
            for m, name in enumerate(self._mice)
        }
        self._trials = {
            i: TrialInfo(tier=tier, stimulus=i % stimuli, family="natural_movie") for i in range(trials)
        }
        self._signal = (rng.standard_normal((stimuli, neurons, frames), dtype=np.float32) + 2.0).astype(
            np.float32
        )
        self._bank = rng.standard_normal((neurons, frames + _BANK_EXTRA), dtype=np.float32)
        self._units = ScoredUnits.from_std(
            rng.uniform(0.5, 2.0, (neurons, frames)).astype(np.float32), neurons
        )

    def _noise(self, mouse: str, trial: int, shift: int = 0) -> np.ndarray:
        offset = (trial * 37 + self._mice.index(mouse) * 101 + shift) % _BANK_EXTRA
        return self._bank[:, offset : offset + self.frames]

    def mice(self) -> list[str]:
        return list(self._mice)

    def unit_ids(self, mouse: str) -> np.ndarray:
        return self._unit_ids[mouse]

    def trials(self, mouse: str) -> dict[int, TrialInfo]:
        return self._trials

    def responses(self, mouse: str, trial: int) -> np.ndarray:
        return self._units.standardise(
            np.add(self._signal[self._trials[trial].stimulus], self._noise(mouse, trial))
        )

    def prediction(self, mouse: str, trial: int, after_skip: bool = True) -> np.ndarray:
        """A model's output, float32: (N, T - skip) as the official submission format holds it (frames after
        the skip), or (N, T) with every frame (``after_skip=False``)."""
        first = SKIP_FRAMES if after_skip else 0
        signal = self._signal[self._trials[trial].stimulus, :, first:]
        return np.add(signal, self._noise(mouse, trial, shift=500)[:, first:])

    def prediction_bytes(self, after_skip: bool = True) -> int:
        """float32 bytes of one whole submission."""
        n = sum(len(ids) for ids in self._unit_ids.values())
        return n * len(self._trials) * (self.frames - (SKIP_FRAMES if after_skip else 0)) * 4
