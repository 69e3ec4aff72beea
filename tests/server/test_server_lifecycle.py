"""The `sensorium-serve serve` process: settings from flags and environment, SIGTERM drains and exits 0."""

from __future__ import annotations

import argparse
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from protos.sensorium.v1 import predictor_pb2_grpc
from server.config import Settings, add_arguments


def test_settings_flags_override_env_override_defaults(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        ["--repo", str(tmp_path), "--no-batching", "--truth", str(tmp_path / "truth"), "--port", "1"]
    )
    env = {"SENSORIUM_SERVE_PORT": "2", "SENSORIUM_SERVE_MAX_STREAMS": "3", "SENSORIUM_SERVE_BATCHING": "yes"}
    settings = Settings.from_args(args, env)
    assert (settings.port, settings.max_streams, settings.batching) == (1, 3, "off")
    assert settings.truth_dir == tmp_path / "truth" and settings.repo == tmp_path
    assert settings.http_port == Settings().http_port
    with pytest.raises(ValueError, match="SENSORIUM_SERVE_BATCHING"):
        Settings.from_env({"SENSORIUM_SERVE_BATCHING": "maybe"})
    with pytest.raises(ValueError, match="max_batch_wait_ms"):
        Settings(max_batch_wait_ms=50)


def test_batching_auto_is_on_only_for_graphs_on_cuda() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    cuda, cpu = ["CUDAExecutionProvider", "CPUExecutionProvider"], ["CPUExecutionProvider"]
    assert Settings().batching == "auto"
    assert Settings().batches_on(cuda) and not Settings().batches_on(cpu)
    for argv, mode in ((["--batching"], "on"), (["--batching", "auto"], "auto"), (["--no-batching"], "off")):
        settings = Settings.from_args(parser.parse_args(argv), env={})
        assert settings.batching == mode
    assert Settings(batching=True).batches_on(cpu) and not Settings(batching=False).batches_on(cuda)
    assert Settings.from_env({"SENSORIUM_SERVE_BATCHING": "off"}).batching == "off"
    with pytest.raises(ValueError, match="batching must be one of auto, on, off"):
        Settings(batching="sometimes")
    with pytest.raises(SystemExit):
        parser.parse_args(["--batching", "sometimes"])


def _wait_serving(target: str, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else "server exited"
            try:
                if (
                    stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status
                    == health_pb2.HealthCheckResponse.SERVING
                ):
                    return
            except grpc.RpcError:
                time.sleep(0.1)
    raise AssertionError("server did not become SERVING")


def test_sigterm_drains_streams_and_exits_zero(model_repo: Path, kit) -> None:
    port = kit.free_port()
    target = f"127.0.0.1:{port}"
    env = {**os.environ, "SENSORIUM_SERVE_HTTP_PORT": "-1", "SENSORIUM_SERVE_PROVIDERS": "cpu"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "server.cli",
            "serve",
            "--repo",
            str(model_repo),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_serving(target, proc)
        trial = kit.make_trial(seed=41, frames=4)
        outbox: queue.Queue = queue.Queue()
        outbox.put(kit.open_request())
        for t in range(3):
            outbox.put(kit.frame_request(trial, t))
        stop_sending = threading.Event()

        def requests():
            while not stop_sending.is_set():
                try:
                    yield outbox.get(timeout=0.1)
                except queue.Empty:
                    continue

        with grpc.insecure_channel(target) as channel:
            responses = predictor_pb2_grpc.PredictorStub(channel).StreamPredict(requests())
            got = [next(responses) for _ in range(4)]  # opened + 3 frames
            proc.send_signal(signal.SIGTERM)
            with pytest.raises(grpc.RpcError) as info:
                next(responses)
            stop_sending.set()
        code = proc.wait(timeout=20)
        stderr = proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert got[0].opened.version == 2 and [g.result.sequence for g in got[1:]] == [0, 1, 2]
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE and "draining" in info.value.details()
    assert code == 0, stderr
    assert "draining" in stderr and "stopped" in stderr
