"""The official parquet submission file: round trip, schema, names, streaming, and precise errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from client.submission import (
    SCHEMA,
    SubmissionFormatError,
    SubmissionReader,
    SubmissionWriter,
    TrialPrediction,
    iter_submission,
    parse_submission_file_name,
    read_submission,
    submission_file_name,
    write_submission,
)
from models.benchmark import SUBMISSION_FILE_NAMES


def _trials(
    rng: np.random.Generator, mice: dict[str, int] | None = None, frames: int = 7
) -> list[TrialPrediction]:
    mice = mice or {"dynamic1-1-1-Video-aa": 5, "dynamic2-2-2-Video-bb": 3}
    out = []
    for m, (mouse, n) in enumerate(mice.items()):
        ids = rng.permutation(1000)[:n].astype(np.int64)
        for trial in (3, 11, 40 + m):
            out.append(
                TrialPrediction(mouse, trial, rng.standard_normal((n, frames)).astype(np.float32), ids)
            )
    return out


def test_round_trip_keeps_every_value_dtype_and_order(tmp_path: Path, rng: np.random.Generator) -> None:
    trials = _trials(rng)
    path = write_submission(tmp_path / "sub.parquet.brotli", trials)
    back = read_submission(path)
    assert len(back) == len(trials)
    for a, b in zip(trials, back, strict=True):
        assert (b.mouse, b.trial_index) == (a.mouse, a.trial_index)
        assert b.prediction.dtype == np.float32 and b.prediction.shape == a.prediction.shape
        assert b.neuron_ids.dtype == np.int64
        np.testing.assert_array_equal(b.prediction, a.prediction)
        np.testing.assert_array_equal(b.neuron_ids, a.neuron_ids)


def test_file_has_official_schema_compression_and_one_row_group_per_trial(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    trials = _trials(rng)
    path = write_submission(tmp_path / "sub.parquet.brotli", trials)
    f = pq.ParquetFile(path)
    assert f.schema_arrow.names == ["mouse", "trial_indices", "prediction", "neuron_ids"]
    assert f.schema_arrow.equals(SCHEMA)
    assert f.metadata.num_row_groups == len(trials)
    meta = f.metadata.row_group(0)
    assert {meta.column(i).compression for i in range(meta.num_columns)} == {"BROTLI"}
    # Read as plain Arrow (what pandas does): nested Python lists shaped (n_neurons, n_frames).
    table = pq.read_table(path)
    cell = table.column("prediction")[0].as_py()
    assert len(cell) == trials[0].n_neurons and len(cell[0]) == trials[0].n_frames
    np.testing.assert_allclose(np.array(cell, dtype=np.float32), trials[0].prediction)
    assert table.column("trial_indices").to_pylist() == [t.trial_index for t in trials]


def test_reads_a_file_written_the_pandas_way(tmp_path: Path, rng: np.random.Generator) -> None:
    """A table built from Python lists (as pandas' to_parquet does), float64 values, one row group."""
    trials = _trials(rng)
    table = pa.table(
        {
            "mouse": [t.mouse for t in trials],
            "trial_indices": [t.trial_index for t in trials],
            "prediction": [t.prediction.astype(np.float64).tolist() for t in trials],
            "neuron_ids": [t.neuron_ids.tolist() for t in trials],
            "__index_level_0__": list(range(len(trials))),
        }
    )
    path = tmp_path / "pandas.parquet.brotli"
    pq.write_table(table, path, compression="brotli")
    back = list(iter_submission(path))
    assert [(t.mouse, t.trial_index) for t in back] == [(t.mouse, t.trial_index) for t in trials]
    for a, b in zip(trials, back, strict=True):
        assert b.prediction.dtype == np.float32
        np.testing.assert_array_equal(b.prediction, a.prediction)


def test_reader_streams_one_trial_at_a_time(tmp_path: Path, rng: np.random.Generator) -> None:
    trials = _trials(rng)
    path = write_submission(tmp_path / "s.parquet.brotli", trials)
    with SubmissionReader(path) as reader:
        assert len(reader) == len(trials)
        assert reader.index() == [(t.mouse, t.trial_index) for t in trials]
        it = iter(reader)
        first = next(it)
        assert first.trial_index == trials[0].trial_index
        # Each yielded trial owns only its own numbers: the flat buffer behind it is one trial long.
        base = first.prediction
        while isinstance(base.base, np.ndarray):
            base = base.base
        assert base.size == first.prediction.size
        assert len(list(it)) == len(trials) - 1


def test_writer_leaves_no_file_when_interrupted(tmp_path: Path, rng: np.random.Generator) -> None:
    trials = _trials(rng)
    path = tmp_path / "s.parquet.brotli"
    with pytest.raises(RuntimeError), SubmissionWriter(path) as writer:
        writer.write_trial(trials[0])
        raise RuntimeError("interrupted")
    assert not path.exists() and not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prediction": np.zeros((3, 4, 1))}, "must be 2-D"),
        ({"prediction": np.zeros((3, 4), dtype=np.int32)}, "floating point"),
        ({"neuron_ids": np.arange(4)}, "3 rows but neuron_ids has 4 ids"),
        ({"neuron_ids": np.arange(3.0)}, "integer array"),
        ({"mouse": ""}, "non-empty session name"),
        ({"trial_index": 1.5}, "trial_index must be an int"),
    ],
)
def test_writer_rejects_bad_trials(tmp_path: Path, kwargs: dict, message: str) -> None:
    args = {
        "mouse": "m",
        "trial_index": 1,
        "prediction": np.zeros((3, 4)),
        "neuron_ids": np.arange(3),
    } | kwargs
    with SubmissionWriter(tmp_path / "s.parquet") as writer, pytest.raises(ValueError, match=message):
        writer.write(**args)


