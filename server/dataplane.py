"""The data plane between the thin gRPC servicers and the registry: resolves models, validates inputs, runs
graphs (clip calls on an executor, step calls through the per-graph batcher and its worker pool) and records
metrics."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

from models import contract
from server.batcher import GraphBatcher
from server.config import Settings
from server.errors import InvalidArgument, Unavailable
from server.metrics import ServerMetrics
from server.registry import Change, Graph, Registry
from server.statistics import failures_counted
from server.streams import StreamManager, StreamSession
from server.validation import as_float32, check_shape

log = logging.getLogger(__name__)
FRAME_FIELDS = ("frame.video", "frame.behavior", "frame.pupil_center")  # StreamPredict's names in errors

# Model loads (rescan, load, `serve --watch`) run in one thread at this niceness: a load takes a core for a
# fraction of a second per graph, and the threads serving streams must win the CPU meanwhile (Linux: per thread).
LOADER_NICENESS = 10


def _background_priority() -> None:
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LOADER_NICENESS)
    except (AttributeError, OSError) as exc:  # not Linux, or not allowed: loads compete at normal priority
        log.debug("model loader keeps the normal priority: %s", exc)


@dataclass
class ClipOutput:
    graph: Graph
    responses: np.ndarray  # [B, T - R + 1, N] (batch axis dropped when the request had none)
    compute_s: float


@dataclass
class FrameOutput:
    responses: np.ndarray  # [N]
    warm: bool
    queue_s: float
    compute_s: float
    batch_size: int


class DataPlane:
    def __init__(self, settings: Settings, registry: Registry, metrics: ServerMetrics, executor: Executor):
        self.settings = settings
        self.registry = registry
        self.metrics = metrics
        self.executor = executor
        self.streams = StreamManager(settings.max_streams, settings.idle_timeout_s, self._count_stream)
        self.draining = False
        self._batchers: dict[int, GraphBatcher] = {}
        self._batchers_lock = threading.Lock()
        self._loader = ThreadPoolExecutor(
            1, thread_name_prefix="model-loader", initializer=_background_priority
        )

    def check_serving(self) -> None:
        if self.draining:
            raise Unavailable("server is shutting down (draining); retry on another replica")

    def repository_name(self, name: str) -> str:
        """KServe names are repository names; a bare mouse name means that mouse's clip graph."""
        clip = contract.repository_model_name(name, contract.CLIP)
        if not self.registry.versions(name) and self.registry.versions(clip):
            return clip
        return name

    # ---- whole trials -------------------------------------------------------------------------------------
    async def predict_clip(
        self, model: str, version: int, video: np.ndarray, behavior: np.ndarray, pupil_center: np.ndarray
    ) -> ClipOutput:
        self.check_serving()
        graph = self.registry.resolve(model, contract.CLIP, version)
        started = time.perf_counter()
        with failures_counted(graph.stats, started):
            return await self._predict_clip(graph, started, video, behavior, pupil_center)

    async def _predict_clip(
        self, graph: Graph, started: float, video: np.ndarray, behavior: np.ndarray, pupil_center: np.ndarray
    ) -> ClipOutput:
        batched = video.ndim == 4
        if video.ndim not in (3, 4):
            raise InvalidArgument(f"video: shape {list(video.shape)}, expected [T, H, W] or [B, T, H, W]")
        if not batched:
            video, behavior, pupil_center = video[None], behavior[None], pupil_center[None]
        b, t = video.shape[:2]
        h, w = graph.frame_shape
        dims = ("B", "T", "H", "W") if batched else ("T", "H", "W")
        check_shape(video, (b, t, h, w), "video", ("B", "T", "H", "W"))
        check_shape(behavior, (b, t, 2), "behavior", ("B", "T", "channel"))
        check_shape(pupil_center, (b, t, 2), "pupil_center", ("B", "T", "channel"))
        r = graph.metadata.receptive_field
        if t < r:
            raise InvalidArgument(
                f"video: {t} frames ({', '.join(dims)} = {list(video.shape)}), need >= {r} (receptive_field)"
            )
        feeds = {
            contract.VIDEO: as_float32(video, "video"),
            contract.BEHAVIOR: as_float32(behavior, "behavior"),
            contract.PUPIL_CENTER: as_float32(pupil_center, "pupil_center"),
        }
        outputs, compute_s = await self._run(graph, feeds, started)
        responses = outputs[contract.RESPONSES]
        return ClipOutput(graph, responses if batched else responses[0], compute_s)

    async def infer(
        self, name: str, version: int, arrays: dict[str, np.ndarray]
    ) -> tuple[Graph, dict[str, np.ndarray]]:
        """KServe ModelInfer: any graph, by repository name (or mouse name -> its clip graph)."""
        self.check_serving()
        name = self.repository_name(name)
        graph = self.registry.graph(name, version)
        started = time.perf_counter()
        with failures_counted(graph.stats, started):
            return graph, await self._infer(graph, started, arrays)

    async def _infer(
        self, graph: Graph, started: float, arrays: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        name = graph.name
        missing = sorted(set(graph.inputs) - set(arrays))
        extra = sorted(set(arrays) - set(graph.inputs))
        if missing or extra:
            raise InvalidArgument(
                f"inputs: model {name!r} needs {sorted(graph.inputs)}; missing {missing}, unknown {extra}"
            )
        feeds = {}
        for input_name, spec in graph.inputs.items():
            field = f"inputs[{input_name}]"
            check_shape(arrays[input_name], spec.shape, field)
            feeds[input_name] = (
                as_float32(arrays[input_name], field) if spec.dtype == "float32" else arrays[input_name]
            )
        r = graph.metadata.receptive_field
        if graph.kind == contract.CLIP and feeds[contract.VIDEO].shape[1] < r:
            raise InvalidArgument(
                f"inputs[video]: {feeds[contract.VIDEO].shape[1]} frames, need >= {r} (receptive_field)"
            )
        outputs, _ = await self._run(graph, feeds, started)
        return outputs

    async def _run(
        self, graph: Graph, feeds: dict[str, np.ndarray], started: float
    ) -> tuple[dict[str, np.ndarray], float]:
        """One whole-batch call on the clip executor; records the request (received at ``started``)."""

        def call() -> tuple[dict[str, np.ndarray], float, float]:
            begin = time.perf_counter()
            return graph.run(feeds), begin, time.perf_counter()

        submitted = time.perf_counter()
        try:
            outputs, begin, end = await asyncio.get_running_loop().run_in_executor(self.executor, call)
        except (ort_state.InvalidArgument, ort_state.Fail, ort_state.RuntimeException) as exc:
            raise InvalidArgument(f"inputs: onnxruntime rejected them for {graph.name}: {exc}") from exc
        batch = len(next(iter(feeds.values())))
        graph.stats.executed(batch, end - begin)
        graph.stats.request_succeeded(
            time.perf_counter() - started, begin - submitted, end - begin, submitted - started, items=batch
        )
        return outputs, end - begin

    # ---- streams --------------------------------------------------------------------------------------------
    def open_stream(self, model: str, version: int, stream_id: str) -> StreamSession:
        self.check_serving()
        graph = self.registry.resolve(model, contract.STEP, version)
        session = self.streams.open(graph, stream_id)
        self._batcher(graph)
        return session

    def open_sequence(self, graph: Graph, label: str, idle_timeout_s: float) -> StreamSession:
        """A session for a KServe sequence (server/sequences.py): not bound to an RPC, idle timeout its own."""
        session = self.streams.open(graph, label, idle_timeout_s=idle_timeout_s, bind_task=False)
        self._batcher(graph)
        return session

    def frame_feeds(
        self,
        graph: Graph,
        video: np.ndarray,
        behavior: np.ndarray,
        pupil_center: np.ndarray,
        fields: tuple[str, str, str] = FRAME_FIELDS,
    ) -> dict[str, np.ndarray]:
        """One frame's graph inputs: shapes checked, float32, finite; errors name ``fields``."""
        check_shape(video, graph.frame_shape, fields[0], ("H", "W"))
        check_shape(behavior, (2,), fields[1])
        check_shape(pupil_center, (2,), fields[2])
        return {
            contract.VIDEO: as_float32(video, fields[0]),
            contract.BEHAVIOR: as_float32(behavior, fields[1]),
            contract.PUPIL_CENTER: as_float32(pupil_center, fields[2]),
        }

    async def step(
        self,
        session: StreamSession,
        sequence: int,
        video: np.ndarray,
        behavior: np.ndarray,
        pupil_center: np.ndarray,
    ) -> FrameOutput:
        """One frame through the stream's step graph; the session's state moves on only on success."""
        started = time.perf_counter()
        with failures_counted(session.graph.stats, started):
            session.check_sequence(sequence)
            frame = self.frame_feeds(session.graph, video, behavior, pupil_center)
            return await self._step(session, started, frame)

    async def step_checked(
        self, session: StreamSession, frame: dict[str, np.ndarray], started: float
    ) -> FrameOutput:
        """`step` for a frame already through `frame_feeds` (received at perf_counter ``started``): KServe
        sequences check the frame before they touch the sequence."""
        with failures_counted(session.graph.stats, started):
            return await self._step(session, started, frame)

    async def _step(
        self, session: StreamSession, started: float, frame: dict[str, np.ndarray]
    ) -> FrameOutput:
        graph = session.graph
        inputs = {**frame, **session.state}
        warm = session.next_sequence >= session.warmup_frames
        batcher = self._batcher(graph)
        submitted = time.perf_counter()
        session.busy = True
        try:
            if self.settings.inline_lone_stream and len(self.streams) == 1:
                # The only stream: run on the event loop thread (other RPCs wait at most one step call).
                result = batcher.run_here(inputs)
            else:
                result = await batcher.submit(inputs)
        finally:
            session.busy = False
        session.commit({s.input_name: result.outputs[s.output_name] for s in graph.state})
        graph.stats.request_succeeded(
            time.perf_counter() - started, result.queue_s, result.compute_s, submitted - started
        )
        return FrameOutput(
            responses=result.outputs[contract.RESPONSES],
            warm=warm,
            queue_s=result.queue_s,
            compute_s=result.compute_s,
            batch_size=result.batch_size,
        )

    def close_stream(self, session: StreamSession) -> None:
        self.streams.close(session)

    def _batcher(self, graph: Graph) -> GraphBatcher:
        batcher = self._batchers.get(id(graph))  # per frame: no lock once it exists (dict reads are atomic)
        if batcher is not None:
            return batcher
        with self._batchers_lock:
            batcher = self._batchers.get(id(graph))
            if batcher is None:
                batching = self.settings.batches_on(graph.session.get_providers())
                size = self.settings.max_batch_size if batching else 1
                observe_batch = self.metrics.batch_size.observe

                def on_batch(size: int, compute_s: float, graph: Graph = graph) -> None:
                    observe_batch(size)
                    graph.stats.executed(size, compute_s)

                batcher = GraphBatcher(
                    graph,
                    size,
                    self.settings.max_batch_wait_s,
                    on_batch,
                    workers=self.settings.step_worker_count,
                )
                log.info("%r: %d step workers, max batch %d", graph, batcher.workers, batcher.max_batch_size)
                self._batchers[id(graph)] = batcher
                graph.on_idle_retired.append(self._drop_batcher)
            return batcher

    def _drop_batcher(self, graph: Graph) -> None:
        with self._batchers_lock:
            batcher = self._batchers.pop(id(graph), None)
        if batcher is not None:
            batcher.stop()
            log.info("retired %r: its last stream ended", graph)

    def _count_stream(self, graph: Graph, delta: int) -> None:
        self.metrics.active_streams.labels(graph.mouse).inc(delta)

    # ---- repository -----------------------------------------------------------------------------------------
    async def rescan(self) -> list[Change]:
        return await asyncio.get_running_loop().run_in_executor(self._loader, self.registry.scan)

    async def load(self, name: str, version: int) -> list[Change]:
        return await asyncio.get_running_loop().run_in_executor(
            self._loader, self.registry.load, name, version
        )

    async def unload(self, name: str, version: int) -> list[Change]:
        return await asyncio.get_running_loop().run_in_executor(
            self._loader, self.registry.unload, name, version
        )

    def close(self) -> None:
        with self._batchers_lock:
            batchers, self._batchers = list(self._batchers.values()), {}
        for batcher in batchers:
            batcher.stop()
        # a load in progress ends before the registry closes
        self._loader.shutdown(wait=True, cancel_futures=True)
        self.registry.close()
