#!/usr/bin/env python3
"""The floor under any Python gRPC server: a bare grpc.aio bidirectional stream that answers each request
with a fixed reply of the served model's size, after holding it for ``--hold-ms`` of busy CPU (the model's
compute time, so that both processes idle between messages as they do with a real model).

bench_serving.py runs it beside the real server: served latency - in-process latency - this floor = what the
server itself adds (decoding, validation, state, thread hand-offs, metrics).

    .venv/bin/python bench/grpc_echo.py serve --port P --reply-bytes N --hold-ms H
"""

from __future__ import annotations

import argparse
import asyncio
import time

import grpc
import grpc.aio

SERVICE, METHOD = "bench.Echo", "Stream"


def _hold(seconds: float) -> None:
    """Busy CPU like an onnxruntime call (a sleeping thread would let the core idle, a computing one does not)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


async def serve(port: int, reply_bytes: int, hold_s: float) -> None:
    reply = b"\x00" * reply_bytes

    async def stream(requests, context):  # grpc generic handler: (request iterator, context)
        async for _ in requests:
            _hold(hold_s)
            yield reply

    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 << 20)])
    handler = grpc.stream_stream_rpc_method_handler(stream)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {METHOD: handler}),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


async def round_trips(target: str, request_bytes: int, frames: int, fps: float) -> list[float]:
    """One stream, one message in flight, paced at ``fps`` (0: back to back): round-trip seconds."""
    request = b"\x01" * request_bytes
    period = 1.0 / fps if fps > 0 else 0.0
    async with grpc.aio.insecure_channel(target) as channel:
        await channel.channel_ready()
        call = channel.stream_stream(f"/{SERVICE}/{METHOD}")()
        times = []
        start = time.perf_counter()
        for i in range(frames):
            delay = start + i * period - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            t0 = time.perf_counter()
            await call.write(request)
            await call.read()
            times.append(time.perf_counter() - t0)
        await call.done_writing()
    return times[5:]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--reply-bytes", type=int, required=True, help="size of each reply message")
    parser.add_argument("--hold-ms", type=float, default=0.0, help="busy CPU per message before replying")
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.reply_bytes, args.hold_ms / 1e3))


if __name__ == "__main__":
    main()
