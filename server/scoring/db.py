"""Persistence of scored submissions with SQLAlchemy 2: a SQLite file by default, PostgreSQL by URL.

Two tables: ``submissions`` (one row per recorded submission, with its headline score for ranking) and
``scores`` (one row per metric and scope: overall, per mouse, per OOD family). A submission is written in ONE
transaction together with its daily-limit check, so a crash leaves either all its rows or none, and two
concurrent submissions of one submitter cannot both slip under the limit (PostgreSQL: a transaction-scoped
advisory lock per submitter; SQLite: ``BEGIN IMMEDIATE`` takes the database's write lock up front).
"""

from __future__ import annotations

import logging
import threading
import uuid
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from sqlalchemy import (
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    create_engine,
    event,
    func,
    select,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from server.scoring import neuron_scores
from server.scoring.results import (
    METRICS,
    RANKING_METRIC,
    LeaderboardRow,
    MetricScores,
    SubmissionRecord,
    SubmissionScores,
)

log = logging.getLogger(__name__)

DEFAULT_DB_URL: Final = "sqlite:///sensorium-scores.db"
SCOPE_OVERALL: Final = "overall"
SCOPE_MOUSE: Final = "mouse"
SCOPE_FAMILY: Final = "family"


class DailyLimitExceeded(Exception):
    """The submitter already recorded `limit` submissions today (UTC)."""

    def __init__(self, submitter: str, limit: int, used: int) -> None:
        super().__init__(
            f"submitter {submitter!r} reached the limit of {limit} submission(s) per day "
            f"({used} recorded since 00:00 UTC); try again after 00:00 UTC"
        )
        self.submitter, self.limit, self.used = submitter, limit, used


class Base(DeclarativeBase):
    pass


class SubmissionRow(Base):
    __tablename__ = "submissions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    track: Mapped[str] = mapped_column(String(16))
    tier: Mapped[str] = mapped_column(String(16))
    submitter: Mapped[str] = mapped_column(String(200))
    label: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    n_trials: Mapped[int] = mapped_column(Integer)
    n_neurons: Mapped[int] = mapped_column(Integer)
    # Overall single-trial correlation, duplicated from `scores` so the leaderboard ranks without a join.
    ranking_score: Mapped[float] = mapped_column(Float)
    scores: Mapped[list[ScoreRow]] = relationship(
        back_populates="submission", cascade="all, delete-orphan", lazy="selectin"
    )

    __table_args__ = (
        Index("ix_submissions_board", "track", "tier", "submitter"),
        Index("ix_submissions_submitter_time", "submitter", "created_at"),
    )


class ScoreRow(Base):
    __tablename__ = "scores"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    submission_id: Mapped[str] = mapped_column(ForeignKey("submissions.id", ondelete="CASCADE"), index=True)
    metric: Mapped[str] = mapped_column(String(64))
    scope: Mapped[str] = mapped_column(String(16))  # overall | mouse | family
    key: Mapped[str] = mapped_column(String(200))  # "" | mouse session name | OOD family name
    value: Mapped[float | None] = mapped_column(Float, nullable=True)  # NULL = NaN (e.g. FEVE, no neuron)
    submission: Mapped[SubmissionRow] = relationship(back_populates="scores")

    __table_args__ = (UniqueConstraint("submission_id", "metric", "scope", "key"),)


def normalise_url(url: str) -> str:
    """A SQLAlchemy URL; a bare path means a SQLite file, ``postgresql://`` uses psycopg 3."""
    if "://" not in url:
        url = f"sqlite:///{Path(url).expanduser()}"
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def _make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        # pysqlite's own transaction handling starts transactions lazily; take the write lock at BEGIN
        # instead (SQLAlchemy's documented recipe), which makes the count-then-insert below serialisable.
        @event.listens_for(engine, "connect")
        def _no_pysqlite_begin(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            dbapi_connection.isolation_level = None

        @event.listens_for(engine, "begin")
        def _begin_immediate(conn):  # type: ignore[no-untyped-def]
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True)


def start_of_utc_day(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def _aware(value: datetime) -> datetime:
    """SQLite gives back naive datetimes; everything stored is UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _to_db(value: float) -> float | None:
    return None if value != value else float(value)  # NaN -> NULL (SQLite cannot store NaN)


def _from_db(value: float | None) -> float:
    return float("nan") if value is None else float(value)


class ScoreStore:
    """Submissions and their scores in a SQL database. Thread safe; all methods are blocking."""

    def __init__(self, url: str = DEFAULT_DB_URL) -> None:
        self.url = normalise_url(url)
        self.engine = _make_engine(self.url)
        self._backend = self.engine.dialect.name
        self._record_lock = threading.Lock()  # serialises recording within this process
        Base.metadata.create_all(self.engine)
        neuron_scores.create_tables(self.engine)  # per-neuron arrays for the report pages
        log.info(
            "score database %s (%s)", self.engine.url.render_as_string(hide_password=True), self._backend
        )

    def close(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------------------------------------ writing

    def record(
        self,
        scores: SubmissionScores,
        daily_limit: int | None = None,
        now: datetime | None = None,
    ) -> SubmissionRecord:
        """Store a scored submission atomically; raises DailyLimitExceeded (and stores nothing) when the
        submitter already has `daily_limit` submissions today (UTC). `daily_limit` None or <= 0: no limit."""
        now = _aware(now or datetime.now(UTC))
        row = SubmissionRow(
            id=uuid.uuid4().hex,
            track=scores.track,
            tier=scores.tier,
            submitter=scores.submitter,
            label=scores.label,
            created_at=now,
            n_trials=scores.n_trials,
            n_neurons=scores.n_neurons,
            ranking_score=scores.ranking_score,
        )
        row.scores = list(self._score_rows(scores))
        with self._record_lock, Session(self.engine, expire_on_commit=False) as session, session.begin():
            self._lock_submitter(session, scores.submitter)
            if daily_limit is not None and daily_limit > 0:
                used = self._count_since(session, scores.submitter, start_of_utc_day(now))
                if used >= daily_limit:
                    raise DailyLimitExceeded(scores.submitter, daily_limit, used)
            session.add(row)
            session.add_all(neuron_scores.rows(row.id, scores.neurons))
        log.info(
            "recorded submission %s (%s/%s by %r): %s %.4f",
            row.id,
            scores.track,
            scores.tier,
            scores.submitter,
            RANKING_METRIC,
            scores.ranking_score,
        )
        return SubmissionRecord(row.id, now, scores)

    @staticmethod
    def _score_rows(scores: SubmissionScores) -> Iterator[ScoreRow]:
        for metric in METRICS:
            m = scores.metrics[metric]
            yield ScoreRow(metric=metric, scope=SCOPE_OVERALL, key="", value=_to_db(m.overall))
            for mouse, value in m.per_mouse.items():
                yield ScoreRow(metric=metric, scope=SCOPE_MOUSE, key=mouse, value=_to_db(value))
            for family, value in m.per_family.items():
                yield ScoreRow(metric=metric, scope=SCOPE_FAMILY, key=family, value=_to_db(value))

    def _lock_submitter(self, session: Session, submitter: str) -> None:
        if self._backend == "postgresql":
            # Serialises count-then-insert per submitter across server replicas; released at commit/rollback.
            key = zlib.crc32(submitter.encode()) - 2**31
            session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})

    @staticmethod
    def _count_since(session: Session, submitter: str, since: datetime) -> int:
        query = select(func.count()).where(
            SubmissionRow.submitter == submitter, SubmissionRow.created_at >= since
        )
        return int(session.scalar(query) or 0)

    # ------------------------------------------------------------------------------------------ reading

    def submissions_today(self, submitter: str, now: datetime | None = None) -> int:
        """Submissions `submitter` recorded since 00:00 UTC (all tracks and tiers)."""
        now = _aware(now or datetime.now(UTC))
        with Session(self.engine) as session:
            return self._count_since(session, submitter, start_of_utc_day(now))

    def seconds_until_reset(self, now: datetime | None = None) -> float:
        now = _aware(now or datetime.now(UTC))
        return (start_of_utc_day(now) + timedelta(days=1) - now).total_seconds()

    def get(self, submission_id: str) -> SubmissionRecord | None:
        with Session(self.engine) as session:
            row = session.get(SubmissionRow, submission_id)
            return None if row is None else _record(row)

    def leaderboard(self, track: str, tier: str, limit: int | None = None) -> list[LeaderboardRow]:
        """Each submitter's best submission on (track, tier) by overall single-trial correlation (ties: the
        earlier one), ranked highest first; with how many submissions the submitter made on that board."""
        best = func.row_number().over(
            partition_by=SubmissionRow.submitter,
            order_by=(SubmissionRow.ranking_score.desc(), SubmissionRow.created_at.asc(), SubmissionRow.id),
        )
        count = func.count().over(partition_by=SubmissionRow.submitter)
        ranked = (
            select(SubmissionRow.id, best.label("best"), count.label("n"))
            .where(SubmissionRow.track == track, SubmissionRow.tier == tier)
            .subquery()
        )
        query = (
            select(SubmissionRow, ranked.c.n)
            .join(ranked, ranked.c.id == SubmissionRow.id)
            .where(ranked.c.best == 1)
            .order_by(SubmissionRow.ranking_score.desc(), SubmissionRow.created_at.asc(), SubmissionRow.id)
        )
        if limit is not None and limit > 0:
            query = query.limit(limit)
        with Session(self.engine) as session:
            return [
                LeaderboardRow(rank=i + 1, record=_record(row), submitter_submissions=int(n))
                for i, (row, n) in enumerate(session.execute(query).all())
            ]

    def row_counts(self) -> dict[str, int]:
        """Rows per table (operators and tests: proves that a rejected submission left nothing)."""
        with Session(self.engine) as session:
            return {
                "submissions": int(session.scalar(select(func.count()).select_from(SubmissionRow)) or 0),
                "scores": int(session.scalar(select(func.count()).select_from(ScoreRow)) or 0),
                "neuron_scores": int(
                    session.scalar(select(func.count()).select_from(neuron_scores.NeuronScoresRow)) or 0
                ),
            }


def _record(row: SubmissionRow) -> SubmissionRecord:
    metrics: dict[str, dict[str, object]] = {
        m: {"overall": float("nan"), "per_mouse": {}, "per_family": {}} for m in METRICS
    }
    for score in row.scores:
        target = metrics.setdefault(
            score.metric, {"overall": float("nan"), "per_mouse": {}, "per_family": {}}
        )
        value = _from_db(score.value)
        if score.scope == SCOPE_OVERALL:
            target["overall"] = value
        elif score.scope == SCOPE_MOUSE:
            target["per_mouse"][score.key] = value  # type: ignore[index]
        elif score.scope == SCOPE_FAMILY:
            target["per_family"][score.key] = value  # type: ignore[index]
    scores = SubmissionScores(
        track=row.track,
        tier=row.tier,
        submitter=row.submitter,
        label=row.label,
        n_trials=row.n_trials,
        n_neurons=row.n_neurons,
        metrics={
            name: MetricScores(
                overall=m["overall"],  # type: ignore[arg-type]
                per_mouse=dict(sorted(m["per_mouse"].items())),  # type: ignore[union-attr]
                per_family=dict(sorted(m["per_family"].items())),  # type: ignore[union-attr]
            )
            for name, m in metrics.items()
        },
    )
    return SubmissionRecord(row.id, _aware(row.created_at), scores)
