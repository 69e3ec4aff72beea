#!/usr/bin/env python3
"""Serving benchmark: per-frame latency over loopback vs in-process onnxruntime, and 30 Hz stream capacity.

1. Baseline: the step graph in this process with onnxruntime (same thread settings as the server), state fed
   back, one frame at a time: per-call latency.
2. Served: `sensorium-serve serve` in a separate process; one StreamPredict stream from this process, one frame
   in flight, paced at --fps: per-frame latency as the rig sees it (encode + round trip + decode).
   Target: served p50 <= in-process p50 + 1 ms.
3. Capacity, batching off and on (a fresh server each): k concurrent streams (asyncio tasks in this process,
   one channel each, random phase within the frame period, like independent rigs) at --fps for
   --capacity-seconds; k passes when the p99 of every frame's latency < 1/fps and no answer misses its
   deadline (the next frame's due time). Capacity = the largest passing k (doubling, then bisection).
   Target: capacity with batching >= 1.5x without. Also: the in-process cost per frame by batch size (1-8),
   the most batching could save.
Each latency measurement is repeated (--repeats) and the medians of the per-repeat percentiles reported.

Default model: a synthetic step graph with real tensor sizes (bench/serving_model.py: 8,000 neurons, 5.3 MB
state per stream); --repo/--mouse take an exported repository instead.

    .venv/bin/python bench/bench_serving.py [--repeats 3] [--frames 300] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from client.errors import PredictorError  # noqa: E402
from client.predictor import (  # noqa: E402
    AsyncPredictorClient,
    FrameResponse,
    PredictorClient,
    frame_request,
)
from models import contract  # noqa: E402
from models.benchmark import FPS, FRAME_HEIGHT, FRAME_WIDTH  # noqa: E402
from models.contract import ModelMetadata  # noqa: E402


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1e3, q))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_frames(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    video = rng.integers(0, 256, (n, FRAME_HEIGHT, FRAME_WIDTH)).astype(np.float32)
    behavior = (rng.standard_normal((n, 2)) + np.array([50.0, 1.3])).astype(np.float32)
    pupil = (rng.standard_normal((n, 2)) * 3).astype(np.float32)
    return video, behavior, pupil


# ------------------------------------------------------------------------------------------------ baseline


def in_process_latency(
    model_file: Path,
    metadata: ModelMetadata,
    frames: int,
    threads: int,
    providers: list[str],
    fps: float = 0.0,
) -> list[float]:
    """Per-call latency of the step graph in this process; paced at `fps` (idle between frames, like the
    served run) when fps > 0, else back to back."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(str(model_file), sess_options=options, providers=providers)
    video, behavior, pupil = make_frames(frames)
    state = {s.input_name: np.zeros((1, *s.shape), np.float32) for s in metadata.state}
    outputs = [contract.RESPONSES, *[s.output_name for s in metadata.state]]
    times = []
    clock0 = time.perf_counter()
    for t in range(frames):
        if fps > 0:
            delay = clock0 + t / fps - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        feeds = {
            contract.VIDEO: video[t : t + 1],
            contract.BEHAVIOR: behavior[t : t + 1],
            contract.PUPIL_CENTER: pupil[t : t + 1],
            **state,
        }
        t0 = time.perf_counter()
        result = session.run(outputs, feeds)
        times.append(time.perf_counter() - t0)
        state = {s.input_name: result[1 + i] for i, s in enumerate(metadata.state)}
    return times[5:]  # first calls allocate


