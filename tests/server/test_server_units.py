"""Units of the serving path: the batcher's grouping and bounded wait, the registry's not-ready reasons."""

from __future__ import annotations

import asyncio
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
