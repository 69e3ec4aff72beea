"""The Predictor client library against a fake servicer on a real grpc.aio server."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from client.errors import InvalidArgumentError, NotFoundError, StreamClosedError, UnavailableError
from client.predictor import AsyncPredictorClient, PredictorClient, channel_options
from client.tensors import from_tensor, to_tensor


def _trial(rng: np.random.Generator, t: int = 12) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    video = rng.integers(0, 256, size=(t, 36, 64), dtype=np.uint8)
    behavior = rng.standard_normal((t, 2)).astype(np.float32)
    pupil = rng.standard_normal((t, 2)).astype(np.float32)
    return video, behavior, pupil


@pytest.mark.parametrize("dtype", [np.float32, np.uint8, np.float64])
def test_tensor_round_trip_is_bytes_exact(dtype: type, rng: np.random.Generator) -> None:
    a = (rng.random((3, 4, 5)) * 200).astype(dtype)
    t = to_tensor(a)
    assert len(t.data) == a.nbytes and list(t.shape) == [3, 4, 5]
    np.testing.assert_array_equal(from_tensor(t), a)


def test_tensor_decode_names_a_bad_byte_length() -> None:
    t = to_tensor(np.zeros((2, 3), np.float32))
    t.data = t.data[:-1]
    with pytest.raises(ValueError, match=r"responses: 23 bytes for shape \(2, 3\)"):
        from_tensor(t, name="responses")


def test_channel_options_round_robin() -> None:
    assert ("grpc.lb_policy_name", "round_robin") in channel_options(round_robin=True)
    assert all(k != "grpc.lb_policy_name" for k, _ in channel_options())


def test_list_and_get_models(fake_server, fake) -> None:
    with PredictorClient(fake_server.target) as client:
        client.wait_ready()
        (model,) = client.list_models()
        assert model.name == fake.MODEL and model.latest_version == 1
        assert model.version().unit_ids.size == 0  # ListModels leaves them out
        full = client.get_model(fake.MODEL).version(1)
        np.testing.assert_array_equal(full.unit_ids, fake.UNIT_IDS)
        assert full.receptive_field == fake.R and full.provenance == {"data_seed": 1}
        with pytest.raises(NotFoundError, match="GetModel: NOT_FOUND: model 'nope' not found"):
            client.get_model("nope")


def test_predict_clip_returns_the_clip_graph_output(fake_server, fake, rng: np.random.Generator) -> None:
    video, behavior, pupil = _trial(rng)
    with PredictorClient(fake_server.target) as client:
        clip = client.predict_clip(fake.MODEL, video, behavior, pupil)
        assert clip.first_frame == fake.R - 1 and clip.responses.shape == (12 - fake.R + 1, fake.NEURONS)
        np.testing.assert_allclose(clip.responses, fake.responses(video, behavior), rtol=1e-6)
        with pytest.raises(InvalidArgumentError, match="video: bad shape"):
            client.predict_clip(fake.MODEL, video[:2], behavior[:2], pupil[:2])


def test_stream_equals_clip_once_warm_and_reports_timings(
    fake_server, fake, rng: np.random.Generator
) -> None:
    video, behavior, pupil = _trial(rng)
    expected = fake.responses(video, behavior)
    with (
        PredictorClient(fake_server.target) as client,
        client.open_stream(fake.MODEL, stream_id="rig-1") as s,
    ):
        assert s.info.stream_id == "rig-1" and s.info.n_neurons == fake.NEURONS
        for t in range(video.shape[0]):
            r = s.send(video[t], behavior[t], pupil[t])
            assert r.sequence == t and r.warm == (t >= fake.R - 1)
            assert r.round_trip_seconds > 0 and r.encode_seconds > 0 and r.decode_seconds >= 0
            assert r.total_seconds >= r.round_trip_seconds >= r.server_seconds
            if r.warm:
                np.testing.assert_allclose(r.responses, expected[t - fake.R + 1], rtol=1e-6)
    with pytest.raises(StreamClosedError):
        s.send(video[0], behavior[0], pupil[0])


def test_stream_errors_are_typed(fake_server, fake, rng: np.random.Generator) -> None:
    with PredictorClient(fake_server.target) as client:
        with pytest.raises(NotFoundError, match="StreamPredict open: NOT_FOUND"):
            client.open_stream("nope")
        video, behavior, pupil = _trial(rng, 2)
        with client.open_stream(fake.MODEL) as s:
            s.send(video[0], behavior[0], pupil[0])
            s.sequence = 5  # a gap the server must reject
            with pytest.raises(
                InvalidArgumentError, match="frame 5: INVALID_ARGUMENT: sequence: expected 1, got 5"
            ):
                s.send(video[1], behavior[1], pupil[1])


def test_unreachable_server_is_unavailable() -> None:
    with PredictorClient("127.0.0.1:1", timeout=2) as client:
        with pytest.raises(UnavailableError):
            client.wait_ready(timeout=0.3)
        with pytest.raises(UnavailableError, match="ListModels: UNAVAILABLE"):
            client.list_models()


def test_async_client_matches_sync(fake_server, fake, rng: np.random.Generator) -> None:
    video, behavior, pupil = _trial(rng)
    expected = fake.responses(video, behavior)

    async def run() -> list[np.ndarray]:
        async with AsyncPredictorClient(fake_server.target) as client:
            assert (await client.get_model(fake.MODEL)).name == fake.MODEL
            clip = await client.predict_clip(fake.MODEL, video, behavior, pupil)
            np.testing.assert_allclose(clip.responses, expected, rtol=1e-6)
            with pytest.raises(NotFoundError):
                await client.open_stream("nope")
            out = []
            async with await client.open_stream(fake.MODEL) as s:
                for t in range(video.shape[0]):
                    out.append((await s.send(video[t], behavior[t], pupil[t])).responses)
            return out

    out = asyncio.run(run())
    np.testing.assert_allclose(np.stack(out[fake.R - 1 :]), expected, rtol=1e-6)


def test_dns_target_with_round_robin(fake_server, fake) -> None:
    with PredictorClient(f"dns:///{fake_server.target}", round_robin=True) as client:
        client.wait_ready(timeout=5)
        assert [m.name for m in client.list_models()] == [fake.MODEL]


def test_unknown_version_is_a_lookup_error(fake_server, fake) -> None:
    with PredictorClient(fake_server.target) as client:
        info = client.get_model(fake.MODEL)
    with pytest.raises(LookupError, match=r"has no version 7 \(has \[1\]\)"):
        info.version(7)
