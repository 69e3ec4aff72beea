"""Ground-truth model of a mouse V1 population (see docs/DATA.md for the equations).

One filter bank is shared by every neuron and mouse (what a conv core can learn); each neuron has its own
receptive-field position (retinotopic, from its cortical coordinates), filter channel, cell type (simple:
half-rectified linear; complex: energy of the quadrature pair), temporal kernel, behavioural gains, threshold,
response scale and noise level (what a Gaussian readout + shifter can learn).

Pipeline per trial, video s (T, 36, 64) standardised and pooled 2x2 to (T, 18, 32):
  z_k(t)   = (g_k * s_t)                         complex Gabor k (8 orientations, one spatial frequency)
  z_n(t)   = z_{k_n}(t, p_n + e(t))               sampled at the RF centre shifted by the eye position e(t)
  y_n      = h_n (*) z_n                          causal temporal kernel (mix of a biphasic and a slow kernel)
  d_n      = [Re(exp(-i phi_n) y_n)]_+  or |y_n|  simple / complex cell, divided by its calibration std
  mu_n     = softplus(gamma (g_n(t) d_n - theta_n)) gain g_n(t) = exp(b_run run(t) + b_pup pupil(t))
  rate_n   = A_n * (k_ca (*) mu_n)                calcium-like exponential smoothing, scale A_n
  r_n(t)   ~ compound Poisson-gamma with mean rate_n(t): events ~ Poisson(rate / a_n), sizes ~ Exp(a_n)
A_n and a_n are set on calibration movies so each neuron's mean and std match a real neuron's (meta folder).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.benchmark import FRAME_HEIGHT, FRAME_WIDTH
from models.data.synthetic.behaviour import BehaviourScales

POOL = 2
HH, WH = FRAME_HEIGHT // POOL, FRAME_WIDTH // POOL  # 18 x 32 working resolution
FFT_SHAPE = (32, 48)  # the 18 x 32 frame sits in a corner: 14 / 16 zero rows / cols of margin
N_ORIENTATIONS = 8
SPATIAL_FREQUENCIES = (1 / 7,)  # cycles per working pixel: a period of 14 screen pixels (~0.04 cycles/deg)
TEMPORAL_TAPS = 10  # 333 ms at 30 Hz
CALCIUM_TAU = 1.5  # frames
GAMMA = 3.0
VIDEO_GREY, VIDEO_CONTRAST = 80.0, 55.0
MAX_DRIVE = 12.0  # calibration stds: bounds the drive of neurons an OOD stimulus hits far harder
RUNNING_FRACTION = 0.35  # time spent running (behaviour.py): running / (mean / fraction) ~ 1 in a bout
EYE_GAIN = 0.5  # pooled pixels (= 1 screen pixel, ~2 deg) of RF shift per std of pupil-centre displacement


def _gabor_bank() -> np.ndarray:
    """FFTs (K, *FFT_SHAPE) of the K complex Gabor filters, zero-mean and unit-norm."""
    hp, wp = FFT_SHAPE
    y = np.fft.fftfreq(hp, 1 / hp)[:, None]
    x = np.fft.fftfreq(wp, 1 / wp)[None, :]
    bank = []
    for f in SPATIAL_FREQUENCIES:
        sigma = 0.45 / f
        env = np.exp(-(x**2 + y**2) / (2 * sigma**2))
        for j in range(N_ORIENTATIONS):
            theta = j * np.pi / N_ORIENTATIONS
            g = env * np.exp(2j * np.pi * f * (x * np.cos(theta) + y * np.sin(theta)))
            g -= env * (g.sum() / env.sum())
            g /= np.sqrt((np.abs(g) ** 2).sum())
            bank.append(np.fft.fft2(g))
    return np.stack(bank).astype(np.complex64)


BANK = _gabor_bank()
N_CHANNELS = BANK.shape[0]


def spatial_maps(video: np.ndarray) -> np.ndarray:
    """Video (T, 36, 64) grey levels -> complex filter outputs (K, T, 18, 32)."""
    t = video.shape[0]
    s = (video.astype(np.float32) - VIDEO_GREY) / VIDEO_CONTRAST
    s = s.reshape(t, HH, POOL, WH, POOL).mean(axis=(2, 4))
    padded = np.zeros((t, *FFT_SHAPE), dtype=np.float32)
    padded[:, :HH, :WH] = s  # circular convolution wraps into the zero margin only
    spectrum = np.fft.fft2(padded).astype(np.complex64)
    maps = np.fft.ifft2(BANK[:, None] * spectrum[None])
    return np.ascontiguousarray(maps[:, :, :HH, :WH]).astype(np.complex64)


def _gamma_kernel(tau: float, taps: int) -> np.ndarray:
    t = np.arange(taps, dtype=np.float64)
    k = (t / tau) ** 2 * np.exp(-t / tau)
    return k / k.sum()


def temporal_basis(taps: int = TEMPORAL_TAPS) -> np.ndarray:
    """(2, taps): a biphasic fast kernel and a monophasic slow one, unit norm, lag 0 first."""
    fast = _gamma_kernel(1.2, taps) - 0.8 * _gamma_kernel(2.6, taps)
    slow = _gamma_kernel(2.2, taps)
    return np.stack([fast / np.linalg.norm(fast), slow / np.linalg.norm(slow)])


def causal_filter(x: np.ndarray, kernels: np.ndarray) -> np.ndarray:
    """x (N, T), kernels (N, L) lag-first -> y[:, t] = sum_l kernels[:, l] x[:, t - l]."""
    out = np.zeros_like(x)
    for lag in range(kernels.shape[1]):
        out[:, lag:] += kernels[:, lag, None] * x[:, : x.shape[1] - lag]
    return out


def calcium(x: np.ndarray, tau: float = CALCIUM_TAU) -> np.ndarray:
    """Causal exponential smoothing along time of (N, T): y_t = q y_(t-1) + (1 - q) x_t, q = exp(-1/tau)."""
    q = np.float32(np.exp(-1.0 / tau))
    xt = np.ascontiguousarray(x.T)
    out = np.empty_like(xt)
    acc = np.zeros(xt.shape[1], dtype=xt.dtype)
    for i in range(xt.shape[0]):
        acc = q * acc + (1 - q) * xt[i]
        out[i] = acc
    return np.ascontiguousarray(out.T)


def retinotopy(coordinates: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Cortical x/y (um) -> RF centres (N, 2) [row, col] in working pixels: a smooth, rotated, slightly
    warped map from cortex to visual field plus scatter."""
    xy = coordinates[:, :2].astype(np.float64)
    u = (xy - np.median(xy, axis=0)) / (xy.std(axis=0) + 1e-6)
    rho = rng.uniform(-0.3, 0.3)
    rot = np.array([[np.cos(rho), -np.sin(rho)], [np.sin(rho), np.cos(rho)]])
    u = u @ rot.T
    u = u + 0.08 * u**2 * np.sign(u)  # mild magnification change toward the periphery
    col = WH / 2 + 0.22 * WH * u[:, 0]
    row = HH / 2 - 0.22 * HH * u[:, 1]
    centres = np.stack([row, col], axis=1) + rng.normal(0, 0.7, size=(len(u), 2))
    return np.clip(centres, [1.0, 1.0], [HH - 2.0, WH - 2.0])


