"""Analytic model cells with known answers for the in-silico tests, and a small released-data folder.

`GaborCells` is a `ResponseModel` in numpy: each cell applies a Gabor filter with a known preferred orientation
(the package's convention: the drift axis, y up), receptive-field centre and type to every frame:

    simple       softplus(gain * <g_cos, s_t>)                        (F1/F0 > 1 under a drifting grating)
    complex      gain * sqrt(<g_cos, s_t>^2 + <g_sin, s_t>^2)         (F1/F0 ~ 0)
    direction    softplus(gain * (<g_cos, s_t> - <g_sin, s_(t-d)>))   (prefers drift along +orientation)

with s_t = (frame - grey) / 55, so its answers are known in closed form.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.benchmark import FPS, FRAME_HEIGHT, FRAME_WIDTH
from models.data.synthetic import SynthConfig
from models.insilico.stimuli import GratingProtocol, Protocol, SparseNoiseProtocol

H, W = FRAME_HEIGHT, FRAME_WIDTH
KINDS = ("simple", "complex", "direction")

TINY_SYNTH = SynthConfig(
    mice=1, neurons=40, seed=5, train_trials=3, repeats=2, ood_repeats=1, none_trials=0, calibration_movies=2
)
# One spatial and temporal frequency (the analytic cells' and the generator's period of 14 px), short windows,
# fewer flashes: the full default protocol is exercised by the slow tests.
QUICK = Protocol(
    gratings=GratingProtocol(
        spatial_frequencies=(1 / 14,), temporal_frequencies=(2.0,), settle_frames=10, window_frames=30
    ),
    sparse_noise=SparseNoiseProtocol(flashes=1000),
)


@dataclass(frozen=True)
class Cell:
    orientation: float  # degrees, drift axis; for "direction" cells the preferred direction
    centre: tuple[float, float]  # (row, col) screen pixels
    kind: str = "simple"
    sigma: float = 4.0
    period: float = 14.0  # pixels


CELLS = [  # one of each kind, one field in a corner
    Cell(30.0, (12.0, 20.0), "simple"),
    Cell(112.5, (25.0, 45.0), "simple"),
    Cell(67.5, (18.0, 32.0), "complex"),
    Cell(157.5, (8.0, 50.0), "complex"),
    Cell(200.0, (20.0, 12.0), "direction"),
    Cell(90.0, (2.0, 60.0), "simple"),  # in a corner: its field is cut by two edges
]


def gabor_pair(cell: Cell) -> tuple[np.ndarray, np.ndarray]:
    """(H*W,) cosine and sine Gabor filters, unit norm."""
    rows, cols = np.mgrid[0:H, 0:W].astype(np.float64)
    r0, c0 = cell.centre
    theta = np.deg2rad(cell.orientation)
    u = (cols - c0) * np.cos(theta) - (rows - r0) * np.sin(theta)
    env = np.exp(-((rows - r0) ** 2 + (cols - c0) ** 2) / (2 * cell.sigma**2))
    g_cos, g_sin = env * np.cos(2 * np.pi * u / cell.period), env * np.sin(2 * np.pi * u / cell.period)
    return g_cos.ravel() / np.linalg.norm(g_cos), g_sin.ravel() / np.linalg.norm(g_sin)


class GaborCells:
    """`models.insilico.experiment.ResponseModel` of analytic cells."""

    def __init__(self, cells: list[Cell], grey: float = 80.0, gain: float = 0.4, delay: int = 4) -> None:
        self.cells = cells
        self.unit_ids = np.arange(100, 100 + len(cells), dtype=np.int64)
        self.grey, self.gain, self.delay = grey, gain, delay
        self.warmup = delay
        pairs = [gabor_pair(c) for c in cells]
        self.g_cos = np.stack([p[0] for p in pairs], axis=1)  # (H*W, N)
        self.g_sin = np.stack([p[1] for p in pairs], axis=1)
        self.kind = np.array([c.kind for c in cells])

    def predict(self, video: np.ndarray, behavior: np.ndarray, pupil_center: np.ndarray) -> np.ndarray:
        b, t = video.shape[:2]
        s = ((video.reshape(b, t, -1).astype(np.float64) - self.grey) / 55.0) @ np.stack(
            [self.g_cos, self.g_sin]
        ).transpose(1, 0, 2).reshape(H * W, -1)
        c, q = s[..., : len(self.cells)], s[..., len(self.cells) :]  # (B, T, N)
        d = self.delay
        simple = np.logaddexp(0.0, self.gain * c)
        energy = self.gain * np.sqrt(c**2 + q**2)
        shifted = np.concatenate([np.zeros_like(q[:, :d]), q[:, :-d]], axis=1)
        direction = np.logaddexp(0.0, self.gain * (c - shifted))
        out = np.where(self.kind == "simple", simple, np.where(self.kind == "complex", energy, direction))
        return out[:, self.warmup :].astype(np.float32)


def quarter_period_delay(temporal_frequency: float) -> int:
    """Frames of a quarter cycle at `temporal_frequency` (Hz): the delay that makes a direction cell."""
    return round(FPS / temporal_frequency / 4)


def write_public(root: Path, mouse: str, n: int, seed: int = 0) -> Path:
    """DIR/public/<mouse> with a few grey-ish train trials: its statistics give the training means."""
    from models.data.writer import MouseWriter

    rng = np.random.default_rng(seed)
    path = root / "public" / mouse
    frames = 40
    with MouseWriter(path, np.arange(1000, 1000 + n), rng.uniform(0, 600, (n, 3)), 3, frames) as writer:
        for i in range(3):
            writer.write_trial(
                i,
                "train",
                video=np.clip(rng.normal(80, 40, (H, W, frames)), 0, 255).astype(np.float32),
                responses=rng.gamma(1.0, 1.0, (n, frames)).astype(np.float32),
                behavior=np.abs(rng.normal([[20.0], [2.0]], 1.0, (2, frames))).astype(np.float32),
                pupil_center=rng.normal(30, 1, (2, frames)).astype(np.float32),
            )
    return root / "public"
