"""Helpers of the reliability tests, importable by the test modules (tests/reliability is put on sys.path by
conftest.py): tokens of the test token file, a server on a background event loop, a sync channel."""

from __future__ import annotations

import asyncio
import threading

import grpc

PREDICT_TOKEN = "predict-token-0123456789abcdef"
SUBMIT_TOKEN = "submit-token-0123456789abcdef"
ADMIN_TOKEN = "admin-token-0123456789abcdef"
ALL_TOKEN = "all-roles-token-0123456789abcdef"
TOKENS = {"predict": PREDICT_TOKEN, "submit": SUBMIT_TOKEN, "admin": ADMIN_TOKEN, "all": ALL_TOKEN}


# ---- a server on a background event loop (for synchronous tests: hypothesis, sync clients) ---------------


class ThreadedServer:
    """`server.app.SensoriumServer` on its own event loop thread; `target` is its loopback address."""

    def __init__(self, settings) -> None:
        from server.app import SensoriumServer

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="reliability-server", daemon=True)
        self.thread.start()
        self.app = SensoriumServer(settings)
        port = asyncio.run_coroutine_threadsafe(self.app.start(), self.loop).result(timeout=60)
        self.target = f"127.0.0.1:{port}"

    def call(self, fn, *args):
        """Run `fn(*args)` on the server's loop (its state is not thread-safe) and return the result."""

        async def run():
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout=30)

    def open_streams(self) -> int:
        return self.call(lambda: len(self.app.plane.streams))

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.app.stop(grace=0), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)
        self.loop.close()


def sync_channel(target: str, credentials: grpc.ChannelCredentials | None = None) -> grpc.Channel:
    options = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
    if credentials is not None:
        return grpc.secure_channel(target, credentials, options)
    return grpc.insecure_channel(target, options)
