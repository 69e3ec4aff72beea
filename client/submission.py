"""The official SENSORIUM 2023 submission file: write it, and read it back one trial at a time.

One parquet file per track and round (names in `models.benchmark.SUBMISSION_FILE_NAMES`), brotli compressed,
one row per trial, no index column::

    mouse          string                session folder name
    trial_indices  int64                 trial index within the session
    prediction     list<list<float32>>   (n_neurons, n_frames), standardised units, frames after the skip
    neuron_ids     list<int64>           unit ids giving the row order of ``prediction``

This is the schema ``pandas.DataFrame.to_parquet(compression="brotli", engine="pyarrow", index=False)``
produces for such a frame, so pandas reads our files exactly as it reads an official one. We use pyarrow
directly (no pandas): the nested column is built from the numpy buffer with list offsets (no Python lists),
and the writer puts each trial in its own row group, so a reader holds one trial at a time.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from models.benchmark import SUBMISSION_FILE_NAMES, TEST_ROUNDS, TRACKS

MOUSE: Final = "mouse"
TRIAL_INDICES: Final = "trial_indices"
PREDICTION: Final = "prediction"
NEURON_IDS: Final = "neuron_ids"
COLUMNS: Final = (MOUSE, TRIAL_INDICES, PREDICTION, NEURON_IDS)
COMPRESSION: Final = "brotli"
# float32 predictions barely compress (measured: level 1 and the default give the same size to 0.5%), and
# level 1 writes ~2.7x faster than pyarrow's default brotli level.
COMPRESSION_LEVEL: Final = 1

SCHEMA: Final = pa.schema(
    [
        pa.field(MOUSE, pa.string()),
        pa.field(TRIAL_INDICES, pa.int64()),
        pa.field(PREDICTION, pa.list_(pa.list_(pa.float32()))),
        pa.field(NEURON_IDS, pa.list_(pa.int64())),
    ]
)
# Columns pandas adds when a frame is written with index=True; harmless, so the reader ignores them.
_PANDAS_INDEX_PREFIX: Final = "__index_level_"


class SubmissionFormatError(ValueError):
    """A submission file that does not follow the official format; the message names file, row and field."""


@dataclass(frozen=True)
class TrialPrediction:
    """One row of a submission: a trial's predicted responses, neurons x frames, in standardised units."""

    mouse: str
    trial_index: int
    prediction: np.ndarray  # (n_neurons, n_frames) float32
    neuron_ids: np.ndarray  # (n_neurons,) int64

    @property
    def n_neurons(self) -> int:
        return int(self.prediction.shape[0])

    @property
    def n_frames(self) -> int:
        return int(self.prediction.shape[1])


def submission_file_name(track: str, round_: str) -> str:
    """Official file name for a track (main|bonus) and round (live|final)."""
    try:
        return SUBMISSION_FILE_NAMES[(track, round_)]
    except KeyError:
        raise ValueError(
            f"no submission file for track {track!r} / round {round_!r}: "
            f"track must be one of {TRACKS}, round one of {TEST_ROUNDS}"
        ) from None


def parse_submission_file_name(path: str | Path) -> tuple[str, str] | None:
    """(track, round) an official file name stands for, or None for any other name."""
    name = Path(path).name
    for key, official in SUBMISSION_FILE_NAMES.items():
        if name == official:
            return key
    return None


# --------------------------------------------------------------------------------------------- writing


def _check_trial(
    mouse: str, trial_index: int, prediction: np.ndarray, neuron_ids: np.ndarray
) -> TrialPrediction:
    where = f"mouse {mouse!r} trial {trial_index}"
    if not isinstance(mouse, str) or not mouse:
        raise ValueError(f"mouse must be a non-empty session name, got {mouse!r}")
    if isinstance(trial_index, bool) or not isinstance(trial_index, int | np.integer):
        raise ValueError(f"{where}: trial_index must be an int, got {type(trial_index).__name__}")
    prediction = np.asarray(prediction)
    if prediction.ndim != 2:
        raise ValueError(
            f"{where}: prediction must be 2-D (n_neurons, n_frames), got shape {prediction.shape}"
        )
    if not np.issubdtype(prediction.dtype, np.floating):
        raise ValueError(f"{where}: prediction must be floating point, got {prediction.dtype}")
    neuron_ids = np.asarray(neuron_ids)
    if neuron_ids.ndim != 1 or not np.issubdtype(neuron_ids.dtype, np.integer):
        raise ValueError(
            f"{where}: neuron_ids must be a 1-D integer array, got {neuron_ids.dtype} "
            f"shape {neuron_ids.shape}"
        )
    if neuron_ids.shape[0] != prediction.shape[0]:
        raise ValueError(
            f"{where}: prediction has {prediction.shape[0]} rows but neuron_ids has {neuron_ids.shape[0]} ids"
        )
    return TrialPrediction(
        mouse,
        int(trial_index),
        np.ascontiguousarray(prediction, dtype=np.float32),
        np.ascontiguousarray(neuron_ids, dtype=np.int64),
    )


