"""Receptive-field mapping from data, to initialise the readout positions before training.

A Gaussian readout only receives gradients from the feature map near its current position, so positions that
start far from a neuron's receptive field (RF) rarely find it: the network then explains the behavioural gain
and little of the visual drive (docs/benchmarks/training.md). Classical RF mapping fixes the start: correlate
each neuron's response with the local contrast energy of the video a few frames earlier, at every location, and
take the peak. Single-neuron estimates are noisy (about one RF radius off on the default synthetic data);
`GaussianReadout.fit_positions` then fits the smooth coordinates -> position map to all of them, weighted by
how clear each peak is, so the retinotopic map averages the noise away.

Works on normalised video and standardised responses (any mouse, real or synthetic); torch is used only for
the separable blurs.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
import torch.nn.functional as F

MAPPING_POOL = 2  # map at half resolution (18 x 32 for SENSORIUM frames): RFs span many pixels anyway
SURROUND_SIGMA = 3.0  # mapping pixels: video minus this blur keeps V1-like spatial frequencies
ENERGY_SIGMA = 1.5  # mapping pixels: pooling of the squared band-passed video (local contrast energy)
LAGS = range(1, 8)  # frames (33-233 ms at 30 Hz): the response follows the stimulus within this window
SKIP = 10  # first frames of a trial left out (lags, and the onset transient)


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of [T, H, W] with replicated borders."""
    r = max(int(3 * sigma), 1)
    k = torch.exp(-(torch.arange(-r, r + 1, dtype=x.dtype) ** 2) / (2 * sigma**2))
    k = k / k.sum()
    y = F.conv2d(F.pad(x[:, None], (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    y = F.conv2d(F.pad(y, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))
    return y[:, 0]


def contrast_energy(video: np.ndarray) -> np.ndarray:
    """Normalised video [T, H, W] -> lag-summed local contrast energy [T, H / 2, W / 2] (float64)."""
    v = F.avg_pool2d(torch.as_tensor(video, dtype=torch.float32), MAPPING_POOL)
    band = v - _blur(v, SURROUND_SIGMA)
    energy = _blur(band**2, ENERGY_SIGMA).double().numpy()
    out = np.zeros_like(energy)
    for lag in LAGS:
        out[lag:] += energy[:-lag]
    return out


def map_receptive_fields(trials: Iterable[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """RF centres from (video [T, H, W] normalised, responses [T, N] standardised) trials.

    Returns centres (N, 2) as [x, y] in raw frame pixels (pixel centres at 0, 1, ..., W - 1) and each
    neuron's peak correlation (N,), a measure of how clear its estimate is.
    """
    sxx = sxy = syy = None
    sx = sy = None
    frames, shape = 0, None
    for video, responses in trials:
        if len(video) <= SKIP:
            continue
        e = contrast_energy(video)[SKIP:]
        shape = e.shape[1:]
        x = e.reshape(len(e), -1)  # [T, P]
        y = np.asarray(responses, dtype=np.float64)[SKIP:]  # [T, N]
        if sxy is None:
            sx, sy = x.sum(0), y.sum(0)
            sxx, syy, sxy = (x**2).sum(0), (y**2).sum(0), y.T @ x
        else:
            sx, sy = sx + x.sum(0), sy + y.sum(0)
            sxx, syy, sxy = sxx + (x**2).sum(0), syy + (y**2).sum(0), sxy + y.T @ x
        frames += len(e)
    if sxy is None or shape is None:
        raise ValueError(f"RF mapping needs at least one trial longer than {SKIP} frames")
    cov = sxy / frames - np.outer(sy, sx) / frames**2  # [N, P]
    var_x = np.maximum(sxx / frames - (sx / frames) ** 2, 1e-12)
    var_y = np.maximum(syy / frames - (sy / frames) ** 2, 1e-12)
    corr = cov / np.sqrt(np.outer(var_y, var_x))
    peak = corr.argmax(axis=1)
    rows, cols = np.divmod(peak, shape[1])
    half = (MAPPING_POOL - 1) / 2  # centre of a pooled pixel in raw pixels
    centres = np.stack([cols * MAPPING_POOL + half, rows * MAPPING_POOL + half], axis=1)
    return centres.astype(np.float32), corr.max(axis=1).astype(np.float32)
