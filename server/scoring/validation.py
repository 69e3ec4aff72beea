"""Validation of a streamed submission, one trial at a time, before anything is scored or recorded.

Every problem raises `SubmissionInvalid` with a message that names the mouse, the trial and the problem; the
servicer turns it into INVALID_ARGUMENT. The checks, in order, per trial: known mouse, known trial, trial in
the submitted tier, not a duplicate, float32 2-D prediction whose byte count matches its shape, one neuron id
per row, neuron ids a permutation of the mouse's units (rows are reordered to the truth's order), an accepted
frame count, finite values. At the end: every trial of the tier arrived (`check_complete`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from models.benchmark import SCORED_ROUNDS, TRACKS, VALIDATION_ROUND, scored_tier
from models.metrics.frames import accepted_prediction_frames, describe_accepted_frames
from server.scoring.ground_truth import TrialInfo

MAX_SUBMITTER_CHARS = 200
MAX_LABEL_CHARS = 500
_EXAMPLES = 5  # ids / trials quoted in a message


class SubmissionInvalid(ValueError):
    """A submission that cannot be scored; the message is shown to the submitter as is."""


@dataclass(frozen=True)
class Header:
    track: str  # main | bonus
    tier: str  # live | final | oracle (validation, main track)
    submitter: str
    label: str

    @property
    def tier_name(self) -> str:
        """The dataset tier scored, e.g. final_test_main (or oracle)."""
        return scored_tier(self.track, self.tier)


def validate_board(track: str, tier: str, where: str = "") -> None:
    """A known track (main|bonus) and tier (live|final, or oracle on the main track)."""
    if track not in TRACKS:
        raise SubmissionInvalid(f"{where}track must be one of {list(TRACKS)}, got {track!r}")
    if tier not in SCORED_ROUNDS:
        raise SubmissionInvalid(f"{where}tier must be one of {list(SCORED_ROUNDS)}, got {tier!r}")
    if tier == VALIDATION_ROUND and track != "main":
        raise SubmissionInvalid(f"{where}tier {VALIDATION_ROUND!r} belongs to track 'main', not {track!r}")


def validate_header(track: str, tier: str, submitter: str, label: str) -> Header:
    validate_board(track, tier, where="header: ")
    submitter = submitter.strip()
    if not submitter:
        raise SubmissionInvalid("header: submitter must not be empty")
    if len(submitter) > MAX_SUBMITTER_CHARS:
        raise SubmissionInvalid(f"header: submitter is longer than {MAX_SUBMITTER_CHARS} characters")
    if len(label) > MAX_LABEL_CHARS:
        raise SubmissionInvalid(f"header: label is longer than {MAX_LABEL_CHARS} characters")
    return Header(track, tier, submitter, label)


def _examples(values: np.ndarray | list[int]) -> str:
    values = [int(v) for v in list(values)[:_EXAMPLES]]
    return ", ".join(map(str, values)) + (", ..." if len(values) == _EXAMPLES else "")


def trial_name(mouse: str, trial: int) -> str:
    return f"mouse {mouse!r} trial {trial}"


def check_trial_membership(
    mouse: str, trial: int, trials: dict[int, TrialInfo] | None, tier_name: str, seen: set[int], n_mice: int
) -> TrialInfo:
    """Known mouse, known trial, in the submitted tier, not seen before; returns the trial's info."""
    where = trial_name(mouse, trial)
    if trials is None:
        raise SubmissionInvalid(
            f"{where}: unknown mouse (not one of the {n_mice} mice of tier {tier_name!r})"
        )
    info = trials.get(trial)
    if info is None:
        raise SubmissionInvalid(f"{where}: unknown trial (the mouse has trials 0..{max(trials)})")
    if info.tier != tier_name:
        raise SubmissionInvalid(
            f"{where}: trial is in tier {info.tier!r}, not in the submitted tier {tier_name!r}"
        )
    if trial in seen:
        raise SubmissionInvalid(f"{where}: duplicate trial (already submitted in this submission)")
    return info


def check_prediction_array(mouse: str, trial: int, prediction: np.ndarray, n_ids: int) -> None:
    """2-D float32 with one row per neuron id."""
    where = trial_name(mouse, trial)
    if prediction.dtype != np.float32:
        raise SubmissionInvalid(f"{where}: prediction dtype must be float32, got {prediction.dtype}")
    if prediction.ndim != 2:
        raise SubmissionInvalid(
            f"{where}: prediction must be 2-D [n_neurons, n_frames], got shape {list(prediction.shape)}"
        )
    if prediction.shape[0] != n_ids:
        raise SubmissionInvalid(
            f"{where}: prediction has {prediction.shape[0]} neuron rows but {n_ids} neuron ids were sent"
        )


