"""Receptive-field centre and size from sparse-noise maps: a 2D Gaussian fitted to every neuron at once.

The map is a neuron's response to small probes (models.insilico.stimuli.SparseNoiseProtocol) on the grid of
probe centres. Model, in screen
pixels: m(row, col) = b + a exp(-((row - r0)^2 + (col - c0)^2) / (2 s^2)); Levenberg-Marquardt on all neurons in
parallel (5 x 5 normal equations each), started at the map's peak. The fit sees only the screen, so a field cut
by the screen's edge still gets its centre where the visible flank points. `sigma` is the field's own size: a
probe of Gaussian window sigma_p blurs the map to s^2 = sigma^2 + sigma_p^2, so `probe_sigma`^2 is taken out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.benchmark import FRAME_HEIGHT, FRAME_WIDTH

ITERATIONS = 40
MIN_R2 = 0.2  # a map the Gaussian explains less of has no field (a random network: median 0.07)
EDGE_MARGIN = 8.0  # pixels: a centre may lie this far off the screen (a field cut by the edge), no further
START_SIGMA = 4.0  # pixels
MIN_SIGMA, MAX_SIGMA = 0.5, 40.0


@dataclass(frozen=True)
class RFFit:
    """Per neuron (arrays of length N); NaN centre and size where no field was found: a peak (a > 0) that
    explains at least MIN_R2 of the map, centred at most EDGE_MARGIN pixels off the screen."""

    centre: np.ndarray  # (N, 2) [row, col] screen pixels
    sigma: np.ndarray  # (N,) pixels, the probe's own size taken out
    amplitude: np.ndarray  # (N,) a (response units summed over the response window)
    offset: np.ndarray  # (N,) b
    r2: np.ndarray  # (N,) fraction of the map's variance the Gaussian explains


def _model(p: np.ndarray, rr: np.ndarray, cc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Values (N, P) and Jacobian (N, P, 5) of the Gaussian at pixel coordinates rr, cc (P,)."""
    b, a, r0, c0, ls = (p[:, i, None] for i in range(5))
    s2 = np.exp(2 * ls)
    dr, dc = rr[None] - r0, cc[None] - c0
    q = dr**2 + dc**2
    g = np.exp(-q / (2 * s2))
    ag = a * g / s2
    jac = np.stack([np.ones_like(g), g, ag * dr, ag * dc, ag * q], axis=2)
    return b + a * g, jac


def fit_gaussian(maps: np.ndarray, rows: np.ndarray, cols: np.ndarray, probe_sigma: float = 0.0) -> RFFit:
    """maps (N, R, C) on the grid rows (R,) x cols (C,) (screen pixels) -> Gaussian fits."""
    m = np.nan_to_num(np.asarray(maps, dtype=np.float64))
    n = m.shape[0]
    rr, cc = (a.ravel() for a in np.meshgrid(rows, cols, indexing="ij"))
    y = m.reshape(n, -1)
    peak = y.argmax(axis=1)
    base = np.median(y, axis=1)
    p = np.stack([base, y.max(axis=1) - base, rr[peak], cc[peak], np.full(n, np.log(START_SIGMA))], axis=1)
    lam = np.full(n, 1e-2)
    values, jac = _model(p, rr, cc)
    cost = ((values - y) ** 2).sum(axis=1)
    lo, hi = np.log(MIN_SIGMA), np.log(MAX_SIGMA)
    for _ in range(ITERATIONS):
        jtj = np.einsum("npi,npj->nij", jac, jac)
        grad = np.einsum("npi,np->ni", jac, values - y)
        damp = jtj + lam[:, None, None] * (jtj * np.eye(5)[None] + 1e-12 * np.eye(5)[None])
        step = -np.linalg.solve(damp, grad[..., None])[..., 0]
        trial = p + step
        trial[:, 4] = np.clip(trial[:, 4], lo, hi)
        t_values, t_jac = _model(trial, rr, cc)
        t_cost = ((t_values - y) ** 2).sum(axis=1)
        better = t_cost < cost
        p[better], values[better], jac[better], cost[better] = (
            trial[better],
            t_values[better],
            t_jac[better],
            t_cost[better],
        )
        lam = np.where(better, lam / 3, lam * 4).clip(1e-6, 1e6)
    sst = ((y - y.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        r2 = np.where(sst > 0, 1 - cost / sst, 0.0)
    height, width = FRAME_HEIGHT, FRAME_WIDTH
    inside = (
        (p[:, 2] > -EDGE_MARGIN)
        & (p[:, 2] < height + EDGE_MARGIN)
        & (p[:, 3] > -EDGE_MARGIN)
        & (p[:, 3] < width + EDGE_MARGIN)
    )
    found = (p[:, 1] > 0) & (r2 >= MIN_R2) & inside
    sigma = np.sqrt(np.maximum(np.exp(2 * p[:, 4]) - probe_sigma**2, 0.0))
    centre = np.where(found[:, None], p[:, 2:4], np.nan)
    return RFFit(centre, np.where(found, sigma, np.nan), p[:, 1], p[:, 0], r2)
