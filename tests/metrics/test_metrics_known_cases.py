"""Batch metrics on cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from models.metrics import (
    corr,
    correlation_to_average,
    fev_feve,
    mean_feve,
    single_trial_correlation,
)


def _repeated(
    rng: np.random.Generator, n_neurons: int, n_stimuli: int, repeats: int, signal: float, noise: float
) -> tuple[list[np.ndarray], list[np.ndarray], list[int]]:
    """Targets = per-stimulus signal + noise; returns (noise-free signals per trial, targets, stimulus ids)."""
    signals, targets, ids = [], [], []
    for s in range(n_stimuli):
        clean = signal * rng.normal(size=(n_neurons, 300))
        for _ in range(repeats):
            signals.append(clean)
            targets.append(clean + noise * rng.normal(size=clean.shape))
            ids.append(s)
    return signals, targets, ids


def test_corr_matches_numpy(rng: np.random.Generator) -> None:
    a, b = rng.normal(size=(2, 4, 200))
    expected = [np.corrcoef(a[i], b[i])[0, 1] for i in range(4)]
    np.testing.assert_allclose(corr(a, b, axis=1), expected, rtol=1e-7)


def test_prediction_equal_to_truth_scores_one(rng: np.random.Generator) -> None:
    _, targets, ids = _repeated(rng, 8, 3, 4, 1.0, 1.0)
    np.testing.assert_allclose(single_trial_correlation(targets, targets), 1.0, atol=1e-6)
    np.testing.assert_allclose(correlation_to_average(targets, targets, ids), 1.0, atol=1e-6)


def test_shuffled_prediction_scores_about_zero(rng: np.random.Generator) -> None:
    _, targets, _ = _repeated(rng, 40, 4, 5, 1.0, 0.5)
    order = rng.permutation(len(targets))
    shuffled = [rng.permuted(targets[i], axis=1) for i in order]  # other trials, frames shuffled
    single = single_trial_correlation(shuffled, targets)
    assert abs(single.mean()) < 0.02
    assert np.abs(single).max() < 0.15  # 5,000 frames: |r| of independent series ~ 0.014


def test_constant_neuron_scores_zero_not_nan(rng: np.random.Generator) -> None:
    _, targets, ids = _repeated(rng, 4, 2, 3, 1.0, 1.0)
    predictions = [t.copy() for t in targets]
    for p in predictions:
        p[1] = 3.25  # constant prediction
    for t in targets:
        t[2] = 0.0  # silent neuron
    single = single_trial_correlation(predictions, targets)
    average = correlation_to_average(predictions, targets, ids)
    for values in (single, average):
        assert np.isfinite(values).all()
        assert values[1] == pytest.approx(0.0, abs=1e-9)
        assert values[2] == pytest.approx(0.0, abs=1e-9)
        assert values[0] == pytest.approx(1.0, abs=1e-6)
    fev, _ = fev_feve(predictions, targets, ids)
    assert np.isnan(fev[2])  # a silent neuron has no explainable variance: never passes the threshold


def test_feve_of_noise_free_prediction_is_about_one(rng: np.random.Generator) -> None:
    signals, targets, ids = _repeated(rng, 30, 6, 10, 1.0, 0.7)
    fev, feve = fev_feve(signals, targets, ids)
    expected_fev = 1.0 / (1.0 + 0.7**2)  # signal variance / (signal + noise variance)
    np.testing.assert_allclose(fev, expected_fev, atol=0.05)
    np.testing.assert_allclose(feve, 1.0, atol=0.03)
    # predicting the repeat average leaves only (R-1)/R of the noise: FEVE a little above one
    averages = {
        s: np.mean([t for t, i in zip(targets, ids, strict=True) if i == s], axis=0) for s in set(ids)
    }
    _, feve_avg = fev_feve([averages[i] for i in ids], targets, ids)
    assert (feve_avg > feve).mean() > 0.9
    np.testing.assert_allclose(feve_avg, 1.0 + 0.1 * 0.7**2 / 1.0, atol=0.03)
    # a constant prediction (the overall mean) explains nothing
    _, feve_mean = fev_feve([np.zeros_like(t) for t in targets], targets, ids)
    np.testing.assert_allclose(feve_mean, 0.0, atol=0.1)


def test_fev_feve_by_hand() -> None:
    """Two stimuli x 3 frames, 3 and 2 repeats, one neuron: FEV/FEVE computed with explicit loops."""
    stim_a = [[1.0, 2.0, 4.0], [2.0, 2.0, 5.0], [0.0, 3.0, 3.0]]
    stim_b = [[6.0, 1.0, 0.0], [7.0, 2.0, 1.0]]
    pred_a, pred_b = [1.0, 2.5, 4.0], [6.0, 1.0, 1.0]
    pad = [0.0] * 50  # the skipped warm-up
    targets = [np.array([pad + r]) for r in stim_a + stim_b]
    predictions = [np.array([pad + pred_a])] * 3 + [np.array([pad + pred_b])] * 2
    ids = ["a", "a", "a", "b", "b"]
    values = [v for r in stim_a + stim_b for v in r]
    mean = sum(values) / len(values)
    total = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    image_vars = []
    for stim in (stim_a, stim_b):
        for f in range(3):
            col = [r[f] for r in stim]
            m = sum(col) / len(col)
            image_vars.append(sum((c - m) ** 2 for c in col) / (len(col) - 1))
    noise = sum(image_vars) / len(image_vars)
    errors = [
        (r[f] - p[f]) ** 2 for stim, p in ((stim_a, pred_a), (stim_b, pred_b)) for r in stim for f in range(3)
    ]
    mse = sum(errors) / len(errors)
    fev, feve = fev_feve(predictions, targets, ids)
    assert fev[0] == pytest.approx((total - noise) / total, rel=1e-12)
    assert feve[0] == pytest.approx(1 - (mse - noise) / (total - noise), rel=1e-12)


def test_fev_threshold_respected(rng: np.random.Generator) -> None:
    signals, targets, ids = _repeated(rng, 20, 6, 8, 1.0, 0.5)
    for s, t in zip(signals, targets, strict=True):
        t[10:] -= s[10:]  # neurons 10.. are pure noise: FEV ~ 0
    predictions = [s + 0.3 * rng.normal(size=s.shape) for s in signals]
    fev, feve = fev_feve(predictions, targets, ids)
    assert (fev[:10] > 0.5).all() and (fev[10:] < 0.15).all()
    assert mean_feve(fev, feve) == pytest.approx(feve[:10].mean(), rel=1e-12)
    assert np.isnan(mean_feve(fev[10:], feve[10:]))


def test_correlation_to_average_groups_by_stimulus(rng: np.random.Generator) -> None:
    signals, targets, ids = _repeated(rng, 10, 4, 6, 1.0, 2.0)
    average = correlation_to_average(signals, targets, ids)
    single = single_trial_correlation(signals, targets)
    assert (average > single).all()  # averaging over repeats removes noise
    # the same trials under one stimulus id per trial are single trials again
    np.testing.assert_allclose(
        correlation_to_average(signals, targets, list(range(len(ids)))), single, atol=1e-12
    )


def test_grouping_errors(rng: np.random.Generator) -> None:
    _, targets, _ = _repeated(rng, 3, 1, 2, 1.0, 1.0)
    short = targets[1][:, :200]
    with pytest.raises(ValueError, match="trial 1: stimulus 'x' has 150 scored frames here and 250"):
        correlation_to_average([targets[0], short], [targets[0], short], ["x", "x"])
    with pytest.raises(ValueError, match="FEVE needs at least one stimulus with two or more repeats"):
        fev_feve(targets, targets, [0, 1])
    with pytest.raises(ValueError, match="3 stimulus ids for 2 trials"):
        correlation_to_average(targets, targets, [0, 0, 0])
    with pytest.raises(ValueError, match="trial 1: target has 2 neurons, trial 0 has 3"):
        single_trial_correlation([targets[0], targets[1][:2]], [targets[0], targets[1][:2]])
