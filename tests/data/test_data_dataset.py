"""The torch Dataset returns exactly the numpy normalisation, time-major, for clips and whole trials."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from models.data.dataset import ClipDataset, collate_crop, open_clip_datasets
from models.data.normalisation import (
    NormalisationStats,
    normalise_behavior,
    normalise_pupil_center,
    normalise_responses,
    normalise_video,
)
from models.data.reader import open_mouse


def test_clip_equals_numpy_normalisation(handmade) -> None:
    mouse = open_mouse(handmade[0])
    stats = NormalisationStats.from_mouse(mouse)
    ds = ClipDataset(mouse, "train", clip_frames=6)
    assert len(ds) == 3
    torch.manual_seed(0)
    item = ds[1]
    assert item["session"] == mouse.session and item["trial"] == 1
    assert item["video"].shape == (6, 36, 64) and item["video"].dtype == torch.float32
    assert item["behavior"].shape == (6, 2) and item["pupil_center"].shape == (6, 2)
    assert item["responses"].shape == (6, 5)
    # find the window start by matching the raw behaviour
    raw_b = mouse.behavior(1).T
    norm_b = normalise_behavior(raw_b, stats)
    start = next(s for s in range(len(raw_b) - 5) if np.allclose(norm_b[s : s + 6], item["behavior"].numpy()))
    window = slice(start, start + 6)
    np.testing.assert_allclose(
        item["video"], normalise_video(np.moveaxis(mouse.video(1), -1, 0)[window], stats)
    )
    np.testing.assert_allclose(item["responses"], normalise_responses(mouse.responses(1).T[window], stats))
    np.testing.assert_allclose(
        item["pupil_center"], normalise_pupil_center(mouse.pupil_center(1).T[window], stats)
    )


def test_random_starts_reproducible(handmade) -> None:
    ds = ClipDataset(handmade[0], "train", clip_frames=4)
    torch.manual_seed(1)
    a = [ds[i]["behavior"] for i in range(3) for _ in range(3)]
    torch.manual_seed(1)
    b = [ds[i]["behavior"] for i in range(3) for _ in range(3)]
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_whole_trials_variable_lengths(handmade) -> None:
    ds = ClipDataset(handmade[0], "train", clip_frames=None)
    lengths = [ds[i]["video"].shape[0] for i in range(len(ds))]
    assert lengths == [10, 12, 11]
    batch = next(iter(DataLoader(ds, batch_size=3, collate_fn=collate_crop)))
    assert batch["video"].shape == (3, 10, 36, 64) and batch["responses"].shape == (3, 10, 5)
    assert batch["trial"].tolist() == [0, 1, 5]


def test_bad_clip_length(handmade) -> None:
    with pytest.raises(ValueError, match="clip_frames"):
        ClipDataset(handmade[0], "train", clip_frames=11)  # shortest train trial has 10 frames


def test_open_clip_datasets(tiny_synth) -> None:
    root, manifest = tiny_synth
    sets = open_clip_datasets(root / "public", "train", clip_frames=80)
    assert sorted(sets) == sorted(manifest["sessions"])
    item = next(iter(sets.values()))[0]
    assert item["video"].shape == (80, 36, 64) and item["responses"].shape == (80, 24)
    assert torch.isfinite(item["video"]).all() and (item["responses"] >= 0).all()
