"""Streaming accumulators: the batch metrics from trials arriving one at a time, in any order.

Memory (float64, N neurons of one mouse):
- single-trial correlation: six (N,) vectors, whatever the number of trials;
- correlation to average and FEVE: per distinct stimulus two (N, F) running sums (prediction and response)
  plus three (N,) vectors: it grows with the number of distinct stimuli, never with the number of trials
  (16 bytes x N x F per stimulus: 32 MB at 8,000 neurons x 250 scored frames).

Numerics: per neuron, each trial's moments are taken about the trial's own mean, then merged with Chan et
al.'s pairwise update (the parallel form of Welford's algorithm), so large offsets cost no precision; the
across-repeat noise variance is updated the same way (Welford) per (stimulus, frame). Work per trial is
vectorised over blocks of neurons that fit in cache: ~5 ms of CPU for an 8,000 x 250 float32 trial without
a stimulus id, ~9 ms with one (docs/benchmarks/metrics.md).
"""

from __future__ import annotations

import copy
from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from models.benchmark import CORRELATION_EPS
from models.metrics.batch import fev_from_variances
from models.metrics.frames import align, nonfinite_error

_BLOCK_ELEMENTS = 1 << 17  # float64 values per working block: 1 MB, two of them stay in a 1 MB-per-core L2


