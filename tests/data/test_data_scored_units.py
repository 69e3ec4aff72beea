"""`ScoredUnits`: the official loader's standardisation of responses (per neuron and frame), and the conversion
of model outputs (per-neuron units) into it."""

from __future__ import annotations

import numpy as np
import pytest

from models.data.normalisation import ScoredUnits, response_precision


def test_precision_follows_neuro_normalizer_floor_over_the_whole_array() -> None:
    std = np.array([[2.0, 4.0, np.nan], [0.001, 1.0, 3.0]], dtype=np.float32)
    threshold = 0.01 * np.nanmean(std.astype(np.float64))  # over every neuron and frame, NaN ignored
    expected = np.array([[1 / 2, 1 / 4, 1 / threshold], [1 / threshold, 1.0, 1 / 3]])
    np.testing.assert_allclose(response_precision(std), expected, rtol=1e-6)
    assert response_precision(std).dtype == np.float32 and response_precision(std).shape == (2, 3)
    with pytest.raises(ValueError, match="no positive finite mean"):
        response_precision(np.zeros((2, 3)))


def test_time_resolved_units_use_the_trial_frame_index() -> None:
    rng = np.random.default_rng(0)
    std = rng.uniform(0.5, 2.0, (4, 10)).astype(np.float32)
    units = ScoredUnits.from_std(std, 4)
    assert units.time_resolved and units.precision.shape == (4, 10)
    raw = rng.random((4, 7)).astype(np.float32)
    np.testing.assert_allclose(units.standardise(raw), raw / std[:, :7], rtol=1e-6)
    np.testing.assert_allclose(units.standardise(raw, first_frame=3), raw / std[:, 3:10], rtol=1e-6)
    with pytest.raises(ValueError, match="longer than the statistics"):
        units.standardise(rng.random((4, 11)))


def test_per_neuron_units_apply_to_every_frame() -> None:
    std = np.array([1.0, 2.0, 4.0], dtype=np.float32)
    units = ScoredUnits.from_std(std, 3)
    assert not units.time_resolved and units.precision.shape == (3, 1)
    raw = np.ones((3, 500), np.float32)
    np.testing.assert_allclose(units.standardise(raw)[:, -1], [1.0, 0.5, 0.25])
    with pytest.raises(ValueError, match=r"expected \(4,\) or \(4, T\)"):
        ScoredUnits.from_std(std, 4)


def test_model_output_for_the_last_frames_becomes_scored_units() -> None:
    """Model units are r / response_std; the file's frames are the trial's last P frames."""
    rng = np.random.default_rng(1)
    std_t = rng.uniform(0.5, 2.0, (3, 20)).astype(np.float32)
    response_std = np.array([2.0, 3.0, 5.0], np.float32)
    units = ScoredUnits.from_std(std_t, 3)
    raw = rng.random((3, 20)).astype(np.float32)  # the trial's true raw response, 20 frames
    model_output = raw[:, 12:] / response_std[:, None]  # the last 8 frames, model units
    np.testing.assert_allclose(
        units.from_model_units(model_output, response_std, n_frames=20),
        raw[:, 12:] / std_t[:, 12:],
        rtol=1e-6,
    )
    with pytest.raises(ValueError, match="response_std 2"):
        units.from_model_units(model_output, response_std[:2], n_frames=20)
