"""Streaming accumulators and Scoreboard: equal to the batch functions, any order, merge, bounded memory."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.metrics import (
    METRICS,
    MouseAccumulator,
    Scoreboard,
    ScoredTrial,
    fev_feve,
    score_trials,
    single_trial_correlation,
)
from models.metrics import correlation_to_average as batch_correlation_to_average

TierFactory = Callable[..., list[ScoredTrial]]

MIXED = (
    ("drifting_gabor", 300, 4),
    ("drifting_gabor", 300, 1),  # a stimulus seen once: correlation to average yes, FEVE no
    ("gaussian_dots", 315, 3),
    ("flashing_images", 120, 2),  # shorter than 300 frames
)


def _board(trials: list[ScoredTrial], order: np.ndarray | None = None) -> Scoreboard:
    board = Scoreboard()
    for i in order if order is not None else range(len(trials)):
        t = trials[i]
        board.add(t.mouse, t.prediction, t.target, t.stimulus, t.family, trial=int(i))
    return board


def _flatten(result: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in result.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}/"))
        else:
            flat[prefix + key] = value
    return flat


def assert_results_close(a: dict[str, Any], b: dict[str, Any], tol: float = 1e-6) -> None:
    fa, fb = _flatten(a), _flatten(b)
    assert fa.keys() == fb.keys()
    for key, value in fa.items():
        if value is None or fb[key] is None:
            assert value is None and fb[key] is None, key
        else:
            assert value == pytest.approx(fb[key], rel=tol, abs=tol), key


@pytest.mark.parametrize("offset", [0.0, 1e4])
def test_streaming_equals_batch_in_random_order(
    rng: np.random.Generator, tier_factory: TierFactory, offset: float
) -> None:
    trials = tier_factory(rng=rng, stimuli=MIXED, singles=2, offset=offset)
    board = _board(trials, rng.permutation(len(trials)))
    reference = score_trials(trials)
    assert_results_close(board.result(), reference)
    assert set(reference["per_family"]) == {"drifting_gabor", "gaussian_dots", "flashing_images"}
    json.dumps(board.result(), allow_nan=False)  # plain, JSON-ready values
    # per-neuron arrays too
    for mouse in board.mice:
        mine = [t for t in trials if t.mouse == mouse]
        preds, targs, ids = [t.prediction for t in mine], [t.target for t in mine], [t.stimulus for t in mine]
        scores = board.neuron_scores(mouse)
        np.testing.assert_allclose(
            scores.single_trial_correlation, single_trial_correlation(preds, targs), atol=1e-6
        )
        np.testing.assert_allclose(
            scores.correlation_to_average, batch_correlation_to_average(preds, targs, ids), atol=1e-6
        )
        fev, feve = fev_feve(preds, targs, ids)
        np.testing.assert_allclose(scores.fev, fev, atol=1e-6)
        keep = fev >= 0.15
        np.testing.assert_allclose(scores.feve[keep], feve[keep], rtol=1e-6, atol=1e-6)


def test_streaming_equals_batch_across_neuron_blocks(
    rng: np.random.Generator, tier_factory: TierFactory
) -> None:
    """Enough neurons that the accumulators work through several cache-sized blocks."""
    trials = tier_factory(rng=rng, mice={"big": 1100}, stimuli=(("natural_movie", 300, 3),), singles=1)
    assert_results_close(_board(trials, rng.permutation(len(trials))).result(), score_trials(trials))


@st.composite
def tiers(draw: st.DrawFn) -> tuple[dict[str, Any], np.random.Generator]:
    """Keyword arguments of `make_tier` (mice, stimuli of random lengths and repeats, scales) and its rng."""
    stimuli = draw(
        st.lists(
            st.tuples(
                st.sampled_from([None, "natural_movie", "gaussian_dots", "random_dot_kinematogram"]),
                st.integers(51, 330),  # trial length: the skip + at least one frame ... beyond 300
                st.integers(1, 4),  # repeats
            ),
            min_size=1,
            max_size=4,
        )
    )
    n_mice = draw(st.integers(1, 2))
    mice = {f"mouse{i}": draw(st.integers(1, 6)) for i in range(n_mice)}
    seed = draw(st.integers(0, 2**32 - 1))
    scale = draw(st.sampled_from([0.01, 1.0, 100.0]))
    offset = draw(st.sampled_from([0.0, -3.0, 50.0, 1e5]))
    singles = draw(st.integers(0, 2))
    kwargs = dict(mice=mice, stimuli=stimuli, noise=scale, offset=offset, singles=singles)
    return kwargs, np.random.default_rng(seed)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=tiers())
def test_streaming_equals_batch_property(
    case: tuple[dict[str, Any], np.random.Generator], tier_factory: TierFactory
) -> None:
    kwargs, rng = case
    trials = tier_factory(rng=rng, **kwargs)
    board = _board(trials, rng.permutation(len(trials)))
    assert_results_close(board.result(), score_trials(trials))


def test_merge_equals_sequential(rng: np.random.Generator, tier_factory: TierFactory) -> None:
    trials = tier_factory(rng=rng, stimuli=MIXED, singles=3)
    parts = rng.integers(0, 3, size=len(trials))  # the same stimulus lands in several parts
    boards = [_board([t for t, p in zip(trials, parts, strict=True) if p == k]) for k in range(3)]
    before = boards[1].result()
    merged = Scoreboard()
    for board in boards:
        merged.merge(board)
    assert boards[1].result() == before  # merge leaves its argument unchanged
    assert merged.n_trials == len(trials)
    assert_results_close(merged.result(), _board(trials).result(), tol=1e-9)


def test_failed_add_changes_nothing(rng: np.random.Generator, tier_factory: TierFactory) -> None:
    trials = tier_factory(rng=rng, stimuli=MIXED)
    board = _board(trials)
    before = board.result()
    t = trials[0]
    bad_values = t.prediction.copy()
    bad_values[-1, -1] = np.nan  # found in the last block, after the first blocks were processed
    cases = [
        (dict(prediction=bad_values), "prediction holds nan"),
        (dict(prediction=t.prediction[:-1]), "prediction has"),
        (dict(prediction=t.prediction[:, 1:]), "frames for a"),
        (dict(family="natural_movie"), "was given family 'drifting_gabor' before"),
        (dict(family="dots"), "unknown stimulus family 'dots'"),
    ]
    for change, message in cases:
        args = dict(
            mouse=t.mouse, prediction=t.prediction, target=t.target, stimulus=t.stimulus, family=t.family
        )
        args.update(change)
        with pytest.raises(ValueError, match=message):
            board.add(**args, trial=0)
        assert board.result() == before
    n_target = t.target.shape[0]
    with pytest.raises(
        ValueError, match=f"mouse {t.mouse}: target has {n_target - 1} neurons, expected {n_target}"
    ):
        board.add(t.mouse, t.prediction[1:], t.target[1:])
    with pytest.raises(
        ValueError, match="stimulus 'stim3' has 250 scored frames here and 70 in an earlier repeat"
    ):
        board.add(t.mouse, t.prediction, t.target, "stim3", "flashing_images")
    assert board.result() == before


def test_memory_does_not_grow_with_trials(rng: np.random.Generator, tier_factory: TierFactory) -> None:
    def state_bytes(acc: MouseAccumulator) -> int:
        arrays = [getattr(acc.pearson, k) for k in ("mean_x", "mean_y", "m2_x", "m2_y", "c_xy")]
        for s in acc.stimuli.values():
            arrays += [s.sum_x, s.sum_y, s.noise_m2, s.squared_error]
        return sum(a.nbytes for a in arrays)

    sizes = []
    for repeats in (2, 20):
        trials = tier_factory(
            rng=rng, mice={"m": 9}, stimuli=(("natural_movie", 300, repeats),) * 3, singles=repeats
        )
        acc = MouseAccumulator(9)
        for t in trials:
            acc.add(t.prediction, t.target, t.stimulus)
        sizes.append(state_bytes(acc))
    assert sizes[0] == sizes[1] == 9 * 8 * 5 + 3 * (2 * 9 * 250 * 8 + 2 * 9 * 8)


def test_per_family_split(rng: np.random.Generator, tier_factory: TierFactory) -> None:
    trials = tier_factory(rng=rng, stimuli=MIXED)
    result = _board(trials).result()
    for family in ("drifting_gabor", "gaussian_dots", "flashing_images"):
        alone = _board([t for t in trials if t.family == family]).result()
        for metric in (*METRICS, "n_trials", "n_neurons"):
            assert result["per_family"][family][metric] == alone[metric]
    assert result["n_trials"]["overall"] == len(trials)


def test_result_shape_without_repeats(rng: np.random.Generator, tier_factory: TierFactory) -> None:
    trials = tier_factory(rng=rng, stimuli=(), singles=3)
    result = _board(trials).result()
    assert "per_family" not in result
    assert result["correlation_to_average"] == {
        "overall": None,
        "per_mouse": {"mouseA": None, "mouseB": None},
    }
    assert result["feve"]["overall"] is None
    assert result["n_neurons"] == {"overall": 19, "per_mouse": {"mouseA": 12, "mouseB": 7}}
    assert 0.2 < result["single_trial_correlation"]["overall"] < 1.0
    assert_results_close(result, score_trials(trials))


def test_pooled_is_mean_over_all_neurons(rng: np.random.Generator, tier_factory: TierFactory) -> None:
    trials = tier_factory(rng=rng)
    board = _board(trials)
    per_neuron = np.concatenate([board.neuron_scores(m).single_trial_correlation for m in board.mice])
    assert board.result()["single_trial_correlation"]["overall"] == pytest.approx(
        per_neuron.mean(), rel=1e-12
    )


def test_expected_neurons_per_mouse(rng: np.random.Generator) -> None:
    board = Scoreboard(n_neurons={"known": 4})
    target = rng.normal(size=(4, 300)).astype(np.float32)
    with pytest.raises(ValueError, match="mouse other trial 5: unknown mouse 'other'"):
        board.add("other", target, target, trial=5)
    with pytest.raises(ValueError, match="mouse known: target has 3 neurons, expected 4"):
        board.add("known", target[:3], target[:3])
    board.add("known", target, target)
    assert board.result()["single_trial_correlation"]["overall"] == pytest.approx(1.0)


def test_merge_rejects_incompatible_boards(rng: np.random.Generator, tier_factory: TierFactory) -> None:
    trials = tier_factory(rng=rng, stimuli=MIXED)
    board = _board(trials[:5])
    before = board.result()
    t = trials[0]
    other_family = Scoreboard()
    other_family.add(t.mouse, t.prediction, t.target, t.stimulus, "natural_movie")
    fewer_neurons = Scoreboard()
    fewer_neurons.add(t.mouse, t.prediction[1:], t.target[1:])
    for other, message in (
        (
            other_family,
            f"mouse {t.mouse} stimulus '{t.stimulus}': family 'drifting_gabor' here, 'natural_movie'",
        ),
        (fewer_neurons, f"mouse {t.mouse}: {t.target.shape[0] - 1} neurons there, {t.target.shape[0]} here"),
    ):
        with pytest.raises(ValueError, match=message):
            board.merge(other)
        assert board.result() == before
    expected = Scoreboard(n_neurons={t.mouse: t.target.shape[0]})
    with pytest.raises(ValueError, match="unknown mouse 'someone'"):
        other = Scoreboard()
        other.add("someone", t.prediction, t.target)
        expected.merge(other)
