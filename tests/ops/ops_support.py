"""Helpers of the operations tests (conftest.py puts tests/ops on sys.path): real `sensorium-serve serve`
processes on free loopback ports, the server tests' tiny ONNX models (tests/server/conftest.py), frames and
/metrics reading. External programs (Prometheus, promtool, Chromium) come from scripts/ensure_prometheus.sh and
scripts/ensure_chromium.sh, which `make test` runs first."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.append(str(ROOT / "tests"))  # area_modules; appended: tests/<area> folders must not shadow packages
from area_modules import load_module  # noqa: E402

SENSORIUM_SERVE = str(Path(sys.executable).with_name("sensorium-serve"))


server_models = load_module("ops_server_models", ROOT / "tests" / "server" / "conftest.py")
MOUSE: str = server_models.MOUSE


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def need(program: str, script: str) -> str:
    """Path of an external program; fails (not skips) with the command that installs it."""
    path = shutil.which(program)
    if path is None:
        pytest.fail(f"{program} is not installed: run scripts/{script} (make test does)")
    return path


@dataclass
class ServerProcess:
    """A `sensorium-serve serve` subprocess; `target` is its gRPC address."""

    proc: subprocess.Popen
    port: int
    http_port: int
    web_port: int
    log_path: Path
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def metrics_text(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/metrics", timeout=5) as r:
            return r.read().decode()

    def sample(self, name: str, **labels: str) -> float:
        """Sum of the samples of `name` whose labels include `labels` (0 when none)."""
        from prometheus_client.parser import text_string_to_metric_families

        total = 0.0
        for family in text_string_to_metric_families(self.metrics_text()):
            for s in family.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    total += s.value
        return total

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


def launch(repo: Path, workdir: Path, *flags: str, web: bool = False, name: str = "server") -> ServerProcess:
    """Start `sensorium-serve serve` on `repo` (gRPC, metrics [and web] on free ports; CPU; 2 s drain grace)."""
    port, http_port = free_port(), free_port()
    web_port = free_port() if web else -1
    log_path = workdir / f"{name}.log"
    cmd = [
        SENSORIUM_SERVE, "serve", "--repo", str(repo), "--host", "127.0.0.1",
        "--port", str(port), "--http-port", str(http_port), "--web-port", str(web_port),
        "--providers", "cpu", "--intra-op-threads", "1", "--shutdown-grace-s", "2", *flags,
    ]  # fmt: skip
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    return ServerProcess(proc, port, http_port, web_port, log_path)


def wait_serving(target: str, proc: subprocess.Popen, log_path: Path, timeout: float = 60.0) -> None:
    import grpc

    from server.ops_cli import health_status

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            if health_status(target, timeout=1.0) == "SERVING":
                return
        except grpc.RpcError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"server not SERVING after {timeout} s:\n{log_path.read_text()[-3000:]}")


def frame_inputs(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One raw-unit frame for the test model: video [H, W] uint8, behaviour [2], pupil centre [2]."""
    trial = server_models.make_trial(seed, frames=1)
    return trial["video"][0].astype(np.uint8), trial["behavior"][0], trial["pupil_center"][0]


def stream_frames(target: str, frames: int, model: str = MOUSE, seed: int = 0) -> list[float]:
    """Open one stream on `target`, send `frames` frames (one in flight), close; returns server seconds."""
    from client.predictor import PredictorClient

    video, behavior, pupil = frame_inputs(seed)
    with PredictorClient(target) as client, client.open_stream(model) as stream:
        return [stream.send(video, behavior, pupil).server_seconds for _ in range(frames)]
