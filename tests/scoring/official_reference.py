"""An independent re-implementation of the official SENSORIUM 2023 scoring path, written from the public code and
importing nothing from this project, so the scoring service can be checked against it.

What it follows, step by step:
- ecker-lab/sensorium_2023 `sensorium/datasets/mouse_video_loaders.py`: `NeuroNormalizer` is inserted as the
  *first* transform, so it acts on the raw responses of a trial file as stored, (N, T_file) NaN padded; then
  `CutVideos` cuts the trial at its first NaN.
- sinzlab/neuralpredictors `neuralpredictors/data/transforms.py` `NeuroNormalizer`: responses x precision, with
  `s = statistics/responses/all/std` exactly as released, `threshold = 0.01 * nanmean(s)` over the whole array,
  `precision = 1 / threshold` everywhere and `1 / s` where `s > threshold`.
- ecker-lab/sensorium_2023 `sensorium/utility/scores.py` `get_correlations` / `model_predictions`: targets lose
  their first 50 frames (`skip=50`), per mouse the trials are concatenated along time, `corr(target, output,
  axis=0)` per neuron, NaN -> 0; pooled = mean of `np.hstack` over mice.
- sinzlab/neuralpredictors `neuralpredictors/measures/np_functions.py` `corr`: population std (ddof 0), eps 1e-8
  added to each std.
- ecker-lab/sensorium_2023 `sensorium/utility/submission.py` `generate_submission`: a row holds the model's last
  `T - 50` outputs of a trial (frames [50, T)), `.tolist()` of a (neurons, frames) float32 array, with the
  dataset's `unit_ids` as `neuron_ids`.

Two choices the code above leaves to the data, made here as SENSORIUM.md states them:
- Only the first 300 frames of a trial count (`CutVideos(max_frame=300)`, that transform's own default): the
  315-frame Gaussian-dot trials are scored on frames [50, 300), i.e. the first 250 of their 265 submitted frames.
- Statistics shipped per neuron, (N,), apply to every frame (the static-image loader's rule; the video loader's
  `(N, T) * (N,)` would not broadcast).
Arithmetic is float64 (the official code runs float32; its rounding is not part of the definition).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SKIP = 50
MAX_FRAME = 300
EPS = 1e-8


def neuro_normalizer_precision(std: np.ndarray) -> np.ndarray:
    s = np.array(std, dtype=np.float64)
    threshold = 0.01 * np.nanmean(s)
    idx = s > threshold
    precision = np.ones_like(s) / threshold
    precision[idx] = 1 / s[idx]
    return precision


def corr(y1: np.ndarray, y2: np.ndarray, axis: int = -1, eps: float = EPS) -> np.ndarray:
    y1 = (y1 - y1.mean(axis=axis, keepdims=True)) / (y1.std(axis=axis, keepdims=True, ddof=0) + eps)
    y2 = (y2 - y2.mean(axis=axis, keepdims=True)) / (y2.std(axis=axis, keepdims=True, ddof=0) + eps)
    return (y1 * y2).mean(axis=axis)


class OfficialMouse:
    """A session folder in the released layout whose test-tier responses are present (the hosted copy)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.name = self.folder.name
        self.unit_ids = np.load(self.folder / "meta/neurons/unit_ids.npy")
        self.tiers = np.load(self.folder / "meta/trials/tiers.npy").astype(str)
        std = np.load(self.folder / "meta/statistics/responses/all/std.npy")
        precision = neuro_normalizer_precision(std)
        self.precision = precision[:, None] if precision.ndim == 1 else precision

    def standardised_responses(self, trial: int, max_frame: int | None = MAX_FRAME) -> np.ndarray:
        """(N, T) responses as the loader hands them over: normalised, cut at the first NaN (and at max_frame)."""
        raw = np.load(self.folder / f"data/responses/{trial}.npy").astype(np.float64)
        normalised = raw * self.precision  # NeuroNormalizer, first transform, on the whole (N, T_file) file
        nans = np.argwhere(np.isnan(normalised))[:, 1]
        length = int(nans.min()) if nans.size else normalised.shape[1]
        return normalised[:, : length if max_frame is None else min(length, max_frame)]

    def trials(self, tier: str) -> list[int]:
        return [int(i) for i in np.flatnonzero(self.tiers == tier)]


def per_neuron_correlations(
    mouse: OfficialMouse, tier: str, predictions: dict[int, tuple[np.ndarray, np.ndarray]]
) -> np.ndarray:
    """`get_correlations` for one mouse: `predictions[trial] = (neuron_ids, (n_neurons, T - 50) array)`."""
    targets, outputs = [], []
    for trial in mouse.trials(tier):
        resp = mouse.standardised_responses(trial)[:, SKIP:]
        neuron_ids, prediction = predictions[trial]
        order = [list(neuron_ids).index(u) for u in mouse.unit_ids]  # rows in the dataset's unit order
        out = np.asarray(prediction, dtype=np.float64)[order]
        targets.append(resp)
        outputs.append(out[:, : resp.shape[1]])  # submitted frames start at frame 50
    target = np.concatenate(targets, axis=1).T
    output = np.concatenate(outputs, axis=1).T
    correlations = corr(target, output, axis=0)
    correlations[np.isnan(correlations)] = 0
    return correlations


def single_trial_correlation(
    mice: list[OfficialMouse], tier: str, predictions: dict[str, dict[int, tuple[np.ndarray, np.ndarray]]]
) -> dict[str, object]:
    """{"overall": mean over all neurons of all mice, "per_mouse": {name: mean}}."""
    per_mouse = {m.name: per_neuron_correlations(m, tier, predictions[m.name]) for m in mice}
    return {
        "overall": float(np.mean(np.hstack(list(per_mouse.values())))),
        "per_mouse": {name: float(np.mean(v)) for name, v in per_mouse.items()},
    }
