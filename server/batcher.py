"""Cross-stream batcher: step calls of concurrent streams on one graph version run as ONE onnxruntime call.

One worker thread per step graph (inference never runs on the event loop). The worker takes the first waiting
frame, then gathers more: everything already queued, and, while fewer frames than active streams are in hand, it
waits for more up to ``max_wait_s`` after the first frame arrived (so a lone stream never waits). Inputs and
state tensors are stacked along a new batch axis, outputs split back per stream. Batching off = batches of 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from server.registry import Graph

log = logging.getLogger(__name__)


@dataclass
class StepResult:
    outputs: dict[str, np.ndarray]  # per stream, batch axis removed
    queue_s: float  # submitted -> its onnxruntime call started
    compute_s: float  # duration of that call
    batch_size: int


@dataclass
class _Pending:
    inputs: dict[str, np.ndarray]  # per stream, no batch axis
    future: asyncio.Future[StepResult]
    loop: asyncio.AbstractEventLoop
    enqueued: float


_STOP = object()


class GraphBatcher:
    """Worker thread that runs one step graph for every stream on it."""

    def __init__(
        self,
        graph: Graph,
        max_batch_size: int,
        max_wait_s: float,
        on_batch: Callable[[int], None] = lambda size: None,
    ):
        self.graph = graph
        self.max_batch_size = max_batch_size if graph.batchable else 1
        self.max_wait_s = max_wait_s
        self._on_batch = on_batch
        self._queue: queue.SimpleQueue[_Pending | object] = queue.SimpleQueue()
        self._thread = threading.Thread(
            target=self._work, name=f"batcher-{graph.name}-v{graph.version}", daemon=True
        )
        self._thread.start()

    def submit(self, inputs: dict[str, np.ndarray]) -> asyncio.Future[StepResult]:
        """Queue one stream's frame (+ state); call from the event loop, await the returned future."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[StepResult] = loop.create_future()
        self._queue.put(_Pending(inputs, future, loop, time.perf_counter()))
        return future

    def stop(self, wait: bool = False) -> None:
        self._queue.put(_STOP)
        if wait:
            self._thread.join(timeout=10)

    def _work(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                break
            batch = [first]
            stopping = self._gather(batch)
            batch = [p for p in batch if not p.future.cancelled()]  # type: ignore[union-attr]
            if batch:
                self._run(batch)  # type: ignore[arg-type]

    def _gather(self, batch: list) -> bool:
        """Add frames to the batch; returns True when a stop request was seen."""
        deadline = batch[0].enqueued + self.max_wait_s
        while len(batch) < self.max_batch_size:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.perf_counter()
                if len(batch) >= self.graph.active_streams or remaining <= 0:
                    return False
                try:
                    item = self._queue.get(timeout=remaining)
                except queue.Empty:
                    return False
            if item is _STOP:
                return True
            batch.append(item)
        return False

    def _run(self, batch: list[_Pending]) -> None:
        try:
            if len(batch) == 1:  # a view, no copy: real state tensors are megabytes
                feeds = {name: value[None] for name, value in batch[0].inputs.items()}
            else:
                feeds = {name: np.stack([p.inputs[name] for p in batch]) for name in batch[0].inputs}
            start = time.perf_counter()
            outputs = self.graph.run(feeds)
            compute = time.perf_counter() - start
        except Exception as exc:
            if len(batch) > 1:  # find whose input fails instead of failing everybody
                for pending in batch:
                    self._run([pending])
                return
            log.exception("step call of %r failed", self.graph)
            _resolve(batch[0], exc)
            return
        self._on_batch(len(batch))
        for i, pending in enumerate(batch):
            result = StepResult(
                outputs={name: out[i] for name, out in outputs.items()},
                queue_s=start - pending.enqueued,
                compute_s=compute,
                batch_size=len(batch),
            )
            _resolve(pending, result)


def _resolve(pending: _Pending, value: StepResult | BaseException) -> None:
    def settle() -> None:
        if pending.future.done():
            return
        if isinstance(value, BaseException):
            pending.future.set_exception(value)
        else:
            pending.future.set_result(value)

    with contextlib.suppress(RuntimeError):  # RuntimeError: the loop closed (server stopped), nobody waits
        pending.loop.call_soon_threadsafe(settle)
