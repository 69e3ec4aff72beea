"""`serve --watch`: a model exported into the repository while a rig streams is picked up by the running server,
and the rig's stream on another model sees no error and no deadline miss while it loads."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from client.rig import run_rig
from client.trials import TrialInputs
from protos.inference import grpc_predict_v2_pb2 as pb2
from protos.inference import grpc_predict_v2_pb2_grpc as pb2_grpc
from server.config import Settings

NEW_MOUSE = "dynamic29999-1-1-Video-" + "c" * 32
NEW_NEURONS = 8000  # a real-size readout: each graph carries ~74 MB of weights, so loading takes real time
RIG_FRAMES = 90  # 3 s at 30 Hz


def test_watch_loads_a_new_model_while_a_rig_streams_another_without_a_miss(
    serving, kit, model_repo: Path, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(model_repo, repo)
    (repo / f".{NEW_MOUSE}-step" / "1").mkdir(parents=True)  # hidden (export stages there): never a model
    # the new model, written beforehand and moved in whole (as `export` moves a version into place)
    staging = tmp_path / "staging"
    kit.write_model(staging, NEW_MOUSE, 1, kit.make_params(5, n=NEW_NEURONS))
    raw = kit.make_trial(seed=9, frames=RIG_FRAMES)
    trial = TrialInputs(kit.MOUSE, 0, raw["video"], raw["behavior"], raw["pupil_center"])

    async def ready(stub: pb2_grpc.GRPCInferenceServiceStub) -> bool:
        try:
            reply = await stub.ModelReady(pb2.ModelReadyRequest(name=f"{NEW_MOUSE}-step"))
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.NOT_FOUND
            return False
        return reply.ready

    async def scenario():
        async with serving(repo=repo, watch_s=0.1) as srv:
            kserve = pb2_grpc.GRPCInferenceServiceStub(srv.channel)
            rig = asyncio.create_task(run_rig(srv.target, [trial], 30.0))
            await asyncio.sleep(0.5)
            assert not await ready(kserve)
            for folder in staging.iterdir():
                os.rename(folder, repo / folder.name)
            moved = time.perf_counter()
            while not await ready(kserve):
                assert time.perf_counter() - moved < 10, "the watching server did not load the new model"
                await asyncio.sleep(0.02)
            picked_up_s = time.perf_counter() - moved
            names = {entry.name for entry in srv.app.plane.registry.entries()}
            assert not any(name.startswith(".") for name in names), names
            rig_running_at_pickup = not rig.done()
            report = await rig
            _, results = await kit.stream_trial(srv.channel, kit.make_trial(3, 8), model=NEW_MOUSE)
            return picked_up_s, rig_running_at_pickup, report, results

    picked_up_s, overlapped, report, results = asyncio.run(scenario())
    assert overlapped, "the rig had finished before the model was loaded: the test proved nothing"
    summary = report.to_dict()
    assert summary["frames"] == RIG_FRAMES  # every frame answered: no stream error
    assert summary["deadline_misses"] == 0, report.table()
    assert picked_up_s < 5
    assert len(results) == 8 and all(
        len(np.frombuffer(r.responses.data, "<f4")) == NEW_NEURONS for r in results
    )


def test_watch_setting_from_flag_and_environment() -> None:
    import argparse

    from server.config import DEFAULT_WATCH_S, add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert Settings.from_args(parser.parse_args(["--watch"]), env={}).watch_s == DEFAULT_WATCH_S
    assert Settings.from_args(parser.parse_args(["--watch", "0.5"]), env={}).watch_s == 0.5
    assert Settings.from_args(parser.parse_args([]), env={"SENSORIUM_SERVE_WATCH_S": "3"}).watch_s == 3.0
    assert Settings.from_args(parser.parse_args([]), env={}).watch_s == 0.0
    with pytest.raises(ValueError, match="watch_s"):
        Settings(watch_s=-1)
