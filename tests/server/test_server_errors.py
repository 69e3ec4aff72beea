"""Bad input: a precise status and a message naming the field; the server keeps serving afterwards."""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
import pytest

from protos.sensorium.v1 import predictor_pb2, predictor_pb2_grpc, tensor_pb2


async def _stream_error(channel, requests) -> grpc.aio.AioRpcError:
    """Send requests on one StreamPredict call; return the error that ends it."""
    call = predictor_pb2_grpc.PredictorStub(channel).StreamPredict()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        for request in requests:
            await call.write(request)
        await call.done_writing()
        while await call.read() is not grpc.aio.EOF:
            pass
    return info.value


async def _still_serving(channel, kit) -> None:
    _, results = await kit.stream_trial(channel, kit.make_trial(seed=1, frames=6))
    assert [r.sequence for r in results] == list(range(6))


def _bad_frames(kit):
    trial = kit.make_trial(seed=3, frames=4)

    def frame(**changes):
        request = kit.frame_request(trial, 0)
        for field, value in changes.items():
            getattr(request.frame, field).CopyFrom(value)
        return request

    video = trial["video"][0]
    nan_behavior = trial["behavior"][0].copy()
    nan_behavior[1] = np.nan
    inf_video = video.copy()
    inf_video[3, 4] = np.inf
    short = kit.tensor(video)
    short.data = short.data[:-4]
    return {
        "shape": (frame(video=kit.tensor(video[:-1])), "frame.video", "shape"),
        "dtype": (
            frame(video=tensor_pb2.Tensor(shape=[36, 64], data=video.tobytes())),
            "frame.video.dtype",
            "",
        ),
        "unknown-dtype": (
            frame(behavior=tensor_pb2.Tensor(dtype=7, shape=[2], data=bytes(8))),
            "frame.behavior.dtype",
            "7",
        ),
        "byte-length": (frame(video=short), "frame.video.data", "bytes"),
        "nan": (frame(behavior=kit.tensor(nan_behavior)), "frame.behavior", "NaN"),
        "inf": (frame(video=kit.tensor(inf_video)), "frame.video", "non-finite"),
        "behavior-shape": (
            frame(pupil_center=kit.tensor(np.zeros(3, np.float32))),
            "frame.pupil_center",
            "shape",
        ),
    }


@pytest.mark.parametrize(
    "case", ["shape", "dtype", "unknown-dtype", "byte-length", "nan", "inf", "behavior-shape"]
)
def test_bad_frame_is_invalid_argument_naming_the_field(serving, kit, case: str) -> None:
    request, field, words = _bad_frames(kit)[case]

    async def scenario():
        async with serving() as srv:
            error = await _stream_error(srv.channel, [kit.open_request(), request])
            await _still_serving(srv.channel, kit)
            assert len(srv.app.plane.streams) == 0
            return error

    error = asyncio.run(scenario())
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in error.details() and words in error.details()


def test_sequence_gap_and_duplicate(serving, kit) -> None:
    trial = kit.make_trial(seed=4, frames=4)

    async def scenario():
        async with serving() as srv:
            gap = await _stream_error(
                srv.channel,
                [kit.open_request(), kit.frame_request(trial, 0), kit.frame_request(trial, 1, sequence=3)],
            )
            dup = await _stream_error(
                srv.channel,
                [kit.open_request(), kit.frame_request(trial, 0), kit.frame_request(trial, 1, sequence=0)],
            )
            late_start = await _stream_error(
                srv.channel, [kit.open_request(), kit.frame_request(trial, 0, sequence=1)]
            )
            await _still_serving(srv.channel, kit)
            return gap, dup, late_start

    for error, words in zip(asyncio.run(scenario()), ["gap", "duplicate", "gap"], strict=True):
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "frame.sequence" in error.details() and words in error.details()


def test_frame_before_open_and_second_open(serving, kit) -> None:
    trial = kit.make_trial(seed=5, frames=2)

    async def scenario():
        async with serving() as srv:
            early = await _stream_error(srv.channel, [kit.frame_request(trial, 0)])
            twice = await _stream_error(srv.channel, [kit.open_request(), kit.open_request()])
            await _still_serving(srv.channel, kit)
            return early, twice

    early, twice = asyncio.run(scenario())
    assert early.code() == twice.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "open" in early.details() and "already open" in twice.details()