def batch_cost(
    model_file: Path, metadata: ModelMetadata, threads: int, providers: list[str], calls: int = 20
) -> dict[int, float]:
    """onnxruntime ms per FRAME of a step call by batch size (in-process, state fed back): what batching can
    save at best, before stacking states and waiting for a batch."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(str(model_file), sess_options=options, providers=providers)
    outputs = [contract.RESPONSES, *[s.output_name for s in metadata.state]]
    out: dict[int, float] = {}
    for b in (1, 2, 4, 8):
        video, behavior, pupil = make_frames(b)
        state = {s.input_name: np.zeros((b, *s.shape), np.float32) for s in metadata.state}
        times = []
        for _ in range(calls):
            feeds = {
                contract.VIDEO: video,
                contract.BEHAVIOR: behavior,
                contract.PUPIL_CENTER: pupil,
                **state,
            }
            t0 = time.perf_counter()
            result = session.run(outputs, feeds)
            times.append(time.perf_counter() - t0)
            state = {s.input_name: result[1 + i] for i, s in enumerate(metadata.state)}
        out[b] = statistics.median(times[3:]) * 1e3 / b
    return out


# ------------------------------------------------------------------------------------------------ server


@contextlib.contextmanager
def serve(
    repo: Path,
    batching: bool,
    threads: int,
    providers: str,
    log: Path,
    workers: int = 0,
    extra: tuple[str, ...] = (),
) -> Iterator[str]:
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "server.cli",
        "serve",
        "--repo",
        str(repo),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--http-port",
        "-1",
        "--intra-op-threads",
        str(threads),
        "--providers",
        providers,
        "--batching" if batching else "--no-batching",
        *(["--step-workers", str(workers)] if workers > 0 else []),
        *extra,
    ]
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    target = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        with PredictorClient(target, timeout=5) as client:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"server exited with {proc.returncode}; see {log}")
                try:
                    client.wait_ready(timeout=1)
                    if client.list_models():
                        break
                except PredictorError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"server not ready after 60 s; see {log}")
                time.sleep(0.2)
        yield target
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def bench_server(script: str, args: list[str], log: Path) -> Iterator[str]:
    """A bench/ server script in a subprocess on a free port (it takes --port); yields its target when it
    accepts connections."""
    import grpc

    port = free_port()
    cmd = [sys.executable, str(Path(__file__).with_name(script)), *args, "--port", str(port)]
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    target = f"127.0.0.1:{port}"
    try:
        with grpc.insecure_channel(target) as channel:
            grpc.channel_ready_future(channel).result(timeout=60)
        yield target
    finally:
        proc.kill()
        proc.wait()


def grpc_floor(target: str, request_bytes: int, frames: int, fps: float, hold_ms: float) -> dict:
    from grpc_echo import round_trips

    times = asyncio.run(round_trips(target, request_bytes, frames, fps))
    floor = [t - hold_ms / 1e3 for t in times]
    return {"p50_ms": pct(floor, 50), "p99_ms": pct(floor, 99)}


# ------------------------------------------------------------------------------------------------ clients


Timing = tuple[float, float, float, float, float, int]  # client, network, queue, compute, server other, batch


def timing(r: FrameResponse) -> Timing:
    return (
        r.encode_seconds + r.decode_seconds,
        r.network_seconds,
        r.queue_seconds,
        r.compute_seconds,
        r.server_seconds - r.queue_seconds - r.compute_seconds,
        r.batch_size,
    )


async def one_stream(
    target: str, mouse: str, frames: int, fps: float, phase: float, start: float, seed: int
) -> tuple[list[float], int, list[Timing]]:
    """Stream `frames` frames at `fps` from `start + phase`; (per-frame latencies, deadline misses, timings)."""
    video, behavior, pupil = make_frames(frames, seed)
    period = 1.0 / fps
    latencies, misses, timings = [], 0, []
    async with AsyncPredictorClient(target) as client, await client.open_stream(mouse) as stream:
        t0 = start + phase
        for i in range(frames):
            due = t0 + i * period
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            sent = time.perf_counter()
            response = await stream.send(video[i], behavior[i], pupil[i])
            done = time.perf_counter()
            latencies.append(done - sent)
            timings.append(timing(response))
            misses += done > due + period
    return latencies, misses, timings


async def _streams(target: str, mouse: str, seeds: list[int], frames: int, fps: float, start: float) -> list:
    return await asyncio.gather(
        *[
            one_stream(target, mouse, frames, fps, random.Random(s).uniform(0, 1.0 / fps), start, s)
            for s in seeds
        ]
    )


def _worker(target: str, mouse: str, seeds: list[int], frames: int, fps: float, start: float) -> list:
    return asyncio.run(_streams(target, mouse, seeds, frames, fps, start))


def run_streams(
    target: str, mouse: str, k: int, frames: int, fps: float, seed: int = 0, procs: int = 1
) -> dict:
    """k concurrent streams, spread over `procs` client processes (perf_counter is CLOCK_MONOTONIC: shared)."""
    seeds = [seed * 1000 + i for i in range(k)]
    procs = max(1, min(procs, k))
    start = time.perf_counter() + 0.5 + 0.02 * k + (1.0 if procs > 1 else 0.0)  # time to open every stream
    if procs == 1:
        results = _worker(target, mouse, seeds, frames, fps, start)
    else:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(procs) as pool:
            parts = pool.map(
                _worker,
                *zip(
                    *[(target, mouse, seeds[i::procs], frames, fps, start) for i in range(procs)], strict=True
                ),
            )
            results = [r for part in parts for r in part]
    latencies = [x for lat, _, _ in results for x in lat]
    timings = np.array([t for _, _, ts in results for t in ts], dtype=np.float64)
    names = ("client", "network", "queue", "compute", "server_other")
    return {
        "streams": k,
        "frames": len(latencies),
        "p50_ms": pct(latencies, 50),
        "p99_ms": pct(latencies, 99),
        "max_ms": pct(latencies, 100),
        "deadline_misses": int(sum(m for _, m, _ in results)),
        "mean_batch_size": float(timings[:, 5].mean()),
        "breakdown_p50_ms": {n: pct(list(timings[:, i]), 50) for i, n in enumerate(names)},
    }


def capacity(
    target: str, mouse: str, fps: float, seconds: float, max_streams: int, procs: int, retries: int = 1
) -> tuple[int, list[dict]]:
    """Largest k passing; a failed probe is repeated up to `retries` times (a shared machine's hiccup must not
    decide the result) and k passes if any attempt passes."""
    frames = max(10, int(seconds * fps))
    budget_ms = 1e3 / fps
    probes: list[dict] = []

    def passes(k: int) -> bool:
        for attempt in range(1 + retries):
            r = run_streams(target, mouse, k, frames, fps, seed=k + 7919 * attempt, procs=procs)
            r["pass"] = r["p99_ms"] < budget_ms and r["deadline_misses"] == 0
            probes.append(r)
            print(
                f"    {k:3d} streams: p50 {r['p50_ms']:6.2f} ms  p99 {r['p99_ms']:6.2f} ms  misses "
                f"{r['deadline_misses']:4d}  batch {r['mean_batch_size']:5.2f}  {'pass' if r['pass'] else 'FAIL'}",
                flush=True,
            )
            if r["pass"]:
                return True
        return False

    good, bad = 0, None
    k = 1
    while k <= max_streams:
        if passes(k):
            good, k = k, k * 2
        else:
            bad = k
            break
    if bad is None:
        return good, probes
    while bad - good > 1:
        mid = (good + bad) // 2
        if passes(mid):
            good = mid
        else:
            bad = mid
    return good, probes


# ------------------------------------------------------------------------------------------------ main


def measure_latency(
    args: argparse.Namespace,
    repo: Path,
    mouse: str,
    model_file: Path,
    metadata: ModelMetadata,
    ort_providers: list[str],
    log: Path,
) -> dict:
    """Steps 1 + 2: in-process and served latency, paced and back to back, repeated; medians.

    Served by four servers running side by side, the same client for the first three:
    - `served`: `sensorium-serve serve` (default: the only stream runs on the event loop);
    - `served_workers`: the same with `--no-inline-lone-stream` (every frame through the step workers);
    - `minimal`: bench/minimal_server.py, the least a grpc.aio server can do with this graph (decode, run
      inline, answer; no validation, metrics, registry);
    - `grpc_floor`: bench/grpc_echo.py, raw bytes of the same sizes, each reply held for the in-process step
      time of busy CPU (reported: round trip - hold)."""
    # Paced at --fps (idle between frames, as a rig runs) and back to back; each repeat measures every mode so
    # drift hits them alike.
    modes = (
        "in_process",
        "in_process_back_to_back",
        "served",
        "served_back_to_back",
        "served_workers",
        "served_workers_back_to_back",
        "minimal",
        "minimal_back_to_back",
        "grpc_floor",
        "grpc_floor_back_to_back",
    )
    reps: dict[str, list[dict]] = {m: [] for m in modes}
    video, behavior, pupil = make_frames(1)
    request_bytes = frame_request(0, video[0], behavior[0], pupil[0]).ByteSize()
    reply_bytes = metadata.n_neurons * 4 + 64  # raw float32 responses + the FrameResult fields
    hold = statistics.median(in_process_latency(model_file, metadata, 60, args.threads, ort_providers, 0.0))
    hold_ms = hold * 1e3
    print(f"  gRPC floor: {request_bytes} B in, {reply_bytes} B out, {hold_ms:.2f} ms hold", flush=True)
    common = dict(threads=args.threads, providers=args.providers, log=log, workers=args.step_workers)
    with (
        serve(repo, batching=True, **common) as target,
        serve(repo, batching=True, extra=("--no-inline-lone-stream",), **common) as workers_target,
        bench_server(
            "minimal_server.py", ["--model-dir", str(model_file.parent), "--threads", str(args.threads)], log
        ) as minimal_target,
        bench_server(
            "grpc_echo.py", ["serve", "--reply-bytes", str(reply_bytes), "--hold-ms", f"{hold_ms:.3f}"], log
        ) as echo_target,
    ):
        servers = (("served", target), ("served_workers", workers_target), ("minimal", minimal_target))
        for _, t in servers:
            run_streams(t, mouse, 1, 30, 1000.0)  # warm-up
        grpc_floor(echo_target, request_bytes, 30, 1000.0, hold_ms)
        for rep in range(args.repeats):
            for name, fps in (("in_process", args.fps), ("in_process_back_to_back", 0.0)):
                base = in_process_latency(model_file, metadata, args.frames, args.threads, ort_providers, fps)
                reps[name].append({"p50_ms": pct(base, 50), "p99_ms": pct(base, 99)})
            for prefix, t in servers:
                reps[prefix].append(run_streams(t, mouse, 1, args.frames, args.fps, seed=100 + rep))
                reps[f"{prefix}_back_to_back"].append(
                    run_streams(t, mouse, 1, args.frames, 1e6, seed=200 + rep)
                )
            reps["grpc_floor"].append(grpc_floor(echo_target, request_bytes, args.frames, args.fps, hold_ms))
            reps["grpc_floor_back_to_back"].append(
                grpc_floor(echo_target, request_bytes, args.frames, 0.0, hold_ms)
            )
            parts = ", ".join(f"{k} {v:.2f}" for k, v in reps["served"][-1]["breakdown_p50_ms"].items())
            parts_b2b = ", ".join(
                f"{k} {v:.2f}" for k, v in reps["served_back_to_back"][-1]["breakdown_p50_ms"].items()
            )
            print(
                f"  repeat {rep}: p50/p99 ms "
                + " | ".join(f"{m} {reps[m][-1]['p50_ms']:.2f}/{reps[m][-1]['p99_ms']:.2f}" for m in modes)
                + f" | served parts p50: {parts} | back to back: {parts_b2b}",
                flush=True,
            )
    med: dict = {
        m: {q: statistics.median(x[q] for x in reps[m]) for q in ("p50_ms", "p99_ms")} for m in modes
    }
    for mode in modes[2:-2]:
        med[f"{mode}_breakdown_p50_ms"] = {
            k: statistics.median(x["breakdown_p50_ms"][k] for x in reps[mode])
            for k in reps[mode][0]["breakdown_p50_ms"]
        }
    out: dict = {"latency": med, "latency_repeats": reps, "grpc_floor_hold_ms": hold_ms}
    print(
        f"latency (median of {args.repeats}), p50/p99 ms: "
        + ", ".join(f"{m} {med[m]['p50_ms']:.2f}/{med[m]['p99_ms']:.2f}" for m in modes),
        flush=True,
    )
    for served in ("served", "served_workers", "minimal"):
        for pacing, suffix in ((f"at {args.fps:g} Hz", ""), ("back to back", "_back_to_back")):
            over = med[served + suffix]["p50_ms"] - med["in_process" + suffix]["p50_ms"]
            above_floor = over - med["grpc_floor" + suffix]["p50_ms"]
            out[f"{served}_overhead{suffix}_p50_ms"] = over
            out[f"{served}_above_grpc_floor{suffix}_p50_ms"] = above_floor
            vs_minimal = med[served + suffix]["p50_ms"] - med["minimal" + suffix]["p50_ms"]
            out[f"{served}_above_minimal{suffix}_p50_ms"] = vs_minimal
            print(
                f"  {served} - in-process p50 {pacing}: {over:+.2f} ms (target <= +1 ms); above the gRPC floor "
                f"({med['grpc_floor' + suffix]['p50_ms']:.2f} ms) {above_floor:+.2f} ms, above the minimal server "
                f"{vs_minimal:+.2f} ms",
                flush=True,
            )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repo", type=Path, help="exported model repository (default: a synthetic one)")
    parser.add_argument("--mouse", help="model (mouse) in --repo (default: the first with a step graph)")
    parser.add_argument("--frames", type=int, default=300, help="frames per latency repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--fps", type=float, default=float(FPS))
    parser.add_argument(
        "--threads", type=int, default=1, help="onnxruntime intra-op threads (server and baseline)"
    )
    parser.add_argument(
        "--step-workers", type=int, default=0, help="server step workers per model (0: cores // threads)"
    )
    parser.add_argument("--providers", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--capacity-seconds", type=float, default=3.0, help="duration of one capacity probe")
    parser.add_argument("--max-streams", type=int, default=64)
    parser.add_argument("--skip-capacity", action="store_true")
    parser.add_argument("--skip-latency", action="store_true", help="capacity only")
    parser.add_argument(
        "--probe-retries", type=int, default=1, help="repeat a failed capacity probe this often"
    )
    parser.add_argument(
        "--client-procs", type=int, default=1, help="client processes sharing the capacity streams"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    if args.repo is None:
        from serving_model import MOUSE, write_repository

        repo, mouse = tmp / "repo", MOUSE
        write_repository(repo)
        model_name = "synthetic (bench/serving_model.py: 8,000 neurons, 5.3 MB state)"
    else:
        repo = args.repo
        steps = sorted(p for p in repo.iterdir() if p.name.endswith("-" + contract.STEP))
        mouse = args.mouse or contract.split_repository_model_name(steps[0].name)[0]
        model_name = f"{repo} {mouse}"
    step_dir = repo / contract.repository_model_name(mouse, contract.STEP)
    version_dir = max((p for p in step_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    metadata = ModelMetadata.read(version_dir)
    model_file = version_dir / contract.MODEL_FILENAME
    ort_providers = (
        ["CUDAExecutionProvider", "CPUExecutionProvider"]
        if args.providers == "cuda"
        else ["CPUExecutionProvider"]
    )
    log = tmp / "server.log"
    print(
        f"model: {model_name}; {os.cpu_count()} CPUs; onnxruntime threads {args.threads}; "
        f"step workers {args.step_workers or 'auto'}; "
        f"providers {args.providers}; server log {log}",
        flush=True,
    )

    load_before = os.getloadavg()
    results: dict = {
        "model": model_name,
        "threads": args.threads,
        "step_workers": args.step_workers,
        "providers": args.providers,
        "fps": args.fps,
        "frames": args.frames,
        "repeats": args.repeats,
    }
    if not args.skip_latency:
        results.update(measure_latency(args, repo, mouse, model_file, metadata, ort_providers, log))
        per_frame = batch_cost(model_file, metadata, args.threads, ort_providers)
        results["batch_cost_ms_per_frame"] = per_frame
        print(
            "in-process ms per frame by batch size: "
            + ", ".join(f"{b}: {ms:.2f}" for b, ms in per_frame.items())
            + f" (best batching gain x{per_frame[1] / min(per_frame.values()):.2f})",
            flush=True,
        )

    # 3: capacity, batching off then on.
    if not args.skip_capacity:
        for batching in (False, True):
            label = "batching on" if batching else "batching off"
            print(f"  capacity, {label}:", flush=True)
            with serve(
                repo,
                batching=batching,
                threads=args.threads,
                providers=args.providers,
                log=log,
                workers=args.step_workers,
            ) as target:
                run_streams(target, mouse, 2, 30, 1000.0)  # warm-up
                cap, probes = capacity(
                    target,
                    mouse,
                    args.fps,
                    args.capacity_seconds,
                    args.max_streams,
                    args.client_procs,
                    args.probe_retries,
                )
            results[f"capacity_{'on' if batching else 'off'}"] = {"streams": cap, "probes": probes}
            print(f"  capacity {label}: {cap} streams at {args.fps:g} Hz", flush=True)
        off, on = results["capacity_off"]["streams"], results["capacity_on"]["streams"]
        results["capacity_gain"] = on / off if off else float("inf")
        print(f"capacity: off {off}, on {on} streams -> x{results['capacity_gain']:.2f} (target >= 1.5)")
    results["load_average"] = {"start": load_before, "end": os.getloadavg()}
    print(f"load average (1/5/15 min): start {load_before}, end {results['load_average']['end']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
