"""Scores from the service equal the batch metric functions; truth, oracle and shuffled submissions."""

from __future__ import annotations

import numpy as np
import pytest
from scoring_support import Scoring, tier_of, truth_submission

from client.submission import TrialPrediction
from models.metrics import batch
from models.metrics.scoreboard import ScoredTrial, score_trials
from server.scoring.ground_truth import FolderGroundTruth
from server.scoring.results import METRICS, SubmissionRecord

BOARDS = [("main", "live"), ("main", "final"), ("bonus", "live"), ("bonus", "final")]


def noisy_submission(truth: FolderGroundTruth, track: str, tier: str, seed: int = 0) -> list[TrialPrediction]:
    """Rates plus noise: a plausible model, neither perfect nor useless."""
    rng = np.random.default_rng(seed)
    out = []
    for t in truth_submission(truth, track, tier, kind="rates"):
        noise = rng.standard_normal(t.prediction.shape).astype(np.float32)
        out.append(TrialPrediction(t.mouse, t.trial_index, t.prediction + 0.7 * noise, t.neuron_ids))
    return out


def reference(truth: FolderGroundTruth, submission: list[TrialPrediction], track: str) -> dict:
    """The batch reference functions (`score_trials`) on the same arrays."""
    trials = []
    for t in submission:
        info = truth.trials(t.mouse)[t.trial_index]
        trials.append(
            ScoredTrial(
                t.mouse,
                t.prediction,
                truth.responses(t.mouse, t.trial_index),
                info.stimulus,
                info.family if track == "bonus" else None,
            )
        )
    return score_trials(trials)


def assert_matches(record: SubmissionRecord, ref: dict, tol: float = 1e-6) -> None:
    checked = 0
    for name in METRICS:
        got = record.scores.metrics[name]
        assert got.overall == pytest.approx(ref[name]["overall"], abs=tol), name
        assert got.per_mouse.keys() == ref[name]["per_mouse"].keys()
        for mouse, value in ref[name]["per_mouse"].items():
            assert got.per_mouse[mouse] == pytest.approx(value, abs=tol), (name, mouse)
            checked += 1
        families = ref.get("per_family", {})
        assert sorted(got.per_family) == sorted(families)
        for family, values in families.items():
            assert got.per_family[family] == pytest.approx(values[name]["overall"], abs=tol), (name, family)
            checked += 1
    assert checked >= 6


@pytest.mark.parametrize(("track", "tier"), BOARDS)
def test_scores_equal_batch_metrics(
    scoring: Scoring, truth: FolderGroundTruth, track: str, tier: str
) -> None:
    submission = noisy_submission(truth, track, tier, seed=len(track) + len(tier))
    record = scoring.client.submit(submission, track, tier, "alice", "noisy rates")
    ref = reference(truth, submission, track)
    assert_matches(record, ref)
    assert 0.2 < record.scores.metrics["single_trial_correlation"].overall < 0.9
    assert record.scores.n_trials == len(submission)
    assert record.scores.n_neurons == sum(len(truth.unit_ids(m)) for m in truth.mice())
    if track == "bonus":
        expected = {"live": ["directional_pink_noise"], "final": ["drifting_gabor", "gaussian_dots"]}[tier]
        assert sorted(record.scores.metrics["feve"].per_family) == expected


def test_truth_scores_one(scoring: Scoring, truth: FolderGroundTruth) -> None:
    record = scoring.client.submit(truth_submission(truth, "main", "final"), "main", "final", "truth")
    single = record.scores.metrics["single_trial_correlation"]
    assert single.overall == pytest.approx(1.0, abs=1e-6)
    assert all(v == pytest.approx(1.0, abs=1e-6) for v in single.per_mouse.values())
    assert record.scores.metrics["correlation_to_average"].overall == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize(("track", "tier"), [("main", "live"), ("bonus", "final")])
def test_noise_free_rates_give_the_oracle(
    scoring: Scoring, truth: FolderGroundTruth, track: str, tier: str
) -> None:
    """The oracle: per neuron, the correlation of the noise-free rates with the responses, pooled over mice."""
    record = scoring.client.submit(truth_submission(truth, track, tier, kind="rates"), track, tier, "oracle")
    name = tier_of(track, tier)
    per_mouse = {}
    for mouse in truth.mice():
        trials = [i for i, info in sorted(truth.trials(mouse).items()) if info.tier == name]
        per_mouse[mouse] = batch.single_trial_correlation(
            [truth.rates(mouse, i) for i in trials], [truth.responses(mouse, i) for i in trials]
        )
    oracle = float(np.mean(np.concatenate(list(per_mouse.values()))))
    single = record.scores.metrics["single_trial_correlation"]
    assert single.overall == pytest.approx(oracle, abs=1e-6)
    for mouse, r in per_mouse.items():
        assert single.per_mouse[mouse] == pytest.approx(float(r.mean()), abs=1e-6)
    assert 0.5 < oracle < 0.95  # the noise ceiling is below 1


def test_shuffled_predictions_score_about_zero(scoring: Scoring, truth: FolderGroundTruth) -> None:
    """Each trial's frames shuffled in time: the predictions carry no information about the responses."""
    rng = np.random.default_rng(5)
    shuffled = [
        TrialPrediction(t.mouse, t.trial_index, rng.permuted(t.prediction, axis=1), t.neuron_ids)
        for t in truth_submission(truth, "main", "live", kind="rates")
    ]
    record = scoring.client.submit(shuffled, "main", "live", "shuffler")
    assert abs(record.scores.metrics["single_trial_correlation"].overall) < 0.05
    assert_matches(record, reference(truth, shuffled, "main"))


def test_permuted_neuron_order_is_reordered(scoring: Scoring, truth: FolderGroundTruth) -> None:
    """Rows in another order (given by neuron_ids; a different permutation per trial) score the same."""
    rng = np.random.default_rng(3)
    plain = noisy_submission(truth, "bonus", "live", seed=9)
    permuted = []
    for t in plain:
        order = rng.permutation(t.n_neurons)
        permuted.append(TrialPrediction(t.mouse, t.trial_index, t.prediction[order], t.neuron_ids[order]))
    a = scoring.client.submit(plain, "bonus", "live", "bob")
    b = scoring.client.submit(permuted, "bonus", "live", "bob")
    for name in METRICS:
        assert b.scores.metrics[name] == a.scores.metrics[name]


def test_accepted_frame_counts_score_the_same(scoring: Scoring, truth: FolderGroundTruth) -> None:
    """Every frame of the trial (300 / 315), the frames after the skip (250 / 265) and, for 315-frame dots
    trials, exactly the scored frames (250) all score the scored window [50, 300)."""
    full = truth_submission(truth, "bonus", "final", kind="rates", frames="all")
    after_skip = truth_submission(truth, "bonus", "final", kind="rates", frames="after_skip")
    scored_only = [
        TrialPrediction(t.mouse, t.trial_index, t.prediction[:, 50:300], t.neuron_ids) for t in full
    ]
    assert {t.n_frames for t in full} == {300, 315}
    assert {t.n_frames for t in after_skip} == {250, 265}
    assert {t.n_frames for t in scored_only} == {250}
    records = [scoring.client.submit(s, "bonus", "final", "frames") for s in (full, after_skip, scored_only)]
    for name in METRICS:
        for other in records[1:]:
            assert other.scores.metrics[name].overall == pytest.approx(
                records[0].scores.metrics[name].overall, abs=1e-9
            )
