"""Score a submission in process, without a server: the validation a participant runs locally on the public
oracle tier (the official kit's way), through the very `ScoringSession` the service runs, so the numbers are
the service's for that tier."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

import numpy as np

from server.scoring.ground_truth import GroundTruth, PublicGroundTruth, tier_trials
from server.scoring.results import SubmissionScores
from server.scoring.session import ScoringSession
from server.scoring.validation import Header, SubmissionInvalid


class Trial(Protocol):
    """One row of a submission (e.g. `client.submission.TrialPrediction`)."""

    mouse: str
    trial_index: int
    prediction: np.ndarray  # (n_neurons, n_frames) float32
    neuron_ids: np.ndarray  # (n_neurons,)


def score_trials_with(truth: GroundTruth, header: Header, trials: Iterable[Trial]) -> SubmissionScores:
    """Validate and score every trial like the service does; raises `SubmissionInvalid` naming the problem."""
    expected = tier_trials(truth, header.tier_name)
    if not expected:
        raise SubmissionInvalid(f"no mouse has trials in tier {header.tier_name!r}")
    session = ScoringSession(truth, header, expected)
    for trial in trials:
        prediction = np.ascontiguousarray(trial.prediction, dtype=np.float32)  # the wire carries float32
        session.add(trial.mouse, int(trial.trial_index), np.asarray(trial.neuron_ids, np.int64), prediction)
    return session.result()


def score_public(public_dir: Path | str, header: Header, trials: Iterable[Trial]) -> SubmissionScores:
    """Score against the released responses of `public_dir` (DIR/public): the oracle tier."""
    return score_trials_with(PublicGroundTruth(public_dir), header, trials)