def _nested(values: np.ndarray, rows: int, cols: int) -> pa.ListArray:
    """A one-element list<list<...>> array from a (rows, cols) buffer, built from offsets (zero-copy values)."""
    inner = pa.ListArray.from_arrays(
        pa.array(np.arange(0, rows * cols + 1, cols, dtype=np.int32)), pa.array(values.reshape(-1))
    )
    return pa.ListArray.from_arrays(pa.array(np.array([0, rows], dtype=np.int32)), inner)


def trial_record_batch(trial: TrialPrediction) -> pa.RecordBatch:
    """The one-row record batch of a trial, in the official schema."""
    n_neurons, n_frames = trial.prediction.shape
    neuron_ids = pa.ListArray.from_arrays(
        pa.array(np.array([0, n_neurons], dtype=np.int32)), pa.array(trial.neuron_ids)
    )
    return pa.RecordBatch.from_arrays(
        [
            pa.array([trial.mouse], pa.string()),
            pa.array([trial.trial_index], pa.int64()),
            _nested(trial.prediction, n_neurons, n_frames),
            neuron_ids,
        ],
        schema=SCHEMA,
    )


class SubmissionWriter:
    """Writes a submission file trial by trial (one row group per trial); use as a context manager.

    The file is written to ``<path>.partial`` and renamed on a clean close, so an interrupted run never
    leaves a truncated file under the official name.
    """

    def __init__(self, path: str | Path, compression_level: int | None = COMPRESSION_LEVEL) -> None:
        self.path = Path(path)
        self._partial = self.path.with_name(self.path.name + ".partial")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = pq.ParquetWriter(
            self._partial, SCHEMA, compression=COMPRESSION, compression_level=compression_level
        )
        self.rows = 0

    def write(self, mouse: str, trial_index: int, prediction: np.ndarray, neuron_ids: np.ndarray) -> None:
        trial = _check_trial(mouse, trial_index, prediction, neuron_ids)
        self._writer.write_batch(trial_record_batch(trial), row_group_size=1)
        self.rows += 1

    def write_trial(self, trial: TrialPrediction) -> None:
        self.write(trial.mouse, trial.trial_index, trial.prediction, trial.neuron_ids)

    def close(self) -> Path:
        self._writer.close()
        self._partial.replace(self.path)
        return self.path

    def abort(self) -> None:
        self._writer.close()
        self._partial.unlink(missing_ok=True)

    def __enter__(self) -> SubmissionWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_submission(path: str | Path, trials: Iterable[TrialPrediction]) -> Path:
    """Write all `trials` to `path` in the official format; returns the path."""
    with SubmissionWriter(path) as writer:
        for trial in trials:
            writer.write_trial(trial)
    return writer.path


# --------------------------------------------------------------------------------------------- reading


def _is_float_list_list(t: pa.DataType) -> bool:
    return _is_list(t) and _is_list(t.value_type) and pa.types.is_floating(t.value_type.value_type)


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def _check_schema(path: Path, schema: pa.Schema) -> None:
    names = [n for n in schema.names if not n.startswith(_PANDAS_INDEX_PREFIX)]
    missing = [c for c in COLUMNS if c not in names]
    if missing:
        raise SubmissionFormatError(
            f"{path}: missing column(s) {missing}; a submission has columns {list(COLUMNS)}"
        )
    extra = [n for n in names if n not in COLUMNS]
    if extra:
        raise SubmissionFormatError(
            f"{path}: unexpected column(s) {extra}; a submission has columns {list(COLUMNS)}"
        )
    checks = {
        MOUSE: (
            lambda t: (
                pa.types.is_string(t)
                or pa.types.is_large_string(t)
                or (pa.types.is_dictionary(t) and pa.types.is_string(t.value_type))
            ),
            "a string",
        ),
        TRIAL_INDICES: (pa.types.is_integer, "an integer"),
        PREDICTION: (_is_float_list_list, "a list of lists of float (n_neurons x n_frames)"),
        NEURON_IDS: (lambda t: _is_list(t) and pa.types.is_integer(t.value_type), "a list of integers"),
    }
    for column, (ok, what) in checks.items():
        dtype = schema.field(column).type
        if not ok(dtype):
            raise SubmissionFormatError(f"{path}: column {column!r} must be {what}, found {dtype}")


