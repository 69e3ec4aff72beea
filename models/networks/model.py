"""SensoriumModel: shared causal core (+ optional conv GRU) and one Gaussian readout + shifter per mouse.

All inputs are NORMALISED (models/data/normalisation.py); outputs are ELU + 1 rates in standardised units.

  video [B, T, H, W], behavior [B, T, 2] -> core input [B, 1 + 2, T, H/p, W/p] (video average-pooled by
                                            p = config.input_pool, behaviour broadcast over space)
  -> core                                   [B, C, T - R + 1, H', W']   frame j <-> input frame j + R - 1
  -> (gru)                                  [B, Ch, T - R + 1, H', W']
  -> readout at mu_n + shifter(pupil[j + R - 1])  [B, T - R + 1, N]  -> ELU + 1

Three views of the same computation, all used by export and tested to agree:
  forward(...)                   whole clip, batched over time (training);
  trunk(...) + head(...)         the clip split into the per-clip convolutional part and a per-frame part
                                 (readout, GRU cell); the clip graph runs `head` in an ONNX Scan over time;
  step(...)                      one frame + state in, responses + new state out (the step graph).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.benchmark import FRAME_HEIGHT, FRAME_WIDTH
from models.config import ModelConfig
from models.networks.core import FactorisedCore
from models.networks.gru import ConvGRU
from models.networks.readout import GaussianReadout, Shifter
from models.networks.rf_mapping import map_receptive_fields


@dataclass(frozen=True)
class MouseInfo:
    """What a readout needs to know about a mouse: neuron ids and cortical coordinates (N, 3)."""

    unit_ids: np.ndarray
    coordinates: np.ndarray

    def __post_init__(self) -> None:
        if len(self.unit_ids) != len(self.coordinates):
            raise ValueError(f"{len(self.unit_ids)} unit ids but {len(self.coordinates)} coordinates")


def module_key(session: str) -> str:
    """nn.ModuleDict keys may not contain '.'."""
    return session.replace(".", "_")


class SensoriumModel(nn.Module):
    def __init__(
        self,
        config: ModelConfig,
        mice: dict[str, MouseInfo],
        height: int = FRAME_HEIGHT,
        width: int = FRAME_WIDTH,
    ):
        super().__init__()
        if not mice:
            raise ValueError("build_model needs at least one mouse")
        self.config = config
        self.sessions = list(mice)
        self.frame_size = (height, width)  # raw input frames
        pool = config.input_pool
        if height % pool or width % pool:
            raise ValueError(f"config.input_pool {pool} must divide the frame size {height}x{width}")
        self.core_size = (height // pool, width // pool)  # frames as the core sees them
        self.core = FactorisedCore(
            in_channels=1 + config.behavior_channels,
            channels=config.channels,
            spatial_kernels=config.spatial_kernels,
            temporal_kernels=config.temporal_kernels,
            padding=config.spatial_padding,
            momentum=config.batchnorm_momentum,
        )
        self.feature_size = self.core.output_size(*self.core_size)
        if min(self.feature_size) < 2:
            raise ValueError(
                f"core output {self.feature_size} for frames {height}x{width}: kernels too large"
            )
        channels = self.core.out_channels
        self.gru: ConvGRU | None = None
        if config.architecture == "gru":
            self.gru = ConvGRU(
                channels, config.gru_channels, config.gru_input_kernel, config.gru_recurrent_kernel
            )
            channels = config.gru_channels
        self.readouts = nn.ModuleDict(
            {
                module_key(s): GaussianReadout(
                    channels,
                    info.coordinates,
                    config.position_hidden,
                    config.readout_init_sigma,
                    config.readout_bias,
                )
                for s, info in mice.items()
            }
        )
        self.shifters = nn.ModuleDict(
            {module_key(s): Shifter(config.shifter_layers, config.shifter_hidden) for s in mice}
            if config.shifter_layers > 0
            else {}
        )
        self.receptive_field = self.core.receptive_field

    # -- helpers -------------------------------------------------------------------------------------------
    def readout(self, session: str) -> GaussianReadout:
        try:
            return self.readouts[module_key(session)]  # type: ignore[return-value]
        except KeyError:
            raise KeyError(f"unknown session {session!r}; the model knows {self.sessions}") from None

    def shift(self, session: str, pupil_center: torch.Tensor) -> torch.Tensor:
        # pupil_center [..., 2] -> shift [..., 2] (zeros without a shifter)
        if not self.shifters:
            return torch.zeros_like(pupil_center)
        return self.shifters[module_key(session)](pupil_center)

    def core_input(self, video: torch.Tensor, behavior: torch.Tensor) -> torch.Tensor:
        # video [B, T, H, W], behavior [B, T, K] -> [B, 1 + K, T, H / p, W / p] (p = config.input_pool)
        pool = self.config.input_pool
        if pool > 1:
            video = F.avg_pool2d(video, pool)  # pools the last two axes; [B, T] act as batch and channels
        k = self.config.behavior_channels
        behavior = behavior[..., :k].transpose(1, 2)[..., None, None]  # [B, K, T, 1, 1]
        planes = behavior + torch.zeros_like(video)[:, None]  # broadcast over space, no explicit sizes
        return torch.cat([video[:, None], planes], dim=1)

    # -- initialisation from data --------------------------------------------------------------------------
    def initialize_positions(self, session: str, trials: Iterable[tuple[np.ndarray, np.ndarray]]) -> float:
        """Start the readout positions of `session` at RF centres mapped from (video [T, H, W] normalised,
        responses [T, N] standardised) trials (models/networks/rf_mapping.py); returns the fit's RMS error
        in grid units."""
        centres, strength = map_receptive_fields(trials)  # raw pixels [x, y]
        pool = self.config.input_pool
        core = np.array(self.core_size[::-1], dtype=np.float32)  # [W, H] in core pixels
        feature = np.array(self.feature_size[::-1], dtype=np.float32)
        offset = (core - feature) / 2  # core pixels cropped on each side without spatial padding
        pixel = (centres - (pool - 1) / 2) / pool - offset  # feature-map pixels
        grid = pixel / np.maximum(feature - 1, 1) * 2 - 1
        readout = self.readout(session)
        with torch.no_grad():
            shift = self.shift(session, torch.zeros(1, 2))  # the shifter at the mean pupil position
        target = torch.as_tensor(grid) - shift
        weight = torch.as_tensor(np.maximum(strength, 0.0) ** 2)
        return readout.fit_positions(target, weight)

    # -- whole clip ----------------------------------------------------------------------------------------
    def forward(
        self, session: str, video: torch.Tensor, behavior: torch.Tensor, pupil_center: torch.Tensor
    ) -> torch.Tensor:
        # -> [B, T - R + 1, N]
        if video.shape[1] < self.receptive_field:
            raise ValueError(f"clip has {video.shape[1]} frames, the model needs >= {self.receptive_field}")
        features = self.shared_features(video, behavior)  # [B, C, T', H', W']
        b, t = features.shape[0], features.shape[2]
        frames = features.transpose(1, 2).flatten(0, 1)  # [B * T', C, H', W']
        pupil = pupil_center[:, self.receptive_field - 1 :].flatten(0, 1)  # [B * T', 2]
        out = self.frame_responses(session, frames, pupil)  # [B * T', N]
        return out.reshape(b, t, out.shape[-1])

    def shared_features(self, video: torch.Tensor, behavior: torch.Tensor) -> torch.Tensor:
        # video [B, T, H, W], behavior [B, T, K] -> [B, C, T - R + 1, H', W']: the part every mouse shares (core,
        # then the GRU), what adapting to a new mouse keeps frozen (models/adapt)
        features = self.core(self.core_input(video, behavior))
        return features if self.gru is None else self.gru(features)

    def frame_responses(self, session: str, frames: torch.Tensor, pupil_center: torch.Tensor) -> torch.Tensor:
        # shared features of M frames [M, C, H', W'], pupil centre at those frames [M, 2] -> rates [M, N]
        out = self.readout(session)(frames, self.shift(session, pupil_center))
        return F.elu(out) + 1

    # -- the clip split for export: trunk once per clip, head once per frame ---------------------------------
    def trunk(
        self, session: str, video: torch.Tensor, behavior: torch.Tensor, pupil_center: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # -> core features [T', B, C, H', W'] and readout shifts [T', B, 2], time first (the Scan axis)
        features = self.core(self.core_input(video, behavior))  # [B, C, T', H', W']
        shift = self.shift(session, pupil_center[:, self.receptive_field - 1 :])  # [B, T', 2]
        return features.permute(2, 0, 1, 3, 4), shift.transpose(0, 1)

    def head(
        self, session: str, features: torch.Tensor, shift: torch.Tensor, hidden: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        # features [B, C, H', W'], shift [B, 2], hidden [B, Ch, H', W'] (gru) -> responses [B, N], new hidden
        if self.gru is not None:
            assert hidden is not None
            hidden = self.gru.cell(features, hidden)
            features = hidden
        out = self.readout(session)(features, shift, gather=True)
        return F.elu(out) + 1, hidden

    # -- streaming ----------------------------------------------------------------------------------------
    @property
    def counts_frames(self) -> bool:
        """A GRU on a core with R > 1 must not start before the core's window is full: the clip's GRU starts
        at input frame R - 1, so the stream carries a frame counter and holds h = 0 until then."""
        return self.gru is not None and self.receptive_field > 1

    def state_shapes(self) -> list[tuple[int, ...]]:
        """Per-stream state tensors (without batch): temporal-conv buffers, then the GRU hidden state, then
        (GRU with R > 1) the number of frames seen, capped at R."""
        shapes: list[tuple[int, ...]] = list(self.core.state_shapes(*self.core_size))
        if self.gru is not None:
            shapes.append((self.gru.hidden_channels, *self.feature_size))
        if self.counts_frames:
            shapes.append((1,))
        return shapes

    def init_state(self, batch: int) -> list[torch.Tensor]:
        device = next(self.parameters()).device
        return [torch.zeros(batch, *shape, device=device) for shape in self.state_shapes()]

    def step(
        self,
        session: str,
        video: torch.Tensor,
        behavior: torch.Tensor,
        pupil_center: torch.Tensor,
        state: list[torch.Tensor],
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        # video [B, H, W], behavior [B, 2], pupil_center [B, 2], state -> responses [B, N], new state
        x = self.core_input(video[:, None], behavior[:, None])[:, :, 0]  # [B, 1 + K, H, W]
        n_core = len(self.core.state_shapes(*self.core_size))
        features, new_state = self.core.step(x, state[:n_core])  # [B, C, H', W']
        shift = self.shift(session, pupil_center)
        if self.gru is None:
            responses, _ = self.head(session, features, shift)
            return responses, new_state
        hidden = state[n_core]
        responses, updated = self.head(session, features, shift, hidden)
        assert updated is not None
        if self.counts_frames:
            count = state[n_core + 1]  # [B, 1]
            full = (count >= self.receptive_field - 1)[:, :, None, None]  # [B, 1, 1, 1]
            updated = torch.where(full, updated, hidden)
            return responses, [*new_state, updated, torch.clamp(count + 1, max=float(self.receptive_field))]
        return responses, [*new_state, updated]

    # -- regularisation (training adds it to the loss) -----------------------------------------------------
    def regularizer(self, session: str) -> torch.Tensor:
        """gamma_readout * mean |w| + gamma_input_spatial * Laplace energy of the first spatial kernels."""
        total = self.readout(session).features.new_zeros(())
        if self.config.gamma_readout:
            total = total + self.config.gamma_readout * self.readout(session).features.abs().mean()
        if self.config.gamma_input_spatial:
            weight = self.core.layers[0].spatial.weight[:, :, 0]  # [C, C_in, k, k]
            laplace = weight.new_tensor([[0.0, -1.0, 0.0], [-1.0, 4.0, -1.0], [0.0, -1.0, 0.0]])[None, None]
            lap = F.conv2d(weight.flatten(0, 1)[:, None], laplace, padding=1)
            total = total + self.config.gamma_input_spatial * lap.pow(2).sum() / weight.pow(
                2
            ).sum().clamp_min(1e-8)
        return total


def build_model(
    config: ModelConfig, mice: dict[str, MouseInfo], height: int = FRAME_HEIGHT, width: int = FRAME_WIDTH
) -> SensoriumModel:
    """The network interface training and export use (see TEAM-BRIEF: Network interface)."""
    return SensoriumModel(config, mice, height, width)
