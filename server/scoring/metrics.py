"""Prometheus metrics of the scoring service, recorded by a server interceptor (the servicer stays untouched).

- ``sensorium_serve_scoring_submissions_total{track, tier, code}``: Submit calls by outcome (OK = recorded;
  INVALID_ARGUMENT = rejected; RESOURCE_EXHAUSTED = daily limit / busy; ...).
- ``sensorium_serve_scoring_seconds{track, tier}``: Submit duration, first message -> answer (histogram).
- ``sensorium_serve_scoring_trials_total{track, tier}``: trial messages received by Submit.
- every ``sensorium.v1.Scoring`` method also counts in ``sensorium_serve_requests_total{method}`` and, when it
  ends with an error status, ``sensorium_serve_errors_total{method, code}`` (same as the Predictor methods).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final

import grpc
import grpc.aio
from prometheus_client import Counter, Histogram

from server.metrics import PREFIX, ServerMetrics

SERVICE_PREFIX: Final = "/sensorium.v1.Scoring/"
SCORING_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
UNKNOWN: Final = "unknown"


class ScoringMetrics:
    def __init__(self, metrics: ServerMetrics) -> None:
        r = metrics.registry
        self.server = metrics
        self.submissions = Counter(
            f"{PREFIX}_scoring_submissions",
            "Scoring Submit calls by outcome (code OK = recorded)",
            ["track", "tier", "code"],
            registry=r,
        )
        self.seconds = Histogram(
            f"{PREFIX}_scoring_seconds",
            "Scoring Submit duration: call start -> answer, including validation, metrics and the database",
            ["track", "tier"],
            buckets=SCORING_BUCKETS,
            registry=r,
        )
        self.trials = Counter(
            f"{PREFIX}_scoring_trials",
            "Trial messages received by Scoring Submit",
            ["track", "tier"],
            registry=r,
        )


def _code(context: grpc.aio.ServicerContext, failed: bool) -> grpc.StatusCode:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    if isinstance(code, int):  # some grpc versions keep the raw integer
        return next((c for c in grpc.StatusCode if c.value[0] == code), grpc.StatusCode.UNKNOWN)
    return grpc.StatusCode.UNKNOWN if failed else grpc.StatusCode.OK


class ScoringMetricsInterceptor(grpc.aio.ServerInterceptor):
    """Times and counts every ``sensorium.v1.Scoring`` call; other services pass through unchanged."""

    def __init__(self, metrics: ServerMetrics) -> None:
        self.m = ScoringMetrics(metrics)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method_path = handler_call_details.method
        if handler is None or not method_path.startswith(SERVICE_PREFIX):
            return handler
        method = method_path[len(SERVICE_PREFIX) :]
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                self._stream_unary(method, handler.stream_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary_unary(method, handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler

    def _count(self, method: str, context: grpc.aio.ServicerContext, failed: bool) -> grpc.StatusCode:
        code = _code(context, failed)
        if code != grpc.StatusCode.OK:
            self.m.server.errors.labels(method, code.name).inc()
        return code

    def _unary_unary(
        self, method: str, behavior: Callable[..., Awaitable[Any]]
    ) -> Callable[..., Awaitable[Any]]:
        async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
            self.m.server.requests.labels(method).inc()
            failed = True
            try:
                result = await behavior(request, context)
                failed = False
                return result
            finally:
                self._count(method, context, failed)

        return wrapped

    def _stream_unary(
        self, method: str, behavior: Callable[..., Awaitable[Any]]
    ) -> Callable[..., Awaitable[Any]]:
        async def wrapped(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> Any:
            self.m.server.requests.labels(method).inc()
            labels = {"track": UNKNOWN, "tier": UNKNOWN}
            started = time.perf_counter()

            async def watched() -> AsyncIterator[Any]:
                async for request in requests:
                    kind = request.WhichOneof("kind") if hasattr(request, "WhichOneof") else None
                    if kind == "header" and labels["track"] == UNKNOWN:
                        # Free text from the client: only the known names become label values.
                        labels["track"] = _known(request.header.track, ("main", "bonus"))
                        labels["tier"] = _known(request.header.tier, ("live", "final"))
                    elif kind == "trial":
                        self.m.trials.labels(labels["track"], labels["tier"]).inc()
                    yield request

            failed = True
            try:
                result = await behavior(watched(), context)
                failed = False
                return result
            finally:
                code = self._count(method, context, failed)
                if method == "Submit":
                    self.m.submissions.labels(labels["track"], labels["tier"], code.name).inc()
                    self.m.seconds.labels(labels["track"], labels["tier"]).observe(
                        time.perf_counter() - started
                    )

        return wrapped


def _known(value: str, names: tuple[str, ...]) -> str:
    return value if value in names else "other"
