"""Helpers of the scoring tests (imported by conftest.py and the test modules; tests/scoring is put on
sys.path by conftest.py). See conftest.py for the dataset."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from pathlib import Path

import grpc
import grpc.aio
import numpy as np

from client.scoring import ScoringClient
from client.submission import TrialPrediction
from models.benchmark import DOTS_FRAMES, MOVIE_FRAMES, STIMULUS_FAMILIES, test_tier
from models.data.truth import TruthWriter
from models.data.writer import MouseWriter
from server.config import Settings
from server.scoring import register
from server.scoring.db import ScoreStore
from server.scoring.ground_truth import GroundTruth

MOUSE_A = "dynamic29515-10-12-Video-9b4f6a1a067fe51e15306b9628efea20"
MOUSE_B = "dynamic29623-4-9-Video-fc8b2b1a4b2f1c1d3e5a7b9c0d2e4f60"
NEURONS = {MOUSE_A: 23, MOUSE_B: 17}
FAMILY_ID = {name: fid for fid, name in STIMULUS_FAMILIES.items()}

# (tier, family, number of stimuli, repeats per stimulus)
PLAN = (
    ("train", "natural_movie", 3, 1),
    ("oracle", "natural_movie", 1, 2),
    ("live_test_main", "natural_movie", 2, 3),
    ("final_test_main", "natural_movie", 2, 3),
    ("live_test_bonus", "directional_pink_noise", 2, 2),
    ("final_test_bonus", "gaussian_dots", 2, 2),
    ("final_test_bonus", "drifting_gabor", 2, 2),
    ("none", "natural_movie", 1, 1),
)


@dataclass(frozen=True)
class PlannedTrial:
    index: int
    tier: str
    family: str
    video_id: int

    @property
    def frames(self) -> int:
        return DOTS_FRAMES if self.family == "gaussian_dots" else MOVIE_FRAMES


def plan_trials(seed: int) -> list[PlannedTrial]:
    """The trial plan of a mouse, in shuffled file order (file names carry no temporal order)."""
    entries = []
    video = 0
    for tier, family, stimuli, repeats in PLAN:
        for _ in range(stimuli):
            entries += [(tier, family, video)] * repeats
            video += 1
    order = np.random.default_rng(seed).permutation(len(entries))
    return [PlannedTrial(i, *entries[j]) for i, j in enumerate(order)]


def _rates(rng: np.random.Generator, n: int, frames: int, scale: np.ndarray) -> np.ndarray:
    """Positive, smoothly varying noise-free rates (N, T), raw units."""
    z = rng.standard_normal((n, frames + 20))
    kernel = np.hanning(21) / np.hanning(21).sum()
    smooth = np.stack([np.convolve(row, kernel, mode="valid") for row in z])[:, :frames] * 4.0
    return (scale[:, None] * np.exp(0.9 * smooth)).astype(np.float32)


def write_mouse(root: Path, mouse: str, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    unit_ids = rng.choice(np.arange(1000, 90000), size=n, replace=False).astype(np.int64)
    coords = rng.uniform(0, 600, size=(n, 3))
    scale = 10 ** rng.uniform(-0.5, 0.5, size=n)  # per-neuron response scales over a decade
    trials = plan_trials(seed)
    signals: dict[int, np.ndarray] = {}
    public = MouseWriter(root / "public" / mouse, unit_ids, coords, len(trials), DOTS_FRAMES)
    truth = TruthWriter(root / "truth" / mouse, unit_ids, len(trials))
    for t in trials:
        if t.video_id not in signals:
            signals[t.video_id] = _rates(rng, n, t.frames, scale)
        rates = signals[t.video_id]
        responses = (rates * rng.gamma(2.0, 0.5, size=rates.shape)).astype(np.float32)
        frames = t.frames
        public.write_trial(
            t.index,
            t.tier,
            video=np.full((36, 64, frames), 80.0, np.float32),
            responses=responses,
            behavior=np.abs(rng.normal(5, 1, (2, frames))).astype(np.float32),
            pupil_center=rng.normal(30, 2, (2, frames)).astype(np.float32),
        )
        truth.write_trial(t.index, t.tier, FAMILY_ID[t.family], t.video_id, responses=responses, rates=rates)
    public.close()
    truth.close()


def tier_of(track: str, tier: str) -> str:
    return test_tier(track, tier)


def truth_submission(
    truth: GroundTruth, track: str, tier: str, kind: str = "responses", frames: str = "after_skip"
) -> list[TrialPrediction]:
    """A complete submission built from the truth: ``kind`` responses | rates; ``frames`` after_skip (the
    official format: T - 50 frames) or all (every frame of the trial)."""
    out = []
    name = tier_of(track, tier)
    for mouse in truth.mice():
        for trial, info in sorted(truth.trials(mouse).items()):
            if info.tier != name:
                continue
            array = truth.responses(mouse, trial) if kind == "responses" else truth.rates(mouse, trial)  # type: ignore[attr-defined]
            if frames == "after_skip":
                array = array[:, 50:]
            out.append(TrialPrediction(mouse, trial, np.ascontiguousarray(array), truth.unit_ids(mouse)))
    return out


class ServerThread:
    """A grpc.aio server with only the scoring service, running its event loop in a background thread."""

    def __init__(self, settings: Settings, truth: GroundTruth | None = None) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="scoring-test-server", daemon=True)
        self.thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._start(truth), self.loop).result(timeout=60)
        self.target = f"127.0.0.1:{self.port}"

    async def _start(self, truth: GroundTruth | None) -> int:
        options = [
            ("grpc.max_receive_message_length", self.settings.max_message_bytes),
            ("grpc.max_send_message_length", self.settings.max_message_bytes),
        ]
        self.server = grpc.aio.server(options=options)
        register(self.server, self.settings, truth=truth)
        port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()
        return port

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(grace=None), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)
        self.loop.close()


@dataclass
class Scoring:
    """A running scoring server, a client of it, and direct access to its database."""

    server: ServerThread
    client: ScoringClient
    store: ScoreStore
    db_url: str

    def rows(self) -> dict[str, int]:
        return self.store.row_counts()