@dataclass
class Population:
    """Per-neuron parameters; arrays of length N."""

    centres: np.ndarray  # (N, 2) working pixels
    channel: np.ndarray  # (N,) filter index
    complex_cell: np.ndarray  # (N,) bool
    phase: np.ndarray  # (N,) simple-cell phase
    kernels: np.ndarray  # (N, L) temporal kernels
    beta_run: np.ndarray
    beta_pupil: np.ndarray
    threshold: np.ndarray
    drive_scale: np.ndarray  # (N,) calibration std of the drive
    amplitude: np.ndarray  # (N,) A_n
    event_size: np.ndarray  # (N,) a_n
    scales: BehaviourScales

    @property
    def n_neurons(self) -> int:
        return int(self.channel.shape[0])

    def sample_maps(self, maps: np.ndarray, pupil_center: np.ndarray) -> np.ndarray:
        """Bilinear samples (N, T) complex of each neuron's channel at its eye-shifted RF centre."""
        _, t, hh, wh = maps.shape
        mean = np.asarray(self.scales.pupil_center_mean, dtype=np.float32)
        std = np.asarray(self.scales.pupil_center_std, dtype=np.float32)
        shift = ((pupil_center[:, :t].T - mean) / std * EYE_GAIN).astype(np.float32)  # (T, 2) [x, y]
        centres = self.centres.astype(np.float32)
        rows = np.clip(centres[:, 0, None] + shift[None, :, 1], 0, hh - 1.001)
        cols = np.clip(centres[:, 1, None] + shift[None, :, 0], 0, wh - 1.001)
        r0, c0 = rows.astype(np.int32), cols.astype(np.int32)  # floor: values are >= 0
        fr, fc = rows - r0, cols - c0
        flat = maps.reshape(-1)
        base = (self.channel[:, None].astype(np.int64) * t + np.arange(t)[None, :]) * (hh * wh)
        i00 = base + r0 * wh + c0
        top = flat[i00] * (1 - fc) + flat[i00 + 1] * fc
        bottom = flat[i00 + wh] * (1 - fc) + flat[i00 + wh + 1] * fc
        return top * (1 - fr) + bottom * fr

    def drive(self, maps: np.ndarray, pupil_center: np.ndarray) -> np.ndarray:
        """Unscaled drive d (N, T) >= 0."""
        y = causal_filter(self.sample_maps(maps, pupil_center), self.kernels.astype(np.float32))
        simple = np.maximum(np.real(y * np.exp(-1j * self.phase).astype(np.complex64)[:, None]), 0.0)
        return np.where(self.complex_cell[:, None], np.abs(y), simple).astype(np.float32)

    def gain(self, behavior: np.ndarray) -> np.ndarray:
        """Multiplicative gain (N, T) from running (~1 in a bout) and pupil dilation (z-scored), within 1/4..4."""
        pupil = (behavior[0] - self.scales.pupil_mean) / self.scales.pupil_std
        running = np.minimum(behavior[1] / (max(self.scales.running_mean, 1e-3) / RUNNING_FRACTION), 3.0)
        exponent = self.beta_run[:, None] * running[None] + self.beta_pupil[:, None] * pupil[None]
        return np.exp(np.clip(exponent, -np.log(4.0), np.log(4.0)))

    def unit_rates(self, maps: np.ndarray, behavior: np.ndarray, pupil_center: np.ndarray) -> np.ndarray:
        """Rates before the per-neuron scale A_n: softplus nonlinearity, then calcium smoothing."""
        d = np.minimum(self.drive(maps, pupil_center) / self.drive_scale[:, None], MAX_DRIVE)
        x = GAMMA * (self.gain(behavior).astype(np.float32) * d - self.threshold[:, None].astype(np.float32))
        return calcium((np.logaddexp(0.0, x) / GAMMA).astype(np.float32))

    def rates(self, maps: np.ndarray, behavior: np.ndarray, pupil_center: np.ndarray) -> np.ndarray:
        """Noise-free rates (N, T), raw response units: the expectation of `sample`."""
        return (self.amplitude[:, None] * self.unit_rates(maps, behavior, pupil_center)).astype(np.float32)

    def sample(self, rng: np.random.Generator, rates: np.ndarray) -> np.ndarray:
        """Noisy responses with mean `rates`: compound Poisson (events) x exponential (event sizes)."""
        a = self.event_size[:, None]
        events = rng.poisson(np.maximum(rates, 0.0) / a)
        out = np.zeros(rates.shape, dtype=np.float32)
        hit = events > 0  # sparse: sum of `events` exponential sizes = gamma(events) where any
        out[hit] = rng.gamma(events[hit], 1.0) * np.broadcast_to(a, rates.shape)[hit]
        return out


