"""Units of the serving path: the batcher's grouping and bounded wait, the registry's not-ready reasons."""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from models import contract
from server.batcher import GraphBatcher
from server.registry import Registry, make_session_factory


class FakeGraph:
    """Stands in for registry.Graph: records the batch size of every run; output = input * 2."""

    name, version, batchable = "fake-step", 1, True

    def __init__(self, active_streams: int, delay_s: float = 0.0):
        self.active_streams = active_streams
        self.delay_s = delay_s
        self.batches: list[int] = []
        self.gate = threading.Event()
        self.gate.set()

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.gate.wait(5)
        time.sleep(self.delay_s)
        self.batches.append(len(feeds["x"]))
        return {"y": feeds["x"] * 2}


async def _submit_all(batcher: GraphBatcher, values: list[float]):
    futures = [batcher.submit({"x": np.full(3, v, np.float32)}) for v in values]
    return await asyncio.gather(*futures)


def test_batcher_groups_waiting_frames_and_splits_outputs() -> None:
    graph = FakeGraph(active_streams=5)
    graph.gate.clear()  # hold the first call so the others queue up behind it
    batcher = GraphBatcher(graph, max_batch_size=3, max_wait_s=0.0)  # type: ignore[arg-type]

    async def scenario():
        first = batcher.submit({"x": np.zeros(3, np.float32)})
        await asyncio.sleep(0.05)
        rest = asyncio.ensure_future(_submit_all(batcher, [1, 2, 3, 4]))
        await asyncio.sleep(0.05)
        graph.gate.set()
        return await first, await rest

    first, rest = asyncio.run(scenario())
    assert first.batch_size == 1
    batcher.stop(wait=True)
    assert graph.batches == [1, 3, 1]  # max_batch_size caps a batch
    assert [r.outputs["y"][0] for r in rest] == [2, 4, 6, 8]  # each stream gets its own row back
    assert [r.batch_size for r in rest] == [3, 3, 3, 1]
    assert all(r.queue_s >= 0.04 for r in rest[:3])  # they waited behind the held call


def test_batcher_lone_stream_does_not_wait_but_others_wait_bounded() -> None:
    wait = 0.2
    lone = FakeGraph(active_streams=1)
    pair = FakeGraph(active_streams=2)
    b_lone = GraphBatcher(lone, max_batch_size=8, max_wait_s=wait)  # type: ignore[arg-type]
    b_pair = GraphBatcher(pair, max_batch_size=8, max_wait_s=wait)  # type: ignore[arg-type]

    async def timed(batcher):
        start = time.perf_counter()
        await _submit_all(batcher, [1.0])
        return time.perf_counter() - start

    async def pair_arrives_late():
        one = b_pair.submit({"x": np.ones(3, np.float32)})
        await asyncio.sleep(wait / 4)
        two = b_pair.submit({"x": np.ones(3, np.float32)})
        return await one, await two

    t_lone = asyncio.run(timed(b_lone))
    t_pair_alone = asyncio.run(timed(b_pair))  # the second stream never sends: bounded by max_wait
    both = asyncio.run(pair_arrives_late())
    for b in (b_lone, b_pair):
        b.stop(wait=True)
    assert t_lone < wait / 2
    assert wait * 0.9 <= t_pair_alone < wait + 0.5
    assert [r.batch_size for r in both] == [2, 2]  # a frame within the wait joins the batch


def test_batching_off_runs_one_frame_per_call() -> None:
    graph = FakeGraph(active_streams=4)
    graph.gate.clear()
    batcher = GraphBatcher(graph, max_batch_size=1, max_wait_s=0.001)  # type: ignore[arg-type]

    async def scenario():
        pending = asyncio.ensure_future(_submit_all(batcher, [1, 2, 3]))
        await asyncio.sleep(0.05)
        graph.gate.set()
        return await pending

    results = asyncio.run(scenario())
    batcher.stop(wait=True)
    assert graph.batches == [1, 1, 1] and [r.outputs["y"][0] for r in results] == [2, 4, 6]


def test_batcher_does_not_wait_when_another_worker_is_idle() -> None:
    """Two streams, two workers: A's frame runs at once (the idle second worker could take B's frame as soon as it
    comes, so waiting for B cannot help on a CPU); B's frame, arriving while A's computes, runs at once too (one
    worker would have queued it behind A's call)."""
    wait, delay = 0.3, 0.4
    graph = FakeGraph(active_streams=2, delay_s=delay)
    batcher = GraphBatcher(graph, max_batch_size=8, max_wait_s=wait, workers=2)  # type: ignore[arg-type]

    async def scenario():
        a = batcher.submit({"x": np.ones(3, np.float32)})
        await asyncio.sleep(0.1)
        b = batcher.submit({"x": np.full(3, 2.0, np.float32)})
        return await a, await b

    a, b = asyncio.run(scenario())
    batcher.stop(wait=True)
    assert (a.batch_size, b.batch_size) == (1, 1)
    assert a.queue_s < 0.08, f"A waited {a.queue_s * 1e3:.0f} ms although a worker was idle"
    assert b.queue_s < 0.08, f"B queued {b.queue_s * 1e3:.0f} ms behind a call it could not join"
    assert (a.outputs["y"][0], b.outputs["y"][0]) == (2, 4)


