"""Domain types of the scoring service: what a scored submission is, independent of gRPC and SQL."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

# Metric names, as the CLI's JSON, the proto fields and the database rows spell them.
SINGLE_TRIAL_CORRELATION: Final = "single_trial_correlation"
CORRELATION_TO_AVERAGE: Final = "correlation_to_average"
FEVE: Final = "feve"
METRICS: Final = (SINGLE_TRIAL_CORRELATION, CORRELATION_TO_AVERAGE, FEVE)
RANKING_METRIC: Final = SINGLE_TRIAL_CORRELATION  # the official ranking metric of both tracks

LEADERBOARD_RULE: Final = (
    "one row per submitter: the submitter's best submission on this track and tier by overall single-trial "
    "correlation (ties: the earlier submission); rows ranked by that score, highest first"
)


@dataclass(frozen=True)
class MetricScores:
    """One metric: pooled over all neurons of all mice, per mouse, and per OOD family (bonus track only)."""

    overall: float
    per_mouse: dict[str, float] = field(default_factory=dict)
    per_family: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        """JSON-safe dict (NaN, e.g. FEVE with no reliable neuron, becomes null)."""
        out: dict[str, object] = {
            "overall": _json_float(self.overall),
            "per_mouse": {k: _json_float(v) for k, v in self.per_mouse.items()},
        }
        if self.per_family:
            out["per_family"] = {k: _json_float(v) for k, v in self.per_family.items()}
        return out


def _json_float(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


@dataclass(frozen=True)
class SubmissionScores:
    """What scoring a complete, valid submission produces (before it is recorded)."""

    track: str  # main | bonus
    tier: str  # live | final
    submitter: str
    label: str
    n_trials: int
    n_neurons: int
    metrics: dict[str, MetricScores]  # keyed by METRICS
    # Per-neuron arrays by mouse (server.scoring.neuron_scores.NeuronArrays), stored for the report pages.
    neurons: dict[str, Any] | None = field(default=None, compare=False, repr=False)

    @property
    def ranking_score(self) -> float:
        return self.metrics[RANKING_METRIC].overall


@dataclass(frozen=True)
class SubmissionRecord:
    """A recorded submission: its scores plus the id and time the database gave it."""

    submission_id: str
    created_at: datetime  # timezone-aware, UTC
    scores: SubmissionScores

    def to_json(self) -> dict[str, object]:
        """Exactly the CLI contract's JSON object (DESIGN.md): id, track, tier and the three metrics, each
        {"overall", "per_mouse"} plus "per_family" on the bonus track."""
        s = self.scores
        out: dict[str, object] = {"submission_id": self.submission_id, "track": s.track, "tier": s.tier}
        for name in METRICS:
            out[name] = s.metrics[name].to_json()
        return out

    def to_dict(self) -> dict[str, object]:
        """`to_json` plus who, what and when (the leaderboard's JSON rows)."""
        s = self.scores
        return {
            **self.to_json(),
            "submitter": s.submitter,
            "label": s.label,
            "created_at": self.created_at.isoformat(),
            "n_trials": s.n_trials,
            "n_neurons": s.n_neurons,
        }


@dataclass(frozen=True)
class LeaderboardRow:
    rank: int
    record: SubmissionRecord
    submitter_submissions: int  # submissions this submitter recorded on the same track and tier

    def to_dict(self) -> dict[str, object]:
        return {
            "rank": self.rank,
            "submitter_submissions": self.submitter_submissions,
            **self.record.to_dict(),
        }
