#!/usr/bin/env python3
"""Scoring benchmark: end-to-end throughput over loopback and peak memory of the scoring server, for a
full-size synthetic submission, beside the in-process metric computations.

Full size: 5 mice x 8,000 neurons x 60 trials x 300 frames = 2.9 GB of float32 predictions (every frame; the
scorer drops the 50-frame warm-up) against 2.9 GB of truth; --after-skip sends the 250 frames after the skip,
as the official file format holds them (2.4 GB). Truth and predictions are generated on the fly
(`server.scoring.synthetic.SyntheticGroundTruth`, same seed in server and client): nothing on disk.

Runs, each in its own process so peak memory (VmHWM) is its own, for every --trials value (same 6 stimuli, so
more trials = more repeats):
  e2e        scoring server subprocess (grpc.aio + `server.scoring.register`, SQLite) and the blocking client
             `client.scoring.ScoringClient` streaming the submission trial by trial; MB/s of predictions.
             Server peak RSS is reported next to its RSS when ready (imports + synthetic truth).
  e2e-malloc the same with MALLOC_ENV set for server and client: the server applies these glibc settings to
             itself anyway (`server.scoring.allocator`); the environment extends them to the client, whose ~10 MB
             request buffers otherwise fault fresh pages in for every trial (system CPU time).
  streaming  the same validation + streaming accumulators in process (`ScoringSession.add`), no gRPC.
  batch      the batch reference (`models.metrics.scoreboard.score_trials`) on all trials held in memory, for
             --batch-mice mice (it holds every array: 5 mice x 60 trials would need > 10 GB).
Repeats: --repeats per run; the table shows medians (and min-max). "MB per CPU-second" divides by the CPU time
(user + system, all threads) of every process of the run (e2e: server + client): a figure that other jobs on a
shared machine disturb far less than the wall-clock MB/s.

    .venv/bin/python bench/bench_scoring.py                          # full size, 15 vs 60 trials
    .venv/bin/python bench/bench_scoring.py --mice 2 --neurons 2000 --trials 6 12 --repeats 1   # quick
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

STIMULI = 6
MB = 1e6


def vm_kib(pid: int | str = "self", field: str = "VmHWM") -> int:
    """A memory figure of /proc/<pid>/status in KiB (VmHWM: peak resident set, VmRSS: current)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/{pid}/status")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of another process (all its threads) from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def make_truth(args: argparse.Namespace, trials: int):
    from server.scoring.synthetic import SyntheticGroundTruth

    return SyntheticGroundTruth(args.mice, args.neurons, STIMULI, trials, seed=args.seed)


def submission(truth, after_skip: bool):
    """The whole submission as a lazy stream of trials (one in memory at a time)."""
    from client.submission import TrialPrediction

    for mouse in truth.mice():
        ids = truth.unit_ids(mouse)
        for trial in sorted(truth.trials(mouse)):
            yield TrialPrediction(mouse, trial, truth.prediction(mouse, trial, after_skip), ids)


# ------------------------------------------------------------------------------------------ server process


async def _serve(args: argparse.Namespace) -> None:
    import grpc.aio

    from server.config import Settings
    from server.scoring import register

    truth = make_truth(args, args.trials_one)
    settings = Settings(db_url=args.db, submissions_per_day=0)
    options = [("grpc.max_receive_message_length", settings.max_message_bytes)]
    server = grpc.aio.server(options=options)
    register(server, settings, truth=truth)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"ready {port}", flush=True)
    await server.wait_for_termination()


# ------------------------------------------------------------------------------------------ runs


