"""Cross-stream batcher: step calls of concurrent streams on one graph version run as ONE onnxruntime call.

A small pool of worker threads per step graph (inference never runs on the event loop; onnxruntime's `run` is
thread-safe), so batched and unbatched calls overlap on several cores. One worker at a time forms a batch: it
takes the first waiting frame and everything already queued, and waits for more only while waiting can help:
while every other worker is busy (an idle worker would run the next frame at once, in parallel, which on a CPU
beats a bigger batch), while fewer frames are in hand than streams that could still send one (the graph's open
streams minus those whose frame another worker is computing; each stream has at most one frame in flight), and
never longer than ``max_wait_s`` after the first frame arrived. So a lone stream never waits, a batch closes as
soon as every stream that can join has joined, and under load (all workers busy) queued frames form batches.
Inputs and state tensors are stacked along a new batch axis only when a batch holds several frames (one frame runs
on views, no copies); outputs are split back per stream. Batching off = batches of 1 (the pool still runs frames
of different streams in parallel). `run_here` skips all of it for the server's only stream (see DataPlane.step).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
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


class GraphBatcher:
    """A pool of ``workers`` threads that runs one step graph for every stream on it."""

    def __init__(
        self,
        graph: Graph,
        max_batch_size: int,
        max_wait_s: float,
        on_batch: Callable[[int, float], None] = lambda size, compute_s: None,
        workers: int = 1,
    ):
        self.graph = graph
        self.max_batch_size = max_batch_size if graph.batchable else 1
        self.max_wait_s = max_wait_s
        self._on_batch = on_batch
        self._pending: deque[_Pending] = deque()
        self._cond = threading.Condition(threading.Lock())  # guards _pending, _computing, _stopping
        self._gathering = threading.Lock()  # one worker forms a batch at a time; idle ones queue here
        self._computing = 0  # frames taken by workers and not yet answered
        self._busy = 0  # workers running a batch
        self._stopping = False
        self._threads = [
            threading.Thread(
                target=self._work, name=f"batcher-{graph.name}-v{graph.version}-{i}", daemon=True
            )
            for i in range(max(1, workers))
        ]
        for thread in self._threads:
            thread.start()

    @property
    def workers(self) -> int:
        return len(self._threads)

    def submit(self, inputs: dict[str, np.ndarray]) -> asyncio.Future[StepResult]:
        """Queue one stream's frame (+ state); call from the event loop, await the returned future."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[StepResult] = loop.create_future()
        pending = _Pending(inputs, future, loop, time.perf_counter())
        with self._cond:
            self._pending.append(pending)
            self._cond.notify()
        return future

    def run_here(self, inputs: dict[str, np.ndarray]) -> StepResult:
        """Run one frame on the calling thread, bypassing the queue and the workers.

        For the server's only stream: the two thread hand-offs (event loop -> worker -> event loop) cost
        ~0.1-0.3 ms per frame on a busy 2-core machine, and nothing else is waiting for the event loop.
        """
        with self._cond:
            self._computing += 1
        try:
            feeds = {name: value[None] for name, value in inputs.items()}
            start = time.perf_counter()
            outputs = self.graph.run(feeds)
            compute = time.perf_counter() - start
        except Exception:
            log.exception("step call of %r failed", self.graph)
            raise
        finally:
            with self._cond:
                self._computing -= 1
        self._on_batch(1, compute)
        return StepResult({name: out[0] for name, out in outputs.items()}, 0.0, compute, 1)

    def stop(self, wait: bool = False) -> None:
        """Workers finish the frames already queued, then exit."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if wait:
            for thread in self._threads:
                thread.join(timeout=10)

    def _work(self) -> None:
        while True:
            with self._gathering:
                batch = self._form_batch()
            if batch is None:
                return
            try:
                live = [p for p in batch if not p.future.cancelled()]
                if live:
                    self._run(live)
            except (
                Exception
            ) as exc:  # a bug past _run's own handling must not kill the worker or hang streams
                log.exception("step worker of %r failed", self.graph)
                _resolve([(p, exc) for p in batch])
            finally:
                with self._cond:
                    self._computing -= len(batch)
                    self._busy -= 1

    def _take(self, batch: list[_Pending]) -> None:
        while self._pending and len(batch) < self.max_batch_size:
            batch.append(self._pending.popleft())

    def _form_batch(self) -> list[_Pending] | None:
        """The next batch (None: stop). Holds ``_cond`` except while waiting on it."""
        with self._cond:
            while not self._pending:
                if self._stopping:
                    return None
                self._cond.wait()
            batch: list[_Pending] = []
            self._take(batch)
            deadline = batch[0].enqueued + self.max_wait_s
            idle_elsewhere = len(self._threads) - 1 - self._busy
            while len(batch) < self.max_batch_size and not self._stopping and idle_elsewhere <= 0:
                could_send = self.graph.active_streams - self._computing  # streams not busy elsewhere
                remaining = deadline - time.perf_counter()
                if len(batch) >= could_send or remaining <= 0:
                    break
                self._cond.wait(remaining)
                self._take(batch)
                idle_elsewhere = len(self._threads) - 1 - self._busy
            self._computing += len(batch)
            self._busy += 1
            return batch

    def _run(self, batch: list[_Pending]) -> None:
        try:
            if len(batch) == 1:  # views, no copies: real state tensors are megabytes
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
            _resolve([(batch[0], exc)])
            return
        self._on_batch(len(batch), compute)
        _resolve(
            [
                (
                    pending,
                    StepResult(
                        outputs={name: out[i] for name, out in outputs.items()},
                        queue_s=start - pending.enqueued,
                        compute_s=compute,
                        batch_size=len(batch),
                    ),
                )
                for i, pending in enumerate(batch)
            ]
        )


def _resolve(results: list[tuple[_Pending, StepResult | BaseException]]) -> None:
    """Settle the futures of a batch: one event-loop wake-up per loop (all streams share one in practice)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Pending, StepResult | BaseException]]] = {}
    for pending, value in results:
        by_loop.setdefault(pending.loop, []).append((pending, value))
    for loop, items in by_loop.items():
        with contextlib.suppress(
            RuntimeError
        ):  # RuntimeError: the loop closed (server stopped), nobody waits
            loop.call_soon_threadsafe(_settle, items)


def _settle(items: list[tuple[_Pending, StepResult | BaseException]]) -> None:
    for pending, value in items:
        if pending.future.done():
            continue
        if isinstance(value, BaseException):
            pending.future.set_exception(value)
        else:
            pending.future.set_result(value)
