"""SIGKILL of the server during a submission: mid-stream, and inside the database transaction (INSERTs flushed,
not committed). After a restart on the same SQLite database: no partial submission, the leaderboard unchanged,
the database intact, and the interrupted submission can simply be sent again."""

from __future__ import annotations

import os
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from scoring_support import ServerThread, truth_submission

from client.scoring import ScoringClient
from server.config import Settings
from server.scoring.ground_truth import FolderGroundTruth

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


class ServerProcess:
    """`sensorium-serve serve` (through pausing_server.py) as a subprocess; stderr lines go to a queue."""

    def __init__(self, repo: Path, dataset: Path, db_url: str, port: int, pause: bool) -> None:
        env = {**os.environ, "RELIABILITY_PAUSE_IN_TRANSACTION": "1" if pause else "0"}
        command = [sys.executable, str(HERE / "pausing_server.py"), "serve", "--repo", str(repo),
                   "--truth", str(dataset / "truth"), "--db", db_url, "--host", "127.0.0.1",
                   "--port", str(port), "--http-port", "-1", "--providers", "cpu", "--submissions-per-day", "0"]  # fmt: skip
        self.proc = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
        self.target = f"127.0.0.1:{port}"
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()
        self._wait_serving()

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)
            self.lines.put(line)

    def _wait_serving(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(self.target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                assert self.proc.poll() is None, "".join(self.log)
                try:
                    stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    return
                except grpc.RpcError:
                    time.sleep(0.1)
        raise AssertionError("server did not start:\n" + "".join(self.log))

    def wait_for(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if text in self.lines.get(timeout=0.1):
                    return
            except queue.Empty:
                assert self.proc.poll() is None, "".join(self.log)
        raise AssertionError(f"{text!r} never logged:\n" + "".join(self.log))

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _tables(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as con:
        names = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        counts = {n: con.execute(f'SELECT COUNT(*) FROM "{n}"').fetchone()[0] for n in names}
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    return counts


def _board(target: str) -> list[tuple]:
    with ScoringClient(target, timeout_s=30) as client:
        rows = client.leaderboard("main", "live").rows
    return [(r.rank, r.record.submission_id, r.record.scores.ranking_score) for r in rows]


def _submit_in_thread(target: str, trials: Iterator) -> tuple[threading.Thread, list]:
    outcome: list = []

    def run() -> None:
        with ScoringClient(target, timeout_s=60) as client:
            try:
                outcome.append(client.submit(trials, "main", "live", "killed-team", "interrupted"))
            except Exception as exc:  # the server dies under it
                outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def test_sigkill_during_submission_leaves_no_partial_submission(
    model_repo: Path, scoring_dataset: Path, tmp_path: Path, kit
) -> None:
    db = tmp_path / "scores.sqlite"
    db_url = f"sqlite:///{db}"
    truth = FolderGroundTruth(scoring_dataset / "truth")
    trials = truth_submission(truth, "main", "live")
    # A recorded submission first (in-process server), so there is a leaderboard to keep.
    baseline = ServerThread(Settings(truth_dir=scoring_dataset / "truth", db_url=db_url), truth=truth)
    with ScoringClient(baseline.target, timeout_s=60) as client:
        kept = client.submit(trials, "main", "live", "team-kept", "baseline")
    baseline.stop()
    before = _tables(db)
    assert before["submissions"] == 1

    # 1. killed while the trials stream in
    server = ServerProcess(model_repo, scoring_dataset, db_url, kit.free_port(), pause=False)
    try:
        board_before = _board(server.target)
        half = threading.Event()

        def half_then_wait() -> Iterator:
            yield from trials[: len(trials) // 2]
            half.set()
            time.sleep(60)  # the rest never comes
            yield from trials[len(trials) // 2 :]

        thread, outcome = _submit_in_thread(server.target, half_then_wait())
        assert half.wait(30)
        time.sleep(0.3)  # the server has the first half
        server.kill()
        thread.join(timeout=30)
    finally:
        server.stop()
    assert isinstance(outcome[0], Exception)
    assert _tables(db) == before

    # 2. killed inside the database transaction: INSERTs flushed, COMMIT not reached
    server = ServerProcess(model_repo, scoring_dataset, db_url, kit.free_port(), pause=True)
    try:
        thread, outcome = _submit_in_thread(server.target, iter(trials))
        server.wait_for("RECORDING-IN-TRANSACTION")
        server.kill()
        thread.join(timeout=30)
    finally:
        server.stop()
    assert isinstance(outcome[0], Exception)
    assert _tables(db) == before

    # 3. restarted: the leaderboard is unchanged, the kept submission readable, a resubmission is recorded
    server = ServerProcess(model_repo, scoring_dataset, db_url, kit.free_port(), pause=False)
    try:
        assert _board(server.target) == board_before
        with ScoringClient(server.target, timeout_s=60) as client:
            assert client.get_submission(kept.submission_id).submission_id == kept.submission_id
            again = client.submit(trials, "main", "live", "killed-team", "resent")
        assert len(_board(server.target)) == 2
    finally:
        server.stop()
    after = _tables(db)
    assert after["submissions"] == 2 and again.submission_id != kept.submission_id
    assert all(after[t] == 2 * before[t] for t in before if before[t])  # one more complete set of rows


if __name__ == "__main__":
    sys.exit(pytest.main([__file__]))
