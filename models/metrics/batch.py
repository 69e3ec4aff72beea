"""Reference (batch) metric functions: direct transcriptions of the SENSORIUM 2023 definitions.

Every function takes per-trial arrays (N, T) in standardised units, neurons x frames, one mouse at a time,
and scores the frames chosen by `models.metrics.frames.align`. They hold all scored frames in memory; the
streaming accumulators (`models.metrics.streaming`) give the same numbers without doing so.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

from models.benchmark import CORRELATION_EPS, FEV_THRESHOLD
from models.metrics.frames import align, check_finite

# Total variance (standardised units, typically ~1) at or below which a neuron counts as constant: its FEV is
# NaN (so it never passes the FEV threshold) instead of a ratio of rounding errors.
MIN_TOTAL_VARIANCE = 1e-12


def corr(a: np.ndarray, b: np.ndarray, axis: int = -1, eps: float = CORRELATION_EPS) -> np.ndarray:
    """Pearson correlation along ``axis``: population std (ddof 0) with ``eps`` added to each std."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a = (a - a.mean(axis=axis, keepdims=True)) / (a.std(axis=axis, keepdims=True) + eps)
    b = (b - b.mean(axis=axis, keepdims=True)) / (b.std(axis=axis, keepdims=True) + eps)
    return (a * b).mean(axis=axis)


def _nan_to_zero(values: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(values), 0.0, values)


def scored_pairs(
    predictions: Sequence[np.ndarray], targets: Sequence[np.ndarray]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Aligned, validated scored frames of each trial (views, no copy)."""
    if len(predictions) != len(targets):
        raise ValueError(f"{len(predictions)} predictions for {len(targets)} targets")
    if not targets:
        raise ValueError("no trials to score")
    pairs = []
    n_neurons = None
    for i, (prediction, target) in enumerate(zip(predictions, targets, strict=True)):
        pred, targ = align(prediction, target, where=f"trial {i}")
        check_finite(pred, targ, where=f"trial {i}")
        if n_neurons is None:
            n_neurons = targ.shape[0]
        elif targ.shape[0] != n_neurons:
            raise ValueError(f"trial {i}: target has {targ.shape[0]} neurons, trial 0 has {n_neurons}")
        pairs.append((pred, targ))
    return pairs


def single_trial_correlation(predictions: Sequence[np.ndarray], targets: Sequence[np.ndarray]) -> np.ndarray:
    """Per-neuron correlation over the scored frames of all trials concatenated; (N,), NaN -> 0."""
    pairs = scored_pairs(predictions, targets)
    pred = np.concatenate([p for p, _ in pairs], axis=1)
    targ = np.concatenate([t for _, t in pairs], axis=1)
    return _nan_to_zero(corr(pred, targ, axis=1))


def _group(
    pairs: list[tuple[np.ndarray, np.ndarray]], stimulus_ids: Sequence[Hashable | None]
) -> dict[Hashable, list[tuple[np.ndarray, np.ndarray]]]:
    if len(stimulus_ids) != len(pairs):
        raise ValueError(f"{len(stimulus_ids)} stimulus ids for {len(pairs)} trials")
    groups: dict[Hashable, list[tuple[np.ndarray, np.ndarray]]] = {}
    for i, (pair, stimulus) in enumerate(zip(pairs, stimulus_ids, strict=True)):
        if stimulus is None:
            continue
        group = groups.setdefault(stimulus, [])
        if group and group[0][1].shape[1] != pair[1].shape[1]:
            raise ValueError(
                f"trial {i}: stimulus {stimulus!r} has {pair[1].shape[1]} scored frames here and "
                f"{group[0][1].shape[1]} in an earlier repeat; repeats of a stimulus must have the same length"
            )
        group.append(pair)
    return groups


def correlation_to_average(
    predictions: Sequence[np.ndarray],
    targets: Sequence[np.ndarray],
    stimulus_ids: Sequence[Hashable | None],
) -> np.ndarray:
    """Per-neuron correlation between repeat-averaged prediction and response over (stimulus, frame).

    Trials with stimulus id None are left out; every other stimulus counts, whatever its number of repeats.
    Returns (N,), NaN -> 0.
    """
    groups = _group(scored_pairs(predictions, targets), stimulus_ids)
    if not groups:
        raise ValueError("correlation to average needs at least one trial with a stimulus id")
    mean_pred = np.concatenate(
        [np.mean([p for p, _ in g], axis=0, dtype=np.float64) for g in groups.values()], axis=1
    )
    mean_targ = np.concatenate(
        [np.mean([t for _, t in g], axis=0, dtype=np.float64) for g in groups.values()], axis=1
    )
    return _nan_to_zero(corr(mean_pred, mean_targ, axis=1))


def fev_feve(
    predictions: Sequence[np.ndarray],
    targets: Sequence[np.ndarray],
    stimulus_ids: Sequence[Hashable | None],
) -> tuple[np.ndarray, np.ndarray]:
    """Per-neuron FEV and FEVE over the stimuli with at least two repeats; each (N,).

    Every (stimulus, scored frame) is one "image" of the static-image definition: total variance over all
    values (all repeats, stimuli and frames; ddof 1), noise variance = mean over images of the across-repeat
    variance (ddof 1), MSE = mean over all values. Neurons with (near) zero total variance get FEV NaN.
    """
    groups = _group(scored_pairs(predictions, targets), stimulus_ids)
    repeated = [g for g in groups.values() if len(g) >= 2]
    if not repeated:
        raise ValueError("FEVE needs at least one stimulus with two or more repeats")
    # per stimulus: (repeats, N, F)
    targ = [np.stack([t for _, t in g]).astype(np.float64) for g in repeated]
    pred = [np.stack([p for p, _ in g]).astype(np.float64) for g in repeated]
    all_targ = np.concatenate([t.transpose(1, 0, 2).reshape(t.shape[1], -1) for t in targ], axis=1)
    total_var = all_targ.var(axis=1, ddof=1)
    noise_var = np.concatenate([t.var(axis=0, ddof=1) for t in targ], axis=1).mean(axis=1)
    squared_error = np.concatenate(
        [((t - p) ** 2).transpose(1, 0, 2).reshape(t.shape[1], -1) for t, p in zip(targ, pred, strict=True)],
        axis=1,
    )
    mse = squared_error.mean(axis=1)
    return fev_from_variances(total_var, noise_var, mse)


def fev_from_variances(
    total_var: np.ndarray, noise_var: np.ndarray, mse: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """FEV and FEVE per neuron from total variance, noise variance and mean squared error."""
    with np.errstate(divide="ignore", invalid="ignore"):
        fev = np.where(total_var > MIN_TOTAL_VARIANCE, (total_var - noise_var) / total_var, np.nan)
        feve = 1.0 - (mse - noise_var) / (total_var - noise_var)
    return fev, feve


def mean_feve(fev: np.ndarray, feve: np.ndarray, threshold: float = FEV_THRESHOLD) -> float:
    """Mean FEVE over the neurons with FEV >= threshold; NaN when there is none."""
    keep = np.asarray(fev) >= threshold  # NaN FEV compares False
    return float(np.mean(np.asarray(feve)[keep])) if keep.any() else float("nan")
