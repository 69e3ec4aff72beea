"""Domain errors of the serving path. Free of gRPC: `server.status` maps them to status codes in one place."""

from __future__ import annotations


class ServingError(Exception):
    """Base: a request the server refuses, with a message naming the field and the problem."""


class InvalidArgument(ServingError):
    """Wrong shape, dtype, byte length, non-finite values, sequence gap or duplicate."""


class NotFound(ServingError):
    """Unknown model or version."""


class FailedPrecondition(ServingError):
    """The request is fine but the state is not: frame before `open`, model not ready."""


class ResourceExhausted(ServingError):
    """Too many streams."""


class Unavailable(ServingError):
    """The server is draining (shutting down)."""


class DeadlineExceeded(ServingError):
    """A stream was idle longer than the idle timeout and was evicted."""
