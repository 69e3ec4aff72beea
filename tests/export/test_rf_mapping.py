"""RF mapping (models/networks/rf_mapping.py) and the readout position initialisation built on it."""

from __future__ import annotations

import numpy as np
import torch

from models.benchmark import FRAME_HEIGHT, FRAME_WIDTH
from models.config import get_config
from models.networks import MouseInfo, build_model
from models.networks.rf_mapping import contrast_energy, map_receptive_fields


def _trials(centres: np.ndarray, n_trials: int = 6, frames: int = 120, seed: int = 0):
    """Noise video; neuron n responds to the contrast energy at its centre ([x, y] raw px) 3 frames later."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_trials):
        video = rng.normal(size=(frames, FRAME_HEIGHT, FRAME_WIDTH)).astype(np.float32)
        blocks = rng.normal(size=(frames, 9, 16)) * 1.5  # contrast that varies over space and time
        video *= np.abs(np.kron(blocks, np.ones((1, 4, 4)))).astype(np.float32)
        energy = contrast_energy(video)  # [T, H / 2, W / 2], lag-summed
        drive = energy[:, (centres[:, 1] // 2).astype(int), (centres[:, 0] // 2).astype(int)]  # [T, N]
        responses = np.maximum(drive + rng.normal(scale=drive.std(), size=drive.shape), 0)
        out.append((video, responses.astype(np.float32)))
    return out


def test_map_receptive_fields_finds_centres():
    rng = np.random.default_rng(1)
    centres = np.stack([rng.uniform(4, FRAME_WIDTH - 4, 40), rng.uniform(4, FRAME_HEIGHT - 4, 40)], 1)
    found, strength = map_receptive_fields(_trials(centres))
    assert found.shape == (40, 2) and strength.shape == (40,)
    error = np.abs(found - centres).max(axis=1)
    assert np.median(error) <= 2.0, error  # raw pixels: within a mapping pixel
    assert (strength > 0).all()


def test_initialize_positions_places_readout_at_mapped_centres():
    rng = np.random.default_rng(2)
    n = 60
    coordinates = np.stack([rng.uniform(0, 600, n), rng.uniform(0, 600, n), rng.uniform(200, 400, n)], 1)
    # a smooth retinotopic map: x from cortical x, y from cortical y
    centres = np.stack(
        [8 + coordinates[:, 0] / 600 * (FRAME_WIDTH - 16), 6 + coordinates[:, 1] / 600 * (FRAME_HEIGHT - 12)],
        1,
    )
    torch.manual_seed(0)
    model = build_model(get_config("default"), {"m": MouseInfo(np.arange(n), coordinates)})
    rms = model.initialize_positions("m", _trials(centres, seed=3))
    assert rms < 0.2
    with torch.no_grad():
        grid = (model.readout("m").mean_positions() + model.shift("m", torch.zeros(1, 2))).numpy()
    h, w = model.feature_size
    pool = model.config.input_pool
    pixels = (grid + 1) / 2 * np.array([w - 1, h - 1]) * pool + (pool - 1) / 2  # back to raw pixels
    assert np.median(np.abs(pixels - centres).max(axis=1)) <= 3.0
