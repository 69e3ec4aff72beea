"""Direction and orientation tuning from grating responses, vectorised over neurons (numpy only).

Per neuron, at its preferred spatial and temporal frequency (the condition with the largest response), the
direction tuning curve r(theta) = F0 - baseline is fitted with a sum of two von Mises bumps 180 deg apart,

    f(theta) = b + a1 exp(k (cos(theta - theta_p) - 1)) + a2 exp(k (cos(theta - theta_p - pi) - 1)),

by least squares: exhaustively over theta_p (1 deg grid) and k (a small grid), in closed form for (b, a1, a2),
with a1 >= a2 (theta_p is the preferred direction). From the fitted curve, rectified at the baseline (0):

    OSI = (f_pref - f_orth) / (f_pref + f_orth),   f_orth = mean of f(theta_p +- 90 deg)
    DSI = (f_pref - f_null) / (f_pref + f_null),   f_null = f(theta_p + 180 deg)

and from the measured curve the global (vector) indices gOSI = |sum r+ e^{2 i theta}| / sum r+ and
gDSI = |sum r+ e^{i theta}| / sum r+ (r+ = max(r, 0)). The F1/F0 modulation ratio at the preferred condition
separates simple (> 1) from complex (< 1) cells (Skottun et al. 1991).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

KAPPAS = (0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)
THETA_STEP_DEG = 1.0
SIMPLE_CELL_F1_F0 = 1.0


def angle_difference(a_deg: np.ndarray, b_deg: np.ndarray, period: float = 180.0) -> np.ndarray:
    """|a - b| on a circle of `period` degrees (180: orientations, 360: directions), in [0, period / 2]."""
    d = np.mod(np.asarray(a_deg, np.float64) - np.asarray(b_deg, np.float64), period)
    return np.minimum(d, period - d)


def von_mises_pair(theta: np.ndarray, theta_p: float, kappa: float) -> np.ndarray:
    """(len(theta), 2): the two unit-height bumps at theta_p and theta_p + pi (radians)."""
    return np.stack(
        [
            np.exp(kappa * (np.cos(theta - theta_p) - 1)),
            np.exp(kappa * (np.cos(theta - theta_p - np.pi) - 1)),
        ],
        axis=1,
    )


def double_von_mises(
    theta_deg: np.ndarray,
    preferred_deg: np.ndarray,
    kappa: np.ndarray,
    b: np.ndarray,
    a_pref: np.ndarray,
    a_null: np.ndarray,
) -> np.ndarray:
    """The fitted curve (N, K) of N neurons (parameters (N,)) at angles theta_deg (K,) or (N, K)."""
    theta = np.deg2rad(np.asarray(theta_deg, np.float64))
    theta = theta[None, :] if theta.ndim == 1 else theta
    tp = np.deg2rad(np.asarray(preferred_deg, np.float64))[:, None]
    k = np.asarray(kappa, np.float64)[:, None]
    return (
        np.asarray(b, np.float64)[:, None]
        + np.asarray(a_pref, np.float64)[:, None] * np.exp(k * (np.cos(theta - tp) - 1))
        + np.asarray(a_null, np.float64)[:, None] * np.exp(k * (np.cos(theta - tp - np.pi) - 1))
    )


@lru_cache(maxsize=8)
def _design(directions: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For every (theta_p, kappa): orthonormal bases Q (G, D, 3) and the maps (G, 3, D) to (b, a1, a2)."""
    theta = np.arange(directions) * 2 * np.pi / directions
    grid = [(tp, k) for k in KAPPAS for tp in np.deg2rad(np.arange(0.0, 360.0, THETA_STEP_DEG))]
    qs, pinvs = [], []
    for tp, k in grid:
        x = np.concatenate([np.ones((directions, 1)), von_mises_pair(theta, tp, k)], axis=1)
        q, _ = np.linalg.qr(x)
        qs.append(q)
        pinvs.append(np.linalg.pinv(x))
    return np.asarray(grid), np.stack(qs), np.stack(pinvs)


