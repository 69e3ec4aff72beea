"""Scale-out the way the Kubernetes manifests do it: two server replicas, gRPC client-side round_robin over a
multi-address target (what a headless Service's DNS name resolves to). New streams spread over both replicas;
when one replica stops (SIGTERM), a stream on the other keeps going, and new streams go to the survivor."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import grpc
import pytest
from ops_support import MOUSE, SENSORIUM_SERVE, ServerProcess, frame_inputs, server_models

from client.errors import PredictorError
from client.predictor import FrameStream, PredictorClient


def frames_by_replica(replicas: list[ServerProcess]) -> list[float]:
    return [r.sample("sensorium_serve_frames_total") for r in replicas]


def replica_of(stream: FrameStream, replicas: list[ServerProcess]) -> int:
    """Send one frame and see whose frame counter moved."""
    before = frames_by_replica(replicas)
    stream.send(*frame_inputs(1))
    deadline = time.monotonic() + 2  # a scrape is a separate HTTP request: give the counter a moment
    while True:
        after = frames_by_replica(replicas)
        moved = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if b == a + 1]
        if moved or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(moved) == 1, (before, after)
    return moved[0]


def test_round_robin_spreads_streams_and_a_stream_survives_the_other_replica(start_server) -> None:
    a, b = start_server(), start_server()
    replicas = [a, b]
    target = f"ipv4:{a.target},{b.target}"
    with PredictorClient(target, round_robin=True) as client:
        client.wait_ready(10)
        streams = [client.open_stream(MOUSE) for _ in range(4)]
        homes = [replica_of(s, replicas) for s in streams]
        # round_robin: consecutive calls take the next ready subchannel -> two streams on each replica.
        assert sorted(homes) == [0, 0, 1, 1], homes
        assert [r.sample("sensorium_serve_active_streams") for r in replicas] == [2, 2]
        # A stream keeps its replica for its whole life (its state lives there).
        for s, home in zip(streams, homes, strict=True):
            for _ in range(3):
                assert replica_of(s, replicas) == home

        # Replica b stops (SIGTERM: drains, exit 0). Streams on a carry on; streams on b end UNAVAILABLE.
        assert b.stop() == 0
        for s, home in zip(streams, homes, strict=True):
            if home == 0:
                for _ in range(5):
                    assert s.send(*frame_inputs(2)).responses.shape == (24,)
            else:
                with pytest.raises(PredictorError) as err:
                    s.send(*frame_inputs(2))
                assert err.value.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED), err.value
        # New streams (a rig reconnecting) land on the surviving replica.
        deadline = time.monotonic() + 10
        while True:
            try:
                with client.open_stream(MOUSE) as fresh:
                    fresh.send(*frame_inputs(3))
                break
            except PredictorError:
                assert time.monotonic() < deadline, "no new stream on the surviving replica"
                time.sleep(0.2)
        for _ in range(3):
            with client.open_stream(MOUSE) as fresh:
                assert fresh.send(*frame_inputs(3)).responses.shape == (24,)
        for s, home in zip(streams, homes, strict=True):
            if home == 0:
                s.close()
    assert a.sample("sensorium_serve_active_streams") == 0
    assert a.proc.poll() is None, "replica a kept serving"


def test_dns_target_with_round_robin(start_server) -> None:
    """`dns:///localhost:PORT` (the form a headless Service name takes) works with round_robin."""
    a = start_server()
    with PredictorClient(f"dns:///localhost:{a.port}", round_robin=True) as client:
        client.wait_ready(10)
        with client.open_stream(MOUSE) as stream:
            for _ in range(3):
                stream.send(*frame_inputs(4))
    assert a.sample("sensorium_serve_frames_total") == 3


def test_rollout_of_a_new_version_with_rescan(start_server, model_repo: Path, tmp_path: Path) -> None:
    """docs/OPERATIONS.md's rollout: add a version folder, `sensorium-serve rescan` every replica; open streams
    finish on the version they opened, new streams (version 0 = newest) get the new one."""
    repo = tmp_path / "repo"
    shutil.copytree(model_repo, repo)
    replicas = [start_server(repo=repo), start_server(repo=repo)]
    clients = [PredictorClient(r.target) for r in replicas]
    try:
        old = [c.open_stream(MOUSE) for c in clients]
        assert [s.info.version for s in old] == [1, 1]
        server_models.write_model(repo, MOUSE, 2, server_models.make_params(2))
        done = subprocess.run(
            [SENSORIUM_SERVE, "rescan", *(r.target for r in replicas)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        for r in replicas:
            assert f"{r.target}: " in done.stdout
        assert (
            done.stdout.count(f"{MOUSE}-step/2 loaded") == 2
            and done.stdout.count(f"{MOUSE}-clip/2 loaded") == 2
        )
        for s in old:  # still on version 1, still answering
            for _ in range(3):
                assert s.send(*frame_inputs(5)).responses.shape == (24,)
            assert s.info.version == 1
        for c in clients:
            with c.open_stream(MOUSE) as fresh:
                assert fresh.info.version == 2
                fresh.send(*frame_inputs(6))
        for s in old:
            s.close()
    finally:
        for c in clients:
            c.close()
