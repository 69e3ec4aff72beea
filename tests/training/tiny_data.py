"""A tiny, quickly learnable dataset in the released layout, written with the data area's MouseWriter.

Each neuron looks at a 6x6 patch of the frame (position from its cortical coordinates); its rate is
exp(0.8 * temporally smoothed patch contrast + 0.3 * running) in raw units; responses are Poisson. A small
model learns this in a few epochs, so tests can check that training raises the oracle correlation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.benchmark import FRAME_HEIGHT, FRAME_WIDTH
from models.data.writer import MouseWriter

SESSIONS = ("dynamic00001-1-1-Video-" + "a" * 32, "dynamic00002-1-1-Video-" + "b" * 32)


def _trial(rng: np.random.Generator, centres: np.ndarray, frames: int) -> tuple[np.ndarray, ...]:
    # smooth random video: low-res noise upsampled, changing every 4 frames
    coarse = rng.normal(0, 1, (frames // 4 + 1, 9, 16))
    video = np.repeat(np.repeat(np.repeat(coarse, 4, axis=0)[:frames], 4, axis=1), 4, axis=2)
    behavior = np.stack([50 + 5 * rng.standard_normal(frames), np.abs(1.3 + rng.standard_normal(frames))])
    pupil = rng.normal(0, 1, (2, frames))
    drive = np.stack([video[:, r : r + 6, c : c + 6].mean(axis=(1, 2)) for r, c in centres])  # (N, T)
    smooth = np.zeros_like(drive)
    for lag, w in enumerate((0.5, 0.3, 0.2)):
        smooth[:, lag:] += w * drive[:, : frames - lag]
    rate = np.exp(0.8 * smooth + 0.3 * (behavior[1] - 1.3))
    responses = rng.poisson(rate).astype(np.float32)
    grey = np.clip(80 + 40 * video, 0, 255).astype(np.float32)
    return np.moveaxis(grey, 0, -1), responses, behavior.astype(np.float32), pupil.astype(np.float32)


def write_tiny_dataset(
    root: Path,
    n_mice: int = 2,
    n_neurons: int = 12,
    n_train: int = 16,
    n_oracle: int = 4,
    frames: int = 64,
    seed: int = 0,
) -> Path:
    """Write `n_mice` mouse folders under root/public; returns root/public."""
    rng = np.random.default_rng(seed)
    public = Path(root) / "public"
    for session in SESSIONS[:n_mice]:
        coords = rng.uniform(0, 500, (n_neurons, 3))
        rows = (coords[:, 1] / 500 * (FRAME_HEIGHT - 6)).astype(int)
        cols = (coords[:, 0] / 500 * (FRAME_WIDTH - 6)).astype(int)
        centres = np.stack([rows, cols], axis=1)
        tiers = ["train"] * n_train + ["oracle"] * n_oracle
        with MouseWriter(public / session, np.arange(n_neurons) * 3 + 7, coords, len(tiers), frames) as w:
            for i, tier in enumerate(tiers):
                video, responses, behavior, pupil = _trial(rng, centres, frames)
                w.write_trial(i, tier, video, responses, behavior, pupil)
    return public
