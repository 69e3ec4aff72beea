"""The one normalisation of inputs and responses (numpy only). Two kinds of units, each with one job:

**Model units** (`NormalisationStats`): what the torch Dataset trains on and the exported ONNX graphs bake in.
Statistics files may be time resolved (video (36, 64, T), responses (N, T), behaviour / pupil (2, T)) or not
(scalar, (N,), (2,)); here any time axis is collapsed by nanmean, so a streaming graph needs no trial clock.
Then, with the official loader's rules:

    video         (x - mean) / std          per pixel (a scalar statistic is broadcast to 36 x 64)
    responses     x / std                   per neuron, std floored at 0.01 * nanmean(std), no mean subtraction
    behaviour     x / std                   per channel [pupil dilation, running speed]
    pupil centre  (x - mean) / std          per channel [x, y]

A std that is zero or not finite (a constant channel in a tiny dataset) is replaced by 1 (no scaling) for video,
behaviour and pupil centre; the response std floor covers responses. Raw responses = model output x
`response_std` (per neuron, shipped in the model metadata).

**Scored units** (`ScoredUnits`): what the benchmark scores, exactly as the official loader makes them
(ecker-lab/sensorium_2023 `mouse_video_loaders.py` puts neuralpredictors' `NeuroNormalizer` first, on the raw
(N, T_file) responses of each trial file): r[n, t] x precision[n, t], with `precision = 1 / std` of the released
response statistics *in their own shape* (time resolved (N, T) in SENSORIUM 2023, per neuron (N,) where a
dataset ships that), and `1 / threshold` wherever std <= threshold = 0.01 * nanmean(std) over the whole array
(NaN included). Frame t is the trial file's frame index. docs/METRICS.md says why and how it is tested.

Array functions take time-major arrays, features last: video [..., H, W], responses [..., N],
behaviour / pupil [..., 2] (the Dataset's and the graphs' layout). For (N, T) arrays use `standardise_responses`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from models.benchmark import BEHAVIOR_CHANNELS, FRAME_HEIGHT, FRAME_WIDTH, PUPIL_CHANNELS, RESPONSE_STD_FLOOR
from models.data import layout

if TYPE_CHECKING:
    from models.data.reader import MouseFolder


def collapse_time(stat: np.ndarray, feature_shape: tuple[int, ...]) -> np.ndarray:
    """Collapse a trailing time axis by nanmean and broadcast to `feature_shape` (float64)."""
    arr = np.asarray(stat, dtype=np.float64)
    if arr.ndim == len(feature_shape) + 1 or (arr.ndim == 1 and len(feature_shape) == 2):
        arr = np.nanmean(arr, axis=-1)  # (…, T) -> (…); a video time course (T,) -> scalar
    return np.broadcast_to(arr, feature_shape).copy()


def _safe_std(std: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(std) & (std > 0), std, 1.0)


@dataclass(frozen=True)
class NormalisationStats:
    """Per-feature statistics, time axis already collapsed. float32 arrays."""

    video_mean: np.ndarray  # (36, 64)
    video_std: np.ndarray  # (36, 64)
    response_std: np.ndarray  # (N,), floored
    behavior_std: np.ndarray  # (2,)
    pupil_mean: np.ndarray  # (2,)
    pupil_std: np.ndarray  # (2,)

    @classmethod
    def from_statistics(cls, stats: dict[str, dict[str, np.ndarray]], n_neurons: int) -> NormalisationStats:
        """From {kind: {"mean": ..., "std": ...}} as `MouseFolder.statistics` holds them."""
        frame = (FRAME_HEIGHT, FRAME_WIDTH)
        response_std = collapse_time(stats[layout.RESPONSES]["std"], (n_neurons,))
        floor = RESPONSE_STD_FLOOR * np.nanmean(response_std)
        response_std = np.where(np.isfinite(response_std), np.maximum(response_std, floor), floor)
        return cls(
            video_mean=collapse_time(stats[layout.VIDEOS]["mean"], frame).astype(np.float32),
            video_std=_safe_std(collapse_time(stats[layout.VIDEOS]["std"], frame)).astype(np.float32),
            response_std=response_std.astype(np.float32),
            behavior_std=_safe_std(collapse_time(stats[layout.BEHAVIOR]["std"], (BEHAVIOR_CHANNELS,))).astype(
                np.float32
            ),
            pupil_mean=collapse_time(stats[layout.PUPIL_CENTER]["mean"], (PUPIL_CHANNELS,)).astype(
                np.float32
            ),
            pupil_std=_safe_std(collapse_time(stats[layout.PUPIL_CENTER]["std"], (PUPIL_CHANNELS,))).astype(
                np.float32
            ),
        )

    @classmethod
    def from_mouse(cls, mouse: MouseFolder | Path | str) -> NormalisationStats:
        """From a mouse folder (an open `MouseFolder` or its path)."""
        if not hasattr(mouse, "statistics"):
            from models.data.reader import open_mouse

            mouse = open_mouse(mouse, validate="off")
        return cls.from_statistics(mouse.statistics, mouse.n_neurons)  # type: ignore[union-attr]

    @property
    def response_precision(self) -> np.ndarray:
        """1 / std_r per neuron: multiply raw responses by it to get scored (standardised) units."""
        return (1.0 / self.response_std).astype(np.float32)

    @property
    def n_neurons(self) -> int:
        return int(self.response_std.shape[0])

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of float32 arrays (for checkpoints)."""
        return {f.name: np.asarray(getattr(self, f.name), dtype=np.float32).copy() for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NormalisationStats:
        missing = [f.name for f in fields(cls) if f.name not in data]
        if missing:
            raise ValueError(f"normalisation stats lack {', '.join(missing)}")
        return cls(**{f.name: np.asarray(data[f.name], dtype=np.float32) for f in fields(cls)})


def normalise_video(video: np.ndarray, stats: NormalisationStats) -> np.ndarray:
    """[..., 36, 64] raw grey levels -> (x - mean) / std."""
    return ((np.asarray(video, dtype=np.float32) - stats.video_mean) / stats.video_std).astype(np.float32)


def normalise_responses(responses: np.ndarray, stats: NormalisationStats) -> np.ndarray:
    """[..., N] raw -> x / std (no mean subtraction): the standardised, scored units."""
    return (np.asarray(responses, dtype=np.float32) * stats.response_precision).astype(np.float32)


def standardise_responses(responses: np.ndarray, stats: NormalisationStats) -> np.ndarray:
    """(N, T) raw (released / metric layout) -> standardised units."""
    return (np.asarray(responses, dtype=np.float32) * stats.response_precision[:, None]).astype(np.float32)


def normalise_behavior(behavior: np.ndarray, stats: NormalisationStats) -> np.ndarray:
    """[..., 2] raw [pupil dilation, running speed] -> x / std."""
    return (np.asarray(behavior, dtype=np.float32) / stats.behavior_std).astype(np.float32)


def normalise_pupil_center(pupil_center: np.ndarray, stats: NormalisationStats) -> np.ndarray:
    """[..., 2] raw eye position -> (x - mean) / std."""
    return ((np.asarray(pupil_center, dtype=np.float32) - stats.pupil_mean) / stats.pupil_std).astype(
        np.float32
    )


def response_precision(std: np.ndarray) -> np.ndarray:
    """neuralpredictors `NeuroNormalizer`'s response precision, in the shape of `std` (float32).

    1 / std where std > threshold, else 1 / threshold, with threshold = RESPONSE_STD_FLOOR * nanmean(std) over
    the whole array (a NaN std, e.g. a frame no train trial reaches, gets 1 / threshold too).
    """
    s = np.asarray(std, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        threshold = RESPONSE_STD_FLOOR * np.nanmean(s)
        if not (np.isfinite(threshold) and threshold > 0):
            raise ValueError(f"response std has no positive finite mean ({threshold / RESPONSE_STD_FLOOR!r})")
        above = s > threshold
    return np.where(above, 1.0 / np.where(above, s, 1.0), 1.0 / threshold).astype(np.float32)


@dataclass(frozen=True)
class ScoredUnits:
    """The official standardisation of responses: r[n, t] * precision[n, t] (see the module docstring).

    `precision` is (N, T_stats) for time-resolved statistics, (N, 1) for per-neuron ones (any frame).
    """

    precision: np.ndarray

    @classmethod
    def from_std(cls, std: np.ndarray, n_neurons: int) -> ScoredUnits:
        """From the released `responses/all/std.npy` array: (N,) or (N, T)."""
        std = np.asarray(std)
        if std.ndim not in (1, 2) or std.shape[0] != n_neurons:
            raise ValueError(
                f"response std has shape {std.shape}; expected ({n_neurons},) or ({n_neurons}, T)"
            )
        precision = response_precision(std)
        return cls(precision if precision.ndim == 2 else precision[:, None])

    @classmethod
    def from_mouse(cls, mouse: MouseFolder | Path | str) -> ScoredUnits:
        """From a mouse folder (an open `MouseFolder` or its path)."""
        if not hasattr(mouse, "statistics"):
            from models.data.reader import open_mouse

            mouse = open_mouse(mouse, validate="off")
        return cls.from_std(mouse.statistics[layout.RESPONSES]["std"], mouse.n_neurons)  # type: ignore[union-attr]

    @property
    def n_neurons(self) -> int:
        return int(self.precision.shape[0])

    @property
    def time_resolved(self) -> bool:
        return self.precision.shape[1] > 1

    def frames(self, first: int, count: int) -> np.ndarray:
        """(N, count) precision of trial frames [first, first + count) (broadcastable (N, 1) if per neuron)."""
        if not self.time_resolved:
            return self.precision
        stop = first + count
        if first < 0 or stop > self.precision.shape[1]:
            raise ValueError(
                f"frames {first}..{stop - 1} lie outside the time-resolved response statistics "
                f"({self.precision.shape[1]} frames): the trial is longer than the statistics"
            )
        return self.precision[:, first:stop]

    def standardise(self, raw: np.ndarray, first_frame: int = 0) -> np.ndarray:
        """(N, T) raw responses of trial frames [first_frame, first_frame + T) -> scored units (float32)."""
        raw = np.asarray(raw)
        return np.multiply(raw, self.frames(first_frame, raw.shape[-1]), dtype=np.float32)

    def from_model_units(self, prediction: np.ndarray, response_std: np.ndarray, n_frames: int) -> np.ndarray:
        """(N, P) model output for the *last* P frames of an `n_frames` trial -> scored units (float32).

        Model units are r / response_std (per neuron); the scored units multiply the raw value by the
        precision of each frame. P = n_frames - SKIP_FRAMES for a submission (frames [50, T)).
        """
        prediction = np.asarray(prediction)
        n, p = prediction.shape
        std = np.asarray(response_std, dtype=np.float32).reshape(-1, 1)
        if std.shape[0] != n or n != self.n_neurons:
            raise ValueError(
                f"prediction has {n} neurons, response_std {std.shape[0]}, the statistics {self.n_neurons}"
            )
        if p > n_frames:
            raise ValueError(f"prediction has {p} frames for a {n_frames}-frame trial")
        scale = std * self.frames(n_frames - p, p)
        return np.multiply(prediction, scale, dtype=np.float32)
