"""The scoring session in process: memory does not grow with the number of trials; sharding changes nothing."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from server.scoring.ground_truth import tier_trials
from server.scoring.results import METRICS, SubmissionScores
from server.scoring.session import ScoringSession
from server.scoring.synthetic import SyntheticGroundTruth
from server.scoring.validation import Header


def score(truth: SyntheticGroundTruth, shards: int | None = None, track: str = "main") -> SubmissionScores:
    session = ScoringSession(
        truth, Header(track, "final", "t", ""), tier_trials(truth, truth.tier), shards=shards
    )
    for mouse in truth.mice():
        for trial in truth.trials(mouse):
            session.add(mouse, trial, truth.unit_ids(mouse), truth.prediction(mouse, trial))
    return session.result()


def peak_bytes_while_scoring(trials: int) -> int:
    truth = SyntheticGroundTruth(mice=2, neurons=500, stimuli=3, trials=trials, seed=1)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        result = score(truth, shards=2)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert 0.3 < result.metrics["single_trial_correlation"].overall < 0.7
    return peak


def test_memory_does_not_grow_with_the_number_of_trials() -> None:
    """4x the trials (repeats of the same 3 stimuli) -> the same peak: accumulators + one trial in hand."""
    few, many = peak_bytes_while_scoring(6), peak_bytes_while_scoring(24)
    one_trial = 500 * 300 * 4
    assert many < few * 1.1 + one_trial, (few, many)
    # and the peak is far below what holding the trials would take (24 trials x 2 mice x (truth + prediction))
    assert many < 2 * 24 * 2 * one_trial / 2


@pytest.mark.parametrize("shards", [2, 3])
def test_sharded_scores_equal_unsharded(shards: int) -> None:
    truth = SyntheticGroundTruth(mice=2, neurons=101, stimuli=3, trials=9, seed=2)
    one, many = score(truth, shards=1), score(truth, shards=shards)
    for name in METRICS:
        assert many.metrics[name] == one.metrics[name]
    assert np.isfinite(one.metrics["feve"].overall)


def test_concurrent_submissions_are_capped(tmp_path) -> None:
    """A third submission while two are being scored is refused (ScoringBusy -> RESOURCE_EXHAUSTED); closing
    one frees its slot; a refused submission never reaches the database."""
    from server.scoring.db import ScoreStore
    from server.scoring.service import ScoringBusy, ScoringService

    truth = SyntheticGroundTruth(mice=1, neurons=10, stimuli=2, trials=4)
    store = ScoreStore(f"sqlite:///{tmp_path / 'busy.sqlite'}")
    service = ScoringService(truth, store, max_concurrent=2)
    header = Header("main", "final", "t", "")
    a, b = service.open(header), service.open(header)
    with pytest.raises(ScoringBusy, match="2 submissions are being scored"):
        service.open(header)
    service.close(a)
    service.close(a)  # idempotent: does not free a second slot
    c = service.open(header)
    with pytest.raises(ScoringBusy):
        service.open(header)
    assert service.open_submissions == 2
    for session in (b, c):
        service.close(session)
    assert store.row_counts() == {"submissions": 0, "scores": 0, "neuron_scores": 0}
    store.close()
