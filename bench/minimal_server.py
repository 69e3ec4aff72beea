#!/usr/bin/env python3
"""The least a Python server can do per frame: a grpc.aio `sensorium.v1.Predictor/StreamPredict` that decodes the
frame, runs the step graph with onnxruntime on the event loop (state fed back) and answers, and nothing else: no
validation, registry, metrics, workers, auth or batching. One stream at a time.

bench_serving.py runs it beside `sensorium-serve serve` on the same model with the same client: what the real
server costs above it is what its features cost; what this one costs above in-process onnxruntime is what any
Python gRPC server with this model costs on this machine.

    .venv/bin/python bench/minimal_server.py --port P --model-dir REPO/MOUSE-step/1 [--threads 1]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import grpc
import grpc.aio
import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from models import contract  # noqa: E402
from models.contract import ModelMetadata  # noqa: E402
from protos.sensorium.v1 import predictor_pb2, predictor_pb2_grpc  # noqa: E402
from server.converters import array_to_tensor, tensor_to_array  # noqa: E402


class MinimalPredictor(predictor_pb2_grpc.PredictorServicer):
    def __init__(self, model_dir: Path, threads: int) -> None:
        self.metadata = ModelMetadata.read(model_dir)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(model_dir / contract.MODEL_FILENAME), options, providers=["CPUExecutionProvider"]
        )
        self.outputs = [contract.RESPONSES, *[s.output_name for s in self.metadata.state]]

    async def StreamPredict(self, request_iterator, context):  # grpc servicer signature
        first = await context.read()
        md = self.metadata
        opened = predictor_pb2.StreamOpened(
            stream_id="minimal", model=first.open.model, version=1, n_neurons=md.n_neurons,
            receptive_field=md.receptive_field,
        )  # fmt: skip
        await context.write(predictor_pb2.StreamPredictResponse(opened=opened))
        state = {s.input_name: np.zeros((1, *s.shape), np.float32) for s in md.state}
        while (request := await context.read()) is not grpc.aio.EOF:
            start = time.perf_counter()
            frame = request.frame
            feeds = {
                contract.VIDEO: tensor_to_array(frame.video, "video")[None],
                contract.BEHAVIOR: tensor_to_array(frame.behavior, "behavior")[None],
                contract.PUPIL_CENTER: tensor_to_array(frame.pupil_center, "pupil_center")[None],
                **state,
            }
            t0 = time.perf_counter()
            out = self.session.run(self.outputs, feeds)
            compute = time.perf_counter() - t0
            state = {s.input_name: out[1 + i] for i, s in enumerate(md.state)}
            result = predictor_pb2.FrameResult(
                sequence=frame.sequence, responses=array_to_tensor(out[0][0]), compute_seconds=compute,
                batch_size=1,
            )  # fmt: skip
            result.server_seconds = time.perf_counter() - start
            await context.write(predictor_pb2.StreamPredictResponse(result=result))


async def serve(port: int, model_dir: Path, threads: int) -> None:
    server = grpc.aio.server()
    predictor_pb2_grpc.add_PredictorServicer_to_server(MinimalPredictor(model_dir, threads), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model-dir", type=Path, required=True, help="a step graph's version folder")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.model_dir, args.threads))


if __name__ == "__main__":
    main()
