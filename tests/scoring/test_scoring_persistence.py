"""Persistence: leaderboard rule, GetSubmission, daily limit, atomicity (aborted streams, a process killed inside
the transaction, concurrent submissions) on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import numpy as np
import pytest
from scoring_support import Scoring, truth_submission

from client.errors import InvalidArgumentError, NotFoundError, ResourceExhaustedError
from client.submission import TrialPrediction
from server.scoring.db import DailyLimitExceeded, ScoreStore
from server.scoring.ground_truth import FolderGroundTruth
from server.scoring.results import METRICS, MetricScores, SubmissionScores

BACKENDS = ["sqlite", "postgresql"]
EMPTY = {"submissions": 0, "scores": 0, "neuron_scores": 0}


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'scores.sqlite'}"
    return request.getfixturevalue("fresh_postgres")


def degraded(
    truth: FolderGroundTruth, track: str, tier: str, noise: float, seed: int
) -> list[TrialPrediction]:
    rng = np.random.default_rng(seed)
    return [
        TrialPrediction(
            t.mouse,
            t.trial_index,
            (t.prediction + noise * rng.standard_normal(t.prediction.shape)).astype(np.float32),
            t.neuron_ids,
        )
        for t in truth_submission(truth, track, tier, kind="rates")
    ]


def fake_scores(submitter: str, score: float, track: str = "main", tier: str = "live") -> SubmissionScores:
    metric = MetricScores(score, {"mouse": score}, {})
    return SubmissionScores(track, tier, submitter, "", 1, 1, dict.fromkeys(METRICS, metric))


def test_leaderboard_ranks_best_submission_per_submitter(
    scoring_factory, truth: FolderGroundTruth, db_url: str
) -> None:
    scoring: Scoring = scoring_factory(db_url=db_url)
    submit = scoring.client.submit
    alice_bad = submit(degraded(truth, "main", "live", 3.0, 1), "main", "live", "alice", "v1")
    alice_good = submit(degraded(truth, "main", "live", 0.3, 2), "main", "live", "alice", "v2")
    bob = submit(degraded(truth, "main", "live", 1.0, 3), "main", "live", "bob", "baseline")
    carol_other_board = submit(degraded(truth, "main", "final", 0.1, 4), "main", "final", "carol")
    scores = {r.submission_id: r.scores.ranking_score for r in (alice_bad, alice_good, bob)}
    assert scores[alice_good.submission_id] > scores[bob.submission_id] > scores[alice_bad.submission_id]

    board = scoring.client.leaderboard("main", "live")
    assert "best submission" in board.rule
    assert [(r.rank, r.record.scores.submitter, r.submitter_submissions) for r in board.rows] == [
        (1, "alice", 2),
        (2, "bob", 1),
    ]
    assert board.rows[0].record.submission_id == alice_good.submission_id
    assert board.rows[0].record.scores.metrics == alice_good.scores.metrics
    assert [r.record.submission_id for r in scoring.client.leaderboard("main", "final").rows] == [
        carol_other_board.submission_id
    ]
    assert scoring.client.leaderboard("bonus", "live").rows == []
    assert [r.rank for r in scoring.client.leaderboard("main", "live", limit=1).rows] == [1]

    again = scoring.client.get_submission(alice_bad.submission_id)
    assert again.scores == alice_bad.scores
    assert again.created_at == alice_bad.created_at
    with pytest.raises(NotFoundError, match="no submission with id 'nope'"):
        scoring.client.get_submission("nope")
    with pytest.raises(InvalidArgumentError, match="track must be one of"):
        scoring.client.leaderboard("sideways", "live")
    # 3 metrics x (overall + 2 mice) score rows; per-neuron arrays: one row per mouse
    assert scoring.rows() == {"submissions": 4, "scores": 4 * 3 * 3, "neuron_scores": 4 * 2}


def test_daily_limit(scoring_factory, truth: FolderGroundTruth, db_url: str) -> None:
    """Two per day: the third is RESOURCE_EXHAUSTED; rejected (invalid) submissions do not count; others and
    all boards share the count of a submitter."""
    scoring: Scoring = scoring_factory(db_url=db_url, submissions_per_day=2)
    good = truth_submission(truth, "main", "live")
    with pytest.raises(InvalidArgumentError):
        scoring.client.submit(good[:-1], "main", "live", "dave")  # incomplete: refused, not counted
    scoring.client.submit(good, "main", "live", "dave")
    scoring.client.submit(truth_submission(truth, "bonus", "live"), "bonus", "live", "dave")
    before = scoring.rows()
    with pytest.raises(
        ResourceExhaustedError, match=r"'dave' reached the limit of 2 submission\(s\) per day"
    ):
        scoring.client.submit(good, "main", "live", "dave")
    assert scoring.rows() == before
    scoring.client.submit(good, "main", "live", "erin")  # another submitter is not affected
    assert scoring.rows()["submissions"] == 3


def test_daily_limit_resets_at_midnight_utc(tmp_path: Path) -> None:
    store = ScoreStore(f"sqlite:///{tmp_path / 'day.sqlite'}")
    late = datetime(2026, 3, 1, 23, 59, tzinfo=UTC)
    store.record(fake_scores("frank", 0.1), daily_limit=1, now=late)
    with pytest.raises(DailyLimitExceeded):
        store.record(fake_scores("frank", 0.2), daily_limit=1, now=late + timedelta(seconds=30))
    store.record(fake_scores("frank", 0.3), daily_limit=1, now=late + timedelta(minutes=1))
    assert store.submissions_today("frank", now=late + timedelta(minutes=2)) == 1
    store.close()


def test_concurrent_submissions_cannot_exceed_the_limit(db_url: str) -> None:
    """Eight threads record for one submitter at once with a limit of 3: exactly 3 are stored."""
    store = ScoreStore(db_url)
    other = ScoreStore(db_url)  # a second engine, as a second server replica would have
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def submit(i: int) -> None:
        barrier.wait()
        try:
            (store if i % 2 else other).record(fake_scores("grace", i / 10), daily_limit=3)
            outcomes.append("stored")
        except DailyLimitExceeded:
            outcomes.append("refused")

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(outcomes) == ["refused"] * 5 + ["stored"] * 3
    assert store.row_counts()["submissions"] == 3
    store.close()
    other.close()


def test_aborted_stream_leaves_nothing(scoring: Scoring, truth: FolderGroundTruth) -> None:
    """The client dies half-way through its stream: no rows, and the server takes the next submission."""
    trials = truth_submission(truth, "main", "final")

    def dying():
        yield from trials[:5]
        raise ConnectionError("client crashed")

    with pytest.raises(ConnectionError, match="client crashed"):
        scoring.client.submit(dying(), "main", "final", "heidi")
    assert scoring.rows() == EMPTY
    record = scoring.client.submit(trials, "main", "final", "heidi")
    assert scoring.client.get_submission(record.submission_id).scores == record.scores


def test_cancelled_call_leaves_nothing(scoring: Scoring, truth: FolderGroundTruth) -> None:
    """The call is cancelled after the last trial was sent, before the reply: nothing is recorded."""
    from client.scoring import submit_requests
    from protos.sensorium.v1 import scoring_pb2_grpc

    sent = threading.Event()
    trials = truth_submission(truth, "main", "final")

    def requests():
        yield from submit_requests(trials[:3], "main", "final", "ivan")
        sent.set()
        threading.Event().wait(2.0)  # hold the stream open; the call is cancelled meanwhile

    stub = scoring_pb2_grpc.ScoringStub(scoring.client._channel)
    future = stub.Submit.future(requests(), timeout=60)
    assert sent.wait(30)
    future.cancel()
    with pytest.raises(grpc.FutureCancelledError):
        future.result()
    assert scoring.rows() == EMPTY
    scoring.client.submit(trials, "main", "final", "ivan")  # the slot was released
    assert scoring.rows()["submissions"] == 1


KILLED_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from sqlalchemy import event
    from sqlalchemy.orm import Session
    from server.scoring.db import ScoreStore
    from server.scoring.results import METRICS, MetricScores, SubmissionScores

    store = ScoreStore(sys.argv[1])
    metric = MetricScores(0.5, {"a": 0.5, "b": 0.4}, {})
    scores = SubmissionScores("main", "live", "judy", "", 1, 1, dict.fromkeys(METRICS, metric))

    @event.listens_for(Session, "before_commit")
    def stall(session):
        session.flush()  # every row of the submission is now written inside the open transaction
        print("in-transaction", flush=True)
        time.sleep(120)

    store.record(scores)
    """
)


def test_process_killed_inside_the_transaction_leaves_nothing(db_url: str, tmp_path: Path) -> None:
    """SIGKILL after all rows were written but before COMMIT: the database holds none of them."""
    script = tmp_path / "killed.py"
    script.write_text(KILLED_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen(
        [sys.executable, str(script), db_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line.strip() == "in-transaction", proc.stderr.read() if proc.stderr else ""
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    store = ScoreStore(db_url)
    assert store.row_counts() == EMPTY
    store.record(fake_scores("judy", 0.5))  # the database is usable (no stale lock) afterwards
    assert store.row_counts() == {"submissions": 1, "scores": 3 * 2, "neuron_scores": 0}
    store.close()


def test_postgres_url_forms(postgres_url: str) -> None:
    """postgresql:// (no driver) is served by psycopg 3; a bare path is a SQLite file."""
    from server.scoring.db import normalise_url

    assert normalise_url(postgres_url).startswith("postgresql+psycopg://")
    assert normalise_url("/tmp/x/scores.sqlite") == "sqlite:////tmp/x/scores.sqlite"