def run_e2e(args: argparse.Namespace, trials: int) -> dict[str, Any]:
    from client.scoring import ScoringClient

    truth = make_truth(args, trials)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable,
            __file__,
            "--serve",
            "--trials-one",
            str(trials),
            "--db",
            f"sqlite:///{tmp}/s.db",
        ]
        cmd += ["--mice", str(args.mice), "--neurons", str(args.neurons), "--seed", str(args.seed)]
        server = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        try:
            line = server.stdout.readline() if server.stdout else ""
            if not line.startswith("ready"):
                raise RuntimeError(f"scoring server did not start: {line!r}")
            port = int(line.split()[1])
            ready_kib = vm_kib(server.pid, "VmRSS")
            times, cpu, server_cpu, scores = [], [], [], []
            with ScoringClient(f"127.0.0.1:{port}", timeout_s=3600) as client:
                for rep in range(args.repeats):
                    started, cpu0, server0 = time.perf_counter(), time.process_time(), cpu_seconds(server.pid)
                    record = client.submit(
                        submission(truth, args.after_skip), "main", "final", f"bench-{rep}", "bench"
                    )
                    times.append(time.perf_counter() - started)
                    server_cpu.append(cpu_seconds(server.pid) - server0)
                    cpu.append(time.process_time() - cpu0 + server_cpu[-1])
                    scores.append(record.scores.metrics["single_trial_correlation"])
            peak_kib = vm_kib(server.pid)
        finally:
            server.terminate()
            server.wait(timeout=60)
    return {
        "seconds": times,
        "cpu_seconds": cpu,
        "server_cpu_seconds": server_cpu,
        "server_ready_mb": ready_kib * 1024 / MB,
        "server_peak_mb": peak_kib * 1024 / MB,
        "client_peak_mb": vm_kib() * 1024 / MB,
        "single_trial_correlation": scores[-1].overall,
        "per_mouse": scores[-1].per_mouse,
        "bytes": truth.prediction_bytes(args.after_skip),
    }


def run_streaming(args: argparse.Namespace, trials: int) -> dict[str, Any]:
    from server.scoring.ground_truth import tier_trials
    from server.scoring.session import ScoringSession
    from server.scoring.validation import Header

    truth = make_truth(args, trials)
    ready_kib = vm_kib(os.getpid(), "VmRSS")
    times, cpu, scores = [], [], []
    for rep in range(args.repeats):
        started, cpu0 = time.perf_counter(), time.process_time()
        session = ScoringSession(
            truth, Header("main", "final", f"bench-{rep}", ""), tier_trials(truth, truth.tier)
        )
        for t in submission(truth, args.after_skip):
            session.add(t.mouse, t.trial_index, t.neuron_ids, t.prediction)
        result = session.result()
        times.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu0)
        scores.append(result.metrics["single_trial_correlation"])
        del session
    return {
        "seconds": times,
        "cpu_seconds": cpu,
        "ready_mb": ready_kib * 1024 / MB,
        "peak_mb": vm_kib() * 1024 / MB,
        "single_trial_correlation": scores[-1].overall,
        "per_mouse": scores[-1].per_mouse,
        "bytes": truth.prediction_bytes(args.after_skip),
    }


def run_batch(args: argparse.Namespace, trials: int) -> dict[str, Any]:
    from models.metrics.scoreboard import ScoredTrial, score_trials

    truth = make_truth(args, trials)
    mice = truth.mice()[: args.batch_mice]
    ready_kib = vm_kib(os.getpid(), "VmRSS")
    times, cpu, per_mouse = [], [], {}
    for _ in range(args.repeats):
        items = [
            ScoredTrial(
                t.mouse, t.prediction, truth.responses(t.mouse, t.trial_index), t.trial_index % STIMULI
            )
            for t in submission(truth, args.after_skip)
            if t.mouse in mice
        ]
        started, cpu0 = time.perf_counter(), time.process_time()
        result = score_trials(items)
        times.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu0)
        per_mouse = result["single_trial_correlation"]["per_mouse"]
        del items, result
    n_bytes = truth.prediction_bytes(args.after_skip) * len(mice) // args.mice
    return {
        "seconds": times,
        "cpu_seconds": cpu,
        "ready_mb": ready_kib * 1024 / MB,
        "peak_mb": vm_kib() * 1024 / MB,
        "per_mouse": per_mouse,
        "bytes": n_bytes,
    }


RUNS = {"e2e": run_e2e, "e2e-malloc": run_e2e, "streaming": run_streaming, "batch": run_batch}
RUN_NAMES = {
    "e2e": "end to end (server RSS)",
    "e2e-malloc": "end to end, client malloc tuned too (server RSS)",
    "streaming": "in-process streaming",
    "batch": "in-process batch",
}
# glibc malloc settings that keep ~10 MB trial buffers in the heap instead of a fresh mmap (page faults) per
# allocation; set for server and client in the "e2e-malloc" run (docs/SCORING.md, deployment).
MALLOC_ENV = {
    "MALLOC_MMAP_THRESHOLD_": str(32 * 1024 * 1024),
    "MALLOC_TRIM_THRESHOLD_": str(1024 * 1024 * 1024),
    "MALLOC_TOP_PAD_": str(64 * 1024 * 1024),
}


