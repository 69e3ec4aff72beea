"""Training-side view of the mouse folders: normalised clips and whole trials, read through the data reader.

Trial arrays stay memory-mapped by `models.data.reader` (the OS page cache keeps a small dataset in memory; a
real-size one is streamed) and are normalised per request with `models.data.normalisation`, the one copy of the
normalisation shared with the Dataset, the exported graphs and the scoring service. Layout here is time-major,
features last: video [T, H, W], behaviour / pupil centre [T, 2], responses [T, N].
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.benchmark import TIER_ORACLE, TIER_TRAIN
from models.data.normalisation import (
    NormalisationStats,
    ScoredUnits,
    normalise_behavior,
    normalise_pupil_center,
    normalise_responses,
    normalise_video,
)
from models.data.reader import MouseFolder, open_dataset
from models.training.sampler import ClipBatch

log = logging.getLogger(__name__)

MEAN_RESPONSE_TRIALS = 64  # training trials read to initialise the readout biases


@dataclass(frozen=True)
class TrialInputs:
    """One normalised trial (or clip), time-major."""

    video: np.ndarray  # [T, H, W]
    behavior: np.ndarray  # [T, 2]
    pupil_center: np.ndarray  # [T, 2]
    responses: np.ndarray  # [T, N] standardised (x / std), zeros for test tiers of a public copy


class MouseData:
    """One mouse folder with its normalisation statistics, its train and oracle trials."""

    def __init__(self, folder: MouseFolder) -> None:
        self.folder = folder
        self.session = folder.session
        self.unit_ids = folder.unit_ids
        self.coordinates = folder.coordinates
        self.stats = NormalisationStats.from_mouse(folder)
        self.scored_units = ScoredUnits.from_mouse(folder)  # the official units validation scores in
        self.lengths = folder.lengths
        self.train_trials = folder.trials(TIER_TRAIN)
        self.oracle_trials = folder.trials(TIER_ORACLE)

    def _window(self, index: int, start: int, frames: int | None) -> TrialInputs:
        stop = None if frames is None else start + frames
        f = self.folder
        return TrialInputs(
            video=normalise_video(np.moveaxis(f.video(index)[..., start:stop], -1, 0), self.stats),
            behavior=normalise_behavior(f.behavior(index)[:, start:stop].T, self.stats),
            pupil_center=normalise_pupil_center(f.pupil_center(index)[:, start:stop].T, self.stats),
            responses=normalise_responses(f.responses(index)[:, start:stop].T, self.stats),
        )

    def trial(self, index: int) -> TrialInputs:
        """A whole trial (true length), normalised."""
        return self._window(index, 0, None)

    def scored_responses(self, index: int) -> np.ndarray:
        """(N, T) responses of a whole trial in the official scored units (per neuron and frame)."""
        return self.scored_units.standardise(self.folder.responses(index))

    def scored_predictions(self, predictions: np.ndarray, n_frames: int) -> np.ndarray:
        """(N, P) model output for the last P frames of an `n_frames` trial -> official scored units."""
        return self.scored_units.from_model_units(predictions, self.stats.response_std, n_frames)

    def clips(self, batch: ClipBatch) -> TrialInputs:
        """The clips of a batch stacked: video [B, F, H, W], behaviour [B, F, 2], ..., responses [B, F, N]."""
        parts = [
            self._window(int(i), int(s), batch.frames)
            for i, s in zip(batch.trials, batch.starts, strict=True)
        ]
        return TrialInputs(
            *(np.stack([getattr(p, k) for p in parts]) for k in TrialInputs.__dataclass_fields__)
        )

    def mean_response(self, max_trials: int = MEAN_RESPONSE_TRIALS) -> np.ndarray:
        """Mean standardised response per neuron over (up to `max_trials`) training trials."""
        trials = self.train_trials[:max_trials]
        total = np.zeros(len(self.unit_ids), dtype=np.float64)
        frames = 0
        for i in trials:
            r = normalise_responses(self.folder.responses(int(i)).T, self.stats)
            total += r.sum(axis=0)
            frames += r.shape[0]
        return (total / max(frames, 1)).astype(np.float32)

    def checkpoint_entry(self) -> dict[str, Any]:
        """The checkpoint's `mice[session]` (TEAM-BRIEF, Checkpoint)."""
        return {
            "unit_ids": np.asarray(self.unit_ids, dtype=np.int64),
            "coordinates": np.asarray(self.coordinates),
            "stats": self.stats.to_dict(),
        }


def load_mice(data_dir: str | Path) -> dict[str, MouseData]:
    """Every mouse folder under `data_dir` (DIR/public); each needs train and oracle trials."""
    mice = {s: MouseData(f) for s, f in open_dataset(data_dir).items()}
    for s, m in mice.items():
        if len(m.train_trials) == 0:
            raise ValueError(f"{Path(data_dir) / s}: no trials of tier {TIER_TRAIN!r} to train on")
        if len(m.oracle_trials) == 0:
            raise ValueError(f"{Path(data_dir) / s}: no trials of tier {TIER_ORACLE!r} to validate on")
    return mice


def to_tensors(
    arrays: TrialInputs, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(video, behavior, pupil_center, responses) as float32 tensors on `device`."""
    return tuple(  # type: ignore[return-value]
        torch.from_numpy(np.ascontiguousarray(getattr(arrays, k))).to(device, non_blocking=True)
        for k in ("video", "behavior", "pupil_center", "responses")
    )
