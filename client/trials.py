"""Trial inputs a client sends, read from a released dataset folder with `models.data.reader` (numpy only).

The rig and `predict` need, per trial, the video frames, behaviour and pupil centre at the trial's true length,
in the server's frame-major layout: video (T, H, W), behaviour (T, 2), pupil centre (T, 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.data.reader import MouseFolder, is_mouse_folder, open_mouse


@dataclass(frozen=True)
class TrialInputs:
    mouse: str
    index: int
    video: np.ndarray  # (T, H, W) float32 raw pixels 0..255
    behavior: np.ndarray  # (T, 2) float32
    pupil_center: np.ndarray  # (T, 2) float32
    tier: str = ""
    responses: np.ndarray | None = (
        None  # (T, N) float32 raw units: what a replaying rig "measured" (--record)
    )

    @property
    def n_frames(self) -> int:
        return int(self.video.shape[0])


def list_sessions(data: Path) -> list[str]:
    """Session folders under a data folder (e.g. DIR/public), sorted."""
    data = Path(data)
    if not data.is_dir():
        raise FileNotFoundError(f"{data}: no such data folder")
    return sorted(p.name for p in data.iterdir() if p.is_dir() and is_mouse_folder(p))


def open_session(data: Path, mouse: str) -> MouseFolder:
    """``DIR/public/<mouse>`` opened with the reader; FileNotFoundError listing the sessions when missing."""
    root = Path(data) / mouse
    if not root.is_dir():
        sessions = ", ".join(list_sessions(data)) or "none"
        raise FileNotFoundError(f"{root}: no such session folder (sessions in {data}: {sessions})")
    return open_mouse(root)


def trial_inputs(folder: MouseFolder, index: int, with_responses: bool = False) -> TrialInputs:
    """One trial's inputs at its true length, frame-major and contiguous (and its responses, if asked)."""
    responses = folder.responses(index).T if with_responses else None
    return TrialInputs(
        mouse=folder.session,
        index=int(index),
        video=np.ascontiguousarray(np.moveaxis(folder.video(index), -1, 0), dtype=np.float32),
        behavior=np.ascontiguousarray(folder.behavior(index).T, dtype=np.float32),
        pupil_center=np.ascontiguousarray(folder.pupil_center(index).T, dtype=np.float32),
        tier=str(folder.tiers[index]),
        responses=None if responses is None else np.ascontiguousarray(responses, dtype=np.float32),
    )
