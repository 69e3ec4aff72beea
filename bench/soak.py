#!/usr/bin/env python3
"""Soak: N concurrent 30 Hz StreamPredict streams plus periodic scoring submissions against a server subprocess
for M minutes. Reports errors, per-frame round-trip percentiles, deadline misses, submission latency, and the
resident memory (RSS, /proc) of the server process over time; growth is measured after a warm-up.

Setup (in a temp folder): a model repository with the serving benchmark's synthetic step graph (real tensor
sizes: 8,000 neurons, 5.3 MB state per stream; bench/serving_model.py), and a tiny SENSORIUM dataset (public +
truth; tests/scoring/scoring_support.py's writer) whose live main tier the submissions cover.

Each stream behaves like a rig: one frame in flight, frame i due at t0 + i/fps (monotonic clock, random phase
per stream); a *deadline miss* is an answer that arrives after the next frame is due. Each stream replays
--trial-frames frames, closes, and opens a fresh stream (so open/close is soaked too). Every --submit-every
seconds a thread submits a complete live-main submission (truth + noise); the leaderboard grows by one.

Targets (issue 7): 0 errors, RSS growth < 5 % after warm-up, no deadline misses at a load well inside the
capacity that bench/bench_serving.py measures. --check exits 1 when a target is missed.

    .venv/bin/python bench/soak.py --streams 4 --minutes 5 --json soak.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "tests" / "scoring"))  # the tiny dataset writer of the scoring tests

from client.errors import PredictorError  # noqa: E402
from client.predictor import AsyncPredictorClient  # noqa: E402
from models.benchmark import FPS, FRAME_HEIGHT, FRAME_WIDTH  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_bytes(pid: int) -> int:
    """Resident set size of `pid` (from /proc/PID/statm: resident pages x page size)."""
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE


@dataclass
class Stats:
    frames: int = 0
    latencies_s: list[float] = field(default_factory=list)
    deadline_misses: int = 0
    miss_server_s: list[float] = field(default_factory=list)  # server-side time of the frames that missed
    streams_opened: int = 0
    errors: list[str] = field(default_factory=list)
    submissions: int = 0
    submission_s: list[float] = field(default_factory=list)
    rss: list[tuple[float, int]] = field(default_factory=list)  # (seconds since start, bytes)


# ---- setup ------------------------------------------------------------------------------------------------


def _server_test_kit():
    """tests/server/conftest.py as a module (its tiny onnx.helper models), loaded by path."""
    import importlib.util

    name = "soak_server_test_kit"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "tests" / "server" / "conftest.py")
        assert spec is not None and spec.loader is not None
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


def prepare(workdir: Path, model: str, n_neurons: int) -> tuple[Path, Path, str]:
    """Model repository + dataset; returns (repo, dataset root, model name). `model`: "bench" = the serving
    benchmark's real-size step graph (conv core, 5.3 MB state); "light" = the server tests' linear-filter model
    (24 neurons): the serving path without the model's compute."""
    from scoring_support import NEURONS, write_mouse

    repo = workdir / "repo"
    if model == "bench":
        from serving_model import MOUSE as mouse
        from serving_model import write_repository

        write_repository(repo, mouse, n_neurons)
    else:
        kit = _server_test_kit()
        mouse = kit.MOUSE
        kit.write_model(repo, mouse, 1, kit.make_params(1))
    data = workdir / "data"
    for seed, (session, n) in enumerate(NEURONS.items()):
        write_mouse(data, session, n, seed + 11)
    return repo, data, mouse


def start_server(
    repo: Path, data: Path, db: Path, args: argparse.Namespace
) -> tuple[subprocess.Popen, str, int]:
    port, http_port = free_port(), free_port()
    command = [sys.executable, "-m", "server.cli", "serve", "--repo", str(repo), "--truth", str(data / "truth"),
               "--db", f"sqlite:///{db}", "--host", "127.0.0.1", "--port", str(port), "--http-port", str(http_port),
               "--providers", "cpu", "--intra-op-threads", str(args.threads), "--submissions-per-day", "0", *args.server_arg]  # fmt: skip
    log = open(db.parent / "server.log", "w")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(command, cwd=ROOT, stderr=log, stdout=log)
    target = f"127.0.0.1:{port}"
    from client.predictor import PredictorClient

    with PredictorClient(target, timeout=5) as client:
        client.wait_ready(timeout=120)
    return proc, target, http_port


