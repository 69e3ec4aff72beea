"""Stimuli of the in-silico experiments at the benchmark's frame size (36 x 64) and frame rate (30 Hz).

Screen convention (every angle and position the package reports): pixel (row i, col j) is centred at (i, j);
x = j points right, y = -i points up. A grating's *direction* is the direction it drifts in, in degrees
counter-clockwise from rightward (0 = right, 90 = up); its *orientation* is the drift axis, direction mod 180
(the bars lie perpendicular to it).

Videos are time-major float32 grey levels in 0..255 (the raw pixels a served model takes).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from models.benchmark import FPS, FRAME_HEIGHT, FRAME_WIDTH

H, W = FRAME_HEIGHT, FRAME_WIDTH
DEFAULT_GREY = 80.0  # mean grey level of the released videos, when a model's training mean is not known


@dataclass(frozen=True)
class Background:
    """What is held constant during an experiment: the grey level and the behaviour, at the training mean."""

    grey: float = DEFAULT_GREY
    behavior: tuple[float, float] = (50.0, 1.3)  # pupil dilation, running speed (released units)
    pupil_center: tuple[float, float] = (120.0, 120.0)  # eye position x, y (released units)

    def traces(self, batch: int, frames: int) -> tuple[np.ndarray, np.ndarray]:
        """behavior and pupil_center (batch, frames, 2) float32, constant."""
        b = np.broadcast_to(np.asarray(self.behavior, np.float32), (batch, frames, 2)).copy()
        p = np.broadcast_to(np.asarray(self.pupil_center, np.float32), (batch, frames, 2)).copy()
        return b, p

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_statistics(cls, stats: dict[str, dict[str, np.ndarray]]) -> Background:
        """The means of a session's released statistics (`MouseFolder.statistics`), time axis averaged."""
        from models.data import layout
        from models.data.normalisation import collapse_time

        behavior = collapse_time(stats[layout.BEHAVIOR]["mean"], (2,))
        pupil = collapse_time(stats[layout.PUPIL_CENTER]["mean"], (2,))
        grey = float(np.nanmean(stats[layout.VIDEOS]["mean"]))
        return cls(grey, (float(behavior[0]), float(behavior[1])), (float(pupil[0]), float(pupil[1])))


def _wave(
    direction_deg: float,
    spatial_frequency: float,
    temporal_frequency: float,
    frames: int,
    centre: tuple[float, float],
    phase: float,
) -> np.ndarray:
    """(frames, H, W) cos of a plane wave drifting toward `direction_deg`, phase `phase` at `centre` (row, col)
    at frame 0; `spatial_frequency` in cycles per pixel, `temporal_frequency` in Hz."""
    rows, cols = np.mgrid[0:H, 0:W].astype(np.float64)
    theta = np.deg2rad(direction_deg)
    u = (cols - centre[1]) * np.cos(theta) - (rows - centre[0]) * np.sin(theta)  # along the drift, y up
    t = np.arange(frames, dtype=np.float64)[:, None, None] / FPS
    return np.cos(2 * np.pi * (spatial_frequency * u[None] - temporal_frequency * t) + phase)


def drifting_grating(
    direction_deg: float,
    spatial_frequency: float,
    temporal_frequency: float,
    frames: int,
    grey: float = DEFAULT_GREY,
    contrast: float = 1.0,
    phase: float = 0.0,
) -> np.ndarray:
    """Full-field sinusoidal grating (frames, H, W) drifting toward `direction_deg`; amplitude `contrast` x the
    largest that stays inside 0..255; `phase` at the screen centre at frame 0."""
    wave = _wave(
        direction_deg, spatial_frequency, temporal_frequency, frames, ((H - 1) / 2, (W - 1) / 2), phase
    )
    amplitude = contrast * min(grey, 255.0 - grey)
    return np.clip(grey + amplitude * wave, 0.0, 255.0).astype(np.float32)


@dataclass(frozen=True)
class GratingProtocol:
    """Drifting gratings: every direction x spatial frequency x temporal frequency, one clip each.

    A clip is `settle_frames` of grating (the response reaches its steady state) and then `window_frames` over
    which the response is averaged (F0) and its modulation at the temporal frequency measured (F1). The window
    holds whole cycles of every temporal frequency by default (60 frames = 2 s: 2, 4 and 8 cycles).
    """

    directions: int = 16
    spatial_frequencies: tuple[float, ...] = (1 / 28, 1 / 14, 1 / 7)  # cycles per pixel
    temporal_frequencies: tuple[float, ...] = (1.0, 2.0, 4.0)  # Hz
    contrast: float = 1.0
    settle_frames: int = 15
    window_frames: int = 60

    @property
    def direction_deg(self) -> np.ndarray:
        return np.arange(self.directions) * 360.0 / self.directions

    @property
    def shape(self) -> tuple[int, int, int]:
        """(directions, spatial frequencies, temporal frequencies)."""
        return self.directions, len(self.spatial_frequencies), len(self.temporal_frequencies)

    @property
    def frames(self) -> int:
        return self.settle_frames + self.window_frames

    def conditions(self) -> list[tuple[int, int, int]]:
        """(direction, sf, tf) indices in the order the clips are run."""
        d, s, f = self.shape
        return [(i, j, k) for i in range(d) for j in range(s) for k in range(f)]

    def clip(self, condition: tuple[int, int, int], warmup: int, grey: float) -> np.ndarray:
        """(warmup + frames, H, W): the grating runs through the model's warm-up frames too."""
        i, j, k = condition
        return drifting_grating(
            float(self.direction_deg[i]),
            self.spatial_frequencies[j],
            self.temporal_frequencies[k],
            warmup + self.frames,
            grey,
            self.contrast,
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "direction_deg": self.direction_deg.tolist()}


