"""How far an in-silico experiment recovers the synthetic ground truth (numpy only).

Per neuron: the error of the preferred orientation (degrees on the 180-degree circle) and of the receptive-field
centre (screen pixels) against the generator's parameters (models/data/synthetic/neurons.py), and whether the
F1/F0 ratio calls its type (simple / complex) right. Neurons are binned by the model's single-trial correlation
on a test tier of the truth (how well the model predicts that neuron), so the agreement can be read against
prediction quality. Run on the generator's own noise-free response function the check validates the analysis;
run on a trained model it measures what the model learned.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
from tqdm import tqdm

from models.benchmark import SKIP_FRAMES
from models.data.normalisation import ScoredUnits
from models.data.reader import open_mouse
from models.data.synthetic.neurons import NeuronTruth
from models.data.truth import TruthFolder
from models.insilico.experiment import ResponseModel, batch_size
from models.insilico.results import CHECK_ARRAYS_FILE, CHECK_FILE, TuningResult
from models.insilico.tuning import angle_difference

ORIENTATION_TOLERANCE_DEG: Final = 22.5
CORRELATION_EDGES: Final = (0.1, 0.2, 0.3, 0.4)  # bins: < 0.1, 0.1-0.2, ..., >= 0.4
TEST_TIER: Final = "final_test_main"


def per_neuron_test_correlation(
    model: ResponseModel,
    public_session: Path | str,
    truth_session: Path | str,
    tier: str = TEST_TIER,
    progress: bool = True,
) -> np.ndarray:
    """(N,) single-trial correlation of the model's predictions with the true responses of `tier` (frames
    [SKIP_FRAMES, 300) of each trial, models.metrics.single_trial_correlation), in the official scored units
    (`ScoredUnits`: both sides x the released precision per neuron and frame; a model's own per-neuron scale
    does not change a correlation)."""
    from models.metrics import single_trial_correlation

    public = open_mouse(public_session, validate="off")
    truth = TruthFolder(truth_session)
    units = ScoredUnits.from_mouse(public)
    if model.warmup > SKIP_FRAMES:
        raise ValueError(f"model warm-up {model.warmup} frames exceeds the {SKIP_FRAMES} skipped frames")
    trials = [int(i) for i in truth.trials(tier)]
    if not trials:
        raise ValueError(f"{truth_session}: no {tier} trials")
    predictions, targets = [], []
    size = batch_size(len(model.unit_ids), public.length(trials[0]))
    for start in tqdm(range(0, len(trials), size), desc=f"predict {tier}", disable=not progress):
        chunk = trials[start : start + size]
        lengths = {public.length(i) for i in chunk}
        groups = [[i for i in chunk if public.length(i) == n] for n in sorted(lengths)]
        for group in groups:
            video = np.stack([np.moveaxis(public.video(i), -1, 0) for i in group]).astype(np.float32)
            behavior = np.stack([public.behavior(i).T for i in group]).astype(np.float32)
            pupil = np.stack([public.pupil_center(i).T for i in group]).astype(np.float32)
            out = model.predict(video, behavior, pupil)  # (B, T - warmup, N)
            for i, r in zip(group, out, strict=True):
                pad = np.repeat(r[:1], model.warmup, axis=0)  # unscored warm-up frames
                predictions.append(units.standardise(np.concatenate([pad, r]).T))
                targets.append(units.standardise(truth.responses(i)))
    return single_trial_correlation(predictions, targets)


@dataclass(frozen=True)
class CheckArrays:
    """Per neuron, in the result's row order."""

    unit_ids: np.ndarray
    orientation_error: np.ndarray  # degrees [0, 90]
    rf_centre_error: np.ndarray  # pixels, NaN where no field was found
    type_correct: np.ndarray  # bool
    test_correlation: np.ndarray
    true_orientation: np.ndarray
    true_rf_centre: np.ndarray  # (N, 2)
    true_complex: np.ndarray