# ---- load -------------------------------------------------------------------------------------------------


async def stream_loop(
    target: str, model: str, stats: Stats, stop_at: float, args: argparse.Namespace
) -> None:
    rng = np.random.default_rng(random.randrange(2**32))
    frames = rng.integers(0, 256, (16, FRAME_HEIGHT, FRAME_WIDTH)).astype(np.uint8)
    behavior = np.array([5.0, 0.5], np.float32)
    pupil = np.array([30.0, 20.0], np.float32)
    period = 1.0 / args.fps
    await asyncio.sleep(random.uniform(0, period))  # independent rigs: random phase
    async with AsyncPredictorClient(target, timeout=30) as client:
        finished = False
        while not finished and time.monotonic() < stop_at:
            try:
                async with await client.open_stream(model) as stream:
                    stats.streams_opened += 1
                    t0 = time.monotonic()
                    for i in range(args.trial_frames):
                        due = t0 + i * period
                        if due >= stop_at:
                            finished = True
                            break
                        delay = due - time.monotonic()
                        if delay > 0:
                            await asyncio.sleep(delay)
                        sent = time.monotonic()
                        answer = await stream.send(frames[i % len(frames)], behavior, pupil)
                        done = time.monotonic()
                        stats.frames += 1
                        stats.latencies_s.append(done - sent)
                        if done > due + period:
                            stats.deadline_misses += 1
                            stats.miss_server_s.append(answer.server_seconds)
            except PredictorError as exc:
                stats.errors.append(f"stream: {exc}")
                await asyncio.sleep(0.5)


def submit_loop(target: str, data: Path, stats: Stats, stop_at: float, args: argparse.Namespace) -> None:
    from scoring_support import truth_submission

    from client.scoring import ScoringClient
    from client.submission import TrialPrediction
    from server.scoring.ground_truth import FolderGroundTruth

    truth = FolderGroundTruth(data / "truth")
    base = truth_submission(truth, "main", "live")
    rng = np.random.default_rng(0)
    n = 0
    with ScoringClient(target, timeout_s=120) as client:
        next_at = time.monotonic() + args.submit_every / 2
        while True:
            wait = next_at - time.monotonic()
            if next_at >= stop_at:
                return
            if wait > 0:
                time.sleep(wait)
            next_at += args.submit_every
            noise = [
                TrialPrediction(
                    t.mouse,
                    t.trial_index,
                    t.prediction + rng.normal(0, 1, t.prediction.shape).astype(np.float32),
                    t.neuron_ids,
                )
                for t in base
            ]
            start = time.monotonic()
            try:
                client.submit(noise, "main", "live", f"soak-team-{n % 3}", f"soak {n}")
                stats.submissions += 1
                stats.submission_s.append(time.monotonic() - start)
            except PredictorError as exc:
                stats.errors.append(f"submit: {exc}")
            n += 1


def sample_rss(pid: int, stats: Stats, t0: float, stop: threading.Event, every_s: float) -> None:
    while not stop.wait(every_s):
        try:
            stats.rss.append((time.monotonic() - t0, rss_bytes(pid)))
        except OSError:
            return