def _block_rows(n_frames: int) -> int:
    return max(1, _BLOCK_ELEMENTS // max(1, n_frames))


@dataclass
class TrialMoments:
    """Per-neuron moments of one trial's scored frames, about the trial's own means."""

    n: int
    mean_x: np.ndarray  # prediction mean (N,)
    mean_y: np.ndarray  # target mean (N,)
    m2_x: np.ndarray  # sum of squared deviations of the prediction (N,)
    m2_y: np.ndarray
    c_xy: np.ndarray  # sum of products of deviations (N,)

    @property
    def squared_error(self) -> np.ndarray:
        """Sum over frames of (target - prediction)^2 per neuron, from the moments (no extra pass)."""
        d = self.mean_y - self.mean_x
        return np.maximum(self.m2_x + self.m2_y - 2.0 * self.c_xy, 0.0) + self.n * d * d


def trial_moments(prediction: np.ndarray, target: np.ndarray, *, where: str = "trial") -> TrialMoments:
    """Moments of aligned scored frames (N, F); raises ValueError naming the first NaN/Inf."""
    n_neurons, n_frames = target.shape
    out = np.empty((5, n_neurons))
    rows = _block_rows(n_frames)
    buf_x = np.empty((min(rows, n_neurons), n_frames))
    buf_y = np.empty_like(buf_x)
    for start in range(0, n_neurons, rows):
        stop = min(start + rows, n_neurons)
        bx, by = buf_x[: stop - start], buf_y[: stop - start]
        bx[...] = prediction[start:stop]
        by[...] = target[start:stop]
        mx, my = bx.mean(axis=1), by.mean(axis=1)
        if not (np.isfinite(mx).all() and np.isfinite(my).all()):
            for name, array in (("prediction", prediction), ("target", target)):
                if not np.isfinite(array[start:stop]).all():
                    raise nonfinite_error(array[start:stop], name, where, row_offset=start)
        bx -= mx[:, None]
        by -= my[:, None]
        out[0, start:stop] = mx
        out[1, start:stop] = my
        out[2, start:stop] = np.einsum("ij,ij->i", bx, bx)
        out[3, start:stop] = np.einsum("ij,ij->i", by, by)
        out[4, start:stop] = np.einsum("ij,ij->i", bx, by)
    return TrialMoments(n_frames, out[0], out[1], out[2], out[3], out[4])


class PearsonAccumulator:
    """Per-neuron Pearson correlation over all frames seen; O(N) memory."""

    def __init__(self, n_neurons: int) -> None:
        self.n = 0
        self.mean_x = np.zeros(n_neurons)
        self.mean_y = np.zeros(n_neurons)
        self.m2_x = np.zeros(n_neurons)
        self.m2_y = np.zeros(n_neurons)
        self.c_xy = np.zeros(n_neurons)

    @property
    def n_neurons(self) -> int:
        return self.mean_x.shape[0]

    def add_moments(self, m: TrialMoments | PearsonAccumulator) -> None:
        """Chan et al. merge of another set of moments into this one."""
        if m.n == 0:
            return
        if self.n == 0:
            self.n = m.n
            self.mean_x, self.mean_y = m.mean_x.copy(), m.mean_y.copy()
            self.m2_x, self.m2_y, self.c_xy = m.m2_x.copy(), m.m2_y.copy(), m.c_xy.copy()
            return
        n = self.n + m.n
        dx = m.mean_x - self.mean_x
        dy = m.mean_y - self.mean_y
        w = self.n * m.n / n
        self.m2_x += m.m2_x + dx * dx * w
        self.m2_y += m.m2_y + dy * dy * w
        self.c_xy += m.c_xy + dx * dy * w
        self.mean_x += dx * (m.n / n)
        self.mean_y += dy * (m.n / n)
        self.n = n

    def merge(self, other: PearsonAccumulator) -> None:
        if other.n_neurons != self.n_neurons:
            raise ValueError(f"cannot merge {other.n_neurons} neurons into {self.n_neurons}")
        self.add_moments(other)

    def correlation(self, eps: float = CORRELATION_EPS) -> np.ndarray:
        """(N,) Pearson correlation, population std + eps, NaN -> 0 (zeros before any frame)."""
        if self.n == 0:
            return np.zeros(self.n_neurons)
        std_x = np.sqrt(self.m2_x / self.n)
        std_y = np.sqrt(self.m2_y / self.n)
        with np.errstate(invalid="ignore", over="ignore"):
            r = (self.c_xy / self.n) / ((std_x + eps) * (std_y + eps))
        return np.where(np.isnan(r), 0.0, r)


class StimulusAccumulator:
    """Running sums over the repeats of one stimulus: (N, F) prediction and response sums + noise terms."""

    def __init__(self, n_neurons: int, n_frames: int) -> None:
        self.repeats = 0
        self.n_frames = n_frames
        self.sum_x = np.zeros((n_neurons, n_frames))
        self.sum_y = np.zeros((n_neurons, n_frames))
        self.noise_m2 = np.zeros(n_neurons)  # sum over frames of across-repeat sum of squared deviations
        self.squared_error = np.zeros(n_neurons)  # sum over repeats and frames of (y - x)^2

    @property
    def n_neurons(self) -> int:
        return self.sum_x.shape[0]

    def add(self, prediction: np.ndarray, target: np.ndarray, squared_error: np.ndarray) -> None:
        """Add one repeat (aligned, finite (N, F) arrays); ``squared_error`` from its `TrialMoments`."""
        rows = _block_rows(self.n_frames)
        r = self.repeats
        shape = (min(rows, self.n_neurons), self.n_frames)
        buf_x, buf_y, buf_d = np.empty(shape), np.empty(shape), np.empty(shape)
        for start in range(0, self.n_neurons, rows):  # one cache-sized block of neurons at a time
            stop = min(start + rows, self.n_neurons)
            # float32 inputs are cast into float64 blocks first: an in-place float64 += float32 goes through
            # numpy's buffered casting loop, ~10x slower than the cast and a same-dtype add (same values).
            bx, by = buf_x[: stop - start], buf_y[: stop - start]
            bx[...] = prediction[start:stop]
            by[...] = target[start:stop]
            sum_y = self.sum_y[start:stop]
            if r:  # Welford per (stimulus, frame): M2 += r/(r+1) * (y - mean)^2, summed over frames
                d = buf_d[: stop - start]
                np.multiply(sum_y, 1.0 / r, out=d)
                np.subtract(by, d, out=d)
                self.noise_m2[start:stop] += np.einsum("ij,ij->i", d, d) * (r / (r + 1))
            sum_y += by
            self.sum_x[start:stop] += bx
        self.squared_error += squared_error
        self.repeats = r + 1

    def merge(self, other: StimulusAccumulator) -> None:
        if (other.n_neurons, other.n_frames) != (self.n_neurons, self.n_frames):
            raise ValueError(
                f"cannot merge stimulus sums of shape {(other.n_neurons, other.n_frames)} into "
                f"{(self.n_neurons, self.n_frames)}"
            )
        a, b = self.repeats, other.repeats
        if a and b:
            d = self.sum_y / a - other.sum_y / b
            self.noise_m2 += other.noise_m2 + np.einsum("ij,ij->i", d, d) * (a * b / (a + b))
        else:
            self.noise_m2 += other.noise_m2
        self.sum_x += other.sum_x
        self.sum_y += other.sum_y
        self.squared_error += other.squared_error
        self.repeats = a + b


class MouseAccumulator:
    """All three metrics for the trials of one mouse (or one mouse and one stimulus family).

    `add` is atomic: a trial that fails validation raises ValueError and changes nothing.
    """

    def __init__(self, n_neurons: int) -> None:
        self.pearson = PearsonAccumulator(n_neurons)
        self.stimuli: dict[Hashable, StimulusAccumulator] = {}
        self.n_trials = 0

    @property
    def n_neurons(self) -> int:
        return self.pearson.n_neurons

    def add(
        self,
        prediction: np.ndarray,
        target: np.ndarray,
        stimulus: Hashable | None = None,
        *,
        where: str = "trial",
    ) -> None:
        """Add one trial: (N, P) prediction, (N, T) target (true length), optional stimulus id."""
        pred, targ = align(prediction, target, where=where)
        if targ.shape[0] != self.n_neurons:
            raise ValueError(f"{where}: target has {targ.shape[0]} neurons, expected {self.n_neurons}")
        stim = self.stimuli.get(stimulus) if stimulus is not None else None
        if stim is not None and stim.n_frames != targ.shape[1]:
            raise ValueError(
                f"{where}: stimulus {stimulus!r} has {targ.shape[1]} scored frames here and {stim.n_frames} "
                f"in an earlier repeat; repeats of a stimulus must have the same length"
            )
        moments = trial_moments(pred, targ, where=where)  # validates finiteness before anything changes
        self.pearson.add_moments(moments)
        if stimulus is not None:
            if stim is None:
                stim = self.stimuli[stimulus] = StimulusAccumulator(self.n_neurons, targ.shape[1])
            stim.add(pred, targ, moments.squared_error)
        self.n_trials += 1

    def merge(self, other: MouseAccumulator) -> None:
        """Fold ``other`` into this accumulator (``other`` is left unchanged)."""
        if other.n_neurons != self.n_neurons:
            raise ValueError(f"cannot merge {other.n_neurons} neurons into {self.n_neurons}")
        for key, stim in other.stimuli.items():
            mine = self.stimuli.get(key)
            if mine is not None and mine.n_frames != stim.n_frames:
                raise ValueError(
                    f"stimulus {key!r} has {stim.n_frames} scored frames in one accumulator and "
                    f"{mine.n_frames} in the other"
                )
        self.pearson.merge(other.pearson)
        for key, stim in other.stimuli.items():
            if key in self.stimuli:
                self.stimuli[key].merge(stim)
            else:
                self.stimuli[key] = copy.deepcopy(stim)
        self.n_trials += other.n_trials


def _centred_blocks(sums: np.ndarray, repeats: int, mean: np.ndarray) -> Iterator[tuple[slice, np.ndarray]]:
    """Cache-sized row blocks of ``sums / repeats - mean[:, None]`` ((N, F) sums of one stimulus), in one reused
    buffer instead of an (N, F) temporary: (rows, block); a block is overwritten by the next one."""
    n_neurons, n_frames = sums.shape
    n_rows = _block_rows(n_frames)
    buf = np.empty((min(n_rows, n_neurons), n_frames))
    for start in range(0, n_neurons, n_rows):
        stop = min(start + n_rows, n_neurons)
        block = buf[: stop - start]
        np.divide(sums[start:stop], repeats, out=block)
        block -= mean[start:stop, None]
        yield slice(start, stop), block


def correlation_to_average(
    stimuli: Iterable[StimulusAccumulator], eps: float = CORRELATION_EPS
) -> np.ndarray:
    """(N,) correlation of repeat-averaged prediction and response over (stimulus, frame); NaN -> 0.

    Two passes over the stored sums (means first, then centred products), all in float64.
    """
    stimuli = [s for s in stimuli if s.repeats]
    if not stimuli:
        raise ValueError("correlation to average needs at least one trial with a stimulus id")
    n = sum(s.n_frames for s in stimuli)
    mean_x = sum(s.sum_x.sum(axis=1) / s.repeats for s in stimuli) / n
    mean_y = sum(s.sum_y.sum(axis=1) / s.repeats for s in stimuli) / n
    m2_x = np.zeros_like(mean_x)
    m2_y = np.zeros_like(mean_x)
    c_xy = np.zeros_like(mean_x)
    for s in stimuli:
        pred_blocks = _centred_blocks(s.sum_x, s.repeats, mean_x)
        resp_blocks = _centred_blocks(s.sum_y, s.repeats, mean_y)
        for (rows, a), (_, b) in zip(pred_blocks, resp_blocks, strict=True):
            m2_x[rows] += np.einsum("ij,ij->i", a, a)
            m2_y[rows] += np.einsum("ij,ij->i", b, b)
            c_xy[rows] += np.einsum("ij,ij->i", a, b)
    with np.errstate(invalid="ignore", over="ignore"):
        r = (c_xy / n) / ((np.sqrt(m2_x / n) + eps) * (np.sqrt(m2_y / n) + eps))
    return np.where(np.isnan(r), 0.0, r)


def fev_feve(stimuli: Iterable[StimulusAccumulator]) -> tuple[np.ndarray, np.ndarray]:
    """(N,) FEV and FEVE over the stimuli with >= 2 repeats (same definition as `batch.fev_feve`)."""
    stimuli = [s for s in stimuli if s.repeats >= 2]
    if not stimuli:
        raise ValueError("FEVE needs at least one stimulus with two or more repeats")
    n_images = sum(s.n_frames for s in stimuli)
    n_values = sum(s.n_frames * s.repeats for s in stimuli)
    grand_mean = sum(s.sum_y.sum(axis=1) for s in stimuli) / n_values
    total_m2 = np.zeros_like(grand_mean)
    noise = np.zeros_like(grand_mean)
    squared_error = np.zeros_like(grand_mean)
    for s in stimuli:
        between = np.empty_like(grand_mean)
        for rows, d in _centred_blocks(s.sum_y, s.repeats, grand_mean):
            between[rows] = np.einsum("ij,ij->i", d, d)
        total_m2 += s.noise_m2 + s.repeats * between
        noise += s.noise_m2 / (s.repeats - 1)
        squared_error += s.squared_error
    total_var = total_m2 / (n_values - 1)
    noise_var = noise / n_images
    mse = squared_error / n_values
    return fev_from_variances(total_var, noise_var, mse)
