"""Record what a rig streamed as a session folder in the released SENSORIUM layout, for `sensorium-serve adapt`.

A rig's own code hands every frame it streamed to a `SessionRecorder` together with the responses it measured
for that frame (calcium imaging: one value per neuron, raw units), and closes each trial with its tier:

    recorder = SessionRecorder("recording/public", session, unit_ids, coordinates)
    for each trial:
        for each frame:
            reply = await stream.send(frame, behavior, pupil_center)      # the model's prediction, if wanted
            recorder.add_frame(frame, behavior, pupil_center, measured)   # what the rig showed and measured
        recorder.end_trial("train")            # or "oracle": repeats of held-out clips, for early stopping
    recorder.close()                           # -> recording/public/<session>/ with meta/ and statistics

Trials are spooled to disk as they end (a hidden folder beside the session), and `close()` writes the session
folder through `models.data.writer.MouseWriter` (numpy only, the same writer as the synthetic generator): NaN
padding to the longest trial, tiers, neurons and the time-resolved statistics over the train trials. Trial
indices are recording order, which is what `adapt --minutes M` relies on ("the first M minutes").
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from models.benchmark import TIER_TRAIN, TIERS
from models.data import layout
from models.data.writer import MouseWriter

_FIELDS = (layout.VIDEOS, layout.BEHAVIOR, layout.PUPIL_CENTER, layout.RESPONSES)


class RecordingError(ValueError):
    """A frame or trial the recorder cannot take (the message names the field)."""


class SessionRecorder:
    """Collect streamed frames + measured responses trial by trial; `close()` writes ROOT/<session>/."""

    def __init__(
        self, root: Path | str, session: str, unit_ids: Sequence[int] | np.ndarray, coordinates: np.ndarray
    ) -> None:
        self.path = Path(root) / session
        if self.path.exists() and any(self.path.iterdir()):
            raise FileExistsError(f"{self.path}: exists and is not empty (record into another folder)")
        self.unit_ids = np.asarray(unit_ids, dtype=np.int64)
        self.coordinates = np.asarray(coordinates)
        if self.unit_ids.ndim != 1 or self.coordinates.shape != (self.unit_ids.size, 3):
            raise RecordingError(
                f"unit_ids (N,) and coordinates (N, 3) expected, got {self.unit_ids.shape}, {self.coordinates.shape}"
            )
        self.shapes = {kind: layout.leading_shape(kind, self.unit_ids.size) for kind in _FIELDS}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._spool = Path(tempfile.mkdtemp(prefix=f".{session}-recording-", dir=self.path.parent))
        self._frames: dict[str, list[np.ndarray]] = {kind: [] for kind in _FIELDS}
        self.tiers: list[str] = []
        self.lengths: list[int] = []
        self.closed = False

    @property
    def frames_in_trial(self) -> int:
        return len(self._frames[layout.BEHAVIOR])

    def add_frame(
        self, video: np.ndarray, behavior: np.ndarray, pupil_center: np.ndarray, responses: np.ndarray
    ) -> None:
        """One frame as streamed: video (H, W) raw pixels 0-255, behaviour (2,), pupil centre (2,), and the
        responses the rig measured for it (N,) in raw units, neurons in `unit_ids` order."""
        if self.closed:
            raise RecordingError("recorder is closed")
        arrays = {
            layout.VIDEOS: video,
            layout.BEHAVIOR: behavior,
            layout.PUPIL_CENTER: pupil_center,
            layout.RESPONSES: responses,
        }
        checked = {}
        for kind, value in arrays.items():
            array = np.asarray(value, dtype=np.float32)
            if array.shape != self.shapes[kind]:
                raise RecordingError(f"{kind}: shape {list(array.shape)}, expected {list(self.shapes[kind])}")
            if not np.isfinite(array).all():
                raise RecordingError(f"{kind}: NaN or infinite values")
            checked[kind] = array
        for kind, array in checked.items():
            self._frames[kind].append(array)

    def end_trial(self, tier: str = TIER_TRAIN) -> int:
        """Close the current trial as `tier` (train, oracle, ...); returns its trial index."""
        if tier not in TIERS:
            raise RecordingError(f"tier: {tier!r} is not one of {', '.join(TIERS)}")
        if self.frames_in_trial == 0:
            raise RecordingError("end_trial: no frames recorded in this trial")
        index = len(self.tiers)
        for kind, frames in self._frames.items():
            np.save(self._spool / f"{kind}-{index}.npy", np.stack(frames, axis=-1))  # time last, as released
        self.tiers.append(tier)
        self.lengths.append(self.frames_in_trial)
        self._frames = {kind: [] for kind in _FIELDS}
        return index

    def discard_trial(self) -> None:
        """Drop the frames of an unfinished trial (e.g. an aborted stream)."""
        self._frames = {kind: [] for kind in _FIELDS}

    def close(self) -> Path:
        """Write the session folder (trials, meta, statistics) and remove the spool; returns its path."""
        if self.closed:
            return self.path
        if TIER_TRAIN not in self.tiers:
            raise RecordingError(f"{self.path}: no {TIER_TRAIN!r} trial recorded; statistics need them")
        with MouseWriter(
            self.path,
            self.unit_ids,
            self.coordinates,
            len(self.tiers),
            max(self.lengths),
            hide_test_responses=False,
        ) as writer:
            for index, tier in enumerate(self.tiers):
                arrays = {kind: np.load(self._spool / f"{kind}-{index}.npy") for kind in _FIELDS}
                writer.write_trial(
                    index,
                    tier,
                    video=arrays[layout.VIDEOS],
                    responses=arrays[layout.RESPONSES],
                    behavior=arrays[layout.BEHAVIOR],
                    pupil_center=arrays[layout.PUPIL_CENTER],
                )
        self.abandon()
        return self.path

    def abandon(self) -> None:
        """Remove the spooled trials without writing anything."""
        shutil.rmtree(self._spool, ignore_errors=True)
        self.closed = True

    def __enter__(self) -> SessionRecorder:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        """Write what was recorded, even after an error (the unfinished trial is dropped), if anything was."""
        self.discard_trial()
        if TIER_TRAIN in self.tiers:
            self.close()
        else:
            self.abandon()
