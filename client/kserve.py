"""The rig's KServe v2 / Triton protocol: one Triton sequence per trial over ModelStreamInfer.

`AsyncKServeClient` has the streaming half of `client.predictor.AsyncPredictorClient`'s shape (``wait_ready``,
``open_stream`` -> a stream whose ``send(frame, behavior, pupil_center)`` returns a `FrameResponse`), so
`client.rig` replays trials the same way over either protocol (``sensorium-serve rig --protocol kserve``).
Each trial is a sequence of the mouse's step model (``<mouse>-step``) with a fresh uint64 ``sequence_id``,
``sequence_start`` on its first frame and ``sequence_end`` on its last: the server holds the state, as Triton
does for the implicit state in the step model's config.pbtxt, so the same requests run against Triton serving
this repository. Frames travel with the batch axis of one the config asks for.

Built on this project's own `inference` stubs, not tritonclient (the two register the same protobuf symbols
and cannot share a process); docs/CLIENTS.md shows the same loop in plain tritonclient. The server's timing
(queue, compute, server time, batch size, warm-up) comes back as response parameters
(``sensorium_*``); against a server that does not send them (Triton) those read 0 and the whole round trip
counts as network.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from typing import Any

import grpc
import grpc.aio
import numpy as np

from client.errors import PredictorError, ProtocolError, StreamClosedError, from_rpc_error
from client.predictor import (
    DEFAULT_TIMEOUT_S,
    AsyncStreamCall,
    ChannelOptions,
    FrameResponse,
    StreamInfo,
    _not_ready,
    auth_metadata,
    open_channel,
)
from models import contract
from protos.inference import grpc_predict_v2_pb2 as pb2
from protos.inference import grpc_predict_v2_pb2_grpc as pb2_grpc

_DATATYPES = {np.dtype(np.float32): "FP32", np.dtype(np.uint8): "UINT8"}


def _parameter(response: pb2.ModelInferResponse, name: str, kind: str, default: Any) -> Any:
    parameters = response.parameters
    return getattr(parameters[name], kind) if name in parameters else default


class KServeSequenceStream(AsyncStreamCall):
    """One Triton sequence on a ModelStreamInfer call, one frame in flight; from `AsyncKServeClient.open_stream`.
    Closing half-closes the call: a sequence that did not reach its END frame idles out on the server."""

    rpc = "ModelStreamInfer"

    def __init__(
        self, call: grpc.aio.StreamStreamCall, info: StreamInfo, frames: int | None, sequence_id: int
    ) -> None:
        super().__init__(call)
        self.info = info
        self.frames = frames  # known length: the last frame carries sequence_end
        self.sequence_id = sequence_id
        self.sequence = 0
        self._request = pb2.ModelInferRequest(model_name=info.model, model_version=str(info.version))
        self._request.parameters["sequence_id"].int64_param = sequence_id

    def _encode(
        self, frame: np.ndarray, behavior: np.ndarray, pupil_center: np.ndarray
    ) -> pb2.ModelInferRequest:
        request = pb2.ModelInferRequest()
        request.CopyFrom(self._request)
        request.id = str(self.sequence)
        parameters = request.parameters
        parameters["sequence_start"].bool_param = self.sequence == 0
        parameters["sequence_end"].bool_param = self.frames is not None and self.sequence == self.frames - 1
        for name, array in (
            (contract.VIDEO, np.asarray(frame)),
            (contract.BEHAVIOR, np.asarray(behavior, dtype=np.float32)),
            (contract.PUPIL_CENTER, np.asarray(pupil_center, dtype=np.float32)),
        ):
            datatype = _DATATYPES.get(array.dtype)
            if datatype is None:
                array, datatype = array.astype(np.float32), "FP32"
            request.inputs.add(name=name, datatype=datatype, shape=(1, *array.shape))
            request.raw_input_contents.append(
                array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
            )
        return request

    async def send(self, frame: np.ndarray, behavior: np.ndarray, pupil_center: np.ndarray) -> FrameResponse:
        """The next frame ([H, W] uint8/float32, behaviour [2], pupil centre [2]); waits for its answer."""
        if self._closed:
            raise StreamClosedError(f"sequence {self.sequence_id} ({self.info.stream_id}) is closed")
        what = f"ModelStreamInfer frame {self.sequence}"
        t0 = time.perf_counter()
        request = self._encode(frame, behavior, pupil_center)
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
            raise StreamClosedError(f"{what}: the server ended the stream")
        if msg.error_message:
            raise PredictorError(grpc.StatusCode.UNKNOWN, msg.error_message, call=what)
        response = msg.infer_response
        if response.id != request.id or not response.raw_output_contents:
            raise ProtocolError(f"{what}: expected the answer to request {request.id!r}, got {response.id!r}")
        t3 = time.perf_counter()
        responses = np.frombuffer(response.raw_output_contents[0], dtype="<f4")
        decode = time.perf_counter() - t3
        out = FrameResponse(
            sequence=self.sequence,
            responses=responses,
            warm=_parameter(response, "sensorium_warm", "bool_param", False),
            queue_seconds=_parameter(response, "sensorium_queue_seconds", "double_param", 0.0),
            compute_seconds=_parameter(response, "sensorium_compute_seconds", "double_param", 0.0),
            server_seconds=_parameter(response, "sensorium_server_seconds", "double_param", 0.0),
            batch_size=_parameter(response, "sensorium_batch_size", "int64_param", 1),
            encode_seconds=t1 - t0,
            round_trip_seconds=t2 - t1,
            decode_seconds=decode,
        )
        self.sequence += 1
        return out


class AsyncKServeClient:
    """grpc.aio client of inference.GRPCInferenceService for the rig: ``async with AsyncKServeClient(t) as c``."""

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
        self.metadata = auth_metadata(token, metadata)
        self._channel = open_channel(target, credentials, round_robin=round_robin, options=options, aio=True)
        self._stub = pb2_grpc.GRPCInferenceServiceStub(self._channel)

    async def wait_ready(self, timeout: float = 10.0) -> None:
        """Wait until the server answers; UnavailableError after `timeout` seconds."""
        try:
            await self._stub.ServerLive(
                pb2.ServerLiveRequest(), timeout=timeout, metadata=self.metadata, wait_for_ready=True
            )
        except grpc.RpcError as exc:
            raise _not_ready(exc, self.target, timeout) from None

    async def open_stream(
        self, model: str, version: int = 0, stream_id: str = "", frames: int | None = None
    ) -> KServeSequenceStream:
        """A new sequence on `model`'s step graph (a mouse name or ``<mouse>-step``); ``frames``: how many frames
        it will carry (the last one ends the sequence; None: it idles out after `close`)."""
        name = (
            model
            if model.endswith(f"-{contract.STEP}")
            else contract.repository_model_name(model, contract.STEP)
        )
        try:
            meta = await self._stub.ModelMetadata(
                pb2.ModelMetadataRequest(name=name, version=str(version) if version else ""),
                timeout=self.timeout,
                metadata=self.metadata,
            )
        except grpc.RpcError as exc:
            raise from_rpc_error(exc, "ModelMetadata") from None
        resolved = version or max(int(v) for v in meta.versions)
        responses = next((o for o in meta.outputs if o.name == contract.RESPONSES), None)
        if responses is None:
            raise ProtocolError(f"ModelMetadata of {name}: no output {contract.RESPONSES!r}")
        sequence_id = secrets.randbits(63) or 1  # 0 means "no sequence"
        info = StreamInfo(stream_id or f"sequence {sequence_id}", name, resolved, int(responses.shape[-1]), 0)
        call = self._stub.ModelStreamInfer(metadata=self.metadata)
        return KServeSequenceStream(call, info, frames, sequence_id)

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncKServeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