def scrape(http_port: int) -> dict[str, float]:
    """Sums of the server's Prometheus samples by metric name (e.g. active streams at the end)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=10).read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name] = out.get(sample.name, 0.0) + sample.value
    return out


# ---- report -----------------------------------------------------------------------------------------------


def summarise(stats: Stats, args: argparse.Namespace, end_metrics: dict[str, float], seconds: float) -> dict:
    ms = np.asarray(stats.latencies_s) * 1e3 if stats.latencies_s else np.zeros(1)
    warm = [b for t, b in stats.rss if t >= args.warmup]
    window = max(1, len(warm) // 10)
    rss_start = statistics.median(warm[:window]) if warm else float("nan")
    rss_end = statistics.median(warm[-window:]) if warm else float("nan")
    return {
        "model": args.model,
        "streams": args.streams,
        "fps": args.fps,
        "seconds": round(seconds, 1),
        "warmup_s": args.warmup,
        "frames": stats.frames,
        "frames_per_s": round(stats.frames / seconds, 1),
        "streams_opened": stats.streams_opened,
        "errors": len(stats.errors),
        "error_samples": stats.errors[:5],
        "deadline_misses": stats.deadline_misses,
        "deadline_miss_pct": round(100 * stats.deadline_misses / max(stats.frames, 1), 3),
        # Where a missed frame's time went: the server's own share (decode -> response built) vs the round trip.
        "missed_frames_server_ms": {
            "p50": round(float(np.median(stats.miss_server_s)) * 1e3, 2) if stats.miss_server_s else None,
            "max": round(float(np.max(stats.miss_server_s)) * 1e3, 2) if stats.miss_server_s else None,
        },
        "latency_ms": {
            q: round(float(np.percentile(ms, float(q[1:]))), 2) for q in ("p50", "p90", "p99", "p99.9")
        }
        | {"max": round(float(ms.max()), 2)},
        "submissions": stats.submissions,
        "submission_s_median": round(statistics.median(stats.submission_s), 2)
        if stats.submission_s
        else None,
        "rss_mb": {
            "first": round(stats.rss[0][1] / 2**20, 1) if stats.rss else None,
            "after_warmup": round(rss_start / 2**20, 1),
            "end": round(rss_end / 2**20, 1),
            "max": round(max(b for _, b in stats.rss) / 2**20, 1) if stats.rss else None,
        },
        "rss_growth_pct": round(100 * (rss_end - rss_start) / rss_start, 2) if warm else None,
        "server_active_streams_at_end": end_metrics.get("sensorium_serve_active_streams", 0.0),
        "server_errors_total": end_metrics.get("sensorium_serve_errors_total", 0.0),
        "server_frames_total": end_metrics.get("sensorium_serve_frames_total", float("nan")),
    }


def table(report: dict) -> str:
    lat = report["latency_ms"]
    rss = report["rss_mb"]
    rows = [
        (
            "load",
            f"{report['streams']} streams x {report['fps']:g} Hz for {report['seconds']} s "
            f"+ a submission every {report.get('submit_every', '?')} s ({report['model']} model)",
        ),
        (
            "frames",
            f"{report['frames']} ({report['frames_per_s']}/s), {report['streams_opened']} streams opened",
        ),
        ("errors", f"{report['errors']} client, {report['server_errors_total']:g} server"),
        (
            "deadline misses",
            f"{report['deadline_misses']} ({report['deadline_miss_pct']} %); server time of those frames "
            f"p50 {report['missed_frames_server_ms']['p50']} ms, max {report['missed_frames_server_ms']['max']} ms",
        ),
        ("round trip ms", " / ".join(f"{k} {v}" for k, v in lat.items())),
        ("submissions", f"{report['submissions']} (median {report['submission_s_median']} s)"),
        (
            "server RSS MB",
            f"first {rss['first']}, after warm-up {rss['after_warmup']}, end {rss['end']}, max {rss['max']}",
        ),
        ("RSS growth after warm-up", f"{report['rss_growth_pct']} %"),
        ("open streams at end", f"{report['server_active_streams_at_end']:g}"),
        ("load average (1 min) start / end", " / ".join(f"{x[0]:.1f}" for x in report["loadavg"])),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def misses_targets(report: dict) -> list[str]:
    out = []
    if report["errors"] or report["server_errors_total"]:
        out.append(f"{report['errors']} client / {report['server_errors_total']:g} server errors")
    if report["rss_growth_pct"] is None or report["rss_growth_pct"] >= 5.0:
        out.append(f"RSS growth {report['rss_growth_pct']} % (target < 5 %)")
    if report["deadline_misses"]:
        out.append(f"{report['deadline_misses']} deadline misses")
    if report["server_active_streams_at_end"] != 0:
        out.append(f"{report['server_active_streams_at_end']} streams left open")
    if report["submissions"] < 1:
        out.append("no submission was scored")
    return out


async def run_load(
    target: str, model: str, data: Path, stats: Stats, args: argparse.Namespace, seconds: float
) -> None:
    stop_at = time.monotonic() + seconds
    submitter = threading.Thread(target=submit_loop, args=(target, data, stats, stop_at, args), daemon=True)
    if args.submit_every > 0:
        submitter.start()
    await asyncio.gather(*(stream_loop(target, model, stats, stop_at, args) for _ in range(args.streams)))
    if submitter.is_alive():
        await asyncio.to_thread(submitter.join, 300)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--streams", type=int, default=4, help="concurrent 30 Hz streams (default 4)")
    parser.add_argument("--minutes", type=float, default=1.0, help="duration in minutes (default 1)")
    parser.add_argument(
        "--seconds", type=float, default=None, help="duration in seconds (overrides --minutes)"
    )
    parser.add_argument("--fps", type=float, default=float(FPS), help=f"frames per second per stream ({FPS})")
    parser.add_argument("--trial-frames", type=int, default=300, help="frames per stream before it reopens")
    parser.add_argument(
        "--submit-every", type=float, default=30.0, help="seconds between submissions (0: none)"
    )
    parser.add_argument(
        "--warmup", type=float, default=None, help="seconds excluded from RSS growth (default 20%%)"
    )
    parser.add_argument(
        "--model",
        choices=("light", "bench"),
        default="light",
        help="light: the server tests' 24-neuron linear model (default; soaks the serving path); bench: the "
        "serving benchmark's real-size step graph",
    )
    parser.add_argument("--neurons", type=int, default=8000, help="neurons of the bench model (default 8000)")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads of the server")
    parser.add_argument(
        "--server-arg", action="append", default=[], metavar="ARG",
        help="extra `sensorium-serve serve` argument, repeatable (e.g. --server-arg=--no-batching)",
    )  # fmt: skip
    parser.add_argument("--rss-every", type=float, default=1.0, help="RSS sampling interval in seconds")
    parser.add_argument("--json", type=Path, help="also write the report as JSON here")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    seconds = args.seconds if args.seconds is not None else args.minutes * 60
    if args.warmup is None:
        args.warmup = 0.2 * seconds
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="sensorium-soak-") as tmp:
        workdir = Path(tmp)
        print(f"setting up in {workdir} ...", file=sys.stderr)
        repo, data, model = prepare(workdir, args.model, args.neurons)
        proc, target, http_port = start_server(repo, data, workdir / "scores.sqlite", args)
        stats = Stats()
        stop = threading.Event()
        t0 = time.monotonic()
        sampler = threading.Thread(
            target=sample_rss, args=(proc.pid, stats, t0, stop, args.rss_every), daemon=True
        )
        sampler.start()
        try:
            print(
                f"soaking {target}: {args.streams} streams x {args.fps:g} Hz for {seconds:g} s",
                file=sys.stderr,
            )
            asyncio.run(run_load(target, model, data, stats, args, seconds))
            elapsed = time.monotonic() - t0
            stop.set()
            sampler.join()
            time.sleep(0.5)  # let the server notice the last half-closes
            end_metrics = scrape(http_port)
        finally:
            stop.set()
            proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
        report = summarise(stats, args, end_metrics, elapsed)
        report["submit_every"] = args.submit_every
        report["loadavg"] = [load_start, os.getloadavg()]
        report["server_exit_code"] = code
        report["conditions"] = {
            "cpus": os.cpu_count(),
            "loadavg_at_start": load_start,
            "loadavg_at_end": os.getloadavg(),
        }
        if code != 0:
            report["errors"] += 1
            report["error_samples"].append(
                f"server exit code {code}: {(workdir / 'server.log').read_text()[-2000:]}"
            )
    print(table(report))
    missed = misses_targets(report)
    report["targets_missed"] = missed
    print("targets: " + ("all met" if not missed else "MISSED: " + "; ".join(missed)))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 1 if (args.check and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