@dataclass
class NeuronOrder:
    """Maps a submission's neuron ids onto the truth's row order (a permutation is fine, another set is not).

    Submissions send the same order for every trial, so the last order seen is cached and checked with one
    array comparison.
    """

    mouse: str
    unit_ids: np.ndarray  # truth order
    _sorter: np.ndarray = field(init=False, repr=False)
    _last_ids: np.ndarray | None = field(default=None, init=False, repr=False)
    _last_rows: np.ndarray | None = field(default=None, init=False, repr=False)  # None = identity

    def __post_init__(self) -> None:
        self.unit_ids = np.asarray(self.unit_ids, dtype=np.int64)
        self._sorter = np.argsort(self.unit_ids, kind="stable")

    def rows(self, trial: int, ids: np.ndarray) -> np.ndarray | None:
        """Index that puts the submitted rows in truth order (None: already in truth order)."""
        if self._last_ids is not None and np.array_equal(ids, self._last_ids):
            return self._last_rows
        rows = self._match(trial, ids)
        self._last_ids, self._last_rows = ids.copy(), rows
        return rows

    def _match(self, trial: int, ids: np.ndarray) -> np.ndarray | None:
        where = trial_name(self.mouse, trial)
        n = len(self.unit_ids)
        if len(ids) == n and np.array_equal(ids, self.unit_ids):
            return None
        sorted_ids = self.unit_ids[self._sorter]
        pos = np.searchsorted(sorted_ids, ids).clip(0, n - 1)
        known = sorted_ids[pos] == ids
        unique, counts = np.unique(ids, return_counts=True)
        if not known.all() or len(ids) != n or (counts > 1).any():
            missing = np.setdiff1d(self.unit_ids, ids)
            unknown = np.setdiff1d(ids, self.unit_ids)
            repeated = unique[counts > 1]
            problems = []
            if len(unknown):
                problems.append(f"{len(unknown)} unknown (e.g. {_examples(unknown)})")
            if len(missing):
                problems.append(f"{len(missing)} of the mouse's ids missing (e.g. {_examples(missing)})")
            if len(repeated):
                problems.append(f"{len(repeated)} repeated (e.g. {_examples(repeated)})")
            raise SubmissionInvalid(
                f"{where}: neuron ids are not the mouse's {n} neuron ids: {'; '.join(problems)}"
            )
        # truth row r holds unit_ids[r]; the submitted row holding it is the inverse of the truth positions
        truth_rows = self._sorter[pos]
        rows = np.empty(n, dtype=np.int64)
        rows[truth_rows] = np.arange(n)
        return rows


def check_frame_count(mouse: str, trial: int, n_frames: int, true_frames: int) -> None:
    """The prediction lengths `models.metrics.frames` accepts for a trial of `true_frames` frames."""
    if n_frames not in accepted_prediction_frames(true_frames):
        raise SubmissionInvalid(
            f"{trial_name(mouse, trial)}: prediction has {n_frames} frames for a {true_frames}-frame trial; "
            f"accepted: {describe_accepted_frames(true_frames)}"
        )


def check_finite(mouse: str, trial: int, prediction: np.ndarray, neuron_ids: np.ndarray) -> None:
    """No NaN or Inf anywhere in the prediction (scored frames or not)."""
    if np.isfinite(prediction).all():
        return
    bad = np.argwhere(~np.isfinite(prediction))
    row, frame = (int(v) for v in bad[0])
    value = prediction[row, frame]
    raise SubmissionInvalid(
        f"{trial_name(mouse, trial)}: prediction contains {len(bad)} non-finite value(s) "
        f"(first: {value} at neuron id {int(neuron_ids[row])}, frame {frame})"
    )


def check_complete(expected: dict[str, list[int]], received: dict[str, set[int]], tier_name: str) -> None:
    """Every trial of the tier, for every mouse that has the tier."""
    if not any(received.values()):
        raise SubmissionInvalid(
            f"submission has no trials (expected the {tier_name!r} trials of {len(expected)} mice)"
        )
    problems = []
    for mouse, trials in expected.items():
        missing = sorted(set(trials) - received.get(mouse, set()))
        if missing:
            problems.append(
                f"mouse {mouse!r}: {len(missing)} of {len(trials)} trial(s) missing ({_examples(missing)})"
            )
    if problems:
        raise SubmissionInvalid(f"incomplete submission for tier {tier_name!r}: " + "; ".join(problems))
