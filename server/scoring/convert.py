"""protobuf <-> domain types of the scoring service, at the edge (the servicer and the client use them)."""

from __future__ import annotations

from datetime import datetime

from protos.sensorium.v1 import scoring_pb2
from server.scoring.results import (
    METRICS,
    LeaderboardRow,
    MetricScores,
    SubmissionRecord,
    SubmissionScores,
)


def metric_to_proto(scores: MetricScores) -> scoring_pb2.MetricScores:
    return scoring_pb2.MetricScores(
        overall=scores.overall, per_mouse=scores.per_mouse, per_family=scores.per_family
    )


def metric_from_proto(message: scoring_pb2.MetricScores) -> MetricScores:
    return MetricScores(
        overall=message.overall,
        per_mouse=dict(sorted(message.per_mouse.items())),
        per_family=dict(sorted(message.per_family.items())),
    )


def submission_to_proto(record: SubmissionRecord) -> scoring_pb2.Submission:
    s = record.scores
    return scoring_pb2.Submission(
        submission_id=record.submission_id,
        track=s.track,
        tier=s.tier,
        submitter=s.submitter,
        label=s.label,
        created_at=record.created_at.isoformat(),
        n_trials=s.n_trials,
        n_neurons=s.n_neurons,
        **{name: metric_to_proto(s.metrics[name]) for name in METRICS},
    )


def submission_from_proto(message: scoring_pb2.Submission) -> SubmissionRecord:
    scores = SubmissionScores(
        track=message.track,
        tier=message.tier,
        submitter=message.submitter,
        label=message.label,
        n_trials=message.n_trials,
        n_neurons=message.n_neurons,
        metrics={name: metric_from_proto(getattr(message, name)) for name in METRICS},
    )
    return SubmissionRecord(message.submission_id, datetime.fromisoformat(message.created_at), scores)


def leaderboard_to_proto(
    track: str, tier: str, rule: str, rows: list[LeaderboardRow]
) -> scoring_pb2.Leaderboard:
    return scoring_pb2.Leaderboard(
        track=track,
        tier=tier,
        rule=rule,
        entries=[
            scoring_pb2.LeaderboardEntry(
                rank=row.rank,
                submission=submission_to_proto(row.record),
                submitter_submissions=row.submitter_submissions,
            )
            for row in rows
        ],
    )


def leaderboard_from_proto(message: scoring_pb2.Leaderboard) -> list[LeaderboardRow]:
    return [
        LeaderboardRow(
            rank=entry.rank,
            record=submission_from_proto(entry.submission),
            submitter_submissions=entry.submitter_submissions,
        )
        for entry in message.entries
    ]
