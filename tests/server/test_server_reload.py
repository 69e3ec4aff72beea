"""Load / unload / reload without a restart: live streams finish on the version they opened; a corrupt model is
not ready (with the reason) and the others keep serving."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import pytest

from models import contract
from protos.inference import grpc_predict_v2_pb2 as pb2
from protos.inference import grpc_predict_v2_pb2_grpc as pb2_grpc
from protos.sensorium.v1 import predictor_pb2, predictor_pb2_grpc


def _step_reference(model_file: Path, trial: dict[str, np.ndarray], n: int, r: int) -> np.ndarray:
    session = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    s0, s1 = np.zeros((1, r - 1, n), np.float32), np.zeros((1, 1), np.float32)
    out = []
    for t in range(len(trial["video"])):
        feeds = {k: v[t : t + 1] for k, v in trial.items()}
        y, s0, s1 = session.run(None, {**feeds, "state_in_0": s0, "state_in_1": s1})
        out.append(y[0])
    return np.stack(out)


def test_reload_keeps_live_streams_on_their_version(serving, kit, model_repo: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(model_repo, repo)
    step_dir = repo / f"{kit.MOUSE}-step"
    old_v2 = tmp_path / "old-v2.onnx"
    shutil.copy(step_dir / "2" / contract.MODEL_FILENAME, old_v2)
    trial = kit.make_trial(seed=31, frames=10)

    async def scenario():
        async with serving(repo=repo) as srv:
            stub = predictor_pb2_grpc.PredictorStub(srv.channel)
            admin = predictor_pb2_grpc.ModelRepositoryStub(srv.channel)
            live = stub.StreamPredict()
            await live.write(kit.open_request())
            opened = (await live.read()).opened
            first = []
            for t in range(5):
                await live.write(kit.frame_request(trial, t))
                first.append((await live.read()).result)
            # New weights for version 2 on disk and a new version 3; then re-scan.
            kit.write_model(repo, kit.MOUSE, 2, kit.make_params(77))
            kit.write_model(repo, kit.MOUSE, 3, kit.make_params(78))
            rescan = await admin.Rescan(predictor_pb2.RescanRequest())
            rest = []
            for t in range(5, 10):
                await live.write(kit.frame_request(trial, t))
                rest.append((await live.read()).result)
            await live.done_writing()
            assert await live.code() == grpc.StatusCode.OK
            opened_v3, fresh_v3 = await kit.stream_trial(srv.channel, trial)
            _, fresh_v2 = await kit.stream_trial(srv.channel, trial, version=2)
            unloaded = await admin.Unload(predictor_pb2.UnloadRequest(name=f"{kit.MOUSE}-step", version=3))
            opened_after_unload, _ = await kit.stream_trial(srv.channel, trial)
            return opened, first + rest, rescan, opened_v3, fresh_v3, fresh_v2, unloaded, opened_after_unload

    opened, live, rescan, opened_v3, fresh_v3, fresh_v2, unloaded, after_unload = asyncio.run(scenario())
    n, r = kit.N_NEURONS, kit.RECEPTIVE_FIELD
    got_live = np.stack([kit.to_array(x.responses) for x in live])
    assert opened.version == 2
    np.testing.assert_allclose(got_live, _step_reference(old_v2, trial, n, r), atol=1e-5)  # the old weights
    actions = {(c.name, c.version): c.action for c in rescan.changes}
    assert actions[(f"{kit.MOUSE}-step", 2)] == "reloaded" and actions[(f"{kit.MOUSE}-step", 3)] == "loaded"
    assert opened_v3.version == 3
    np.testing.assert_allclose(
        np.stack([kit.to_array(x.responses) for x in fresh_v3]),
        _step_reference(step_dir / "3" / contract.MODEL_FILENAME, trial, n, r),
        atol=1e-5,
    )
    np.testing.assert_allclose(  # a new stream on version 2 gets the new weights
        np.stack([kit.to_array(x.responses) for x in fresh_v2]),
        _step_reference(step_dir / "2" / contract.MODEL_FILENAME, trial, n, r),
        atol=1e-5,
    )
    assert [(c.version, c.action) for c in unloaded.changes] == [(3, "unloaded")]
    assert after_unload.version == 2


def test_corrupt_model_is_not_ready_and_others_keep_serving(
    serving, kit, model_repo: Path, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(model_repo, repo)
    broken = repo / f"{kit.OTHER_MOUSE}-step" / "1" / contract.MODEL_FILENAME
    broken.write_bytes(b"this is not an onnx file")

    async def scenario():
        async with serving(repo=repo) as srv:
            stub = predictor_pb2_grpc.PredictorStub(srv.channel)
            info = await stub.GetModel(predictor_pb2.GetModelRequest(model=kit.OTHER_MOUSE))
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await kit.stream_trial(srv.channel, kit.make_trial(1, 4), model=kit.OTHER_MOUSE)
            kserve = pb2_grpc.GRPCInferenceServiceStub(srv.channel)
            ready = await kserve.ModelReady(pb2.ModelReadyRequest(name=f"{kit.OTHER_MOUSE}-step"))
            clip_ready = await kserve.ModelReady(pb2.ModelReadyRequest(name=f"{kit.OTHER_MOUSE}-clip"))
            _, ok = await kit.stream_trial(srv.channel, kit.make_trial(2, 6))  # other models still serve
            return info, refused.value, ready, clip_ready, ok

    info, refused, ready, clip_ready, ok = asyncio.run(scenario())
    step = info.versions[0].step
    assert not step.ready and "model.onnx" in step.reason and info.versions[0].clip.ready
    assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION and "not ready" in refused.details()
    assert not ready.ready and clip_ready.ready
    assert len(ok) == 6
