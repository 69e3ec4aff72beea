"""Fault injection on a live server: broken model files at start and at reload, onnxruntime failing inside one
call, deadlines exceeded, and a client process killed mid-stream.

Covered elsewhere and referenced by docs/RELIABILITY.md, not repeated here: a client cancelling mid-stream
(tests/server/test_server_errors.py::test_client_vanishing_frees_the_session), SIGTERM with live streams
(tests/server/test_server_lifecycle.py::test_sigterm_drains_streams_and_exits_zero,
tests/server/test_server_ops.py::test_health_serving_then_not_serving_while_draining), a corrupt model.onnx at
start (tests/server/test_server_reload.py::test_corrupt_model_is_not_ready_and_others_keep_serving).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import pytest
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state
from reliability_support import sync_channel

from models import contract
from protos.sensorium.v1 import predictor_pb2, predictor_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]


def _mouse(i: int) -> str:
    return f"dynamic2{i}515-10-12-Video-{i:032x}"


def _break(repo: Path, mouse: str, how: str) -> None:
    """Damage the step graph of `mouse` version 1 in one of the ways a repository goes wrong."""
    version_dir = repo / f"{mouse}-step" / "1"
    model = version_dir / contract.MODEL_FILENAME
    if how == "corrupt":
        model.write_bytes(b"\x08\x07garbage, not a protobuf" * 10)
    elif how == "truncated":
        model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    elif how == "missing":
        model.unlink()
    elif how == "incompatible":  # a valid ONNX graph of the wrong kind (clip: rank-4 video)
        shutil.copy(repo / f"{mouse}-clip" / "1" / contract.MODEL_FILENAME, model)
    elif how == "metadata":
        (version_dir / contract.METADATA_FILENAME).write_text('{"mouse": "half a file')
    elif how == "wrong-frame":  # metadata promises a frame size the graph does not take
        meta = json.loads((version_dir / contract.METADATA_FILENAME).read_text())
        meta["frame_height"] = 72
        (version_dir / contract.METADATA_FILENAME).write_text(json.dumps(meta))
    else:
        raise ValueError(how)


BROKEN = {  # how -> words of the reason
    "corrupt": "onnxruntime cannot load",
    "truncated": "onnxruntime cannot load",
    "missing": "missing",
    "incompatible": "rank 4, expected 3",
    "metadata": "malformed model metadata",
    "wrong-frame": "differs from metadata",
}


def test_broken_model_files_at_start_are_not_ready_with_the_reason(serving, kit, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    kit.write_model(repo, kit.MOUSE, 1, kit.make_params(1))
    mice = {how: _mouse(i) for i, how in enumerate(BROKEN)}
    for how, mouse in mice.items():
        kit.write_model(repo, mouse, 1, kit.make_params(10))
        _break(repo, mouse, how)

    async def scenario():
        async with serving(repo=repo) as srv:
            stub = predictor_pb2_grpc.PredictorStub(srv.channel)
            listed = {m.name: m for m in (await stub.ListModels(predictor_pb2.ListModelsRequest())).models}
            refused = {}
            for how, mouse in mice.items():
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await kit.stream_trial(srv.channel, kit.make_trial(1, 3), model=mouse)
                refused[how] = info.value
            _, ok = await kit.stream_trial(srv.channel, kit.make_trial(2, 6))
            return listed, refused, ok

    listed, refused, ok = asyncio.run(scenario())
    for how, mouse in mice.items():
        version = listed[mouse].versions[0]
        assert not version.step.ready and BROKEN[how] in version.step.reason, (how, version.step.reason)
        assert version.clip.ready  # the mouse's other graph is unaffected
        assert refused[how].code() == grpc.StatusCode.FAILED_PRECONDITION
        assert BROKEN[how] in refused[how].details()
    assert len(ok) == 6  # the healthy model keeps serving


@pytest.mark.parametrize("how", ["corrupt", "incompatible", "metadata"])
def test_failed_reload_keeps_the_old_version_serving(serving, kit, model_repo, tmp_path: Path, how) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(model_repo, repo)
    name = f"{kit.OTHER_MOUSE}-step"
    good = tmp_path / "good.onnx"
    shutil.copy(repo / name / "1" / contract.MODEL_FILENAME, good)
    trial = kit.make_trial(seed=5, frames=8)

    async def scenario():
        async with serving(repo=repo) as srv:
            admin = predictor_pb2_grpc.ModelRepositoryStub(srv.channel)
            stub = predictor_pb2_grpc.PredictorStub(srv.channel)
            live = stub.StreamPredict()
            await live.write(kit.open_request(kit.OTHER_MOUSE))
            await live.read()
            await live.write(kit.frame_request(trial, 0))
            await live.read()
            time.sleep(0.02)  # a new mtime for the fingerprint on coarse clocks
            _break(repo, kit.OTHER_MOUSE, how)
            rescan = await admin.Rescan(predictor_pb2.RescanRequest())
            load = await admin.Load(predictor_pb2.LoadRequest(name=name, version=1))
            for t in range(1, 8):  # the open stream carries on
                await live.write(kit.frame_request(trial, t))
                await live.read()
            await live.done_writing()
            _, fresh = await kit.stream_trial(srv.channel, trial, model=kit.OTHER_MOUSE)  # new streams too
            info = await stub.GetModel(predictor_pb2.GetModelRequest(model=kit.OTHER_MOUSE))
            again = await admin.Rescan(predictor_pb2.RescanRequest())  # unchanged files: not retried
            return rescan, load, fresh, info, again, await live.code()

    rescan, load, fresh, info, again, live_code = asyncio.run(scenario())
    failed = [c for c in rescan.changes if c.name == name]
    assert [(c.action, c.version) for c in failed] == [("failed", 1)] and failed[0].reason
    assert [c.action for c in load.changes] == ["failed"]
    assert live_code == grpc.StatusCode.OK
    step = info.versions[0].step
    assert step.ready and "reload failed, still serving the previously loaded files" in step.reason
    assert not [c for c in again.changes if c.name == name]
    session = ort.InferenceSession(str(good), providers=["CPUExecutionProvider"])
    n, r = kit.N_NEURONS, kit.RECEPTIVE_FIELD
    s0, s1 = np.zeros((1, r - 1, n), np.float32), np.zeros((1, 1), np.float32)
    for t, result in enumerate(fresh):  # the old weights answer
        feeds = {k: v[t : t + 1] for k, v in trial.items()}
        y, s0, s1 = session.run(None, {**feeds, "state_in_0": s0, "state_in_1": s1})
        np.testing.assert_allclose(kit.to_array(result.responses), y[0], atol=1e-5)


class _FailOnce:
    """Wraps Graph.run: the next call raises `error` (as onnxruntime would), later calls run normally."""

    def __init__(self, graph, error: BaseException, delay_s: float = 0.0) -> None:
        self.graph, self.error, self.delay_s = graph, error, delay_s
        self.original = graph.run
        self.armed = False
        graph.run = self

    def __call__(self, feeds):
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.armed:
            self.armed = False
            raise self.error
        return self.original(feeds)


def test_onnxruntime_failing_for_the_only_stream_inline_is_internal(serving, kit) -> None:
    """The only stream's step runs on the event-loop thread: a failure there ends that stream with INTERNAL,
    frees it, and the next stream (also inline) gets the same numbers as a fresh server."""
    trial = kit.make_trial(seed=22, frames=6)

    async def scenario():
        async with serving() as srv:
            step = _FailOnce(srv.app.plane.registry.graph(f"{kit.MOUSE}-step"), MemoryError("std::bad_alloc"))
            call = predictor_pb2_grpc.PredictorStub(srv.channel).StreamPredict()
            await call.write(kit.open_request())
            await call.read()
            step.armed = True
            await call.write(kit.frame_request(trial, 0))
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await call.read()
            _, after = await kit.stream_trial(srv.channel, trial)
            left = len(srv.app.plane.streams)
        async with serving() as srv:
            _, fresh = await kit.stream_trial(srv.channel, trial)
        return error.value, after, fresh, left

    error, after, fresh, left = asyncio.run(scenario())
    assert error.code() == grpc.StatusCode.INTERNAL and "MemoryError" in error.details()
    assert [r.queue_seconds for r in after] == [0.0] * 6  # it ran inline
    assert [r.responses.data for r in after] == [r.responses.data for r in fresh]
    assert left == 0


def test_onnxruntime_failing_in_one_call_is_internal_and_the_rest_carries_on(serving, kit) -> None:
    trial = kit.make_trial(seed=21, frames=8)
    clip_request = predictor_pb2.PredictClipRequest(
        model=kit.MOUSE,
        video=kit.tensor(trial["video"]),
        behavior=kit.tensor(trial["behavior"]),
        pupil_center=kit.tensor(trial["pupil_center"]),
    )

    async def scenario():
        async with serving(batching=False) as srv:
            registry = srv.app.plane.registry
            clip = _FailOnce(
                registry.graph(f"{kit.MOUSE}-clip"), ort_state.EPFail("CUDA failure 2: out of memory")
            )
            step = _FailOnce(registry.graph(f"{kit.MOUSE}-step"), MemoryError("std::bad_alloc"))
            stub = predictor_pb2_grpc.PredictorStub(srv.channel)
            clip.armed = True
            with pytest.raises(grpc.aio.AioRpcError) as clip_error:
                await stub.PredictClip(clip_request)
            clip_ok = await stub.PredictClip(clip_request)
            survivor, victim = stub.StreamPredict(), stub.StreamPredict()
            for call in (survivor, victim):
                await call.write(kit.open_request())
                await call.read()
            survived = []
            for t in range(3):
                await survivor.write(kit.frame_request(trial, t))
                survived.append((await survivor.read()).result)
            step.armed = True
            await victim.write(kit.frame_request(trial, 0))
            with pytest.raises(grpc.aio.AioRpcError) as step_error:
                await victim.read()
            for t in range(3, 8):
                await survivor.write(kit.frame_request(trial, t))
                survived.append((await survivor.read()).result)
            await survivor.done_writing()
            assert await survivor.code() == grpc.StatusCode.OK
            _, reference = await kit.stream_trial(srv.channel, trial)
            return (
                clip_error.value,
                clip_ok,
                step_error.value,
                survived,
                reference,
                len(srv.app.plane.streams),
            )

    clip_error, clip_ok, step_error, survived, reference, left = asyncio.run(scenario())
    assert clip_error.code() == grpc.StatusCode.INTERNAL and "EPFail" in clip_error.details()
    assert clip_ok.responses.shape == [8 - kit.RECEPTIVE_FIELD + 1, kit.N_NEURONS]
    assert step_error.code() == grpc.StatusCode.INTERNAL and "MemoryError" in step_error.details()
    assert [r.sequence for r in survived] == list(range(8))
    for got, want in zip(survived, reference, strict=True):
        assert got.responses.data == want.responses.data  # the failure touched no other stream's state
    assert left == 0


def test_deadlines_exceeded_free_everything(serving, kit) -> None:
    trial = kit.make_trial(seed=22, frames=8)
    clip_request = predictor_pb2.PredictClipRequest(
        model=kit.MOUSE,
        video=kit.tensor(trial["video"]),
        behavior=kit.tensor(trial["behavior"]),
        pupil_center=kit.tensor(trial["pupil_center"]),
    )

    async def scenario():
        async with serving() as srv:
            stub = predictor_pb2_grpc.PredictorStub(srv.channel)
            registry, streams = srv.app.plane.registry, srv.app.plane.streams
            codes = []
            # 1. a clip call slower than its deadline
            slow = _FailOnce(registry.graph(f"{kit.MOUSE}-clip"), RuntimeError("unused"), delay_s=0.5)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.PredictClip(clip_request, timeout=0.1)
            codes.append(info.value.code())
            slow.delay_s = 0.0
            # 2. a stream whose deadline passes while it waits for the client's next frame
            idle = stub.StreamPredict(timeout=0.3)
            await idle.write(kit.open_request())
            await idle.read()
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await idle.read()
            codes.append(info.value.code())
            # 3. a stream whose deadline passes while its frame is being computed
            slow_step = _FailOnce(registry.graph(f"{kit.MOUSE}-step"), RuntimeError("unused"), delay_s=0.4)
            busy = stub.StreamPredict(timeout=0.2)
            await busy.write(kit.open_request())
            await busy.read()
            await busy.write(kit.frame_request(trial, 0))
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await busy.read()
            codes.append(info.value.code())
            slow_step.delay_s = 0.0
            for _ in range(200):
                if len(streams) == 0:
                    break
                await asyncio.sleep(0.01)
            left = len(streams)
            gauge = srv.app.metrics.active_streams.labels(kit.MOUSE)._value.get()
            ok = await stub.PredictClip(clip_request, timeout=10)
            _, frames = await kit.stream_trial(srv.channel, trial)
            return codes, left, gauge, ok, frames

    codes, left, gauge, ok, frames = asyncio.run(scenario())
    assert codes == [grpc.StatusCode.DEADLINE_EXCEEDED] * 3
    assert left == 0 and gauge == 0
    assert ok.responses.shape and len(frames) == 8


CLIENT = textwrap.dedent(
    """
    import sys, time
    import grpc, numpy as np
    from protos.sensorium.v1 import predictor_pb2, predictor_pb2_grpc, tensor_pb2

    def t(a):
        return tensor_pb2.Tensor(dtype=tensor_pb2.DTYPE_FLOAT32, shape=a.shape, data=a.astype("<f4").tobytes())

    def requests():
        yield predictor_pb2.StreamPredictRequest(open=predictor_pb2.StreamOpen(model=sys.argv[2]))
        i = 0
        while True:
            yield predictor_pb2.StreamPredictRequest(frame=predictor_pb2.Frame(
                sequence=i, video=t(np.full((36, 64), 100.0)), behavior=t(np.ones(2)), pupil_center=t(np.ones(2))))
            i += 1
            time.sleep(0.01)

    channel = grpc.insecure_channel(sys.argv[1])
    for n, _ in enumerate(predictor_pb2_grpc.PredictorStub(channel).StreamPredict(requests())):
        if n == 5:
            print("streaming", flush=True)
    """
)


def test_client_process_killed_mid_stream_frees_its_session(threaded_server, kit) -> None:
    server = threaded_server()
    proc = subprocess.Popen(
        [sys.executable, "-c", CLIENT, server.target, kit.MOUSE], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "streaming"
        assert server.open_streams() == 1
        proc.send_signal(signal.SIGKILL)  # no goodbye: the kernel closes its socket
        proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while server.open_streams() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.open_streams() == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with sync_channel(server.target) as channel:  # and the server serves on
        models = predictor_pb2_grpc.PredictorStub(channel).ListModels(predictor_pb2.ListModelsRequest())
    assert {m.name for m in models.models} == {kit.MOUSE, kit.OTHER_MOUSE}
