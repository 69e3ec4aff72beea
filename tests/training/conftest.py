"""Fixtures of the training tests: a tiny dataset (tiny_data.py) and a small, fast model config."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from models.config import ModelConfig
from models.training.options import TrainOptions

sys.path.insert(0, str(Path(__file__).parent))  # tiny_data, importable by the tests and the DDP subprocess

from tiny_data import write_tiny_dataset

TINY_CONFIG = ModelConfig(
    channels=(8,),
    spatial_input_kernel=7,
    temporal_input_kernel=3,
    position_hidden=8,
    shifter_layers=1,
    shifter_hidden=2,
)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """DIR/public of 2 mice x 12 neurons, 16 train + 4 oracle trials of 64 frames."""
    return write_tiny_dataset(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def tiny_options() -> TrainOptions:
    return TrainOptions(epochs=3, batch_size=4, clip_frames=24, lr=1e-2, seed=3)