def test_unknown_model_and_version(serving, kit) -> None:
    trial = kit.make_trial(seed=6, frames=8)

    def clip(model: str, version: int = 0):
        return predictor_pb2.PredictClipRequest(
            model=model,
            version=version,
            video=kit.tensor(trial["video"]),
            behavior=kit.tensor(trial["behavior"]),
            pupil_center=kit.tensor(trial["pupil_center"]),
        )

    async def scenario():
        async with serving() as srv:
            stub = predictor_pb2_grpc.PredictorStub(srv.channel)
            errors = []
            for request in (clip("no-such-mouse"), clip(kit.MOUSE, 9)):
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await stub.PredictClip(request)
                errors.append(info.value)
            errors.append(await _stream_error(srv.channel, [kit.open_request("no-such-mouse")]))
            errors.append(await _stream_error(srv.channel, [kit.open_request(kit.MOUSE, 7)]))
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.GetModel(predictor_pb2.GetModelRequest(model="nope"))
            errors.append(info.value)
            await _still_serving(srv.channel, kit)
            return errors

    errors = asyncio.run(scenario())
    assert all(e.code() == grpc.StatusCode.NOT_FOUND for e in errors)
    assert "no-such-mouse" in errors[0].details() and "version 9" in errors[1].details()
    assert "version 7" in errors[3].details() and "nope" in errors[4].details()


def test_bad_clip_inputs(serving, kit) -> None:
    trial = kit.make_trial(seed=8, frames=8)
    short = kit.make_trial(seed=8, frames=kit.RECEPTIVE_FIELD - 1)

    def clip(data, **changes):
        request = predictor_pb2.PredictClipRequest(
            model=kit.MOUSE,
            video=kit.tensor(data["video"]),
            behavior=kit.tensor(data["behavior"]),
            pupil_center=kit.tensor(data["pupil_center"]),
        )
        for field, value in changes.items():
            getattr(request, field).CopyFrom(value)
        return request

    cases = [
        (clip(trial, behavior=kit.tensor(trial["behavior"][:-1])), "behavior"),
        (clip(short), "receptive_field"),
        (clip(trial, video=kit.tensor(np.full((8, 36, 64), np.nan, np.float32))), "video"),
    ]

    async def scenario():
        async with serving() as srv:
            stub = predictor_pb2_grpc.PredictorStub(srv.channel)
            out = []
            for request, words in cases:
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await stub.PredictClip(request)
                out.append((info.value, words))
            return out

    for error, words in asyncio.run(scenario()):
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert words in error.details()


def test_oversize_message_is_resource_exhausted(serving, kit) -> None:
    trial = kit.make_trial(seed=9, frames=60)  # 60 x 36 x 64 float32 = 553 kB > 200 kB

    async def scenario():
        async with serving(max_message_bytes=200_000) as srv:
            stub = predictor_pb2_grpc.PredictorStub(srv.channel)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.PredictClip(
                    predictor_pb2.PredictClipRequest(
                        model=kit.MOUSE,
                        video=kit.tensor(trial["video"]),
                        behavior=kit.tensor(trial["behavior"]),
                        pupil_center=kit.tensor(trial["pupil_center"]),
                    )
                )
            await _still_serving(srv.channel, kit)
            return info.value

    error = asyncio.run(scenario())
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in error.details()


def test_more_streams_than_allowed(serving, kit) -> None:
    async def scenario():
        async with serving(max_streams=2) as srv:
            stub = predictor_pb2_grpc.PredictorStub(srv.channel)
            calls = [stub.StreamPredict() for _ in range(2)]
            for call in calls:
                await call.write(kit.open_request())
                assert (await call.read()).opened.stream_id
            error = await _stream_error(srv.channel, [kit.open_request()])
            for call in calls:
                await call.done_writing()
                assert await call.code() == grpc.StatusCode.OK
            await _still_serving(srv.channel, kit)  # the slots came back
            return error

    error = asyncio.run(scenario())
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "max_streams is 2" in error.details()


def test_client_vanishing_frees_the_session(serving, kit) -> None:
    trial = kit.make_trial(seed=10, frames=3)

    async def scenario():
        async with serving() as srv:
            call = predictor_pb2_grpc.PredictorStub(srv.channel).StreamPredict()
            await call.write(kit.open_request())
            await call.read()
            await call.write(kit.frame_request(trial, 0))
            await call.read()
            streams = srv.app.plane.streams
            assert len(streams) == 1
            call.cancel()  # the rig crashes mid-stream
            for _ in range(100):
                if len(streams) == 0:
                    break
                await asyncio.sleep(0.01)
            freed = len(streams) == 0
            gauge = srv.app.metrics.active_streams.labels(kit.MOUSE)._value.get()
            await _still_serving(srv.channel, kit)
            return freed, gauge

    freed, gauge = asyncio.run(scenario())
    assert freed and gauge == 0


def test_idle_stream_is_evicted(serving, kit) -> None:
    async def scenario():
        async with serving(idle_timeout_s=0.2) as srv:
            call = predictor_pb2_grpc.PredictorStub(srv.channel).StreamPredict()
            await call.write(kit.open_request())
            await call.read()
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call.read()  # no frame sent: the server ends the stream
            return info.value, len(srv.app.plane.streams)

    error, left = asyncio.run(scenario())
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED and "idle" in error.details()
    assert left == 0
