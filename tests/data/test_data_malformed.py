"""Each malformed mouse folder is rejected with a message naming the file and the problem."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from models.data import layout
from models.data.reader import DataFormatError, open_mouse


def _edit(path: Path, fn: Callable[[np.ndarray], np.ndarray]) -> None:
    np.save(path, fn(np.load(path)))


def _nan_at(arr: np.ndarray, row: int, frame: int) -> np.ndarray:
    arr = arr.copy()
    arr.reshape(-1, arr.shape[-1])[row, frame] = np.nan
    return arr


CASES: dict[str, tuple[Callable[[Path], Path], str, str]] = {
    # name: (corrupt(folder) -> file the message must name, problem regex, validation)
    "missing unit ids": (lambda p: _rm(p / layout.UNIT_IDS), "missing file", "fast"),
    "missing trial file": (
        lambda p: _rename(layout.trial_file(p, "responses", 1), "99.npy"),
        "missing file",
        "fast",
    ),
    "missing statistics": (
        lambda p: _rm(layout.statistics_file(p, "behavior", "std")),
        "missing file",
        "fast",
    ),
    "tiers length": (
        lambda p: _do(p / layout.TIERS_FILE, lambda a: a[:-1]),
        "trial files but tiers.npy lists 6",
        "fast",
    ),
    "unknown tier": (
        lambda p: _do(p / layout.TIERS_FILE, lambda a: np.where(a == "oracle", "validation", a)),
        "unknown tier 'validation'",
        "fast",
    ),
    "wrong video shape": (
        lambda p: _do(layout.trial_file(p, "videos", 2), lambda a: a[:, :63]),
        r"wrong shape \(36, 63, 12\)",
        "fast",
    ),
    "wrong responses shape": (
        lambda p: _do(layout.trial_file(p, "responses", 0), lambda a: a[:4]),
        r"wrong shape \(4, 12\)",
        "fast",
    ),
    "wrong dtype": (
        lambda p: _do(layout.trial_file(p, "behavior", 3), lambda a: np.nan_to_num(a).astype(np.int32)),
        "wrong dtype int32",
        "fast",
    ),
    "padded length differs": (
        lambda p: _do(
            layout.trial_file(p, "pupil_center", 5),
            lambda a: np.concatenate([a, np.full((2, 1), np.nan, np.float32)], 1),
        ),
        "padded length 13 differs",
        "fast",
    ),
    "coordinates shape": (
        lambda p: _do(p / layout.COORDINATES, lambda a: a[:, :2]),
        r"expected shape \(5, 3\)",
        "fast",
    ),
    "NaN inside behavior": (
        lambda p: _do(layout.trial_file(p, "behavior", 1), lambda a: _nan_at(a, 1, 4)),
        r"NaN inside the trial \(row 1, frame 4",
        "fast",
    ),
    "NaN inside pupil": (
        lambda p: _do(layout.trial_file(p, "pupil_center", 0), lambda a: _nan_at(a, 0, 2)),
        r"NaN/inf inside the trial \(row 0, frame 2",
        "fast",
    ),
    "NaN inside responses probe": (
        lambda p: _do(layout.trial_file(p, "responses", 2), lambda a: _nan_at(a, 0, 5)),
        "NaN/inf inside the trial",
        "fast",
    ),
    "NaN inside video (full)": (
        lambda p: _do(layout.trial_file(p, "videos", 0), lambda a: _nan_at(a, 777, 3)),
        "NaN/inf inside the trial",
        "full",
    ),
    "NaN inside responses (full)": (
        lambda p: _do(layout.trial_file(p, "responses", 5), lambda a: _nan_at(a, 3, 1)),
        "NaN/inf inside the trial",
        "full",
    ),
    "responses shorter": (
        lambda p: _do(layout.trial_file(p, "responses", 1), lambda a: _nan_from(a, 8)),
        "true length 8 .*disagrees with 12",
        "fast",
    ),
    "video longer": (
        lambda p: _do(layout.trial_file(p, "videos", 0), lambda a: np.nan_to_num(a, nan=1.0)),
        "NaN/inf inside the trial|disagree",
        "fast",
    ),
}


def _rm(path: Path) -> Path:
    path.unlink()
    return path


def _rename(path: Path, name: str) -> Path:
    path.rename(path.with_name(name))
    return path


def _do(path: Path, fn: Callable[[np.ndarray], np.ndarray]) -> Path:
    _edit(path, fn)
    return path


def _nan_from(arr: np.ndarray, frame: int) -> np.ndarray:
    arr = arr.copy()
    arr[..., frame:] = np.nan
    return arr


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_folder_rejected(handmade, case: str) -> None:
    folder = handmade[0]
    corrupt, problem, validation = CASES[case]
    named = corrupt(folder)
    with pytest.raises(DataFormatError) as info:
        open_mouse(folder, validate=validation)  # type: ignore[arg-type]
    message = str(info.value)
    assert str(named) in message or str(named.parent) in message, message
    assert re.search(problem, message), message


def test_fast_validation_misses_what_full_catches(handmade) -> None:
    """The documented limit of "fast": a NaN off the probed row of a video passes, "full" catches it."""
    folder = handmade[0]
    _do(layout.trial_file(folder, "videos", 0), lambda a: _nan_at(a, 100, 4))
    open_mouse(folder, validate="fast")
    with pytest.raises(DataFormatError, match="NaN/inf inside"):
        open_mouse(folder, validate="full")


def test_missing_folder(tmp_path) -> None:
    with pytest.raises(DataFormatError, match="missing mouse folder"):
        open_mouse(tmp_path / "nope")
