"""Client of `sensorium.v1.Scoring` and the `score` / `leaderboard` subcommands (docs/SCORING.md).

`ScoringClient.submit` streams a submission one trial at a time (the header, then one message per trial; memory
holds about one trial), from any iterable of `client.submission.TrialPrediction`, e.g. a `SubmissionReader`
over an official parquet file or the output of `sensorium-serve predict`. Failures raise the
`client.errors.PredictorError` subclass of their gRPC status (INVALID_ARGUMENT names the trial and problem,
RESOURCE_EXHAUSTED: the daily limit).
"""

from __future__ import annotations

import argparse
import getpass
import json
import math
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import grpc
import numpy as np

from client.errors import from_rpc_error
from client.predictor import (
    add_security_arguments,
    auth_metadata,
    open_channel,
    security_from_args,
)
from client.submission import TrialPrediction
from models.benchmark import SCORED_ROUNDS, TEST_ROUNDS, TRACKS, VALIDATION_ROUND
from protos.sensorium.v1 import scoring_pb2, scoring_pb2_grpc, tensor_pb2
from server.scoring.convert import leaderboard_from_proto, submission_from_proto
from server.scoring.results import METRICS, LeaderboardRow, SubmissionRecord

METRIC_TITLES: Final = {
    "single_trial_correlation": "single-trial corr",
    "correlation_to_average": "corr to average",
    "feve": "FEVE",
}


@dataclass(frozen=True)
class Leaderboard:
    track: str
    tier: str
    rule: str
    rows: list[LeaderboardRow]

    def to_dict(self) -> dict[str, Any]:
        return {
            "track": self.track,
            "tier": self.tier,
            "rule": self.rule,
            "entries": [r.to_dict() for r in self.rows],
        }


def submit_requests(
    trials: Iterable[TrialPrediction], track: str, tier: str, submitter: str, label: str = ""
) -> Iterator[scoring_pb2.SubmitRequest]:
    """The request stream of one submission: the header, then one message per trial."""
    yield scoring_pb2.SubmitRequest(
        header=scoring_pb2.SubmissionHeader(track=track, tier=tier, submitter=submitter, label=label)
    )
    for trial in trials:
        request = scoring_pb2.SubmitRequest()
        message = request.trial  # filled in place: each nested copy of a 10 MB payload costs ~1 ms
        message.mouse = trial.mouse
        message.trial_index = int(trial.trial_index)
        message.neuron_ids.extend(np.asarray(trial.neuron_ids, dtype=np.int64).tolist())
        prediction = np.ascontiguousarray(trial.prediction, dtype="<f4")  # the official format is float32
        message.prediction.dtype = tensor_pb2.DTYPE_FLOAT32
        message.prediction.shape.extend(prediction.shape)
        message.prediction.data = prediction.tobytes()
        yield request


