"""Hypothesis fuzzing of every RPC: valid-looking messages with wrong dtypes / shapes / huge dims / odd sequence
numbers / unknown names, and raw garbage bytes sent with identity serializers. Each answer must have a status of
the right class (never UNKNOWN / INTERNAL / UNAVAILABLE for bad input), the server stays up, no stream session
leaks, and no rejected submission reaches the database.

Short by default; SENSORIUM_FUZZ_EXAMPLES=5000 (per test) for a long run.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_support import ThreadedServer, sync_channel

from models.benchmark import FRAME_HEIGHT, FRAME_WIDTH
from protos.inference import grpc_predict_v2_pb2 as kserve_pb2
from protos.sensorium.v1 import predictor_pb2, scoring_pb2, tensor_pb2

EXAMPLES = int(os.environ.get("SENSORIUM_FUZZ_EXAMPLES", "100"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # no .hypothesis/ folder in the repository
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
# Status codes a bad request may get. Everything else (UNKNOWN, INTERNAL, UNAVAILABLE, DEADLINE_EXCEEDED, ...)
# means the server mishandled it.
ACCEPTABLE = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.OUT_OF_RANGE,
}
TIMEOUT_S = 20.0
MOUSE = "dynamic29515-10-12-Video-0123456789abcdef0123456789abcdef"  # tests/server/conftest.py
HUGE_DIMS = [2**31, 2**32, 2**40, 2**62, 2**63 - 1, -1, -(2**63)]


@pytest.fixture(scope="module")
def fuzz_server(model_repo: Path, scoring_dataset: Path, tmp_path_factory: pytest.TempPathFactory):
    from server.config import Settings
    from server.scoring.db import ScoreStore

    db_url = f"sqlite:///{tmp_path_factory.mktemp('fuzz-db') / 'scores.sqlite'}"
    server = ThreadedServer(
        Settings(
            repo=model_repo,
            host="127.0.0.1",
            port=0,
            http_port=-1,
            providers="cpu",
            intra_op_threads=1,
            max_streams=8,
            max_message_bytes=4 * 1024 * 1024,
            truth_dir=scoring_dataset / "truth",
            db_url=db_url,
            submissions_per_day=0,
        )
    )
    channel = sync_channel(server.target)
    store = ScoreStore(db_url)
    rows = store.row_counts()
    yield server, channel
    try:
        assert _serving(channel), "the server stopped serving during the fuzz run"
        assert _no_streams(server), f"{server.open_streams()} stream sessions leaked"
        assert store.row_counts() == rows, "a rejected submission reached the database"
    finally:
        store.close()
        channel.close()
        server.stop()


def _serving(channel: grpc.Channel) -> bool:
    check = channel.unary_unary(
        "/grpc.health.v1.Health/Check",
        health_pb2.HealthCheckRequest.SerializeToString,
        health_pb2.HealthCheckResponse.FromString,
    )
    return check(health_pb2.HealthCheckRequest(), timeout=5).status == health_pb2.HealthCheckResponse.SERVING


def _no_streams(server: ThreadedServer, wait_s: float = 3.0) -> bool:
    deadline = time.monotonic() + wait_s
    while server.open_streams():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _status(fn) -> grpc.StatusCode:
    try:
        fn()
        return grpc.StatusCode.OK
    except grpc.RpcError as exc:
        assert exc.code() in ACCEPTABLE, f"{exc.code().name}: {exc.details()}"
        assert exc.details(), f"{exc.code().name} without a message"
        return exc.code()


def _unary(channel: grpc.Channel, method: str, response_cls):
    return channel.unary_unary(method, lambda m: m.SerializeToString(), response_cls.FromString)


# ---- strategies ---------------------------------------------------------------------------------------------

names = st.one_of(
    st.sampled_from([MOUSE, f"{MOUSE}-clip", f"{MOUSE}-step", "", "../../etc/passwd", "a" * 300, "\x00"]),
    st.text(max_size=40),
)
versions = st.one_of(st.integers(-3, 4), st.integers(-(2**63), 2**63 - 1))
dims = st.one_of(st.integers(-2, 70), st.sampled_from(HUGE_DIMS))
dtypes = st.one_of(st.sampled_from([0, 1, 2, 3]), st.integers(-(2**31), 2**31 - 1))
floats = st.floats(allow_nan=True, allow_infinity=True, width=32)


@st.composite
def tensors(draw, shape=None) -> tensor_pb2.Tensor:
    """Random dtype and shape with random bytes, or a shape (drawn or given) with bytes of the right length."""
    dtype = draw(dtypes)
    if shape is None:
        shape = draw(st.lists(dims, max_size=6))
    count = int(np.prod([d for d in shape if d >= 0] or [0], dtype=object))
    itemsize = {1: 4, 2: 1, 3: 8}.get(dtype, 4)
    if dtype in (1, 2, 3) and 0 <= count * itemsize <= 64 * 1024 and draw(st.booleans()):
        if dtype == 1 and draw(st.booleans()):
            values = draw(st.lists(floats, min_size=min(count, 8), max_size=min(count, 8)))
            array = np.resize(np.asarray(values or [0.0], np.float32), count)
            data = array.astype("<f4").tobytes()
        else:
            data = draw(st.binary(min_size=count * itemsize, max_size=count * itemsize))
    else:
        data = draw(st.binary(max_size=256))
    return tensor_pb2.Tensor(dtype=dtype, shape=shape, data=data)


def frame_tensors(draw, kind: str) -> tensor_pb2.Tensor:
    plausible = {"video": [FRAME_HEIGHT, FRAME_WIDTH], "behavior": [2], "pupil_center": [2]}[kind]
    return draw(st.one_of(tensors(), tensors(shape=plausible)))


@st.composite
def stream_messages(draw) -> list[predictor_pb2.StreamPredictRequest]:
    out = []
    for _ in range(draw(st.integers(1, 6))):
        if draw(st.integers(0, 3)) == 0:
            out.append(
                predictor_pb2.StreamPredictRequest(
                    open=predictor_pb2.StreamOpen(
                        model=draw(names), version=draw(versions), stream_id=draw(st.text(max_size=20))
                    )
                )
            )
        else:
            sequence = draw(
                st.one_of(st.integers(0, 5), st.integers(0, 2**64 - 1))
            )  # -1 on the wire = 2**64-1
            out.append(
                predictor_pb2.StreamPredictRequest(
                    frame=predictor_pb2.Frame(
                        sequence=sequence,
                        video=frame_tensors(draw, "video"),
                        behavior=frame_tensors(draw, "behavior"),
                        pupil_center=frame_tensors(draw, "pupil_center"),
                    )
                )
            )
    if draw(st.booleans()):  # mostly a valid opening, so frames get past it
        out.insert(0, predictor_pb2.StreamPredictRequest(open=predictor_pb2.StreamOpen(model=MOUSE)))
    return out


# ---- Predictor ------------------------------------------------------------------------------------------------


@FUZZ
@given(model=names, version=versions, data=st.data())
def test_fuzz_predict_clip(fuzz_server, model, version, data) -> None:
    _, channel = fuzz_server
    t = data.draw(st.one_of(st.integers(-1, 12), st.sampled_from(HUGE_DIMS)))
    request = predictor_pb2.PredictClipRequest(
        model=model,
        version=version,
        video=data.draw(st.one_of(tensors(), tensors(shape=[t, FRAME_HEIGHT, FRAME_WIDTH]))),
        behavior=data.draw(st.one_of(tensors(), tensors(shape=[t, 2]))),
        pupil_center=data.draw(st.one_of(tensors(), tensors(shape=[t, 2]))),
    )
    _status(lambda: _unary(channel, "/sensorium.v1.Predictor/PredictClip", predictor_pb2.PredictClipResponse)(
        request, timeout=TIMEOUT_S
    ))  # fmt: skip


@FUZZ
@given(messages=stream_messages())
def test_fuzz_stream_predict(fuzz_server, messages) -> None:
    server, channel = fuzz_server
    call = channel.stream_stream(
        "/sensorium.v1.Predictor/StreamPredict",
        lambda m: m.SerializeToString(),
        predictor_pb2.StreamPredictResponse.FromString,
    )
    _status(lambda: list(call(iter(messages), timeout=TIMEOUT_S)))
    assert _no_streams(server)


@FUZZ
@given(model=names)
def test_fuzz_get_model(fuzz_server, model) -> None:
    _, channel = fuzz_server
    code = _status(lambda: _unary(channel, "/sensorium.v1.Predictor/GetModel", predictor_pb2.ModelInfo)(
        predictor_pb2.GetModelRequest(model=model), timeout=TIMEOUT_S
    ))  # fmt: skip
    assert code in (grpc.StatusCode.OK, grpc.StatusCode.NOT_FOUND)


@FUZZ
@given(name=names.filter(lambda n: not n.startswith(MOUSE)), version=versions, load=st.booleans())
def test_fuzz_model_repository_admin(fuzz_server, name, version, load) -> None:
    """Load / Unload of names that are not in the repository (path traversal included): NOT_FOUND, nothing
    outside the repository is touched."""
    _, channel = fuzz_server
    if load:
        call = _unary(channel, "/sensorium.v1.ModelRepository/Load", predictor_pb2.LoadResponse)
        request = predictor_pb2.LoadRequest(name=name, version=version)
    else:
        call = _unary(channel, "/sensorium.v1.ModelRepository/Unload", predictor_pb2.UnloadResponse)
        request = predictor_pb2.UnloadRequest(name=name, version=version)
    assert _status(lambda: call(request, timeout=TIMEOUT_S)) == grpc.StatusCode.NOT_FOUND


# ---- KServe v2 ---------------------------------------------------------------------------------------------

kserve_types = st.one_of(
    st.sampled_from(["FP32", "FP64", "FP16", "UINT8", "INT32", "INT64", "BYTES", "BOOL", "UINT32"]),
    st.text(max_size=8),
)


@st.composite
def infer_requests(draw) -> kserve_pb2.ModelInferRequest:
    request = kserve_pb2.ModelInferRequest(
        model_name=draw(st.one_of(names, st.just(MOUSE))),
        model_version=draw(st.one_of(st.just(""), st.text(max_size=6), st.integers(-5, 10).map(str))),
        id=draw(st.text(max_size=10)),
    )
    raw = draw(st.booleans())
    for _ in range(draw(st.integers(0, 4))):
        datatype = draw(kserve_types)
        shape = draw(
            st.one_of(
                st.lists(dims, max_size=5), st.just([1, 6, FRAME_HEIGHT, FRAME_WIDTH]), st.just([1, 6, 2])
            )
        )
        tensor = request.inputs.add(
            name=draw(st.one_of(st.sampled_from(["video", "behavior", "pupil_center", "state_in_0"]), names)),
            datatype=datatype,
            shape=shape,
        )
        if raw:
            count = int(np.prod([d for d in shape if d >= 0] or [0], dtype=object))
            exact = 0 <= count * 4 <= 64 * 1024 and draw(st.booleans())
            request.raw_input_contents.append(
                draw(st.binary(min_size=count * 4, max_size=count * 4))
                if exact
                else draw(st.binary(max_size=64))
            )
        else:
            contents = draw(
                st.sampled_from(["fp32", "fp64", "int", "int64", "uint", "uint64", "bool", "bytes"])
            )
            values = {
                "fp32": st.lists(floats, max_size=16),
                "fp64": st.lists(st.floats(), max_size=16),
                "int": st.lists(st.integers(-(2**31), 2**31 - 1), max_size=16),
                "int64": st.lists(st.integers(-(2**63), 2**63 - 1), max_size=16),
                "uint": st.lists(st.integers(0, 2**32 - 1), max_size=16),
                "uint64": st.lists(st.integers(0, 2**64 - 1), max_size=16),
                "bool": st.lists(st.booleans(), max_size=16),
                "bytes": st.lists(st.binary(max_size=8), max_size=4),
            }[contents]
            getattr(tensor.contents, f"{contents}_contents").extend(draw(values))
    if draw(st.booleans()):
        request.outputs.add(name=draw(st.one_of(st.just("responses"), names)))
    return request


@FUZZ
@given(request=infer_requests())
def test_fuzz_kserve_model_infer(fuzz_server, request) -> None:
    _, channel = fuzz_server
    call = _unary(channel, "/inference.GRPCInferenceService/ModelInfer", kserve_pb2.ModelInferResponse)
    _status(lambda: call(request, timeout=TIMEOUT_S))


@FUZZ
@given(name=names, version=st.one_of(st.text(max_size=6), st.integers(-5, 2**70).map(str)))
def test_fuzz_kserve_model_ready_and_metadata(fuzz_server, name, version) -> None:
    _, channel = fuzz_server
    ready = _unary(channel, "/inference.GRPCInferenceService/ModelReady", kserve_pb2.ModelReadyResponse)
    meta = _unary(channel, "/inference.GRPCInferenceService/ModelMetadata", kserve_pb2.ModelMetadataResponse)
    _status(lambda: ready(kserve_pb2.ModelReadyRequest(name=name, version=version), timeout=TIMEOUT_S))
    _status(lambda: meta(kserve_pb2.ModelMetadataRequest(name=name, version=version), timeout=TIMEOUT_S))


# ---- Scoring -------------------------------------------------------------------------------------------------

MICE = [
    "dynamic29515-10-12-Video-9b4f6a1a067fe51e15306b9628efea20",
    "dynamic29623-4-9-Video-fc8b2b1a4b2f1c1d3e5a7b9c0d2e4f60",
]


@st.composite
def submissions(draw) -> list[scoring_pb2.SubmitRequest]:
    track = st.one_of(st.sampled_from(["main", "bonus"]), st.text(max_size=6))
    tier = st.one_of(st.sampled_from(["live", "final"]), st.text(max_size=6))
    out = []
    if draw(st.integers(0, 4)):
        out.append(
            scoring_pb2.SubmitRequest(
                header=scoring_pb2.SubmissionHeader(
                    track=draw(track),
                    tier=draw(tier),
                    submitter=draw(st.text(max_size=30)),
                    label=draw(st.text(max_size=30)),
                )
            )
        )
    for _ in range(draw(st.integers(0, 4))):
        n = draw(st.integers(0, 25))
        out.append(
            scoring_pb2.SubmitRequest(
                trial=scoring_pb2.TrialPrediction(
                    mouse=draw(st.one_of(st.sampled_from(MICE), names)),
                    trial_index=draw(st.one_of(st.integers(-2, 60), st.integers(-(2**63), 2**63 - 1))),
                    neuron_ids=draw(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=n)),
                    prediction=draw(st.one_of(tensors(), tensors(shape=[n, draw(st.integers(0, 300))]))),
                )
            )
        )
    if out and draw(st.integers(0, 5)) == 0:
        out.append(out[0])  # a second header (or a duplicate trial)
    return out


@FUZZ
@given(messages=submissions())
def test_fuzz_scoring_submit(fuzz_server, messages) -> None:
    _, channel = fuzz_server
    call = channel.stream_unary(
        "/sensorium.v1.Scoring/Submit", lambda m: m.SerializeToString(), scoring_pb2.Submission.FromString
    )
    code = _status(lambda: call(iter(messages), timeout=TIMEOUT_S))
    assert (
        code != grpc.StatusCode.OK
    )  # a random submission is never complete; the fixture checks the database


@FUZZ
@given(
    track=st.one_of(st.sampled_from(["main", "bonus"]), st.text(max_size=6)),
    tier=st.one_of(st.sampled_from(["live", "final"]), st.text(max_size=6)),
    limit=st.integers(-(2**31), 2**31 - 1),
    submission_id=st.text(max_size=64),
)
def test_fuzz_scoring_queries(fuzz_server, track, tier, limit, submission_id) -> None:
    _, channel = fuzz_server
    board = _unary(channel, "/sensorium.v1.Scoring/GetLeaderboard", scoring_pb2.Leaderboard)
    get = _unary(channel, "/sensorium.v1.Scoring/GetSubmission", scoring_pb2.Submission)
    _status(
        lambda: board(
            scoring_pb2.GetLeaderboardRequest(track=track, tier=tier, limit=limit), timeout=TIMEOUT_S
        )
    )
    assert _status(
        lambda: get(scoring_pb2.GetSubmissionRequest(submission_id=submission_id), timeout=TIMEOUT_S)
    ) in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT)


# ---- raw bytes on every method -------------------------------------------------------------------------------


def _methods() -> list[tuple[str, bool, bool]]:
    """(path, client streaming, server streaming) of every method of every service the server offers."""
    from grpc_health.v1 import health_pb2 as h
    from grpc_reflection.v1alpha import reflection_pb2 as r

    from protos.inference import grpc_predict_v2_pb2 as k

    out = []
    for module in (predictor_pb2, k, scoring_pb2, h, r):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                path = f"/{service.full_name}/{method.name}"
                if path != "/grpc.health.v1.Health/Watch":  # a valid Watch legitimately never ends
                    out.append((path, method.client_streaming, method.server_streaming))
    return out


METHODS = _methods()


@FUZZ
@given(method=st.sampled_from(METHODS), payloads=st.lists(st.binary(max_size=200), min_size=1, max_size=3))
def test_fuzz_raw_bytes_on_every_method(fuzz_server, method, payloads) -> None:
    """Garbage (often undecodable) bytes: INVALID_ARGUMENT or a status of the right class, never UNKNOWN."""
    server, channel = fuzz_server
    path, client_streaming, server_streaming = method
    if client_streaming and server_streaming:
        _status(lambda: list(channel.stream_stream(path)(iter(payloads), timeout=TIMEOUT_S)))
    elif client_streaming:
        _status(lambda: channel.stream_unary(path)(iter(payloads), timeout=TIMEOUT_S))
    elif server_streaming:
        _status(lambda: list(channel.unary_stream(path)(payloads[0], timeout=TIMEOUT_S)))
    else:
        _status(lambda: channel.unary_unary(path)(payloads[0], timeout=TIMEOUT_S))
    assert _no_streams(server)


def test_undecodable_and_unknown_fields(fuzz_server, kit) -> None:
    """Undecodable bytes are INVALID_ARGUMENT naming the message type; unknown fields are ignored (proto3)."""
    _, channel = fuzz_server
    with pytest.raises(grpc.RpcError) as info:
        channel.unary_unary("/sensorium.v1.Predictor/PredictClip")(b"\xff\xff\xff", timeout=TIMEOUT_S)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid sensorium.v1.PredictClipRequest" in info.value.details()
    with pytest.raises(grpc.RpcError) as info:
        list(channel.stream_stream("/sensorium.v1.Predictor/StreamPredict")(iter([b"\x0a\xff"]), timeout=5))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    unknown_field = b"\xf8\x06\x2a"  # field 111, varint 42
    trial = kit.make_trial(seed=3, frames=8)
    request = predictor_pb2.PredictClipRequest(
        model=MOUSE,
        video=kit.tensor(trial["video"]),
        behavior=kit.tensor(trial["behavior"]),
        pupil_center=kit.tensor(trial["pupil_center"]),
    )
    reply = channel.unary_unary("/sensorium.v1.Predictor/PredictClip")(
        request.SerializeToString() + unknown_field, timeout=TIMEOUT_S
    )
    plain = channel.unary_unary("/sensorium.v1.Predictor/PredictClip")(
        request.SerializeToString(), timeout=30
    )
    a, b = (
        predictor_pb2.PredictClipResponse.FromString(reply),
        predictor_pb2.PredictClipResponse.FromString(plain),
    )
    assert a.responses.data == b.responses.data and list(a.responses.shape) == [
        8 - kit.RECEPTIVE_FIELD + 1,
        24,
    ]
