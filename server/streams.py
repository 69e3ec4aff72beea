"""Stream sessions: each owns its state tensors and its frame counter; the manager caps and evicts them.

A session is either a StreamPredict stream (bound to the task of its RPC, which closes it) or a KServe sequence
(server/sequences.py: unbound, lives across requests until END, a restart or idle eviction).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from collections.abc import Callable

import numpy as np

from server.errors import DeadlineExceeded, InvalidArgument, ResourceExhausted, ServingError
from server.registry import Graph

log = logging.getLogger(__name__)


class StreamSession:
    """One open stream on one step graph version (kept even if that version is reloaded or unloaded)."""

    def __init__(self, stream_id: str, graph: Graph, idle_timeout_s: float | None = None):
        self.id = stream_id
        self.graph = graph
        self.idle_timeout_s = idle_timeout_s  # None: the manager's
        # Zeros at open, one array per state tensor without the batch axis (contract: a new stream starts at 0).
        self.state: dict[str, np.ndarray] = {
            s.input_name: np.zeros(s.shape, dtype=s.dtype) for s in graph.state
        }
        self.next_sequence = 0
        self.last_active = time.monotonic()
        self.busy = False  # a frame is being computed
        self.task: asyncio.Task | None = None
        self.end_error: ServingError | None = None  # set when the server ends the stream (idle, draining)
        self.closed = False
        self.on_close: list[Callable[[StreamSession], None]] = []  # called once, when the manager closes it

    @property
    def warmup_frames(self) -> int:
        return self.graph.metadata.warmup_frames

    def check_sequence(self, sequence: int) -> None:
        expected = self.next_sequence
        if sequence == expected:
            return
        if sequence > expected:
            problem = f"gap: frames {expected}..{sequence - 1} missing"
        else:
            problem = "duplicate or out of order"
        raise InvalidArgument(f"frame.sequence: expected {expected}, got {sequence} ({problem})")

    def commit(self, new_state: dict[str, np.ndarray]) -> None:
        """Accept a computed frame: the state moves on and the next sequence number is due."""
        self.state = new_state
        self.next_sequence += 1
        self.last_active = time.monotonic()

    def terminate(self, error: ServingError, linger_s: float = 0.0) -> None:
        """End the stream from the server side with `error`. A frame being computed finishes first; a stream
        waiting for its next frame is cut after ``linger_s`` (frames already on the wire get computed)."""
        if self.end_error is not None:
            return
        self.end_error = error
        if linger_s > 0:
            asyncio.get_running_loop().call_later(linger_s, self._cancel_if_waiting)
        else:
            self._cancel_if_waiting()

    def _cancel_if_waiting(self) -> None:
        if not self.busy and self.task is not None and not self.task.done():
            self.task.cancel()


class StreamManager:
    """The open streams: at most ``max_streams``, idle ones evicted after ``idle_timeout_s``."""

    def __init__(
        self,
        max_streams: int,
        idle_timeout_s: float,
        on_count: Callable[[Graph, int], None] = lambda graph, delta: None,
    ):
        self.max_streams = max_streams
        self.idle_timeout_s = idle_timeout_s
        self._on_count = on_count
        self._sessions: dict[str, StreamSession] = {}
        self._counter = itertools.count(1)
        self.timeout_added = (
            asyncio.Event()
        )  # a session with its own idle timeout opened: the evictor re-plans

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, stream_id: str) -> StreamSession | None:
        return self._sessions.get(stream_id)

    def open(
        self,
        graph: Graph,
        stream_id: str = "",
        *,
        idle_timeout_s: float | None = None,
        bind_task: bool = True,
    ) -> StreamSession:
        """A new session on `graph`. ``bind_task``: the current task is the stream's RPC, cancelled when the
        server ends the stream; unbound sessions (sequences) are closed by `evict_idle` itself."""
        if len(self._sessions) >= self.max_streams:
            raise ResourceExhausted(
                f"too many streams: {len(self._sessions)} open, max_streams is {self.max_streams}"
            )
        if not stream_id:
            stream_id = f"s{next(self._counter)}-{uuid.uuid4().hex[:8]}"
        elif stream_id in self._sessions:
            stream_id = f"{stream_id}-{next(self._counter)}"  # labels are the client's; ids stay unique
        session = StreamSession(stream_id, graph, idle_timeout_s)
        if idle_timeout_s is not None:
            self.timeout_added.set()
        session.task = asyncio.current_task() if bind_task else None
        graph.acquire()
        self._sessions[stream_id] = session
        self._on_count(graph, +1)
        log.debug("stream %s opened on %r", stream_id, graph)
        return session

    def close(self, session: StreamSession) -> None:
        if self._sessions.pop(session.id, None) is None:
            return
        session.closed = True
        session.state = {}
        self._on_count(session.graph, -1)
        session.graph.release()
        log.debug("stream %s closed after %d frames", session.id, session.next_sequence)
        callbacks, session.on_close = session.on_close, []
        for callback in callbacks:
            callback(session)

    def shortest_idle_timeout(self) -> float:
        """The shortest idle timeout of any open session (or the default): how often eviction must look."""
        timeouts = [s.idle_timeout_s for s in self._sessions.values() if s.idle_timeout_s is not None]
        return min([self.idle_timeout_s, *timeouts])

    def evict_idle(self, now: float | None = None) -> list[str]:
        now = time.monotonic() if now is None else now
        evicted = []
        for session in list(self._sessions.values()):
            timeout = self.idle_timeout_s if session.idle_timeout_s is None else session.idle_timeout_s
            if not session.busy and now - session.last_active > timeout:
                session.terminate(
                    DeadlineExceeded(
                        f"stream {session.id}: no frame for {now - session.last_active:.1f} s "
                        f"(idle timeout {timeout:g} s); evicted"
                    )
                )
                if session.task is None:  # nobody to close it: free its state now
                    self.close(session)
                evicted.append(session.id)
        if evicted:
            log.info("evicted %d idle streams: %s", len(evicted), ", ".join(evicted))
        return evicted

    def terminate_all(self, error: ServingError, linger_s: float = 0.0) -> None:
        for session in list(self._sessions.values()):
            session.terminate(error, linger_s)
            if session.task is None:
                self.close(session)
