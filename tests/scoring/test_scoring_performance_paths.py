"""The performance shortcuts of the scoring server keep its behaviour: the sharded board's cached finishing
passes follow later trials, and the malloc tuning respects the operator's environment."""

from __future__ import annotations

import numpy as np
import pytest

from models.metrics.scoreboard import Scoreboard
from server.scoring import allocator, neuron_scores
from server.scoring.sharding import ShardedScoreboard


def _trials(rng: np.random.Generator, n_neurons: int, n: int) -> list[tuple[np.ndarray, np.ndarray, int]]:
    signal = rng.normal(size=(3, n_neurons, 300))
    out = []
    for i in range(n):
        target = (signal[i % 3] + rng.normal(size=(n_neurons, 300))).astype(np.float32)
        prediction = (signal[i % 3, :, 50:] + 0.5 * rng.normal(size=(n_neurons, 250))).astype(np.float32)
        out.append((prediction, target, i % 3))
    return out


def test_sharded_results_follow_trials_added_after_a_result() -> None:
    rng = np.random.default_rng(5)
    trials = _trials(rng, 10, 9)
    sharded, single = ShardedScoreboard({"m": 10}, shards=2), Scoreboard({"m": 10})
    for i, (prediction, target, stimulus) in enumerate(trials[:6]):
        sharded.add("m", prediction, target, stimulus, trial=i)
    early = sharded.result()
    for i, (prediction, target, stimulus) in enumerate(trials):
        single.add("m", prediction, target, stimulus, trial=i)
        if i >= 6:
            sharded.add("m", prediction, target, stimulus, trial=i)
    late, reference = sharded.result(), single.result()
    assert early["n_trials"]["overall"] == 6 and late["n_trials"]["overall"] == 9
    for metric in ("single_trial_correlation", "correlation_to_average", "feve"):
        assert late[metric]["overall"] == pytest.approx(reference[metric]["overall"], abs=1e-12)
    arrays = neuron_scores.collect(sharded, {"m": np.arange(10)})["m"]
    np.testing.assert_allclose(
        arrays.correlation_to_average, single.neuron_scores("m").correlation_to_average, atol=1e-12
    )


def test_tune_malloc_sets_glibc_parameters_unless_the_environment_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_THRESHOLD_"):
        monkeypatch.delenv(name, raising=False)
    assert allocator.tune_malloc() == {
        "MALLOC_TRIM_THRESHOLD_": allocator.TRIM_THRESHOLD,
        "MALLOC_TOP_PAD_": allocator.TOP_PAD,
        "MALLOC_MMAP_THRESHOLD_": allocator.MMAP_THRESHOLD,
    }
    monkeypatch.setenv("MALLOC_TOP_PAD_", "0")
    assert "MALLOC_TOP_PAD_" not in allocator.tune_malloc()
