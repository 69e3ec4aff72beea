"""sensorium.v1.Predictor and sensorium.v1.ModelRepository servicers."""

from __future__ import annotations

import asyncio
import time

import grpc.aio

from models import contract
from protos.sensorium.v1 import predictor_pb2, predictor_pb2_grpc
from server.converters import fill_tensor, tensor_to_array, version_to_proto
from server.dataplane import DataPlane
from server.errors import FailedPrecondition, InvalidArgument, NotFound
from server.registry import Change, Entry
from server.status import rpc


def _graph_status(entry: Entry | None, name: str) -> predictor_pb2.GraphStatus:
    if entry is None:
        return predictor_pb2.GraphStatus(ready=False, reason="not in the repository", repository_name=name)
    return predictor_pb2.GraphStatus(ready=entry.ready, reason=entry.reason, repository_name=name)


def model_info(mouse: str, versions: dict[int, dict[str, Entry]], full: bool) -> predictor_pb2.ModelInfo:
    info = predictor_pb2.ModelInfo(name=mouse)
    for version, kinds in sorted(versions.items()):
        step, clip = kinds.get(contract.STEP), kinds.get(contract.CLIP)
        metadata = next((e.metadata for e in (step, clip) if e is not None and e.metadata is not None), None)
        info.versions.append(
            version_to_proto(
                version,
                metadata,
                _graph_status(clip, contract.repository_model_name(mouse, contract.CLIP)),
                _graph_status(step, contract.repository_model_name(mouse, contract.STEP)),
                full,
            )
        )
        if any(e is not None and e.ready for e in (step, clip)):
            info.latest_version = version
    return info


def _changes(changes: list[Change]) -> list[predictor_pb2.RepositoryChange]:
    return [
        predictor_pb2.RepositoryChange(name=c.name, version=c.version, action=c.action, reason=c.reason)
        for c in changes
    ]


class PredictorServicer(predictor_pb2_grpc.PredictorServicer):
    def __init__(self, plane: DataPlane):
        self.plane = plane
        self.metrics = plane.metrics

    @rpc("ListModels")
    async def ListModels(self, request, context):
        mice = self.plane.registry.mice()
        return predictor_pb2.ListModelsResponse(
            models=[model_info(m, v, full=False) for m, v in sorted(mice.items())]
        )

    @rpc("GetModel")
    async def GetModel(self, request, context):
        mice = self.plane.registry.mice()
        if request.model not in mice:
            raise NotFound(
                f"model {request.model!r}: no such model (models: {', '.join(sorted(mice)) or 'none'})"
            )
        return model_info(request.model, mice[request.model], full=True)

    @rpc("PredictClip")
    async def PredictClip(self, request, context):
        start = time.perf_counter()
        out = await self.plane.predict_clip(
            request.model,
            request.version,
            tensor_to_array(request.video, "video"),
            tensor_to_array(request.behavior, "behavior"),
            tensor_to_array(request.pupil_center, "pupil_center"),
        )
        response = predictor_pb2.PredictClipResponse(
            model=out.graph.mouse,
            version=out.graph.version,
            first_frame=out.graph.metadata.warmup_frames,
            compute_seconds=out.compute_s,
        )
        fill_tensor(response.responses, out.responses)  # in place: megabytes, not copied into the parent
        self.metrics.clip_seconds.labels(out.graph.mouse).observe(time.perf_counter() - start)
        return response

    @rpc("StreamPredict")
    async def StreamPredict(self, request_iterator, context: grpc.aio.ServicerContext):
        first = await context.read()
        if first is grpc.aio.EOF:
            return
        if first.WhichOneof("kind") != "open":
            raise FailedPrecondition(
                "stream not opened: the first StreamPredictRequest must set `open` (model, version), got a frame"
            )
        if not first.open.model:
            raise InvalidArgument("open.model: empty; name a model (ListModels lists them)")
        session = self.plane.open_stream(first.open.model, first.open.version, first.open.stream_id)
        graph = session.graph
        observe_frame = self.metrics.frame_observer(graph.mouse)
        try:
            await context.write(
                predictor_pb2.StreamPredictResponse(
                    opened=predictor_pb2.StreamOpened(
                        stream_id=session.id,
                        model=graph.mouse,
                        version=graph.version,
                        n_neurons=graph.metadata.n_neurons,
                        receptive_field=graph.metadata.receptive_field,
                    )
                )
            )
            while session.end_error is None:
                request = await context.read()
                if request is grpc.aio.EOF:
                    return
                if request.WhichOneof("kind") != "frame":
                    raise FailedPrecondition("stream already open: `open` may only be the first message")
                start = time.perf_counter()
                frame = request.frame
                out = await self.plane.step(
                    session,
                    frame.sequence,
                    tensor_to_array(frame.video, "frame.video"),
                    tensor_to_array(frame.behavior, "frame.behavior"),
                    tensor_to_array(frame.pupil_center, "frame.pupil_center"),
                )
                reply = predictor_pb2.StreamPredictResponse()  # filled in place: the 32 KB are copied once
                result = reply.result
                result.sequence = frame.sequence
                fill_tensor(result.responses, out.responses)
                result.warm = out.warm
                result.queue_seconds = out.queue_s
                result.compute_seconds = out.compute_s
                result.batch_size = out.batch_size
                result.server_seconds = time.perf_counter() - start
                # Counted before the reply: whoever holds the reply can rely on the metrics including it.
                observe_frame(result.server_seconds, out.queue_s, out.compute_s)
                await context.write(reply)
            raise session.end_error
        except asyncio.CancelledError:
            if session.end_error is None:  # the client went away or the server stops: just free the session
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            raise session.end_error from None
        finally:
            self.plane.close_stream(session)


class ModelRepositoryServicer(predictor_pb2_grpc.ModelRepositoryServicer):
    def __init__(self, plane: DataPlane):
        self.plane = plane
        self.metrics = plane.metrics

    @rpc("Rescan")
    async def Rescan(self, request, context):
        return predictor_pb2.RescanResponse(changes=_changes(await self.plane.rescan()))

    @rpc("Load")
    async def Load(self, request, context):
        return predictor_pb2.LoadResponse(
            changes=_changes(await self.plane.load(request.name, request.version))
        )

    @rpc("Unload")
    async def Unload(self, request, context):
        return predictor_pb2.UnloadResponse(
            changes=_changes(await self.plane.unload(request.name, request.version))
        )
