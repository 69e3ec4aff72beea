"""Training on tiny data: it learns, it writes the checkpoint contract, and resume continues exactly."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_CONFIG

from models.config import ModelConfig
from models.data.normalisation import NormalisationStats
from models.data.reader import open_dataset
from models.training.checkpoint import BEST, CHECKPOINT_KEYS, LAST, METRICS_LOG, load_checkpoint
from models.training.model import model_from_checkpoint
from models.training.options import TrainOptions
from models.training.trainer import train


@pytest.fixture(scope="module")
def learned_run(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run")
    options = TrainOptions(epochs=4, batch_size=4, clip_frames=24, lr=1e-2, seed=3)
    train(tiny_data, out, TINY_CONFIG, options, device="cpu", threads=1, progress=False)
    return out


def test_training_lowers_the_loss_and_raises_oracle_correlation(learned_run: Path) -> None:
    history = [json.loads(line) for line in (learned_run / METRICS_LOG).read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    first, last = history[0], history[-1]
    assert last["train_loss"] < first["train_loss"]
    best = max(h["val_correlation"] for h in history)
    assert best > first["val_correlation"] + 0.05, [h["val_correlation"] for h in history]
    assert best > 0.1
    assert len(last["val_per_mouse"]) == 2
    for key in ("lr", "train_time_s", "epoch_time_s", "improved"):
        assert key in last


def test_checkpoint_follows_the_contract(learned_run: Path, tiny_data: Path) -> None:
    folders = open_dataset(tiny_data)
    for name in (LAST, BEST):
        ckpt = torch.load(learned_run / name, weights_only=False)
        assert set(CHECKPOINT_KEYS) <= set(ckpt)
        assert ModelConfig.from_dict(ckpt["config"]) == TINY_CONFIG
        assert set(ckpt["mice"]) == set(folders)
        for session, entry in ckpt["mice"].items():
            assert np.array_equal(entry["unit_ids"], folders[session].unit_ids)
            assert entry["unit_ids"].dtype == np.int64
            assert entry["coordinates"].shape == (folders[session].n_neurons, 3)
            stats = NormalisationStats.from_dict(entry["stats"])
            expected = NormalisationStats.from_mouse(folders[session])
            assert np.allclose(stats.response_std, expected.response_std)
            assert set(ckpt["validation"][session]) == {"oracle_single_trial_correlation"}
        prov = ckpt["provenance"]
        assert {"data_dir", "data_hash", "data_seed", "git_commit", "created"} <= set(prov)
        assert len(prov["data_hash"]) == 64
        assert isinstance(ckpt["optimizer_state"], dict) and isinstance(ckpt["scheduler_state"], dict)
    last, best = load_checkpoint(learned_run / LAST), load_checkpoint(learned_run)  # a folder means best.pt
    assert last["epoch"] == 4 and len(last["history"]) == 4
    best_epoch = max(last["history"], key=lambda h: h["val_correlation"])["epoch"]
    assert best["epoch"] == best_epoch
    assert best["best_score"] == pytest.approx(max(h["val_correlation"] for h in last["history"]))
    # the checkpoint alone rebuilds the model
    model = model_from_checkpoint(best)
    assert not model.training


def test_resume_continues_where_it_stopped(
    tiny_data: Path, tmp_path: Path, tiny_options: TrainOptions
) -> None:
    whole, split = tmp_path / "whole", tmp_path / "split"
    train(tiny_data, whole, TINY_CONFIG, tiny_options, device="cpu", threads=1, progress=False)
    first = dataclasses.replace(tiny_options, epochs=2)
    train(tiny_data, split, TINY_CONFIG, first, device="cpu", threads=1, progress=False)
    assert load_checkpoint(split / LAST)["epoch"] == 2
    result = train(
        tiny_data, split, TINY_CONFIG, tiny_options, device="cpu", resume=True, threads=1, progress=False
    )
    assert result.epochs_run == 3
    a, b = load_checkpoint(whole / LAST), load_checkpoint(split / LAST)
    assert b["epoch"] == 3 and [h["epoch"] for h in b["history"]] == [1, 2, 3]
    assert len((split / METRICS_LOG).read_text().splitlines()) == 3  # the log goes on, not over
    for key, value in a["model_state"].items():
        torch.testing.assert_close(b["model_state"][key], value, atol=1e-6, rtol=0, msg=key)
    steps_a = [s["step"] for s in a["optimizer_state"]["state"].values()]
    steps_b = [s["step"] for s in b["optimizer_state"]["state"].values()]
    assert steps_a == steps_b
    for ha, hb in zip(a["history"], b["history"], strict=True):
        assert hb["val_correlation"] == pytest.approx(ha["val_correlation"], abs=1e-6)
        assert hb["train_loss"] == pytest.approx(ha["train_loss"], abs=1e-6)
