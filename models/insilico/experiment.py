"""Run the in-silico protocols on any model of a neuron population, in batches, with a progress bar.

A `ResponseModel` is anything that maps raw clips to responses: a served model through PredictClip
(client/insilico.py), the synthetic generator's own noise-free rates (`generator_model`), or an analytic cell
in the tests. Responses only ever stream through accumulators, so memory stays at a few condition tables per
neuron however many neurons and frames there are.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol as TypingProtocol

import numpy as np
from tqdm import tqdm

from models.benchmark import FPS, FRAME_HEIGHT, FRAME_WIDTH
from models.insilico.stimuli import Background, GratingProtocol, Protocol, SparseNoiseProtocol

log = logging.getLogger(__name__)
MAX_BATCH_BYTES = 32 * 2**20  # responses of one request, float32 (the server takes 64 MiB messages)
MAX_BATCH = 16


class ResponseModel(TypingProtocol):
    """`predict` maps video (B, T, H, W) float32 raw pixels, behavior and pupil_center (B, T, 2) to responses
    (B, T - warmup, N): output row j belongs to input frame j + warmup."""

    unit_ids: np.ndarray
    warmup: int

    def predict(self, video: np.ndarray, behavior: np.ndarray, pupil_center: np.ndarray) -> np.ndarray: ...


class NeuronSubset:
    """A `ResponseModel` restricted to some of its neurons (given by unit id, in the order given)."""

    def __init__(self, model: ResponseModel, unit_ids: Sequence[int]) -> None:
        index = {int(u): i for i, u in enumerate(model.unit_ids)}
        unknown = [int(u) for u in unit_ids if int(u) not in index]
        if unknown:
            raise LookupError(f"no neuron with unit id {unknown[0]} (the model has {len(index)} neurons)")
        self.model = model
        self.index = np.array([index[int(u)] for u in unit_ids], dtype=np.int64)
        self.unit_ids = np.asarray(model.unit_ids)[self.index]
        self.warmup = model.warmup
        self.output_neurons = len(model.unit_ids)  # what one request returns, before the selection

    def predict(self, video: np.ndarray, behavior: np.ndarray, pupil_center: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict(video, behavior, pupil_center))[..., self.index]


def batch_size(n_neurons: int, frames: int) -> int:
    return int(max(1, min(MAX_BATCH, MAX_BATCH_BYTES // max(4 * n_neurons * frames, 1))))


def _batches(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def run_clips(
    model: ResponseModel,
    clips: Sequence,
    make: Callable[[object], np.ndarray],
    background: Background,
    bar: tqdm,
) -> Iterator[tuple[Sequence, np.ndarray]]:
    """Yield (clip keys, responses (B, T_out, N)) batch by batch."""
    if not clips:
        return
    first = make(clips[0])
    size = batch_size(getattr(model, "output_neurons", len(model.unit_ids)), first.shape[0])
    for keys in _batches(clips, size):
        video = np.stack([make(k) for k in keys])
        behavior, pupil_center = background.traces(len(keys), video.shape[1])
        responses = np.asarray(model.predict(video, behavior, pupil_center), dtype=np.float32)
        expected = (len(keys), video.shape[1] - model.warmup, len(model.unit_ids))
        if responses.shape != expected:
            raise ValueError(f"model returned responses of shape {responses.shape}, expected {expected}")
        bar.update(len(keys))
        yield keys, responses


@dataclass(frozen=True)
class GratingResponses:
    """Per neuron and condition (N, directions, sfs, tfs): mean response over the window (F0) and the amplitude
    of its modulation at the grating's temporal frequency (F1); `baseline` (N,) = the response to grey."""

    f0: np.ndarray
    f1: np.ndarray
    baseline: np.ndarray


