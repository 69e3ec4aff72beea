"""Prometheus metrics of the server (own CollectorRegistry per server, exposed on the HTTP port).

Latency histograms are in seconds with buckets dense between 0.5 ms and 50 ms and an edge at exactly 1/30 s
(one frame at 30 Hz), so "share of frames inside the frame budget" is a bucket ratio.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from models.benchmark import FPS

PREFIX = "sensorium_serve"
FRAME_BUDGET_S = 1.0 / FPS
FRAME_BUCKETS = (
    0.00025,
    0.0005,
    0.00075,
    0.001,
    0.0015,
    0.002,
    0.003,
    0.004,
    0.005,
    0.0065,
    0.008,
    0.01,
    0.0125,
    0.015,
    0.02,
    0.025,
    0.03,
    FRAME_BUDGET_S,
    0.04,
    0.05,
    0.1,
    0.25,
    1.0,
)
CLIP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.frame_seconds = Histogram(
            f"{PREFIX}_frame_seconds",
            "Per-frame server latency of StreamPredict: frame decoded -> response built",
            ["model"],
            buckets=FRAME_BUCKETS,
            registry=r,
        )
        self.frame_queue_seconds = Histogram(
            f"{PREFIX}_frame_queue_seconds",
            "Per-frame wait for the batcher / onnxruntime",
            ["model"],
            buckets=FRAME_BUCKETS,
            registry=r,
        )
        self.frame_compute_seconds = Histogram(
            f"{PREFIX}_frame_compute_seconds",
            "Per-frame onnxruntime step call (shared by the batch)",
            ["model"],
            buckets=FRAME_BUCKETS,
            registry=r,
        )
        self.clip_seconds = Histogram(
            f"{PREFIX}_clip_seconds",
            "PredictClip / ModelInfer latency: request decoded -> response built",
            ["model"],
            buckets=CLIP_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            f"{PREFIX}_batch_size", "Streams per onnxruntime step call", buckets=BATCH_BUCKETS, registry=r
        )
        self.frames = Counter(f"{PREFIX}_frames", "Frames predicted by StreamPredict", ["model"], registry=r)
        self.requests = Counter(f"{PREFIX}_requests", "RPCs received", ["method"], registry=r)
        self.errors = Counter(
            f"{PREFIX}_errors", "RPCs ended with an error status", ["method", "code"], registry=r
        )
        self.evictions = Counter(
            f"{PREFIX}_stream_evictions", "Streams ended by the server (idle)", registry=r
        )
        self.active_streams = Gauge(
            f"{PREFIX}_active_streams", "Open StreamPredict streams", ["model"], registry=r
        )
        self.loaded_models = Gauge(
            f"{PREFIX}_loaded_models", "Repository model versions loaded and ready", registry=r
        )
        self._http: WSGIServer | None = None
        self._http_thread: threading.Thread | None = None

    def track_loaded_models(self, count: Callable[[], float]) -> None:
        self.loaded_models.set_function(count)

    def observe_frame(self, model: str, total_s: float, queue_s: float, compute_s: float) -> None:
        self.frame_observer(model)(total_s, queue_s, compute_s)

    def frame_observer(self, model: str) -> Callable[[float, float, float], None]:
        """`observe_frame` bound to one model: a stream looks its label children up once, not every frame."""
        frames = self.frames.labels(model)
        total = self.frame_seconds.labels(model)
        queue = self.frame_queue_seconds.labels(model)
        compute = self.frame_compute_seconds.labels(model)

        def observe(total_s: float, queue_s: float, compute_s: float) -> None:
            frames.inc()
            total.observe(total_s)
            queue.observe(queue_s)
            compute.observe(compute_s)

        return observe

    def serve_http(self, host: str, port: int) -> int:
        """Start the /metrics endpoint; returns the bound port."""
        self._http, self._http_thread = start_http_server(port, addr=host, registry=self.registry)
        return self._http.server_port

    def close(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
