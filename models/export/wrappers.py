"""torch modules that become the exported graphs: a trained model plus the normalisation of raw inputs.

  ClipTrunk  raw video [B, T, H, W], behavior [B, T, 2], pupil_center [B, T, 2]
             -> core features [T', B, C, H', W'], shifts [T', B, 2] (+ zero GRU state [B, Ch, H', W'])
  FrameHead  one frame of the trunk's output (+ GRU state) -> responses [B, N] (+ new GRU state)
             (the clip graph runs it in an ONNX Scan over T', so no [T', N, C] intermediate is ever built)
  StepGraph  raw video [B, H, W], behavior [B, 2], pupil_center [B, 2], state_in_* -> responses, state_out_*
  ClipModel  normalisation + SensoriumModel.forward: the torch reference the exported clip graph must match

The normalisation is `models.data.normalisation` (the one module), its arrays baked in as buffers.
Remember FIELD-NOTES trap 3: callers put these wrappers (not only the model) in eval() before exporting.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from models.data.normalisation import NormalisationStats
from models.networks import SensoriumModel


class Normalise(nn.Module):
    """Raw units -> the model's normalised inputs, exactly as models/data/normalisation.py defines them."""

    def __init__(self, stats: NormalisationStats, behavior_channels: int):
        super().__init__()

        def buf(name: str, array: np.ndarray) -> None:
            self.register_buffer(name, torch.as_tensor(np.asarray(array, dtype=np.float32)))

        buf("video_mean", stats.video_mean)  # [H, W]
        buf("video_std", stats.video_std)
        buf("behavior_std", stats.behavior_std[:behavior_channels])  # [K]
        buf("pupil_mean", stats.pupil_mean)  # [2]
        buf("pupil_std", stats.pupil_std)
        self.behavior_channels = behavior_channels

    def forward(
        self, video: torch.Tensor, behavior: torch.Tensor, pupil_center: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        video = (video - self.video_mean) / self.video_std
        behavior = behavior[..., : self.behavior_channels] / self.behavior_std
        pupil_center = (pupil_center - self.pupil_mean) / self.pupil_std
        return video, behavior, pupil_center


class ClipModel(nn.Module):
    def __init__(self, model: SensoriumModel, session: str, stats: NormalisationStats):
        super().__init__()
        self.model, self.session = model, session
        self.normalise = Normalise(stats, model.config.behavior_channels)

    def forward(
        self, video: torch.Tensor, behavior: torch.Tensor, pupil_center: torch.Tensor
    ) -> torch.Tensor:
        return self.model(self.session, *self.normalise(video, behavior, pupil_center))


class ClipTrunk(ClipModel):
    def forward(  # type: ignore[override]
        self, video: torch.Tensor, behavior: torch.Tensor, pupil_center: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        features, shift = self.model.trunk(self.session, *self.normalise(video, behavior, pupil_center))
        if self.model.gru is None:
            return features, shift
        # zero GRU state [B, Ch, H', W'] shaped from the data (the batch axis is dynamic)
        hidden0 = torch.zeros_like(features[0, :, :1]).repeat(1, self.model.gru.hidden_channels, 1, 1)
        return features, shift, hidden0


class FrameHead(nn.Module):
    def __init__(self, model: SensoriumModel, session: str):
        super().__init__()
        self.model, self.session = model, session

    def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        # (hidden [B, Ch, H', W'],) features [B, C, H', W'], shift [B, 2] -> (hidden',) responses [B, N]
        if self.model.gru is None:
            features, shift = args
            responses, _ = self.model.head(self.session, features, shift)
            return (responses,)
        hidden, features, shift = args
        responses, hidden = self.model.head(self.session, features, shift, hidden)
        assert hidden is not None
        return hidden, responses


class StepGraph(nn.Module):
    def __init__(self, model: SensoriumModel, session: str, stats: NormalisationStats):
        super().__init__()
        self.model, self.session = model, session
        self.normalise = Normalise(stats, model.config.behavior_channels)

    def forward(
        self, video: torch.Tensor, behavior: torch.Tensor, pupil_center: torch.Tensor, *state: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        video, behavior, pupil_center = self.normalise(video, behavior, pupil_center)
        responses, new_state = self.model.step(self.session, video, behavior, pupil_center, list(state))
        return (responses, *new_state)
