"""ClipSampler: deterministic global batches, one mouse per batch, every trial once per epoch, exact shards."""

from __future__ import annotations

import numpy as np
import pytest

from models.training.sampler import ClipSampler, shard


def _sampler(global_batch: int = 4, seed: int = 0) -> ClipSampler:
    trials = {"m1": np.arange(10), "m2": np.arange(100, 106)}
    lengths = {"m1": np.full(10, 60), "m2": np.array([60, 50, 70, 60, 60, 40])}
    return ClipSampler(trials, lengths, clip_frames=30, global_batch=global_batch, seed=seed)


def test_every_trial_once_per_epoch_with_wraparound_padding() -> None:
    sampler = _sampler()
    batches = sampler.epoch(1)
    assert len(batches) == len(sampler) == 3 + 2  # ceil(10/4) + ceil(6/4)
    for session, trials in (("m1", set(range(10))), ("m2", set(range(100, 106)))):
        seen = np.concatenate([b.trials for b in batches if b.session == session])
        assert set(seen.tolist()) == trials
        assert len(seen) % 4 == 0  # padded to full batches
    assert all(len(b) == 4 for b in batches)


def test_mice_alternate_and_clips_fit_their_trials() -> None:
    sampler = _sampler()
    batches = sampler.epoch(2)
    assert [b.session for b in batches] == ["m1", "m2", "m1", "m2", "m1"]
    lengths = {**dict(zip(range(10), [60] * 10, strict=True)),
               **dict(zip(range(100, 106), [60, 50, 70, 60, 60, 40], strict=True))}  # fmt: skip
    for b in batches:
        for trial, start in zip(b.trials, b.starts, strict=True):
            assert start >= 0 and start + b.frames <= lengths[int(trial)]


def test_deterministic_in_seed_and_epoch() -> None:
    a, b = _sampler(seed=5).epoch(3), _sampler(seed=5).epoch(3)
    assert all(
        np.array_equal(x.trials, y.trials) and np.array_equal(x.starts, y.starts)
        for x, y in zip(a, b, strict=True)
    )
    other = _sampler(seed=5).epoch(4)
    assert any(not np.array_equal(x.starts, y.starts) for x, y in zip(a, other, strict=True))


def test_shards_partition_a_batch_in_order() -> None:
    batch = _sampler(global_batch=6).epoch(0)[0]
    parts = [shard(batch, k, 3) for k in range(3)]
    assert np.array_equal(np.concatenate([p.trials for p in parts]), batch.trials)
    assert np.array_equal(np.concatenate([p.starts for p in parts]), batch.starts)
    # two levels (process, then micro-batch) give the same parts as one level
    nested = [shard(shard(batch, r, 3), 0, 1) for r in range(3)]
    assert all(np.array_equal(p.trials, q.trials) for p, q in zip(parts, nested, strict=True))
    with pytest.raises(ValueError, match="does not split"):
        shard(batch, 0, 4)


def test_clip_longer_than_a_trial_is_refused() -> None:
    with pytest.raises(ValueError, match="shortest training trial"):
        ClipSampler({"m": np.arange(2)}, {"m": np.array([60, 20])}, clip_frames=30, global_batch=2, seed=0)
