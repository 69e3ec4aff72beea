"""Client exceptions: one class per gRPC status a caller may want to handle, with the server's message."""

from __future__ import annotations

import grpc


class PredictorError(Exception):
    """A failed call to the server; ``code`` is the gRPC status, ``details`` the server's message."""

    def __init__(self, code: grpc.StatusCode, details: str, *, call: str = "") -> None:
        self.code = code
        self.details = details
        self.call = call
        where = f"{call}: " if call else ""
        super().__init__(f"{where}{code.name}: {details}")


class InvalidArgumentError(PredictorError):
    """Bad input: shape, dtype, byte length, NaN/Inf, sequence gap (INVALID_ARGUMENT)."""


class NotFoundError(PredictorError):
    """Unknown model or version (NOT_FOUND)."""


class FailedPreconditionError(PredictorError):
    """E.g. a frame before the stream was opened (FAILED_PRECONDITION)."""


class ResourceExhaustedError(PredictorError):
    """Too many streams, or a message over the size limit (RESOURCE_EXHAUSTED)."""


class UnavailableError(PredictorError):
    """Server unreachable or draining (UNAVAILABLE)."""


class DeadlineExceededError(PredictorError):
    """The call took longer than its timeout (DEADLINE_EXCEEDED)."""


class AuthError(PredictorError):
    """UNAUTHENTICATED or PERMISSION_DENIED."""


_BY_CODE: dict[grpc.StatusCode, type[PredictorError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.UNAUTHENTICATED: AuthError,
    grpc.StatusCode.PERMISSION_DENIED: AuthError,
}


class StreamClosedError(RuntimeError):
    """`send` on a stream that was closed or ended by the server."""


class ProtocolError(RuntimeError):
    """The server answered something the protocol does not allow (wrong message kind or sequence number)."""


def from_rpc_error(error: grpc.RpcError, call: str = "") -> PredictorError:
    """The `PredictorError` subclass for a grpc.RpcError (sync or aio)."""
    code = error.code() if callable(getattr(error, "code", None)) else grpc.StatusCode.UNKNOWN
    details = error.details() if callable(getattr(error, "details", None)) else str(error)
    return _BY_CODE.get(code, PredictorError)(code, details or "", call=call)
