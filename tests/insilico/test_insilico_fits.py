"""The fits on curves and maps with known answers: direction tuning (double von Mises, OSI, DSI, vector
indices) and the Gaussian receptive-field fit (centre, size, a field cut by the screen's edge)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.insilico.receptive_fields import fit_gaussian
from models.insilico.tuning import angle_difference, double_von_mises, fit_direction_tuning

DIRECTIONS = np.arange(16) * 22.5


def curves(pref: np.ndarray, kappa: np.ndarray, b: np.ndarray, a1: np.ndarray, a2: np.ndarray) -> np.ndarray:
    return double_von_mises(DIRECTIONS, pref, kappa, b, a1, a2)


def test_fit_recovers_known_curves_and_their_indices() -> None:
    pref = np.array([10.0, 100.0, 200.0, 333.0, 47.0])
    kappa = np.array([2.0, 4.0, 1.0, 3.0, 6.0])
    b = np.array([0.0, 0.1, -0.05, 0.0, 0.2])
    a1 = np.array([1.0, 2.0, 1.5, 0.8, 3.0])
    a2 = np.array([1.0, 0.5, 0.0, 0.4, 3.0])  # 0 and 4: no direction preference
    fit = fit_direction_tuning(curves(pref, kappa, b, a1, a2))
    directional = a1 > a2
    assert np.all(angle_difference(fit.preferred_direction[directional], pref[directional], 360.0) < 1.0)
    assert np.all(angle_difference(fit.preferred_orientation, np.mod(pref, 180.0)) < 1.0)
    np.testing.assert_allclose(fit.kappa, kappa)
    np.testing.assert_allclose(fit.r2, 1.0, atol=1e-9)
    # analytic indices of the noise-free curves, with f(pref), f(null), f(orth) from the model itself

    def at(offset: float) -> np.ndarray:  # each neuron's curve at its own preferred direction + offset
        return double_von_mises((pref + offset)[:, None], pref, kappa, b, a1, a2)[:, 0]

    f_pref, f_null = np.maximum(at(0.0), 0), np.maximum(at(180.0), 0)
    f_orth = np.maximum((at(90.0) + at(-90.0)) / 2, 0)
    np.testing.assert_allclose(fit.osi, (f_pref - f_orth) / (f_pref + f_orth), atol=1e-6)
    np.testing.assert_allclose(fit.dsi, (f_pref - f_null) / (f_pref + f_null), atol=1e-6)
    assert fit.dsi[0] == pytest.approx(0.0, abs=1e-9) and fit.dsi[2] > 0.8  # a2 = 0: only the wide tail
    np.testing.assert_allclose(fit.amplitude, f_pref, atol=1e-9)


def test_vector_indices_of_a_cosine_curve() -> None:
    """r = 1 + cos(2 (theta - 30)): |sum r e^{2i theta}| / sum r = 1/2; gDSI 0; OSI of the curve exactly 1."""
    theta = np.deg2rad(DIRECTIONS)
    r = (1 + np.cos(2 * (theta - np.deg2rad(30.0))))[None]
    fit = fit_direction_tuning(r)
    assert fit.gosi[0] == pytest.approx(0.5, abs=1e-9)
    assert fit.gdsi[0] == pytest.approx(0.0, abs=1e-9)
    assert fit.preferred_orientation[0] == pytest.approx(30.0, abs=1.0)


def test_flat_and_suppressed_curves_have_no_selectivity() -> None:
    fit = fit_direction_tuning(np.stack([np.full(16, 0.3), np.full(16, -0.2), np.zeros(16)]))
    np.testing.assert_allclose(fit.osi, 0.0, atol=1e-6)
    np.testing.assert_allclose(fit.gosi[[0]], 0.0, atol=1e-9)
    assert np.all(fit.amplitude[1:] <= 1e-9)


@settings(max_examples=40, deadline=None)
@given(
    pref=st.floats(0.0, 359.9),
    kappa=st.sampled_from([1.0, 2.0, 4.0]),
    ratio=st.floats(0.0, 0.9),
    noise=st.floats(0.0, 0.05),
    seed=st.integers(0, 2**16),
)
def test_preferred_direction_within_a_few_degrees_under_noise(
    pref: float, kappa: float, ratio: float, noise: float, seed: int
) -> None:
    one = np.ones(1)
    r = curves(pref * one, kappa * one, 0 * one, one, ratio * one)
    r = r + np.random.default_rng(seed).normal(0, noise, r.shape)
    fit = fit_direction_tuning(r)
    assert angle_difference(fit.preferred_orientation, np.mod(pref, 180.0))[0] < 6.0
    if ratio < 0.6:
        assert angle_difference(fit.preferred_direction, pref, 360.0)[0] < 6.0


def gaussian_maps(centres: np.ndarray, sigma: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    d2 = (rr[None] - centres[:, 0, None, None]) ** 2 + (cc[None] - centres[:, 1, None, None]) ** 2
    return 0.1 + 2.0 * np.exp(-d2 / (2 * sigma[:, None, None] ** 2))


def test_gaussian_fit_recovers_centre_and_size_even_at_the_screen_edge() -> None:
    rows, cols = np.arange(1.5, 36, 4.0), np.arange(1.5, 64, 4.0)
    centres = np.array(
        [[17.0, 30.0], [5.3, 8.7], [33.0, 60.0], [-1.5, 20.0], [20.0, 65.5]]
    )  # last 2: off-screen
    sigma = np.array([4.0, 5.0, 3.5, 5.0, 4.5])
    maps = gaussian_maps(centres, sigma, rows, cols)
    fit = fit_gaussian(maps, rows, cols)
    np.testing.assert_allclose(fit.centre, centres, atol=0.05)
    np.testing.assert_allclose(fit.sigma, sigma, atol=0.05)
    np.testing.assert_allclose(fit.r2, 1.0, atol=1e-6)
    # a probe of sigma 3 px blurs the map to sqrt(sigma^2 + 9): taken out again
    blurred = gaussian_maps(centres, np.sqrt(sigma**2 + 9.0), rows, cols)
    np.testing.assert_allclose(fit_gaussian(blurred, rows, cols, probe_sigma=3.0).sigma, sigma, atol=0.05)


def test_gaussian_fit_under_noise_and_without_a_field() -> None:
    rng = np.random.default_rng(1)
    rows, cols = np.arange(1.5, 36, 4.0), np.arange(1.5, 64, 4.0)
    centres = rng.uniform([4, 4], [32, 60], size=(200, 2))
    maps = gaussian_maps(centres, np.full(200, 5.0), rows, cols) + rng.normal(
        0, 0.2, (200, len(rows), len(cols))
    )
    fit = fit_gaussian(maps, rows, cols)
    assert np.median(np.linalg.norm(fit.centre - centres, axis=1)) < 0.5
    flat = fit_gaussian(
        -gaussian_maps(centres[:3], np.full(3, 5.0), rows, cols), rows, cols
    )  # suppression only
    assert np.all(np.isnan(flat.centre)) and np.all(np.isnan(flat.sigma))
