"""Fixtures of the data tests: a tiny synthetic dataset (generated once per session) and a hand-made mouse."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.data.synthetic import SynthConfig, generate
from models.data.writer import MouseWriter

TINY = SynthConfig(
    mice=2, neurons=24, seed=7, train_trials=6, repeats=3, ood_repeats=2, none_trials=1, calibration_movies=3
)


@pytest.fixture(scope="session")
def tiny_synth(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("synth")
    manifest = generate(out, TINY, progress=False)
    return out, manifest


HANDMADE_TIERS = ["train", "train", "oracle", "live_test_main", "none", "train", "final_test_bonus"]
HANDMADE_LENGTHS = [10, 12, 12, 9, 12, 11, 12]


def handmade_arrays(rng: np.random.Generator, n_neurons: int = 5) -> list[dict[str, np.ndarray]]:
    trials = []
    for length in HANDMADE_LENGTHS:
        trials.append(
            {
                "video": rng.uniform(0, 255, (36, 64, length)).astype(np.float32),
                "responses": rng.gamma(0.3, 5.0, (n_neurons, length)).astype(np.float32),
                "behavior": rng.uniform(1, 60, (2, length)).astype(np.float32),
                "pupil_center": rng.normal(120, 5, (2, length)).astype(np.float32),
            }
        )
    return trials


@pytest.fixture
def handmade(tmp_path: Path) -> tuple:
    """A small mouse folder written by MouseWriter: (path, trial arrays, unit ids, coordinates, tiers, lengths)."""
    rng = np.random.default_rng(3)
    trials = handmade_arrays(rng)
    unit_ids = np.array([3, 8, 21, 22, 40])
    coords = rng.integers(-600, 400, (5, 3))
    path = tmp_path / "dynamic12345-1-2-Video-0123456789abcdef0123456789abcdef"
    with MouseWriter(path, unit_ids, coords, len(trials), padded_length=12) as writer:
        for i, (tier, arrays) in enumerate(zip(HANDMADE_TIERS, trials, strict=True)):
            writer.write_trial(i, tier, **arrays)
    return path, trials, unit_ids, coords, HANDMADE_TIERS, HANDMADE_LENGTHS
