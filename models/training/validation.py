"""Whole-trial prediction and the oracle single-trial correlation used for early stopping.

Scoring goes through `models.metrics` (the one copy shared with the demo and the scoring service). The model
returns T-R+1 frames per T-frame trial, aligned to the last frame; we hand the metric code the last T-50
frames (the official submission length), which needs R-1 <= SKIP_FRAMES. Scores are taken in the official scored
units (`models.data.normalisation.ScoredUnits`): the model's output is turned into raw units and multiplied by
the released precision of each neuron and frame, like the targets.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from tqdm import tqdm

from models.benchmark import SKIP_FRAMES
from models.metrics import single_trial_correlation
from models.training.data import MouseData, TrialInputs


@torch.inference_mode()
def predict_trials(
    model: torch.nn.Module,
    session: str,
    trials: Sequence[TrialInputs],
    device: torch.device,
    chunk: int = 8,
) -> list[np.ndarray]:
    """Predictions (N, T-SKIP_FRAMES) float32 in standardised units, one per trial, in input order.

    Trials of equal length go through the model together, `chunk` at a time. The model is put in eval mode.
    """
    model.eval()
    out: list[np.ndarray | None] = [None] * len(trials)
    by_length: dict[int, list[int]] = defaultdict(list)
    for i, trial in enumerate(trials):
        by_length[trial.video.shape[0]].append(i)
    for length, indices in by_length.items():
        keep = length - SKIP_FRAMES
        for j in range(0, len(indices), chunk):
            part = indices[j : j + chunk]
            video = torch.from_numpy(np.stack([trials[i].video for i in part])).to(device)
            behavior = torch.from_numpy(np.stack([trials[i].behavior for i in part])).to(device)
            pupil = torch.from_numpy(np.stack([trials[i].pupil_center for i in part])).to(device)
            rate = model(session, video, behavior, pupil)  # [B, T-R+1, N]
            if rate.shape[1] < keep:
                raise ValueError(
                    f"model returns {rate.shape[1]} frames for {length}-frame trials: its receptive field "
                    f"exceeds the {SKIP_FRAMES}-frame warm-up that scoring skips"
                )
            rate = rate[:, rate.shape[1] - keep :].transpose(1, 2).float().cpu().numpy()
            for k, i in enumerate(part):
                out[i] = np.ascontiguousarray(rate[k])
    return [p for p in out if p is not None]


def per_neuron_correlation(
    model: torch.nn.Module, mouse: MouseData, trials: np.ndarray, device: torch.device, chunk: int
) -> np.ndarray:
    """Single-trial correlation (N,) of `model` on the given trials of one mouse (targets from the folder),
    in the official scored units."""
    inputs = [mouse.trial(int(i)) for i in trials]
    predictions = predict_trials(model, mouse.session, inputs, device, chunk)
    scored = [mouse.scored_predictions(p, t.video.shape[0]) for p, t in zip(predictions, inputs, strict=True)]
    return single_trial_correlation(scored, [mouse.scored_responses(int(i)) for i in trials])


def summarise(per_neuron: Mapping[str, np.ndarray]) -> dict[str, object]:
    """{"overall": mean over all neurons pooled over mice, "per_mouse": {session: mean}}."""
    pooled = np.concatenate([np.asarray(v, dtype=np.float64) for v in per_neuron.values()])
    return {
        "overall": float(pooled.mean()),
        "per_mouse": {s: float(np.mean(v)) for s, v in per_neuron.items()},
    }


def validation_trials(mouse: MouseData, limit: int, seed: int) -> np.ndarray:
    """The oracle trials scored each epoch: all, or a fixed random subset of `limit` (sorted)."""
    trials = mouse.oracle_trials
    if limit <= 0 or limit >= len(trials):
        return trials
    rng = np.random.default_rng([seed, len(trials)])
    return np.sort(rng.choice(trials, size=limit, replace=False))


def validate(
    model: torch.nn.Module,
    mice: Mapping[str, MouseData],
    device: torch.device,
    chunk: int = 8,
    progress: bool = False,
    trials: Mapping[str, np.ndarray] | None = None,
) -> dict[str, object]:
    """Oracle single-trial correlation, overall (pooled neurons) and per mouse (`trials`: default all)."""
    per_neuron = {
        s: per_neuron_correlation(model, m, m.oracle_trials if trials is None else trials[s], device, chunk)
        for s, m in tqdm(
            mice.items(), desc="validation", unit="mouse", leave=False, disable=None if progress else True
        )
    }
    return summarise(per_neuron)
