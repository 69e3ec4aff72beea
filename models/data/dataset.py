"""torch Dataset of normalised clips (training only: imports torch).

Items are dicts of float32 tensors, time-major: ``video`` [T, 36, 64], ``behavior`` [T, 2],
``pupil_center`` [T, 2], ``responses`` [T, N], plus ``session`` (str) and ``trial`` (int). Normalisation is
`models.data.normalisation` (the same arrays the exported graphs bake in). Training clips are random windows of
``clip_frames`` frames from one trial (start drawn with torch's RNG, so `torch.manual_seed` and DataLoader
worker seeding make them reproducible); with ``clip_frames=None`` an item is a whole trial (validation), whose
length varies (300 or 315 frames): batch those with batch_size=1 or `collate_crop`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from models.benchmark import TIER_TRAIN
from models.data.normalisation import (
    NormalisationStats,
    normalise_behavior,
    normalise_pupil_center,
    normalise_responses,
    normalise_video,
)
from models.data.reader import MouseFolder, open_dataset, open_mouse


class ClipDataset(Dataset):
    """Normalised clips (or whole trials) of one mouse and tier."""

    def __init__(
        self,
        mouse: MouseFolder | Path | str,
        tier: str = TIER_TRAIN,
        clip_frames: int | None = 80,
        stats: NormalisationStats | None = None,
        trials: Sequence[int] | None = None,
    ) -> None:
        self.mouse = mouse if isinstance(mouse, MouseFolder) else open_mouse(mouse)
        self.tier = tier
        self.stats = stats or NormalisationStats.from_mouse(self.mouse)
        self.trials = np.asarray(trials if trials is not None else self.mouse.trials(tier), dtype=np.int64)
        if self.trials.size == 0:
            raise ValueError(f"{self.mouse.path}: no trials of tier {tier!r}")
        self.clip_frames = clip_frames
        if clip_frames is not None:
            shortest = int(self.mouse.lengths[self.trials].min())
            if not 0 < clip_frames <= shortest:
                raise ValueError(
                    f"clip_frames={clip_frames} must be in 1..{shortest} (shortest trial of {tier!r})"
                )

    @property
    def session(self) -> str:
        return self.mouse.session

    def __len__(self) -> int:
        return int(self.trials.size)

    def __getitem__(self, item: int) -> dict[str, Any]:
        index = int(self.trials[item])
        length = self.mouse.length(index)
        if self.clip_frames is None:
            start, stop = 0, length
        else:
            start = int(torch.randint(0, length - self.clip_frames + 1, ()).item())
            stop = start + self.clip_frames
        return self.window(index, start, stop)

    def window(self, index: int, start: int, stop: int) -> dict[str, Any]:
        """Frames [start, stop) of trial `index`, normalised and time-major."""
        m = self.mouse
        video = normalise_video(np.moveaxis(np.asarray(m.video(index)[..., start:stop]), -1, 0), self.stats)
        responses = normalise_responses(np.asarray(m.responses(index)[:, start:stop]).T, self.stats)
        behavior = normalise_behavior(np.asarray(m.behavior(index)[:, start:stop]).T, self.stats)
        pupil = normalise_pupil_center(np.asarray(m.pupil_center(index)[:, start:stop]).T, self.stats)
        return {
            "video": torch.from_numpy(np.ascontiguousarray(video)),
            "behavior": torch.from_numpy(np.ascontiguousarray(behavior)),
            "pupil_center": torch.from_numpy(np.ascontiguousarray(pupil)),
            "responses": torch.from_numpy(np.ascontiguousarray(responses)),
            "session": m.session,
            "trial": index,
        }


def collate_crop(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack items of one mouse, cropping every tensor to the shortest item (keeps the first frames)."""
    t = min(int(it["video"].shape[0]) for it in items)
    out: dict[str, Any] = {
        key: torch.stack([it[key][:t] for it in items])
        for key in ("video", "behavior", "pupil_center", "responses")
    }
    out["session"] = items[0]["session"]
    out["trial"] = torch.tensor([it["trial"] for it in items])
    return out


def open_clip_datasets(
    root: Path | str, tier: str = TIER_TRAIN, clip_frames: int | None = 80
) -> dict[str, ClipDataset]:
    """One `ClipDataset` per mouse folder under `root` (e.g. DIR/public), keyed by session."""
    return {
        s: ClipDataset(m, tier, clip_frames) for s, m in open_dataset(root).items() if m.trials(tier).size
    }
