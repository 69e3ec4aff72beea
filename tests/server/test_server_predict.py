"""Predictions: streamed == PredictClip == in-process onnxruntime; no state crosses concurrent streams."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from models import contract
from protos.sensorium.v1 import predictor_pb2, predictor_pb2_grpc


def test_stream_equals_clip_and_in_process(serving, kit, in_process) -> None:
    trial = kit.make_trial(seed=7, frames=24)
    r = kit.RECEPTIVE_FIELD
    clip_name = contract.repository_model_name(kit.MOUSE, "clip")
    reference = in_process(clip_name, 2, {k: v[None] for k, v in trial.items()})[0][0]  # newest version = 2

    async def scenario():
        async with serving() as srv:
            stub = predictor_pb2_grpc.PredictorStub(srv.channel)
            clip = await stub.PredictClip(
                predictor_pb2.PredictClipRequest(
                    model=kit.MOUSE,
                    video=kit.tensor(trial["video"].astype(np.uint8)),  # uint8 frames accepted
                    behavior=kit.tensor(trial["behavior"]),
                    pupil_center=kit.tensor(trial["pupil_center"]),
                )
            )
            opened, results = await kit.stream_trial(srv.channel, trial)
            return clip, opened, results

    clip, opened, results = asyncio.run(scenario())
    assert (clip.version, clip.first_frame, opened.version, opened.receptive_field) == (2, r - 1, 2, r)
    clip_out = kit.to_array(clip.responses)
    assert clip_out.shape == (24 - r + 1, kit.N_NEURONS)
    np.testing.assert_allclose(clip_out, reference, atol=1e-5, rtol=0)
    streamed = np.stack([kit.to_array(res.responses) for res in results])
    assert [res.sequence for res in results] == list(range(24))
    assert [res.warm for res in results] == [i >= r - 1 for i in range(24)]
    assert np.abs(streamed[r - 1 :] - clip_out).max() <= 1e-4
    assert np.abs(streamed[r - 1 :] - reference).max() <= 1e-4
    assert all(res.compute_seconds > 0 and res.server_seconds >= res.compute_seconds for res in results)


@pytest.mark.parametrize("workers", [1, 3], ids=["1-worker", "3-workers"])
@pytest.mark.parametrize("batching", [True, False], ids=["batching", "no-batching"])
def test_interleaved_streams_equal_each_alone(serving, kit, batching: bool, workers: int) -> None:
    trials = [kit.make_trial(seed=100 + i, frames=16) for i in range(4)]

    async def scenario():
        async with serving(batching=batching, max_batch_wait_ms=2.0, step_workers=workers) as srv:
            alone = [(await kit.stream_trial(srv.channel, t))[1] for t in trials]
            together = await asyncio.gather(*(kit.stream_trial(srv.channel, t, in_flight=4) for t in trials))
            return alone, [res for _, res in together]

    alone, together = asyncio.run(scenario())
    for a, b in zip(alone, together, strict=True):
        got = np.stack([kit.to_array(x.responses) for x in b])
        want = np.stack([kit.to_array(x.responses) for x in a])
        np.testing.assert_allclose(got, want, atol=1e-6, rtol=0)
    batch_sizes = {res.batch_size for results in together for res in results}
    if batching and workers == 1:  # with idle workers, frames run in parallel instead of waiting to batch
        assert max(batch_sizes) > 1, "concurrent streams never shared an onnxruntime call"
    elif not batching:
        assert batch_sizes == {1}


def test_lone_stream_is_not_held_for_the_batch_wait(serving, kit) -> None:
    """With the longest allowed batch wait, a lone stream's frames still go straight to onnxruntime (workers)."""
    trial = kit.make_trial(seed=11, frames=30)

    async def scenario():
        async with serving(batching=True, max_batch_wait_ms=10.0, inline_lone_stream=False) as srv:
            return (await kit.stream_trial(srv.channel, trial))[1]

    results = asyncio.run(scenario())
    queue_ms = np.array([res.queue_seconds for res in results]) * 1e3
    assert {res.batch_size for res in results} == {1}
    assert np.median(queue_ms) < 2.0, f"lone stream queued {np.median(queue_ms):.2f} ms (max wait 10 ms)"


def test_only_stream_runs_inline_and_equals_the_worker_path(serving, kit) -> None:
    """The server's only stream skips the queue (queue_seconds exactly 0); with a second stream open, frames go
    through the workers again; both paths give the same numbers."""
    trial = kit.make_trial(seed=12, frames=12)
    other = kit.make_trial(seed=13, frames=12)

    async def scenario():
        async with serving(step_workers=2) as srv:
            _, inline = await kit.stream_trial(srv.channel, trial)
            together = await asyncio.gather(
                kit.stream_trial(srv.channel, trial), kit.stream_trial(srv.channel, other)
            )
        async with serving(step_workers=2, inline_lone_stream=False) as srv:
            _, pooled = await kit.stream_trial(srv.channel, trial)
        return inline, together[0][1], pooled

    inline, shared, pooled = asyncio.run(scenario())
    assert all(res.queue_seconds == 0.0 and res.batch_size == 1 for res in inline)
    assert all(res.queue_seconds > 0.0 for res in pooled)
    assert any(res.queue_seconds > 0.0 for res in shared), "two open streams still ran inline"
    want = np.stack([kit.to_array(x.responses) for x in inline])
    np.testing.assert_array_equal(np.stack([kit.to_array(x.responses) for x in pooled]), want)
    # a batch of two may take other kernels than a batch of one: equal to float32 rounding
    np.testing.assert_allclose(np.stack([kit.to_array(x.responses) for x in shared]), want, atol=1e-6, rtol=0)
