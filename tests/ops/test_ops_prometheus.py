"""A real Prometheus (Debian's package, scripts/ensure_prometheus.sh) scrapes a running server every second while
streams flow; PromQL over its HTTP API gives the p99 frame latency and the share of frames within 1/30 s, equal
to what the server's own exposition says, and every Grafana panel query and recording rule evaluates."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from ops_support import MOUSE, ROOT, ServerProcess, free_port, need, server_models, stream_frames

from client.errors import PredictorError
from client.predictor import PredictorClient

pytestmark = pytest.mark.slow

BUDGET_LE = "0.03333333333333333"


class Prometheus:
    def __init__(self, url: str, proc: subprocess.Popen, log: Path) -> None:
        self.url, self.proc, self.log = url, proc, log

    def query(self, expr: str) -> list[dict]:
        """Instant query; returns the result vector (raises on a PromQL error)."""
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.loads(r.read())
        assert body["status"] == "success", f"{expr}: {body}"
        return body["data"]["result"]

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def wait_value(self, expr: str, timeout: float = 30.0, check=lambda v: True) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            v = self.value(expr)
            if v is not None and check(v):
                return v
            time.sleep(0.25)
        raise AssertionError(
            f"no value for {expr} after {timeout} s; last {self.value(expr)}\n{self.log.read_text()[-2000:]}"
        )


@pytest.fixture
def prometheus_for(tmp_path: Path) -> Iterator:
    """prometheus_for(server) -> Prometheus scraping the server's /metrics every second, with deploy/rules.yml."""
    binary = need("prometheus", "ensure_prometheus.sh")
    procs: list[subprocess.Popen] = []

    def start(server: ServerProcess) -> Prometheus:
        shutil.copy(ROOT / "deploy" / "rules.yml", tmp_path / "rules.yml")
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(tmp_path / "rules.yml")],
            "scrape_configs": [
                {
                    "job_name": "sensorium-serve",
                    "static_configs": [{"targets": [f"127.0.0.1:{server.http_port}"]}],
                }
            ],
        }
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = free_port()
        log = tmp_path / "prometheus.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [
                    binary,
                    f"--config.file={tmp_path / 'prometheus.yml'}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--log.level=warn",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as r:
                    if r.status == 200:
                        return Prometheus(url, proc, log)
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"Prometheus not ready:\n{log.read_text()[-2000:]}")

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """Prometheus's histogram_quantile on cumulative (upper bound, count) pairs, +Inf last."""
    buckets = sorted(buckets)
    total = buckets[-1][1]
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for i, (bound, count) in enumerate(buckets):
        if count >= rank:
            if math.isinf(bound):
                return buckets[i - 1][0]
            if i == 0 and bound <= 0:
                return bound
            return prev_bound + (bound - prev_bound) * (rank - prev_count) / (count - prev_count)
        prev_bound, prev_count = bound, count
    raise AssertionError("unreachable")


def test_prometheus_scrapes_p99_and_budget_share_while_streams_flow(start_server, prometheus_for) -> None:
    server = start_server()
    prom = prometheus_for(server)
    stop = threading.Event()
    sent: list[int] = []

    def rig(seed: int) -> None:
        while not stop.is_set():
            sent.append(len(stream_frames(server.target, 30, seed=seed)))

    rigs = [threading.Thread(target=rig, args=(seed,), daemon=True) for seed in range(2)]
    for t in rigs:
        t.start()
    try:
        # One clip and one refused stream, so the clip-latency and errors panels have data too.
        with PredictorClient(server.target) as client:
            trial = server_models.make_trial(3, frames=12)
            client.predict_clip(MOUSE, trial["video"], trial["behavior"], trial["pupil_center"])
            with pytest.raises(PredictorError, match="no-such-mouse"):
                client.open_stream("no-such-mouse")
        # While frames flow: the dashboard's p99 and within-budget queries over a short rate window.
        p99_rate = prom.wait_value(
            "histogram_quantile(0.99, sum by (le) (rate(sensorium_serve_frame_seconds_bucket[5s])))",
            check=lambda v: math.isfinite(v),
        )
        share_rate = prom.wait_value(
            f'sum(rate(sensorium_serve_frame_seconds_bucket{{le="{BUDGET_LE}"}}[5s])) '
            "/ sum(rate(sensorium_serve_frame_seconds_count[5s]))",
            check=lambda v: math.isfinite(v),
        )
        assert 0 < p99_rate <= 1.0  # inside the finite buckets: a real latency, in seconds
        assert 0 <= share_rate <= 1
        streams = prom.wait_value("sum(sensorium_serve_active_streams)", check=lambda v: v >= 1)
        assert 1 <= streams <= 2
        recorded = prom.wait_value("sensorium_serve:frames_within_budget:ratio_rate1m", check=math.isfinite)
        assert 0 <= recorded <= 1
    finally:
        stop.set()
        for t in rigs:
            t.join(30)

    # Streams stopped: the counters are frozen. After the next scrapes Prometheus holds exactly the exposition.
    frames = sum(sent)
    assert server.sample("sensorium_serve_frames_total") == frames
    prom.wait_value("sum(sensorium_serve_frames_total)", check=lambda v: v == frames)
    text_buckets = [
        (float(le), server.sample("sensorium_serve_frame_seconds_bucket", le=le))
        for le in sorted(
            {
                line.split('le="')[1].split('"')[0]
                for line in server.metrics_text().splitlines()
                if line.startswith("sensorium_serve_frame_seconds_bucket")
            },
            key=float,
        )
    ]
    expected_p99 = histogram_quantile(0.99, text_buckets)
    p99 = prom.value("histogram_quantile(0.99, sum by (le) (sensorium_serve_frame_seconds_bucket))")
    assert p99 == pytest.approx(expected_p99, rel=1e-9)
    within = server.sample("sensorium_serve_frame_seconds_bucket", le=BUDGET_LE)
    share = prom.value(
        f'sum(sensorium_serve_frame_seconds_bucket{{le="{BUDGET_LE}"}}) / sum(sensorium_serve_frame_seconds_count)'
    )
    assert share == pytest.approx(within / frames, rel=1e-12)

    # Every dashboard query evaluates (no PromQL error); the streaming panels have data from the last minute.
    dash = json.loads((ROOT / "deploy/grafana/dashboards/sensorium-serve.json").read_text())
    empty = []
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"].replace("$__rate_interval", "1m").replace("$instance", ".*")
            if (
                not prom.query(expr)
                and "scoring" not in expr
                and "clip" not in expr
                and "eviction" not in expr
            ):
                empty.append(f"{panel['title']}: {expr}")
    assert not empty, "panels without data while streams flowed:\n" + "\n".join(empty)
