"""Benchmark: streaming metric accumulation vs the batch numpy computation, same data, same run.

For each size (neurons x frames x trials; trials = stimuli x repeats, arriving in random order) it times
- ``streaming``: `models.metrics.Scoreboard` fed one trial at a time (all three metrics, stimulus ids given);
- ``streaming, single-trial only``: the same without stimulus ids (only single-trial correlation);
- ``streaming, 2 threads + merge``: two Scoreboards fed from two threads, merged (what `merge` is for);
- ``batch``: `models.metrics.score_trials` (the reference: concatenates every trial, all three metrics);
- ``batch, single-trial only``: `models.metrics.single_trial_correlation` per mouse.
Throughput is MB/s of float32 predictions as submitted (N x (T - 50) frames per trial), median of
``--repeats`` runs, by wall clock and by process CPU time (all threads; the steadier figure on a shared
machine); peak memory is traced (tracemalloc) in one extra untimed run, beside the input size.

    .venv/bin/python bench/bench_metrics.py                      # the documented table
    .venv/bin/python bench/bench_metrics.py --sizes 1000x300x60 --repeats 3
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from models.benchmark import SKIP_FRAMES
from models.metrics import Scoreboard, ScoredTrial, score_trials, single_trial_correlation

log = logging.getLogger("bench_metrics")


@dataclass(frozen=True)
class Size:
    neurons: int
    frames: int
    trials: int

    @classmethod
    def parse(cls, text: str) -> Size:
        try:
            neurons, frames, trials = (int(v) for v in text.lower().split("x"))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"size {text!r} is not NEURONSxFRAMESxTRIALS, e.g. 8000x300x60"
            ) from None
        if frames <= SKIP_FRAMES or min(neurons, trials) < 1:
            raise argparse.ArgumentTypeError(
                f"size {text!r}: need neurons, trials >= 1 and frames > {SKIP_FRAMES}"
            )
        return cls(neurons, frames, trials)

    def __str__(self) -> str:
        return f"{self.neurons:,} x {self.frames} x {self.trials}"


def make_trials(size: Size, stimuli: int, rng: np.random.Generator) -> list[ScoredTrial]:
    """One mouse: ``stimuli`` clips, trials spread over them as repeats, shuffled; predictions after the skip."""
    signals = [rng.standard_normal((size.neurons, size.frames), dtype=np.float32) for _ in range(stimuli)]
    trials = []
    for i in rng.permutation(size.trials):
        stimulus = int(i % stimuli)
        signal = signals[stimulus]
        target = signal + rng.standard_normal(signal.shape, dtype=np.float32)
        prediction = signal[:, SKIP_FRAMES:] + 0.5 * rng.standard_normal(
            (size.neurons, size.frames - SKIP_FRAMES), dtype=np.float32
        )
        trials.append(ScoredTrial("mouse", prediction, target, stimulus, "natural_movie"))
    return trials


def streaming(trials: list[ScoredTrial], with_stimuli: bool = True) -> dict:
    board = Scoreboard()
    for i, t in enumerate(trials):
        board.add(t.mouse, t.prediction, t.target, t.stimulus if with_stimuli else None, trial=i)
    return board.result()


def streaming_threads(trials: list[ScoredTrial], threads: int = 2) -> dict:
    """One Scoreboard per thread over interleaved trials, merged at the end (numpy releases the GIL)."""
    with ThreadPoolExecutor(threads) as pool:
        boards = list(pool.map(lambda k: _board(trials[k::threads], k), range(threads)))
    for other in boards[1:]:
        boards[0].merge(other)
    return boards[0].result()


def _board(trials: list[ScoredTrial], first: int) -> Scoreboard:
    board = Scoreboard()
    for i, t in enumerate(trials):
        board.add(t.mouse, t.prediction, t.target, t.stimulus, trial=first + i)
    return board


def batch_single_trial(trials: list[ScoredTrial]) -> float:
    return float(single_trial_correlation([t.prediction for t in trials], [t.target for t in trials]).mean())


METHODS: dict[str, tuple[str, Callable[[list[ScoredTrial]], object]]] = {
    "streaming": ("streaming (all metrics)", streaming),
    "streaming-single": (
        "streaming, single-trial only",
        lambda trials: streaming(trials, with_stimuli=False),
    ),
    "streaming-threads": ("streaming, 2 threads + merge", streaming_threads),
    "batch": ("batch numpy (all metrics)", score_trials),
    "batch-single": ("batch numpy, single-trial only", batch_single_trial),
}


def time_method(
    fn: Callable[[list[ScoredTrial]], object], trials: list[ScoredTrial], repeats: int
) -> tuple[list[float], list[float]]:
    """Wall-clock and process CPU seconds (all threads) of each run."""
    walls, cpus = [], []
    for _ in range(repeats):
        gc.collect()
        wall, cpu = time.perf_counter(), time.process_time()
        fn(trials)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return walls, cpus


def peak_memory(fn: Callable[[list[ScoredTrial]], object], trials: list[ScoredTrial]) -> float:
    """Peak bytes allocated while ``fn`` runs (inputs excluded), in MB."""
    gc.collect()
    tracemalloc.start()
    fn(trials)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0]
        + " Prints a markdown table: time per run, MB/s of float32 predictions, peak memory.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--sizes",
        nargs="+",
        type=Size.parse,
        default=[Size(1000, 300, 60), Size(8000, 300, 60)],
        metavar="NxTxK",
        help="neurons x frames per trial x trials (default: 1000x300x60 8000x300x60)",
    )
    parser.add_argument(
        "--stimuli", type=int, default=6, help="distinct clips; trials are their repeats (default 6)"
    )
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed runs per method; the median is reported"
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        choices=list(METHODS),
        default=list(METHODS),
        metavar="METHOD",
        help="which methods to time (default: all): "
        + "; ".join(f"{k} = {v[0]}" for k, v in METHODS.items()),
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed of the synthetic trials")
    parser.add_argument(
        "--no-memory", action="store_true", help="skip the traced peak-memory run (tracemalloc is slow)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    rows = []
    for size in args.sizes:
        log.info("generating %s trials", size)
        trials = make_trials(size, args.stimuli, np.random.default_rng(args.seed))
        megabytes = sum(t.prediction.nbytes for t in trials) / 1e6
        inputs = megabytes + sum(t.target.nbytes for t in trials) / 1e6
        _close(streaming(trials), score_trials(trials))
        for name, fn in (METHODS[key] for key in args.methods):
            log.info("%s: %s, %d runs", size, name, args.repeats)
            walls, cpus = time_method(fn, trials, args.repeats)
            wall, cpu = statistics.median(walls), statistics.median(cpus)
            peak = float("nan") if args.no_memory else peak_memory(fn, trials)
            rows.append((str(size), name, wall, megabytes / wall, cpu, megabytes / cpu, peak, inputs))
        del trials
        gc.collect()

    load = os.getloadavg()[0]
    print(
        f"\nstimuli {args.stimuli}, {args.repeats} runs (median), float32 predictions after the skip, "
        f"{os.cpu_count()} CPUs, load average at the end {load:.1f}\n"
    )
    print(
        "| size (neurons x frames x trials) | method | wall s | MB/s (wall) | CPU s | MB/s (CPU) "
        "| peak MB | inputs MB |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for size, name, wall, rate, cpu, cpu_rate, peak, inputs in rows:
        print(
            f"| {size} | {name} | {wall:.3f} | {rate:,.0f} | {cpu:.3f} | {cpu_rate:,.0f} | {peak:,.0f} "
            f"| {inputs:,.0f} |"
        )
    return 0


def _close(a: dict, b: dict) -> bool:
    """Streaming and batch results agree to 1e-6 (a sanity check that the timed code is the right code)."""
    for key in ("single_trial_correlation", "correlation_to_average", "feve"):
        x, y = a[key]["overall"], b[key]["overall"]
        if (x is None) != (y is None) or (x is not None and abs(x - y) > 1e-6 * max(1.0, abs(y))):
            raise AssertionError(f"streaming and batch differ on {key}: {x} vs {y}")
    return True


if __name__ == "__main__":
    sys.exit(main())