def _write_table(path: Path, columns: dict) -> Path:
    pq.write_table(pa.table(columns), path)
    return path


GOOD = {
    "mouse": ["m", "m"],
    "trial_indices": [1, 2],
    "prediction": [[[1.0, 2.0], [3.0, 4.0]], [[1.0, 2.0], [3.0, 4.0]]],
    "neuron_ids": [[7, 8], [7, 8]],
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"neuron_ids": None}, r"missing column\(s\) \['neuron_ids'\]"),
        ({"extra": [1, 2]}, r"unexpected column\(s\) \['extra'\]"),
        ({"trial_indices": ["a", "b"]}, "column 'trial_indices' must be an integer"),
        ({"mouse": [1, 2]}, "column 'mouse' must be a string"),
        ({"prediction": [[1.0, 2.0], [3.0]]}, "column 'prediction' must be a list of lists of float"),
        ({"neuron_ids": [["a"], ["b"]]}, "column 'neuron_ids' must be a list of integers"),
        (
            {"prediction": [[[1.0, 2.0], [3.0, 4.0]], [[1.0, 2.0], [3.0]]]},
            r"row 1 \(mouse 'm', trial 2\): prediction is ragged: neuron row 1 has 1 frames",
        ),
        ({"neuron_ids": [[7, 8], [7]]}, r"row 1 .*2 neuron rows but neuron_ids has 1 ids"),
        (
            {"prediction": [[[1.0, 2.0], [3.0, 4.0]], [[1.0, None], [3.0, 4.0]]]},
            r"row 1 .*prediction contains nulls",
        ),
        ({"prediction": [[[1.0, 2.0], [3.0, 4.0]], [[1.0, 2.0], None]]}, r"row 1 .*null neuron row"),
        ({"mouse": ["m", None]}, r"row 1: column 'mouse' is null"),
    ],
)
def test_reader_names_file_row_and_problem(tmp_path: Path, change: dict, message: str) -> None:
    columns = {k: v for k, v in (GOOD | change).items() if v is not None}
    path = _write_table(tmp_path / "bad.parquet", columns)
    with pytest.raises(SubmissionFormatError, match=message) as info:
        read_submission(path)
    assert str(path) in str(info.value)


def test_reader_rejects_missing_and_non_parquet_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such submission file"):
        SubmissionReader(tmp_path / "nope.parquet")
    junk = tmp_path / "junk.parquet.brotli"
    junk.write_bytes(b"not parquet at all")
    with pytest.raises(SubmissionFormatError, match="not a parquet file"):
        SubmissionReader(junk)


def test_official_file_names() -> None:
    assert submission_file_name("main", "live") == "predictions_live_main.parquet.brotli"
    for key, name in SUBMISSION_FILE_NAMES.items():
        assert submission_file_name(*key) == name
        assert parse_submission_file_name(Path("/x") / name) == key
    assert parse_submission_file_name("mine.parquet") is None
    with pytest.raises(ValueError, match="track must be one of"):
        submission_file_name("side", "live")
