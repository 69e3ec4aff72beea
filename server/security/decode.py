"""Undecodable requests get INVALID_ARGUMENT, not UNKNOWN / INTERNAL.

gRPC Python parses a request before the servicer runs; bytes that are not a valid protobuf message make grpc.aio
answer UNKNOWN (unary) or raise inside ``context.read()`` (streams, then INTERNAL). `DecodeGuardInterceptor`
swaps each method's deserializer for one that returns an `Undecodable` marker instead of raising, and wraps the
method so that the marker, wherever the servicer would receive it (the request, the request iterator or
``context.read()``), ends the call with INVALID_ARGUMENT naming the message type.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import grpc.aio
from google.protobuf.message import DecodeError


class Undecodable:
    """Stands in for a request message that could not be parsed."""

    def __init__(self, message_type: str, error: Exception) -> None:
        self.details = f"request is not a valid {message_type} message ({type(error).__name__}: {error})"


def _safe_deserializer(deserialize: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    owner = getattr(deserialize, "__self__", None)
    descriptor = getattr(owner, "DESCRIPTOR", None)
    message_type = getattr(descriptor, "full_name", "protobuf")

    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except (DecodeError, ValueError, UnicodeDecodeError) as exc:
            return Undecodable(message_type, exc)

    return parse


class _GuardedContext:
    """The servicer context with a `read()` that refuses an undecodable message."""

    def __init__(self, context: grpc.aio.ServicerContext) -> None:
        self._context = context

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)

    async def read(self) -> Any:
        message = await self._context.read()
        if isinstance(message, Undecodable):
            await self._context.abort(grpc.StatusCode.INVALID_ARGUMENT, message.details)
        return message

    async def read_or_marker(self) -> Any:
        """The next message, or the `Undecodable` marker for the servicer to end the call itself: a servicer
        that writes from another task must let that write finish before the call's status is sent."""
        return await self._context.read()


async def read_message(context: Any) -> Any:
    """``context.read()``, but an undecodable message comes back as `Undecodable` instead of ending the call."""
    reader = getattr(context, "read_or_marker", None)
    return await (reader() if reader is not None else context.read())


async def _guarded_iterator(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> AsyncIterator:
    async for message in requests:
        if isinstance(message, Undecodable):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, message.details)
        yield message


async def _check_unary(request: Any, context: grpc.aio.ServicerContext) -> None:
    if isinstance(request, Undecodable):
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.details)


def _guard_behavior(behavior: Callable[..., Any], streaming_request: bool) -> Callable[..., Any] | None:
    """The wrapped behaviour, or None when it is neither a coroutine nor an async generator function."""

    def arguments(request: Any, context: grpc.aio.ServicerContext) -> tuple[Any, Any]:
        if streaming_request:
            return _guarded_iterator(request, context), _GuardedContext(context)
        return request, context

    if inspect.isasyncgenfunction(behavior):

        async def generator(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            if not streaming_request:
                await _check_unary(request, context)
            async for item in behavior(*arguments(request, context)):
                yield item

        return generator
    if inspect.iscoroutinefunction(behavior):

        async def coroutine(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if not streaming_request:
                await _check_unary(request, context)
            return await behavior(*arguments(request, context))

        return coroutine
    return None


def guard_handler(handler: grpc.RpcMethodHandler | None) -> grpc.RpcMethodHandler | None:
    if handler is None or handler.request_deserializer is None:
        return handler
    kind = (
        ("stream_stream", grpc.stream_stream_rpc_method_handler)
        if handler.request_streaming and handler.response_streaming
        else ("stream_unary", grpc.stream_unary_rpc_method_handler)
        if handler.request_streaming
        else ("unary_stream", grpc.unary_stream_rpc_method_handler)
        if handler.response_streaming
        else ("unary_unary", grpc.unary_unary_rpc_method_handler)
    )
    behavior = _guard_behavior(getattr(handler, kind[0]), handler.request_streaming)
    if behavior is None:
        return handler
    return kind[1](
        behavior,
        request_deserializer=_safe_deserializer(handler.request_deserializer),
        response_serializer=handler.response_serializer,
    )


class DecodeGuardInterceptor(grpc.aio.ServerInterceptor):
    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        return guard_handler(await continuation(details))
