"""Per-neuron scores of a recorded submission, for the report pages (server/web).

The ``scores`` table holds means (overall, per mouse, per family); the report plots need each neuron's
single-trial correlation, correlation to average, FEV and FEVE. One row per (submission, mouse) keeps them as
little-endian float32 blobs (float64 would double 8,000 neurons x 4 arrays for no visible gain), next to the
neuron ids in the truth's row order. Written in the same transaction as the submission (`ScoreStore.record`).

These are derived statistics of the submission (one number per neuron over all its scored frames), never
ground-truth responses.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from sqlalchemy import Engine, Integer, LargeBinary, String, UniqueConstraint, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

ARRAYS: Final = ("single_trial_correlation", "correlation_to_average", "fev", "feve")


@dataclass(frozen=True)
class NeuronArrays:
    """Per-neuron metrics of one mouse in one submission; arrays (N,), None where undefined."""

    unit_ids: np.ndarray  # int64
    single_trial_correlation: np.ndarray
    correlation_to_average: np.ndarray | None
    fev: np.ndarray | None
    feve: np.ndarray | None

    @property
    def n_neurons(self) -> int:
        return int(self.unit_ids.shape[0])


class NeuronBase(DeclarativeBase):
    pass


class NeuronScoresRow(NeuronBase):
    __tablename__ = "neuron_scores"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    submission_id: Mapped[str] = mapped_column(String(32), index=True)
    mouse: Mapped[str] = mapped_column(String(200))
    n_neurons: Mapped[int] = mapped_column(Integer)
    unit_ids: Mapped[bytes] = mapped_column(LargeBinary)  # int64 little-endian
    single_trial_correlation: Mapped[bytes] = mapped_column(LargeBinary)  # float32 little-endian
    correlation_to_average: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    fev: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    feve: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)

    __table_args__ = (UniqueConstraint("submission_id", "mouse"),)


def create_tables(engine: Engine) -> None:
    NeuronBase.metadata.create_all(engine)


def _blob(array: np.ndarray | None) -> bytes | None:
    return None if array is None else np.asarray(array, dtype="<f4").tobytes()


def _array(blob: bytes | None) -> np.ndarray | None:
    return None if blob is None else np.frombuffer(blob, dtype="<f4").astype(np.float64)


def collect(board: Any, unit_ids: Mapping[str, np.ndarray]) -> dict[str, NeuronArrays]:
    """Per-neuron arrays of every mouse of a finished board (`ShardedScoreboard` or `Scoreboard`), rows in the
    order of `unit_ids` (the truth's order: the session reorders predictions into it)."""
    neuron_scores = getattr(board, "_neuron_scores", None) or board.neuron_scores
    out = {}
    for mouse, ids in unit_ids.items():
        s = neuron_scores(mouse)
        out[mouse] = NeuronArrays(
            unit_ids=np.asarray(ids, dtype=np.int64),
            single_trial_correlation=s.single_trial_correlation,
            correlation_to_average=s.correlation_to_average,
            fev=s.fev,
            feve=s.feve,
        )
    return out


def rows(submission_id: str, neurons: Mapping[str, NeuronArrays] | None) -> Iterator[NeuronScoresRow]:
    """Rows to add in the submission's transaction (none when the scores carry no per-neuron arrays)."""
    for mouse, a in (neurons or {}).items():
        yield NeuronScoresRow(
            submission_id=submission_id,
            mouse=mouse,
            n_neurons=a.n_neurons,
            unit_ids=np.asarray(a.unit_ids, dtype="<i8").tobytes(),
            single_trial_correlation=_blob(a.single_trial_correlation) or b"",
            correlation_to_average=_blob(a.correlation_to_average),
            fev=_blob(a.fev),
            feve=_blob(a.feve),
        )


def load(engine: Engine, submission_id: str) -> dict[str, NeuronArrays]:
    """Per-neuron arrays of a recorded submission by mouse ({} for one recorded without them)."""
    with Session(engine) as session:
        found = session.scalars(
            select(NeuronScoresRow)
            .where(NeuronScoresRow.submission_id == submission_id)
            .order_by(NeuronScoresRow.mouse)
        ).all()
        return {
            r.mouse: NeuronArrays(
                unit_ids=np.frombuffer(r.unit_ids, dtype="<i8").astype(np.int64),
                single_trial_correlation=_array(r.single_trial_correlation),  # type: ignore[arg-type]
                correlation_to_average=_array(r.correlation_to_average),
                fev=_array(r.fev),
                feve=_array(r.feve),
            )
            for r in found
        }