def measure_gratings(
    model: ResponseModel, protocol: GratingProtocol, background: Background, bar: tqdm
) -> GratingResponses:
    n = len(model.unit_ids)
    f0 = np.zeros((n, *protocol.shape), dtype=np.float64)
    f1 = np.zeros_like(f0)
    t = np.arange(protocol.window_frames) / FPS
    grey = "grey"
    keys: list = [grey, *protocol.conditions()]

    def make(key: object) -> np.ndarray:
        if key == grey:
            return np.full(
                (model.warmup + protocol.frames, FRAME_HEIGHT, FRAME_WIDTH), background.grey, dtype=np.float32
            )
        return protocol.clip(key, model.warmup, background.grey)  # type: ignore[arg-type]

    baseline = np.zeros(n)
    for batch, responses in run_clips(model, keys, make, background, bar):
        window = responses[:, -protocol.window_frames :, :].astype(np.float64)  # (B, W, N)
        for key, r in zip(batch, window, strict=True):
            if key == grey:
                baseline = r.mean(axis=0)
                continue
            i, j, k = key
            carrier = np.exp(-2j * np.pi * protocol.temporal_frequencies[k] * t)
            f0[:, i, j, k] = r.mean(axis=0)
            f1[:, i, j, k] = 2 * np.abs(carrier @ (r - r.mean(axis=0))) / protocol.window_frames
    return GratingResponses(f0, f1, baseline)


@dataclass(frozen=True)
class SparseNoiseMaps:
    """(N, rows, cols): the response summed over the response window after a patch at each grid position,
    averaged over the patches there, minus that sum's average over all frames; `counts` (rows, cols) patches."""

    maps: np.ndarray
    counts: np.ndarray


def measure_sparse_noise(
    model: ResponseModel, protocol: SparseNoiseProtocol, background: Background, bar: tqdm
) -> SparseNoiseMaps:
    n, cells = len(model.unit_ids), protocol.positions
    sums = np.zeros((cells, n), dtype=np.float64)
    counts = np.zeros(cells, dtype=np.int64)
    total, frames = np.zeros(n), 0
    events: dict[int, np.ndarray] = {}

    def make(index: object) -> np.ndarray:
        video, ev = protocol.clip(int(index), model.warmup, background.grey)  # type: ignore[call-overload]
        events[int(index)] = ev  # type: ignore[call-overload]
        return video

    for batch, responses in run_clips(model, range(protocol.clips), make, background, bar):
        for index, r in zip(batch, responses, strict=True):
            onset, cell = events.pop(int(index)).T
            csum = np.concatenate([np.zeros((1, n)), np.cumsum(r, axis=0, dtype=np.float64)])  # (T + 1, N)
            np.add.at(sums, cell, csum[onset + protocol.response_frames] - csum[onset])
            counts += np.bincount(cell, minlength=cells)
            total += csum[-1]
            frames += r.shape[0]
    mean = total / max(frames, 1) * protocol.response_frames
    with np.errstate(invalid="ignore", divide="ignore"):
        maps = sums.T / counts[None] - mean[:, None]
    rows, cols = protocol.grid
    return SparseNoiseMaps(maps.reshape(n, rows, cols).astype(np.float32), counts.reshape(rows, cols))


def run_protocol(
    model: ResponseModel, protocol: Protocol, background: Background, progress: bool = True, desc: str = ""
) -> tuple[GratingResponses, SparseNoiseMaps]:
    """Both experiments; one progress bar over every clip."""
    total = 1 + len(protocol.gratings.conditions()) + protocol.sparse_noise.clips
    with tqdm(total=total, desc=desc or "in-silico clips", unit="clip", disable=not progress) as bar:
        gratings = measure_gratings(model, protocol.gratings, background, bar)
        noise = measure_sparse_noise(model, protocol.sparse_noise, background, bar)
    log.info(
        "%d neurons: %d grating clips, %d sparse-noise clips",
        len(model.unit_ids),
        total - 1 - protocol.sparse_noise.clips,
        protocol.sparse_noise.clips,
    )
    return gratings, noise
