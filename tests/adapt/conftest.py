"""Fixtures of the adapt tests: a tiny base run (the training area's tiny data and config, 2 mice) and a new
recording of one mouse it has never seen."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
sys.path.append(str(TESTS))  # area_modules; appended: tests/<area> folders must not shadow packages
from area_modules import load_module  # noqa: E402

tiny_data = load_module("tiny_data", TESTS / "training" / "tiny_data.py")
training = load_module("training_conftest", TESTS / "training" / "conftest.py")  # TINY_CONFIG

NEW_SESSION = "dynamic00003-1-1-Video-" + "c" * 32


@pytest.fixture(scope="session")
def base_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run trained 2 epochs on the tiny data's 2 mice (best.pt)."""
    from models.training.options import TrainOptions
    from models.training.trainer import train

    root = tmp_path_factory.mktemp("base")
    public = tiny_data.write_tiny_dataset(root, n_mice=2)
    options = TrainOptions(epochs=2, batch_size=4, clip_frames=24, lr=1e-2, seed=3)
    train(public, root / "run", training.TINY_CONFIG, options, device="cpu", progress=False)
    return root / "run"


@pytest.fixture(scope="session")
def new_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """DIR/public with one new mouse (other neurons, other trials): 16 train + 4 oracle trials of 64 frames."""
    root = tmp_path_factory.mktemp("new")
    public = tiny_data.write_tiny_dataset(root, n_mice=1, n_neurons=10, seed=5)
    (public / tiny_data.SESSIONS[0]).rename(public / NEW_SESSION)
    return public
