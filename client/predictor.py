"""Python client of the `sensorium.v1.Predictor` service.

Two flavours with the same shape:

- `PredictorClient` (blocking, grpc sync API): list/get models, `predict_clip`, and `open_stream` for
  StreamPredict, where `FrameStream.send(frame, behavior, pupil_center)` sends one frame and waits for its
  answer (one frame in flight, like a rig).
- `AsyncPredictorClient` (grpc.aio): the same calls as coroutines; the rig and the benchmark use it because an
  aio stream writes and reads on the event loop, without the hand-off to a request-iterator thread.

Arrays travel as raw bytes (`client.tensors`); frames may be uint8 (raw pixels) or float32. Targets are any gRPC
target: ``host:port``, ``dns:///name:port`` (with ``round_robin=True`` a headless Service's replicas share the
calls; a stream stays on the replica it opened on). Failures raise `client.errors.PredictorError` subclasses.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Self

import grpc
import grpc.aio
import numpy as np

from client.errors import ProtocolError, StreamClosedError, from_rpc_error
from client.tensors import from_tensor, to_tensor
from protos.auth import TOKEN_ENV, auth_metadata
from protos.sensorium.v1 import predictor_pb2, predictor_pb2_grpc

MAX_MESSAGE_BYTES: Final = (
    256 * 1024 * 1024
)  # whole-trial responses: 300 frames x 8,000 neurons x 4 B = 9.6 MB
DEFAULT_TIMEOUT_S: Final = 60.0

ChannelOptions = Sequence[tuple[str, Any]]


def channel_options(round_robin: bool = False, extra: ChannelOptions = ()) -> list[tuple[str, Any]]:
    """Channel options every client uses: big messages, optional client-side round_robin load balancing."""
    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ]
    if round_robin:
        options.append(("grpc.lb_policy_name", "round_robin"))
    options.extend(extra)
    return options


# ------------------------------------------------------------------------------------------ security
# Token authentication (protos.auth, shared with the server's tools) and TLS (server side: server/security/).
# Arguments win; else these environment variables.
TLS_CA_ENV: Final = "SENSORIUM_SERVE_TLS_CA"
CLIENT_CERT_ENV: Final = "SENSORIUM_SERVE_CLIENT_CERT"
CLIENT_KEY_ENV: Final = "SENSORIUM_SERVE_CLIENT_KEY"


def tls_credentials(
    ca: str | os.PathLike[str] | None = None,
    cert: str | os.PathLike[str] | None = None,
    key: str | os.PathLike[str] | None = None,
) -> grpc.ChannelCredentials | None:
    """TLS channel credentials from PEM files: `ca` (the server's CA; else $SENSORIUM_SERVE_TLS_CA), and for
    mutual TLS the client's `cert` + `key` (else $SENSORIUM_SERVE_CLIENT_CERT / _KEY). None: none given, plaintext.
    """
    ca = ca or os.environ.get(TLS_CA_ENV) or None
    cert = cert or os.environ.get(CLIENT_CERT_ENV) or None
    key = key or os.environ.get(CLIENT_KEY_ENV) or None
    if ca is None and cert is None and key is None:
        return None
    if (cert is None) != (key is None):
        raise ValueError("TLS client certificate and key go together (--tls-cert and --tls-key)")

    def read(path: str | os.PathLike[str] | None, what: str) -> bytes | None:
        if path is None:
            return None
        try:
            return Path(path).read_bytes()
        except OSError as exc:
            raise ValueError(f"{path}: cannot read the {what} ({exc.strerror})") from None

    return grpc.ssl_channel_credentials(
        root_certificates=read(ca, "CA certificate"),
        private_key=read(key, "client key"),
        certificate_chain=read(cert, "client certificate"),
    )


def add_security_arguments(parser: argparse.ArgumentParser) -> None:
    """--token, --tls-ca, --tls-cert, --tls-key (each falls back to its environment variable)."""
    parser.add_argument(
        "--token",
        default=None,
        help=f"access token, sent as 'authorization: Bearer TOKEN' (default ${TOKEN_ENV}; prefer the "
        "variable: arguments show in the process list)",
    )
    parser.add_argument(
        "--tls-ca", default=None, help=f"PEM CA of the server: use TLS (default ${TLS_CA_ENV})"
    )
    parser.add_argument(
        "--tls-cert", default=None, help=f"PEM client certificate for mutual TLS (default ${CLIENT_CERT_ENV})"
    )
    parser.add_argument("--tls-key", default=None, help=f"PEM key of --tls-cert (default ${CLIENT_KEY_ENV})")


def security_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """``token`` and ``credentials`` keyword arguments of the clients from `add_security_arguments` flags."""
    return {
        "token": getattr(args, "token", None),
        "credentials": tls_credentials(
            getattr(args, "tls_ca", None), getattr(args, "tls_cert", None), getattr(args, "tls_key", None)
        ),
    }


def open_channel(
    target: str,
    credentials: grpc.ChannelCredentials | None = None,
    *,
    round_robin: bool = False,
    options: ChannelOptions = (),
    aio: bool = False,
) -> grpc.Channel | grpc.aio.Channel:
    """A blocking (or grpc.aio) channel with `channel_options`: TLS with `credentials`, else with the
    $SENSORIUM_SERVE_TLS_* files when set, else plaintext. Every client of this package opens its channel here."""
    credentials = credentials if credentials is not None else tls_credentials()
    opts = channel_options(round_robin, options)
    grpc_module = grpc.aio if aio else grpc
    if credentials is not None:
        return grpc_module.secure_channel(target, credentials, opts)
    return grpc_module.insecure_channel(target, opts)


# ------------------------------------------------------------------------------------------ result types


@dataclass(frozen=True)
class ModelVersionInfo:
    version: int
    clip_ready: bool
    step_ready: bool
    n_neurons: int
    fps: int
    frame_height: int
    frame_width: int
    receptive_field: int
    skip: int
    architecture: str
    response_units: str
    unit_ids: np.ndarray  # empty in list_models
    response_std: np.ndarray  # empty in list_models
    provenance: dict[str, Any] = field(default_factory=dict)
    validation: dict[str, Any] = field(default_factory=dict)
    clip_reason: str = ""
    step_reason: str = ""


@dataclass(frozen=True)
class ModelInfo:
    name: str
    latest_version: int
    versions: list[ModelVersionInfo]

    def version(self, version: int = 0) -> ModelVersionInfo:
        """Metadata of `version` (0 = the server's latest)."""
        wanted = version or self.latest_version
        for v in self.versions:
            if v.version == wanted:
                return v
        raise LookupError(
            f"model {self.name!r} has no version {wanted} (has {[v.version for v in self.versions]})"
        )


def _json(text: str) -> dict[str, Any]:
    return json.loads(text) if text else {}


def model_info_from_proto(msg: predictor_pb2.ModelInfo) -> ModelInfo:
    versions = [
        ModelVersionInfo(
            version=v.version,
            clip_ready=v.clip.ready,
            step_ready=v.step.ready,
            n_neurons=v.n_neurons,
            fps=v.fps,
            frame_height=v.frame_height,
            frame_width=v.frame_width,
            receptive_field=v.receptive_field,
            skip=v.skip,
            architecture=v.architecture,
            response_units=v.response_units,
            unit_ids=np.asarray(v.unit_ids, dtype=np.int64),
            response_std=np.asarray(v.response_std, dtype=np.float32),
            provenance=_json(v.provenance_json),
            validation=_json(v.validation_json),
            clip_reason=v.clip.reason,
            step_reason=v.step.reason,
        )
        for v in msg.versions
    ]
    return ModelInfo(name=msg.name, latest_version=msg.latest_version, versions=versions)


@dataclass(frozen=True)
class ClipPrediction:
    """Responses of one trial (or a batch) from the clip graph; row j belongs to input frame j + first_frame."""

    model: str
    version: int
    responses: np.ndarray  # (T - R + 1, N) or (B, T - R + 1, N) float32, standardised units
    first_frame: int
    compute_seconds: float


@dataclass(frozen=True)
class FrameResponse:
    """The answer to one streamed frame, with where its time went (seconds)."""

    sequence: int
    responses: np.ndarray  # (N,) float32, standardised units
    warm: bool  # receptive field full: equals the clip graph's output for this frame
    queue_seconds: float
    compute_seconds: float
    server_seconds: float
    batch_size: int
    encode_seconds: float  # client: numpy -> request message
    round_trip_seconds: float  # request handed to gRPC -> response message received
    decode_seconds: float  # client: response message -> numpy

    @property
    def network_seconds(self) -> float:
        """Round trip minus server time: transport, (de)serialisation in both gRPC stacks, scheduling."""
        return max(0.0, self.round_trip_seconds - self.server_seconds)

    @property
    def total_seconds(self) -> float:
        return self.encode_seconds + self.round_trip_seconds + self.decode_seconds


@dataclass(frozen=True)
class StreamInfo:
    stream_id: str
    model: str
    version: int
    n_neurons: int
    receptive_field: int


# ------------------------------------------------------------------------------------------ messages


def clip_request(
    model: str, video: np.ndarray, behavior: np.ndarray, pupil_center: np.ndarray, version: int = 0
) -> predictor_pb2.PredictClipRequest:
    return predictor_pb2.PredictClipRequest(
        model=model,
        version=version,
        video=to_tensor(video, name="video"),
        behavior=to_tensor(np.asarray(behavior, dtype=np.float32), name="behavior"),
        pupil_center=to_tensor(np.asarray(pupil_center, dtype=np.float32), name="pupil_center"),
    )


def clip_from_proto(msg: predictor_pb2.PredictClipResponse) -> ClipPrediction:
    return ClipPrediction(
        model=msg.model,
        version=msg.version,
        responses=from_tensor(msg.responses, name="responses"),
        first_frame=msg.first_frame,
        compute_seconds=msg.compute_seconds,
    )


def open_request(model: str, version: int = 0, stream_id: str = "") -> predictor_pb2.StreamPredictRequest:
    return predictor_pb2.StreamPredictRequest(
        open=predictor_pb2.StreamOpen(model=model, version=version, stream_id=stream_id)
    )


def frame_request(
    sequence: int, frame: np.ndarray, behavior: np.ndarray, pupil_center: np.ndarray
) -> predictor_pb2.StreamPredictRequest:
    return predictor_pb2.StreamPredictRequest(
        frame=predictor_pb2.Frame(
            sequence=sequence,
            video=to_tensor(frame, name="video"),
            behavior=to_tensor(np.asarray(behavior, dtype=np.float32), name="behavior"),
            pupil_center=to_tensor(np.asarray(pupil_center, dtype=np.float32), name="pupil_center"),
        )
    )


def _opened(msg: predictor_pb2.StreamPredictResponse | None) -> StreamInfo:
    if msg is None or msg.WhichOneof("kind") != "opened":
        kind = None if msg is None else msg.WhichOneof("kind")
        raise ProtocolError(f"StreamPredict: expected an 'opened' response first, got {kind!r}")
    o = msg.opened
    return StreamInfo(o.stream_id, o.model, o.version, o.n_neurons, o.receptive_field)


def _frame_response(
    msg: predictor_pb2.StreamPredictResponse | None, sequence: int, encode: float, round_trip: float
) -> FrameResponse:
    if msg is None or msg.WhichOneof("kind") != "result":
        raise ProtocolError(
            f"StreamPredict: expected the result of frame {sequence}, got "
            f"{'end of stream' if msg is None else msg.WhichOneof('kind')!r}"
        )
    r = msg.result
    if r.sequence != sequence:
        raise ProtocolError(f"StreamPredict: expected the result of frame {sequence}, got frame {r.sequence}")
    t0 = time.perf_counter()
    responses = from_tensor(r.responses, name="responses")
    decode = time.perf_counter() - t0
    return FrameResponse(
        sequence=r.sequence,
        responses=responses,
        warm=r.warm,
        queue_seconds=r.queue_seconds,
        compute_seconds=r.compute_seconds,
        server_seconds=r.server_seconds,
        batch_size=r.batch_size,
        encode_seconds=encode,
        round_trip_seconds=round_trip,
        decode_seconds=decode,
    )


# ------------------------------------------------------------------------------------------ sync client

_END: Final = object()


class FrameStream:
    """A StreamPredict call with one frame in flight: `send` returns that frame's `FrameResponse`.

    Use as a context manager (or call `close`) so the server frees the stream's state promptly.
    """

    def __init__(
        self,
        stub: predictor_pb2_grpc.PredictorStub,
        model: str,
        version: int,
        stream_id: str,
        metadata: Sequence[tuple[str, str]],
    ) -> None:
        self._requests: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._call = stub.StreamPredict(iter(self._requests.get, _END), metadata=metadata)
        self._closed = False
        self.sequence = 0
        self._requests.put(open_request(model, version, stream_id))
        self.info = _opened(self._next("open"))

    def _next(self, what: str) -> predictor_pb2.StreamPredictResponse | None:
        try:
            return next(self._call)
        except StopIteration:
            return None
        except grpc.RpcError as exc:
            self._closed = True
            raise from_rpc_error(exc, f"StreamPredict {what}") from None

    def send(self, frame: np.ndarray, behavior: np.ndarray, pupil_center: np.ndarray) -> FrameResponse:
        """Send the next frame ([H, W] uint8/float32, behaviour [2], pupil centre [2]) and wait for its answer."""
        if self._closed:
            raise StreamClosedError(f"stream {self.info.stream_id!r} is closed")
        t0 = time.perf_counter()
        request = frame_request(self.sequence, frame, behavior, pupil_center)
        t1 = time.perf_counter()
        self._requests.put(request)
        msg = self._next(f"frame {self.sequence}")
        t2 = time.perf_counter()
        response = _frame_response(msg, self.sequence, t1 - t0, t2 - t1)
        self.sequence += 1
        return response

    def close(self) -> None:
        """Half-close the call and wait for the server to end it."""
        if self._closed:
            return
        self._closed = True
        self._requests.put(_END)
        try:
            for _ in self._call:
                pass
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED:
                raise from_rpc_error(exc, "StreamPredict close") from None

    def cancel(self) -> None:
        """Abort the call (the server frees the stream's state)."""
        self._closed = True
        self._call.cancel()

    def __enter__(self) -> FrameStream:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.cancel()


class PredictorClient:
    """Blocking client of the Predictor service. ``with PredictorClient("localhost:50051") as c: ...``"""

    def __init__(
        self,
        target: str,
        *,
        round_robin: bool = False,
        timeout: float | None = DEFAULT_TIMEOUT_S,
        metadata: Sequence[tuple[str, str]] = (),
        options: ChannelOptions = (),
        credentials: grpc.ChannelCredentials | None = None,
        token: str | None = None,
    ) -> None:
        self.target = target
        self.timeout = timeout
        self.metadata = auth_metadata(token, metadata)  # + $SENSORIUM_SERVE_TOKEN
        self._channel = open_channel(  # credentials else $SENSORIUM_SERVE_TLS_*
            target, credentials, round_robin=round_robin, options=options
        )
        self._stub = predictor_pb2_grpc.PredictorStub(self._channel)

    def _unary(self, name: str, request: Any) -> Any:
        try:
            return getattr(self._stub, name)(request, timeout=self.timeout, metadata=self.metadata)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc, name) from None

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Block until the server answers (a ListModels call that waits for the connection); UnavailableError
        after `timeout` seconds."""
        try:
            self._stub.ListModels(
                predictor_pb2.ListModelsRequest(),
                timeout=timeout,
                metadata=self.metadata,
                wait_for_ready=True,
            )
        except grpc.RpcError as exc:
            raise _not_ready(exc, self.target, timeout) from None

    def list_models(self) -> list[ModelInfo]:
        return [
            model_info_from_proto(m)
            for m in self._unary("ListModels", predictor_pb2.ListModelsRequest()).models
        ]

    def get_model(self, model: str) -> ModelInfo:
        return model_info_from_proto(self._unary("GetModel", predictor_pb2.GetModelRequest(model=model)))

    def predict_clip(
        self, model: str, video: np.ndarray, behavior: np.ndarray, pupil_center: np.ndarray, version: int = 0
    ) -> ClipPrediction:
        """Whole trial(s): video [T, H, W] or [B, T, H, W] (uint8 or float32), behaviour/pupil [.., T, 2]."""
        return clip_from_proto(
            self._unary("PredictClip", clip_request(model, video, behavior, pupil_center, version))
        )

    def open_stream(self, model: str, version: int = 0, stream_id: str = "") -> FrameStream:
        """Open a StreamPredict call (0 = newest version with a ready step graph)."""
        return FrameStream(self._stub, model, version, stream_id, self.metadata)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> PredictorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _not_ready(exc: grpc.RpcError, target: str, timeout: float) -> Exception:
    """A timeout while waiting for the connection means nobody answers: UnavailableError, not a deadline."""
    if exc.code() in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE):
        return from_rpc_error(
            _Status(grpc.StatusCode.UNAVAILABLE, f"no server at {target} after {timeout:g} s")
        )
    return from_rpc_error(exc, "wait_ready")


# ------------------------------------------------------------------------------------------ asyncio client


class AsyncStreamCall:
    """A grpc.aio bidirectional call used with one message in flight: closing, cancelling, ``async with``."""

    rpc = "stream"  # named in errors

    def __init__(self, call: grpc.aio.StreamStreamCall) -> None:
        self._call = call
        self._closed = False

    async def close(self) -> None:
        """Half-close the call and drain it until the server ends it."""
        if self._closed:
            return
        self._closed = True
        try:
            await self._call.done_writing()
            while (await self._call.read()) is not grpc.aio.EOF:
                pass
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED:
                raise from_rpc_error(exc, f"{self.rpc} close") from None

    def cancel(self) -> None:
        self._closed = True
        self._call.cancel()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            await self.close()
        else:
            self.cancel()


class AsyncFrameStream(AsyncStreamCall):
    """grpc.aio StreamPredict call with one frame in flight; create with `AsyncPredictorClient.open_stream`."""

    rpc = "StreamPredict"

    def __init__(self, call: grpc.aio.StreamStreamCall, info: StreamInfo) -> None:
        super().__init__(call)
        self.info = info
        self.sequence = 0

    @classmethod
    async def open(
        cls,
        stub: predictor_pb2_grpc.PredictorStub,
        model: str,
        version: int,
        stream_id: str,
        metadata: Sequence[tuple[str, str]],
    ) -> AsyncFrameStream:
        call = stub.StreamPredict(metadata=metadata)
        try:
            await call.write(open_request(model, version, stream_id))
            msg = await call.read()
        except grpc.RpcError as exc:
            raise from_rpc_error(exc, "StreamPredict open") from None
        if msg is grpc.aio.EOF:
            await _raise_status(call, "StreamPredict open")
        return cls(call, _opened(msg))

    async def send(self, frame: np.ndarray, behavior: np.ndarray, pupil_center: np.ndarray) -> FrameResponse:
        if self._closed:
            raise StreamClosedError(f"stream {self.info.stream_id!r} is closed")
        what = f"StreamPredict frame {self.sequence}"
        t0 = time.perf_counter()
        request = frame_request(self.sequence, frame, behavior, pupil_center)
        t1 = time.perf_counter()
        try:
            await self._call.write(request)
            msg = await self._call.read()
        except grpc.RpcError as exc:
            self._closed = True
            raise from_rpc_error(exc, what) from None
        t2 = time.perf_counter()
        if msg is grpc.aio.EOF:
            self._closed = True
            await _raise_status(self._call, what)
        response = _frame_response(msg, self.sequence, t1 - t0, t2 - t1)
        self.sequence += 1
        return response


async def _raise_status(call: grpc.aio.Call, what: str) -> None:
    code = await call.code()
    details = await call.details()
    if code == grpc.StatusCode.OK:
        raise StreamClosedError(f"{what}: the server ended the stream")
    raise from_rpc_error(_Status(code, details), what)


class _Status(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


class AsyncPredictorClient:
    """grpc.aio client of the Predictor service; ``async with AsyncPredictorClient(target) as c: ...``"""

    def __init__(
        self,
        target: str,
        *,
        round_robin: bool = False,
        timeout: float | None = DEFAULT_TIMEOUT_S,
        metadata: Sequence[tuple[str, str]] = (),
        options: ChannelOptions = (),
        credentials: grpc.ChannelCredentials | None = None,
        token: str | None = None,
    ) -> None:
        self.target = target
        self.timeout = timeout
        self.metadata = auth_metadata(token, metadata)  # + $SENSORIUM_SERVE_TOKEN
        self._channel = open_channel(  # credentials else $SENSORIUM_SERVE_TLS_*
            target, credentials, round_robin=round_robin, options=options, aio=True
        )
        self._stub = predictor_pb2_grpc.PredictorStub(self._channel)

    async def _unary(self, name: str, request: Any) -> Any:
        try:
            return await getattr(self._stub, name)(request, timeout=self.timeout, metadata=self.metadata)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc, name) from None

    async def wait_ready(self, timeout: float = 10.0) -> None:
        """Wait until the server answers; UnavailableError after `timeout` seconds."""
        try:
            await self._stub.ListModels(
                predictor_pb2.ListModelsRequest(),
                timeout=timeout,
                metadata=self.metadata,
                wait_for_ready=True,
            )
        except grpc.RpcError as exc:
            raise _not_ready(exc, self.target, timeout) from None

    async def list_models(self) -> list[ModelInfo]:
        msg = await self._unary("ListModels", predictor_pb2.ListModelsRequest())
        return [model_info_from_proto(m) for m in msg.models]

    async def get_model(self, model: str) -> ModelInfo:
        return model_info_from_proto(
            await self._unary("GetModel", predictor_pb2.GetModelRequest(model=model))
        )

    async def predict_clip(
        self, model: str, video: np.ndarray, behavior: np.ndarray, pupil_center: np.ndarray, version: int = 0
    ) -> ClipPrediction:
        msg = await self._unary("PredictClip", clip_request(model, video, behavior, pupil_center, version))
        return clip_from_proto(msg)

    async def open_stream(
        self, model: str, version: int = 0, stream_id: str = "", frames: int | None = None
    ) -> AsyncFrameStream:
        """A StreamPredict stream; ``frames`` is for the rig's other protocol (client.kserve): a StreamPredict
        stream needs no length, it ends when it is closed."""
        return await AsyncFrameStream.open(self._stub, model, version, stream_id, self.metadata)

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncPredictorClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def iter_frames(
    video: np.ndarray, behavior: np.ndarray, pupil_center: np.ndarray
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Frames of a trial in the released layout: video (H, W, T), behaviour (2, T), pupil centre (2, T)."""
    for t in range(video.shape[-1]):
        yield video[:, :, t], behavior[:, t], pupil_center[:, t]