def _row_trials(path: Path, batch: pa.RecordBatch, first_row: int) -> Iterator[TrialPrediction]:
    """Split a record batch into validated trials without Python-level copies of the numbers."""
    for column in COLUMNS:
        nulls = batch.column(column).null_count
        if nulls:
            i = int(np.flatnonzero(~np.asarray(batch.column(column).is_valid()))[0])
            raise SubmissionFormatError(f"{path}: row {first_row + i}: column {column!r} is null")
    mice = batch.column(MOUSE).to_pylist()
    trials = batch.column(TRIAL_INDICES).to_numpy()
    for i in range(batch.num_rows):
        row = first_row + i
        where = f"{path}: row {row} (mouse {mice[i]!r}, trial {int(trials[i])})"
        ids_cell = batch.column(NEURON_IDS)[i].values
        if ids_cell.null_count:
            raise SubmissionFormatError(f"{where}: neuron_ids contains nulls")
        neuron_ids = ids_cell.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
        rows = batch.column(PREDICTION)[i].values  # list<float> of this trial, one entry per neuron
        if rows.null_count:
            raise SubmissionFormatError(f"{where}: prediction has a null neuron row")
        n_neurons = len(rows)
        if n_neurons != len(neuron_ids):
            raise SubmissionFormatError(
                f"{where}: prediction has {n_neurons} neuron rows but neuron_ids has {len(neuron_ids)} ids"
            )
        if pa.types.is_fixed_size_list(rows.type):
            lengths = np.full(n_neurons, rows.type.list_size)
        else:
            offsets = rows.offsets.to_numpy()
            lengths = np.diff(offsets)
        if n_neurons and not np.all(lengths == lengths[0]):
            bad = int(np.flatnonzero(lengths != lengths[0])[0])
            raise SubmissionFormatError(
                f"{where}: prediction is ragged: neuron row {bad} has {int(lengths[bad])} frames, "
                f"row 0 has {int(lengths[0])}"
            )
        values = rows.flatten()
        if values.null_count:
            raise SubmissionFormatError(f"{where}: prediction contains nulls")
        n_frames = int(lengths[0]) if n_neurons else 0
        flat = values.to_numpy(zero_copy_only=False)
        prediction = flat.astype(np.float32, copy=False).reshape(n_neurons, n_frames)
        yield TrialPrediction(mice[i], int(trials[i]), prediction, neuron_ids)


class SubmissionReader:
    """Reads a submission file lazily: iterate for one `TrialPrediction` at a time.

    Memory holds one row group (one trial in files we write; files written by pandas in one row group are
    read in small batches, though their row group is decoded as a unit by parquet).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such submission file")
        try:
            self._file = pq.ParquetFile(self.path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise SubmissionFormatError(f"{self.path}: not a parquet file ({exc})") from exc
        _check_schema(self.path, self._file.schema_arrow)

    @property
    def num_trials(self) -> int:
        return self._file.metadata.num_rows

    def __len__(self) -> int:
        return self.num_trials

    def index(self) -> list[tuple[str, int]]:
        """(mouse, trial index) of every row, in file order, read without touching the predictions."""
        table = self._file.read(columns=[MOUSE, TRIAL_INDICES])
        return list(
            zip(table.column(MOUSE).to_pylist(), table.column(TRIAL_INDICES).to_pylist(), strict=True)
        )

    def __iter__(self) -> Iterator[TrialPrediction]:
        row = 0
        for batch in self._file.iter_batches(batch_size=1, columns=list(COLUMNS)):
            yield from _row_trials(self.path, batch, row)
            row += batch.num_rows

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> SubmissionReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def iter_submission(path: str | Path) -> Iterator[TrialPrediction]:
    """Yield the trials of a submission file one at a time (validated; see `SubmissionFormatError`)."""
    with SubmissionReader(path) as reader:
        yield from reader


def read_submission(path: str | Path) -> list[TrialPrediction]:
    """All trials of a (small) submission file; prefer `iter_submission` for big ones."""
    return list(iter_submission(path))
