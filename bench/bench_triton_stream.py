#!/usr/bin/env python3
"""Triton clients on the step graph: per-frame latency of one stream, six ways, side by side on one server.

  streampredict     sensorium.v1.Predictor/StreamPredict with the project's grpc.aio client
                    (client.predictor.AsyncPredictorClient, the rig's); the server holds the state
  kserve-aio        ModelStreamInfer with Triton's sequence parameters from a bare grpc.aio call (Triton's own
                    message classes, raw bytes): the same client technique as streampredict, so the difference
                    is the protocol and the server's path, nothing else
  triton-aio-stream tritonclient.grpc.aio `stream_infer` (asyncio, one thread), sequence_id / start / end
  triton-stream     tritonclient.grpc `start_stream` / `async_stream_infer` (the blocking client: gRPC consumes the
                    requests on its own thread, answers reach the callback on another) - docs/CLIENTS.md's rig
  triton-infer      tritonclient.grpc `infer` per frame with the same sequence parameters (unary, server state)
  triton-explicit   tritonclient.grpc `infer` per frame shipping the state: every state_in_* in, state_out_* back

One frame in flight, paced at --fps (30 Hz, like a rig) and back to back (--fps 0 is added to the run). A frame's
latency is what the client's caller sees: inputs built -> answer decoded to numpy. Each repeat runs every mode
once on fresh streams / sequences (the order rotates between repeats) and the medians of the per-repeat
percentiles are reported, with the server's own per-frame time for the two streaming modes (StreamPredict's
server_seconds, the sensorium_server_seconds response parameter), which separates the server from the clients.
The four modes' answers are checked equal on the same frames.

The server runs in a subprocess (sensorium-serve serve); this process imports tritonclient and the project's
Predictor client but never the server's `inference` stubs (they clash with tritonclient's in one process).

    .venv/bin/python bench/export_serving_model.py REPO --config default      # the default graph, 8,000 neurons
    .venv/bin/python bench/bench_triton_stream.py --repo REPO [--repeats 5] [--frames 300] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import queue
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import grpc.aio
import numpy as np
import tritonclient.grpc as triton
import tritonclient.grpc.aio as triton_aio
from tritonclient.grpc import service_pb2

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serving import ROOT, make_frames, pct, serve

sys.path.insert(0, str(ROOT))
from client.predictor import AsyncPredictorClient
from models import contract
from models.contract import ModelMetadata

MODES = (
    "streampredict",
    "kserve-aio",
    "triton-aio-stream",
    "triton-stream",
    "triton-infer",
    "triton-explicit",
)
Frames = tuple[np.ndarray, np.ndarray, np.ndarray]
Result = tuple[list[float], list[float], np.ndarray]  # latencies, server seconds (may be empty), responses


def _wait(due: float) -> None:
    delay = due - time.perf_counter()
    if delay > 0:
        time.sleep(delay)


def _inputs(frames: Frames, t: int) -> list[triton.InferInput]:
    out = []
    for name, array in zip((contract.VIDEO, contract.BEHAVIOR, contract.PUPIL_CENTER), frames, strict=True):
        tensor = triton.InferInput(name, [1, *array.shape[1:]], "FP32")
        tensor.set_data_from_numpy(array[t : t + 1])
        out.append(tensor)
    return out


def streampredict(target: str, mouse: str, frames: Frames, fps: float) -> Result:
    async def run() -> Result:
        latencies, server, answers = [], [], []
        video, behavior, pupil = frames
        async with AsyncPredictorClient(target) as client, await client.open_stream(mouse) as stream:
            start = time.perf_counter() + 0.05
            for t in range(len(video)):
                if fps:
                    delay = start + t / fps - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                sent = time.perf_counter()
                response = await stream.send(video[t], behavior[t], pupil[t])
                latencies.append(time.perf_counter() - sent)
                server.append(response.server_seconds)
                answers.append(response.responses)
        return latencies, server, np.stack(answers)

    return asyncio.run(run())


def _paced(start: float, t: int, fps: float) -> asyncio.Future | None:
    delay = start + t / fps - time.perf_counter() if fps else 0.0
    return asyncio.sleep(delay) if delay > 0 else None


def kserve_aio(target: str, mouse: str, frames: Frames, fps: float, sequence_id: int) -> Result:
    """ModelStreamInfer from a bare grpc.aio call, requests built from Triton's message classes (raw bytes)."""
    model = contract.repository_model_name(mouse, contract.STEP)
    names = (contract.VIDEO, contract.BEHAVIOR, contract.PUPIL_CENTER)

    async def run() -> Result:
        latencies, server, answers = [], [], []
        n = len(frames[0])
        async with grpc.aio.insecure_channel(target) as channel:
            call = channel.stream_stream(
                "/inference.GRPCInferenceService/ModelStreamInfer",
                request_serializer=service_pb2.ModelInferRequest.SerializeToString,
                response_deserializer=service_pb2.ModelStreamInferResponse.FromString,
            )()
            start = time.perf_counter() + 0.05
            for t in range(n):
                if (sleep := _paced(start, t, fps)) is not None:
                    await sleep
                sent = time.perf_counter()
                request = service_pb2.ModelInferRequest(model_name=model, id=str(t))
                for name, array in zip(names, frames, strict=True):
                    request.inputs.add(name=name, datatype="FP32", shape=(1, *array.shape[1:]))
                    request.raw_input_contents.append(array[t].tobytes())
                request.parameters["sequence_id"].int64_param = sequence_id
                request.parameters["sequence_start"].bool_param = t == 0
                request.parameters["sequence_end"].bool_param = t == n - 1
                await call.write(request)
                reply = await call.read()
                if reply.error_message:
                    raise RuntimeError(reply.error_message)
                response = reply.infer_response
                answers.append(np.frombuffer(response.raw_output_contents[0], "<f4"))
                latencies.append(time.perf_counter() - sent)
                server.append(response.parameters["sensorium_server_seconds"].double_param)
            await call.done_writing()
        return latencies, server, np.stack(answers)

    return asyncio.run(run())


