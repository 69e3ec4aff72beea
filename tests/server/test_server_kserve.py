"""KServe v2 / Open Inference Protocol: tritonclient.grpc unchanged (in a subprocess), and our own stubs."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest

from protos.inference import grpc_predict_v2_pb2 as pb2
from protos.inference import grpc_predict_v2_pb2_grpc as pb2_grpc
from protos.sensorium.v1 import predictor_pb2, predictor_pb2_grpc

SCRIPT = Path(__file__).with_name("triton_client_check.py")


async def _predict_clip(channel, kit, trial, version: int = 0) -> np.ndarray:
    response = await predictor_pb2_grpc.PredictorStub(channel).PredictClip(
        predictor_pb2.PredictClipRequest(
            model=kit.MOUSE,
            version=version,
            video=kit.tensor(trial["video"]),
            behavior=kit.tensor(trial["behavior"]),
            pupil_center=kit.tensor(trial["pupil_center"]),
        )
    )
    return kit.to_array(response.responses)


def test_tritonclient_live_ready_metadata_infer(serving, kit, tmp_path: Path) -> None:
    trial = kit.make_trial(seed=21, frames=12)
    batch = {k: np.stack([v, v[::-1].copy()]) for k, v in trial.items()}  # [2, T, ...]
    np.savez(tmp_path / "inputs.npz", **batch)
    model = f"{kit.MOUSE}-clip"

    async def scenario():
        async with serving() as srv:
            expected = [
                await _predict_clip(srv.channel, kit, {k: v[i] for k, v in batch.items()}) for i in range(2)
            ]
            proc = await asyncio.create_subprocess_exec(
                sys.executable, str(SCRIPT), srv.target, model, str(tmp_path / "inputs.npz"), str(tmp_path / "out.npz"),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=60)
            assert proc.returncode == 0, stderr.decode()
            return np.stack(expected), json.loads(stdout)

    expected, summary = asyncio.run(scenario())
    assert summary["live"] is True and summary["ready"] is True and summary["model_ready"] is True
    assert summary["server"]["name"] == "sensorium-serve"
    meta = summary["metadata"]
    assert meta["name"] == model and meta["versions"] == ["1", "2"] and meta["platform"] == "onnxruntime_onnx"
    assert {i["name"]: (i["datatype"], [int(d) for d in i["shape"]]) for i in meta["inputs"]} == {
        "video": ("FP32", [-1, -1, 36, 64]),
        "behavior": ("FP32", [-1, -1, 2]),
        "pupil_center": ("FP32", [-1, -1, 2]),
    }
    assert summary["response"]["model_version"] == "2" and summary["response"]["id"] == "r-1"
    got = np.load(tmp_path / "out.npz")["responses"]
    assert got.shape == (2, 12 - kit.RECEPTIVE_FIELD + 1, kit.N_NEURONS)
    np.testing.assert_array_equal(got, expected)
    assert "StatusCode.NOT_FOUND" in summary["unknown_error"] and "no-such-model" in summary["unknown_error"]


def test_model_infer_raw_and_typed_contents_and_errors(serving, kit) -> None:
    trial = kit.make_trial(seed=22, frames=9)

    def request(raw: bool, version: str = "1") -> pb2.ModelInferRequest:
        req = pb2.ModelInferRequest(
            model_name=kit.MOUSE, model_version=version
        )  # a mouse name means its clip graph
        for name in ("video", "behavior", "pupil_center"):
            array = trial[name][None]
            tensor = req.inputs.add(name=name, datatype="FP32", shape=array.shape)
            if raw:
                req.raw_input_contents.append(array.tobytes())
            else:
                tensor.contents.fp32_contents.extend(array.ravel().tolist())
        return req

    async def scenario():
        async with serving() as srv:
            stub = pb2_grpc.GRPCInferenceServiceStub(srv.channel)
            raw = await stub.ModelInfer(request(raw=True))
            typed = await stub.ModelInfer(request(raw=False))
            expected = await _predict_clip(srv.channel, kit, trial, version=1)
            bad = request(raw=True)
            bad.raw_input_contents[1] = bad.raw_input_contents[1][:-1]
            missing = request(raw=True)
            del missing.inputs[2]
            del missing.raw_input_contents[2]
            errors = []
            for req in (bad, missing, request(raw=True, version="x"), request(raw=True, version="5")):
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await stub.ModelInfer(req)
                errors.append(info.value)
            ready = await stub.ModelReady(pb2.ModelReadyRequest(name=f"{kit.MOUSE}-step", version="2"))
            return raw, typed, expected, errors, ready

    raw, typed, expected, errors, ready = asyncio.run(scenario())
    assert raw.model_name == f"{kit.MOUSE}-clip" and raw.model_version == "1"
    for response in (raw, typed):
        out = response.outputs[0]
        assert (out.name, out.datatype, list(out.shape)) == ("responses", "FP32", [1, *expected.shape])
        np.testing.assert_array_equal(
            np.frombuffer(response.raw_output_contents[0], "<f4").reshape(expected.shape), expected
        )
    assert [e.code() for e in errors] == [grpc.StatusCode.INVALID_ARGUMENT] * 3 + [grpc.StatusCode.NOT_FOUND]
    assert "inputs[1] (behavior).data" in errors[0].details()
    assert "missing ['pupil_center']" in errors[1].details()
    assert "version" in errors[2].details() and "version 5" in errors[3].details()
    assert ready.ready
