"""Per-frame cost in onnxruntime (CPU) of three ways to predict a stream, side by side in one run:

  (a) step     the stateful step graph, one call per frame (state in/out);
  (b) window   the clip graph on the last R frames, one call per frame (stateless recompute);
  (c) clip     the clip graph on a whole 300-frame trial, time divided by 300 (each frame's work done once:
               the floor the step graph is compared against).

for the `default` config (few hundred neurons) and the `baseline` config (32/64/128 channels, kernels 11/5/5)
with ~8,000 neurons, random weights. Outputs are checked equal (max abs diff after the warm-up). Medians over
--repeats. Optional --profile writes an onnxruntime profile of the step graph and prints its top operators.

  .venv/bin/python bench/bench_step.py [--repeats 5] [--threads 2] [--profile]
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from models import contract
from models.benchmark import FRAME_HEIGHT, FRAME_WIDTH, MOVIE_FRAMES
from models.config import get_config
from models.data.normalisation import NormalisationStats
from models.export import checks, graphs
from models.networks import MouseInfo, SensoriumModel, build_model


def random_model(config_name: str, neurons: int, seed: int = 0) -> tuple[SensoriumModel, NormalisationStats]:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    mice = {"bench-mouse": MouseInfo(np.arange(neurons), rng.uniform(0, 800, (neurons, 3)))}
    model = build_model(get_config(config_name), mice).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                m.running_var.uniform_(0.5, 1.5)
    stats = NormalisationStats(
        video_mean=np.full((FRAME_HEIGHT, FRAME_WIDTH), 80, np.float32),
        video_std=np.full((FRAME_HEIGHT, FRAME_WIDTH), 50, np.float32),
        response_std=np.ones(neurons, np.float32),
        behavior_std=np.array([10.0, 2.0], np.float32),
        pupil_mean=np.array([30.0, 20.0], np.float32),
        pupil_std=np.array([3.0, 3.0], np.float32),
    )
    return model, stats


def core_macs(model: SensoriumModel, frames: int) -> int:
    """Multiply-accumulates of the core on a clip of `frames` frames (readout excluded)."""
    total, h, w, t = 0, *model.frame_size, frames
    for layer in model.core.layers:
        c_out, c_in, _, k, _ = layer.spatial.weight.shape
        h, w = layer.output_size(h, w)
        total += t * h * w * c_out * c_in * k * k  # spatial conv on every input frame
        t -= layer.temporal_kernel - 1
        total += t * h * w * c_out * c_out * layer.temporal_kernel  # temporal conv on every output frame
    return total


def make_session(model_bytes: bytes, threads: int, profile: str | None = None) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if profile:
        options.enable_profiling = True
        options.profile_file_prefix = profile
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


def time_step(
    step: ort.InferenceSession, inputs: dict[str, np.ndarray], shapes: list, frames: int
) -> tuple[float, np.ndarray]:
    """ms per frame over `frames` streamed frames (after a one-frame warm-up call) and the outputs."""
    state = [np.zeros((1, *s), np.float32) for s in shapes]
    names = [contract.state_in_name(i) for i in range(len(state))]
    outs, times = [], []
    for t in range(frames):
        feed = {k: v[:, t] for k, v in inputs.items()} | dict(zip(names, state, strict=True))
        start = time.perf_counter()
        responses, *state = step.run(None, feed)
        times.append(time.perf_counter() - start)
        outs.append(responses)
    return 1000 * statistics.median(times[1:]), np.stack(outs, axis=1)


def time_step_iobinding(
    step: ort.InferenceSession, inputs: dict[str, np.ndarray], shapes: list, frames: int
) -> tuple[float, np.ndarray]:
    """As `time_step`, with the state kept in two sets of OrtValues swapped every frame (no state copies)."""
    current = [ort.OrtValue.ortvalue_from_numpy(np.zeros((1, *s), np.float32)) for s in shapes]
    spare = [ort.OrtValue.ortvalue_from_numpy(np.zeros((1, *s), np.float32)) for s in shapes]
    n = step.get_outputs()[0].shape[-1]
    responses = ort.OrtValue.ortvalue_from_numpy(np.zeros((1, n), np.float32))
    binding = step.io_binding()
    outs, times = [], []
    for t in range(frames):
        for name, value in inputs.items():
            binding.bind_cpu_input(name, np.ascontiguousarray(value[:, t]))
        for i, (state_in, state_out) in enumerate(zip(current, spare, strict=True)):
            binding.bind_ortvalue_input(contract.state_in_name(i), state_in)
            binding.bind_ortvalue_output(contract.state_out_name(i), state_out)
        binding.bind_ortvalue_output(contract.RESPONSES, responses)
        start = time.perf_counter()
        step.run_with_iobinding(binding)
        times.append(time.perf_counter() - start)
        outs.append(responses.numpy().copy())
        current, spare = spare, current
    return 1000 * statistics.median(times[1:]), np.stack(outs, axis=1)


def bench_config(
    config_name: str, neurons: int, repeats: int, threads: int, window_frames: int, profile: bool
) -> dict:
    model, stats = random_model(config_name, neurons)
    r = model.receptive_field
    clip_bytes = graphs.build_clip_graph(model, "bench-mouse", stats).SerializeToString()
    step_bytes = graphs.build_step_graph(model, "bench-mouse", stats).SerializeToString()
    clip, step = make_session(clip_bytes, threads), make_session(step_bytes, threads)
    trial = checks.raw_inputs(stats, 1, MOVIE_FRAMES, 0, FRAME_HEIGHT, FRAME_WIDTH)

    shapes = model.state_shapes()
    windows = [{k: v[:, j : j + r] for k, v in trial.items()} for j in range(window_frames)]
    clip.run(None, trial)  # warm-up: first runs allocate
    clip.run(None, windows[0])
    time_step(step, trial, shapes, 3)
    clip_ms, step_ms, bound_ms, window_ms = [], [], [], []
    clip_out = step_out = bound_out = None
    window_diff = 0.0
    # The methods take turns within each repeat, so a busy neighbour on this shared machine hits all of them.
    for _ in range(repeats):
        start = time.perf_counter()
        (clip_out,) = clip.run(None, trial)  # [1, 300 - R + 1, N]
        clip_ms.append(1000 * (time.perf_counter() - start) / MOVIE_FRAMES)
        ms, step_out = time_step(step, trial, shapes, MOVIE_FRAMES)
        step_ms.append(ms)
        ms, bound_out = time_step_iobinding(step, trial, shapes, MOVIE_FRAMES)
        bound_ms.append(ms)
        times = []
        for j, window in enumerate(windows):
            start = time.perf_counter()
            (out,) = clip.run(None, window)  # [1, 1, N]: the output for frame j + R - 1
            times.append(time.perf_counter() - start)
            if model.gru is None:  # a GRU's window restarts its state: not the same prediction
                window_diff = max(window_diff, float(np.abs(out[:, 0] - clip_out[:, j]).max()))
        window_ms.append(1000 * statistics.median(times))

    assert clip_out is not None and step_out is not None and bound_out is not None
    step_diff = float(np.abs(step_out[:, r - 1 :] - clip_out).max())
    step_diff = max(step_diff, float(np.abs(bound_out[:, r - 1 :] - clip_out).max()))
    result = {
        "config": config_name,
        "neurons": neurons,
        "receptive_field": r,
        "state_mib": sum(int(np.prod(s)) for s in shapes) * 4 / 2**20,
        # core work of one new frame (what the step does) and of one R-frame window recompute
        "core_mmac_per_frame": (core_macs(model, MOVIE_FRAMES + 1) - core_macs(model, MOVIE_FRAMES)) / 1e6,
        "core_mmac_window": core_macs(model, r) / 1e6,
        "step_ms": statistics.median(step_ms),
        "step_iobinding_ms": statistics.median(bound_ms),
        "window_ms": statistics.median(window_ms),
        "clip_amortised_ms": statistics.median(clip_ms),
        "step_vs_clip_max_abs": step_diff,
        "window_vs_clip_max_abs": window_diff,
    }
    result["step_over_clip"] = result["step_ms"] / result["clip_amortised_ms"]
    result["step_iobinding_over_clip"] = result["step_iobinding_ms"] / result["clip_amortised_ms"]
    result["window_over_step"] = result["window_ms"] / result["step_ms"]
    if profile:
        result["step_profile_top"] = profile_step(step_bytes, trial, model.state_shapes(), threads)
    return result


def profile_step(
    step_bytes: bytes, trial: dict[str, np.ndarray], shapes: list, threads: int, frames: int = 60
) -> list:
    with tempfile.TemporaryDirectory() as tmp:
        session = make_session(step_bytes, threads, profile=str(Path(tmp) / "step"))
        time_step(session, trial, shapes, frames)
        events = json.loads(Path(session.end_profiling()).read_text())
    per_op: collections.Counter[str] = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            per_op[event["args"]["op_name"]] += event["dur"]
    total = sum(per_op.values()) or 1
    return [(op, round(100 * us / total, 1)) for op, us in per_op.most_common(8)]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3, help="repeats per measurement (median reported)")
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    parser.add_argument("--window-frames", type=int, default=10, help="frames timed for window recompute")
    parser.add_argument("--default-neurons", type=int, default=500)
    parser.add_argument("--baseline-neurons", type=int, default=8000)
    parser.add_argument("--profile", action="store_true", help="profile the step graph (onnxruntime)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per config")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    rows = [
        bench_config(
            "default", args.default_neurons, args.repeats, args.threads, args.window_frames, args.profile
        ),
        bench_config(
            "baseline", args.baseline_neurons, args.repeats, args.threads, args.window_frames, args.profile
        ),
    ]
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return
    print(
        f"onnxruntime {ort.__version__}, {args.threads} threads, batch 1, medians of {args.repeats} repeats (ms/frame)"
    )
    print(
        "| config | neurons | R | state MiB | (a) step | (a') step, IOBinding | (b) window recompute | "
        "(c) clip amortised | a / c | a' / c | b / a | max abs diff step vs clip |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['config']} | {r['neurons']} | {r['receptive_field']} | {r['state_mib']:.1f} | {r['step_ms']:.2f} | "
            f"{r['step_iobinding_ms']:.2f} | {r['window_ms']:.2f} | {r['clip_amortised_ms']:.2f} | "
            f"{r['step_over_clip']:.2f}x | {r['step_iobinding_over_clip']:.2f}x | {r['window_over_step']:.1f}x | "
            f"{r['step_vs_clip_max_abs']:.1e} |"
        )
    for r in rows:
        print(
            f"{r['config']}: core work per new frame {r['core_mmac_per_frame']:.0f} M MAC, per {r['receptive_field']}"
            f"-frame window {r['core_mmac_window']:.0f} M MAC ({r['core_mmac_window'] / r['core_mmac_per_frame']:.1f}x)"
        )
    for r in rows:
        if "step_profile_top" in r:
            print(
                f"step graph profile ({r['config']}): "
                + ", ".join(f"{op} {pct}%" for op, pct in r["step_profile_top"])
            )


if __name__ == "__main__":
    main()
