"""Fixtures of the client tests: a small fake Predictor servicer on a real grpc.aio server.

The fake implements the generated base class with a tiny causal "model" (response of neuron n at frame t =
(n + 1) * mean pixel over the last R frames / 255 + running speed), so client behaviour is tested against the
real protocol without ONNX models. Tests against the real server live in test_client_live_server.py.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import grpc.aio
import numpy as np
import pytest

from client.tensors import from_tensor, to_tensor
from protos.sensorium.v1 import predictor_pb2, predictor_pb2_grpc

FAKE_MODEL = "dynamic00000-1-1-Video-00000000000000000000000000000000"
FAKE_NEURONS = 6
FAKE_R = 3
FAKE_UNIT_IDS = np.arange(FAKE_NEURONS, dtype=np.int64) * 10 + 5


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20231)


def fake_responses(video: np.ndarray, behavior: np.ndarray) -> np.ndarray:
    """Reference outputs of the fake clip graph: video [T, H, W], behaviour [T, 2] -> [T - R + 1, N]."""
    means = video.reshape(video.shape[0], -1).astype(np.float64).mean(axis=1) / 255.0
    window = np.convolve(means, np.ones(FAKE_R), mode="valid") / FAKE_R  # mean over the last R frames
    gains = np.arange(1, FAKE_NEURONS + 1)
    return (window[:, None] * gains[None, :] + behavior[FAKE_R - 1 :, 1:2]).astype(np.float32)


@dataclass
class FakePredictor(predictor_pb2_grpc.PredictorServicer):
    compute_seconds: float = 0.0  # simulated inference time per frame
    streams_opened: int = 0
    frame_arrivals: list[float] = field(default_factory=list)
    max_in_flight: int = 0

    def _version(self, full: bool) -> predictor_pb2.ModelVersion:
        return predictor_pb2.ModelVersion(
            version=1,
            clip=predictor_pb2.GraphStatus(ready=True, repository_name=f"{FAKE_MODEL}-clip"),
            step=predictor_pb2.GraphStatus(ready=True, repository_name=f"{FAKE_MODEL}-step"),
            n_neurons=FAKE_NEURONS,
            unit_ids=FAKE_UNIT_IDS.tolist() if full else [],
            fps=30,
            frame_height=36,
            frame_width=64,
            receptive_field=FAKE_R,
            skip=50,
            architecture="fake",
            response_units="standardised",
            response_std=[1.0] * FAKE_NEURONS if full else [],
            provenance_json='{"data_seed": 1}',
        )

    async def ListModels(self, request, context):
        return predictor_pb2.ListModelsResponse(
            models=[
                predictor_pb2.ModelInfo(name=FAKE_MODEL, versions=[self._version(False)], latest_version=1)
            ]
        )

    async def GetModel(self, request, context):
        if request.model != FAKE_MODEL:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"model {request.model!r} not found")
        return predictor_pb2.ModelInfo(name=FAKE_MODEL, versions=[self._version(True)], latest_version=1)

    async def PredictClip(self, request, context):
        if request.model != FAKE_MODEL:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"model {request.model!r} not found")
        video = from_tensor(request.video)
        behavior = from_tensor(request.behavior)
        if video.ndim != 3 or video.shape[0] < FAKE_R:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"video: bad shape {video.shape}")
        out = fake_responses(video, behavior)
        return predictor_pb2.PredictClipResponse(
            model=FAKE_MODEL,
            version=1,
            responses=to_tensor(out),
            first_frame=FAKE_R - 1,
            compute_seconds=1e-4,
        )

    async def StreamPredict(self, request_iterator: AsyncIterator, context) -> AsyncIterator:
        opened = False
        history: list[float] = []
        gains = np.arange(1, FAKE_NEURONS + 1, dtype=np.float64)
        in_flight = 0
        async for request in request_iterator:
            kind = request.WhichOneof("kind")
            if kind == "open":
                if request.open.model != FAKE_MODEL:
                    await context.abort(grpc.StatusCode.NOT_FOUND, f"model {request.open.model!r} not found")
                opened = True
                self.streams_opened += 1
                yield predictor_pb2.StreamPredictResponse(
                    opened=predictor_pb2.StreamOpened(
                        stream_id=request.open.stream_id or f"s{self.streams_opened}",
                        model=FAKE_MODEL,
                        version=1,
                        n_neurons=FAKE_NEURONS,
                        receptive_field=FAKE_R,
                    )
                )
                continue
            if not opened:
                await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "frame before the opening message")
            t0 = time.perf_counter()
            self.frame_arrivals.append(time.monotonic())
            in_flight += 1
            self.max_in_flight = max(self.max_in_flight, in_flight)
            frame = request.frame
            if frame.sequence != len(history):
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"sequence: expected {len(history)}, got {frame.sequence}",
                )
            video = from_tensor(frame.video)
            behavior = from_tensor(frame.behavior)
            history.append(float(video.astype(np.float64).mean() / 255.0))
            window = np.mean(history[-FAKE_R:])
            if self.compute_seconds:
                await asyncio.sleep(self.compute_seconds)
            out = (window * gains + float(behavior[1])).astype(np.float32)
            in_flight -= 1
            yield predictor_pb2.StreamPredictResponse(
                result=predictor_pb2.FrameResult(
                    sequence=frame.sequence,
                    responses=to_tensor(out),
                    warm=len(history) >= FAKE_R,
                    queue_seconds=1e-5,
                    compute_seconds=self.compute_seconds,
                    server_seconds=time.perf_counter() - t0,
                    batch_size=1,
                )
            )


class ThreadedServer:
    """A grpc.aio server on its own event loop thread, so sync tests (and sync clients) can call it.

    `start` is a coroutine function run on that loop returning (port, stop coroutine function).
    """

    def __init__(self, start: Callable[[], Awaitable[tuple[int, Callable[[], Awaitable[None]]]]]) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.port, self._stop = asyncio.run_coroutine_threadsafe(start(), self.loop).result(60)
        self.target = f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


def fake_server_start(
    servicer: FakePredictor,
) -> Callable[[], Awaitable[tuple[int, Callable[[], Awaitable[None]]]]]:
    async def start() -> tuple[int, Callable[[], Awaitable[None]]]:
        server = grpc.aio.server()
        predictor_pb2_grpc.add_PredictorServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()

        async def stop() -> None:
            await server.stop(None)

        return port, stop

    return start


class Fake:
    """What tests need to know about the fake model (pytest's importlib mode: no importing conftest)."""

    MODEL = FAKE_MODEL
    NEURONS = FAKE_NEURONS
    R = FAKE_R
    UNIT_IDS = FAKE_UNIT_IDS
    responses = staticmethod(fake_responses)
    Server = ThreadedServer
    Servicer = FakePredictor


@pytest.fixture
def fake() -> type[Fake]:
    return Fake


@pytest.fixture
def fake_server() -> Iterator[ThreadedServer]:
    servicer = FakePredictor()
    server = ThreadedServer(fake_server_start(servicer))
    server.servicer = servicer
    yield server
    server.stop()


TRIAL_LENGTHS = {0: 65, 1: 60, 2: 62, 3: 65, 4: 58, 5: 65, 6: 61}  # trial index -> true length
TRIAL_TIERS = {
    0: "train",
    1: "final_test_main",
    2: "final_test_main",
    3: "oracle",
    4: "final_test_main",
    5: "train",  # three train trials: the time-resolved response std is not zero
    6: "train",
}


def write_public(
    root: Path,
    mouse: str,
    unit_ids: np.ndarray,
    lengths: dict[int, int],
    tiers: dict[int, str],
    seed: int = 7,
) -> Path:
    """DIR/public/<mouse> in the released layout with random inputs (raw units) and responses."""
    from models.data.writer import MouseWriter

    rng = np.random.default_rng(seed)
    n = len(unit_ids)
    coords = rng.integers(0, 500, size=(n, 3))
    with MouseWriter(root / mouse, unit_ids, coords, len(lengths), max(lengths.values())) as w:
        for i, t in lengths.items():
            w.write_trial(
                i,
                tiers[i],
                rng.integers(0, 256, size=(36, 64, t)).astype(np.float32),
                rng.random((n, t)).astype(np.float32),
                (rng.standard_normal((2, t)) * [[2.0], [1.5]] + [[5.0], [0.5]]).astype(np.float32),
                (rng.standard_normal((2, t)) * 3 + [[30.0], [20.0]]).astype(np.float32),
            )
    return root


@pytest.fixture(scope="session")
def public_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """DIR/public with one small session named like the fake model (6 neurons, 7 trials of 58-65 frames)."""
    root = tmp_path_factory.mktemp("data") / "public"
    return write_public(root, FAKE_MODEL, FAKE_UNIT_IDS, TRIAL_LENGTHS, TRIAL_TIERS)


# ----------------------------------------------------------------------------------------- the real server


LIVE_LENGTHS = {0: 64, 1: 60, 2: 57, 3: 64, 4: 64, 5: 62}
LIVE_TIERS = {
    0: "train",
    1: "final_test_main",
    2: "final_test_main",
    3: "live_test_main",
    4: "train",
    5: "train",
}


@dataclass
class Live:
    target: str
    repo: Path
    data: Path
    mouse: str
    n_neurons: int
    receptive_field: int
    unit_ids: np.ndarray
    apps: list = field(default_factory=list)  # the running server.app.SensoriumServer

    def server_sessions(self) -> int:
        """Streams and sequences open on the server right now."""
        return len(self.apps[0].plane.streams)

    def clip_in_process(self, video: np.ndarray, behavior: np.ndarray, pupil: np.ndarray) -> np.ndarray:
        """The clip graph run with onnxruntime in this process: [T - R + 1, N]."""
        import onnxruntime as ort

        from models import contract

        path = (
            self.repo
            / contract.repository_model_name(self.mouse, contract.CLIP)
            / "1"
            / contract.MODEL_FILENAME
        )
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        feeds = {
            "video": video[None].astype(np.float32),
            "behavior": behavior[None],
            "pupil_center": pupil[None],
        }
        return session.run(["responses"], feeds)[0][0]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """The real server (server.app.SensoriumServer, grpc.aio, free loopback port) on the server tests' ONNX
    test model, and a dataset folder for that mouse."""
    from server import testing as models
    from server.app import SensoriumServer
    from server.config import Settings

    root = tmp_path_factory.mktemp("live")
    repo = root / "repo"
    models.write_model(repo, models.MOUSE, 1, models.make_params(1))
    unit_ids = np.arange(1000, 1000 + models.N_NEURONS, dtype=np.int64)  # what write_model records
    data = write_public(root / "public", models.MOUSE, unit_ids, LIVE_LENGTHS, LIVE_TIERS)
    settings = Settings(
        repo=repo,
        host="127.0.0.1",
        port=0,
        http_port=-1,
        providers="cpu",
        intra_op_threads=1,
        max_batch_wait_ms=0.5,
    )

    apps: list[SensoriumServer] = []

    async def start() -> tuple[int, Callable[[], Awaitable[None]]]:
        app = SensoriumServer(settings)
        apps.append(app)
        port = await app.start()
        return port, lambda: app.stop(grace=0)

    server = ThreadedServer(start)
    yield Live(
        server.target, repo, data, models.MOUSE, models.N_NEURONS, models.RECEPTIVE_FIELD, unit_ids, apps
    )
    server.stop()
