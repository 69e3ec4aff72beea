"""Per graph version inference statistics, the counters behind KServe/Triton's ModelStatistics.

Every call that runs a graph (StreamPredict frames, sequence requests, PredictClip, ModelInfer) records one
request: success or failure with its server time, and for successes the queue wait and compute time. Every
onnxruntime call records one execution with its batch size. Recorded from the event loop and from the step
workers, hence the lock. Durations are kept in integer nanoseconds, as Triton reports them.
"""

from __future__ import annotations

import contextlib
import copy
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass
class Duration:
    count: int = 0
    ns: int = 0

    def add(self, seconds: float) -> None:
        self.count += 1
        self.ns += max(0, round(seconds * 1e9))


@dataclass
class BatchDurations:
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)


@dataclass
class StatisticsSnapshot:
    """A consistent copy of the counters (what ModelStatistics reports)."""

    last_inference_ms: int = 0  # milliseconds since the epoch; 0: never
    inference_count: int = 0
    execution_count: int = 0
    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)
    batches: dict[int, BatchDurations] = field(default_factory=dict)


class InferenceStatistics:
    """Cumulative counters of one graph version (reset when the version is reloaded, as in Triton)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._data = StatisticsSnapshot()

    def request_succeeded(
        self, total_s: float, queue_s: float, compute_s: float, input_s: float = 0.0, items: int = 1
    ) -> None:
        """One request answered: ``total_s`` server time, of which ``queue_s`` waiting for a worker,
        ``compute_s`` in onnxruntime and ``input_s`` preparing the inputs; the rest counts as output."""
        output_s = max(0.0, total_s - queue_s - compute_s - input_s)
        now_ms = int(time.time() * 1000)
        with self._lock:
            d = self._data
            d.success.add(total_s)
            d.queue.add(queue_s)
            d.compute_input.add(input_s)
            d.compute_infer.add(compute_s)
            d.compute_output.add(output_s)
            d.inference_count += items
            d.last_inference_ms = now_ms

    def request_failed(self, total_s: float) -> None:
        with self._lock:
            self._data.fail.add(total_s)
            self._data.last_inference_ms = int(time.time() * 1000)

    def executed(self, batch_size: int, compute_s: float) -> None:
        """One onnxruntime call on a batch of ``batch_size``."""
        with self._lock:
            d = self._data
            d.execution_count += 1
            batch = d.batches.setdefault(batch_size, BatchDurations())
            batch.compute_input.add(0.0)  # inputs are stacked before the call is timed
            batch.compute_infer.add(compute_s)
            batch.compute_output.add(0.0)

    def snapshot(self) -> StatisticsSnapshot:
        with self._lock:
            return copy.deepcopy(self._data)


@contextlib.contextmanager
def failures_counted(stats: InferenceStatistics, started: float) -> Iterator[None]:
    """A request (received at perf_counter ``started``) that fails inside the block counts as failed."""
    try:
        yield
    except Exception:
        stats.request_failed(time.perf_counter() - started)
        raise
