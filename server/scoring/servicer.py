"""`sensorium.v1.Scoring` on grpc.aio: a thin servicer over `ScoringService`.

The event loop only moves messages. Per-trial validation and accumulation, the final metric computation and
every database call run on the scoring thread pool, so a big submission never stalls the Predictor's 30 Hz
streams. Trials are pipelined: while trial k is scored on the pool, the loop receives trial k+1 (at most two
trials of a submission in memory).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import grpc
import grpc.aio
from sqlalchemy.exc import SQLAlchemyError

from protos.sensorium.v1 import scoring_pb2, scoring_pb2_grpc
from server.scoring.convert import leaderboard_to_proto, submission_to_proto
from server.scoring.db import DailyLimitExceeded
from server.scoring.results import LEADERBOARD_RULE
from server.scoring.service import ScoringBusy, ScoringService
from server.scoring.session import ScoringSession
from server.scoring.validation import SubmissionInvalid, validate_board, validate_header

log = logging.getLogger(__name__)
T = TypeVar("T")


class ScoringServicer(scoring_pb2_grpc.ScoringServicer):
    def __init__(self, service: ScoringService, executor: ThreadPoolExecutor) -> None:
        self.service = service
        self.executor = executor

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def Submit(
        self, request_iterator: AsyncIterator[scoring_pb2.SubmitRequest], context: grpc.aio.ServicerContext
    ) -> scoring_pb2.Submission:
        started = time.perf_counter()
        session: ScoringSession | None = None
        pending: asyncio.Future[None] | None = None  # the trial being scored on the pool
        try:
            async for request in request_iterator:
                kind = request.WhichOneof("kind")
                if session is None:
                    if kind != "header":
                        raise SubmissionInvalid("the first message of a submission must be its header")
                    h = request.header
                    header = validate_header(h.track, h.tier, h.submitter, h.label)
                    session = await self._run(self.service.open, header)
                    continue
                if kind != "trial":
                    raise SubmissionInvalid("a submission has exactly one header, as its first message")
                if pending is not None:
                    await pending  # raises the previous trial's SubmissionInvalid
                pending = asyncio.ensure_future(self._run(session.add_trial_message, request.trial))
            if pending is not None:
                await pending
            if session is None:
                raise SubmissionInvalid("empty submission: no header and no trials")
            record = await self._run(self.service.finish, session)
            log.info(
                "scored submission %s: %d trials, %.0f MB in %.1f s",
                record.submission_id,
                record.scores.n_trials,
                session.bytes_received / 1e6,
                time.perf_counter() - started,
            )
            return submission_to_proto(record)
        except SubmissionInvalid as exc:
            log.info("rejected submission: %s", exc)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except (DailyLimitExceeded, ScoringBusy) as exc:
            log.info("refused submission: %s", exc)
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
        except (RuntimeError, OSError, SQLAlchemyError) as exc:
            log.exception("submission failed on the server side; nothing recorded")
            await context.abort(
                grpc.StatusCode.INTERNAL, f"scoring failed on the server, nothing recorded: {exc}"
            )
        finally:
            self._release(session, pending)
        raise AssertionError("unreachable: context.abort raises")

    def _release(self, session: ScoringSession | None, pending: asyncio.Future[None] | None) -> None:
        """Free the session's slot once no trial of it is on the pool (also on error or cancellation)."""

        def done(future: asyncio.Future[None] | None = None) -> None:
            if future is not None and not future.cancelled():
                future.exception()  # retrieved: an abandoned trial's error is not logged as unhandled
            if session is not None:
                self.service.close(session)

        if pending is None:
            done()
        else:
            pending.add_done_callback(done)

    async def GetLeaderboard(
        self, request: scoring_pb2.GetLeaderboardRequest, context: grpc.aio.ServicerContext
    ) -> scoring_pb2.Leaderboard:
        try:
            validate_board(request.track, request.tier)
        except SubmissionInvalid as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        if request.limit < 0:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"limit must be >= 0, got {request.limit}")
        rows = await self._run(self.service.store.leaderboard, request.track, request.tier, request.limit)
        return leaderboard_to_proto(request.track, request.tier, LEADERBOARD_RULE, rows)

    async def GetSubmission(
        self, request: scoring_pb2.GetSubmissionRequest, context: grpc.aio.ServicerContext
    ) -> scoring_pb2.Submission:
        record = await self._run(self.service.store.get, request.submission_id)
        if record is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no submission with id {request.submission_id!r}")
        return submission_to_proto(record)
