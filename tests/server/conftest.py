"""Fixtures of the server tests: the ONNX test models of `server.testing` (onnx.helper, no torch) in a
repository, and a real grpc.aio server on a free loopback port.
"""

from __future__ import annotations

import contextlib
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import grpc
import numpy as np
import pytest

from models import contract

sys.path.insert(0, str(Path(__file__).parent))  # helper modules of this folder (proto_shape)

from server.testing import (  # noqa: F401  (re-exported: tests/ops and tests/reliability load this file by path)
    MOUSE,
    N_NEURONS,
    OTHER_MOUSE,
    RECEPTIVE_FIELD,
    TestModelParams,
    build_clip_graph,
    build_step_graph,
    config_pbtxt,
    make_params,
    make_trial,
    write_model,
)


@pytest.fixture(scope="session")
def model_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository with MOUSE versions 1 and 2 and OTHER_MOUSE version 1 (read-only: copy it to modify)."""
    repo = tmp_path_factory.mktemp("repo")
    write_model(repo, MOUSE, 1, make_params(1))
    write_model(repo, MOUSE, 2, make_params(2))
    write_model(repo, OTHER_MOUSE, 1, make_params(3))
    return repo


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def settings_factory(model_repo: Path):
    from server.config import Settings

    def make(**changes) -> Settings:
        base = dict(
            repo=model_repo, host="127.0.0.1", port=0, http_port=-1, providers="cpu", intra_op_threads=1
        )
        return Settings(**{**base, **changes})

    return make


@dataclass
class RunningServer:
    app: object  # server.app.SensoriumServer
    target: str
    channel: grpc.aio.Channel


@pytest.fixture
def serving(settings_factory):
    """``async with serving(**settings) as srv``: a real server (grpc.aio, loopback, free port) + a channel.

    pytest-asyncio is not installed: each test drives its own event loop with asyncio.run().
    """
    from server.app import SensoriumServer

    @contextlib.asynccontextmanager
    async def start(**changes) -> AsyncIterator[RunningServer]:
        app = SensoriumServer(settings_factory(**changes))
        port = await app.start()
        target = f"127.0.0.1:{port}"
        channel = grpc.aio.insecure_channel(
            target, options=[("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
        )
        try:
            yield RunningServer(app, target, channel)
        finally:
            await channel.close()
            await app.stop(grace=0)

    return start


@pytest.fixture
def in_process(model_repo: Path) -> Iterator:
    """Reference: onnxruntime in the test process on a repository graph."""
    import onnxruntime as ort

    sessions: dict[tuple[str, int], ort.InferenceSession] = {}

    def run(name: str, version: int, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        key = (name, version)
        if key not in sessions:
            path = model_repo / name / str(version) / contract.MODEL_FILENAME
            sessions[key] = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return sessions[key].run(None, feeds)

    yield run


# ---- wire helpers (tests talk to the server with the generated stubs only) ---------------------------------


def tensor(array: np.ndarray):
    from protos.sensorium.v1 import tensor_pb2

    array = np.ascontiguousarray(array)
    dtype = {np.dtype("float32"): tensor_pb2.DTYPE_FLOAT32, np.dtype("uint8"): tensor_pb2.DTYPE_UINT8}.get(
        array.dtype, tensor_pb2.DTYPE_FLOAT64
    )
    return tensor_pb2.Tensor(dtype=dtype, shape=array.shape, data=array.tobytes())


def to_array(message) -> np.ndarray:
    return np.frombuffer(message.data, dtype="<f4").reshape(list(message.shape))


def open_request(model: str = MOUSE, version: int = 0, stream_id: str = ""):
    from protos.sensorium.v1 import predictor_pb2

    return predictor_pb2.StreamPredictRequest(
        open=predictor_pb2.StreamOpen(model=model, version=version, stream_id=stream_id)
    )


def frame_request(trial: dict[str, np.ndarray], index: int, sequence: int | None = None):
    from protos.sensorium.v1 import predictor_pb2

    return predictor_pb2.StreamPredictRequest(
        frame=predictor_pb2.Frame(
            sequence=index if sequence is None else sequence,
            video=tensor(trial["video"][index]),
            behavior=tensor(trial["behavior"][index]),
            pupil_center=tensor(trial["pupil_center"][index]),
        )
    )


async def stream_trial(
    channel, trial: dict[str, np.ndarray], model: str = MOUSE, version: int = 0, in_flight: int = 1
):
    """Stream a whole trial (``in_flight`` frames outstanding); returns (opened, [FrameResult, ...])."""
    import asyncio

    from protos.sensorium.v1 import predictor_pb2_grpc

    call = predictor_pb2_grpc.PredictorStub(channel).StreamPredict()
    await call.write(open_request(model, version))
    opened = (await call.read()).opened
    frames = len(trial["video"])
    results = []
    sent = 0
    while len(results) < frames:
        while sent < frames and sent - len(results) < in_flight:
            await call.write(frame_request(trial, sent))
            sent += 1
        response = await call.read()
        results.append(response.result)
        await asyncio.sleep(0)
    await call.done_writing()
    assert await call.code() == grpc.StatusCode.OK
    return opened, results


@pytest.fixture(scope="session")
def kit() -> SimpleNamespace:
    """This conftest's constants and helpers for test modules (importlib mode: conftest is not importable)."""
    return SimpleNamespace(
        MOUSE=MOUSE,
        OTHER_MOUSE=OTHER_MOUSE,
        N_NEURONS=N_NEURONS,
        RECEPTIVE_FIELD=RECEPTIVE_FIELD,
        make_params=make_params,
        write_model=write_model,
        make_trial=make_trial,
        tensor=tensor,
        to_array=to_array,
        open_request=open_request,
        frame_request=frame_request,
        stream_trial=stream_trial,
        free_port=free_port,
    )
