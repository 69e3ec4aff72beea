"""Behaviour traces in released units: pupil dilation, running speed (bouts) and pupil centre (saccades)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.benchmark import FPS


@dataclass(frozen=True)
class BehaviourScales:
    """Per-mouse targets in released units (defaults: typical values of the real metadata)."""

    pupil_mean: float = 50.0
    pupil_std: float = 14.0
    running_mean: float = 1.3
    pupil_center_mean: tuple[float, float] = (120.0, 120.0)
    pupil_center_std: tuple[float, float] = (5.0, 6.5)


def _lowpass(x: np.ndarray, tau: float) -> np.ndarray:
    """Causal exponential smoothing with time constant `tau` frames."""
    a = np.exp(-1.0 / tau)
    out = np.empty_like(x)
    acc = x[0]
    for i, v in enumerate(x):
        acc = a * acc + (1 - a) * v
        out[i] = acc
    return out


def _ou(rng: np.random.Generator, t: int, tau: float) -> np.ndarray:
    """Stationary unit-variance Ornstein-Uhlenbeck (AR(1)) noise with time constant `tau` frames."""
    a = np.exp(-1.0 / tau)
    eps = rng.standard_normal(t) * np.sqrt(1 - a * a)
    out = np.empty(t)
    acc = rng.standard_normal()
    for i in range(t):
        acc = a * acc + eps[i]
        out[i] = acc
    return out


def behaviour_traces(
    rng: np.random.Generator, t: int, scales: BehaviourScales
) -> tuple[np.ndarray, np.ndarray]:
    """behavior (2, t) = [pupil dilation, running speed] and pupil_center (2, t) = [x, y], float32."""
    # Running: a two-state (still / bout) Markov chain; speed in bouts is a smooth positive process.
    frac = 0.35  # fraction of time in bouts
    p_stop = 1.0 / (4 * FPS)
    p_start = p_stop * frac / (1 - frac)
    state = np.empty(t, dtype=bool)
    s = rng.random() < frac
    flips = rng.random(t)
    for i in range(t):
        s = (flips[i] >= p_stop) if s else (flips[i] < p_start)
        state[i] = s
    speed_level = scales.running_mean / frac * rng.lognormal(-0.08, 0.4)  # mean 1 x the bout speed
    jitter = np.exp(0.35 * _ou(rng, t, 10.0) - 0.35**2 / 2)  # mean 1
    running = _lowpass(state * speed_level * jitter, 6.0)
    running = np.maximum(running + 0.02 * np.abs(rng.standard_normal(t)), 0.0)
    # Pupil dilation: trial baseline + slow fluctuation + running-coupled dilation lagging by ~1 s.
    base = scales.pupil_mean + 0.6 * scales.pupil_std * rng.standard_normal()
    slow = _ou(rng, t, 90.0) * 0.5 * scales.pupil_std
    coupled = _lowpass(_lowpass(running / max(speed_level, 1e-6), 20.0), 15.0) * 0.8 * scales.pupil_std
    pupil = np.maximum(base + slow + coupled - 0.8 * scales.pupil_std * frac, 5.0)  # coupled has mean ~frac
    # Pupil centre: fixations with small drift, saccades (~0.5 per second) that jump and relax slowly.
    mean = np.asarray(scales.pupil_center_mean)[:, None]
    std = np.asarray(scales.pupil_center_std)[:, None]
    jumps = np.zeros((2, t))
    saccade = rng.random(t) < 0.5 / FPS
    jumps[:, saccade] = rng.standard_normal((2, int(saccade.sum()))) * 0.9
    position = np.cumsum(jumps, axis=1) + 0.5 * rng.standard_normal((2, 1))
    position -= np.stack([_lowpass(position[k], 90.0) for k in range(2)]) * 0.5  # slow return to centre
    drift = np.stack([_ou(rng, t, 8.0) for _ in range(2)]) * 0.15
    pupil_center = mean + std * (position + drift)
    behavior = np.stack([pupil, running]).astype(np.float32)
    return behavior, pupil_center.astype(np.float32)
