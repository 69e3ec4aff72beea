"""Domain errors -> gRPC status, in one place (a decorator on every servicer method)."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
import grpc.aio

from server import errors
from server.metrics import ServerMetrics

log = logging.getLogger(__name__)

STATUS: dict[type[errors.ServingError], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
    errors.DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
}

Handler = TypeVar("Handler", bound=Callable[..., Awaitable[Any]])


def status_of(exc: errors.ServingError) -> grpc.StatusCode:
    for kind in type(exc).__mro__:
        if kind in STATUS:
            return STATUS[kind]
    return grpc.StatusCode.UNKNOWN


def rpc(method: str) -> Callable[[Handler], Handler]:
    """Wrap a servicer method (``self`` has ``metrics: ServerMetrics``): count it, map errors to status."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
            metrics: ServerMetrics = self.metrics
            metrics.requests.labels(method).inc()
            try:
                return await handler(self, request, context)
            except errors.ServingError as exc:
                code = status_of(exc)
                metrics.errors.labels(method, code.name).inc()
                log.debug("%s -> %s: %s", method, code.name, exc)
                await context.abort(code, str(exc))
            except (asyncio.CancelledError, grpc.aio.AbortError):
                raise
            except Exception as exc:
                metrics.errors.labels(method, grpc.StatusCode.INTERNAL.name).inc()
                log.exception("%s failed", method)
                await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}")

        return wrapper  # type: ignore[return-value]

    return decorate
