"""`Scoreboard` split over neuron shards, scored in parallel threads.

Every metric is per neuron until the final mean, so the rows of a trial can be accumulated in independent
`models.metrics.scoreboard.Scoreboard`s (one per contiguous block of neurons), each in its own thread: numpy
releases the GIL in the accumulators' array work. At the end the per-neuron results of the shards are
concatenated in row order and summarised by `models.metrics.scoreboard.summarise`, so the numbers are those of a
single Scoreboard (same per-neuron values, same order of the means).
"""

from __future__ import annotations

import os
from collections.abc import Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final

import numpy as np

from models.metrics.scoreboard import NeuronScores, Scoreboard, summarise

MAX_SHARDS: Final = 4
_pool: ThreadPoolExecutor | None = None


def default_shards() -> int:
    return max(1, min(MAX_SHARDS, os.cpu_count() or 1))


def _shard_pool() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=MAX_SHARDS, thread_name_prefix="scoring-shard")
    return _pool


def _concat(parts: list[NeuronScores]) -> NeuronScores:
    def cat(name: str) -> np.ndarray | None:
        arrays = [getattr(p, name) for p in parts]
        return None if any(a is None for a in arrays) else np.concatenate(arrays)

    return NeuronScores(
        single_trial_correlation=np.concatenate([p.single_trial_correlation for p in parts]),
        correlation_to_average=cat("correlation_to_average"),
        fev=cat("fev"),
        feve=cat("feve"),
        n_trials=parts[0].n_trials,
    )


class ShardedScoreboard:
    """Same `add` / `result` as `Scoreboard` for known mice; ``shards`` threads per trial."""

    def __init__(self, n_neurons: dict[str, int], shards: int | None = None) -> None:
        shards = shards or default_shards()
        self._bounds = {
            m: np.unique(np.linspace(0, n, min(shards, n) + 1).astype(int)) for m, n in n_neurons.items()
        }
        self._boards = [
            Scoreboard({m: int(b[i + 1] - b[i]) for m, b in self._bounds.items() if i + 1 < len(b)})
            for i in range(shards)
        ]
        # finishing passes already run (result() and the per-neuron arrays share them); cleared by `add`
        self._scores: dict[tuple[str, str | None, bool], NeuronScores] = {}

    def add(
        self,
        mouse: str,
        prediction: np.ndarray,
        target: np.ndarray,
        stimulus: Hashable | None = None,
        family: str | None = None,
        *,
        trial: int | None = None,
    ) -> None:
        self._scores.clear()
        bounds = self._bounds[mouse]
        jobs = [(self._boards[i], slice(int(bounds[i]), int(bounds[i + 1]))) for i in range(len(bounds) - 1)]
        if len(jobs) == 1:
            board, rows = jobs[0]
            board.add(mouse, prediction[rows], target[rows], stimulus, family, trial=trial)
            return
        futures = [
            _shard_pool().submit(
                board.add, mouse, prediction[rows], target[rows], stimulus, family, trial=trial
            )
            for board, rows in jobs
        ]
        for future in futures:
            future.result()

    def _neuron_scores(self, mouse: str, family: str | None = None, per_family: bool = False) -> NeuronScores:
        key = (mouse, family if per_family else None, per_family)
        cached = self._scores.get(key)
        if cached is None:
            n_shards = len(self._bounds[mouse]) - 1
            cached = self._scores[key] = _concat(
                [
                    board.neuron_scores(mouse, family, all_families=not per_family)
                    for board in self._boards[:n_shards]
                ]
            )
        return cached

    def result(self) -> dict[str, Any]:
        """`Scoreboard.result()` of all shards together."""
        first = self._boards[0]
        mice = first.mice
        out = summarise({m: self._neuron_scores(m) for m in mice})
        families = first.families
        if families:
            out["per_family"] = {}
            for family in families:
                per_mouse = {}
                for m in mice:
                    try:
                        per_mouse[m] = self._neuron_scores(m, family, per_family=True)
                    except KeyError:  # no trial of this mouse in this family
                        continue
                out["per_family"][family] = summarise(per_mouse)
        return out
