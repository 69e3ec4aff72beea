"""Causal factorised-3D convolutional core, runnable on a clip or one frame at a time.

Layer i:  x [B, C_in, T, H, W]
  -> spatial conv (1, k_s, k_s)             [B, C, T, H', W']
  -> temporal conv (k_t, 1, 1), no padding  [B, C, T - k_t + 1, H', W']   output j <-> input frame j + k_t - 1
  -> BatchNorm -> ELU
The core's receptive field is R = 1 + sum(k_t - 1); its output j belongs to input frame j + R - 1 (causal).

Streaming (`step`): the spatial conv runs on the new frame only; the temporal conv sees the last k_t - 1
spatial outputs, kept as a state tensor [B, (k_t - 1) * C, H', W'] (oldest frame first, frames stacked on
the channel axis), so the temporal conv becomes a 1x1 conv over the state's (k_t - 1) * C channels plus one over
the new frame's C channels (two convs instead of concatenating a k_t-frame window: fewer copies per frame).
A stream starting from zero state matches the clip from frame R - 1 on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FactorisedLayer(nn.Module):
    def __init__(
        self, in_channels: int, out_channels: int, spatial: int, temporal: int, padding: bool, momentum: float
    ):
        super().__init__()
        self.out_channels = out_channels
        self.temporal_kernel = temporal
        self.padding = spatial // 2 if padding else 0
        self.spatial = nn.Conv3d(
            in_channels,
            out_channels,
            (1, spatial, spatial),
            padding=(0, self.padding, self.padding),
            bias=False,
        )
        self.temporal = nn.Conv3d(out_channels, out_channels, (temporal, 1, 1), bias=False)
        self.bn = nn.BatchNorm3d(out_channels, momentum=momentum)

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        k = self.spatial.kernel_size[-1]
        return height + 2 * self.padding - k + 1, width + 2 * self.padding - k + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x [B, C_in, T, H, W] -> [B, C, T - k_t + 1, H', W']
        # Written with 2D convs (same weights as the Conv3d modules): onnxruntime runs Conv3d through a
        # generic im2col path ~3-5x slower than its 2D convs. Sizes are explicit (FIELD-NOTES trap 1).
        b, c_in, t, h, w = x.shape
        frames = x.transpose(1, 2).reshape(b * t, c_in, h, w)  # [B * T, C_in, H, W]
        s = F.conv2d(frames, self.spatial.weight[:, :, 0], padding=self.padding)  # [B * T, C, H', W']
        c, h_out, w_out = s.shape[1], s.shape[2], s.shape[3]
        s = s.reshape(b, t, c, h_out * w_out).transpose(1, 2)  # [B, C, T, H' W']
        y = F.conv2d(s, self.temporal.weight[..., 0])  # kernel (k_t, 1) over (T, H' W'): [B, C, T', H' W']
        y = y.reshape(b, c, t - self.temporal_kernel + 1, h_out, w_out)
        return F.elu(self.bn(y))  # the module (not F.batch_norm): SyncBatchNorm conversion must reach it

    def step(self, x: torch.Tensor, state: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        # x [B, C_in, H, W], state [B, (k_t - 1) * C, H', W'] -> y [B, C, H', W'], new state
        s = F.conv2d(x, self.spatial.weight[:, :, 0], padding=self.padding)  # [B, C, H', W']
        c, k = self.out_channels, self.temporal_kernel
        weight = self.temporal.weight  # [C, C, k, 1, 1], tap k - 1 sees the newest frame
        y = F.conv2d(s, weight[:, :, k - 1])  # the new frame's contribution
        if k > 1:
            assert state is not None
            # the k - 1 older frames: Conv3d taps 0..k-2 as one 1x1 conv over the frame-major state channels
            old = weight[:, :, : k - 1].permute(0, 2, 1, 3, 4).reshape(c, (k - 1) * c, 1, 1)
            y = y + F.conv2d(state, old)
            # drop the oldest frame, append the new one (no copy at all for k = 2)
            state = torch.cat([state[:, c:], s], dim=1) if k > 2 else s
        bn = self.bn
        y = F.batch_norm(y, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
        return F.elu(y), state


class FactorisedCore(nn.Module):
    """Stack of `FactorisedLayer`; ``receptive_field`` = R."""

    def __init__(
        self,
        in_channels: int,
        channels: tuple[int, ...],
        spatial_kernels: tuple[int, ...],
        temporal_kernels: tuple[int, ...],
        padding: bool,
        momentum: float,
    ):
        super().__init__()
        layers, c_in = [], in_channels
        for c, ks, kt in zip(channels, spatial_kernels, temporal_kernels, strict=True):
            layers.append(FactorisedLayer(c_in, c, ks, kt, padding, momentum))
            c_in = c
        self.layers = nn.ModuleList(layers)
        self.out_channels = c_in
        self.receptive_field = 1 + sum(k - 1 for k in temporal_kernels)

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        for layer in self.layers:
            height, width = layer.output_size(height, width)
        return height, width

    def state_shapes(self, height: int, width: int) -> list[tuple[int, int, int]]:
        """Shapes (without batch) of the streaming state, one per layer with k_t > 1."""
        shapes = []
        for layer in self.layers:
            height, width = layer.output_size(height, width)
            if layer.temporal_kernel > 1:
                shapes.append(((layer.temporal_kernel - 1) * layer.out_channels, height, width))
        return shapes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x [B, C_in, T, H, W] -> [B, C, T - R + 1, H', W']
        for layer in self.layers:
            x = layer(x)
        return x

    def step(self, x: torch.Tensor, states: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        # x [B, C_in, H, W] -> [B, C, H', W'] and the new states (same shapes as `states`)
        remaining, new_states = list(states), []
        for layer in self.layers:
            state = remaining.pop(0) if layer.temporal_kernel > 1 else None
            x, state = layer.step(x, state)
            if state is not None:
                new_states.append(state)
        return x, new_states
