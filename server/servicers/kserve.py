"""inference.GRPCInferenceService (KServe v2 / Open Inference Protocol), so Triton clients work unchanged.

Model names are repository names (``<mouse>-clip``, ``<mouse>-step``); a bare mouse name means its clip graph.
Tensors travel as raw bytes both ways.
"""

from __future__ import annotations

import time
from importlib import metadata as package_metadata

from protos.inference import grpc_predict_v2_pb2 as pb2
from protos.inference import grpc_predict_v2_pb2_grpc as pb2_grpc
from server.converters import arrays_to_infer_response, infer_inputs_to_arrays, kserve_datatype
from server.dataplane import DataPlane
from server.errors import InvalidArgument
from server.registry import TensorSpec
from server.status import rpc

SERVER_NAME = "sensorium-serve"
PLATFORM = "onnxruntime_onnx"


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


class KServeServicer(pb2_grpc.GRPCInferenceServiceServicer):
    def __init__(self, plane: DataPlane):
        self.plane = plane
        self.metrics = plane.metrics

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
        return pb2.ServerMetadataResponse(name=SERVER_NAME, version=_server_version(), extensions=[])

    @rpc("ModelReady")
    async def ModelReady(self, request, context):
        entry = self.plane.registry.entry(
            self.plane.repository_name(request.name), _version(request.version, "version")
        )
        return pb2.ModelReadyResponse(ready=entry.ready and not self.plane.draining)

    @rpc("ModelMetadata")
    async def ModelMetadata(self, request, context):
        name = self.plane.repository_name(request.name)
        graph = self.plane.registry.graph(name, _version(request.version, "version"))
        versions = [str(e.version) for e in self.plane.registry.versions(name) if e.ready]
        return pb2.ModelMetadataResponse(
            name=name,
            versions=versions,
            platform=PLATFORM,
            inputs=[_tensor_metadata(s) for s in graph.inputs.values()],
            outputs=[_tensor_metadata(s) for s in graph.outputs],
        )

    @rpc("ModelInfer")
    async def ModelInfer(self, request, context):
        start = time.perf_counter()
        arrays = infer_inputs_to_arrays(request)
        graph, outputs = await self.plane.infer(
            request.model_name, _version(request.model_version, "model_version"), arrays
        )
        if request.outputs:
            wanted = [o.name for o in request.outputs]
            unknown = [n for n in wanted if n not in outputs]
            if unknown:
                raise InvalidArgument(
                    f"outputs: {unknown} not produced by {graph.name} (outputs: {list(outputs)})"
                )
            outputs = {n: outputs[n] for n in wanted}
        response = arrays_to_infer_response(graph.name, graph.version, request.id, outputs)
        self.metrics.clip_seconds.labels(graph.mouse).observe(time.perf_counter() - start)
        return response
