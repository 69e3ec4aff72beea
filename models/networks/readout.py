"""Per-mouse Gaussian readout and shifter.

Each neuron n reads the core's feature map at one position p_n in grid units ([-1, 1]^2 spans the map; x is
the width axis) and weighs the C feature channels there: r_n = sum_c w_nc F[c, p_n] + b_n. Positions come
from the neurons' cortical coordinates through a small MLP (retinotopy is smooth over cortex), plus a shift
shared by all neurons that the shifter computes from the pupil centre. Training samples p_n ~ N(mu_n,
sigma_n) (bilinear `grid_sample`); evaluation uses the mean. The exported graphs use `sample_gather`: the same
bilinear sampling as four row gathers + weights (ONNX GridSample runs 2.5-3x slower in onnxruntime).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def normalise_coordinates(coordinates: np.ndarray) -> torch.Tensor:
    """Cortical x, y (micrometres, (N, 3) or (N, 2)) -> z-scored float32 (N, 2); robust to one neuron."""
    xy = np.asarray(coordinates, dtype=np.float64)[:, :2]
    if xy.ndim != 2 or xy.shape[0] == 0:
        raise ValueError(f"coordinates must be (N, 2 or 3) with N > 0, got shape {np.shape(coordinates)}")
    std = xy.std(axis=0)
    std[std == 0] = 1.0
    return torch.as_tensor((xy - xy.mean(axis=0)) / std, dtype=torch.float32)


class Shifter(nn.Module):
    """Pupil centre (normalised) [..., 2] -> readout shift [..., 2] in grid units, in (-1, 1)."""

    def __init__(self, layers: int, hidden: int):
        super().__init__()
        modules: list[nn.Module] = []
        width = 2
        for i in range(layers):
            out = 2 if i == layers - 1 else hidden
            modules += [nn.Linear(width, out), nn.Tanh()]
            width = out
        self.net = nn.Sequential(*modules)

    def forward(self, pupil_center: torch.Tensor) -> torch.Tensor:
        return self.net(pupil_center)


class GaussianReadout(nn.Module):
    def __init__(
        self, in_channels: int, coordinates: np.ndarray, position_hidden: int, init_sigma: float, bias: bool
    ):
        super().__init__()
        coords = normalise_coordinates(coordinates)  # [N, 2]
        n = coords.shape[0]
        self.n_neurons = n
        self.register_buffer("coordinates", coords)
        self.position_mlp = nn.Sequential(
            nn.Linear(2, position_hidden), nn.ELU(), nn.Linear(position_hidden, 2), nn.Tanh()
        )
        self.sigma = nn.Parameter(torch.full((n, 2), float(init_sigma)))
        self.features = nn.Parameter(torch.randn(n, in_channels) / in_channels**0.5)  # [N, C]
        self.bias = nn.Parameter(torch.zeros(n)) if bias else None

    def mean_positions(self) -> torch.Tensor:
        return self.position_mlp(self.coordinates)  # [N, 2] in (-1, 1)

    @torch.no_grad()
    def initialize_bias(self, mean_response: torch.Tensor | np.ndarray) -> None:
        """Start at the mean (standardised) response: bias = inverse of ELU + 1 at the mean."""
        if self.bias is None:
            return
        m = torch.as_tensor(mean_response, dtype=torch.float32).clamp_min(1e-3)
        self.bias.copy_(torch.where(m >= 1, m - 1, torch.log(m)))

    def fit_positions(self, target: torch.Tensor, weight: torch.Tensor, steps: int = 400) -> float:
        """Fit the coordinates -> position MLP to target positions [N, 2] (grid units), weights [N] >= 0,
        with a robust (Huber) loss: a smooth retinotopic map through noisy per-neuron estimates. Returns the
        weighted RMS distance left."""
        target = target.to(self.coordinates).clamp(-0.99, 0.99)
        weight = (weight / weight.sum().clamp_min(1e-12)).to(self.coordinates)
        optimizer = torch.optim.Adam(self.position_mlp.parameters(), lr=1e-2)
        for _ in range(steps):
            optimizer.zero_grad()
            loss = F.huber_loss(self.mean_positions(), target, reduction="none", delta=0.1).sum(-1)
            (loss * weight).sum().backward()
            optimizer.step()
        with torch.no_grad():
            err = (self.mean_positions() - target).pow(2).sum(-1)
            return float((err * weight).sum().sqrt())

    def positions(self, shift: torch.Tensor) -> torch.Tensor:
        # shift [M, 2] -> positions [M, N, 2], clamped to the feature map
        grid = self.mean_positions()[None] + shift[:, None]
        if self.training:
            grid = grid + torch.randn_like(grid) * self.sigma[None]
        return grid.clamp(-1.0, 1.0)

    def forward(self, features: torch.Tensor, shift: torch.Tensor, gather: bool = False) -> torch.Tensor:
        # features [M, C, H, W], shift [M, 2] -> [M, N] (before the output nonlinearity)
        grid = self.positions(shift)
        sample = self.sample_gather if gather else self.sample_grid
        out = sample(features, grid)
        return out if self.bias is None else out + self.bias

    def sample_grid(self, features: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        sampled = F.grid_sample(features, grid[:, None], mode="bilinear", align_corners=True)  # [M, C, 1, N]
        sampled = sampled.flatten(2)  # [M, C, N] (flatten, not squeeze: see FIELD-NOTES trap 4)
        return (sampled * self.features.t()[None]).sum(dim=1)

    def sample_gather(self, features: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        """Bilinear sampling with align_corners=True written as gathers (grid already inside [-1, 1])."""
        m, c, height, width = features.shape
        rows = features.permute(0, 2, 3, 1).flatten(0, 2)  # [M * H * W, C]
        x = (grid[..., 0] + 1) * (0.5 * (width - 1))  # [M, N], in [0, W - 1]
        y = (grid[..., 1] + 1) * (0.5 * (height - 1))
        x0 = x.floor().clamp(0, max(width - 2, 0))
        y0 = y.floor().clamp(0, max(height - 2, 0))
        wx, wy = (x - x0)[..., None], (y - y0)[..., None]  # [M, N, 1]
        base = torch.arange(m, device=features.device)[:, None] * (height * width)  # [M, 1]
        i00 = base + y0.long() * width + x0.long()  # [M, N] top-left corner, row index into `rows`
        dx = 1 if width > 1 else 0
        dy = width if height > 1 else 0
        corners = torch.stack([i00, i00 + dx, i00 + dy, i00 + dy + dx], dim=-1)  # [M, N, 4]
        weights = torch.cat([(1 - wx) * (1 - wy), wx * (1 - wy), (1 - wx) * wy, wx * wy], dim=-1)  # [M, N, 4]
        n = grid.shape[1]
        # One Gather of 4 M N rows, each corner's dot product with the neuron's weights as a batched MatMul
        # (measured ~2x faster in onnxruntime than Mul + ReduceSum), then the bilinear mix on [M, N, 4].
        sampled = rows.index_select(0, corners.flatten()).reshape(m, n, 4, c)  # [M, N, 4, C]
        dots = torch.matmul(sampled, self.features[:, :, None]).flatten(2)  # [M, N, 4]
        return (dots * weights).sum(dim=-1)
