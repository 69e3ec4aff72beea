"""Tier-level scoring: per mouse, pooled over mice and per stimulus family, as plain dicts.

`Scoreboard` takes trials one at a time (streaming, for the scoring service, training and the demo);
`score_trials` computes the same dict with the batch reference functions (tests and benchmarks).

Result dict (JSON-ready; a value is None where the metric is undefined: no stimulus ids, no stimulus with
two or more repeats, or no neuron with FEV >= threshold)::

    {"single_trial_correlation": {"overall": x, "per_mouse": {mouse: x}},
     "correlation_to_average": {...same shape...},
     "feve": {...same shape...},
     "n_trials": {"overall": n, "per_mouse": {mouse: n}},
     "n_neurons": {"overall": n, "per_mouse": {mouse: n}},
     "per_family": {family: {...the five keys above, over that family's trials...}}}   # only families given

"overall" pools neurons: the mean over all neurons of all mice (FEVE: of all neurons with FEV >= 0.15).
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from models.benchmark import FEV_THRESHOLD, STIMULUS_FAMILIES
from models.metrics import batch, streaming

METRICS = ("single_trial_correlation", "correlation_to_average", "feve")
FAMILY_NAMES = tuple(STIMULUS_FAMILIES.values())


@dataclass
class NeuronScores:
    """Per-neuron metrics of one mouse (or of one mouse's trials of one stimulus family)."""

    single_trial_correlation: np.ndarray  # (N,)
    correlation_to_average: np.ndarray | None  # (N,); None without stimulus ids
    fev: np.ndarray | None  # (N,); None without a stimulus of >= 2 repeats; NaN for constant neurons
    feve: np.ndarray | None  # (N,); meaningful where fev >= FEV_THRESHOLD
    n_trials: int

    @property
    def n_neurons(self) -> int:
        return self.single_trial_correlation.shape[0]

    def mean(self, metric: str) -> float | None:
        """Mean over neurons (FEVE: over neurons with FEV >= threshold); None where undefined."""
        return _pooled_mean([self], metric)


class ScoredTrial(NamedTuple):
    """One trial for `score_trials`: (N, P) prediction and (N, T) target in standardised units."""

    mouse: str
    prediction: np.ndarray
    target: np.ndarray
    stimulus: Hashable | None = None
    family: str | None = None


def _pooled_mean(scores: Iterable[NeuronScores], metric: str) -> float | None:
    scores = list(scores)
    if metric == "feve":
        if any(s.fev is None for s in scores):
            scores = [s for s in scores if s.fev is not None]
        if not scores:
            return None
        fev = np.concatenate([s.fev for s in scores])  # type: ignore[misc]
        feve = np.concatenate([s.feve for s in scores])  # type: ignore[misc]
        value = batch.mean_feve(fev, feve, FEV_THRESHOLD)
        return None if np.isnan(value) else value
    arrays = [getattr(s, metric) for s in scores if getattr(s, metric) is not None]
    return float(np.mean(np.concatenate(arrays))) if arrays else None


def summarise(per_mouse: Mapping[str, NeuronScores]) -> dict[str, Any]:
    """Per-mouse and pooled means of every metric, plus trial and neuron counts (plain dict)."""
    out: dict[str, Any] = {}
    for metric in METRICS:
        out[metric] = {
            "overall": _pooled_mean(per_mouse.values(), metric),
            "per_mouse": {mouse: s.mean(metric) for mouse, s in per_mouse.items()},
        }
    for key, attr in (("n_trials", "n_trials"), ("n_neurons", "n_neurons")):
        counts = {mouse: int(getattr(s, attr)) for mouse, s in per_mouse.items()}
        out[key] = {"overall": sum(counts.values()), "per_mouse": counts}
    return out


def _check_family(family: str | None, where: str) -> None:
    if family is not None and family not in FAMILY_NAMES:
        raise ValueError(f"{where}: unknown stimulus family {family!r}; known: {', '.join(FAMILY_NAMES)}")


class Scoreboard:
    """Streaming scorer of one tier: ``add`` trials in any order, then ``result()``.

    Memory: O(N) per (mouse, family) plus 16 bytes x N x F per distinct stimulus (see `streaming`).
    ``add`` is atomic (ValueError leaves the board unchanged); two boards built from disjoint trials
    ``merge`` into the board of all of them.
    """

    def __init__(self, n_neurons: Mapping[str, int] | None = None) -> None:
        """``n_neurons``: optional expected neuron count per mouse; other mice are rejected when given."""
        self._expected = dict(n_neurons) if n_neurons is not None else None
        self._acc: dict[tuple[str, str | None], streaming.MouseAccumulator] = {}
        self._family_of: dict[tuple[str, Hashable], str | None] = {}  # (mouse, stimulus) -> family

    def add(
        self,
        mouse: str,
        prediction: np.ndarray,
        target: np.ndarray,
        stimulus: Hashable | None = None,
        family: str | None = None,
        *,
        trial: int | str | None = None,
    ) -> None:
        """Score one trial of ``mouse``. ``stimulus`` groups repeats (None: single-trial correlation only);
        ``family`` is a name of `models.benchmark.STIMULUS_FAMILIES` (None: no per-family split);
        ``trial`` only names the trial in error messages."""
        where = f"mouse {mouse} trial {trial}" if trial is not None else f"mouse {mouse}"
        _check_family(family, where)
        n_neurons = self._n_neurons(mouse, where)
        if stimulus is not None:
            known = self._family_of.get((mouse, stimulus), family)
            if known != family:
                raise ValueError(
                    f"{where}: stimulus {stimulus!r} was given family {known!r} before, now {family!r}"
                )
        acc = self._acc.get((mouse, family))
        if acc is None:
            if n_neurons is None:
                n_neurons = target.shape[0] if getattr(target, "ndim", 0) == 2 else 0
            acc = streaming.MouseAccumulator(n_neurons)
            acc.add(prediction, target, stimulus, where=where)  # raises before the board changes
            self._acc[(mouse, family)] = acc
        else:
            acc.add(prediction, target, stimulus, where=where)
        if stimulus is not None:
            self._family_of[(mouse, stimulus)] = family

    def _n_neurons(self, mouse: str, where: str) -> int | None:
        if self._expected is not None:
            if mouse not in self._expected:
                raise ValueError(f"{where}: unknown mouse {mouse!r}")
            return self._expected[mouse]
        for (m, _), acc in self._acc.items():
            if m == mouse:
                return acc.n_neurons
        return None

    def merge(self, other: Scoreboard) -> None:
        """Fold ``other`` (trials disjoint from this board's) into this board; ``other`` is unchanged.

        All checks run before anything changes, so a ValueError leaves this board as it was."""
        for (mouse, stimulus), family in other._family_of.items():
            known = self._family_of.get((mouse, stimulus), family)
            if known != family:
                raise ValueError(
                    f"mouse {mouse} stimulus {stimulus!r}: family {known!r} here, {family!r} there"
                )
        for (mouse, family), acc in other._acc.items():
            n = self._n_neurons(mouse, f"mouse {mouse}")
            if n is not None and n != acc.n_neurons:
                raise ValueError(f"mouse {mouse}: {acc.n_neurons} neurons there, {n} here")
            mine = self._acc.get((mouse, family))
            for stimulus, stim in acc.stimuli.items() if mine is not None else ():
                if stimulus in mine.stimuli and mine.stimuli[stimulus].n_frames != stim.n_frames:
                    raise ValueError(
                        f"mouse {mouse} stimulus {stimulus!r}: {stim.n_frames} scored frames there, "
                        f"{mine.stimuli[stimulus].n_frames} here"
                    )
        for key, acc in other._acc.items():
            if key in self._acc:
                self._acc[key].merge(acc)
            else:
                self._acc[key] = copy.deepcopy(acc)
        self._family_of.update(other._family_of)

    @property
    def mice(self) -> list[str]:
        return sorted({mouse for mouse, _ in self._acc})

    @property
    def families(self) -> list[str]:
        return sorted({family for _, family in self._acc if family is not None})

    @property
    def n_trials(self) -> int:
        return sum(acc.n_trials for acc in self._acc.values())

    def neuron_scores(
        self, mouse: str, family: str | None = None, *, all_families: bool = True
    ) -> NeuronScores:
        """Per-neuron metrics of ``mouse``: all its trials (default), or those of one ``family``
        (``all_families=False``; ``family=None`` then means the trials given without a family)."""
        if all_families:
            accs = [acc for (m, _), acc in self._acc.items() if m == mouse]
        else:
            accs = [acc for (m, f), acc in self._acc.items() if m == mouse and f == family]
        if not accs:
            raise KeyError(f"no trials of mouse {mouse!r}" + ("" if all_families else f" family {family!r}"))
        pearson = streaming.PearsonAccumulator(accs[0].n_neurons)
        for acc in accs:
            pearson.merge(acc.pearson)
        stimuli = list(itertools.chain.from_iterable(acc.stimuli.values() for acc in accs))
        return _streaming_scores(pearson, stimuli, sum(a.n_trials for a in accs))

    def result(self) -> dict[str, Any]:
        """Per-mouse, pooled and per-family metrics (see module docstring)."""
        out = summarise({mouse: self.neuron_scores(mouse) for mouse in self.mice})
        families = self.families
        if families:
            out["per_family"] = {
                family: summarise(
                    {
                        mouse: self.neuron_scores(mouse, family, all_families=False)
                        for mouse in self.mice
                        if (mouse, family) in self._acc
                    }
                )
                for family in families
            }
        return out


def _streaming_scores(
    pearson: streaming.PearsonAccumulator, stimuli: list[streaming.StimulusAccumulator], n_trials: int
) -> NeuronScores:
    to_average = streaming.correlation_to_average(stimuli) if stimuli else None
    fev = feve = None
    if any(s.repeats >= 2 for s in stimuli):
        fev, feve = streaming.fev_feve(stimuli)
    return NeuronScores(pearson.correlation(), to_average, fev, feve, n_trials)


def _batch_scores(trials: list[ScoredTrial]) -> NeuronScores:
    preds = [t.prediction for t in trials]
    targs = [t.target for t in trials]
    ids = [t.stimulus for t in trials]
    single = batch.single_trial_correlation(preds, targs)
    with_id = [i for i in ids if i is not None]
    to_average = batch.correlation_to_average(preds, targs, ids) if with_id else None
    fev = feve = None
    if any(n >= 2 for n in _counts(with_id).values()):
        fev, feve = batch.fev_feve(preds, targs, ids)
    return NeuronScores(single, to_average, fev, feve, len(trials))


def _counts(ids: list[Hashable]) -> dict[Hashable, int]:
    counts: dict[Hashable, int] = {}
    for i in ids:
        counts[i] = counts.get(i, 0) + 1
    return counts


def score_trials(trials: Iterable[ScoredTrial]) -> dict[str, Any]:
    """The `Scoreboard.result` dict computed with the batch reference functions (holds every trial)."""
    by_mouse: dict[str, list[ScoredTrial]] = {}
    for t in trials:
        _check_family(t.family, f"mouse {t.mouse}")
        by_mouse.setdefault(t.mouse, []).append(t)
    out = summarise({mouse: _batch_scores(ts) for mouse, ts in sorted(by_mouse.items())})
    families = sorted({t.family for ts in by_mouse.values() for t in ts if t.family is not None})
    if families:
        out["per_family"] = {}
        for family in families:
            per_mouse = {
                mouse: _batch_scores([t for t in ts if t.family == family])
                for mouse, ts in sorted(by_mouse.items())
                if any(t.family == family for t in ts)
            }
            out["per_family"][family] = summarise(per_mouse)
    return out
