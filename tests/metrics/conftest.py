"""Fixtures for the metric tests: small synthetic tiers with repeats, families and variable trial lengths."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pytest

from models.metrics import ScoredTrial, accepted_prediction_frames


def make_tier(
    rng: np.random.Generator,
    *,
    mice: dict[str, int] | None = None,
    stimuli: Sequence[tuple[str | None, int, int]] = (("natural_movie", 300, 4), ("natural_movie", 300, 3)),
    noise: float = 1.0,
    offset: float = 0.0,
    prediction_noise: float = 0.5,
    singles: int = 0,
) -> list[ScoredTrial]:
    """Trials of each mouse: per stimulus (family, frames, repeats) a shared signal + independent noise.

    Predictions are the signal plus their own noise, with a random accepted frame count per trial;
    ``singles`` extra trials per mouse have no stimulus id. Order: stimulus by stimulus (shuffle yourself).
    """
    mice = mice if mice is not None else {"mouseA": 12, "mouseB": 7}
    trials = []
    for mouse, n_neurons in mice.items():
        gain = rng.uniform(0.2, 2.0, size=(n_neurons, 1))
        for k, (family, n_frames, repeats) in enumerate(stimuli):
            signal = gain * rng.normal(size=(n_neurons, n_frames)) + offset
            for _ in range(repeats):
                trials.append(_trial(rng, mouse, signal, noise, prediction_noise, f"stim{k}", family))
        for _ in range(singles):
            signal = gain * rng.normal(size=(n_neurons, 300)) + offset
            trials.append(_trial(rng, mouse, signal, noise, prediction_noise, None, None))
    return trials


def _trial(
    rng: np.random.Generator,
    mouse: str,
    signal: np.ndarray,
    noise: float,
    prediction_noise: float,
    stimulus: str | None,
    family: str | None,
) -> ScoredTrial:
    n_neurons, n_frames = signal.shape
    target = (signal + noise * rng.normal(size=signal.shape)).astype(np.float32)
    n_pred = int(rng.choice(sorted(accepted_prediction_frames(n_frames))))
    prediction = signal[:, n_frames - n_pred :] + prediction_noise * rng.normal(size=(n_neurons, n_pred))
    return ScoredTrial(mouse, prediction.astype(np.float32), target, stimulus, family)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20230)


@pytest.fixture
def tier_factory() -> Callable[..., list[ScoredTrial]]:
    """`make_tier` (a pure function of its rng, so safe to use inside hypothesis tests)."""
    return make_tier
