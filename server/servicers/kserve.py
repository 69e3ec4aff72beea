"""inference.GRPCInferenceService (KServe v2 / Open Inference Protocol) with Triton's extensions, so Triton
clients work unchanged, step graphs included.

Model names are repository names (``<mouse>-clip``, ``<mouse>-step``); a bare mouse name means its clip graph.
Tensors travel as raw bytes both ways. A step model speaks Triton's sequence protocol (server/sequences.py):
requests with ``sequence_id`` / ``sequence_start`` / ``sequence_end`` parameters send one frame and the server
holds the state, as Triton does for the implicit state declared in the step model's config.pbtxt; requests
that send every state tensor themselves (no sequence_id) stay stateless. ModelStreamInfer answers each request
in order on the stream, a failed one with ``error_message`` and the request's id, and stays open.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from importlib import metadata as package_metadata

import grpc.aio

from models import contract
from protos.inference import grpc_predict_v2_pb2 as pb2
from protos.inference import grpc_predict_v2_pb2_grpc as pb2_grpc
from server.converters import (
    arrays_to_infer_response,
    infer_inputs_to_arrays,
    kserve_datatype,
    sequence_parameters,
    statistics_to_proto,
)
from server.dataplane import DataPlane, FrameOutput
from server.errors import FailedPrecondition, InvalidArgument, NotFound, ServingError
from server.model_config import PLATFORM, describe_graph
from server.registry import Graph, TensorSpec
from server.security.decode import Undecodable, read_message
from server.sequences import SequenceScheduler, correlation_id_missing
from server.status import rpc, status_of

log = logging.getLogger(__name__)

SERVER_NAME = "sensorium-serve"
# Triton's names for the extensions this service implements (ServerMetadata.extensions).
EXTENSIONS = ("model_repository", "model_configuration", "statistics", "sequence")
READY, UNAVAILABLE = "READY", "UNAVAILABLE"
# Response parameters of a sequence request: the server's view of the frame's time (ignored by plain clients).
WARM, QUEUE_S, COMPUTE_S, SERVER_S, BATCH_SIZE = (
    "sensorium_warm",
    "sensorium_queue_seconds",
    "sensorium_compute_seconds",
    "sensorium_server_seconds",
    "sensorium_batch_size",
)


def _version(text: str, field: str) -> int:
    if not text:
        return 0
    if not (text.isascii() and text.isdigit()):  # str.isdigit() accepts "²", which int() refuses
        raise InvalidArgument(f"{field}: {text!r} is not a version number")
    return int(text)


def _server_version() -> str:
    try:
        return package_metadata.version("sensorium-serve")
    except package_metadata.PackageNotFoundError:
        return "0+unknown"


def _tensor_metadata(spec: TensorSpec) -> pb2.ModelMetadataResponse.TensorMetadata:
    return pb2.ModelMetadataResponse.TensorMetadata(
        name=spec.name,
        datatype=kserve_datatype(spec.dtype),
        shape=[-1 if d is None else d for d in spec.shape],
    )


def _is_step(name: str) -> bool:
    return name.endswith(f"-{contract.STEP}")


class KServeServicer(pb2_grpc.GRPCInferenceServiceServicer):
    def __init__(self, plane: DataPlane):
        self.plane = plane
        self.metrics = plane.metrics
        self.sequences = SequenceScheduler(plane)
        self._frame_observers: dict[str, Callable[[float, float, float], None]] = {}

    # ---- health and metadata -------------------------------------------------------------------------------
    @rpc("ServerLive")
    async def ServerLive(self, request, context):
        return pb2.ServerLiveResponse(live=True)

    @rpc("ServerReady")
    async def ServerReady(self, request, context):
        return pb2.ServerReadyResponse(
            ready=not self.plane.draining and self.plane.registry.ready_count() > 0
        )

    @rpc("ServerMetadata")
    async def ServerMetadata(self, request, context):
        return pb2.ServerMetadataResponse(name=SERVER_NAME, version=_server_version(), extensions=EXTENSIONS)

    @rpc("ModelReady")
    async def ModelReady(self, request, context):
        """False, not NOT_FOUND, for a model that is not loaded (unloaded, unknown), as Triton answers."""
        version = _version(request.version, "version")
        try:
            entry = self.plane.registry.entry(self.plane.repository_name(request.name), version)
        except NotFound:
            return pb2.ModelReadyResponse(ready=False)
        return pb2.ModelReadyResponse(ready=entry.ready and not self.plane.draining)

    @rpc("ModelMetadata")
    async def ModelMetadata(self, request, context):
        """A step model lists its frame inputs and `responses` only: its state is implicit (server-held)."""
        name = self.plane.repository_name(request.name)
        graph = self.plane.registry.graph(name, _version(request.version, "version"))
        versions = [str(e.version) for e in self.plane.registry.versions(name) if e.ready]
        state = {s.input_name for s in graph.state} | {s.output_name for s in graph.state}
        return pb2.ModelMetadataResponse(
            name=name,
            versions=versions,
            platform=PLATFORM,
            inputs=[_tensor_metadata(s) for s in graph.inputs.values() if s.name not in state],
            outputs=[_tensor_metadata(s) for s in graph.outputs if s.name not in state],
        )

    @rpc("ModelConfig")
    async def ModelConfig(self, request, context):
        entry = self.plane.registry.entry(
            self.plane.repository_name(request.name), _version(request.version, "version")
        )
        if entry.config is not None:
            return pb2.ModelConfigResponse(config=entry.config)
        if entry.graph is None:
            raise FailedPrecondition(
                f"model {entry.name!r} version {entry.version} is not ready: {entry.reason}"
            )
        return pb2.ModelConfigResponse(config=describe_graph(entry.graph))

    # ---- inference -----------------------------------------------------------------------------------------
    @rpc("ModelInfer")
    async def ModelInfer(self, request, context):
        return await self._infer(request)

    @rpc("ModelStreamInfer")
    async def ModelStreamInfer(self, request_iterator, context: grpc.aio.ServicerContext):
        """Requests are answered concurrently (a sequence's requests in order) and written in request order."""
        answers: asyncio.Queue[asyncio.Task[pb2.ModelStreamInferResponse] | None] = asyncio.Queue()
        writer = asyncio.create_task(self._write_answers(answers, context))
        tasks: set[asyncio.Task] = set()
        try:
            while True:
                request = await read_message(context)
                if request is grpc.aio.EOF or isinstance(request, Undecodable):
                    break
                task = asyncio.create_task(self._stream_answer(request))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                answers.put_nowait(task)
            answers.put_nowait(None)
            await writer  # the answers to everything before the end (or the garbage) go out first
            if isinstance(request, Undecodable):
                raise InvalidArgument(request.details)
        finally:
            for task in tasks:
                task.cancel()
            writer.cancel()
            # No write may be in flight when the call's status goes out (gRPC refuses a second operation).
            await asyncio.gather(writer, return_exceptions=True)

    async def _write_answers(
        self, answers: asyncio.Queue[asyncio.Task[pb2.ModelStreamInferResponse] | None], context
    ) -> None:
        while (task := await answers.get()) is not None:
            await context.write(await task)

    async def _stream_answer(self, request: pb2.ModelInferRequest) -> pb2.ModelStreamInferResponse:
        try:
            return pb2.ModelStreamInferResponse(infer_response=await self._infer(request))
        except ServingError as exc:
            code = status_of(exc)
            message = str(exc)
        except Exception as exc:  # a bug: answer it like the unary call would, keep the stream
            log.exception("ModelStreamInfer request failed")
            code, message = grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}"
        self.metrics.errors.labels("ModelStreamInfer", code.name).inc()
        return pb2.ModelStreamInferResponse(
            error_message=message, infer_response=pb2.ModelInferResponse(id=request.id)
        )

    async def _infer(self, request: pb2.ModelInferRequest) -> pb2.ModelInferResponse:
        start = time.perf_counter()
        arrays = infer_inputs_to_arrays(request)
        version = _version(request.model_version, "model_version")
        name = self.plane.repository_name(request.model_name)
        if _is_step(name):
            sequence = sequence_parameters(request.parameters)
            if sequence.given:
                graph, out = await self.sequences.step(name, version, sequence, arrays)
                return self._sequence_response(request, graph, out, start)
            graph = self.plane.registry.graph(name, version)
            if not set(arrays) & {s.input_name for s in graph.state}:  # neither server- nor client-held state
                raise correlation_id_missing(name)
        graph, outputs = await self.plane.infer(name, version, arrays)
        if request.outputs:
            outputs = {n: outputs[n] for n in _requested(request, graph, outputs)}
        response = arrays_to_infer_response(graph.name, graph.version, request.id, outputs)
        self.metrics.clip_seconds.labels(graph.mouse).observe(time.perf_counter() - start)
        return response

    def _sequence_response(
        self, request: pb2.ModelInferRequest, graph: Graph, out: FrameOutput, start: float
    ) -> pb2.ModelInferResponse:
        outputs = {contract.RESPONSES: out.responses[None]}  # [1, N]: the request's batch of one
        if request.outputs:
            _requested(request, graph, outputs)
        response = arrays_to_infer_response(graph.name, graph.version, request.id, outputs)
        server_s = time.perf_counter() - start
        parameters = response.parameters
        parameters[WARM].bool_param = out.warm
        parameters[QUEUE_S].double_param = out.queue_s
        parameters[COMPUTE_S].double_param = out.compute_s
        parameters[SERVER_S].double_param = server_s
        parameters[BATCH_SIZE].int64_param = out.batch_size
        observe = self._frame_observers.get(graph.mouse)
        if observe is None:
            observe = self._frame_observers[graph.mouse] = self.metrics.frame_observer(graph.mouse)
        observe(server_s, out.queue_s, out.compute_s)
        return response

    # ---- statistics and repository -------------------------------------------------------------------------
    @rpc("ModelStatistics")
    async def ModelStatistics(self, request, context):
        registry = self.plane.registry
        version = _version(request.version, "version")
        if request.name:
            name = self.plane.repository_name(request.name)
            entries = [registry.entry(name, version)] if version else registry.versions(name)
            if not any(e.ready for e in entries):
                raise NotFound(f"model {name!r}: no ready version{f' {version}' if version else ''}")
        else:
            entries = registry.entries()
        return pb2.ModelStatisticsResponse(
            model_stats=[
                statistics_to_proto(e.name, e.version, e.graph.stats.snapshot())
                for e in entries
                if e.graph is not None
            ]
        )

    @rpc("RepositoryIndex")
    async def RepositoryIndex(self, request, context):
        self._check_repository(request.repository_name)
        registry = self.plane.registry
        models = []
        known = set()
        for e in registry.entries():
            known.add(e.name)
            if e.ready or not request.ready:
                models.append(
                    pb2.RepositoryIndexResponse.ModelIndex(
                        name=e.name,
                        version=str(e.version),
                        state=READY if e.ready else UNAVAILABLE,
                        reason=e.reason,
                    )
                )
        if not request.ready:
            for name in await asyncio.to_thread(registry.model_names_on_disk):
                if name not in known:
                    models.append(
                        pb2.RepositoryIndexResponse.ModelIndex(
                            name=name, state=UNAVAILABLE, reason="unloaded"
                        )
                    )
        models.sort(key=lambda m: (m.name, int(m.version or 0)))
        return pb2.RepositoryIndexResponse(models=models)

    @rpc("RepositoryModelLoad")
    async def RepositoryModelLoad(self, request, context):
        self._check_repository(request.repository_name)
        overrides = sorted(k for k in request.parameters if k == "config" or k.startswith("file:"))
        if overrides:
            raise InvalidArgument(
                f"parameters: {overrides} not supported here; put the files in the repository and load by name"
            )
        name = request.model_name
        try:
            changes = await self.plane.load(name, 0)
        except NotFound as exc:
            raise NotFound(f"failed to load '{name}', failed to poll from model repository: {exc}") from None
        failed = [c for c in changes if c.action == "failed"]
        if failed:
            raise FailedPrecondition(
                f"failed to load '{name}': "
                + "; ".join(f"version {c.version} is at {UNAVAILABLE} state: {c.reason}" for c in failed)
            )
        return pb2.RepositoryModelLoadResponse()

    @rpc("RepositoryModelUnload")
    async def RepositoryModelUnload(self, request, context):
        self._check_repository(request.repository_name)
        await self.plane.unload(request.model_name, 0)  # "unload_dependents": nothing depends on a graph here
        return pb2.RepositoryModelUnloadResponse()

    def _check_repository(self, repository_name: str) -> None:
        repo = str(self.plane.registry.repo)
        if repository_name not in ("", repo):
            raise NotFound(
                f"repository_name {repository_name!r}: this server serves one repository, {repo!r}"
            )


def _requested(request: pb2.ModelInferRequest, graph: Graph, outputs: dict) -> list[str]:
    """The names of ``request.outputs``, each one `graph` produces for this request."""
    wanted = [o.name for o in request.outputs]
    unknown = [n for n in wanted if n not in outputs]
    if unknown:
        raise InvalidArgument(f"outputs: {unknown} not produced by {graph.name} (outputs: {list(outputs)})")
    return wanted