def triton_aio_stream(target: str, mouse: str, frames: Frames, fps: float, sequence_id: int) -> Result:
    """tritonclient.grpc.aio stream_infer, fed one request at a time from an asyncio queue."""
    model = contract.repository_model_name(mouse, contract.STEP)

    async def run() -> Result:
        latencies, server, answers = [], [], []
        n = len(frames[0])
        pending: asyncio.Queue = asyncio.Queue()

        async def requests():
            while (request := await pending.get()) is not None:
                yield request

        client = triton_aio.InferenceServerClient(target)
        responses = client.stream_infer(requests()).__aiter__()
        start = time.perf_counter() + 0.05
        try:
            for t in range(n):
                if (sleep := _paced(start, t, fps)) is not None:
                    await sleep
                sent = time.perf_counter()
                pending.put_nowait(
                    {
                        "model_name": model,
                        "inputs": _inputs(frames, t),
                        "sequence_id": sequence_id,
                        "sequence_start": t == 0,
                        "sequence_end": t == n - 1,
                    }
                )
                result, error = await responses.__anext__()
                if error is not None:
                    raise error
                answers.append(result.as_numpy(contract.RESPONSES)[0])
                latencies.append(time.perf_counter() - sent)
                server.append(result.get_response().parameters["sensorium_server_seconds"].double_param)
        finally:
            pending.put_nowait(None)
            await client.close()
        return latencies, server, np.stack(answers)

    return asyncio.run(run())


