"""Which clips go into which batch: deterministic in (seed, epoch), identical on every process.

The sampler builds *global* batches (all clips of one optimizer step across all processes and micro-batches,
one mouse per batch: each mouse has its own readout and neuron count). A process takes its slice with
`shard`, so one global batch split over 2 DDP processes is the same set of clips as that global batch split into
2 gradient-accumulation micro-batches in one process: this is what makes DDP and a single process comparable
(tests/training). Like torch's DistributedSampler, every global batch is full: a mouse's shuffled trial list
is padded by wrapping around. Mice take turns (round robin) so the shared core sees all of them evenly.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ClipBatch:
    """Clips of one mouse: trial `trials[i]` from frame `starts[i]`, `frames` frames long."""

    session: str
    trials: np.ndarray  # int64 trial indices (file indices of the mouse folder)
    starts: np.ndarray  # int64 first frame of each clip
    frames: int

    def __len__(self) -> int:
        return len(self.trials)


def shard(batch: ClipBatch, part: int, parts: int) -> ClipBatch:
    """Contiguous slice `part` of `parts` equal slices (the batch size must divide evenly)."""
    if len(batch) % parts:
        raise ValueError(f"batch of {len(batch)} clips does not split into {parts} equal parts")
    size = len(batch) // parts
    cut = slice(part * size, (part + 1) * size)
    return ClipBatch(batch.session, batch.trials[cut], batch.starts[cut], batch.frames)


class ClipSampler:
    """Random clips of the training trials of every mouse, one pass over each mouse's trials per epoch."""

    def __init__(
        self,
        trials: Mapping[str, np.ndarray],
        lengths: Mapping[str, np.ndarray],
        clip_frames: int,
        global_batch: int,
        seed: int,
    ) -> None:
        """`trials[s]`: training trial indices of mouse s; `lengths[s]`: their true lengths (frames)."""
        if global_batch < 1:
            raise ValueError(f"global batch must be >= 1, got {global_batch}")
        self.sessions = sorted(trials)
        if not self.sessions:
            raise ValueError("no mice to sample from")
        self.trials = {s: np.asarray(trials[s], dtype=np.int64) for s in self.sessions}
        self.lengths = {s: np.asarray(lengths[s], dtype=np.int64) for s in self.sessions}
        for s in self.sessions:
            if len(self.trials[s]) == 0:
                raise ValueError(f"mouse {s} has no training trials")
            if len(self.lengths[s]) != len(self.trials[s]):
                raise ValueError(
                    f"mouse {s}: {len(self.lengths[s])} lengths for {len(self.trials[s])} trials"
                )
        shortest = min(int(self.lengths[s].min()) for s in self.sessions)
        if clip_frames > shortest:
            raise ValueError(
                f"clip of {clip_frames} frames is longer than the shortest training trial ({shortest})"
            )
        self.clip_frames = clip_frames
        self.global_batch = global_batch
        self.seed = seed

    def batches_per_mouse(self) -> dict[str, int]:
        return {s: -(-len(self.trials[s]) // self.global_batch) for s in self.sessions}

    def __len__(self) -> int:
        return sum(self.batches_per_mouse().values())

    def epoch(self, epoch: int) -> list[ClipBatch]:
        """Global batches of `epoch`, in training order."""
        rng = np.random.default_rng([self.seed, epoch])
        per_mouse: list[list[ClipBatch]] = []
        for s in self.sessions:
            n = len(self.trials[s])
            order = rng.permutation(n)
            total = -(-n // self.global_batch) * self.global_batch
            order = np.resize(order, total)  # wrap around to fill the last batch
            starts = rng.integers(0, self.lengths[s][order] - self.clip_frames + 1)
            per_mouse.append(
                [
                    ClipBatch(
                        s,
                        self.trials[s][order[i : i + self.global_batch]],
                        starts[i : i + self.global_batch].astype(np.int64),
                        self.clip_frames,
                    )
                    for i in range(0, total, self.global_batch)
                ]
            )
        rounds = itertools.zip_longest(*per_mouse)
        return [batch for round_ in rounds for batch in round_ if batch is not None]
