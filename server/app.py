"""The grpc.aio server: wiring (registry, data plane, servicers, health, reflection, metrics) and its lifecycle.

Shutdown (SIGTERM / SIGINT, or `stop()`): health NOT_SERVING and new calls UNAVAILABLE, open streams end after
their frame in flight (UNAVAILABLE, "draining"), in-flight calls get ``shutdown_grace_s`` to finish, exit 0.
SIGHUP re-scans the model repository.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import grpc.aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from protos.inference import grpc_predict_v2_pb2, grpc_predict_v2_pb2_grpc
from protos.sensorium.v1 import predictor_pb2, predictor_pb2_grpc
from server.config import Settings
from server.dataplane import DataPlane
from server.errors import Unavailable
from server.metrics import ServerMetrics
from server.providers import resolve_providers
from server.registry import Change, Registry, make_session_factory
from server.security.auth import AuthInterceptor, TokenTable
from server.security.decode import DecodeGuardInterceptor
from server.security.tls import server_credentials
from server.servicers.kserve import KServeServicer
from server.servicers.predictor import ModelRepositoryServicer, PredictorServicer

log = logging.getLogger(__name__)
DRAIN_LINGER_S = 0.25  # while draining, a stream waiting for its next frame is ended after this long


class SensoriumServer:
    """One server instance; `start()` returns the bound gRPC port (useful with port 0)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.metrics = ServerMetrics()
        self.port: int | None = None
        self.http_port: int | None = None
        self.web_port: int | None = None  # leaderboard pages (server/web), when settings.web_port >= 0
        self._web: Any = None
        self.service_names: list[str] = []
        self.plane: DataPlane | None = None
        self._server: grpc.aio.Server | None = None
        self._health = health.aio.HealthServicer()
        self._executor: ThreadPoolExecutor | None = None
        self._evictor: asyncio.Task | None = None
        self._watcher: asyncio.Task | None = None
        self._stopped = asyncio.Event()

    async def start(self) -> int:
        s = self.settings
        providers = resolve_providers(s.providers)
        registry = Registry(s.repo, make_session_factory(providers, s.intra_op_threads, s.inter_op_threads))
        changes = await asyncio.to_thread(registry.scan)
        ready = sum(c.action in ("loaded", "reloaded") for c in changes)
        log.info(
            "repository %s: %d graph versions ready, %d not ready (%s)",
            s.repo,
            ready,
            len(changes) - ready,
            providers[0],
        )
        self.metrics.track_loaded_models(registry.ready_count)
        self._executor = ThreadPoolExecutor(s.clip_workers, thread_name_prefix="clip")
        self.plane = DataPlane(s, registry, self.metrics, self._executor)

        interceptors: list[grpc.aio.ServerInterceptor] = []
        if s.auth_tokens is not None:
            tokens = TokenTable.read(s.auth_tokens)
            interceptors.append(AuthInterceptor(tokens, self._count_denied))
            log.info("token authentication on: %d tokens from %s", len(tokens), s.auth_tokens)
        interceptors.append(DecodeGuardInterceptor())  # after auth: a refused call is not parsed
        if s.truth_dir is not None:
            from server.scoring.metrics import ScoringMetricsInterceptor

            interceptors.append(ScoringMetricsInterceptor(self.metrics))  # Submit outcomes and durations
        credentials = (
            server_credentials(s.tls_cert, s.tls_key, s.tls_client_ca) if s.tls_cert and s.tls_key else None
        )
        server = grpc.aio.server(
            interceptors=interceptors,
            options=[
                ("grpc.max_receive_message_length", s.max_message_bytes),
                ("grpc.max_send_message_length", s.max_message_bytes),
                # Notice rigs that vanish without closing their connection (their streams are then freed).
                ("grpc.keepalive_time_ms", 30_000),
                ("grpc.keepalive_timeout_ms", 10_000),
            ],
        )
        predictor_pb2_grpc.add_PredictorServicer_to_server(PredictorServicer(self.plane), server)
        predictor_pb2_grpc.add_ModelRepositoryServicer_to_server(ModelRepositoryServicer(self.plane), server)
        grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
            KServeServicer(self.plane), server
        )
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        names = [
            predictor_pb2.DESCRIPTOR.services_by_name["Predictor"].full_name,
            predictor_pb2.DESCRIPTOR.services_by_name["ModelRepository"].full_name,
            grpc_predict_v2_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name,
        ]
        if s.truth_dir is not None:
            from server import scoring  # lazy: only a scoring server needs SQLAlchemy & co.

            names += scoring.register(server, s)
        self.service_names = names
        reflection.enable_server_reflection(
            [*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
            server,
        )
        address = f"{s.host}:{s.port}"
        if credentials is not None:
            self.port = server.add_secure_port(address, credentials)
            log.info("TLS on%s", " with client certificates (mutual TLS)" if s.tls_client_ca else "")
        else:
            self.port = server.add_insecure_port(address)
        if self.port == 0:
            raise RuntimeError(f"could not bind {s.host}:{s.port}")
        await server.start()
        self._server = server
        for name in ["", *names]:
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        if s.http_port >= 0:
            self.http_port = self.metrics.serve_http(s.host, s.http_port)
        if s.web_port >= 0:
            from server.scoring.db import ScoreStore  # lazy: SQLAlchemy only when the pages are on
            from server.web.http import WebServer
            from server.web.insilico import InsilicoResults

            results = InsilicoResults(s.insilico_dir) if s.insilico_dir is not None else None
            self._web = WebServer(ScoreStore(s.db_url), s.host, s.web_port, self._trace_source(), results)
            self.web_port = self._web.start()
        self._evictor = asyncio.create_task(self._evict_forever())
        if s.watch_s > 0:
            self._watcher = asyncio.create_task(self._watch_forever())
            log.info("watching %s for model changes every %g s", s.repo, s.watch_s)
        log.info(
            "serving on %s:%d (metrics %s); batching %s (max %d, wait %.1f ms), max %d streams",
            s.host, self.port, f"http://{s.host}:{self.http_port}/metrics" if self.http_port else "off",
            s.batching, s.max_batch_size, s.max_batch_wait_ms, s.max_streams,
        )  # fmt: skip
        return self.port

    def _trace_source(self) -> Any:
        """Model traces on released trials for the pages: DIR/public beside --truth DIR/truth, predictions from
        this server's PredictClip over loopback (off with token auth or TLS: the pages hold no credentials)."""
        s = self.settings
        if s.truth_dir is None or s.auth_tokens is not None or s.tls_cert is not None:
            return None
        public = s.truth_dir.parent / "public"
        if not public.is_dir():
            return None
        from server.web.traces import TraceSource, grpc_predict

        host = "127.0.0.1" if s.host in ("0.0.0.0", "::", "") else s.host
        return TraceSource(public, grpc_predict(f"{host}:{self.port}"))

    def _count_denied(self, method: str, code: grpc.StatusCode) -> None:
        self.metrics.errors.labels(method.rsplit("/", 1)[-1], code.name).inc()

    async def _evict_forever(self) -> None:
        assert self.plane is not None
        streams = self.plane.streams
        # Sequences may idle out sooner than streams (their config's max_sequence_idle_microseconds).
        while True:
            interval = max(0.05, min(streams.shortest_idle_timeout() / 4, 5.0))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(streams.timeout_added.wait(), interval)
            streams.timeout_added.clear()
            self.metrics.evictions.inc(len(streams.evict_idle()))

    async def _watch_forever(self) -> None:
        """`serve --watch`: re-scan the repository periodically (off the event loop: loads run in a thread)."""
        assert self.plane is not None
        while True:
            await asyncio.sleep(self.settings.watch_s)
            try:
                changes = await self.plane.rescan()
            except Exception:  # a bad repository state must not end the watch
                log.exception("watch: re-scanning %s failed", self.settings.repo)
                continue
            if changes:
                log.info("watch: %s", describe_changes(changes))

    async def stop(self, grace: float | None = None) -> None:
        """Drain and stop: NOT_SERVING, refuse new calls, end streams after their frame in flight, wait, close."""
        if self._server is None or self.plane is None:
            return
        grace = self.settings.shutdown_grace_s if grace is None else grace
        log.info("draining: %d open streams, grace %.1f s", len(self.plane.streams), grace)
        if self._watcher is not None:  # no model loads while draining
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        self.plane.draining = True
        await self._health.enter_graceful_shutdown()
        self.plane.streams.terminate_all(
            linger_s=min(DRAIN_LINGER_S, grace),
            error=Unavailable("server is shutting down (draining); reconnect to another replica"),
        )
        await self._server.stop(grace)
        if self._evictor is not None:
            self._evictor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._evictor
        self.plane.close()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        self.metrics.close()
        if self._web is not None:
            self._web.stop()
            if self._web.store is not None:
                self._web.store.close()
            self._web = None
        self._server = None
        self._stopped.set()
        log.info("stopped")

    async def wait_stopped(self) -> None:
        await self._stopped.wait()


def _log_rescan(task: asyncio.Future) -> None:
    if task.cancelled():
        return
    if task.exception() is not None:
        log.error("SIGHUP rescan failed: %s", task.exception())
        return
    log.info("SIGHUP rescan: %s", describe_changes(task.result()) or "no changes")


def describe_changes(changes: list[Change]) -> str:
    return ", ".join(
        f"{c.name}/{c.version} {c.action}" + (f" ({c.reason})" if c.reason else "") for c in changes
    )


async def serve(settings: Settings) -> int:
    """Run until SIGTERM / SIGINT, then shut down gracefully; returns the exit code (0)."""
    app = SensoriumServer(settings)
    await app.start()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def rescan() -> None:
        assert app.plane is not None
        task = asyncio.ensure_future(app.plane.rescan())
        task.add_done_callback(_log_rescan)

    loop.add_signal_handler(signal.SIGHUP, rescan)
    await stop.wait()
    log.info("signal received: shutting down")
    await app.stop()
    return 0