def triton_stream(target: str, mouse: str, frames: Frames, fps: float, sequence_id: int) -> Result:
    model = contract.repository_model_name(mouse, contract.STEP)
    client = triton.InferenceServerClient(target)
    answers_q: queue.SimpleQueue = queue.SimpleQueue()
    client.start_stream(callback=lambda result, error: answers_q.put((result, error)))
    latencies, server, answers = [], [], []
    n = len(frames[0])
    start = time.perf_counter() + 0.05
    try:
        for t in range(n):
            if fps:
                _wait(start + t / fps)
            sent = time.perf_counter()
            client.async_stream_infer(
                model,
                _inputs(frames, t),
                sequence_id=sequence_id,
                sequence_start=t == 0,
                sequence_end=t == n - 1,
            )
            result, error = answers_q.get()
            if error is not None:
                raise error
            answer = result.as_numpy(contract.RESPONSES)[0]
            latencies.append(time.perf_counter() - sent)
            server.append(result.get_response().parameters["sensorium_server_seconds"].double_param)
            answers.append(answer)
    finally:
        client.stop_stream()
        client.close()
    return latencies, server, np.stack(answers)


def triton_infer(target: str, mouse: str, frames: Frames, fps: float, sequence_id: int) -> Result:
    model = contract.repository_model_name(mouse, contract.STEP)
    latencies, answers = [], []
    n = len(frames[0])
    with triton.InferenceServerClient(target) as client:
        start = time.perf_counter() + 0.05
        for t in range(n):
            if fps:
                _wait(start + t / fps)
            sent = time.perf_counter()
            result = client.infer(
                model,
                _inputs(frames, t),
                sequence_id=sequence_id,
                sequence_start=t == 0,
                sequence_end=t == n - 1,
            )
            answers.append(result.as_numpy(contract.RESPONSES)[0])
            latencies.append(time.perf_counter() - sent)
    return latencies, [], np.stack(answers)


def triton_explicit(target: str, mouse: str, frames: Frames, fps: float, metadata: ModelMetadata) -> Result:
    model = contract.repository_model_name(mouse, contract.STEP)
    state = {s.input_name: np.zeros((1, *s.shape), np.float32) for s in metadata.state}
    latencies, answers = [], []
    with triton.InferenceServerClient(target) as client:
        start = time.perf_counter() + 0.05
        for t in range(len(frames[0])):
            if fps:
                _wait(start + t / fps)
            sent = time.perf_counter()
            inputs = _inputs(frames, t)
            for name, array in state.items():
                tensor = triton.InferInput(name, list(array.shape), "FP32")
                tensor.set_data_from_numpy(array)
                inputs.append(tensor)
            result = client.infer(model, inputs)
            answers.append(result.as_numpy(contract.RESPONSES)[0])
            state = {s.input_name: result.as_numpy(s.output_name) for s in metadata.state}
            latencies.append(time.perf_counter() - sent)
    return latencies, [], np.stack(answers)


def measure(
    target: str, mouse: str, metadata: ModelMetadata, frames: int, fps: float, repeats: int, modes: list[str]
) -> dict[str, dict]:
    runs: dict[str, Callable[[Frames, int], Result]] = {
        "streampredict": lambda f, i: streampredict(target, mouse, f, fps),
        "kserve-aio": lambda f, i: kserve_aio(target, mouse, f, fps, 3000 + i),
        "triton-aio-stream": lambda f, i: triton_aio_stream(target, mouse, f, fps, 4000 + i),
        "triton-stream": lambda f, i: triton_stream(target, mouse, f, fps, 1000 + i),
        "triton-infer": lambda f, i: triton_infer(target, mouse, f, fps, 2000 + i),
        "triton-explicit": lambda f, i: triton_explicit(target, mouse, f, fps, metadata),
    }
    per_repeat: dict[str, list[dict]] = {m: [] for m in modes}
    max_diff = 0.0
    for r in range(repeats):
        data = make_frames(frames, seed=r)
        answers = {}
        for k in range(len(modes)):
            mode = modes[(k + r) % len(modes)]  # rotate the order: no mode always runs first or last
            latencies, server, answers[mode] = runs[mode](data, r)
            skip = 5  # first frames allocate
            row = {"p50_ms": pct(latencies[skip:], 50), "p90_ms": pct(latencies[skip:], 90)}
            row["p99_ms"] = pct(latencies[skip:], 99)
            if server:
                row["server_p50_ms"] = pct(server[skip:], 50)
            per_repeat[mode].append(row)
        reference = answers[modes[0]]
        max_diff = max(max_diff, *(float(np.abs(a - reference).max()) for a in answers.values()), 0.0)
        print(
            f"  fps {fps:g} repeat {r + 1}/{repeats}: "
            + ", ".join(f"{m} {per_repeat[m][-1]['p50_ms']:.2f}" for m in modes),
            file=sys.stderr,
        )
    out = {
        mode: {key: statistics.median(row[key] for row in rows) for key in rows[0]}
        for mode, rows in per_repeat.items()
    }
    out["max_abs_diff"] = max_diff
    return out


