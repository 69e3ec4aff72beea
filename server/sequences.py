"""Triton's sequence semantics on the step graphs: state held by the server between a sequence's requests.

A KServe ModelInfer (or ModelStreamInfer) request to a step model with the request parameters ``sequence_id``
(a non-zero uint64 or a non-empty string), ``sequence_start`` and ``sequence_end`` runs one frame of that
sequence. Each sequence is a `StreamSession` of the same `StreamManager` as StreamPredict's streams (the same
cap, batcher, idle eviction and metrics); this module only adds what Triton's sequence batcher defines:

- a request without START for an id the model does not know (never started, ended, or expired) fails with
  Triton's text: "inference request for sequence <id> to model '<model>' must specify the START flag on the
  first request of the sequence" (INVALID_ARGUMENT);
- START on a live id ends that sequence and starts a new one from zero state (Triton logs the conflict);
- END frees the state after its frame; a sequence idle longer than the model's
  ``max_sequence_idle_microseconds`` (config.pbtxt; Triton's default 1 s) is released;
- requests of one sequence run one at a time in arrival order; different sequences run concurrently.

A request that fails validation changes nothing: no sequence is started, restarted or ended by it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import numpy as np

from models import contract
from server.dataplane import DataPlane, FrameOutput
from server.errors import InvalidArgument
from server.model_config import sequence_idle_seconds
from server.registry import Graph
from server.statistics import failures_counted
from server.streams import StreamSession
from server.validation import check_shape

log = logging.getLogger(__name__)

SequenceId = int | str
FRAME_INPUTS = (contract.VIDEO, contract.BEHAVIOR, contract.PUPIL_CENTER)
KSERVE_FIELDS = ("inputs[video]", "inputs[behavior]", "inputs[pupil_center]")


@dataclass(frozen=True)
class SequenceRequest:
    """The sequence parameters of one request."""

    id: SequenceId  # 0 / "": none given
    start: bool = False
    end: bool = False

    @property
    def given(self) -> bool:
        return self.id not in (0, "")


def start_flag_missing(sequence_id: SequenceId, model: str) -> InvalidArgument:
    return InvalidArgument(
        f"inference request for sequence {sequence_id} to model '{model}' must specify the START flag on the "
        "first request of the sequence"
    )


def frame_inputs(plane: DataPlane, graph: Graph, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The request's frame as graph inputs (`DataPlane.frame_feeds`) after checking names and batch axis."""
    if len(arrays) != len(FRAME_INPUTS) or any(name not in arrays for name in FRAME_INPUTS):
        state = sorted(set(arrays) & {s.input_name for s in graph.state})
        if state:
            raise InvalidArgument(
                f"inputs: {state} are held by the server for sequence requests; send only {list(FRAME_INPUTS)} "
                "(or leave out sequence_id and send every state tensor yourself)"
            )
        missing, extra = sorted(set(FRAME_INPUTS) - set(arrays)), sorted(set(arrays) - set(FRAME_INPUTS))
        raise InvalidArgument(
            f"inputs: model {graph.name!r} needs {list(FRAME_INPUTS)} in a sequence; missing {missing}, "
            f"unknown {extra}"
        )
    h, w = graph.frame_shape
    for name, shape in zip(FRAME_INPUTS, ((1, h, w), (1, 2), (1, 2)), strict=True):
        array = arrays[name]
        if array.ndim == len(shape) and array.shape[0] > 1:
            raise InvalidArgument(
                f"inference request to model '{graph.name}' must specify batch-size 1 due to requirements of "
                "sequence batcher"
            )
        check_shape(array, shape, f"inputs[{name}]")
    video, behavior, pupil_center = (arrays[name][0] for name in FRAME_INPUTS)
    return plane.frame_feeds(graph, video, behavior, pupil_center, KSERVE_FIELDS)


def correlation_id_missing(model: str) -> InvalidArgument:
    return InvalidArgument(
        f"inference request to model '{model}' must specify a non-zero or non-empty correlation ID"
    )


class _Slot:
    """One sequence id of one model: its session (None between sequences) and the lock ordering its requests."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.session: StreamSession | None = None
        self.users = 0  # requests holding or waiting for the lock


class SequenceScheduler:
    """Sequences of every step model, keyed by (repository model name, sequence id)."""

    def __init__(self, plane: DataPlane):
        self.plane = plane
        self._slots: dict[tuple[str, type, SequenceId], _Slot] = {}

    async def step(
        self, name: str, version: int, sequence: SequenceRequest, arrays: dict[str, np.ndarray]
    ) -> tuple[Graph, FrameOutput]:
        """One frame of `sequence` on step model `name`: ``arrays`` are the request's inputs by name, each with
        a batch axis of 1. ``version`` 0: the sequence's own version (for a START: the newest ready one)."""
        self.plane.check_serving()
        started = time.perf_counter()
        # uint64 1 and string "1" are different ids, as in Triton
        key = (name, type(sequence.id), sequence.id)
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = _Slot()
        slot.users += 1
        try:
            async with slot.lock:  # FIFO: a sequence's requests run in the order they arrived
                session = self._live_session(slot)
                if session is None and not sequence.start:
                    raise start_flag_missing(sequence.id, name)
                if session is not None and not sequence.start and version not in (0, session.graph.version):
                    raise InvalidArgument(
                        f"model_version: sequence {sequence.id} runs on version {session.graph.version} of "
                        f"{name!r}, the request asks for version {version} (leave it empty to continue)"
                    )
                graph = self.plane.registry.graph(name, version) if sequence.start else session.graph
                with failures_counted(graph.stats, started):
                    frame = frame_inputs(self.plane, graph, arrays)
                if sequence.start:
                    if session is not None:
                        log.warning(
                            "sequence %s for model '%s' has a conflict: the previous sequence did not end before "
                            "this sequence start; the previous sequence is terminated early",
                            sequence.id,
                            name,
                        )
                        self._end(slot)
                    session = self._start(key, slot, graph, sequence.id)
                assert session is not None
                try:
                    out = await self.plane.step_checked(session, frame, started)
                except BaseException:
                    if sequence.start:  # a START that failed starts nothing
                        self._end(slot)
                    raise
                if sequence.end:
                    self._end(slot)
                return graph, out
        finally:
            slot.users -= 1
            self._forget_if_idle(key, slot)

    def _start(self, key: tuple, slot: _Slot, graph: Graph, sequence_id: SequenceId) -> StreamSession:
        session = self.plane.open_sequence(
            graph, f"sequence {sequence_id} of {graph.name}", sequence_idle_seconds(graph.config)
        )

        def forget(closed: StreamSession) -> None:  # evicted or drained while no request holds the slot
            if slot.session is closed:
                slot.session = None
            self._forget_if_idle(key, slot)

        session.on_close.append(forget)
        slot.session = session
        return session

    def _forget_if_idle(self, key: tuple, slot: _Slot) -> None:
        if slot.users == 0 and slot.session is None and self._slots.get(key) is slot:
            del self._slots[key]

    def _live_session(self, slot: _Slot) -> StreamSession | None:
        """The slot's session unless it ended (evicted, closed) or went idle too long (checked here too, so an
        expired sequence is refused even before the evictor's next round)."""
        session = slot.session
        if session is None:
            return None
        expired = time.monotonic() - session.last_active > (session.idle_timeout_s or 0.0)
        if session.closed or session.end_error is not None or expired:
            self._end(slot)
            return None
        return session

    def _end(self, slot: _Slot) -> None:
        if slot.session is not None:
            self.plane.close_stream(slot.session)
            slot.session = None