def run_isolated(args: argparse.Namespace, kind: str, trials: int) -> dict[str, Any]:
    """One run in a fresh process (its own peak memory)."""
    cmd = [
        sys.executable,
        __file__,
        "--run",
        kind,
        "--trials-one",
        str(trials),
        "--repeats",
        str(args.repeats),
    ]
    cmd += ["--mice", str(args.mice), "--neurons", str(args.neurons), "--seed", str(args.seed)]
    cmd += ["--batch-mice", str(args.batch_mice)] + (["--after-skip"] if args.after_skip else [])
    env = {**os.environ, **(MALLOC_ENV if kind == "e2e-malloc" else {})}
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"{kind} run failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _summary(result: dict[str, Any]) -> tuple[str, str, str]:
    """Median time, median (min-max) MB/s of wall time, median MB per CPU-second (all processes, all threads)."""
    mbps = sorted(result["bytes"] / MB / s for s in result["seconds"])
    per_cpu = statistics.median(result["bytes"] / MB / s for s in result["cpu_seconds"])
    med = statistics.median(mbps)
    return (
        f"{statistics.median(result['seconds']):.2f}",
        f"{med:.0f} ({mbps[0]:.0f}-{mbps[-1]:.0f})",
        f"{per_cpu:.0f}",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mice", type=int, default=5)
    parser.add_argument("--neurons", type=int, default=8000)
    parser.add_argument(
        "--trials", type=int, nargs="+", default=[15, 60], help="trials per mouse (6 stimuli)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-mice", type=int, default=1, help="mice in the batch baseline (memory!)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--after-skip",
        action="store_true",
        help="send the 250 frames after the skip (the official file format) instead of all 300 frames",
    )
    parser.add_argument(
        "--runs", nargs="+", choices=sorted(RUNS), default=list(RUNS), help="which runs (default: all)"
    )
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--run", choices=sorted(RUNS), help=argparse.SUPPRESS)
    parser.add_argument("--trials-one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        asyncio.run(_serve(args))
        return 0
    if args.run:
        print(json.dumps(RUNS[args.run](args, args.trials_one)))
        return 0

    runs = [kind for kind in RUNS if kind in args.runs]
    results: dict[str, dict[int, dict[str, Any]]] = {kind: {} for kind in runs}
    for trials in args.trials:
        for kind in runs:
            print(f"running {kind}, {trials} trials per mouse ...", file=sys.stderr, flush=True)
            results[kind][trials] = run_isolated(args, kind, trials)
    cpu = os.cpu_count()
    print(
        f"\n{args.mice} mice x {args.neurons} neurons x T trials x {250 if args.after_skip else 300} frames "
        f"float32, {STIMULI} stimuli, "
        f"{args.repeats} repeats (median, min-max), {cpu} CPUs; batch: {args.batch_mice} mouse/mice\n"
    )
    print(
        "| run | trials/mouse | predictions (MB) | time (s) | MB/s | MB per CPU-second | peak RSS (MB) "
        "| RSS when ready (MB) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for trials in args.trials:
        for kind in runs:
            r = results[kind][trials]
            seconds, mbps, per_cpu = _summary(r)
            peak = r.get("server_peak_mb", r.get("peak_mb"))
            ready = r.get("server_ready_mb", r.get("ready_mb"))
            print(
                f"| {RUN_NAMES[kind]} | {trials} | {r['bytes'] / MB:.0f} | {seconds} | {mbps} | {per_cpu} | {peak:.0f} "
                f"| {ready:.0f} |"
            )
    for trials in args.trials:
        found = {k: results[k][trials] for k in runs}
        mouse = next(iter(next(iter(found.values()))["per_mouse"]))
        same = ", ".join(f"{k} {r['per_mouse'][mouse]:.9f}" for k, r in found.items())
        print(f"\n{trials} trials: single-trial correlation of {mouse}: {same}")
        for kind in ("e2e", "e2e-malloc"):
            if kind in found:
                r = found[kind]
                server = statistics.median(r["bytes"] / MB / s for s in r["server_cpu_seconds"])
                print(
                    f"{kind}: server alone {server:.0f} MB per CPU-second; client peak RSS "
                    f"{r['client_peak_mb']:.0f} MB"
                )
    print(f"load average at the end: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
