"""Which frames of a trial are scored, and how a prediction lines up with its target.

Conventions (docs/METRICS.md):
- A target (N, T) holds the trial's true length T (no NaN padding). Its scored frames are
  ``[SKIP_FRAMES, min(T, SCORED_FRAMES))``: the 50-frame warm-up is dropped and frames beyond 300 (the
  315-frame Gaussian-dot trials) are ignored.
- A prediction (N, P) is aligned to the target's *last* frames, as the official scorer does. Accepted P:
  ``T`` (every frame of the trial), ``T - SKIP_FRAMES`` (frames after the skip, the official submission
  format) and ``min(T, SCORED_FRAMES) - SKIP_FRAMES`` (exactly the scored frames; differs from the
  previous one only for trials longer than 300 frames). Anything else is a ValueError.
"""

from __future__ import annotations

import numpy as np

from models.benchmark import SCORED_FRAMES, SKIP_FRAMES


def scored_stop(n_frames: int) -> int:
    """One past the last scored frame of a trial with ``n_frames`` frames."""
    return min(n_frames, SCORED_FRAMES)


def n_scored_frames(n_frames: int) -> int:
    """Number of scored frames of a trial with ``n_frames`` frames (0 if it is shorter than the skip)."""
    return max(0, scored_stop(n_frames) - SKIP_FRAMES)


def accepted_prediction_frames(n_frames: int) -> dict[int, int]:
    """Accepted prediction lengths for a target of ``n_frames`` frames -> the target frame of their first frame."""
    accepted = {n_frames: 0, n_frames - SKIP_FRAMES: SKIP_FRAMES}
    accepted.setdefault(n_scored_frames(n_frames), SKIP_FRAMES)
    return accepted


def describe_accepted_frames(n_frames: int) -> str:
    """Human-readable list of the accepted prediction lengths, for error messages and docs."""
    stop = scored_stop(n_frames)
    parts = [
        f"{n_frames} (every frame of the trial)",
        f"{n_frames - SKIP_FRAMES} (frames {SKIP_FRAMES}..{n_frames - 1}, after the {SKIP_FRAMES}-frame skip)",
    ]
    if stop < n_frames:
        parts.append(f"{stop - SKIP_FRAMES} (frames {SKIP_FRAMES}..{stop - 1}, exactly the scored frames)")
    return " or ".join(parts)


def _check_matrix(array: np.ndarray, name: str) -> None:
    if not isinstance(array, np.ndarray):
        raise ValueError(f"{name} must be a numpy array, got {type(array).__name__}")
    if array.ndim != 2:
        raise ValueError(f"{name} must be 2-D (neurons, frames), got shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"{name} must hold real numbers, got dtype {array.dtype}")


def align(
    prediction: np.ndarray, target: np.ndarray, *, where: str = "trial"
) -> tuple[np.ndarray, np.ndarray]:
    """Views of the scored frames of ``prediction`` and ``target``, both (N, F); no copy.

    ``where`` names the trial in error messages (e.g. ``"mouse M trial 12"``).
    """
    _check_matrix(target, f"{where}: target")
    _check_matrix(prediction, f"{where}: prediction")
    n_neurons, n_frames = target.shape
    if prediction.shape[0] != n_neurons:
        raise ValueError(
            f"{where}: prediction has {prediction.shape[0]} neurons, the target has {n_neurons} "
            f"(arrays are (neurons, frames))"
        )
    if n_frames <= SKIP_FRAMES:
        raise ValueError(
            f"{where}: target has {n_frames} frames; a scored trial needs more than the {SKIP_FRAMES} "
            f"skipped warm-up frames"
        )
    first = accepted_prediction_frames(n_frames).get(prediction.shape[1])
    if first is None:
        raise ValueError(
            f"{where}: prediction has {prediction.shape[1]} frames for a {n_frames}-frame trial; "
            f"accepted: {describe_accepted_frames(n_frames)}"
        )
    stop = scored_stop(n_frames)
    return prediction[:, SKIP_FRAMES - first : stop - first], target[:, SKIP_FRAMES:stop]


def nonfinite_error(array: np.ndarray, name: str, where: str, row_offset: int = 0) -> ValueError:
    """The error for the first NaN/Inf of scored frames ``array`` (which must hold one)."""
    neuron, frame = (int(i) for i in np.argwhere(~np.isfinite(array))[0])
    return ValueError(
        f"{where}: {name} holds {array[neuron, frame]} at neuron row {row_offset + neuron}, scored frame "
        f"{frame} (trial frame {frame + SKIP_FRAMES}); scored values must be finite"
    )


def check_finite(prediction: np.ndarray, target: np.ndarray, *, where: str = "trial") -> None:
    """Raise ValueError naming the first NaN/Inf of the scored frames (arguments as returned by `align`)."""
    for name, array in (("prediction", prediction), ("target", target)):
        if not np.isfinite(array).all():
            raise nonfinite_error(array, name, where)