def state_bytes(metadata: ModelMetadata) -> int:
    return int(sum(np.prod(s.shape) * np.dtype(s.dtype).itemsize for s in metadata.state))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--repo", type=Path, required=True, help="model repository (bench/export_serving_model.py)"
    )
    parser.add_argument("--mouse", help="session (default: the repository's only mouse)")
    parser.add_argument("--frames", type=int, default=300, help="frames per stream (default 300, one trial)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--fps", type=float, default=30.0, help="paced rate; a back-to-back run is added")
    parser.add_argument("--threads", type=int, default=1, help="server --intra-op-threads")
    parser.add_argument(
        "--modes",
        default=",".join(MODES),
        help=f"comma-separated subset of {', '.join(MODES)} (default: all)",
    )
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    modes = args.modes.split(",")
    if not modes or set(modes) - set(MODES):
        parser.error(f"--modes: choose from {', '.join(MODES)}")
    steps = sorted(p.name for p in args.repo.glob(f"*-{contract.STEP}") if p.is_dir())
    mouse = args.mouse or contract.split_repository_model_name(steps[0])[0]
    step_dir = args.repo / contract.repository_model_name(mouse, contract.STEP)
    version = max(int(p.name) for p in step_dir.iterdir() if p.name.isdigit())
    metadata = ModelMetadata.read(step_dir / str(version))
    results: dict = {
        "mouse": mouse,
        "version": version,
        "n_neurons": metadata.n_neurons,
        "state_bytes": state_bytes(metadata),
        "frames": args.frames,
        "repeats": args.repeats,
        "load_average": os.getloadavg(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "server.log"
        with serve(args.repo, batching=False, threads=args.threads, providers="cpu", log=log) as target:
            for fps in (args.fps, 0.0):
                key = f"{fps:g}fps" if fps else "back_to_back"
                results[key] = measure(target, mouse, metadata, args.frames, fps, args.repeats, modes)
    results["load_average_after"] = os.getloadavg()
    print(
        f"{mouse} v{version}: {metadata.n_neurons} neurons, state {results['state_bytes'] / 1e3:.0f} KB per frame"
    )
    print(f"{'p50 / p90 / p99 ms':<16}" + "".join(f"{m:>24}" for m in modes))
    for key in (f"{args.fps:g}fps", "back_to_back"):
        row = results[key]
        cells = "".join(
            f"{row[m]['p50_ms']:>10.2f} /{row[m]['p90_ms']:>5.2f} /{row[m]['p99_ms']:>5.2f}" for m in modes
        )
        print(f"{key:<16}{cells}")
        notes = [f"answers max |diff| {row['max_abs_diff']:.1e}"]
        notes += [f"{m} server p50 {row[m]['server_p50_ms']:.2f}" for m in modes if "server_p50_ms" in row[m]]
        if "streampredict" in modes:
            base = row["streampredict"]["p50_ms"]
            notes += [f"{m} - streampredict p50 {row[m]['p50_ms'] - base:+.2f} ms" for m in modes[1:]]
        if {"triton-explicit", "triton-stream"} <= set(modes):
            ratio = row["triton-explicit"]["p50_ms"] / row["triton-stream"]["p50_ms"]
            notes.append(f"explicit state / triton-stream p50 {ratio:.2f}x")
        print("  " + "; ".join(notes))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