def test_batcher_batches_frames_queued_while_all_workers_are_busy() -> None:
    graph = FakeGraph(active_streams=5)
    graph.gate.clear()  # both workers hold a call
    batcher = GraphBatcher(graph, max_batch_size=8, max_wait_s=0.0, workers=2)  # type: ignore[arg-type]

    async def scenario():
        first = []
        for v in (1, 2):  # one at a time: each worker takes one
            first.append(batcher.submit({"x": np.full(3, v, np.float32)}))
            await asyncio.sleep(0.05)
        rest = asyncio.ensure_future(_submit_all(batcher, [3, 4, 5]))
        await asyncio.sleep(0.05)
        graph.gate.set()
        return await asyncio.gather(*first), await rest

    first, rest = asyncio.run(scenario())
    batcher.stop(wait=True)
    assert sorted(graph.batches) == [1, 1, 3]
    assert [r.batch_size for r in rest] == [3, 3, 3]
    assert [r.outputs["y"][0] for r in [*first, *rest]] == [2, 4, 6, 8, 10]


@pytest.mark.parametrize("max_batch_size", [1, 8], ids=["batching-off", "batching-on"])
def test_batcher_workers_overlap_calls(max_batch_size: int) -> None:
    """A pool of 3 workers runs 3 frames in parallel (or batched): not 3 calls in a row."""
    delay = 0.2
    graph = FakeGraph(active_streams=3, delay_s=delay)
    batcher = GraphBatcher(graph, max_batch_size=max_batch_size, max_wait_s=0.05, workers=3)  # type: ignore[arg-type]

    async def scenario():
        start = time.perf_counter()
        results = await _submit_all(batcher, [1, 2, 3])
        return results, time.perf_counter() - start

    results, elapsed = asyncio.run(scenario())
    batcher.stop(wait=True)
    assert [r.outputs["y"][0] for r in results] == [2, 4, 6]
    assert sum(graph.batches) == 3 and (max_batch_size > 1 or graph.batches == [1, 1, 1])
    assert elapsed < 2 * delay, f"3 calls took {elapsed:.2f} s: the workers did not overlap"


def test_step_worker_count_follows_cores_and_threads() -> None:
    from server.config import Settings

    cores = len(os.sched_getaffinity(0))
    assert Settings(step_workers=3).step_worker_count == 3
    assert Settings(intra_op_threads=1).step_worker_count == cores
    assert Settings(intra_op_threads=0).step_worker_count == 1  # onnxruntime's pool already uses every core
    assert Settings(intra_op_threads=cores * 4).step_worker_count == 1
    with pytest.raises(ValueError, match="step_workers"):
        Settings(step_workers=-1)


@pytest.mark.parametrize("defect", ["no-metadata", "wrong-kind", "bad-state", "not-onnx"])
def test_registry_reports_why_a_version_is_not_ready(
    model_repo: Path, tmp_path: Path, kit, defect: str
) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(model_repo, repo)
    version_dir = repo / f"{kit.MOUSE}-step" / "1"
    (repo / "not-a-model-folder").mkdir()  # ignored with a warning
    metadata = contract.ModelMetadata.read(version_dir)
    expected = {
        "no-metadata": "missing model metadata",
        "wrong-kind": "kind 'clip'",
        "bad-state": "state 'state_in_0'",
        "not-onnx": "onnxruntime cannot load it",
    }[defect]
    if defect == "no-metadata":
        (version_dir / contract.METADATA_FILENAME).unlink()
    elif defect == "wrong-kind":
        metadata.kind = "clip"
        metadata.write(version_dir)
    elif defect == "bad-state":
        metadata.state[0] = contract.StateSpec("state_in_0", "state_out_0", (3, 3))
        metadata.write(version_dir)
    else:
        (version_dir / contract.MODEL_FILENAME).write_bytes(b"\x00" * 10)
    registry = Registry(repo, make_session_factory(["CPUExecutionProvider"], 1, 1))
    changes = registry.scan()
    failed = [c for c in changes if c.action == "failed"]
    assert [(c.name, c.version) for c in failed] == [(f"{kit.MOUSE}-step", 1)]
    assert expected in failed[0].reason
    assert registry.ready_count() == 5
    assert registry.entry(f"{kit.MOUSE}-step").version == 2  # version 0 = the newest READY one
    registry.close()