def gabor_patch(
    centre: tuple[float, float],
    direction_deg: float,
    spatial_frequency: float,
    temporal_frequency: float,
    frames: int,
    sigma: float,
    phase: float = 0.0,
) -> np.ndarray:
    """(frames, H, W) drifting Gabor patch around 0, peak amplitude 1: the plane wave of `drifting_grating` in a
    Gaussian window of `sigma` pixels centred at `centre` = (row, col)."""
    rows, cols = np.mgrid[0:H, 0:W].astype(np.float64)
    window = np.exp(-((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2) / (2 * sigma**2))
    wave = _wave(direction_deg, spatial_frequency, temporal_frequency, frames, centre, phase)
    return (window[None] * wave).astype(np.float32)


@dataclass(frozen=True)
class SparseNoiseProtocol:
    """Sparse noise of drifting Gabor patches, for receptive-field maps.

    Every `flash_frames` frames, `patches` Gabor patches (Gaussian window `sigma` px, `spatial_frequency`, one of
    `directions` drift directions, random start phase) appear at random positions of a grid of pitch `stride` and
    drift through one whole cycle (temporal frequency = 30 Hz / flash_frames), on grey at `contrast` x the largest
    amplitude inside 0..255. A neuron's map at a position is its response summed over `response_frames` frames
    from the onsets of patches there, averaged over those patches, minus the same sum averaged over all frames
    (reverse correlation). A whole drift cycle makes each patch's drive independent of a simple cell's spatial
    phase, so the map is centred on the receptive field's envelope whatever the cell's type, orientation or
    phase (small black/white squares are not: a thresholded simple cell answers mostly in its strongest
    subfield, which lies up to a quarter period off the centre).
    """

    sigma: float = 3.0
    spatial_frequency: float = 1 / 12
    directions: int = 8
    stride: int = 4
    patches: int = 6
    flash_frames: int = 8
    response_frames: int = 16
    contrast: float = 1.0
    flashes: int = 2000
    clip_frames: int = 300  # frames per clip after the model's warm-up
    seed: int = 0

    @property
    def grid(self) -> tuple[int, int]:
        rows, cols = self.centres()
        return len(rows), len(cols)

    @property
    def positions(self) -> int:
        r, c = self.grid
        return r * c

    def centres(self) -> tuple[np.ndarray, np.ndarray]:
        """Rows (R,) and columns (C,) of the patch centres on the screen, in pixels."""
        first = (self.stride - 1) / 2
        return np.arange(first, H, self.stride, dtype=np.float64), np.arange(
            first, W, self.stride, dtype=np.float64
        )

    @property
    def temporal_frequency(self) -> float:
        return FPS / self.flash_frames

    @property
    def flashes_per_clip(self) -> int:
        return max((self.clip_frames - self.response_frames) // self.flash_frames + 1, 1)

    @property
    def clips(self) -> int:
        return -(-self.flashes // self.flashes_per_clip)

    def clip(self, index: int, warmup: int, grey: float) -> tuple[np.ndarray, np.ndarray]:
        """Clip `index`: video (warmup + clip_frames, H, W) and its scored events (E, 2) int64 rows
        [onset frame after the warm-up, position index]. Patches also run through the warm-up and the tail (every
        scored window sees the same stimulus statistics); only those whose whole response window lies in the
        clip are scored."""
        rng = np.random.default_rng([self.seed, index])
        frames = warmup + self.clip_frames
        rows, cols = self.centres()
        amplitude = self.contrast * min(grey, 255.0 - grey)
        video = np.zeros((frames, H, W), dtype=np.float32)
        events = []
        for start in range(0, frames, self.flash_frames):
            n = min(self.flash_frames, frames - start)
            for pos in rng.choice(len(rows) * len(cols), size=self.patches, replace=False).tolist():
                direction = 360.0 * int(rng.integers(self.directions)) / self.directions
                centre = (rows[pos // len(cols)], cols[pos % len(cols)])
                video[start : start + n] += gabor_patch(
                    centre,
                    direction,
                    self.spatial_frequency,
                    self.temporal_frequency,
                    n,
                    self.sigma,
                    float(rng.uniform(0, 2 * np.pi)),
                )
                onset = start - warmup
                if 0 <= onset <= self.clip_frames - self.response_frames:
                    events.append((onset, pos))
        video = np.clip(grey + amplitude * video, 0.0, 255.0)
        return video.astype(np.float32), np.asarray(events, dtype=np.int64).reshape(-1, 2)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "temporal_frequency": self.temporal_frequency}


@dataclass(frozen=True)
class Protocol:
    """Both experiments of `sensorium-serve insilico tuning`."""

    gratings: GratingProtocol = field(default_factory=GratingProtocol)
    sparse_noise: SparseNoiseProtocol = field(default_factory=SparseNoiseProtocol)

    def to_dict(self) -> dict[str, Any]:
        return {"gratings": self.gratings.to_dict(), "sparse_noise": self.sparse_noise.to_dict()}