@dataclass(frozen=True)
class DirectionFit:
    """Per neuron (arrays of length N)."""

    preferred_direction: np.ndarray  # degrees [0, 360)
    preferred_orientation: np.ndarray  # degrees [0, 180)
    kappa: np.ndarray
    baseline: np.ndarray  # b
    a_pref: np.ndarray  # a1
    a_null: np.ndarray  # a2
    osi: np.ndarray
    dsi: np.ndarray
    gosi: np.ndarray
    gdsi: np.ndarray
    amplitude: np.ndarray  # f(theta_p): fitted response above the grey-screen baseline
    r2: np.ndarray  # fraction of the curve's variance the fit explains

    def curve(self, theta_deg: np.ndarray) -> np.ndarray:
        """Fitted curves (N, K) at angles theta_deg (K,) for every neuron, or (N, K) one row per neuron."""
        return double_von_mises(
            theta_deg, self.preferred_direction, self.kappa, self.baseline, self.a_pref, self.a_null
        )


def fit_direction_tuning(curves: np.ndarray) -> DirectionFit:
    """curves (N, D): responses above baseline at D equally spaced directions (0, 360/D, ...). Among fits with
    at least one positive bump (a peak, not a trough) the best; a curve with no peak gets the best of all."""
    r = np.asarray(curves, dtype=np.float64)
    n, d = r.shape
    grid, q, pinv = _design(d)
    total = (r**2).sum(axis=1)
    best_res = np.full(n, np.inf)  # among fits with a positive bump (a peak, not a trough)
    best = np.zeros(n, dtype=np.int64)
    any_res = np.full(n, np.inf)  # among all fits: for curves with no peak at all
    any_best = np.zeros(n, dtype=np.int64)
    cols = np.arange(n)
    for start in range(0, len(grid), 256):  # residual = |r|^2 - |Q^T r|^2, in chunks of designs
        proj = np.einsum("gdk,nd->gnk", q[start : start + 256], r)
        res = total[None] - (proj**2).sum(axis=2)
        idx = res.argmin(axis=0)
        better = res[idx, cols] < any_res
        any_res[better], any_best[better] = res[idx, cols][better], start + idx[better]
        peaked = np.einsum("gkd,nd->gnk", pinv[start : start + 256], r)[..., 1:].max(axis=2) > 0
        res = np.where(peaked, res, np.inf)
        idx = res.argmin(axis=0)
        better = res[idx, cols] < best_res
        best_res[better], best[better] = res[idx, cols][better], start + idx[better]
    none = ~np.isfinite(best_res)
    best[none], best_res[none] = any_best[none], any_res[none]
    coef = np.einsum("nkd,nd->nk", pinv[best], r)  # (N, 3): b, a1, a2
    theta_p = grid[best, 0].copy()
    kappa = grid[best, 1].copy()
    b, a1, a2 = coef[:, 0], coef[:, 1].copy(), coef[:, 2].copy()
    flip = a2 > a1  # the same curve with the larger bump as the preferred direction
    theta_p[flip] += np.pi
    a1[flip], a2[flip] = coef[flip, 2], coef[flip, 1]
    pref_deg = np.mod(np.rad2deg(theta_p), 360.0)
    fit = DirectionFit(
        preferred_direction=pref_deg,
        preferred_orientation=np.mod(pref_deg, 180.0),
        kappa=kappa,
        baseline=b,
        a_pref=a1,
        a_null=a2,
        osi=np.zeros(n),
        dsi=np.zeros(n),
        gosi=np.zeros(n),
        gdsi=np.zeros(n),
        amplitude=np.zeros(n),
        r2=np.zeros(n),
    )
    at = fit.curve(np.stack([pref_deg, pref_deg + 180, pref_deg + 90, pref_deg - 90], axis=1))
    pref, null, orth = (np.maximum(at[:, 0], 0), np.maximum(at[:, 1], 0), np.maximum(at[:, 2:].mean(1), 0))
    theta = np.arange(d) * 2 * np.pi / d
    rp = np.maximum(r, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        osi = np.where(pref + orth > 0, (pref - orth) / (pref + orth), 0.0)
        dsi = np.where(pref + null > 0, (pref - null) / (pref + null), 0.0)
        mass = rp.sum(axis=1)
        gosi = np.where(mass > 0, np.abs(rp @ np.exp(2j * theta)) / mass, 0.0)
        gdsi = np.where(mass > 0, np.abs(rp @ np.exp(1j * theta)) / mass, 0.0)
        var = ((r - r.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
        r2 = np.where(var > 0, 1 - best_res / var, 0.0)
    return DirectionFit(
        **{
            **fit.__dict__,
            "osi": osi,
            "dsi": dsi,
            "gosi": gosi,
            "gdsi": gdsi,
            "amplitude": at[:, 0],
            "r2": r2,
        }
    )
