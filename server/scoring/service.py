"""The scoring data plane: opens submissions (daily limit, concurrency), finishes them (scores + record).

Free of gRPC; blocking calls, run by the servicer on its thread pool.
"""

from __future__ import annotations

import logging
import threading

from server.scoring.db import DailyLimitExceeded, ScoreStore
from server.scoring.ground_truth import GroundTruth, tier_trials
from server.scoring.results import SubmissionRecord
from server.scoring.session import ScoringSession
from server.scoring.validation import Header, SubmissionInvalid

log = logging.getLogger(__name__)

DEFAULT_MAX_CONCURRENT_SUBMISSIONS = 2  # each holds per-stimulus sums of every mouse (see docs/SCORING.md)


class ScoringBusy(Exception):
    """Too many submissions are being scored at once; the client should retry later."""


class ScoringService:
    def __init__(
        self,
        truth: GroundTruth,
        store: ScoreStore,
        submissions_per_day: int = 0,
        max_concurrent: int = DEFAULT_MAX_CONCURRENT_SUBMISSIONS,
    ) -> None:
        self.truth = truth
        self.store = store
        self.submissions_per_day = submissions_per_day  # 0: no limit
        self._slots = threading.BoundedSemaphore(max_concurrent)
        self._max_concurrent = max_concurrent
        self._open: set[int] = set()
        self._lock = threading.Lock()

    def open(self, header: Header) -> ScoringSession:
        """Start a submission. Refuses early (before any trial is sent) when the submitter has used up today's
        submissions; the limit is checked again, atomically, when the result is recorded."""
        limit = self.submissions_per_day
        if limit > 0:
            used = self.store.submissions_today(header.submitter)
            if used >= limit:
                raise DailyLimitExceeded(header.submitter, limit, used)
        expected = tier_trials(self.truth, header.tier_name)
        if not expected:
            raise SubmissionInvalid(f"header: no mouse has trials in tier {header.tier_name!r}")
        if not self._slots.acquire(blocking=False):
            raise ScoringBusy(
                f"{self._max_concurrent} submissions are being scored right now; retry in a minute"
            )
        session = ScoringSession(self.truth, header, expected)
        with self._lock:
            self._open.add(id(session))
        log.info(
            "submission opened: %s/%s by %r (%r), %d trials of %d mice expected",
            header.track,
            header.tier,
            header.submitter,
            header.label,
            sum(map(len, expected.values())),
            len(expected),
        )
        return session

    def finish(self, session: ScoringSession) -> SubmissionRecord:
        """Check completeness, compute the scores, record them atomically (with the daily-limit check)."""
        scores = session.result()
        limit = self.submissions_per_day
        return self.store.record(scores, daily_limit=limit if limit > 0 else None)

    def close(self, session: ScoringSession) -> None:
        """Release the session's slot (idempotent); its accumulators go with the last reference."""
        with self._lock:
            if id(session) not in self._open:
                return
            self._open.discard(id(session))
        self._slots.release()

    @property
    def open_submissions(self) -> int:
        with self._lock:
            return len(self._open)