def _bin_labels(edges: tuple[float, ...]) -> list[str]:
    labels = [f"< {edges[0]:g}"]
    labels += [f"{a:g} - {b:g}" for a, b in itertools.pairwise(edges)]
    return [*labels, f">= {edges[-1]:g}"]


def _agreement(arrays: CheckArrays, mask: np.ndarray) -> dict[str, Any]:
    n = int(mask.sum())
    rf = arrays.rf_centre_error[mask]
    found = np.isfinite(rf)
    return {
        "neurons": n,
        "share_orientation_within_22.5": float(
            np.mean(arrays.orientation_error[mask] <= ORIENTATION_TOLERANCE_DEG)
        )
        if n
        else None,
        "median_orientation_error_deg": float(np.median(arrays.orientation_error[mask])) if n else None,
        "median_rf_centre_error_px": float(np.median(rf[found])) if found.any() else None,
        "rf_found": int(found.sum()),
        "share_type_correct": float(np.mean(arrays.type_correct[mask])) if n else None,
    }


def compare(
    result: TuningResult, truth: NeuronTruth, correlation: np.ndarray
) -> tuple[dict[str, Any], CheckArrays]:
    """Agreement of `result` with `truth` over the result's neurons, overall and per test-correlation bin;
    `correlation` (N,) is in the result's row order."""
    index = {int(u): i for i, u in enumerate(truth.unit_ids)}
    unknown = [int(u) for u in result.unit_ids if int(u) not in index]
    if unknown:
        raise ValueError(
            f"{len(unknown)} neurons of the result are not in the truth (e.g. unit {unknown[0]})"
        )
    rows = np.array([index[int(u)] for u in result.unit_ids], dtype=np.int64)
    arrays = CheckArrays(
        unit_ids=result.unit_ids,
        orientation_error=angle_difference(result.preferred_orientation, truth.orientation[rows]),
        rf_centre_error=np.linalg.norm(result.rf_centre - truth.rf_centre[rows], axis=1),
        type_correct=result.simple_cell == ~truth.complex_cell[rows],
        test_correlation=np.asarray(correlation, dtype=np.float64),
        true_orientation=truth.orientation[rows],
        true_rf_centre=truth.rf_centre[rows],
        true_complex=truth.complex_cell[rows],
    )
    edges = CORRELATION_EDGES
    which = np.digitize(arrays.test_correlation, edges)
    bins = [
        {"test_correlation": label, **_agreement(arrays, which == b)}
        for b, label in enumerate(_bin_labels(edges))
    ]
    summary = {
        "model": result.meta.get("model"),
        "label": result.meta.get("label"),
        "source": result.meta.get("source"),
        "session": truth.session,
        "test_tier": TEST_TIER,
        "orientation_tolerance_deg": ORIENTATION_TOLERANCE_DEG,
        "median_test_correlation": float(np.median(arrays.test_correlation)),
        "all": _agreement(arrays, np.ones(result.n_neurons, dtype=bool)),
        "by_test_correlation": bins,
    }
    return summary, arrays


def save_check(folder: Path | str, summary: dict[str, Any], arrays: CheckArrays) -> Path:
    folder = Path(folder)
    (folder / CHECK_FILE).write_text(json.dumps(summary, indent=1))
    np.savez_compressed(folder / CHECK_ARRAYS_FILE, **arrays.__dict__)
    return folder / CHECK_FILE


def load_check(folder: Path | str) -> tuple[dict[str, Any], CheckArrays] | None:
    folder = Path(folder)
    if not (folder / CHECK_FILE).is_file() or not (folder / CHECK_ARRAYS_FILE).is_file():
        return None
    summary = json.loads((folder / CHECK_FILE).read_text())
    with np.load(folder / CHECK_ARRAYS_FILE, allow_pickle=False) as data:
        arrays = CheckArrays(**{k: data[k] for k in CheckArrays.__dataclass_fields__})
    return summary, arrays