class ScoringClient:
    """Blocking client; use as a context manager or call `close()`."""

    def __init__(
        self,
        target: str,
        timeout_s: float | None = None,
        *,
        token: str | None = None,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        """`token` (else $SENSORIUM_SERVE_TOKEN) and TLS `credentials` (else $SENSORIUM_SERVE_TLS_*): see
        `client.predictor.auth_metadata` / `tls_credentials`."""
        self.target = target
        self.timeout_s = timeout_s
        self.metadata = auth_metadata(token)
        self._channel = open_channel(target, credentials)
        self._stub = scoring_pb2_grpc.ScoringStub(self._channel)

    def submit(
        self,
        trials: Iterable[TrialPrediction],
        track: str,
        tier: str,
        submitter: str,
        label: str = "",
    ) -> SubmissionRecord:
        """Stream a whole submission and return its recorded scores. An exception raised while iterating
        `trials` (e.g. a malformed file) cancels the call and is re-raised here as is."""
        failure: list[BaseException] = []

        def requests() -> Iterator[scoring_pb2.SubmitRequest]:
            try:
                yield from submit_requests(trials, track, tier, submitter, label)
            except Exception as exc:  # gRPC would only log it and cancel the call
                failure.append(exc)
                raise

        try:
            reply = self._stub.Submit(requests(), timeout=self.timeout_s, metadata=self.metadata)
        except grpc.RpcError as exc:
            if failure:
                raise failure[0] from None
            raise from_rpc_error(exc, "Submit") from None
        return submission_from_proto(reply)

    def leaderboard(self, track: str, tier: str, limit: int = 0) -> Leaderboard:
        try:
            reply = self._stub.GetLeaderboard(
                scoring_pb2.GetLeaderboardRequest(track=track, tier=tier, limit=limit),
                timeout=self.timeout_s,
                metadata=self.metadata,
            )
        except grpc.RpcError as exc:
            raise from_rpc_error(exc, "GetLeaderboard") from None
        return Leaderboard(reply.track, reply.tier, reply.rule, leaderboard_from_proto(reply))

    def get_submission(self, submission_id: str) -> SubmissionRecord:
        try:
            reply = self._stub.GetSubmission(
                scoring_pb2.GetSubmissionRequest(submission_id=submission_id),
                timeout=self.timeout_s,
                metadata=self.metadata,
            )
        except grpc.RpcError as exc:
            raise from_rpc_error(exc, "GetSubmission") from None
        return submission_from_proto(reply)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> ScoringClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ------------------------------------------------------------------------------------------ tables


def _fmt(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.4f}"


def score_table(record: SubmissionRecord) -> str:
    """Rows: overall, each mouse, each OOD family (bonus); columns: the three metrics."""
    s = record.scores
    m = s.metrics
    rows: list[tuple[str, list[float]]] = [("overall", [m[k].overall for k in METRICS])]
    rows += [
        (mouse, [m[k].per_mouse.get(mouse, math.nan) for k in METRICS]) for mouse in m[METRICS[0]].per_mouse
    ]
    rows += [
        (f"family {family}", [m[k].per_family.get(family, math.nan) for k in METRICS])
        for family in m[METRICS[0]].per_family
    ]
    width = max(len(name) for name, _ in rows)
    header = f"{'':<{width}}  " + "  ".join(f"{METRIC_TITLES[k]:>17}" for k in METRICS)
    lines = [
        f"submission {record.submission_id}  {s.track}/{s.tier}  by {s.submitter!r}"
        + (f"  label {s.label!r}" if s.label else ""),
        f"{s.n_trials} trials, {s.n_neurons} neurons, recorded {record.created_at:%Y-%m-%d %H:%M:%S} UTC",
        header,
    ]
    lines += [f"{name:<{width}}  " + "  ".join(f"{_fmt(v):>17}" for v in values) for name, values in rows]
    lines.append("FEVE: mean over neurons with FEV >= 0.15 (n/a: no such neuron); ranking: single-trial corr")
    return "\n".join(lines)


def leaderboard_table(board: Leaderboard) -> str:
    lines = [f"leaderboard {board.track}/{board.tier}: {board.rule}"]
    if not board.rows:
        return "\n".join([*lines, "  (no submissions yet)"])
    subw = max(9, *(len(r.record.scores.submitter) for r in board.rows))
    lines.append(
        f"{'rank':>4}  {'submitter':<{subw}}  "
        + "  ".join(f"{METRIC_TITLES[k]:>17}" for k in METRICS)
        + f"  {'subs':>4}  {'recorded (UTC)':<19}  submission / label"
    )
    for r in board.rows:
        s = r.record.scores
        lines.append(
            f"{r.rank:>4}  {s.submitter:<{subw}}  "
            + "  ".join(f"{_fmt(s.metrics[k].overall):>17}" for k in METRICS)
            + f"  {r.submitter_submissions:>4}  {r.record.created_at:%Y-%m-%d %H:%M:%S}  "
            + f"{r.record.submission_id}"
            + (f"  {s.label}" if s.label else "")
        )
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ commands


def _score(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from client.errors import PredictorError
    from client.submission import SubmissionFormatError, SubmissionReader, parse_submission_file_name
    from server.scoring.validation import SubmissionInvalid

    track, tier = args.track, args.tier
    if tier == VALIDATION_ROUND:
        track = track or "main"
    official = parse_submission_file_name(args.path)
    if track is None or tier is None:
        if official is None:
            print(
                f"error: {args.path}: --track and --tier are required for a file without an official name",
                file=sys.stderr,
            )
            return 2
        track, tier = track or official[0], tier or official[1]
    if args.data is not None and tier != VALIDATION_ROUND:
        print(
            f"error: --data scores the public {VALIDATION_ROUND!r} tier only (test-tier responses are hidden); "
            f"score tier {tier!r} with --target",
            file=sys.stderr,
        )
        return 2
    try:
        reader = SubmissionReader(args.path)
    except (FileNotFoundError, SubmissionFormatError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    label = args.label if args.label is not None else Path(args.path).name
    with reader:
        progress = tqdm(
            reader,
            total=len(reader),
            unit="trial",
            desc=f"scoring {track}/{tier}",
            disable=None,  # a bar on a terminal, none in logs
        )
        try:
            if args.data is not None:
                record = _score_locally(args.data, progress, track, tier, args.submitter, label)
            else:
                with ScoringClient(args.target, timeout_s=args.timeout, **security_from_args(args)) as client:
                    record = client.submit(progress, track, tier, args.submitter, label)
        except (PredictorError, SubmissionInvalid) as exc:
            progress.close()
            print(f"error: {exc}", file=sys.stderr)
            return 1
        except (SubmissionFormatError, FileNotFoundError) as exc:
            progress.close()
            print(f"error: {exc}", file=sys.stderr)
            return 2
        progress.close()
    if args.json:
        print(json.dumps(record.to_json()))
    else:
        print(score_table(record))
    return 0


def _score_locally(
    public_dir: Path, trials: Iterable[TrialPrediction], track: str, tier: str, submitter: str, label: str
) -> SubmissionRecord:
    """Score against the released oracle-tier responses of `public_dir`, in process (no server, nothing
    recorded): the service's own validation and metrics on the same units."""
    from datetime import UTC, datetime

    from server.scoring.offline import score_public
    from server.scoring.validation import validate_header

    header = validate_header(track, tier, submitter, label)
    scores = score_public(public_dir, header, trials)
    return SubmissionRecord(submission_id="local", created_at=datetime.now(UTC), scores=scores)


def _leaderboard(args: argparse.Namespace) -> int:
    from client.errors import PredictorError

    tracks = [args.track] if args.track else list(TRACKS)
    tiers = [args.tier] if args.tier else list(TEST_ROUNDS)
    with ScoringClient(args.target, timeout_s=args.timeout, **security_from_args(args)) as client:
        try:
            boards = [client.leaderboard(track, tier, args.limit) for track in tracks for tier in tiers]
        except PredictorError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    if args.json:
        print(json.dumps({"boards": [b.to_dict() for b in boards]}))
    else:
        print("\n\n".join(leaderboard_table(b) for b in boards))
    return 0


def _user_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return "anonymous"


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register `score` and `leaderboard` (called by client.cli)."""
    score = subparsers.add_parser(
        "score",
        help="score a submission file against the hidden truth (or, offline, the public oracle tier)",
        description="Stream a submission (the official parquet format, e.g. predictions_final_main.parquet.brotli "
        "or the output of `sensorium-serve predict`) to the scoring service (--target), one trial at a time with "
        "a progress bar, and print its scores: single-trial correlation (the ranking metric), correlation to "
        "average and FEVE, overall, per mouse and per OOD family (bonus track). With --data DIR/public and "
        "--tier oracle it scores in process against the released oracle-tier responses instead (no server, "
        "nothing recorded; the service's numbers for that tier). Scores use the official units: responses "
        "divided by the released std of each neuron and frame. Exit 1 when the submission is refused (the "
        "message names the trial and the problem), 2 for an unreadable file or bad arguments.",
    )
    score.add_argument("path", type=Path, help="submission parquet file")
    where = score.add_mutually_exclusive_group(required=True)
    where.add_argument("--target", help="scoring server HOST:PORT")
    where.add_argument(
        "--data",
        type=Path,
        metavar="DIR/public",
        help="score offline against this released dataset's oracle-tier responses (with --tier oracle)",
    )
    score.add_argument("--track", choices=TRACKS, help="main | bonus (default: from an official file name)")
    score.add_argument(
        "--tier",
        choices=SCORED_ROUNDS,
        help="live | final (default: from an official file name) | oracle (the validation tier, main track)",
    )
    score.add_argument(
        "--submitter", default=getpass.getuser(), help="team or person (default: your user name)"
    )
    score.add_argument("--label", help="free text shown on the leaderboard (default: the file name)")
    score.add_argument("--timeout", type=float, default=None, help="give up after this many seconds")
    score.add_argument("--json", action="store_true", help="print one JSON object (DESIGN.md's contract)")
    add_security_arguments(score)
    score.set_defaults(handler=_score)

    board = subparsers.add_parser(
        "leaderboard",
        help="print the scoring leaderboard",
        description="Print the leaderboard of each track and tier (or the one chosen): each submitter's best "
        "submission by overall single-trial correlation, highest first.",
    )
    board.add_argument("--target", required=True, help="scoring server HOST:PORT")
    board.add_argument("--track", choices=TRACKS, help="main | bonus (default: both)")
    board.add_argument(
        "--tier", choices=SCORED_ROUNDS, help="live | final (default: both) | oracle (validation submissions)"
    )
    board.add_argument("--limit", type=int, default=0, help="show the top LIMIT rows (0: all)")
    board.add_argument("--timeout", type=float, default=30.0, help="give up after this many seconds")
    board.add_argument("--json", action="store_true", help='print one JSON object {"boards": [...]}')
    add_security_arguments(board)
    board.set_defaults(handler=_leaderboard)