def build_population(
    rng: np.random.Generator,
    coordinates: np.ndarray,
    target_mean: np.ndarray,
    target_std: np.ndarray,
    scales: BehaviourScales,
    calibration: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
) -> Population:
    """Draw per-neuron parameters; calibrate A_n, a_n on (maps, behavior, pupil_center) triples so that each
    neuron's response mean and std match `target_mean`, `target_std` (raw units, e.g. a real neuron's)."""
    n = len(coordinates)
    basis = temporal_basis()
    alpha = rng.uniform(0, np.pi / 2, n)
    kernels = np.cos(alpha)[:, None] * basis[0] + np.sin(alpha)[:, None] * basis[1]
    pop = Population(
        centres=retinotopy(coordinates, rng),
        channel=rng.integers(0, N_CHANNELS, n),
        complex_cell=rng.random(n) < 0.4,
        phase=rng.uniform(0, 2 * np.pi, n),
        kernels=kernels.astype(np.float32),
        beta_run=rng.normal(0.4, 0.2, n),
        beta_pupil=rng.normal(0.2, 0.1, n),
        threshold=rng.uniform(0.8, 1.8, n),
        drive_scale=np.ones(n, dtype=np.float32),
        amplitude=np.ones(n, dtype=np.float32),
        event_size=np.ones(n, dtype=np.float32),
        scales=scales,
    )
    drives = np.concatenate([pop.drive(m, pc) for m, _, pc in calibration], axis=1)
    std = drives.std(axis=1)
    pop.drive_scale = np.maximum(std, 0.1 * np.median(std) + 1e-6).astype(np.float32)
    unit = np.concatenate([pop.unit_rates(m, b, pc) for m, b, pc in calibration], axis=1)
    mean_u = np.maximum(unit.mean(axis=1), 1e-6)
    pop.amplitude = (target_mean / mean_u).astype(np.float32)
    rate_var = (pop.amplitude**2) * unit.var(axis=1)
    noise_var = np.maximum(target_std**2 - rate_var, 0.25 * target_std**2)
    # Compound Poisson-exponential: var = mean * 2 a  ->  a = noise_var / (2 mean).
    pop.event_size = np.maximum(noise_var / (2 * target_mean), 1e-3).astype(np.float32)
    return pop
