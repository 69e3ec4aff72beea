"""The frozen shared features of one mouse's trials, what a new readout is fitted on.

Adapting trains only per-mouse parts (readout, shifter) on a frozen core (`SensoriumModel.shared_features`:
core, then the GRU), so a trial's core output never changes: it is computed once and kept in float16 (the
readout's input needs no more precision) when the whole set fits the memory budget; otherwise each batch runs
the core again (`cached=False`). Everything is kept at the model's output frames: output frame j of a trial
belongs to input frame j + R - 1 (R = receptive field), like `SensoriumModel.forward`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from models.networks import SensoriumModel
from models.training.data import MouseData, to_tensors
from models.training.sampler import ClipBatch

CACHE_DTYPE = torch.float16


@dataclass(frozen=True)
class Window:
    """Output frames [start, start + frames) of trial number `trial` (a position in `FrozenFeatures.trials`)."""

    trial: int
    start: int
    frames: int


def feature_bytes(model: SensoriumModel, output_frames: int) -> int:
    """Bytes that the cached shared features of `output_frames` frames take."""
    channels = model.gru.hidden_channels if model.gru is not None else model.core.out_channels
    h, w = model.feature_size
    return output_frames * channels * h * w * torch.finfo(CACHE_DTYPE).bits // 8


class FrozenFeatures:
    """Shared features, pupil centre and standardised targets of some trials of one mouse."""

    def __init__(
        self,
        model: SensoriumModel,
        mouse: MouseData,
        trials: Sequence[int],
        device: torch.device,
        cached: bool,
        progress: bool = False,
        desc: str = "features",
    ) -> None:
        self.model = model
        self.mouse = mouse
        self.trials = [int(i) for i in trials]
        self.device = device
        self.cached = cached
        r = model.receptive_field
        self.output_frames = [int(mouse.lengths[i]) - r + 1 for i in self.trials]
        if min(self.output_frames, default=0) < 1:
            raise ValueError(f"{mouse.session}: a trial is shorter than the model's receptive field ({r})")
        self.scored: list[
            np.ndarray
        ] = []  # (N, T) whole trials in the official scored units (what validation reads)
        self.targets: list[torch.Tensor] = []  # [T', N] at the output frames
        self.pupil: list[torch.Tensor] = []  # [T', 2] normalised pupil centre at the output frames
        self.features: list[torch.Tensor] = []  # [T', C, H', W'] float16 (cached only)
        bar = tqdm(self.trials, desc=desc, unit="trial", leave=False, disable=None if progress else True)
        for index in bar:
            trial = mouse.trial(index)
            video, behavior, pupil, responses = to_tensors(trial, device)
            self.scored.append(mouse.scored_responses(index))
            self.targets.append(responses[r - 1 :])
            self.pupil.append(pupil[r - 1 :])
            if cached:
                self.features.append(self._compute(video[None], behavior[None])[0].to(CACHE_DTYPE))

    def __len__(self) -> int:
        return len(self.trials)

    @torch.inference_mode()
    def _compute(self, video: torch.Tensor, behavior: torch.Tensor) -> torch.Tensor:
        # video [B, T, H, W], behavior [B, T, 2] normalised -> [B, T', C, H', W'] float32
        return self.model.shared_features(video, behavior).transpose(1, 2)

    def batch(self, windows: Sequence[Window]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Frames of the windows stacked: features [M, C, H', W'] float32, pupil centre [M, 2], targets [M, N]."""
        pupil = torch.cat([self.pupil[w.trial][w.start : w.start + w.frames] for w in windows])
        targets = torch.cat([self.targets[w.trial][w.start : w.start + w.frames] for w in windows])
        if self.cached:
            features = torch.cat([self.features[w.trial][w.start : w.start + w.frames] for w in windows])
            return features.float(), pupil, targets
        frames = {w.frames for w in windows}
        if len(frames) != 1:
            raise ValueError(f"windows of one batch must have one length, got {sorted(frames)}")
        r = self.model.receptive_field
        clips = self.mouse.clips(
            ClipBatch(
                self.mouse.session,
                np.array([self.trials[w.trial] for w in windows], dtype=np.int64),
                np.array([w.start for w in windows], dtype=np.int64),  # output j <-> input j + R - 1
                frames.pop() + r - 1,
            )
        )
        video, behavior, _, _ = to_tensors(clips, self.device)
        return self._compute(video, behavior).flatten(0, 1), pupil, targets

    def trial_features(self, k: int) -> torch.Tensor:
        """All output frames of trial number k: [T', C, H', W'] float32."""
        if self.cached:
            return self.features[k].float()
        return self.batch([Window(k, 0, self.output_frames[k])])[0]
