"""Reader of the released SENSORIUM 2023 layout (numpy only: the server imports it).

`open_mouse(path)` opens one mouse (session) folder, `open_dataset(root)` a folder of mouse folders.
Per-trial arrays are memory-mapped and trimmed to the trial's true length (index of its first NaN).

Validation (``validate=``) and what it costs:
- ``"fast"`` (default): every file present, every ``.npy`` header (shape, dtype) read without loading data,
  tiers known and as many as trial files, behaviour and pupil centre read whole (2 x T floats per trial), and
  one contiguous row of each video (pixel 0,0) and response file (neuron 0) probed: its first NaN must equal
  the trial's length taken from behaviour, and nothing may follow it. A NaN inside a trial of behaviour or pupil
  centre is always caught; one inside a video or response row other than the probed row is not (use "full").
  Cost: ~0.3 ms per trial file, about 1 s for a real-size mouse folder.
- ``"full"``: as "fast", plus every video and response array read whole: NaN inside any trial is caught.
  Reads the whole folder (~10 GB for a real mouse).
- ``"off"``: headers of the meta files only; lengths come from behaviour (still read).
Trials of tier ``none`` are counted (file count must match the tiers) but never read or checked further.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np

from models.benchmark import TIER_NONE, TIERS
from models.data import layout

log = logging.getLogger(__name__)

Validation = Literal["off", "fast", "full"]


class DataFormatError(ValueError):
    """A mouse folder does not follow the released layout; the message names the file and the problem."""

    def __init__(self, path: Path | str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = Path(path)
        self.problem = problem


def read_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of a .npy file without reading its data."""
    if not path.is_file():
        raise DataFormatError(path, "missing file")
    try:
        # A memory map reads the header only; numpy's public header readers stop at format version 2.
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, SyntaxError) as exc:
        raise DataFormatError(path, f"not a readable .npy file ({exc})") from exc
    return tuple(int(s) for s in array.shape), array.dtype


def _load(path: Path, mmap: bool = False) -> np.ndarray:
    if not path.is_file():
        raise DataFormatError(path, "missing file")
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc):  # the release may store the tier strings as an object array
            return np.load(path, allow_pickle=True)
        raise DataFormatError(path, f"not a readable .npy file ({exc})") from exc


def first_nan(row: np.ndarray) -> int:
    """Index of the first NaN along the last axis of a 1-D array (its length if none)."""
    nan = np.isnan(row)
    return int(np.argmax(nan)) if nan.any() else int(row.shape[-1])


@dataclass(frozen=True)
class Trial:
    """One trial, arrays in the released layout (time last) trimmed to the true length."""

    index: int
    tier: str
    video: np.ndarray  # (36, 64, T)
    responses: np.ndarray  # (N, T)
    behavior: np.ndarray  # (2, T)
    pupil_center: np.ndarray  # (2, T)

    @property
    def length(self) -> int:
        return int(self.behavior.shape[-1])


class MouseFolder:
    """One session folder of the released layout. Construct with `open_mouse`."""

    def __init__(self, path: Path | str, validate: Validation = "fast") -> None:
        if validate not in ("off", "fast", "full"):
            raise ValueError(f"validate must be 'off', 'fast' or 'full', got {validate!r}")
        self.path = Path(path)
        if not self.path.is_dir():
            raise DataFormatError(self.path, "missing mouse folder")
        self.session = self.path.name
        self.unit_ids = self._read_unit_ids()
        self.coordinates = self._read_coordinates()
        self.tiers = self._read_tiers()
        self.padded_length = self._check_trial_files(validate)
        self.lengths = self._read_lengths(validate)
        self.statistics = self._read_statistics()

    # --- meta -------------------------------------------------------------------------------------------
    @property
    def n_neurons(self) -> int:
        return int(self.unit_ids.shape[0])

    @property
    def n_trials(self) -> int:
        return int(self.tiers.shape[0])

    def _read_unit_ids(self) -> np.ndarray:
        path = self.path / layout.UNIT_IDS
        ids = _load(path)
        if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
            raise DataFormatError(
                path, f"expected a 1-D integer array, got shape {ids.shape} dtype {ids.dtype}"
            )
        if ids.size == 0:
            raise DataFormatError(path, "no neurons")
        if np.unique(ids).size != ids.size:
            raise DataFormatError(path, "unit ids are not unique")
        return ids.astype(np.int64)

    def _read_coordinates(self) -> np.ndarray:
        path = self.path / layout.COORDINATES
        xyz = _load(path)
        if xyz.shape != (self.n_neurons, 3) or not np.issubdtype(xyz.dtype, np.number):
            raise DataFormatError(
                path, f"expected shape ({self.n_neurons}, 3) numeric, got shape {xyz.shape} dtype {xyz.dtype}"
            )
        return xyz

    def _read_tiers(self) -> np.ndarray:
        path = self.path / layout.TIERS_FILE
        tiers = _load(path)
        if tiers.ndim != 1 or tiers.dtype.kind not in "USO":
            raise DataFormatError(
                path, f"expected a 1-D string array, got shape {tiers.shape} dtype {tiers.dtype}"
            )
        tiers = tiers.astype(str)
        unknown = sorted(set(tiers.tolist()) - set(TIERS))
        if unknown:
            raise DataFormatError(path, f"unknown tier {unknown[0]!r} (known: {', '.join(TIERS)})")
        return tiers

    # --- trial files --------------------------------------------------------------------------------------
    def _check_trial_files(self, validate: Validation) -> int:
        """Count and header checks; returns the padded length shared by all trial arrays."""
        padded: int | None = None
        padded_from: Path | None = None
        for kind in layout.KINDS:
            folder = self.path / "data" / kind
            if not folder.is_dir():
                raise DataFormatError(folder, "missing folder")
            n_files = sum(1 for p in folder.iterdir() if p.suffix == ".npy")
            if n_files != self.n_trials:
                raise DataFormatError(
                    folder,
                    f"{n_files} trial files but tiers.npy lists {self.n_trials} trials ({self.path / layout.TIERS_FILE})",
                )
            if validate == "off":
                continue
            lead = layout.leading_shape(kind, self.n_neurons)
            for i in range(self.n_trials):
                path = layout.trial_file(self.path, kind, i)
                shape, dtype = read_header(path)
                if len(shape) != len(lead) + 1 or shape[:-1] != lead:
                    raise DataFormatError(path, f"wrong shape {shape}, expected {(*lead, 'T')}")
                if dtype.kind != "f":
                    raise DataFormatError(path, f"wrong dtype {dtype}, expected a float type (NaN padding)")
                if padded is None:
                    padded, padded_from = shape[-1], path
                elif shape[-1] != padded:
                    raise DataFormatError(
                        path, f"padded length {shape[-1]} differs from {padded} of {padded_from}"
                    )
        if padded is None:  # validation off: take it from the first behaviour file
            padded = (
                read_header(layout.trial_file(self.path, layout.BEHAVIOR, 0))[0][-1] if self.n_trials else 0
            )
        return int(padded)

    def _read_lengths(self, validate: Validation) -> np.ndarray:
        """True length per trial (first NaN); -1 for tier `none`. Checks agreement across kinds."""
        lengths = np.full(self.n_trials, -1, dtype=np.int64)
        for i in np.flatnonzero(self.tiers != TIER_NONE):
            i = int(i)
            beh_path = layout.trial_file(self.path, layout.BEHAVIOR, i)
            beh = np.asarray(_load(beh_path))
            length = first_nan(beh.sum(axis=0))  # a NaN in any channel ends the trial
            lengths[i] = length
            if validate == "off":
                continue
            if length == 0:
                raise DataFormatError(beh_path, "trial is empty (first frame is NaN)")
            self._check_block(beh_path, beh, length, beh_path)
            pup_path = layout.trial_file(self.path, layout.PUPIL_CENTER, i)
            self._check_block(pup_path, np.asarray(_load(pup_path)), length, beh_path)
            for kind in (layout.VIDEOS, layout.RESPONSES):
                path = layout.trial_file(self.path, kind, i)
                arr = _load(path, mmap=True)
                if validate == "full":
                    self._check_block(path, np.asarray(arr).reshape(-1, arr.shape[-1]), length, beh_path)
                else:
                    self._check_block(
                        path, np.asarray(arr.reshape(-1, arr.shape[-1])[0])[None], length, beh_path
                    )
        return lengths

    @staticmethod
    def _check_block(path: Path, block: np.ndarray, length: int, reference: Path) -> None:
        """`block` (rows, T) must be finite before `length` (taken from `reference`) and NaN from it on."""
        bad = ~np.isfinite(block[:, :length])
        tail = ~np.isnan(block[:, length:])
        if not bad.any() and not tail.any():
            return
        if path == reference and not bad.any():  # the length came from this file: its first NaN is inside
            row = int(np.nonzero(np.isnan(block[:, length]))[0][0])
            raise DataFormatError(
                path, f"NaN inside the trial (row {row}, frame {length}; values follow it before the padding)"
            )
        row = int(np.nonzero(bad.any(axis=1) | tail.any(axis=1))[0][0])
        values = block[row]
        own = first_nan(values)
        if path != reference and np.isfinite(values[:own]).all() and np.isnan(values[own:]).all():
            raise DataFormatError(
                path, f"true length {own} (first NaN) disagrees with {length} of {reference}"
            )
        frame = int(np.argmax(bad[row])) if bad[row].any() else own
        raise DataFormatError(
            path, f"NaN/inf inside the trial (row {row}, frame {frame}; trial length {length})"
        )

    # --- statistics ---------------------------------------------------------------------------------------
    def _read_statistics(self) -> dict[str, dict[str, np.ndarray]]:
        """{kind: {stat: array}}; shapes as stored (time-resolved or not, see normalisation)."""
        stats: dict[str, dict[str, np.ndarray]] = {}
        for kind in layout.KINDS:
            lead = layout.leading_shape(kind, self.n_neurons)
            stats[kind] = {}
            for stat in layout.STATISTICS:
                path = layout.statistics_file(self.path, kind, stat)
                arr = _load(path)
                ok = (
                    arr.ndim == 0
                    or arr.shape == lead
                    or (arr.ndim == len(lead) + 1 and arr.shape[:-1] == lead)
                )
                if kind == layout.VIDEOS and arr.ndim == 1:  # a time course of frame-wide values
                    ok = True
                if not ok or not np.issubdtype(arr.dtype, np.number):
                    raise DataFormatError(
                        path, f"wrong shape {arr.shape} dtype {arr.dtype}, expected {lead}[+T] or ()"
                    )
                stats[kind][stat] = arr
        return stats

    # --- access -------------------------------------------------------------------------------------------
    def trials(self, tier: str | None = None) -> np.ndarray:
        """Indices of the trials of `tier` (all but `none` if None)."""
        if tier is None:
            return np.flatnonzero(self.tiers != TIER_NONE)
        if tier not in TIERS:
            raise ValueError(f"unknown tier {tier!r} (known: {', '.join(TIERS)})")
        return np.flatnonzero(self.tiers == tier) if tier != TIER_NONE else np.zeros(0, dtype=np.int64)

    def length(self, index: int) -> int:
        length = int(self.lengths[index])
        if length < 0:
            raise IndexError(f"{self.path}: trial {index} has tier 'none'")
        return length

    def _array(self, kind: str, index: int) -> np.ndarray:
        length = self.length(index)
        return _load(layout.trial_file(self.path, kind, index), mmap=True)[..., :length]

    def video(self, index: int) -> np.ndarray:
        """(36, 64, T) memory-mapped, trimmed."""
        return self._array(layout.VIDEOS, index)

    def responses(self, index: int) -> np.ndarray:
        """(N, T) memory-mapped, trimmed (zeros for test tiers in a public copy)."""
        return self._array(layout.RESPONSES, index)

    def behavior(self, index: int) -> np.ndarray:
        """(2, T): row 0 pupil dilation, row 1 running speed."""
        return self._array(layout.BEHAVIOR, index)

    def pupil_center(self, index: int) -> np.ndarray:
        """(2, T): eye position x, y."""
        return self._array(layout.PUPIL_CENTER, index)

    def trial(self, index: int) -> Trial:
        return Trial(
            index=int(index),
            tier=str(self.tiers[index]),
            video=self.video(index),
            responses=self.responses(index),
            behavior=self.behavior(index),
            pupil_center=self.pupil_center(index),
        )

    def iter_trials(self, tier: str | None = None) -> Iterator[Trial]:
        for i in self.trials(tier):
            yield self.trial(int(i))

    @cached_property
    def tier_counts(self) -> dict[str, int]:
        names, counts = np.unique(self.tiers, return_counts=True)
        return {str(n): int(c) for n, c in zip(names, counts, strict=True)}

    def __repr__(self) -> str:
        return f"MouseFolder({self.session!r}, neurons={self.n_neurons}, trials={self.tier_counts})"


def open_mouse(path: Path | str, validate: Validation = "fast") -> MouseFolder:
    """Open and validate one mouse folder (see the module docstring for what `validate` checks)."""
    return MouseFolder(path, validate=validate)


def is_mouse_folder(path: Path) -> bool:
    return (Path(path) / layout.TIERS_FILE).exists() or (Path(path) / "data").is_dir()


def open_dataset(root: Path | str, validate: Validation = "fast") -> dict[str, MouseFolder]:
    """All mouse folders under `root` (e.g. DIR/public), keyed by session name, sorted."""
    root = Path(root)
    if not root.is_dir():
        raise DataFormatError(root, "missing dataset folder")
    if is_mouse_folder(root):
        raise DataFormatError(root, "this is a mouse folder; pass the folder that holds the mouse folders")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DataFormatError(root, "no mouse folders")
    mice = {}
    for folder in folders:
        if not is_mouse_folder(folder):
            hint = " (pass DIR/public)" if (root / "public").is_dir() else ""
            raise DataFormatError(folder, f"not a mouse folder: no meta/trials/tiers.npy or data/{hint}")
        mouse = open_mouse(folder, validate=validate)
        log.debug("opened %r", mouse)
        mice[mouse.session] = mouse
    return mice
